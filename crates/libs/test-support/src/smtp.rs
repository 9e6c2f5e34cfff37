//! [`SmtpServer`]: a real SMTP server on `127.0.0.1` that keeps every message it receives, for
//! tests of code that sends mail.
//!
//! It is [aiosmtpd](https://aiosmtpd.aio-libs.org/) from PyPI, pinned to [`AIOSMTPD_VERSION`]
//! and installed on first use into a virtualenv under
//! `${XDG_CACHE_HOME:-~/.cache}/buyticket/aiosmtpd-<version>` (as [`crate::moto`] installs
//! moto). The virtualenv is built in a directory of its own and renamed into place when
//! complete, so parallel tests (and test binaries) never use a half-built one; within one
//! process installs are serialised. Each [`SmtpServer::start`] runs its own server on a free
//! port, plain SMTP without TLS or authentication, killed when the value is dropped;
//! [`SmtpServer::start_tls`] requires STARTTLS, with a certificate from an authority of its own.
//!
//! The server answers `250` to every message and writes it into a directory of its own: the
//! DATA content as received (`<n>.eml`) and the envelope (`<n>.json`, `MAIL FROM` and the
//! `RCPT TO`s), each under a temporary name first and then renamed, so a reader never sees half
//! a message; [`SmtpServer::messages`] reads them back in arrival order as
//! [`ReceivedMessage`]s, which decode headers (RFC 2047) and the text body (quoted-printable,
//! base64, multipart) so tests compare plain text. [`SmtpServer::stop`] and
//! [`SmtpServer::restart`] take the server down and bring it back on the same port with the same
//! messages, for tests of mail sent while the server is away.
//!
//! Python 3 with its `venv` module is needed (Debian: `apt-get install python3 python3-venv`);
//! without it the test panics and says so, it is never skipped.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::pyenv::PythonTool;

/// The aiosmtpd release the tests run against.
pub const AIOSMTPD_VERSION: &str = "1.4.6";

/// How long a fresh server may take to greet.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`SmtpServer::restart`] retries while the port cannot be bound yet.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);

/// The server, run as `python server.py <host> <port> <message dir> <parent pid>`.
///
/// asyncio's `create_server` sets `SO_REUSEADDR` on POSIX by default (said explicitly here), so
/// a restart binds the port again even while connections of the killed server are in
/// `TIME_WAIT`. The server exits by itself once the process that started it is gone, so a test
/// binary that is killed leaves no server behind.
const SERVER_PY: &str = r#"
import asyncio
import json
import os
import sys

from aiosmtpd.smtp import SMTP

HOST, PORT, DIRECTORY, PARENT = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
# With a certificate and its key: STARTTLS, required before any mail is accepted.
TLS = None
if len(sys.argv) > 6:
    import ssl

    TLS = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    TLS.load_cert_chain(sys.argv[5], sys.argv[6])


def publish(name, data):
    """Writes a file under a temporary name, then renames it: readers never see half of it."""
    temporary = os.path.join(DIRECTORY, "." + name + ".tmp")
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, os.path.join(DIRECTORY, name))


class Handler:
    def __init__(self):
        # After a restart, numbering goes on after the messages already there.
        numbers = [
            int(name[: -len(".json")])
            for name in os.listdir(DIRECTORY)
            if name.endswith(".json") and name[: -len(".json")].isdigit()
        ]
        self.next = max(numbers, default=0) + 1

    async def handle_DATA(self, server, session, envelope):
        number = self.next
        self.next += 1
        # The message first, then its envelope: a message counts once its envelope is there.
        publish(f"{number}.eml", envelope.original_content)
        envelope_json = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos)}
        publish(f"{number}.json", json.dumps(envelope_json).encode())
        return "250 OK message accepted"


