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
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bt_platform::files::S3Config;

use crate::free_port;
use crate::pyenv::PythonTool;

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

/// The virtualenv's interpreter, with moto installed; installs it first when missing.
fn ensure_installed() -> PathBuf {
    PythonTool {
        name: "moto",
        version: MOTO_VERSION,
        requirement: &format!("moto[server]=={MOTO_VERSION}"),
        import_check: &format!(
            "import moto, moto.server; assert moto.__version__ == {MOTO_VERSION:?}"
        ),
        needed_by: "the S3 tests (moto)",
        install_time: "about a minute",
    }
    .ensure()
}
