//! The ticket file store (`bt_platform::files`): every behaviour on a local directory and on a
//! real S3 API (moto, see `bt_test_support::moto`), plus what the S3 store does when nothing
//! answers and what `from_url` tells an operator.

use std::sync::Arc;

use bt_contract::TicketId;
use bt_contract::error::ApiError;
use bt_platform::files::{FileConfigError, FileKey, FileStore, MAX_FILE_BYTES, S3Config};
use bt_test_support::moto::MotoServer;
use bytes::Bytes;

/// A store under test, with what keeps it alive (its directory or its moto server).
struct TestStore {
    store: FileStore,
    _dir: Option<tempfile::TempDir>,
    _moto: Option<Arc<MotoServer>>,
}

async fn local_store() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FileStore::local(dir.path().join("files")).expect("local store");
    TestStore {
        store,
        _dir: Some(dir),
        _moto: None,
    }
}

async fn s3_store() -> TestStore {
    // Blocking: the first start on a machine installs moto.
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .expect("moto started");
    let store = FileStore::s3(moto.bucket()).expect("S3 store");
    TestStore {
        store,
        _dir: None,
        _moto: Some(Arc::new(moto)),
    }
}

/// Runs each behaviour (an `async fn(FileStore)` below) on both stores.
macro_rules! store_tests {
    ($($behaviour:ident),+ $(,)?) => {
        mod local_directory {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let test = super::local_store().await;
                    super::$behaviour(test.store.clone()).await;
                }
            )+
        }

        mod s3 {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let test = super::s3_store().await;
                    super::$behaviour(test.store.clone()).await;
                }
            )+
        }
    };
}

store_tests!(
    put_then_get_returns_exactly_the_bytes,
    a_file_of_the_largest_size_round_trips,
    putting_at_a_key_again_replaces_the_object,
    getting_a_missing_key_is_none,
    a_deleted_object_is_gone,
    deleting_a_missing_key_is_fine,
    concurrent_puts_of_different_keys_all_land,
    files_of_two_tickets_never_collide,
    check_succeeds_on_a_working_store,
);

fn ticket() -> TicketId {
    TicketId::generate()
}

/// Bytes that no encoding or line-ending conversion would leave alone.
fn awkward_bytes(len: usize) -> Bytes {
    let mut state: u32 = 0x9E37_79B9;
    let mut bytes: Vec<u8> = b"%PDF-1.7\r\n\0\xFF\n\r".to_vec();
    bytes.extend((0..=255u8).rev());
    while bytes.len() < len {
        // xorshift: every byte value, no pattern a store could compress away or mangle alike.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        bytes.push(state as u8);
    }
    bytes.truncate(len);
    Bytes::from(bytes)
}

async fn put_then_get_returns_exactly_the_bytes(store: FileStore) {
    let bytes = awkward_bytes(10_000);
    let key = FileKey::for_ticket(&ticket(), &bytes).unwrap();

    store.put(&key, bytes.clone()).await.unwrap();

    assert_eq!(store.get(&key).await.unwrap(), Some(bytes));
}

async fn a_file_of_the_largest_size_round_trips(store: FileStore) {
    let bytes = awkward_bytes(MAX_FILE_BYTES);
    let key = FileKey::for_ticket(&ticket(), &bytes).unwrap();

    store.put(&key, bytes.clone()).await.unwrap();
    let read = store.get(&key).await.unwrap().expect("the file is there");

    assert_eq!(read.len(), MAX_FILE_BYTES);
    assert!(
        read == bytes,
        "the 5 MiB read back differ from those written"
    );
}

async fn putting_at_a_key_again_replaces_the_object(store: FileStore) {
    let key = FileKey::parse(format!("tickets/{}/replaced", ticket())).unwrap();
    store
        .put(
            &key,
            Bytes::from_static(b"%PDF-first, and longer than the second"),
        )
        .await
        .unwrap();

    store
        .put(&key, Bytes::from_static(b"\x89PNG\r\n\x1a\nsecond"))
        .await
        .unwrap();

    assert_eq!(
        store.get(&key).await.unwrap().as_deref(),
        Some(&b"\x89PNG\r\n\x1a\nsecond"[..])
    );
}

async fn getting_a_missing_key_is_none(store: FileStore) {
    let key = FileKey::for_ticket(&ticket(), b"never written").unwrap();

    assert_eq!(store.get(&key).await.unwrap(), None);
}

async fn a_deleted_object_is_gone(store: FileStore) {
    let ticket = ticket();
    let kept = FileKey::for_ticket(&ticket, b"%PDF-kept").unwrap();
    let deleted = FileKey::for_ticket(&ticket, b"%PDF-deleted").unwrap();
    store
        .put(&kept, Bytes::from_static(b"%PDF-kept"))
        .await
        .unwrap();
    store
        .put(&deleted, Bytes::from_static(b"%PDF-deleted"))
        .await
        .unwrap();

    store.delete(&deleted).await.unwrap();

    assert_eq!(store.get(&deleted).await.unwrap(), None);
    assert_eq!(
        store.get(&kept).await.unwrap().as_deref(),
        Some(&b"%PDF-kept"[..]),
        "only the deleted key is gone"
    );
}