async def main():
    handler = Handler()
    loop = asyncio.get_running_loop()
    await loop.create_server(
        # The greeting names this process, so the test knows it reached this server.
        lambda: SMTP(
            handler,
            hostname="bt-test-smtp",
            ident=f"aiosmtpd pid {os.getpid()}",
            enable_SMTPUTF8=True,
            tls_context=TLS,
            require_starttls=TLS is not None,
        ),
        host=HOST,
        port=PORT,
        reuse_address=True,
    )
    print(f"listening on {HOST}:{PORT}", flush=True)
    while os.getppid() == PARENT:
        await asyncio.sleep(1)
    print("the test process is gone: exiting", flush=True)


asyncio.run(main())
"#;

/// An SMTP server of this test's own, killed on drop.
#[derive(Debug)]
pub struct SmtpServer {
    /// `None` while stopped.
    child: Option<Child>,
    python: PathBuf,
    port: u16,
    /// With [`SmtpServer::start_tls`]: the server's certificate and key files.
    tls: Option<(PathBuf, PathBuf)>,
    /// Holds `server.py`, `server.log` and `messages/`.
    dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Installs aiosmtpd when needed (seconds, once per machine), starts a server on a free port
    /// of `127.0.0.1` and waits until it greets with `220`.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// [`SmtpServer::start`], with STARTTLS required before any mail: its certificate (for
    /// `127.0.0.1`) is signed by an authority of its own, [`SmtpServer::ca_file`], which no
    /// client trusts unless told to. Needs the `openssl` command.
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Self {
        let python = ensure_installed();
        let dir = tempfile::tempdir().expect("temp dir for the SMTP server");
        std::fs::write(dir.path().join("server.py"), SERVER_PY).expect("writing server.py");
        std::fs::create_dir(dir.path().join("messages")).expect("the SMTP message directory");
        let tls = tls.then(|| make_certificates(dir.path()));
        let mut server = Self {
            child: None,
            python,
            port: 0,
            tls,
            dir,
        };
        let mut last_failure = String::new();
        // A port found free may be taken before the server binds it: try a few.
        for _ in 0..3 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(why) => last_failure = why,
            }
        }
        panic!("the SMTP server (aiosmtpd) did not start: {last_failure}");
    }

    /// The port it listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:<port>`: plain SMTP, no TLS, no authentication (lettre's URL format).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far (also before a [`stop`](Self::stop)), in arrival order.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        let dir = self.message_dir();
        let mut numbers: Vec<u64> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|entry| {
                let name = entry.ok()?.file_name();
                name.to_str()?.strip_suffix(".json")?.parse().ok()
            })
            .collect();
        numbers.sort_unstable();
        numbers
            .into_iter()
            .map(|n| {
                // The server renames `<n>.eml` into place before `<n>.json`.
                let envelope_path = dir.join(format!("{n}.json"));
                let envelope = std::fs::read(&envelope_path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", envelope_path.display()));
                let envelope: serde_json::Value = serde_json::from_slice(&envelope)
                    .unwrap_or_else(|e| panic!("{} is not JSON: {e}", envelope_path.display()));
                let raw_path = dir.join(format!("{n}.eml"));
                let raw = std::fs::read(&raw_path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", raw_path.display()));
                ReceivedMessage {
                    mail_from: envelope["mail_from"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    rcpt_tos: envelope["rcpt_tos"]
                        .as_array()
                        .map(|tos| {
                            tos.iter()
                                .map(|to| to.as_str().unwrap_or_default().to_owned())
                                .collect()
                        })
                        .unwrap_or_default(),
                    raw: String::from_utf8_lossy(&raw).into_owned(),
                }
            })
            .collect()
    }

    /// Waits until at least `count` messages have arrived and returns them all; panics after
    /// `timeout`, listing what did arrive.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMessage> {
        self.wait_until(timeout, |messages| messages.len() >= count)
            .await
    }

    /// Waits until `done` holds for the messages received so far and returns them; panics after
    /// `timeout`, listing what did arrive.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[ReceivedMessage]) -> bool,
    ) -> Vec<ReceivedMessage> {
        // Real time, also in tests with paused tokio time: the server is another process.
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if done(&messages) {
                return messages;
            }
            if Instant::now() >= deadline {
                let running = if self.child.is_some() {
                    "running"
                } else {
                    "stopped"
                };
                panic!(
                    "timed out after {timeout:?} waiting for the expected mail on the SMTP \
                     server ({running}, {}); {} received:\n{}",
                    self.url(),
                    messages.len(),
                    summarise(&messages)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server: its port refuses connections until [`restart`](Self::restart); the
    /// messages received so far stay readable. Does nothing when already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the messages received before (stops it
    /// first when running). Retries for a while when the port cannot be bound yet.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(why) if Instant::now() >= deadline => panic!(
                    "the SMTP server (aiosmtpd) did not start again on port {} within \
                     {REBIND_TIMEOUT:?}: {why}",
                    self.port
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The PEM certificate of the authority that signed a [`SmtpServer::start_tls`] server's
    /// certificate.
    pub fn ca_file(&self) -> PathBuf {
        assert!(
            self.tls.is_some(),
            "only a server started with start_tls has a CA"
        );
        self.dir.path().join("ca.pem")
    }

    /// The STARTTLS URL of a [`SmtpServer::start_tls`] server (lettre's format).
    pub fn tls_url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=required", self.port)
    }

    fn message_dir(&self) -> PathBuf {
        self.dir.path().join("messages")
    }

    /// Runs the server on `self.port` and waits for its greeting; on failure it is killed and
    /// the error carries its output.
    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).expect("SMTP server log file");
        let child = Command::new(&self.python)
            .arg("-u")
            .arg(self.dir.path().join("server.py"))
            .arg("127.0.0.1")
            .arg(self.port.to_string())
            .arg(self.message_dir())
            .arg(std::process::id().to_string())
            .args(self.tls.iter().flat_map(|(cert, key)| [cert, key]))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("SMTP server log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.python.display()));
        self.child = Some(child);
        match self.wait_until_ready() {
            Ok(()) => Ok(()),
            Err(why) => {
                self.stop();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                Err(format!("{why}\n--- the server's output ---\n{log}"))
            }
        }
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("a server process");
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("aiosmtpd exited with {status}"));
            }
            // Another server may have taken the port found free: only this one's will do.
            let ours = format!("aiosmtpd pid {}", child.id());
            match greeting(self.port) {
                Ok(line) if line.starts_with("220") && line.ends_with(&ours) => return Ok(()),
                Ok(line) => return Err(format!("port {} greets with {line:?}", self.port)),
                Err(_) => {}
            }
            if Instant::now() > deadline {
                return Err(format!("aiosmtpd did not greet within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes, in `dir`, an authority (`ca.pem`) and a server certificate for `127.0.0.1` signed by
/// it (`cert.pem`, key `key.pem`), valid for two days; returns the certificate's and the key's
/// paths.
fn make_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("the TLS test mail server needs the openssl command ({e}): apt-get install openssl")
            });
        assert!(
            output.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=BuyTicket test mail CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .expect("writing the certificate's extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The first line an SMTP server sends on a new connection (the connection then says QUIT).
fn greeting(port: u16) -> std::io::Result<String> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let _ = (&stream).write_all(b"QUIT\r\n");
    Ok(line.trim_end().to_owned())
}

/// One line per message, for failure messages.
fn summarise(messages: &[ReceivedMessage]) -> String {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            format!(
                "  {}. from {:?} to {:?}, subject {:?}\n",
                i + 1,
                m.mail_from,
                m.rcpt_tos,
                m.header("Subject").unwrap_or_default()
            )
        })
        .collect()
}

