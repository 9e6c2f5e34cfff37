//! Sending the email outbox: a worker claims due emails under a lease (so that several replicas
//! never send one email at once), sends them oldest first through the [`Transport`], and records
//! each as sent, to retry (with backoff, when the mail server is unreachable or answers a
//! transient error) or failed (refused for good).
//!
//! Delivery is at most once per (event, recipient, kind) except in one window no outbox can
//! close: a process that dies after the mail server accepted a message and before it recorded
//! it sends it again when the lease ends. Each message carries a stable `Message-ID`
//! (`<email-id@host>`), so mail systems can recognise the repeat.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bt_contract::Millis;
use bt_platform::{Db, Runtime};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::Notify;

use crate::domain::retry_delay;
use crate::store::{self, OutgoingEmail};

/// How long a claimed email is reserved for the replica sending it; longer than one SMTP
/// exchange may take ([`SMTP_TIMEOUT`]).
const LEASE: Duration = Duration::from_secs(60);
/// The longest one SMTP command may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);
/// Emails claimed at once.
const BATCH: i64 = 20;
/// The longest the worker sleeps without looking again (emails queued by another replica).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Where emails go.
#[derive(Clone)]
pub enum Transport {
    /// An SMTP server (`SMTP_URL`).
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// The URL without its password, for logs.
        shown: String,
    },
    /// Each message written as `<id>.eml` into a directory (`up` without `SMTP_URL`): nothing
    /// leaves the machine, and a developer can open the messages.
    Directory(PathBuf),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp { shown, .. } => write!(f, "Smtp({shown})"),
            Self::Directory(dir) => write!(f, "Directory({})", dir.display()),
        }
    }
}

/// A mail setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    #[error(
        "SMTP_URL is not valid ({0}): use smtp://host:port for a local relay, \
         smtps://user:password@host:465 for TLS, or smtp://user:password@host:587?tls=required \
         for STARTTLS (URL-encode special characters of the user and password)"
    )]
    SmtpUrl(String),
    #[error("MAIL_FROM is not a valid address ({0}): e.g. BuyTicket <no-reply@example.com>")]
    From(String),
    #[error(
        "SMTP_CA_FILE {0}: {1} (it must hold the PEM certificate of the authority that signed \
         the mail server's certificate)"
    )]
    CaFile(String, String),
    #[error(
        "SMTP_CA_FILE is set but SMTP_URL does not use TLS: use smtps://host:465, or \
         smtp://host:587?tls=required for STARTTLS"
    )]
    CaWithoutTls,
    #[error("the mail directory {0} cannot be created: {1}")]
    Directory(String, std::io::Error),
}

/// The TLS of `url` (its mode: `smtps://` wraps the connection, `?tls=required` or
/// `?tls=opportunistic` upgrade it with STARTTLS), with the authorities of `pem` trusted too.
fn tls_trusting(url: &str, source: &str, pem: &[u8]) -> Result<Tls, MailConfigError> {
    let parsed = url::Url::parse(url).map_err(|e| MailConfigError::SmtpUrl(e.to_string()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| MailConfigError::SmtpUrl("no host".into()))?
        .to_owned();
    let mode = parsed
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let tls: fn(TlsParameters) -> Tls = match (parsed.scheme(), mode.as_deref()) {
        ("smtps", _) => Tls::Wrapper,
        ("smtp", Some("required")) => Tls::Required,
        ("smtp", Some("opportunistic")) => Tls::Opportunistic,
        _ => return Err(MailConfigError::CaWithoutTls),
    };
    let ca_error =
        |e: &dyn std::fmt::Display| MailConfigError::CaFile(source.to_owned(), e.to_string());
    if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(ca_error(&"no PEM certificate in it"));
    }
    let certificate = Certificate::from_pem(pem).map_err(|e| ca_error(&e))?;
    let parameters = TlsParameters::builder(host)
        .add_root_certificate(certificate)
        .build_rustls()
        .map_err(|e| ca_error(&e))?;
    Ok(tls(parameters))
}

/// What emails are sent with and from.
#[derive(Debug, Clone)]
pub struct Mailer {
    pub transport: Transport,
    /// The `From` of every message (`MAIL_FROM`).
    pub from: Mailbox,
}

/// Why one email was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again later: the server is unreachable, busy, or answered 4xx.
    #[error("{0}")]
    Transient(String),
    /// Trying again cannot help: the server refused the message or the address (5xx), or the
    /// address cannot be written in a message.
    #[error("{0}")]
    Permanent(String),
}

impl Mailer {
    /// Sends through the SMTP server of `url` (lettre's URL format: `smtp://`, `smtps://`,
    /// `?tls=required` for STARTTLS, credentials in the URL).
    pub fn smtp(url: &str, from: &str) -> Result<Self, MailConfigError> {
        Self::smtp_trusting(url, from, None)
    }

