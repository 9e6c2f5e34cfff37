//! Ticket files: what kind a file is ([`FileKind`], by its bytes' signature only), where it is
//! kept ([`FileKey`], content-addressed per ticket) and the store that keeps it ([`FileStore`]).
//!
//! [`FileStore`] is a cheap-to-clone handle over the `object_store` crate: a local directory in
//! `up` ([`FileStore::local`]), an S3-compatible store in `serve` ([`FileStore::s3`]), both
//! chosen from a URL by [`FileStore::from_url`]; [`FileStore::memory`] for unit tests. Its
//! operations fail with a [`FileError`], which becomes an [`ApiError`]: `503` + `Retry-After`
//! when the store cannot be reached or timed out, `500` otherwise. Configuration mistakes are a
//! [`FileConfigError`] whose message names the variable the operator has to set.
//!
//! Callers write the object first, point the database row at it after, and delete the old
//! object after the commit: a crash leaves at worst an orphan object, never a row that names
//! nothing (docs/ARCHITECTURE.md, "Ticket files").

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bt_contract::error::ApiError;
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::http::Check;

/// The largest ticket file accepted (5 MiB).
pub const MAX_FILE_BYTES: usize = 5 * 1024 * 1024;

/// The variable that holds the store's URL (`file:///...` or `s3://<bucket>`), as named in the
/// configuration errors.
pub const URL_VAR: &str = "FILE_STORE_URL";
/// The S3 endpoint, for a store other than AWS itself (MinIO, Ceph, moto, ...).
pub const ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL";
/// The S3 access key id.
pub const ACCESS_KEY_VAR: &str = "AWS_ACCESS_KEY_ID";
/// The S3 secret access key.
pub const SECRET_KEY_VAR: &str = "AWS_SECRET_ACCESS_KEY";
/// The S3 region (default [`DEFAULT_REGION`]).
pub const REGION_VAR: &str = "AWS_REGION";
/// The region used when [`REGION_VAR`] is not set.
pub const DEFAULT_REGION: &str = "us-east-1";

bt_contract::text_enum! {
    /// What a ticket file is, decided by its bytes ([`FileKind::sniff`]), never by a name or a
    /// `Content-Type` the client sent. Stored as TEXT (`pdf`, `png`, `jpeg`).
    pub enum FileKind {
        Pdf = "pdf",
        Png = "png",
        Jpeg = "jpeg",
    }
}

impl FileKind {
    /// The kind whose signature `bytes` starts with: PDF `%PDF-`, PNG its 8-byte signature,
    /// JPEG `FF D8 FF`. Anything else (a text file renamed `.pdf`, too few bytes) is `None`.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        const PDF: &[u8] = b"%PDF-";
        const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
        const JPEG: &[u8] = b"\xFF\xD8\xFF";
        if bytes.starts_with(PDF) {
            Some(Self::Pdf)
        } else if bytes.starts_with(PNG) {
            Some(Self::Png)
        } else if bytes.starts_with(JPEG) {
            Some(Self::Jpeg)
        } else {
            None
        }
    }

    /// The media type to serve the file with.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
        }
    }

    /// The file name extension, without the dot (for `Content-Disposition`).
    pub const fn extension(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Png => "png",
            Self::Jpeg => "jpg",
        }
    }
}

/// The longest key accepted, in bytes.
const MAX_KEY_BYTES: usize = 512;

/// Where an object lives in the store: `/`-separated segments of ASCII letters, digits, `-`,
/// `_` and `.`, none empty, `.` or `..` — the same object on a local disk and in a bucket,
/// and never outside the store's directory. Ticket files are
/// `tickets/<ticket id>/<sha256 of the bytes, hex>` ([`FileKey::for_ticket`]).
///
/// Stored as TEXT; a key read from the database that is not valid is a decode error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey(String);

/// A text that is not a valid [`FileKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid file key {key:?}: {reason}")]
pub struct InvalidKey {
    pub key: String,
    pub reason: &'static str,
}