/// One message as the SMTP server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`), in order, without angle brackets.
    pub rcpt_tos: Vec<String>,
    /// The DATA content as received (dot-stuffing undone), read as UTF-8 (invalid bytes
    /// replaced); lines end with CRLF as on the wire.
    pub raw: String,
}

impl ReceivedMessage {
    /// The first header called `name` (case-insensitive), unfolded, trimmed and with RFC 2047
    /// encoded-words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) decoded; `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = split_head_body(&self.raw);
        header_value(&parse_headers(head), name).map(|value| decode_encoded_words(value.trim()))
    }

    /// The text of the message's `text/plain` part, decoded (quoted-printable, base64, 7bit,
    /// 8bit) with line ends as `\n`: the message itself when single-part, else the first
    /// `text/plain` part that is not an attachment, searched depth-first through multipart
    /// parts (e.g. `multipart/alternative`). The line break that ends the DATA content is not
    /// part of the text. Panics, showing the message, when there is no such part.
    pub fn text_body(&self) -> String {
        let raw = strip_line_break(&self.raw);
        text_plain(raw).unwrap_or_else(|| {
            panic!(
                "the message has no text/plain part:\n{}",
                self.raw.replace("\r\n", "\n")
            )
        })
    }
}

/// Splits a message or MIME part at the first empty line into header block and body.
fn split_head_body(entity: &str) -> (&str, &str) {
    let mut offset = 0;
    for line in entity.split_inclusive('\n') {
        if line.trim_end_matches(['\r', '\n']).is_empty() {
            return (&entity[..offset], &entity[offset + line.len()..]);
        }
        offset += line.len();
    }
    (entity, "")
}

