//! Python tools that tests run as servers (moto, aiosmtpd), each pinned to one version and
//! installed from PyPI on first use into a virtualenv of its own under
//! `${XDG_CACHE_HOME:-~/.cache}/buyticket/<name>-<version>` (as `scripts/api-fuzz` installs
//! schemathesis).
//!
//! A virtualenv is built in a directory of its own beside its final place
//! (`.<name>-<version>.building-<pid>-<uuid>`) and renamed into place when complete, so parallel
//! tests (and test binaries) never use a half-built one; when another process renamed its own
//! first, that one is kept. Within one process, installs of the same virtualenv are serialised.
//! Builds that were killed half-way are removed once they are over an hour old.
//!
//! Python 3 with its `venv` module and pip is needed (Debian: `apt-get install python3
//! python3-venv python3-pip`), and pip needs PyPI or a mirror set in `PIP_INDEX_URL`; without
//! them the test panics and says what to install, it is never skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

/// A Python tool from PyPI, pinned, in a virtualenv of its own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PythonTool<'a> {
    /// The tool's name, for messages and the virtualenv's directory: `moto`.
    pub name: &'a str,
    /// The pinned version, for messages and the virtualenv's directory: `5.2.5`.
    pub version: &'a str,
    /// What pip installs: `moto[server]==5.2.5`.
    pub requirement: &'a str,
    /// Python (`python -c`) that succeeds only in a complete install of the pinned version:
    /// `import moto, moto.server; assert moto.__version__ == "5.2.5"`.
    pub import_check: &'a str,
    /// Who needs the tool, for the message when Python is missing: `the S3 tests (moto)`.
    pub needed_by: &'a str,
    /// How long an install takes, for the message while installing: `about a minute`.
    pub install_time: &'a str,
}

impl PythonTool<'_> {
    /// The virtualenv's interpreter, with the tool installed; installs it first when missing.
    pub(crate) fn ensure(&self) -> PathBuf {
        let venv = self.venv_dir();
        let lock = install_lock(&venv);
        let _serialised = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let python = venv.join("bin").join("python");
        if self.is_installed(&python) {
            return python;
        }
        if venv.exists() {
            // Left by an older tool or damaged by hand: only complete installs are renamed there.
            let _ = std::fs::remove_dir_all(&venv);
        }
        self.install(&venv);
        assert!(
            self.is_installed(&python),
            "{} {} was installed into {} but `python -c '{}'` fails there; delete that \
             directory and run the test again",
            self.name,
            self.version,
            venv.display(),
            self.import_check
        );
        python
    }

    /// Where the virtualenv lives.
    fn venv_dir(&self) -> PathBuf {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(|| {
                panic!(
                    "neither XDG_CACHE_HOME nor HOME is set: set one, {} is installed under it",
                    self.name
                )
            });
        cache
            .join("buyticket")
            .join(format!("{}-{}", self.name, self.version))
    }

    /// The start of the names of this tool's virtualenvs being built.
    fn building_prefix(&self) -> String {
        format!(".{}-{}.building-", self.name, self.version)
    }

    /// Whether `python` runs and passes the import check (a complete install: only complete
    /// virtualenvs are ever renamed into place).
    fn is_installed(&self, python: &Path) -> bool {
        python.exists()
            && Command::new(python)
                .args(["-c", self.import_check])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    /// Builds the virtualenv beside its final place and renames it there; when another process
    /// finished first, its virtualenv is kept and this one removed.
    fn install(&self, venv: &Path) {
        let Self {
            name,
            version,
            requirement,
            needed_by,
            install_time,
            ..
        } = *self;
        let parent = venv
            .parent()
            .expect("the virtualenv has a parent directory");
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        remove_abandoned_builds(parent, &self.building_prefix());
        let building = parent.join(format!(
            "{}{}-{}",
            self.building_prefix(),
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        eprintln!(
            "installing {name} {version} into {} (once per machine; {install_time})",
            venv.display()
        );
        let python3 = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&building)
            .output();
        match python3 {
            Err(e) => panic!(
                "python3 is needed to run {needed_by}: {e}. Install Python 3 with its venv \
                 module and pip (Debian: apt-get install python3 python3-venv python3-pip)"
            ),
            Ok(out) if !out.status.success() => {
                let _ = std::fs::remove_dir_all(&building);
                panic!(
                    "`python3 -m venv` failed: {}. Install the venv module and pip (Debian: \
                     apt-get install python3-venv python3-pip)",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(_) => {}
        }
        let pip = Command::new(building.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                requirement,
            ])
            .output();
        match pip {
            Ok(out) if out.status.success() => {}
            failed => {
                let _ = std::fs::remove_dir_all(&building);
                let why = match failed {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                panic!(
                    "`pip install {requirement}` failed: {why}. pip needs PyPI (or a mirror set \
                     in PIP_INDEX_URL); on Debian install pip with apt-get install python3-pip"
                );
            }
        }
        if std::fs::rename(&building, venv).is_err() {
            // Another process renamed its complete virtualenv into place first (the target is a
            // non-empty directory): keep it. Anything else in the way is removed.
            if !self.is_installed(&venv.join("bin").join("python")) {
                let _ = std::fs::remove_dir_all(venv);
                if let Err(e) = std::fs::rename(&building, venv) {
                    let _ = std::fs::remove_dir_all(&building);
                    panic!("moving {name}'s virtualenv to {}: {e}", venv.display());
                }
            }
            let _ = std::fs::remove_dir_all(&building);
        }
    }
}

/// The lock that serialises the installs of the virtualenv at `venv` within this process.
fn install_lock(venv: &Path) -> Arc<Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = LazyLock::new(Mutex::default);
    let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(locks.entry(venv.to_path_buf()).or_default())
}

/// Removes what installs that were killed half-way left behind (entries of `parent` named
/// `prefix…`, over an hour old).
fn remove_abandoned_builds(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let abandoned = entry.file_name().to_string_lossy().starts_with(prefix)
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(3600));
        if abandoned {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