async fn deleting_a_missing_key_is_fine(store: FileStore) {
    let ticket = ticket();
    let key = FileKey::for_ticket(&ticket, b"never written").unwrap();

    store.delete(&key).await.unwrap();
    // Twice, as a retried clean-up would.
    store.delete(&key).await.unwrap();
}

async fn concurrent_puts_of_different_keys_all_land(store: FileStore) {
    let files: Vec<(FileKey, Bytes)> = (0..16)
        .map(|i| {
            let bytes = Bytes::from(format!("%PDF-file {i}").repeat(1000 + i));
            (FileKey::for_ticket(&ticket(), &bytes).unwrap(), bytes)
        })
        .collect();

    let puts = files.iter().map(|(key, bytes)| {
        let store = store.clone();
        let (key, bytes) = (key.clone(), bytes.clone());
        tokio::spawn(async move { store.put(&key, bytes).await })
    });
    for put in futures::future::join_all(puts).await {
        put.expect("the put task").expect("the put");
    }

    for (key, bytes) in &files {
        assert_eq!(store.get(key).await.unwrap().as_ref(), Some(bytes), "{key}");
    }
}

async fn files_of_two_tickets_never_collide(store: FileStore) {
    let bytes = Bytes::from_static(b"\xFF\xD8\xFF the same picture");
    let first = FileKey::for_ticket(&ticket(), &bytes).unwrap();
    let second = FileKey::for_ticket(&ticket(), &bytes).unwrap();
    assert_ne!(first, second, "the same bytes of two tickets are two keys");
    store.put(&first, bytes.clone()).await.unwrap();
    store.put(&second, bytes.clone()).await.unwrap();

    store.delete(&first).await.unwrap();

    assert_eq!(store.get(&second).await.unwrap(), Some(bytes));
}

async fn check_succeeds_on_a_working_store(store: FileStore) {
    store.check().await.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn the_local_directory_is_created_private_and_holds_the_objects_under_their_keys() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data").join("files");
    let store = FileStore::local(&dir).unwrap();
    let key = FileKey::for_ticket(&ticket(), b"%PDF-x").unwrap();

    store
        .put(&key, Bytes::from_static(b"%PDF-x"))
        .await
        .unwrap();

    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the directory is the process's own: {mode:o}");
    assert_eq!(std::fs::read(dir.join(key.as_str())).unwrap(), b"%PDF-x");
}

#[tokio::test]
async fn a_local_directory_that_cannot_be_created_names_the_setting() {
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();

    let err = FileStore::local(file.join("files")).unwrap_err();

    assert!(matches!(err, FileConfigError::Directory { .. }), "{err:?}");
    assert!(err.to_string().contains("FILE_STORE_URL"), "{err}");
}

#[tokio::test]
async fn a_missing_bucket_fails_the_check() {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap();
    let config = S3Config {
        bucket: format!("bt-test-missing-{}", uuid::Uuid::new_v4().simple()),
        ..moto.bucket()
    };
    let store = FileStore::s3(config).unwrap();

    let err = store.check().await.unwrap_err();

    assert!(!err.is_unavailable(), "the store answered: {err}");
    assert_eq!(ApiError::from(err).status().as_u16(), 500);
}

/// An S3 endpoint on a port where nothing listens.
fn unreachable_s3() -> FileStore {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    FileStore::s3(S3Config {
        bucket: "nowhere".to_owned(),
        region: "us-east-1".to_owned(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        access_key_id: "testing".to_owned(),
        secret_access_key: "testing".to_owned().into(),
        allow_http: true,
    })
    .unwrap()
}

fn assert_is_a_503(err: bt_platform::files::FileError) {
    assert!(err.is_unavailable(), "unreachable is unavailable: {err}");
    let api = ApiError::from(err);
    assert_eq!(api.status().as_u16(), 503);
    assert!(
        matches!(
            &api,
            ApiError::RetryLater { message, retry_after_secs: 1 }
                if message == "Service is temporarily unavailable, please try again"
        ),
        "{api:?}"
    );
}

#[tokio::test]
async fn an_s3_store_where_nothing_listens_answers_503_quickly() {
    let store = unreachable_s3();
    let key = FileKey::for_ticket(&ticket(), b"x").unwrap();
    let started = std::time::Instant::now();

    assert_is_a_503(store.check().await.unwrap_err());
    assert_is_a_503(store.get(&key).await.unwrap_err());
    assert_is_a_503(store.put(&key, Bytes::from_static(b"x")).await.unwrap_err());
    assert_is_a_503(store.delete(&key).await.unwrap_err());

    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "four refused requests took {:?}",
        started.elapsed()
    );
}

