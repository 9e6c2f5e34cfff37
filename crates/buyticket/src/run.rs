//! Starting the services in either mode, and stopping them gracefully: stop accepting, finish
//! in-flight requests, then stop background work (event handlers finish their current event,
//! outbox relays flush).

use anyhow::{Context, bail};
use bt_platform::bus::BusConfig;
use bt_platform::bus::local::LocalBus;
use bt_platform::bus::nats::NatsBus;
use bt_platform::db::redact_url;
use bt_platform::{Bus, Runtime, Service};
use tokio::net::TcpListener;

use crate::config::{Cli, Command, Mode, ServeArgs, ServiceName, Shared, UpArgs};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up(args).await,
        Command::Serve(args) => serve(args).await,
    }
}

/// The services `up` runs, in start order.
const EMBEDDED: [ServiceName; 6] = [
    ServiceName::Auth,
    ServiceName::Tickets,
    ServiceName::Orders,
    ServiceName::Expiration,
    ServiceName::Payments,
    ServiceName::Notifications,
];

/// The embedded default: every service in this process, one listener, SQLite under the data
/// dir, the in-process event log in `bus.db`.
async fn up(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    #[cfg(unix)]
    {
        // The databases hold password hashes and payment records: the owner's only.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&args.data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| {
                format!("restricting the data directory {}", args.data_dir.display())
            })?;
    }
    let dev_key = if args.common.jwt_key.is_none() {
        Some(crate::config::dev_jwt_key(&args.data_dir)?)
    } else {
        None
    };
    let mut shared = args.common.resolve(Mode::Embedded, dev_key)?;
    shared.tickets.files = bt_platform::files::FileStore::local(args.data_dir.join("files"))?;
    let sqlite_url = |name: &str| {
        format!(
            "sqlite://{}",
            args.data_dir.join(format!("{name}.db")).display()
        )
    };
    let bus = LocalBus::open(&sqlite_url("bus"), BusConfig::default())
        .await
        .context("opening the event log")?;
    let runtime = Runtime::new(Bus::Local(Box::new(bus)));

    // Bound first: the web client calls the API through this same listener.
    let listener = bind(&args.host, args.port).await?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    // Emails link to the site: PUBLIC_URL, or this listener's address.
    shared
        .notifications
        .public_url
        .get_or_insert_with(|| format!("http://{host}:{}", addr.port()));
    shared.notifications.mail_dir = Some(args.data_dir.join("mail"));
    let mut services = Vec::new();
    for name in EMBEDDED {
        services.push(build(name, &sqlite_url(name.as_str()), &shared, &runtime).await?);
    }
    services.push(bt_client::service(client_settings(
        &shared,
        format!("http://{host}:{}", addr.port()),
        &args.common,
    )));
    services.push(api_reference());

    println!("BuyTicket is running at http://{host}:{}", addr.port());
    println!("Data directory: {}", args.data_dir.display());
    tracing::info!(%addr, "listening");
    spawn_metrics_listener(&args.common).await?;
    let served = bt_platform::http::serve_with(
        listener,
        bt_platform::http::app_with(services, &args.common.app_options()?),
        bt_platform::http::shutdown_signal(),
        args.serve_limits()?,
    )
    .await;
    runtime.stop().await;
    served.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

