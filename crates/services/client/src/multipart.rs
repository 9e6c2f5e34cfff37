//! The forms that carry a ticket file: `multipart/form-data` (RFC 7578) as browsers send it,
//! read whole (at most [`BODY_LIMIT`]) into text fields and uploaded files.
//!
//! The body is read with a bound (and drained beyond it, so that the browser reads the "too
//! large" page), then parsed by `multer`. A file's name and `Content-Type` are never believed
//! (the API decides the kind from the bytes). What it does not understand is refused, never
//! guessed.
//!
//! [`MultipartForm`] also takes `application/x-www-form-urlencoded` bodies (a form without a
//! file), so the same handlers serve both.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use bt_platform::files::MAX_FILE_BYTES;

/// The largest form body read: a file at the API's limit plus the other fields. A file a little
/// over the limit still reaches the form's own check (and its message next to the field).
pub const BODY_LIMIT: usize = MAX_FILE_BYTES + 256 * 1024;

/// At most this many parts: our forms have fewer than a dozen fields.
const MAX_PARTS: usize = 32;

/// A body over [`BODY_LIMIT`] is read to its end (and dropped) up to this size before the
/// "too large" page is sent, so that the browser, still sending, reads the page rather than a
/// reset connection. Beyond it (or when the declared length is beyond it) the page is sent at
/// once. The request timeout bounds the time this takes.
const DRAIN_LIMIT: usize = 32 * 1024 * 1024;

/// A file of the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// As the browser gave it (shown back at most; never used to decide anything).
    pub filename: String,
    pub bytes: Vec<u8>,
}

/// A form's text fields and files, by name (the first of a repeated name counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    pub fields: HashMap<String, String>,
    pub files: HashMap<String, Upload>,
}

impl Parts {
    /// The file chosen for `name`: `None` when the input was left empty (browsers send a part
    /// with an empty file name and no bytes).
    pub fn file(&self, name: &str) -> Option<&Upload> {
        self.files
            .get(name)
            .filter(|f| !(f.filename.is_empty() && f.bytes.is_empty()))
    }
}

/// Why a body is not a form we read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("the form has no boundary")]
    NoBoundary,
    #[error("the form is cut short or malformed")]
    Malformed,
    #[error("a part has no name")]
    NoName,
    #[error("a field is not UTF-8 text")]
    NotText,
    #[error("the form has too many parts")]
    TooManyParts,
}

/// The boundary of a `multipart/form-data` content type (quoted or not).
pub fn boundary(content_type: &str) -> Option<String> {
    multer::parse_boundary(content_type)
        .ok()
        .filter(|b| (1..=70).contains(&b.len()))
}

/// Reads a whole `multipart/form-data` body with `multer` (the parser axum's own `Multipart`
/// uses): at most [`MAX_PARTS`] parts, each named; text fields must be UTF-8; the first of a
/// repeated name counts.
pub async fn parse(body: Vec<u8>, boundary: &str) -> Result<Parts, MultipartError> {
    let stream =
        futures::stream::once(
            async move { Ok::<_, std::io::Error>(axum::body::Bytes::from(body)) },
        );
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(BODY_LIMIT as u64));
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut parts = Parts::default();
    let mut count = 0;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|_| MultipartError::Malformed)?
    {
        count += 1;
        if count > MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        let name = field
            .name()
            .filter(|n| !n.is_empty())
            .ok_or(MultipartError::NoName)?
            .to_owned();
        let filename = field.file_name().map(str::to_owned);
        let bytes = field.bytes().await.map_err(|_| MultipartError::Malformed)?;
        match filename {
            Some(filename) => {
                parts.files.entry(name).or_insert_with(|| Upload {
                    filename,
                    bytes: bytes.to_vec(),
                });
            }
            None => {
                let text =
                    String::from_utf8(bytes.to_vec()).map_err(|_| MultipartError::NotText)?;
                parts.fields.entry(name).or_insert(text);
            }
        }
    }
    Ok(parts)
}

/// Why a form post could not be read. The pages show it in the site's own error page; as a
/// response on its own it is a small HTML page that says the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// Larger than a ticket file may be (413).
    TooLarge,
    /// Not a form (another `Content-Type`), or a broken one (400). The reason is for the logs,
    /// not for people.
    NotAForm(String),
}

