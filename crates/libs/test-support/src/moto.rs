//! [`MotoServer`]: a real S3 API on `127.0.0.1`, for tests of the S3 file store.
//!
//! It is the `moto` server from PyPI, pinned to [`MOTO_VERSION`] and installed on first use
//! into a virtualenv under `${XDG_CACHE_HOME:-~/.cache}/buyticket/moto-<version>` (as
//! `scripts/api-fuzz` installs schemathesis). The virtualenv is built in a directory of its
//! own and renamed into place when complete, so parallel tests (and test binaries) never use a
//! half-built one; within one process installs are serialised. Each [`MotoServer::start`] runs
//! its own server on a free port, killed when the value is dropped; [`MotoServer::bucket`]
//! creates a fresh bucket per call, so tests never see each other's objects.
//!
//! Python 3 with its `venv` module is needed (Debian: `apt-get install python3 python3-venv`);
//! without it the test panics and says so, it is never skipped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bt_platform::files::S3Config;

/// The moto release the tests run against.
pub const MOTO_VERSION: &str = "5.2.5";

/// How long a fresh server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A moto server of this test's own, killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
    _log_dir: tempfile::TempDir,
}

impl MotoServer {
    /// Installs moto when needed (about a minute, once per machine), starts a server on a free
    /// port of `127.0.0.1` and waits until it answers.
    pub fn start() -> Self {
        let python = ensure_installed();
        let mut last_failure = String::new();
        // A port found free may be taken before the server binds it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let log_dir = tempfile::tempdir().expect("temp dir for the moto log");
            let log_path = log_dir.path().join("moto.log");
            let log = std::fs::File::create(&log_path).expect("moto log file");
            let child = Command::new(&python)
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("moto log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", python.display()));
            let mut server = Self {
                child,
                port,
                _log_dir: log_dir,
            };
            match server.wait_until_ready() {
                Ok(()) => return server,
                Err(why) => {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    last_failure = format!("{why}\n--- moto's output ---\n{log}");
                    // Dropping `server` kills the child.
                }
            }
        }
        panic!("the moto server did not start: {last_failure}");
    }

    /// The server's base URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new, empty bucket with a unique name, and how to reach it.
    pub fn bucket(&self) -> S3Config {
        let bucket = format!("bt-test-{}", uuid::Uuid::new_v4().simple());
        let (status, body) = self
            .request("PUT", &format!("/{bucket}"))
            .unwrap_or_else(|e| panic!("creating the bucket {bucket} on moto: {e}"));
        assert_eq!(status, 200, "creating the bucket {bucket} on moto: {body}");
        S3Config {
            bucket,
            region: "us-east-1".to_owned(),
            endpoint: Some(self.endpoint()),
            access_key_id: "testing".to_owned(),
            secret_access_key: "testing".to_owned().into(),
            allow_http: true,
        }
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("moto exited with {status}"));
            }
            // `/moto-api/` is moto's own dashboard: any answer means it serves requests.
            if let Ok((200, _)) = self.request("GET", "/moto-api/") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("moto did not answer within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One unsigned HTTP/1.1 request without a body (moto does not check signatures); the
    /// status and the body.
    fn request(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {response:?}")))?;
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .to_owned();
        Ok((status, body))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Where the virtualenv lives.
fn venv_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .expect("neither XDG_CACHE_HOME nor HOME is set: set one, moto is installed under it");
    cache.join("buyticket").join(format!("moto-{MOTO_VERSION}"))
}

/// The virtualenv's interpreter, with moto installed; installs it first when missing.
fn ensure_installed() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _serialised = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    if is_installed(&python) {
        return python;
    }
    if venv.exists() {
        // Left by an older tool or damaged by hand: only complete installs are renamed there.
        let _ = std::fs::remove_dir_all(&venv);
    }
    install(&venv);
    assert!(
        is_installed(&python),
        "moto {MOTO_VERSION} was installed into {} but `python -c 'import moto.server'` fails \
         there; delete that directory and run the test again",
        venv.display()
    );
    python
}

/// Whether `python` runs and imports the pinned moto (a complete install: only complete
/// virtualenvs are ever renamed into place).
fn is_installed(python: &Path) -> bool {
    python.exists()
        && Command::new(python)
            .args([
                "-c",
                &format!("import moto, moto.server; assert moto.__version__ == {MOTO_VERSION:?}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Builds the virtualenv beside its final place and renames it there; when another process
/// finished first, its virtualenv is kept and this one removed.
fn install(venv: &Path) {
    let parent = venv
        .parent()
        .expect("the virtualenv has a parent directory");
    std::fs::create_dir_all(parent)
        .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
    remove_abandoned_builds(parent);
    let building = parent.join(format!(
        ".moto-{MOTO_VERSION}.building-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    eprintln!(
        "installing moto {MOTO_VERSION} into {} (once per machine; about a minute)",
        venv.display()
    );
    let python3 = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&building)
        .output();
    match python3 {
        Err(e) => panic!(
            "python3 is needed to run the S3 tests (moto): {e}. Install Python 3 with its venv \
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
            &format!("moto[server]=={MOTO_VERSION}"),
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
                "`pip install moto[server]=={MOTO_VERSION}` failed: {why}. pip needs PyPI (or \
                 a mirror set in PIP_INDEX_URL); on Debian install pip with apt-get install \
                 python3-pip"
            );
        }
    }
    if std::fs::rename(&building, venv).is_err() {
        // Another process renamed its complete virtualenv into place first (the target is a
        // non-empty directory): keep it. Anything else in the way is removed.
        if !is_installed(&venv.join("bin").join("python")) {
            let _ = std::fs::remove_dir_all(venv);
            if let Err(e) = std::fs::rename(&building, venv) {
                let _ = std::fs::remove_dir_all(&building);
                panic!("moving moto's virtualenv to {}: {e}", venv.display());
            }
        }
        let _ = std::fs::remove_dir_all(&building);
    }
}

/// Removes what installs that were killed half-way left behind (over an hour old).
fn remove_abandoned_builds(parent: &Path) {
    let prefix = format!(".moto-{MOTO_VERSION}.building-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let abandoned = entry.file_name().to_string_lossy().starts_with(&prefix)
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(3600));
        if abandoned {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