impl FileKey {
    /// A key as read back (from the database): checked, never trusted.
    pub fn parse(key: impl Into<String>) -> Result<Self, InvalidKey> {
        let key = key.into();
        let refuse = |reason| {
            Err(InvalidKey {
                key: key.clone(),
                reason,
            })
        };
        if key.is_empty() {
            return refuse("it is empty");
        }
        if key.len() > MAX_KEY_BYTES {
            return refuse("it is longer than 512 bytes");
        }
        for segment in key.split('/') {
            if segment.is_empty() {
                return refuse("it has an empty segment (a leading, trailing or double `/`)");
            }
            if segment == "." || segment == ".." {
                return refuse("it has a `.` or `..` segment");
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return refuse("only ASCII letters, digits, `-`, `_`, `.` and `/` are allowed");
            }
        }
        Ok(Self(key))
    }

    /// The key of a ticket's file: `tickets/<ticket id>/<sha256 of bytes, lower-case hex>`. The
    /// same bytes for the same ticket are the same key; new bytes are a new key, so replacing
    /// a file never overwrites the object a committed row still names. (After a replacement
    /// commits, delete the old key only when it differs from the new one.)
    pub fn for_ticket(
        ticket: &bt_contract::ids::TicketId,
        bytes: &[u8],
    ) -> Result<Self, InvalidKey> {
        let id = ticket.as_str();
        if id.contains('/') {
            return Err(InvalidKey {
                key: format!("tickets/{id}/..."),
                reason: "a ticket id is one segment, without `/`",
            });
        }
        let digest = hex::encode(Sha256::digest(bytes));
        Self::parse(format!("tickets/{id}/{digest}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn path(&self) -> ObjectPath {
        // Every valid key is a valid object path (no empty, `.` or `..` segments).
        ObjectPath::from_iter(self.0.split('/'))
    }
}

impl fmt::Display for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for FileKey {
    type Err = InvalidKey;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        Self::parse(key)
    }
}

impl<DB: sqlx::Database> sqlx::Type<DB> for FileKey
where
    str: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <str as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <str as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for FileKey
where
    &'r str: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
        Ok(Self::parse(text)?)
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for FileKey
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut DB::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, DB>>::encode_by_ref(&self.0, buf)
    }
}

/// How to reach an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// The endpoint of a store other than AWS (`http://127.0.0.1:9000`); `None` for AWS.
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// Allow an `http://` endpoint (a store on the local network).
    pub allow_http: bool,
}

/// A store that could not be set up, with what the operator has to change.
#[derive(Debug, thiserror::Error)]
pub enum FileConfigError {
    /// The URL is not one this version understands.
    #[error(
        "{URL_VAR} must be file:///<absolute directory> or s3://<bucket> ({problem}), e.g. \
         file:///var/lib/buyticket/files or s3://buyticket-files"
    )]
    Url { problem: String },
    /// An S3 setting is missing or wrong.
    #[error("{0}")]
    S3(String),
    /// The local directory could not be created or opened.
    #[error(
        "cannot use {} as the file directory: {source}; point {URL_VAR} (or --data-dir) at a \
         directory this process may create and write",
        path.display()
    )]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A file operation that failed. Converts into an [`ApiError`]: `503` + `Retry-After` when the
/// store is [unavailable](FileError::is_unavailable), `500` otherwise.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The store could not be reached, or did not answer in time: it may pass by itself.
    #[error("the file store is unavailable ({op} {key}): {source}")]
    Unavailable {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// Any other failure (refused credentials, a full disk, a malformed answer).
    #[error("the file store failed ({op} {key}): {source}")]
    Failed {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
}

impl FileError {
    fn new(op: &'static str, key: &str, source: object_store::Error) -> Self {
        let key = key.to_owned();
        if is_unreachable(&source) {
            Self::Unavailable { op, key, source }
        } else {
            Self::Failed { op, key, source }
        }
    }

    /// Whether the store could not be reached or timed out (a client may retry).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// An unreachable store is a dependency that is down, not a bug: `503` + `Retry-After: 1`,
/// logged as a warning at most once every
/// [`OUTAGE_WARNING_EVERY_SECS`](bt_contract::error::OUTAGE_WARNING_EVERY_SECS) seconds. Anything
/// else is a `500`, logged once where the response is made.
impl From<FileError> for ApiError {
    fn from(err: FileError) -> Self {
        if err.is_unavailable() {
            warn_outage(&err);
            ApiError::retry_later("Service is temporarily unavailable, please try again", 1)
        } else {
            ApiError::internal(err)
        }
    }
}

fn warn_outage(err: &FileError) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    let what = "file store unavailable (file requests answer 503 until it is back)";
    if now >= last + bt_contract::error::OUTAGE_WARNING_EVERY_SECS
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(error = %err, "{what}");
    } else {
        tracing::debug!(error = %err, "{what}");
    }
}

