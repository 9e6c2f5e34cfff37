//! The `buyticket` binary as a child process, shared by the process-level test files.

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bt_test_support::TestClient;

pub mod axe;
pub mod bench;
pub mod chromium;
pub mod deployment;

/// Whether process `pid` runs. A killed child is a zombie until reaped: not alive for our
/// purpose.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        })
        .unwrap_or(false)
}

/// A running `buyticket` process, killed when dropped (also when a test fails half-way).
pub struct Process {
    child: Child,
    /// The base URL the process printed, e.g. `http://127.0.0.1:41234`.
    pub url: String,
}

impl Process {
    /// Starts `buyticket <args>` with a clean environment plus `env`, and waits (≤ 60 s) until
    /// it prints the URL it listens on.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_buyticket"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start buyticket");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(i) = line.find("http://") {
                    let _ = tx.send(line[i..].trim().to_owned());
                }
            }
        });
        // Build the guard before waiting, so a process that never prints its URL is killed too.
        let mut process = Self {
            child,
            url: String::new(),
        };
        process.url = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("buyticket {} did not print its URL", args.join(" ")));
        process
    }

    /// `buyticket up --port 0 --data-dir <data_dir>`.
    pub fn up(data_dir: &Path) -> Self {
        Self::start(
            &[
                "up",
                "--port",
                "0",
                "--data-dir",
                data_dir.to_str().unwrap(),
            ],
            &[],
        )
    }

    pub fn client(&self) -> TestClient {
        TestClient::new(&self.url)
    }

    /// The operating system's id of the process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL), like a crash; the guard stays, so it can be
    /// started again in its place.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (≤ 45 s, see [`terminate`]) for the process to exit.
    pub fn stop(mut self) -> ExitStatus {
        terminate(&mut self.child, "buyticket")
    }
}

/// Sends SIGTERM to `child` and waits (≤ 45 s) for it to exit; `what` names it if it does not.
/// A graceful stop lets requests in flight finish, and one may legitimately take up to the
/// request timeout (30 s, e.g. a payment held at the provider), so the wait is longer than that.
pub fn terminate(child: &mut std::process::Child, what: &str) -> ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Retries `attempt` every `every` until it gives `Ok`, failing after `limit` with the last
/// `Err` (what was seen instead).
pub async fn poll<T, F, Fut>(limit: Duration, every: Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {limit:?} waiting until {what}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(every).await;
    }
}