impl Unreadable {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotAForm(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The heading of the page that says so.
    pub fn heading(&self) -> &'static str {
        match self {
            Self::TooLarge => "This file is too large",
            Self::NotAForm(_) => "This form could not be read",
        }
    }

    /// What the page tells the person.
    pub fn message(&self) -> &'static str {
        match self {
            Self::TooLarge => {
                "It is larger than a ticket file may be: the file must be at most 5 MB. Go back and choose a smaller file."
            }
            Self::NotAForm(_) => {
                "It did not arrive as a form of this site. Go back, reload the page and send it again."
            }
        }
    }
}

impl IntoResponse for Unreadable {
    fn into_response(self) -> Response {
        let page = format!(
            "<!doctype html><title>{}</title><p>{} <a href=\"/\">Start over</a>.</p>",
            self.heading(),
            self.message()
        );
        (self.status(), Html(page)).into_response()
    }
}

/// A form post that may carry files: `multipart/form-data` (at most [`BODY_LIMIT`]) or
/// `application/x-www-form-urlencoded`. An unreadable body is [`Unreadable`].
pub struct MultipartForm(pub Parts);

impl<S: Send + Sync> FromRequest<S> for MultipartForm {
    type Rejection = Unreadable;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let Some(boundary) = boundary(&content_type) else {
            // No file: a plain form, read as the other forms are.
            return match Form::<HashMap<String, String>>::from_request(req, state).await {
                Ok(Form(fields)) => Ok(Self(Parts {
                    fields,
                    files: HashMap::new(),
                })),
                Err(rejection) => Err(Unreadable::NotAForm(rejection.body_text())),
            };
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|length| length > DRAIN_LIMIT) {
            return Err(Unreadable::TooLarge);
        }
        let body = match read_body(req.into_body()).await {
            Ok(body) => body,
            Err(ReadError::TooLarge) => return Err(Unreadable::TooLarge),
            Err(ReadError::Broken) => {
                return Err(Unreadable::NotAForm("the upload was interrupted".into()));
            }
        };
        parse(body, &boundary)
            .await
            .map(Self)
            .map_err(|err| Unreadable::NotAForm(err.to_string()))
    }
}

enum ReadError {
    TooLarge,
    Broken,
}