/// One service in distributed mode.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut shared = args.common.resolve(Mode::Distributed, None)?;
    if args.service == ServiceName::Payments {
        args.common.require_payment_provider()?;
    }
    if args.service == ServiceName::Tickets {
        shared.tickets.files = args.file_store()?;
    }
    if args.service == ServiceName::Notifications {
        // Refused before connecting to anything: a mail server is required, and must parse.
        shared.notifications.mailer()?;
    }
    if args.service == ServiceName::Notifications && shared.notifications.public_url.is_none() {
        bail!(
            "PUBLIC_URL is not set: the notifications service links each email to the site \
                 (an order, a ticket). Set it to the address browsers reach the site at, e.g. \
                 https://buyticket.example.com"
        );
    }
    if shared.sessions.ttl() > bt_platform::sessions::MAX_SESSION_TTL {
        bail!(
            "JWT_TTL_SECONDS is {}: at most {} in the distributed mode, the time the event stream \
             keeps the sign-outs that other services must know about",
            shared.sessions.ttl().as_secs(),
            bt_platform::sessions::MAX_SESSION_TTL.as_secs()
        );
    }
    let bus_config = args.bus_config()?;
    // Every service follows sign-outs on the bus (to refuse revoked sessions); most also
    // publish or consume events.
    let bus = NatsBus::connect(&args.nats_url, bus_config)
        .await
        .with_context(|| format!("connecting to NATS at {}", redact_url(&args.nats_url)))?;
    let runtime = Runtime::new(Bus::Nats(Box::new(bus)));
    bt_platform::sessions::follow_revocations(&runtime, shared.sessions.clone())
        .await
        .context("reading the sessions signed out from the event stream")?;
    if args.service == ServiceName::Client {
        let Some(api_base) = &args.api_base_url else {
            bail!(
                "API_BASE_URL is not set: the client service calls the API through the gateway, e.g. http://ingress"
            );
        };
        let service = bt_client::service(client_settings(&shared, api_base.clone(), &args.common));
        return serve_one(&args, service, runtime, api_base).await;
    }
    let Some(database_url) = &args.database_url else {
        bail!(
            "DATABASE_URL is not set: the {} service needs its own database, e.g. postgres://user@host/{}",
            args.service.as_str(),
            args.service.as_str()
        );
    };
    let service = build(args.service, database_url, &shared, &runtime).await?;
    serve_one(&args, service, runtime, database_url).await
}

