//! Command line and environment configuration (12-factor: every flag has an environment
//! variable; see the configuration table in the README).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bt_contract::SessionKeys;
use bt_contract::session::MIN_KEY_BYTES;
use bt_platform::db::DbOptions;
use bt_platform::rate_limit::{RateLimiter, TrustedProxies};
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Parser)]
#[command(
    name = "buyticket",
    version,
    about = "BuyTicket, a ticket resale marketplace"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start and moved into the one mode that runs: the size of the larger
// variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole marketplace in this process: every service on one listener, SQLite files
    /// under --data-dir, an in-process event bus. Needs nothing installed.
    Up(UpArgs),
    /// Run one service in distributed mode (PostgreSQL, NATS), configured from the environment.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceName {
    Auth,
    Tickets,
    Orders,
    Expiration,
    Payments,
    Notifications,
    Client,
}

impl ServiceName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Tickets => "tickets",
            Self::Orders => "orders",
            Self::Expiration => "expiration",
            Self::Payments => "payments",
            Self::Notifications => "notifications",
            Self::Client => "client",
        }
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free port; the URL is printed).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Where the SQLite files and the generated development JWT key live.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The service to run.
    pub service: ServiceName,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// The service's own database (postgres://... in production; sqlite://... works too).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The gateway the web client calls the API through (`serve client` only).
    #[arg(long, env = "API_BASE_URL")]
    pub api_base_url: Option<String>,
    /// NATS with JetStream, for the services that exchange events.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The JetStream stream that holds every event.
    #[arg(long, env = "EVENT_STREAM", default_value = "BUYTICKET")]
    pub event_stream: String,
    /// Put before every event subject, so that several deployments share one NATS. Default:
    /// none with the default stream `BUYTICKET` (subjects are the contract's `ticket.created`,
    /// ...); with any other EVENT_STREAM, the stream's name in lower case and a dot
    /// (`BUYTICKET_LOCAL` → `buyticket_local.`), so that two deployments never overlap. Set it
    /// to the empty string for no prefix.
    #[arg(long, env = "EVENT_SUBJECT_PREFIX")]
    pub event_subject_prefix: Option<String>,
    /// How long a delivered event may stay unacknowledged (a replica died while handling it)
    /// before another replica gets it, in seconds.
    #[arg(long, env = "EVENT_ACK_WAIT_SECONDS", default_value_t = 30)]
    pub event_ack_wait_seconds: u64,
    /// Requests started within 40 ms from which the process counts as answering a burst: its
    /// outbox relay then holds committed events until fewer did (at most
    /// EVENT_RELAY_YIELD_MS), so that the burst is answered before the events it caused are
    /// applied on the same cores. The default (40: a thousand requests a second) suits a
    /// replica on a core or two; raise it where a replica answers more than that all the
    /// time. 0: never held.
    #[arg(long, env = "EVENT_RELAY_BUSY", default_value_t = 40)]
    pub event_relay_busy: u64,
    /// The longest the outbox relay holds committed events while the process answers a burst
    /// (see EVENT_RELAY_BUSY), in milliseconds. 0: never held.
    #[arg(long, env = "EVENT_RELAY_YIELD_MS", default_value_t = 250)]
    pub event_relay_yield_ms: u64,
    /// Where the tickets service keeps ticket files (`serve tickets` only): `s3://<bucket>`
    /// (an S3-compatible store shared by every replica), or `file:///<directory>` when every
    /// replica runs on one machine.
    #[arg(long, env = "FILE_STORE_URL")]
    pub file_store_url: Option<String>,
    /// The S3 endpoint for a store that is not AWS itself (MinIO, Ceph, R2, ...).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// The S3 store's region.
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,
    /// The S3 store's access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub aws_access_key_id: Option<String>,
    /// The S3 store's secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_secret_access_key: Option<SecretString>,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ServeArgs {
    /// The ticket files' store of `serve tickets`, from FILE_STORE_URL and the AWS settings.
    pub fn file_store(&self) -> anyhow::Result<bt_platform::files::FileStore> {
        use bt_platform::files;
        let Some(url) = &self.file_store_url else {
            bail!(
                "FILE_STORE_URL is not set: the tickets service keeps the ticket files sellers \
                 upload in a store every replica reaches. Set it to s3://<bucket> (with \
                 AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and, for a store that is \
                 not AWS, AWS_ENDPOINT_URL), or to file:///<directory> when every replica runs \
                 on this machine"
            );
        };
        let setting = |name: &str| match name {
            files::ENDPOINT_VAR => self.aws_endpoint_url.clone(),
            files::REGION_VAR => self.aws_region.clone(),
            files::ACCESS_KEY_VAR => self.aws_access_key_id.clone(),
            files::SECRET_KEY_VAR => self
                .aws_secret_access_key
                .as_ref()
                .map(|s| s.expose_secret().to_owned()),
            _ => None,
        };
        Ok(files::FileStore::from_url(url, setting)?)
    }
}