/// `(name, unfolded raw value)` of every header, in order.
fn parse_headers(head: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            // Unfolding removes the line break before the whitespace.
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.to_owned()));
        }
    }
    headers
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Removes one trailing line break (CRLF or LF).
fn strip_line_break(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

/// The decoded text of the first `text/plain` entity in `entity`, depth-first.
fn text_plain(entity: &str) -> Option<String> {
    let (head, body) = split_head_body(entity);
    let headers = parse_headers(head);
    let (mime_type, params) =
        parse_content_type(header_value(&headers, "Content-Type").unwrap_or("text/plain"));
    if mime_type.starts_with("multipart/") {
        let boundary = param(&params, "boundary")?;
        return multipart_parts(body, boundary)
            .into_iter()
            .find_map(text_plain);
    }
    let attachment = header_value(&headers, "Content-Disposition")
        .is_some_and(|d| parse_content_type(d).0.eq_ignore_ascii_case("attachment"));
    if mime_type != "text/plain" || attachment {
        return None;
    }
    let encoding = header_value(&headers, "Content-Transfer-Encoding")
        .unwrap_or("7bit")
        .trim()
        .to_ascii_lowercase();
    let charset = param(&params, "charset")
        .and_then(Charset::parse)
        .unwrap_or(Charset::Utf8);
    let text = match encoding.as_str() {
        "base64" => charset.decode(
            &base64_decode(body)
                .unwrap_or_else(|| panic!("the text/plain part is not valid base64:\n{body}")),
        ),
        "quoted-printable" => charset.decode(&quoted_printable_decode(body)),
        // 7bit, 8bit, binary: the text as it is.
        _ => body.to_owned(),
    };
    Some(text.replace("\r\n", "\n"))
}

/// The type (lowercase) and the `name=value` parameters (names lowercase, quotes removed) of a
/// `Content-Type`-like header value.
fn parse_content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => {
                field.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    let mut fields = fields.into_iter();
    let mime_type = fields
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let params = fields
        .filter_map(|f| {
            let (name, value) = f.split_once('=')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    (mime_type, params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value.as_str())
}

/// The body parts of a multipart body (RFC 2046): the preamble and epilogue are dropped, and
/// so is the line break before each delimiter, which belongs to the delimiter.
fn multipart_parts<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut part_start: Option<usize> = None;
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        let content = line
            .trim_end_matches(['\r', '\n'])
            .trim_end_matches([' ', '\t']);
        let closing = content == close;
        if closing || content == delimiter {
            if let Some(start) = part_start {
                parts.push(strip_line_break(&body[start..offset]));
            }
            if closing {
                return parts;
            }
            part_start = Some(offset + line.len());
        }
        offset += line.len();
    }
    // No close delimiter: the last part runs to the end.
    if let Some(start) = part_start {
        parts.push(&body[start..]);
    }
    parts
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    Utf8,
    Latin1,
}

impl Charset {
    /// UTF-8 (and its subset US-ASCII) and ISO-8859-1; `None` for others.
    fn parse(name: &str) -> Option<Self> {
        // RFC 2231 lets a language follow: `utf-8*en`.
        let name = name.split('*').next().unwrap_or_default().trim();
        match name.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" | "us-ascii" | "ascii" => Some(Self::Utf8),
            "iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" => Some(Self::Latin1),
            _ => None,
        }
    }

    /// Text from bytes: invalid UTF-8 is replaced.
    fn decode(self, bytes: &[u8]) -> String {
        match self {
            Self::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Self::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
        }
    }
}