/// Whether an error of the store is a connection that failed or a request that timed out or
/// was cut off: the HTTP client's own classification, found in the error's sources.
fn is_unreachable(err: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        source = e.source();
    }
    false
}

/// How long connecting to an S3 store may take before the request fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request to an S3 store may take (a 5 MiB upload included). A request that
/// timed out is not retried (the retries stop 5 s after the first attempt), so a store that
/// hangs answers 503 within about 10 s, before the server's own 30 s request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes ring's rustls crypto provider the process default, unless one is already (installed
/// by an earlier call, or by other code of the process: any provider will do).
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An error is another thread that installed one first.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The store that keeps ticket files. Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<dyn ObjectStore>,
    /// What the store is, for logs (`local directory /var/...`, `s3://bucket at ...`).
    description: Arc<str>,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FileStore").field(&self.description).finish()
    }
}

impl fmt::Display for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl FileStore {
    /// Files under `dir`, which is created (mode 0700 on unix) when missing.
    pub fn local(dir: impl AsRef<Path>) -> Result<Self, FileConfigError> {
        let dir = dir.as_ref();
        let directory_error = |source| FileConfigError::Directory {
            path: dir.to_owned(),
            source,
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(directory_error)?;
        let dir = std::fs::canonicalize(dir).map_err(directory_error)?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| directory_error(std::io::Error::other(e)))?;
        Ok(Self {
            inner: Arc::new(store),
            description: format!("local directory {}", dir.display()).into(),
        })
    }