/// The body, at most [`BODY_LIMIT`] bytes; a longer one is read on to [`DRAIN_LIMIT`] and
/// dropped (see there).
async fn read_body(mut body: axum::body::Body) -> Result<Vec<u8>, ReadError> {
    use axum::body::HttpBody;
    let mut kept = Vec::new();
    let mut seen = 0usize;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => break,
            Some(Err(_)) => return Err(ReadError::Broken),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                seen = seen.saturating_add(data.len());
                if seen <= BODY_LIMIT {
                    kept.extend_from_slice(&data);
                } else if seen > DRAIN_LIMIT {
                    return Err(ReadError::TooLarge);
                }
            }
        }
    }
    if seen > BODY_LIMIT {
        Err(ReadError::TooLarge)
    } else {
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body as Chromium builds it.
    fn body(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, filename, content) in parts {
            out.extend_from_slice(b"------WebKitFormBoundaryAbC123\r\n");
            match filename {
                Some(f) => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/pdf\r\n\r\n").as_bytes(),
                ),
                None => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            out.extend_from_slice(content);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"------WebKitFormBoundaryAbC123--\r\n");
        out
    }

    const BOUNDARY: &str = "----WebKitFormBoundaryAbC123";

    #[test]
    fn the_boundary_is_read_from_the_content_type() {
        let cases = [
            ("multipart/form-data; boundary=abc", Some("abc")),
            ("Multipart/Form-Data;boundary=\"a b\"", Some("a b")),
            ("multipart/form-data; charset=utf-8; BOUNDARY=x", Some("x")),
            ("multipart/form-data", None),
            ("multipart/form-data; boundary=", None),
            ("multipart/mixed; boundary=abc", None),
            ("application/x-www-form-urlencoded", None),
        ];
        for (content_type, want) in cases {
            assert_eq!(boundary(content_type).as_deref(), want, "{content_type}");
        }
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "b".repeat(71))),
            None,
            "at most 70 characters"
        );
    }

    #[tokio::test]
    async fn fields_and_files_are_read_with_their_exact_bytes() {
        // Bytes that look like a delimiter without the CRLF before them, and a CR LF inside.
        let pdf = b"%PDF-1.7\r\n------WebKitFormBoundaryAbC12 not it\r\n\x00\xff%%EOF";
        let body = body(&[
            ("_csrf", None, b"tok"),
            ("title", None, "Café \"Tonight\"; row 5".as_bytes()),
            ("notes", None, b"line one\r\nline two"),
            ("file", Some("ticket.pdf"), pdf),
            ("title", None, b"a second title is ignored"),
        ]);

        let parts = parse(body, BOUNDARY).await.unwrap();

        assert_eq!(parts.fields["_csrf"], "tok");
        assert_eq!(parts.fields["title"], "Café \"Tonight\"; row 5");
        assert_eq!(parts.fields["notes"], "line one\r\nline two");
        let file = parts.file("file").unwrap();
        assert_eq!(file.filename, "ticket.pdf");
        assert_eq!(file.bytes, pdf);
    }

    #[tokio::test]
    async fn an_empty_file_input_is_no_file() {
        let parts = parse(
            body(&[("file", Some(""), b""), ("title", None, b"")]),
            BOUNDARY,
        )
        .await
        .unwrap();
        assert_eq!(parts.file("file"), None);
        assert_eq!(parts.fields["title"], "");
        let empty_but_chosen = parse(body(&[("file", Some("empty.pdf"), b"")]), BOUNDARY)
            .await
            .unwrap();
        assert_eq!(
            empty_but_chosen.file("file").map(|f| f.bytes.len()),
            Some(0),
            "a chosen empty file is a file (the form says it is empty)"
        );
    }

    #[tokio::test]
    async fn a_quoted_name_may_hold_semicolons_and_escaped_quotes() {
        let body = b"--b\r\nContent-Disposition: form-data; filename=\"a;b \\\"c\\\".pdf\"; name=\"file\"\r\n\r\n%PDF-\r\n--b--";
        let parts = parse(body.to_vec(), "b").await.unwrap();
        assert_eq!(parts.files["file"].filename, "a;b \"c\".pdf");
    }

    #[tokio::test]
    async fn malformed_bodies_are_refused_not_guessed() {
        let good = body(&[("title", None, b"x")]);
        let cut = &good[..good.len() - 40];
        let cases: [(&[u8], MultipartError, &str); 6] = [
            (b"", MultipartError::Malformed, "empty"),
            (b"no delimiter at all", MultipartError::Malformed, "no delimiter"),
            (cut, MultipartError::Malformed, "cut short"),
            (
                b"------WebKitFormBoundaryAbC123\r\nContent-Type: text/plain\r\n\r\nx\r\n------WebKitFormBoundaryAbC123--",
                MultipartError::NoName,
                "no Content-Disposition",
            ),
            (
                b"------WebKitFormBoundaryAbC123\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nx\r\n------WebKitFormBoundaryAbC123--",
                MultipartError::NoName,
                "an empty name",
            ),
            (
                b"------WebKitFormBoundaryAbC123\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n\xff\xfe\r\n------WebKitFormBoundaryAbC123--",
                MultipartError::NotText,
                "a field that is not UTF-8",
            ),
        ];
        for (body, want, why) in cases {
            assert_eq!(parse(body.to_vec(), BOUNDARY).await, Err(want), "{why}");
        }
        let many: Vec<(String, Option<&str>, &[u8])> = (0..=MAX_PARTS)
            .map(|i| (format!("f{i}"), None, b"x".as_slice()))
            .collect();
        let many: Vec<(&str, Option<&str>, &[u8])> =
            many.iter().map(|(n, f, c)| (n.as_str(), *f, *c)).collect();
        assert_eq!(
            parse(body(&many), BOUNDARY).await,
            Err(MultipartError::TooManyParts)
        );
    }

    #[tokio::test]
    async fn a_preamble_and_transport_padding_are_allowed() {
        let body = b"preamble\r\n--b  \r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\n";
        assert_eq!(parse(body.to_vec(), "b").await.unwrap().fields["a"], "1");
    }
}