/// Decodes the RFC 2047 encoded-words of a header value. Whitespace between two adjacent
/// encoded-words is dropped, and their bytes are joined before decoding, so a character split
/// across two words comes out whole. Words in charsets other than UTF-8, US-ASCII and
/// ISO-8859-1, or malformed ones, stay as they are.
fn decode_encoded_words(value: &str) -> String {
    let mut out = String::new();
    // The bytes of the encoded-words read but not decoded yet, and their charset.
    let mut pending: Option<(Charset, Vec<u8>)> = None;
    let mut rest = value;
    while let Some((start, end, charset, bytes)) = find_encoded_word(rest) {
        let before = &rest[..start];
        // Whitespace between two encoded-words is not text.
        let adjacent = before.chars().all(char::is_whitespace);
        match pending.as_mut() {
            Some((pending_charset, pending_bytes)) if adjacent && *pending_charset == charset => {
                pending_bytes.extend_from_slice(&bytes);
            }
            _ => {
                match pending.take() {
                    Some((pending_charset, pending_bytes)) => {
                        out.push_str(&pending_charset.decode(&pending_bytes));
                        if !adjacent {
                            out.push_str(before);
                        }
                    }
                    None => out.push_str(before),
                }
                pending = Some((charset, bytes));
            }
        }
        rest = &rest[end..];
    }
    if let Some((charset, bytes)) = pending {
        out.push_str(&charset.decode(&bytes));
    }
    out.push_str(rest);
    out
}

/// The first well-formed encoded-word `=?charset?B|Q?text?=` in `text`: where it starts and
/// ends, its charset and its decoded bytes.
fn find_encoded_word(text: &str) -> Option<(usize, usize, Charset, Vec<u8>)> {
    let mut search_from = 0;
    while let Some(found) = text[search_from..].find("=?") {
        let start = search_from + found;
        if let Some((len, charset, bytes)) = parse_encoded_word(&text[start..]) {
            return Some((start, start + len, charset, bytes));
        }
        search_from = start + 2;
    }
    None
}

/// Parses an encoded-word at the start of `text`: its length, charset and decoded bytes.
fn parse_encoded_word(text: &str) -> Option<(usize, Charset, Vec<u8>)> {
    let inner = text.strip_prefix("=?")?;
    let (charset_name, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let (encoded, _) = inner.split_once("?=")?;
    let token = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    if !token(charset_name) || !token(encoding) || encoded.contains(char::is_whitespace) {
        return None;
    }
    let charset = Charset::parse(charset_name)?;
    let bytes = match encoding {
        "B" | "b" => base64_decode(encoded)?,
        "Q" | "q" => q_decode(encoded),
        _ => return None,
    };
    let len = "=?".len() + charset_name.len() + 1 + encoding.len() + 1 + encoded.len() + 2;
    Some((len, charset, bytes))
}

/// The "Q" encoding of RFC 2047: `_` is a space, `=XX` a byte.
fn q_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex_byte(&bytes[i + 1..])) {
            (b'_', _) => out.push(b' '),
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    out
}

/// The byte of two hex digits at the start of `digits`.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let high = char::from(*digits.first()?).to_digit(16)?;
    let low = char::from(*digits.get(1)?).to_digit(16)?;
    u8::try_from(high * 16 + low).ok()
}