/// Settings shared by both modes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Key that signs sessions (HS256), at least 32 bytes; shared by every service. Required
    /// outside the embedded default, where one is generated into the data directory.
    #[arg(long, env = "JWT_KEY", hide_env_values = true)]
    pub jwt_key: Option<SecretString>,
    /// How long a session lasts, in seconds.
    #[arg(long, env = "JWT_TTL_SECONDS", default_value_t = 7 * 24 * 3600)]
    pub jwt_ttl_seconds: u64,
    /// Send the session cookie with `Secure` (default: on in `serve`, off in `up`).
    #[arg(long, env = "COOKIE_SECURE")]
    pub cookie_secure: Option<bool>,
    /// Sign-in and sign-up attempts per minute per client address; 0 turns the limit off.
    #[arg(long, env = "AUTH_RATE_LIMIT_PER_MINUTE", default_value_t = 20)]
    pub auth_rate_limit_per_minute: u32,
    /// Proxies whose X-Forwarded-For is believed, as addresses or CIDR networks, e.g. the
    /// ingress's pod network (default: none; the web client proves itself with a token derived
    /// from JWT_KEY).
    #[arg(long, env = "TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// How long an order reserves its ticket, in seconds.
    #[arg(long, env = "ORDER_EXPIRATION_SECONDS", default_value_t = 900)]
    pub order_expiration_seconds: u64,
    /// The highest resale price, in percent of a ticket's face value (when the seller gives
    /// one): 120 lets a ticket with face value 40.00 sell for at most 48.00.
    #[arg(long, env = "RESALE_PRICE_CAP_PERCENT", default_value_t = bt_tickets::domain::ResaleCap::DEFAULT_PERCENT)]
    pub resale_price_cap_percent: u32,
    /// Who takes payments: `stripe` (needs STRIPE_SECRET_KEY) or `development` (accepts
    /// Stripe's test tokens, charges nothing, no network). Default: `stripe` when
    /// STRIPE_SECRET_KEY is set; otherwise `development` in `up`, while `serve payments`
    /// refuses to start rather than take fake payments.
    #[arg(long, env = "PAYMENT_PROVIDER", value_enum)]
    pub payment_provider: Option<PaymentProvider>,
    /// Stripe secret key (`sk_...`): payments are charged through Stripe.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<SecretString>,
    /// Stripe webhook signing secret (`whsec_...`); webhooks are refused without it.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<SecretString>,
    /// Base URL of the Stripe API.
    #[arg(
        long,
        env = "STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    /// Stripe publishable key: the pay form then uses Stripe.js card entry.
    #[arg(long, env = "STRIPE_PUBLISHABLE_KEY")]
    pub stripe_publishable_key: Option<String>,
    /// Currency of every charge (ISO code).
    #[arg(long, env = "PAYMENT_CURRENCY", default_value = "usd")]
    pub payment_currency: String,
    /// The platform's fee on every sale, in whole percent of the price (0 to 100); the seller
    /// is credited the rest.
    #[arg(long, env = "SELLER_FEE_PERCENT", default_value_t = 5, value_parser = seller_fee_percent)]
    pub seller_fee_percent: u8,
    /// When the event's start is unknown, how long after a sale the seller's credit becomes
    /// available for payout, in hours (with a start: when the event starts).
    #[arg(long, env = "PAYOUT_DELAY_HOURS", default_value_t = 48, value_parser = payout_delay_hours)]
    pub payout_delay_hours: u64,
    /// How often the payout worker transfers available credits to sellers, in seconds.
    #[arg(long, env = "PAYOUT_INTERVAL_SECONDS", default_value_t = 60, value_parser = payout_interval_seconds)]
    pub payout_interval_seconds: u64,
    /// The address browsers reach the site at (e.g. `https://buyticket.example.com`): Stripe's
    /// seller onboarding sends sellers back to its `/payouts`. Needed for payouts through Stripe.
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The mail server notifications are sent through, in lettre's URL format:
    /// `smtp://host:25` (plain, a relay on a trusted network), `smtps://user:password@host:465`
    /// (TLS), `smtp://user:password@host:587?tls=required` (STARTTLS). Required by `serve
    /// notifications`; without it `up` writes each email as an `.eml` file into
    /// `<data-dir>/mail` and logs its path.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<SecretString>,
    /// A PEM file of certificate authorities to trust for the mail server's TLS besides the
    /// public ones: a private relay's own authority. Needs an `SMTP_URL` with TLS.
    #[arg(long, env = "SMTP_CA_FILE")]
    pub smtp_ca_file: Option<std::path::PathBuf>,
    /// The sender of every email.
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "BuyTicket <no-reply@localhost>"
    )]
    pub mail_from: String,
    /// Ticket alerts one user may have at once.
    #[arg(long, env = "ALERTS_PER_USER", default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub alerts_per_user: i64,
    /// Alert emails one user receives per hour at most (past it, alerts are in-app only; 0:
    /// alert emails off). Receipts and other notices are never limited.
    #[arg(long, env = "ALERT_EMAILS_PER_HOUR", default_value_t = 10, value_parser = clap::value_parser!(i64).range(0..=1000))]
    pub alert_emails_per_hour: i64,
    /// How long the first subscriber in line of a ticket alert holds a ticket that just went
    /// on sale, in seconds: nobody else can order it meanwhile, and the other subscribers are
    /// told when the hold ends. 0 (the default): no hold, every subscriber is told at once.
    #[arg(long, env = "ALERT_HOLD_SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub alert_hold_seconds: u64,
    /// Largest number of database connections per service (default: 4 on SQLite, 10 on
    /// PostgreSQL).
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    /// Serve `/metrics` on a listener of its own at this address (e.g. `0.0.0.0:9090`, a port
    /// only the Prometheus scraper reaches). Without it and without METRICS_TOKEN, `/metrics`
    /// is not served.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Serve `/metrics` on the main port too, to `Authorization: Bearer <METRICS_TOKEN>` only.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<SecretString>,
    /// Connections open at one time; more are closed at once. Default: what the process's
    /// open-file limit leaves room for (it is raised to its hard limit at start), at most 10,000.
    #[arg(long, env = "MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Threads that run the HTTP connections, one single-threaded runtime each; 0 runs them on
    /// the worker threads of the main runtime. Default: one per core in `up`, 0 in `serve`
    /// (see [`SERVE_HTTP_THREADS`]).
    #[arg(long, env = "HTTP_THREADS")]
    pub http_threads: Option<usize>,
}

