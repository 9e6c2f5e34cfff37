//! axe-core (from npm, pinned) for the accessibility tests: installed once into
//! `${XDG_CACHE_HOME:-~/.cache}/buyticket/axe-core-<version>` with the machine's npm, then
//! injected into pages through WebDriver.

use std::path::PathBuf;
use std::process::Command;

/// The pinned axe-core.
pub const VERSION: &str = "4.14.1";

/// The rules run: every WCAG 2.0, 2.1 and 2.2 rule at levels A and AA (axe's tags).
pub const TAGS: [&str; 6] = [
    "wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa",
];

fn cache_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set");
    cache.join("buyticket").join(format!("axe-core-{VERSION}"))
}

/// The source of `axe.min.js`, installed on first use (into a directory of its own, renamed
/// into place when complete, so that a concurrent or interrupted install never leaves half
/// a package behind).
pub fn source() -> String {
    let dir = cache_dir();
    let script = dir.join("node_modules/axe-core/axe.min.js");
    if !script.exists() {
        let parent = dir.parent().expect("a parent directory");
        std::fs::create_dir_all(parent).unwrap();
        let building = parent.join(format!(
            "axe-core-{VERSION}.building-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&building);
        std::fs::create_dir_all(&building).unwrap();
        let status = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&building)
            .arg(format!("axe-core@{VERSION}"))
            .status()
            .expect("npm must be installed (Node.js; it installs axe-core for this test)");
        assert!(status.success(), "npm install axe-core@{VERSION} failed");
        if std::fs::rename(&building, &dir).is_err() {
            // Another test process installed it meanwhile.
            let _ = std::fs::remove_dir_all(&building);
        }
    }
    std::fs::read_to_string(&script).unwrap_or_else(|e| panic!("{}: {e}", script.display()))
}
