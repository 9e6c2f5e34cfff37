//! `scripts/python-tools`, which CI runs while the workspace compiles: it installs the very
//! versions the tests pin, where the tests look for them, and leaves a working install alone.
//!
//! The install test takes aiosmtpd (seconds from PyPI); like the tests that use the tools, it
//! needs Python 3 with venv and pip, and PyPI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bt_test_support::moto::MOTO_VERSION;
use bt_test_support::smtp::AIOSMTPD_VERSION;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// Runs the script with `args`, its cache under `cache` (XDG_CACHE_HOME).
fn python_tools(cache: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo_root().join("scripts/python-tools"))
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .expect("bash runs scripts/python-tools")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The version `scripts/api-fuzz` pins schemathesis to (its `ST_VERSION=` line).
fn api_fuzz_schemathesis_pin() -> String {
    let script = std::fs::read_to_string(repo_root().join("scripts/api-fuzz")).unwrap();
    script
        .lines()
        .find_map(|line| line.strip_prefix("ST_VERSION="))
        .expect("scripts/api-fuzz has an ST_VERSION= line")
        .trim()
        .to_owned()
}

/// Whether the virtualenv's interpreter imports aiosmtpd at the pinned version.
fn imports_pinned_aiosmtpd(venv: &Path) -> bool {
    Command::new(venv.join("bin/python"))
        .args([
            "-c",
            &format!("import aiosmtpd, aiosmtpd.smtp; assert aiosmtpd.__version__ == {AIOSMTPD_VERSION:?}"),
        ])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn the_pins_are_those_the_tests_and_the_api_fuzzing_use() {
    let cache = tempfile::tempdir().unwrap();
    let output = python_tools(cache.path(), &["--pins"]);
    assert!(output.status.success(), "{}", stderr(&output));

    let pins = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        pins,
        format!(
            "moto {MOTO_VERSION}\naiosmtpd {AIOSMTPD_VERSION}\nschemathesis {}\n",
            api_fuzz_schemathesis_pin()
        )
    );
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        0,
        "--pins installs nothing"
    );
}

#[test]
fn a_tool_is_installed_where_the_tests_look_left_alone_then_and_replaced_when_damaged() {
    let cache = tempfile::tempdir().unwrap();
    let venv = cache
        .path()
        .join("buyticket")
        .join(format!("aiosmtpd-{AIOSMTPD_VERSION}"));

    let first = python_tools(cache.path(), &["aiosmtpd"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(imports_pinned_aiosmtpd(&venv), "{}", stderr(&first));
    let leftovers: Vec<_> = std::fs::read_dir(cache.path().join("buyticket"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("building"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-built virtualenvs left: {leftovers:?}"
    );

    let again = python_tools(cache.path(), &["aiosmtpd"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("is installed") && !stderr(&again).contains("installing"),
        "a working install is left alone: {}",
        stderr(&again)
    );

    // Damaged by hand: the interpreter is gone.
    std::fs::remove_file(venv.join("bin/python")).unwrap();
    std::fs::write(venv.join("bin/python"), "not a python").unwrap();
    let repaired = python_tools(cache.path(), &["aiosmtpd"]);
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    assert!(
        imports_pinned_aiosmtpd(&venv),
        "the damaged virtualenv is replaced: {}",
        stderr(&repaired)
    );
}

#[test]
fn an_unknown_tool_is_refused_with_the_known_ones() {
    let cache = tempfile::tempdir().unwrap();
    let output = python_tools(cache.path(), &["moto", "pytest"]);

    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("unknown tool pytest (moto aiosmtpd schemathesis, or --pins)"),
        "{}",
        stderr(&output)
    );
}