/// Quoted-printable (RFC 2045): `=XX` is a byte, `=` at a line's end a soft line break; the
/// whitespace that ends a line is dropped and hard line breaks come out as CRLF.
fn quoted_printable_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.trim_end_matches([' ', '\t']);
        let (line, soft_break) = match line.strip_suffix('=') {
            Some(line) => (line, true),
            None => (line, false),
        };
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match (bytes[i], hex_byte(&bytes[i + 1..])) {
                (b'=', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        if !soft_break && lines.peek().is_some() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Standard base64 with or without padding; whitespace (line breaks) is skipped. `None` on any
/// other character outside the alphabet.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for b in text.bytes() {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).unwrap_or_default());
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The virtualenv's interpreter, with aiosmtpd installed; installs it first when missing.
fn ensure_installed() -> PathBuf {
    PythonTool {
        name: "aiosmtpd",
        version: AIOSMTPD_VERSION,
        requirement: &format!("aiosmtpd=={AIOSMTPD_VERSION}"),
        import_check: &format!(
            "import aiosmtpd, aiosmtpd.smtp; assert aiosmtpd.__version__ == {AIOSMTPD_VERSION:?}"
        ),
        needed_by: "the mail tests (aiosmtpd)",
        install_time: "seconds",
    }
    .ensure()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(raw: &str) -> ReceivedMessage {
        ReceivedMessage {
            mail_from: "sender@example.test".to_owned(),
            rcpt_tos: vec!["buyer@example.test".to_owned()],
            // As on the wire: CRLF line ends, and the DATA content ends with a line break.
            raw: format!("{}\r\n", raw.replace('\n', "\r\n")),
        }
    }

    #[test]
    fn header_is_case_insensitive_unfolded_and_the_first() {
        let m = message(
            "From: Box Office <office@example.test>\n\
             X-Tag: one\n\
             Subject: a long subject\n\
             \tfolded over\n  two lines\n\
             x-tag: two\n\
             \n\
             Subject: not a header, the body\n",
        );
        assert_eq!(
            m.header("subject").as_deref(),
            Some("a long subject\tfolded over  two lines")
        );
        assert_eq!(m.header("X-TAG").as_deref(), Some("one"));
        assert_eq!(
            m.header("from").as_deref(),
            Some("Box Office <office@example.test>")
        );
        assert_eq!(m.header("To"), None);
    }

    #[test]
    fn header_decodes_encoded_words() {
        let subject = |s: &str| message(&format!("Subject: {s}\n\nbody")).header("Subject");
        // B and Q, any case of charset and encoding.
        assert_eq!(
            subject("=?utf-8?b?Vm9zIGJpbGxldHMg4oCUIEbDqnRlIOKckw==?=").as_deref(),
            Some("Vos billets — Fête ✓")
        );
        assert_eq!(
            subject("=?UTF-8?Q?Caf=C3=A9_cr=C3=A8me?=").as_deref(),
            Some("Café crème")
        );
        // Adjacent words: the whitespace (here a fold) between them goes, and a character
        // split across them comes out whole.
        assert_eq!(
            subject("=?utf-8?b?Vm9zIGJpbGxldHMg4g==?=\n =?utf-8?b?gJQgRsOqdGUg4pyT?=").as_deref(),
            Some("Vos billets — Fête ✓")
        );
        // Mixed with plain text, whose whitespace stays.
        assert_eq!(
            subject("Re:  =?utf-8?q?caf=C3=A9?= and =?utf-8?q?th=C3=A9?= ok").as_deref(),
            Some("Re:  café and thé ok")
        );
        assert_eq!(
            subject("=?iso-8859-1?q?d=E9j=E0?=").as_deref(),
            Some("déjà")
        );
        assert_eq!(
            subject("=?utf-8*fr?Q?=C3=A9t=C3=A9?=").as_deref(),
            Some("été")
        );
        // What is not a well-formed word in a known charset stays as it is.
        assert_eq!(
            subject("=?koi8-r?b?8NLJ18XU?= =?utf-8?x?abc?= =?utf-8?q?no end").as_deref(),
            Some("=?koi8-r?b?8NLJ18XU?= =?utf-8?x?abc?= =?utf-8?q?no end")
        );
        assert_eq!(subject("1 + 1 =? 2").as_deref(), Some("1 + 1 =? 2"));
    }

    #[test]
    fn text_body_of_a_single_part_message() {
        // No Content-Type: text/plain, 7bit.
        let m = message("Subject: hi\n\nHello,\nyour tickets are attached.");
        assert_eq!(m.text_body(), "Hello,\nyour tickets are attached.");
        // 8bit UTF-8.
        let m = message(
            "Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: 8bit\n\
             \n\
             Merci, Zoé !\n",
        );
        assert_eq!(m.text_body(), "Merci, Zoé !\n");
        // LF line ends only, as some clients send.
        let m = ReceivedMessage {
            raw: "Subject: hi\n\nline 1\nline 2\n".to_owned(),
            ..message("")
        };
        assert_eq!(m.text_body(), "line 1\nline 2");
    }

    #[test]
    fn text_body_decodes_quoted_printable() {
        let m = message(
            "Content-Type: text/plain; charset=\"UTF-8\"\n\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             Total : 42 =E2=82=AC =E2=80=94 =C3=A0 bient=C3=B4t, a very long line that i=\n\
             s wrapped softly; 1+1=3D2  \n\
             =3D=3D end",
        );
        assert_eq!(
            m.text_body(),
            "Total : 42 € — à bientôt, a very long line that is wrapped softly; 1+1=2\n== end"
        );
        let m = message(
            "Content-Type: text/plain; charset=ISO-8859-1\n\
             Content-Transfer-Encoding: Quoted-Printable\n\
             \n\
             d=E9j=E0 = not an escape =ZZ",
        );
        assert_eq!(m.text_body(), "déjà = not an escape =ZZ");
    }

    #[test]
    fn text_body_decodes_base64() {
        let m = message(
            "Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: base64\n\
             \n\
             Qm9uam91ciBab8OpLA0Kdm90cmUgY29tbWFuZGUgZXN0IGNv\n\
             bmZpcm3DqWUuDQo=",
        );
        assert_eq!(
            m.text_body(),
            "Bonjour Zoé,\nvotre commande est confirmée.\n"
        );
    }

    #[test]
    fn text_body_of_multipart_alternative() {
        let m = message(
            "MIME-Version: 1.0\n\
             Content-Type: multipart/alternative;\n \
             boundary=\"=_b0undary; x\"\n\
             \n\
             This is the preamble.\n\
             --=_b0undary; x\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             Vos billets pour =C2=AB Fest =C2=BB\n\
             \n\
             --=_b0undary; x\n\
             Content-Type: text/html; charset=utf-8\n\
             \n\
             <p>Vos billets</p>\n\
             --=_b0undary; x--\n\
             epilogue",
        );
        // The line break before the delimiter belongs to it; the empty line before it does not.
        assert_eq!(m.text_body(), "Vos billets pour « Fest »\n");
    }

    #[test]
    fn text_body_searches_nested_multiparts_and_skips_attachments() {
        let m = message(
            "Content-Type: multipart/mixed; boundary=outer\n\
             \n\
             --outer\n\
             Content-Type: text/plain\n\
             Content-Disposition: attachment; filename=\"terms.txt\"\n\
             \n\
             Terms and conditions\n\
             --outer\n\
             Content-Type: multipart/alternative; boundary=\"inner\"\n\
             \n\
             --inner\n\
             Content-Type: text/html\n\
             \n\
             <b>hi</b>\n\
             --inner\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: base64\n\
             \n\
             Q2Fmw6k=\n\
             --inner--\n\
             --outer--",
        );
        assert_eq!(m.text_body(), "Café");
    }

    #[test]
    #[should_panic(expected = "no text/plain part")]
    fn text_body_panics_without_a_text_part() {
        message("Content-Type: text/html\n\n<p>only html</p>").text_body();
    }

    #[test]
    fn base64_and_q() {
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("YWI").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64_decode("YWJj\r\nZA==").as_deref(), Some(&b"abcd"[..]));
        assert_eq!(base64_decode("YW*j"), None);
        assert_eq!(q_decode("a_b=3Fc=4"), b"a b?c=4");
    }
}
