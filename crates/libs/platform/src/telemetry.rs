//! Structured logs with `tracing`: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` for
//! one JSON object per line (production), human-readable otherwise, in colour only on a
//! terminal.
//!
//! Every line written while a request (or an event handler) runs carries its request id
//! (`request_id`, from [`crate::context`]), so that a request's lines can be found without a
//! span per request: the per-request spans are at DEBUG, because at INFO every request paid
//! for its spans' fields being formatted ahead of any line that might use them. Measured with
//! `scripts/refused-cpu` at `RUST_LOG=info LOG_FORMAT=json`: a third of a refused purchase's
//! CPU (BENCHMARKS.md, issue 16 part 13).

use std::io::IsTerminal;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let colour = !json && std::io::stdout().is_terminal();
    drop(subscriber(filter, json, colour, std::io::stdout).try_init());
}

/// The subscriber [`init`] installs, writing to `writer`.
pub fn subscriber<W>(
    filter: EnvFilter,
    json: bool,
    colour: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(colour);
    if json {
        let lines = format().json().flatten_event(true);
        Box::new(
            builder
                .fmt_fields(JsonFields::new())
                .event_format(WithRequestId { inner: lines, json })
                .finish(),
        )
    } else {
        let lines = format().compact().with_ansi(colour);
        Box::new(
            builder
                .event_format(WithRequestId { inner: lines, json })
                .finish(),
        )
    }
}

fn format() -> format::Format {
    format::format().with_target(false)
}

/// A line format with the request id of the work in progress added to each line written
/// while it runs: after the `{` of a JSON object, at the end of a text line.
struct WithRequestId<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithRequestId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some(id) = crate::context::request_id() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        if self.json {
            let id = serde_json::to_string(&id).map_err(|_| std::fmt::Error)?;
            let (open, rest) = line.split_at(line.find('{').map_or(0, |at| at + 1));
            write!(writer, "{open}\"request_id\":{id},{rest}")
        } else {
            let end = line.trim_end_matches('\n').len();
            let (text, newline) = line.split_at(end);
            write!(writer, "{text} request_id={}{newline}", id.escape_debug())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::context::with_request_id;

    /// What a subscriber wrote, line by line.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// Logs a line outside any request, one inside request `id`, and one inside a
    /// per-request span (which is at DEBUG, so not written at INFO).
    async fn log_lines(json: bool, id: &str) -> Vec<String> {
        let captured = Captured::default();
        let subscriber = subscriber(EnvFilter::new("info"), json, false, captured.clone());
        let _guard = tracing::subscriber::set_default(subscriber);
        tracing::info!(order.id = "o-1", "outside");
        with_request_id(Some(id.to_owned()), async {
            let span = tracing::debug_span!("http", uri = "/api/orders");
            let _entered = span.enter();
            tracing::warn!(ticket.id = "t-1", "inside");
        })
        .await;
        captured.lines()
    }

    #[tokio::test]
    async fn a_json_line_written_during_a_request_carries_its_request_id() {
        let lines = log_lines(true, "r-\"1\"\\").await;
        assert_eq!(lines.len(), 2, "{lines:?}");
        let outside: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(outside["message"], "outside");
        assert_eq!(outside["order.id"], "o-1");
        assert!(outside.get("request_id").is_none(), "{outside}");
        let inside: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(inside["message"], "inside");
        assert_eq!(inside["level"], "WARN");
        assert_eq!(inside["ticket.id"], "t-1");
        assert_eq!(inside["request_id"], "r-\"1\"\\", "escaped: {}", lines[1]);
        assert!(
            inside.get("span").is_none(),
            "the DEBUG span is not on: {inside}"
        );
    }

    #[tokio::test]
    async fn a_text_line_written_during_a_request_ends_with_its_request_id() {
        let lines = log_lines(false, "r-1").await;
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("outside"), "{lines:?}");
        assert!(!lines[0].contains("request_id"), "{lines:?}");
        assert!(lines[1].contains("WARN"), "{lines:?}");
        assert!(lines[1].contains("inside"), "{lines:?}");
        assert!(lines[1].ends_with(" request_id=r-1"), "{lines:?}");
        assert!(!lines.concat().contains('\u{1b}'), "{lines:?}");
    }
}