/// `/readyz` of an application whose one service has `store`'s readiness check.
async fn readyz(store: &FileStore) -> (u16, String) {
    use tower::ServiceExt;
    let app = bt_platform::http::app(vec![bt_platform::Service {
        name: "tickets",
        router: axum::Router::new(),
        checks: vec![store.readiness_check("files")],
    }]);
    let response = app
        .oneshot(
            axum::http::Request::get("/readyz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn readiness_follows_the_store() {
    let local = local_store().await;
    let (status, body) = readyz(&local.store).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = readyz(&unreachable_s3()).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("files"), "the failed check is named: {body}");
}

/// `from_url` with the given environment.
fn from_url(url: &str, env: &[(&str, &str)]) -> Result<FileStore, FileConfigError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    FileStore::from_url(url, move |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
}

/// Environment variables, as `(name, value)`.
type Env = &'static [(&'static str, &'static str)];

const CREDENTIALS: Env = &[
    ("AWS_ACCESS_KEY_ID", "AKIATEST"),
    ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
];

#[tokio::test]
async fn from_url_tells_the_operator_what_to_set() {
    // (URL, environment, what the message says, what the case is)
    let cases: &[(&str, Env, &[&str], &str)] = &[
        (
            "not a url",
            CREDENTIALS,
            &["FILE_STORE_URL", "file:///", "s3://<bucket>"],
            "not a URL",
        ),
        (
            "ftp://files.example.com/tickets",
            CREDENTIALS,
            &["FILE_STORE_URL", "s3://<bucket>", "\"ftp\""],
            "another scheme",
        ),
        (
            "s3://",
            CREDENTIALS,
            &["FILE_STORE_URL", "names no bucket"],
            "an s3 URL without a bucket",
        ),
        (
            "s3:///tickets",
            CREDENTIALS,
            &["FILE_STORE_URL", "names no bucket"],
            "an s3 URL with a path but no bucket",
        ),
        (
            "s3://bucket/some/prefix",
            CREDENTIALS,
            &["FILE_STORE_URL", "a bucket only"],
            "an s3 URL with a path",
        ),
        (
            "s3://bucket",
            &[],
            &[
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
                "set",
            ],
            "no credentials",
        ),
        (
            "s3://bucket",
            &[("AWS_ACCESS_KEY_ID", "AKIATEST")],
            &["AWS_SECRET_ACCESS_KEY is not set"],
            "no secret",
        ),
        (
            "s3://bucket",
            &[
                ("AWS_ACCESS_KEY_ID", "  "),
                ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
            ],
            &["AWS_ACCESS_KEY_ID is not set"],
            "a blank access key",
        ),
        (
            "s3://AKIA:very-secret-value@bucket",
            &[],
            &["must not hold credentials", "AWS_ACCESS_KEY_ID"],
            "credentials in the URL",
        ),
        (
            "s3://bucket",
            &[
                ("AWS_ACCESS_KEY_ID", "AKIATEST"),
                ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
                ("AWS_ENDPOINT_URL", "127.0.0.1:9000"),
            ],
            &["AWS_ENDPOINT_URL", "http://"],
            "an endpoint without a scheme",
        ),
        (
            "file://relative/files",
            CREDENTIALS,
            &["FILE_STORE_URL", "three slashes"],
            "a file URL with a host",
        ),
    ];
    for (url, env, expected, what) in cases {
        let err = match from_url(url, env) {
            Ok(store) => panic!("{what}: {url} was accepted as {store}"),
            Err(err) => err.to_string(),
        };
        for part in *expected {
            assert!(err.contains(part), "{what}: {err:?} should say {part:?}");
        }
        assert!(
            !err.contains("very-secret-value"),
            "{what}: the secret is never shown: {err}"
        );
    }
}

#[tokio::test]
async fn from_url_opens_a_local_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("files");
    let url = format!("file://{}", dir.display());

    let store = from_url(&url, &[]).unwrap();
    let key = FileKey::for_ticket(&ticket(), b"%PDF-x").unwrap();
    store
        .put(&key, Bytes::from_static(b"%PDF-x"))
        .await
        .unwrap();

    assert!(dir.join(key.as_str()).is_file(), "written under {url}");
}

#[tokio::test]
async fn from_url_opens_an_s3_bucket_at_an_http_endpoint() {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap();
    let bucket = moto.bucket();
    let endpoint = moto.endpoint();
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];

    let store = from_url(&format!("s3://{}", bucket.bucket), &env).unwrap();
    let key = FileKey::for_ticket(&ticket(), b"%PDF-x").unwrap();
    store.check().await.unwrap();
    store
        .put(&key, Bytes::from_static(b"%PDF-x"))
        .await
        .unwrap();

    // The object is in the bucket the URL named.
    let direct = FileStore::s3(bucket).unwrap();
    assert_eq!(
        direct.get(&key).await.unwrap().as_deref(),
        Some(&b"%PDF-x"[..])
    );
}