/// The most connection threads: more than any machine's cores, few enough to start.
const MAX_HTTP_THREADS: usize = 256;

/// `serve`'s connection threads by default: none, the connections run on the main runtime.
/// Measured in the local cluster (BENCHMARKS.md, issue 16 part 10), threads of their own made
/// the distributed rush slower (p99 about 260 ms against 165 ms): there a handler's database
/// connections are sockets, tied to the thread that opened them, so a query waits for that
/// thread to poll its socket between its own requests. In `up` every database call goes to
/// SQLite's threads, and the threads nearly halved the rush's p99.
pub const SERVE_HTTP_THREADS: usize = 0;

impl UpArgs {
    /// The listener's limits and threads for `up`.
    pub fn serve_limits(&self) -> anyhow::Result<bt_platform::http::ServeLimits> {
        self.common
            .serve_limits(bt_platform::http::default_connection_threads())
    }
}

impl ServeArgs {
    /// The listener's limits and threads for `serve`.
    pub fn serve_limits(&self) -> anyhow::Result<bt_platform::http::ServeLimits> {
        self.common.serve_limits(SERVE_HTTP_THREADS)
    }
}

impl CommonArgs {
    /// What the listener tolerates (the connection cap, header and idle timeouts) and the
    /// threads its connections run on.
    fn serve_limits(
        &self,
        default_threads: usize,
    ) -> anyhow::Result<bt_platform::http::ServeLimits> {
        let max_connections = match self.max_connections {
            Some(0) => bail!("MAX_CONNECTIONS must be at least 1"),
            Some(n) => n,
            None => default_max_connections(),
        };
        let connection_threads = match self.http_threads {
            Some(n) if n > MAX_HTTP_THREADS => bail!(
                "HTTP_THREADS must be at most {MAX_HTTP_THREADS} (the default is one per core in \
                 `up` and 0 in `serve`; 0 serves connections on the main runtime's worker threads)"
            ),
            Some(n) => n,
            None => default_threads,
        };
        Ok(bt_platform::http::ServeLimits {
            max_connections,
            connection_threads,
            ..Default::default()
        })
    }

