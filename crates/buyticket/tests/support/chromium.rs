//! Headless Chromium for the browser tests: chromedriver (Debian's `chromium-driver`), a
//! WebDriver session (fantoccini), and the steps every browser test takes.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bt_test_support::free_port;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// chromedriver, killed on drop together with the Chromium it started: a session that was
/// never closed (a test that ends without `close`, or panics) would otherwise leave its
/// browser running after the test, using CPU in every later test and benchmark.
pub struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // chromedriver leads a process group of its own, which its Chromium processes join.
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The ids of the running processes with `arg` in their command line.
pub fn processes_with(arg: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let line = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            (String::from_utf8_lossy(&line).contains(arg) && super::alive(pid)).then_some(pid)
        })
        .collect()
}

/// chromedriver on a free port; its Chromium runs in `time_zone` when given (`TZ`).
pub fn chromedriver(time_zone: Option<&str>) -> (Guard, u16) {
    let port = free_port();
    let mut command = Command::new("chromedriver");
    command
        .process_group(0)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(tz) = time_zone {
        command.env("TZ", tz);
    }
    let child = command
        .spawn()
        .expect("chromedriver must be installed (Debian package chromium-driver; scripts/ensure-services.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Guard(child), port)
}

/// A headless Chromium session through the chromedriver on `port`, with its own profile.
pub async fn browser(port: u16, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--no-first-run", "--window-size=1280,900", "--lang=en-US",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session")
}

/// Where screenshots go: `docs/screenshots/` with `UPDATE_SCREENSHOTS=1` (the README's
/// pictures), else `target/screenshots/`.
pub fn screenshots_dir() -> PathBuf {
    let dir = if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Chromium of its own (its chromedriver, its profile) with a [`Session`] on `base`: what
/// every browser test starts with. Everything is stopped and removed when it is dropped, the
/// session first.
pub struct Opened {
    pub session: Session,
    _driver: Guard,
    pub profile: tempfile::TempDir,
}

impl std::ops::Deref for Opened {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

/// One person's browser on the marketplace at `base`.
pub struct Session {
    pub client: Client,
    pub base: String,
    pub shots: PathBuf,
}

impl Session {
    /// A new Chromium on `base` (in `time_zone` when given), with a fresh profile; screenshots
    /// go to [`screenshots_dir`].
    pub async fn open(base: &str, time_zone: Option<&str>) -> Opened {
        let profile = tempfile::tempdir().unwrap();
        let (driver, port) = chromedriver(time_zone);
        let session = Session {
            client: browser(port, profile.path()).await,
            base: base.to_owned(),
            shots: screenshots_dir(),
        };
        Opened {
            session,
            _driver: driver,
            profile,
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    pub async fn text(&self, css: &str) -> String {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element.text().await.unwrap(),
            Err(e) => panic!("{css} on {}: {e}", self.path().await),
        }
    }

    /// Waits (≤ 10 s) until `css` shows `want`: for a page that replaces one with the same
    /// element (a search, a form sent back), whose old copy may still be read, or go stale,
    /// right after the click.
    pub async fn wait_for_text(&self, css: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} on {} says {text:?}, not {want:?}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Waits until the browser is at `path` (after a form post and its redirect).
    pub async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.path().await != path {
            if Instant::now() > deadline {
                let source = self.client.source().await.unwrap_or_default();
                panic!(
                    "expected to be at {path}, still at {}:\n{source}",
                    self.path().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reloads until `css` exists (pages that wait for events), at most `secs`.
    pub async fn reload_until(&self, css: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.exists(css).await {
            assert!(
                Instant::now() < deadline,
                "{css} did not appear on {}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.client.refresh().await.unwrap();
        }
    }

    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn sign_out(&self) {
        self.click("form[action='/auth/signout'] button").await;
        self.text("a[href='/auth/signin']").await;
        assert!(
            !self.exists("a[href='/tickets/new']").await,
            "the header shows the signed-out links"
        );
    }

    /// Buys a ticket: the ticket page's Purchase button, retried while the orders replica
    /// catches up (the page then says so).
    pub async fn purchase(&self, ticket_id: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.goto(&format!("/tickets/{ticket_id}")).await;
            self.click("#purchase").await;
            let _ = self
                .client
                .wait()
                .at_most(Duration::from_secs(5))
                .for_element(Locator::Css("#order-status, #page-error"))
                .await;
            if self.path().await.starts_with("/orders/") {
                return self.path().await.trim_start_matches("/orders/").to_owned();
            }
            assert!(Instant::now() < deadline, "could not purchase {ticket_id}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn sign_up(&self, email: &str) {
        self.goto("/auth/signup").await;
        self.fill("#email", email).await;
        self.fill("#password", "password").await;
        self.click("#submit").await;
        self.wait_path("/").await;
        assert!(
            self.exists("a[href='/tickets/new']").await,
            "the header shows the signed-in links"
        );
        assert!(self.exists("a[href='/tickets/mine']").await);
    }

    pub async fn sign_in(&self, email: &str) {
        self.goto("/auth/signin").await;
        self.fill("#email", email).await;
        self.fill("#password", "password").await;
        self.click("#submit").await;
        self.wait_path("/").await;
        assert!(self.exists("a[href='/payouts']").await);
    }
}