    /// Files in an S3 bucket (AWS, or any S3-compatible store at `config.endpoint`).
    ///
    /// Installs ring's rustls crypto provider as the process default when none is: the HTTP
    /// client (reqwest 0.13 without a built-in provider, so no aws-lc-rs) takes the process
    /// default, and would panic building its TLS configuration without one.
    pub fn s3(config: S3Config) -> Result<Self, FileConfigError> {
        install_crypto_provider();
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(config.secret_access_key.expose_secret())
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_timeout(REQUEST_TIMEOUT),
            )
            // A request answers within seconds, not the crate's default of minutes of retries:
            // an unreachable store becomes a 503 the client can retry.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 2,
                retry_timeout: Duration::from_secs(5),
            });
        if let Some(endpoint) = &config.endpoint {
            // Path-style requests (`<endpoint>/<bucket>/<key>`), which every S3-compatible
            // store understands.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|e| {
            FileConfigError::S3(format!(
                "cannot use the S3 bucket {:?}: {e}; check {URL_VAR}, {ENDPOINT_VAR} and \
                 {REGION_VAR}",
                config.bucket
            ))
        })?;
        let description = match &config.endpoint {
            Some(endpoint) => format!("s3://{} at {endpoint}", config.bucket),
            None => format!("s3://{} in {}", config.bucket, config.region),
        };
        Ok(Self {
            inner: Arc::new(store),
            description: description.into(),
        })
    }

    /// Files in memory, for unit tests.
    pub fn memory() -> Self {
        Self {
            inner: Arc::new(InMemory::new()),
            description: "memory".into(),
        }
    }

    /// The store a URL names: `file:///<absolute directory>` or `s3://<bucket>`, the S3
    /// settings read through `env` ([`ENDPOINT_VAR`], [`ACCESS_KEY_VAR`], [`SECRET_KEY_VAR`],
    /// [`REGION_VAR`]; an empty value counts as unset). `http://` endpoints are allowed (a
    /// store on the local network). Pass `|name| std::env::var(name).ok()` to read the
    /// process's environment.
    pub fn from_url(
        url: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, FileConfigError> {
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let url_error = |problem: &str| FileConfigError::Url {
            problem: problem.to_owned(),
        };
        let parsed =
            url::Url::parse(url.trim()).map_err(|e| url_error(&format!("it is not a URL: {e}")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(url_error(&format!(
                "it must not hold credentials: put them in {ACCESS_KEY_VAR} and \
                 {SECRET_KEY_VAR}"
            )));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(url_error("it must not have a query or a fragment"));
        }
        match parsed.scheme() {
            "file" => {
                if parsed
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(url_error(
                        "a file URL names a directory of this machine: file:///<absolute path>, \
                         with three slashes",
                    ));
                }
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| url_error("its path is not an absolute directory"))?;
                Self::local(dir)
            }
            "s3" => {
                let bucket = parsed.host_str().unwrap_or_default();
                if bucket.is_empty() {
                    return Err(url_error("it names no bucket: s3://<bucket>"));
                }
                if !matches!(parsed.path(), "" | "/") {
                    return Err(url_error(
                        "an s3 URL names a bucket only (s3://<bucket>); files are kept at the \
                         bucket's top level",
                    ));
                }
                let missing: Vec<&str> = [ACCESS_KEY_VAR, SECRET_KEY_VAR]
                    .into_iter()
                    .filter(|name| env(name).is_none())
                    .collect();
                if !missing.is_empty() {
                    return Err(FileConfigError::S3(format!(
                        "{URL_VAR} is an S3 bucket ({url}) but {} {} not set: set \
                         {ACCESS_KEY_VAR} and {SECRET_KEY_VAR} to the bucket's access key id \
                         and secret access key",
                        missing.join(" and "),
                        if missing.len() == 1 { "is" } else { "are" },
                        url = url.trim(),
                    )));
                }
                let endpoint = env(ENDPOINT_VAR);
                let allow_http = match &endpoint {
                    None => false,
                    Some(endpoint) => match url::Url::parse(endpoint) {
                        Ok(e) if e.scheme() == "http" => true,
                        Ok(e) if e.scheme() == "https" => false,
                        _ => {
                            return Err(FileConfigError::S3(format!(
                                "{ENDPOINT_VAR} must be the S3 endpoint's http:// or https:// \
                                 URL, e.g. http://127.0.0.1:9000 (got {endpoint:?}); leave it \
                                 unset for AWS itself"
                            )));
                        }
                    },
                };
                Self::s3(S3Config {
                    bucket: bucket.to_owned(),
                    region: env(REGION_VAR).unwrap_or_else(|| DEFAULT_REGION.to_owned()),
                    endpoint,
                    access_key_id: env(ACCESS_KEY_VAR).unwrap_or_default(),
                    secret_access_key: env(SECRET_KEY_VAR).unwrap_or_default().into(),
                    allow_http,
                })
            }
            other => Err(url_error(&format!("its scheme is {other:?}"))),
        }
    }

    /// Writes `bytes` at `key`, replacing what was there. Atomic: a reader sees the old
    /// object or the new one, never part of one.
    #[tracing::instrument(level = "debug", skip_all, fields(key = %key, bytes = bytes.len()))]
    pub async fn put(&self, key: &FileKey, bytes: Bytes) -> Result<(), FileError> {
        self.inner
            .put(&key.path(), PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(|e| FileError::new("put", key.as_str(), e))
    }

    /// The object at `key`, or `None` when there is none.
    #[tracing::instrument(level = "debug", skip_all, fields(key = %key))]
    pub async fn get(&self, key: &FileKey) -> Result<Option<Bytes>, FileError> {
        let result = match self.inner.get(&key.path()).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(FileError::new("get", key.as_str(), e)),
        };
        match result.bytes().await {
            Ok(bytes) => Ok(Some(bytes)),
            // Deleted between the answer's head and its body (a local file).
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(FileError::new("get", key.as_str(), e)),
        }
    }

    /// Deletes the object at `key`; deleting one that is not there is not an error.
    #[tracing::instrument(level = "debug", skip_all, fields(key = %key))]
    pub async fn delete(&self, key: &FileKey) -> Result<(), FileError> {
        match self.inner.delete(&key.path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(FileError::new("delete", key.as_str(), e)),
        }
    }

    /// A cheap request that succeeds only when the store answers and the bucket (or
    /// directory) is there: a listing of a prefix that holds nothing.
    pub async fn check(&self) -> Result<(), FileError> {
        let prefix = ObjectPath::from("readiness-check");
        self.inner
            .list_with_delimiter(Some(&prefix))
            .await
            .map(drop)
            .map_err(|e| FileError::new("check", "", e))
    }

    /// A `/readyz` check named `name` that runs [`FileStore::check`].
    pub fn readiness_check(&self, name: impl Into<String>) -> Check {
        let store = self.clone();
        Check::new(name, move || {
            let store = store.clone();
            async move { store.check().await.map_err(|e| e.to_string()) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_recognises_each_kind_by_its_signature() {
        let cases: &[(&[u8], FileKind, &str)] = &[
            (
                b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj",
                FileKind::Pdf,
                "a PDF",
            ),
            (b"%PDF-", FileKind::Pdf, "the bare PDF signature"),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", FileKind::Png, "a PNG"),
            (
                b"\x89PNG\r\n\x1a\n",
                FileKind::Png,
                "the bare PNG signature",
            ),
            (
                b"\xFF\xD8\xFF\xE0\0\x10JFIF\0",
                FileKind::Jpeg,
                "a JFIF JPEG",
            ),
            (
                b"\xFF\xD8\xFF\xE1\0\x10Exif\0",
                FileKind::Jpeg,
                "an Exif JPEG",
            ),
            (
                b"\xFF\xD8\xFF",
                FileKind::Jpeg,
                "the bare JPEG signature (3 bytes)",
            ),
        ];
        for (bytes, kind, what) in cases {
            assert_eq!(FileKind::sniff(bytes), Some(*kind), "{what}");
        }
    }

    #[test]
    fn sniffing_refuses_anything_else() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"%PD", "3 bytes of a PDF signature"),
            (b"\x89PN", "3 bytes of a PNG signature"),
            (b"\xFF\xD8", "2 bytes of a JPEG signature"),
            (b"\xFF\xD8\x00", "3 bytes that are not a JPEG signature"),
            (b"%PDF", "a PDF signature without its dash"),
            (b"\x89PNG\r\n\x1a", "7 of the PNG signature's 8 bytes"),
            (
                b"This is my ticket, renamed ticket.pdf\n",
                "a text file renamed .pdf",
            ),
            (b" %PDF-1.7", "a PDF signature that does not start the file"),
            (b"<html><body>ticket</body></html>", "HTML"),
            (b"GIF89a\x01\0\x01\0", "a GIF"),
            (b"PK\x03\x04", "a ZIP"),
        ];
        for (bytes, what) in cases {
            assert_eq!(FileKind::sniff(bytes), None, "{what}");
        }
    }

    #[test]
    fn a_kind_has_a_media_type_an_extension_and_a_text_form() {
        let cases = [
            (FileKind::Pdf, "application/pdf", "pdf", "pdf"),
            (FileKind::Png, "image/png", "png", "png"),
            (FileKind::Jpeg, "image/jpeg", "jpg", "jpeg"),
        ];
        for (kind, content_type, extension, text) in cases {
            assert_eq!(kind.content_type(), content_type, "{kind:?}");
            assert_eq!(kind.extension(), extension, "{kind:?}");
            assert_eq!(kind.as_str(), text, "{kind:?}");
            assert_eq!(text.parse::<FileKind>(), Ok(kind), "{kind:?}");
        }
        assert_eq!(FileKind::ALL.len(), cases.len(), "every kind is covered");
    }

    #[test]
    fn an_unknown_kind_read_back_is_an_error() {
        for text in ["gif", "PDF", "", "jpg", "application/pdf"] {
            assert!(text.parse::<FileKind>().is_err(), "{text:?}");
        }
    }

    #[test]
    fn valid_keys_are_accepted() {
        for key in [
            "tickets/0190a0b2-7c3e-7d4f-8a9b-0123456789ab/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "a",
            "a/b/c",
            "file.pdf",
            "x_y-z.1",
        ] {
            let parsed = FileKey::parse(key);
            assert_eq!(parsed.as_ref().map(FileKey::as_str), Ok(key), "{key:?}");
        }
    }

    #[test]
    fn keys_that_could_leave_the_store_or_are_malformed_are_refused() {
        let long = "a".repeat(MAX_KEY_BYTES + 1);
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("..", "parent"),
            ("tickets/../secrets", "a parent segment"),
            ("tickets/..", "a trailing parent segment"),
            ("./tickets", "a current-directory segment"),
            ("/tickets/a", "a leading slash (absolute)"),
            ("tickets/a/", "a trailing slash"),
            ("tickets//a", "an empty segment"),
            ("tickets\\..\\a", "backslashes"),
            ("tickets/a b", "a space"),
            ("tickets/%2e%2e", "percent signs"),
            ("tickets/é", "non-ASCII"),
            ("tickets/a\0b", "a NUL byte"),
            ("tickets/a\nb", "a newline"),
            (&long, "over 512 bytes"),
        ];
        for (key, what) in cases {
            assert!(FileKey::parse(*key).is_err(), "{what}: {key:?}");
        }
    }

    #[test]
    fn a_ticket_file_key_is_the_ticket_and_the_sha256_of_the_bytes() {
        let ticket = bt_contract::ids::TicketId::new("0190a0b2-7c3e-7d4f-8a9b-0123456789ab");
        let key = FileKey::for_ticket(&ticket, b"").unwrap();
        assert_eq!(
            key.as_str(),
            "tickets/0190a0b2-7c3e-7d4f-8a9b-0123456789ab/\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let other = FileKey::for_ticket(&ticket, b"%PDF-1.7").unwrap();
        assert_ne!(key, other, "other bytes, another key");
        assert_eq!(other, FileKey::for_ticket(&ticket, b"%PDF-1.7").unwrap());
    }

    #[test]
    fn a_ticket_id_that_would_escape_the_ticket_directory_gives_no_key() {
        for id in ["..", "a/b", "", "a b"] {
            let ticket = bt_contract::ids::TicketId::new(id);
            assert!(FileKey::for_ticket(&ticket, b"x").is_err(), "{id:?}");
        }
    }

    #[tokio::test]
    async fn the_memory_store_keeps_replaces_and_deletes() {
        let store = FileStore::memory();
        let key = FileKey::parse("tickets/t/a").unwrap();
        assert_eq!(store.get(&key).await.unwrap(), None);
        store.put(&key, Bytes::from_static(b"one")).await.unwrap();
        store.put(&key, Bytes::from_static(b"two")).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap().as_deref(), Some(&b"two"[..]));
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap(), None);
        store.check().await.unwrap();
    }

    /// An `https://` store builds its TLS client (a rustls crypto provider is there, not a
    /// panic) and, when nothing listens at the endpoint, fails with "unavailable".
    #[tokio::test]
    async fn an_https_store_is_built_and_an_unreachable_one_is_unavailable() {
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = FileStore::s3(S3Config {
            bucket: "tickets".to_owned(),
            region: DEFAULT_REGION.to_owned(),
            endpoint: Some(format!("https://127.0.0.1:{closed_port}")),
            access_key_id: "key".to_owned(),
            secret_access_key: "secret".to_owned().into(),
            allow_http: false,
        })
        .unwrap();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        let err = store.check().await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");

        // AWS itself (no endpoint): https, built without a request.
        let env = |name: &str| match name {
            ACCESS_KEY_VAR => Some("key".to_owned()),
            SECRET_KEY_VAR => Some("secret".to_owned()),
            _ => None,
        };
        let aws = FileStore::from_url("s3://tickets", env).unwrap();
        assert_eq!(aws.to_string(), "s3://tickets in us-east-1");
    }

    #[test]
    fn a_failed_store_is_a_500_and_an_unreachable_one_a_503() {
        let failed = FileError::new(
            "get",
            "k",
            object_store::Error::Generic {
                store: "test",
                source: "disk full".into(),
            },
        );
        assert!(!failed.is_unavailable());
        assert_eq!(ApiError::from(failed).status().as_u16(), 500);

        let refused = FileError::new(
            "get",
            "k",
            object_store::Error::Generic {
                store: "test",
                source: Box::new(HttpError::new(
                    HttpErrorKind::Connect,
                    std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                )),
            },
        );
        assert!(refused.is_unavailable());
        let api = ApiError::from(refused);
        assert_eq!(api.status().as_u16(), 503);
        assert!(matches!(
            api,
            ApiError::RetryLater {
                retry_after_secs: 1,
                ..
            }
        ));
    }
}