    /// `/metrics` behind METRICS_TOKEN on the main port, and the request timeout.
    pub fn app_options(&self) -> anyhow::Result<bt_platform::http::AppOptions> {
        let metrics_token = match &self.metrics_token {
            Some(token) if token.expose_secret().len() < 16 => {
                bail!("METRICS_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 16`)")
            }
            Some(token) => Some(token.expose_secret().to_owned()),
            None => None,
        };
        Ok(bt_platform::http::AppOptions {
            metrics_token,
            ..Default::default()
        })
    }
}

/// Raises the soft open-file limit to the hard one, and leaves room under it for database
/// connections, log files and the like: the default connection cap.
fn default_max_connections() -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
        limit = getrlimit(Resource::Nofile);
    }
    let files = limit.current.unwrap_or(u64::MAX);
    usize::try_from(files.saturating_sub(256))
        .unwrap_or(usize::MAX)
        .clamp(64, 10_000)
}

/// `SELLER_FEE_PERCENT`: a whole percentage from 0 to 100.
fn seller_fee_percent(text: &str) -> Result<u8, String> {
    text.trim()
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| {
            "SELLER_FEE_PERCENT must be a whole number of percent from 0 to 100 (default 5)".into()
        })
}

/// `PAYOUT_DELAY_HOURS`: whole hours from 0 to a year.
fn payout_delay_hours(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|h| *h <= 8760)
        .ok_or_else(|| {
            "PAYOUT_DELAY_HOURS must be a whole number of hours from 0 to 8760 (a year; default 48)"
                .into()
        })
}

/// `PAYOUT_INTERVAL_SECONDS`: whole seconds from 1 to a day.
fn payout_interval_seconds(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=86_400).contains(s))
        .ok_or_else(|| {
            "PAYOUT_INTERVAL_SECONDS must be a whole number of seconds from 1 to 86400 (a day; \
             default 60)"
                .into()
        })
}

/// Who takes payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PaymentProvider {
    Stripe,
    Development,
}

impl ServeArgs {
    /// The bus settings of the distributed mode.
    pub fn bus_config(&self) -> anyhow::Result<bt_platform::bus::BusConfig> {
        let prefix = match &self.event_subject_prefix {
            Some(prefix) => prefix.clone(),
            None if self.event_stream == DEFAULT_STREAM => String::new(),
            None => format!("{}.", self.event_stream.to_lowercase()),
        };
        let prefix = &prefix;
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        let prefix_ok = prefix.is_empty()
            || prefix
                .strip_suffix('.')
                .is_some_and(|p| p.split('.').all(token_ok));
        if !prefix_ok {
            bail!(
                "EVENT_SUBJECT_PREFIX must be empty or dot-separated tokens ending with a dot, e.g. `staging.`"
            );
        }
        if !token_ok(&self.event_stream) {
            bail!("EVENT_STREAM may only contain letters, digits, `-` and `_`");
        }
        if !(1..=3600).contains(&self.event_ack_wait_seconds) {
            bail!("EVENT_ACK_WAIT_SECONDS must be from 1 to 3600");
        }
        if self.event_relay_yield_ms > 5000 {
            bail!(
                "EVENT_RELAY_YIELD_MS must be from 0 to 5000 (events wait at most that long for a burst of requests)"
            );
        }
        Ok(bt_platform::bus::BusConfig {
            subject_prefix: prefix.clone(),
            stream: self.event_stream.clone(),
            ack_wait: Duration::from_secs(self.event_ack_wait_seconds),
            relay_busy: self.event_relay_busy,
            relay_yield: Duration::from_millis(self.event_relay_yield_ms),
            ..Default::default()
        })
    }
}