    /// [`Mailer::smtp`], trusting also the certificate authorities of `ca` (PEM, one or more
    /// certificates: a private mail relay's own authority, `SMTP_CA_FILE`) besides the public
    /// ones; `ca` names where they were read from, for errors. The server's name is still
    /// checked against its certificate.
    pub fn smtp_trusting(
        url: &str,
        from: &str,
        ca: Option<(&str, &[u8])>,
    ) -> Result<Self, MailConfigError> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailConfigError::SmtpUrl(e.to_string()))?
            .timeout(Some(SMTP_TIMEOUT));
        if let Some((source, pem)) = ca {
            builder = builder.tls(tls_trusting(url, source, pem)?);
        }
        let transport = builder.build();
        Ok(Self {
            transport: Transport::Smtp {
                transport,
                shown: bt_platform::db::redact_url(url),
            },
            from: parse_from(from)?,
        })
    }

    /// Writes messages into `dir` (created if needed, the owner's only).
    pub fn directory(dir: PathBuf, from: &str) -> Result<Self, MailConfigError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| MailConfigError::Directory(dir.display().to_string(), e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| MailConfigError::Directory(dir.display().to_string(), e))?;
        }
        Ok(Self {
            transport: Transport::Directory(dir),
            from: parse_from(from)?,
        })
    }

    /// Builds the message of `email` to `to`.
    pub fn message(&self, email: &OutgoingEmail, to: &str) -> Result<Message, DeliveryError> {
        let to: Mailbox = to.parse().map_err(|e| {
            DeliveryError::Permanent(format!("the address {to:?} is not valid: {e}"))
        })?;
        let domain = self.from.email.domain().to_owned();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&email.subject)
            .message_id(Some(format!("<{}@{domain}>", email.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.clone())
            .map_err(|e| DeliveryError::Permanent(format!("the message cannot be built: {e}")))
    }

    /// Sends `email` to `to`.
    pub async fn deliver(&self, email: &OutgoingEmail, to: &str) -> Result<(), DeliveryError> {
        let message = self.message(email, to)?;
        match &self.transport {
            Transport::Smtp { transport, .. } => match transport.send(message).await {
                Ok(_) => Ok(()),
                Err(err) if err.is_permanent() => Err(DeliveryError::Permanent(err.to_string())),
                Err(err) => Err(DeliveryError::Transient(err.to_string())),
            },
            Transport::Directory(dir) => {
                let path = dir.join(format!("{}.eml", email.id));
                let partial = dir.join(format!(".{}.eml.partial", email.id));
                let bytes = message.formatted();
                let written = async {
                    tokio::fs::write(&partial, &bytes).await?;
                    tokio::fs::rename(&partial, &path).await
                };
                written.await.map_err(|e| {
                    DeliveryError::Transient(format!("writing {}: {e}", path.display()))
                })?;
                tracing::info!(path = %path.display(), subject = %email.subject, "email written (no SMTP_URL: messages go to the mail directory)");
                Ok(())
            }
        }
    }
}

fn parse_from(from: &str) -> Result<Mailbox, MailConfigError> {
    from.parse()
        .map_err(|e: lettre::address::AddressError| MailConfigError::From(e.to_string()))
}

/// Starts the email worker on `runtime`; `wake` is notified when emails are queued.
pub fn spawn(db: Db, mailer: Arc<Mailer>, wake: Arc<Notify>, runtime: &Runtime) {
    let shutdown = runtime.shutdown.clone();
    let backoff = runtime.bus.config().clone();
    runtime.tasks.spawn(async move {
        let mut failures: i64 = 0;
        loop {
            let sleep = match send_due(&db, &mailer).await {
                Ok(()) => {
                    failures = 0;
                    until_next_due(&db).await
                }
                Err(err) => {
                    failures += 1;
                    tracing::warn!(%err, failures, "the email worker failed; retrying");
                    backoff.backoff(failures)
                }
            };
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                () = shutdown.cancelled() => break,
            }
        }
    });
}

async fn until_next_due(db: &Db) -> Duration {
    match store::next_email_due(db).await {
        Ok(Some(at)) => {
            Duration::from_millis(u64::try_from(at.get() - Millis::now().get()).unwrap_or(0))
                .min(MAX_SLEEP)
        }
        Ok(None) => MAX_SLEEP,
        Err(err) => {
            tracing::warn!(%err, "cannot read when the next email is due");
            MAX_SLEEP
        }
    }
}

