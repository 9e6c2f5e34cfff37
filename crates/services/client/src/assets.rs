//! The static assets (CSS, script, icons): embedded in the binary, served with a validator so
//! that a browser or a proxy revalidates them for a `304 Not Modified` instead of downloading
//! them again, and compressed like every response of the client (see [`crate::pages`]).

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::headers::PUBLIC_ASSET;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    content_type: &'static str,
    bytes: &'static [u8],
    etag: OnceLock<HeaderValue>,
}

impl Asset {
    pub const fn new(content_type: &'static str, bytes: &'static [u8]) -> Self {
        Self {
            content_type,
            bytes,
            etag: OnceLock::new(),
        }
    }

    /// `W/"<first 16 bytes of the SHA-256 of the file, in hex>"`: weak, because the same file
    /// is sent in several encodings (identity, gzip, brotli), which a strong tag would have to
    /// tell apart.
    pub fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.bytes);
            let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("W/\"{hex}\"")).expect("hex is a valid header")
        })
    }

    /// The file, or `304 Not Modified` when the request's `If-None-Match` names its tag.
    pub fn serve(&self, request: &HeaderMap) -> Response {
        let etag = self.etag().clone();
        let cached = [
            (header::ETAG, etag),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(PUBLIC_ASSET),
            ),
        ];
        if matches(request, self.etag()) {
            return (StatusCode::NOT_MODIFIED, cached).into_response();
        }
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            )],
            cached,
            self.bytes,
        )
            .into_response()
    }
}

/// Whether `If-None-Match` names `etag` (weak comparison: `W/` ignored) or is `*`.
fn matches(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag.to_str().unwrap_or_default());
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || opaque(tag) == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    static FILE: Asset = Asset::new("text/css; charset=utf-8", b"body { color: red }");

    fn request(if_none_match: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = if_none_match {
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn an_asset_is_sent_with_its_tag_and_not_again_while_it_matches() {
        let etag = FILE.etag().to_str().unwrap().to_owned();
        assert!(etag.starts_with("W/\"") && etag.len() == 36, "{etag}");

        let first = FILE.serve(&request(None));
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()[header::ETAG], etag.as_str());
        assert_eq!(first.headers()[header::CACHE_CONTROL], PUBLIC_ASSET);
        assert_eq!(
            first.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );

        let strong = etag.trim_start_matches("W/").to_owned();
        for tag in [
            etag.clone(),
            strong,
            format!("\"other\", {etag}"),
            "*".into(),
        ] {
            let again = FILE.serve(&request(Some(&tag)));
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{tag}");
            assert_eq!(again.headers()[header::ETAG], etag.as_str());
        }
        let changed = FILE.serve(&request(Some("W/\"0123\"")));
        assert_eq!(changed.status(), StatusCode::OK);
    }
}