/// The stream of the default deployment, whose subjects are the contract's without a prefix.
pub const DEFAULT_STREAM: &str = "BUYTICKET";

/// The two modes differ in their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Distributed,
}

/// Settings every service may need, resolved from [`CommonArgs`].
#[derive(Debug, Clone)]
pub struct Shared {
    pub sessions: SessionKeys,
    pub auth_rate_limit: RateLimiter,
    pub db_options: DbOptions,
    pub order_expiration: Duration,
    pub payments: bt_payments::Settings,
    pub trusted_proxies: TrustedProxies,
    pub tickets: bt_tickets::Settings,
    pub notifications: NotificationSettings,
}

/// The notifications service's settings before the mail transport is chosen (which depends on
/// the mode: `up` falls back to a mail directory).
#[derive(Debug, Clone)]
pub struct NotificationSettings {
    pub smtp_url: Option<SecretString>,
    /// `SMTP_CA_FILE`.
    pub smtp_ca_file: Option<std::path::PathBuf>,
    pub mail_from: String,
    pub limits: bt_notifications::Limits,
    /// `PUBLIC_URL`, for the links in emails (`up` defaults it to its own address).
    pub public_url: Option<String>,
    /// Where `up` writes emails without `SMTP_URL`.
    pub mail_dir: Option<std::path::PathBuf>,
    /// `ALERT_HOLD_SECONDS`.
    pub alert_hold: Duration,
}

impl NotificationSettings {
    /// The mail transport: `SMTP_URL`, else the mail directory of `up`.
    pub fn mailer(&self) -> anyhow::Result<bt_notifications::Mailer> {
        let mailer = match (&self.smtp_url, &self.mail_dir) {
            (Some(url), _) => {
                let ca = match &self.smtp_ca_file {
                    Some(path) => {
                        let shown = path.display().to_string();
                        let pem = std::fs::read(path).map_err(|e| {
                            bt_notifications::MailConfigError::CaFile(shown.clone(), e.to_string())
                        })?;
                        Some((shown, pem))
                    }
                    None => None,
                };
                bt_notifications::Mailer::smtp_trusting(
                    url.expose_secret(),
                    &self.mail_from,
                    ca.as_ref()
                        .map(|(shown, pem)| (shown.as_str(), pem.as_slice())),
                )?
            }
            (None, Some(dir)) => bt_notifications::Mailer::directory(dir.clone(), &self.mail_from)?,
            (None, None) => bail!(
                "SMTP_URL is not set: the notifications service sends receipts, sale notices \
                 and ticket alerts by email. Set it to the mail server, e.g. \
                 smtps://user:password@smtp.example.com:465 (or smtp://relay:25 for a relay on \
                 a trusted network)"
            ),
        };
        Ok(mailer)
    }
}