/// Sends every due email, oldest first. Stops at the first transient failure (the server is
/// most likely down: the rest of the batch waits with it, without counting a try).
pub async fn send_due(db: &Db, mailer: &Mailer) -> sqlx::Result<()> {
    loop {
        let now = Millis::now();
        let lease = now.plus(LEASE);
        let claimed = store::claim_emails(db, now, lease, BATCH).await?;
        if claimed.is_empty() {
            return Ok(());
        }
        let full = claimed.len() as i64 == BATCH;
        let mut emails = claimed.into_iter();
        while let Some(email) = emails.next() {
            let Some(to) = email.address.clone() else {
                // `user.created` has not arrived (or the user predates it and is being
                // backfilled by auth): try again later.
                let next = Millis::now().plus(retry_delay(email.attempts + 1));
                store::email_retry(
                    db,
                    &email.id,
                    lease,
                    next,
                    "the recipient's address is not known yet",
                )
                .await?;
                continue;
            };
            match mailer.deliver(&email, &to).await {
                Ok(()) => {
                    store::email_sent(db, &email.id, lease, &to, Millis::now()).await?;
                    metrics::counter!("notifications_emails_sent_total", "kind" => email.kind.as_str()).increment(1);
                    tracing::debug!(email.id = %email.id, kind = %email.kind, "email sent");
                }
                Err(DeliveryError::Permanent(reason)) => {
                    store::email_failed(db, &email.id, lease, &reason).await?;
                    metrics::counter!("notifications_emails_failed_total").increment(1);
                    tracing::warn!(email.id = %email.id, user.id = %email.user_id, kind = %email.kind, %reason, "the mail server refused an email for good; it is not retried");
                }
                Err(DeliveryError::Transient(reason)) => {
                    let delay = retry_delay(email.attempts + 1);
                    let next = Millis::now().plus(delay);
                    store::email_retry(db, &email.id, lease, next, &reason).await?;
                    for waiting in emails.by_ref() {
                        store::email_wait(db, &waiting.id, lease, next, &reason).await?;
                    }
                    metrics::counter!("notifications_emails_retried_total").increment(1);
                    if email.attempts == 0 {
                        tracing::warn!(email.id = %email.id, %reason, retry_in = ?delay, "the mail server is unavailable; emails wait and are retried");
                    } else {
                        tracing::debug!(email.id = %email.id, attempts = email.attempts + 1, %reason, retry_in = ?delay, "email still not sent");
                    }
                    return Ok(());
                }
            }
        }
        if !full {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn smtp_urls_take_lettres_forms_and_a_bad_one_says_which_forms_work() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtps://user:secret@smtp.example.com:465",
            "smtp://user:secret@smtp.example.com:587?tls=required",
            "smtp://relay.example.com?tls=opportunistic",
        ] {
            let mailer = Mailer::smtp(url, "BuyTicket <no-reply@example.com>")
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            let shown = format!("{:?}", mailer.transport);
            assert!(
                !shown.contains("secret"),
                "the password is not shown: {shown}"
            );
        }
        let err = Mailer::smtp("ftp://mail.example.com", "no-reply@example.com").unwrap_err();
        assert!(err.to_string().contains("?tls=required"), "{err}");
        let err = Mailer::smtp("smtp://127.0.0.1:25", "nobody").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("MAIL_FROM is not a valid address"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_authority_needs_a_tls_url_and_a_pem_certificate() {
        const PEM: &str =
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUEd7T\n-----END CERTIFICATE-----\n";
        let from = "no-reply@example.com";
        let err = Mailer::smtp_trusting("smtp://relay:25", from, Some(("ca.pem", PEM.as_bytes())))
            .unwrap_err();
        assert!(matches!(err, MailConfigError::CaWithoutTls), "{err}");
        let err = Mailer::smtp_trusting(
            "smtps://mail.example.com",
            from,
            Some(("/etc/ca.pem", b"not a certificate")),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SMTP_CA_FILE /etc/ca.pem: no PEM certificate"),
            "{err}"
        );
        let err = Mailer::smtp_trusting(
            "smtp://mail.example.com:587?tls=required",
            from,
            Some(("/etc/ca.pem", PEM.as_bytes())),
        )
        .unwrap_err();
        assert!(
            matches!(err, MailConfigError::CaFile(ref file, _) if file == "/etc/ca.pem"),
            "a certificate that does not parse is refused: {err}"
        );
    }

    #[test]
    fn a_message_has_the_stable_id_the_sender_and_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = Mailer::directory(
            dir.path().join("mail"),
            "BuyTicket <no-reply@buyticket.test>",
        )
        .unwrap();
        let email = OutgoingEmail {
            id: "0190-abc".into(),
            user_id: bt_contract::UserId::new("u1"),
            kind: bt_contract::resources::NotificationKind::OrderReceipt,
            subject: "Your receipt: Opéra".into(),
            body: "You paid $25.00.".into(),
            attempts: 0,
            address: None,
        };
        let text = String::from_utf8(mailer.message(&email, "b@example.com").unwrap().formatted())
            .unwrap();
        assert!(
            text.contains("Message-ID: <0190-abc@buyticket.test>"),
            "{text}"
        );
        assert!(
            text.contains("From: BuyTicket <no-reply@buyticket.test>"),
            "{text}"
        );
        assert!(text.contains("To: b@example.com"), "{text}");
        assert!(
            mailer.message(&email, "not an address").is_err(),
            "an address that cannot be written is refused for good"
        );
    }
}