/// Serves one service until a shutdown signal, then stops its background work.
async fn serve_one(
    args: &ServeArgs,
    service: Service,
    runtime: Runtime,
    backing: &str,
) -> anyhow::Result<()> {
    let listener = bind(&args.host, args.port).await?;
    println!(
        "BuyTicket {} service listening on http://{}",
        args.service.as_str(),
        listener.local_addr()?
    );
    tracing::info!(service = args.service.as_str(), addr = %listener.local_addr()?, backing = %redact_url(backing), "listening");
    spawn_metrics_listener(&args.common).await?;
    let served = bt_platform::http::serve_with(
        listener,
        bt_platform::http::app_with(vec![service, api_reference()], &args.common.app_options()?),
        bt_platform::http::shutdown_signal(),
        args.serve_limits()?,
    )
    .await;
    runtime.stop().await;
    served.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

/// The whole API's OpenAPI document at `/api/openapi.json` and its reference page at
/// `/api/docs`. Every process serves them (the documents are built from the code, which every
/// process has): in the distributed mode the ingress sends these paths to the client service,
/// like every path it does not route to an API service.
fn api_reference() -> Service {
    bt_platform::api_docs::reference_service([
        bt_auth::handlers::openapi(),
        bt_tickets::handlers::openapi(),
        bt_orders::handlers::openapi(),
        bt_payments::handlers::openapi(),
        bt_notifications::handlers::openapi(),
    ])
}

/// The web client's settings.
fn client_settings(
    shared: &Shared,
    api_base: String,
    common: &crate::config::CommonArgs,
) -> bt_client::Settings {
    bt_client::Settings {
        api_base,
        sessions: shared.sessions.clone(),
        stripe_publishable_key: common.stripe_publishable_key.clone(),
        currency: shared.payments.currency.clone(),
        cookie_secure: shared.sessions.cookie_secure(),
        trusted_proxies: shared.trusted_proxies.clone(),
        reservation_window: shared.order_expiration,
        seller_fee_percent: shared.payments.payouts.rules.fee.get(),
    }
}

async fn build(
    name: ServiceName,
    database_url: &str,
    shared: &Shared,
    runtime: &Runtime,
) -> anyhow::Result<Service> {
    match name {
        ServiceName::Auth => {
            let settings = bt_auth::Settings {
                sessions: shared.sessions.clone(),
                rate_limit: shared.auth_rate_limit.clone(),
            };
            bt_auth::service(database_url, &shared.db_options, settings, runtime)
                .await
                .with_context(|| {
                    format!("starting the auth service on {}", redact_url(database_url))
                })
        }
        ServiceName::Tickets => bt_tickets::service(
            database_url,
            &shared.db_options,
            shared.sessions.clone(),
            shared.tickets.clone(),
            runtime,
        )
        .await
        .with_context(|| {
            format!(
                "starting the tickets service on {}",
                redact_url(database_url)
            )
        }),
        ServiceName::Orders => {
            let settings = bt_orders::Settings {
                sessions: shared.sessions.clone(),
                expiration: shared.order_expiration,
                taken_trust: bt_orders::reservations::TRUST,
            };
            bt_orders::service(database_url, &shared.db_options, settings, runtime)
                .await
                .with_context(|| {
                    format!(
                        "starting the orders service on {}",
                        redact_url(database_url)
                    )
                })
        }
        ServiceName::Expiration => {
            bt_expiration::service(database_url, &shared.db_options, runtime)
                .await
                .with_context(|| {
                    format!(
                        "starting the expiration service on {}",
                        redact_url(database_url)
                    )
                })
        }
        ServiceName::Payments => bt_payments::service(
            database_url,
            &shared.db_options,
            shared.payments.clone(),
            runtime,
        )
        .await
        .with_context(|| {
            format!(
                "starting the payments service on {}",
                redact_url(database_url)
            )
        }),
        ServiceName::Notifications => {
            let settings = bt_notifications::Settings {
                sessions: shared.sessions.clone(),
                mailer: shared.notifications.mailer()?,
                public_url: shared.notifications.public_url.clone().unwrap_or_default(),
                currency: shared.payments.currency.clone(),
                limits: shared.notifications.limits,
                alert_hold: shared.notifications.alert_hold,
            };
            bt_notifications::service(database_url, &shared.db_options, settings, runtime)
                .await
                .with_context(|| {
                    format!(
                        "starting the notifications service on {}",
                        redact_url(database_url)
                    )
                })
        }
        ServiceName::Client => bail!("the client service has no database of its own"),
    }
}

/// `/metrics` on a listener of its own when METRICS_ADDR is set.
async fn spawn_metrics_listener(common: &crate::config::CommonArgs) -> anyhow::Result<()> {
    let Some(addr) = &common.metrics_addr else {
        return Ok(());
    };
    let listener = TcpListener::bind(addr.as_str())
        .await
        .with_context(|| format!("METRICS_ADDR: cannot listen on {addr}"))?;
    println!("Metrics served on {} at /metrics", listener.local_addr()?);
    tokio::spawn(async move {
        let served = bt_platform::http::serve(
            listener,
            bt_platform::http::metrics_router(),
            std::future::pending(),
        )
        .await;
        if let Err(err) = served {
            tracing::error!(%err, "the metrics listener stopped");
        }
    });
    Ok(())
}

/// Connections the kernel may hold for the accept loop (capped by `net.core.somaxconn`).
/// Tokio's default of 1,024 overflowed when nginx opened a rush's worth of connections to
/// one replica at once (`TcpExtListenOverflows`), and each dropped connection was retried by
/// its client a second later: the distributed rush's p99 of about 1.1 s.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    let listen = async {
        let mut last = None;
        for addr in tokio::net::lookup_host((host, port)).await? {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            match socket
                .bind(addr)
                .and_then(|()| socket.listen(LISTEN_BACKLOG))
            {
                Ok(listener) => return Ok(listener),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the host name has no address")
        }))
    };
    listen
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))
}