impl CommonArgs {
    /// Resolves the settings; `dev_key` is the embedded default's generated key.
    pub fn resolve(&self, mode: Mode, dev_key: Option<Vec<u8>>) -> anyhow::Result<Shared> {
        let key = match (&self.jwt_key, dev_key) {
            (Some(key), _) => {
                let key = key.expose_secret().as_bytes().to_vec();
                if key.len() < MIN_KEY_BYTES {
                    bail!(
                        "JWT_KEY must be at least {MIN_KEY_BYTES} bytes long (it has {})",
                        key.len()
                    );
                }
                key
            }
            (None, Some(dev_key)) => dev_key,
            (None, None) => bail!(
                "JWT_KEY is not set. Outside the embedded default (`buyticket up`) every service \
                 needs the shared session key: set JWT_KEY to a random string of at least \
                 {MIN_KEY_BYTES} bytes, e.g. `export JWT_KEY=$(openssl rand -hex 32)`"
            ),
        };
        let cookie_secure = self.cookie_secure.unwrap_or(mode == Mode::Distributed);
        // Proxies are trusted only when configured; the web client, which calls the API for
        // the browsers, proves itself with the token every process derives from the key.
        let proxies = match &self.trusted_proxies {
            Some(list) => list
                .parse::<TrustedProxies>()
                .map_err(|e| anyhow::anyhow!("TRUSTED_PROXIES: {e}"))?,
            None => TrustedProxies::none(),
        }
        .with_token(TrustedProxies::token_for_key(&key));
        if self.order_expiration_seconds == 0 {
            bail!("ORDER_EXPIRATION_SECONDS must be at least 1");
        }
        let resale_cap = bt_tickets::domain::ResaleCap::new(self.resale_price_cap_percent)
            .map_err(|e| anyhow::anyhow!("RESALE_PRICE_CAP_PERCENT {e}, e.g. 120"))?;
        if self.database_max_connections == Some(0) {
            bail!("DATABASE_MAX_CONNECTIONS must be at least 1");
        }
        let currency = self.payment_currency.trim().to_lowercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            bail!("PAYMENT_CURRENCY must be a three-letter ISO currency code, e.g. usd");
        }
        if !has_two_decimals(&currency) {
            bail!(
                "PAYMENT_CURRENCY {currency} does not have two decimals: BuyTicket keeps prices in \
                 hundredths, and Stripe takes {currency}'s amounts in other units, so every charge \
                 would be wrong; use a currency with cents, e.g. usd or eur"
            );
        }
        let provider = match (self.payment_provider, &self.stripe_secret_key) {
            (Some(PaymentProvider::Development), Some(_)) => bail!(
                "PAYMENT_PROVIDER=development and STRIPE_SECRET_KEY are both set: the development \
                 provider never calls Stripe; unset one of them"
            ),
            (Some(PaymentProvider::Stripe), None) => bail!(
                "STRIPE_SECRET_KEY is not set, and PAYMENT_PROVIDER=stripe needs it: set it to \
                 the secret key of the Stripe account (sk_live_... or sk_test_...)"
            ),
            (_, Some(key)) => bt_payments::provider::Provider::Stripe(
                bt_payments::provider::Stripe::new(&self.stripe_api_base, key.clone()),
            ),
            (_, None) => bt_payments::provider::Provider::Development(Default::default()),
        };
        let public_url = match self.public_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url)
                if (url.starts_with("https://") || url.starts_with("http://"))
                    && !url.contains(char::is_whitespace) =>
            {
                Some(url.trim_end_matches('/').to_owned())
            }
            Some(_) => bail!(
                "PUBLIC_URL must be the absolute http(s) address browsers reach the site at, \
                 e.g. https://buyticket.example.com"
            ),
        };
        if public_url.is_none() && matches!(provider, bt_payments::provider::Provider::Stripe(_)) {
            tracing::warn!(
                "PUBLIC_URL is not set: sellers cannot set up payouts through Stripe until it is"
            );
        }
        let notifications = NotificationSettings {
            smtp_url: self.smtp_url.clone(),
            smtp_ca_file: self.smtp_ca_file.clone(),
            mail_from: self.mail_from.clone(),
            limits: bt_notifications::Limits {
                alerts_per_user: self.alerts_per_user,
                alert_emails_per_hour: self.alert_emails_per_hour,
            },
            public_url: public_url.clone(),
            mail_dir: None,
            alert_hold: Duration::from_secs(self.alert_hold_seconds),
        };
        // A bad address is refused at start, not at the first email.
        if let Err(err) = self.mail_from.parse::<lettre::message::Mailbox>() {
            bail!(
                "MAIL_FROM is not a valid address ({err}): e.g. BuyTicket <no-reply@example.com>"
            );
        }
        let payouts = bt_payments::payouts::PayoutSettings {
            rules: bt_payments::ledger::PayoutRules {
                fee: bt_payments::ledger::FeePercent::new(self.seller_fee_percent).ok_or_else(
                    || anyhow::anyhow!("SELLER_FEE_PERCENT must be from 0 to 100 (default 5)"),
                )?,
                delay: Duration::from_secs(self.payout_delay_hours * 3600),
            },
            interval: Duration::from_secs(self.payout_interval_seconds),
            public_url,
        };
        let sessions = SessionKeys::new(
            &key,
            Duration::from_secs(self.jwt_ttl_seconds),
            cookie_secure,
        );
        Ok(Shared {
            sessions: sessions.clone(),
            auth_rate_limit: RateLimiter::per_minute(
                self.auth_rate_limit_per_minute,
                proxies.clone(),
            ),
            trusted_proxies: proxies,
            db_options: DbOptions {
                max_connections: self.database_max_connections,
                ..DbOptions::default()
            },
            order_expiration: Duration::from_secs(self.order_expiration_seconds),
            tickets: bt_tickets::Settings {
                resale_cap,
                ..bt_tickets::Settings::default()
            },
            payments: bt_payments::Settings {
                sessions: sessions.clone(),
                provider,
                currency,
                webhook_secret: self.stripe_webhook_secret.clone(),
                webhook_tolerance_secs: 300,
                payouts,
            },
            notifications,
        })
    }
}

impl CommonArgs {
    /// `serve payments` takes real payments only: without a Stripe key it starts only when
    /// the development provider is asked for explicitly.
    pub fn require_payment_provider(&self) -> anyhow::Result<()> {
        if self.stripe_secret_key.is_none() && self.payment_provider.is_none() {
            bail!(
                "STRIPE_SECRET_KEY is not set: the payments service charges through Stripe. Set \
                 STRIPE_SECRET_KEY (and STRIPE_WEBHOOK_SECRET), or PAYMENT_PROVIDER=development \
                 for a test deployment that accepts Stripe's test tokens and charges nothing"
            );
        }
        Ok(())
    }
}

/// The development key of the embedded default: read from `<data_dir>/jwt_key`, or generated
/// there (random, owner-only permissions) on first start, so sessions survive restarts.
pub fn dev_jwt_key(data_dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("jwt_key");
    match std::fs::read_to_string(&path) {
        Ok(key) if key.trim().len() >= MIN_KEY_BYTES => return Ok(key.trim().as_bytes().to_vec()),
        Ok(_) => bail!(
            "{} is too short; delete it to generate a new key",
            path.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    }
    let key = hex::encode(rand::random::<[u8; 32]>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    options
        .open(&path)
        .and_then(|mut f| f.write_all(key.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a development JWT key");
    Ok(key.into_bytes())
}

/// Whether Stripe takes `currency`'s amounts in hundredths, as BuyTicket keeps its prices: not
/// its zero-decimal currencies (amounts in whole units) nor its three-decimal ones
/// (<https://docs.stripe.com/currencies#zero-decimal>).
fn has_two_decimals(currency: &str) -> bool {
    const ZERO_DECIMAL: [&str; 16] = [
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    ];
    const THREE_DECIMAL: [&str; 5] = ["bhd", "jod", "kwd", "omr", "tnd"];
    !ZERO_DECIMAL.contains(&currency) && !THREE_DECIMAL.contains(&currency)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["buyticket", "serve", "tickets"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => args,
            Command::Up(_) => unreachable!("serve was parsed"),
        }
    }

    fn up(args: &[&str]) -> UpArgs {
        let mut argv = vec!["buyticket", "up"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Up(args) => args,
            Command::Serve(_) => unreachable!("up was parsed"),
        }
    }

    #[test]
    fn connections_get_threads_of_their_own_in_up_and_not_in_serve_unless_told() {
        let threads = |limits: anyhow::Result<bt_platform::http::ServeLimits>| {
            limits.unwrap().connection_threads
        };
        let cores = bt_platform::http::default_connection_threads();
        assert_eq!(threads(up(&[]).serve_limits()), cores);
        assert_eq!(threads(serve(&[]).serve_limits()), 0);
        assert_eq!(threads(up(&["--http-threads", "0"]).serve_limits()), 0);
        assert_eq!(threads(serve(&["--http-threads", "3"]).serve_limits()), 3);
        let refused = serve(&["--http-threads", "257"])
            .serve_limits()
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("HTTP_THREADS must be at most 256")
        );
    }

    #[test]
    fn a_currency_without_two_decimals_is_refused_rather_than_charged_a_hundred_times_over() {
        let key = vec![7; MIN_KEY_BYTES];
        let currency = |code: &str| {
            up(&["--payment-currency", code])
                .common
                .resolve(Mode::Embedded, Some(key.clone()))
                .map(|shared| shared.payments.currency)
        };
        assert_eq!(currency(" EUR ").unwrap(), "eur");
        assert_eq!(currency("usd").unwrap(), "usd");
        // Prices are kept in hundredths; Stripe takes these currencies' amounts in whole units
        // (yen) or in thousandths (dinar): 20.00 would be charged as 2,000 yen or 2.000 dinar.
        for code in ["jpy", "KRW", "xof", "kwd", "bhd"] {
            let err = currency(code).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!(
                    "PAYMENT_CURRENCY {} does not have two decimals",
                    code.to_lowercase()
                )) && err.contains("e.g. usd or eur"),
                "{code}: {err}"
            );
        }
        let err = currency("us").unwrap_err().to_string();
        assert!(err.contains("three-letter ISO currency code"), "{err}");
    }

    #[test]
    fn deployments_on_one_nats_get_subjects_of_their_own_by_default() {
        let cases = [
            (vec![], DEFAULT_STREAM, ""),
            (
                vec!["--event-stream", "BUYTICKET_LOCAL"],
                "BUYTICKET_LOCAL",
                "buyticket_local.",
            ),
            (
                vec!["--event-stream", "Staging-2"],
                "Staging-2",
                "staging-2.",
            ),
            (
                vec![
                    "--event-stream",
                    "STAGING",
                    "--event-subject-prefix",
                    "stg.",
                ],
                "STAGING",
                "stg.",
            ),
            (
                vec!["--event-stream", "OTHER", "--event-subject-prefix", ""],
                "OTHER",
                "",
            ),
        ];
        for (args, stream, prefix) in cases {
            let config = serve(&args).bus_config().unwrap();
            assert_eq!(
                (config.stream.as_str(), config.subject_prefix.as_str()),
                (stream, prefix),
                "{args:?}"
            );
        }
    }

    #[test]
    fn a_mail_authority_file_that_cannot_be_read_is_a_clear_error() {
        let args = serve(&[
            "--smtp-url",
            "smtp://mail.example.com:587?tls=required",
            "--smtp-ca-file",
            "/nonexistent/relay-ca.pem",
        ]);
        assert_eq!(
            args.common.smtp_ca_file.as_deref(),
            Some(std::path::Path::new("/nonexistent/relay-ca.pem"))
        );
        let settings = NotificationSettings {
            smtp_url: args.common.smtp_url.clone(),
            smtp_ca_file: args.common.smtp_ca_file.clone(),
            mail_from: args.common.mail_from.clone(),
            limits: bt_notifications::Limits::default(),
            public_url: None,
            mail_dir: None,
            alert_hold: Duration::ZERO,
        };
        let err = settings.mailer().unwrap_err().to_string();
        assert!(
            err.starts_with("SMTP_CA_FILE /nonexistent/relay-ca.pem: No such file"),
            "{err}"
        );
    }

    #[test]
    fn the_relay_yields_to_bursts_as_configured_within_bounds() {
        let default = serve(&[]).bus_config().unwrap();
        assert_eq!(
            (default.relay_busy, default.relay_yield),
            (40, Duration::from_millis(250))
        );
        let set = serve(&["--event-relay-busy", "400", "--event-relay-yield-ms", "0"])
            .bus_config()
            .unwrap();
        assert_eq!((set.relay_busy, set.relay_yield), (400, Duration::ZERO));
        let err = serve(&["--event-relay-yield-ms", "5001"])
            .bus_config()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("EVENT_RELAY_YIELD_MS must be from 0 to 5000"),
            "{err}"
        );
    }
}
