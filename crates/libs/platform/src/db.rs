//! Storage: SQLite or PostgreSQL behind one enum, chosen by the database URL.
//!
//! Queries are written once, as `$N` SQL constants that both backends accept, and run through
//! [`on_db!`](crate::on_db) / [`on_tx!`](crate::on_tx), which expand the body once per concrete
//! pool so that each backend uses its native types (a write outside a transaction through
//! [`write_on_db!`](crate::write_on_db), which takes SQLite's writer's turn first). Timestamps
//! are stored as BIGINT milliseconds since the Unix epoch (UTC) on both backends: one type,
//! ordered and compared the same way.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgPool, Postgres, Sqlite, SqlitePool, Transaction};

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a URL names, if any.
    pub fn of_url(url: &str) -> Option<Self> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }
}

/// A service's own database.
#[derive(Debug, Clone)]
pub enum Db {
    /// With the turn its writers take in this process ([`Db::write_turn`]).
    Sqlite(SqlitePool, Writers),
    Postgres(PgPool),
}

/// The writers of one SQLite database in this process, one at a time.
///
/// SQLite has one writer; a second one that finds the database locked is put to sleep by
/// SQLite's busy handler in steps of 1, 2, 5, 10, 15, 20, 25 ... ms, however soon the lock is
/// free. Measured in a rush (the `browse` bench): a batch of orders waited 34 ms and then
/// 102 ms behind the outbox relay and an event consumer, which is those steps added up. So the
/// writers of this process queue here instead, in order, and are woken as soon as the one
/// before them is done; SQLite's busy handler only sees other processes.
#[derive(Debug, Clone)]
pub struct Writers {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// How long a writer waits for its turn before the request fails as busy (503).
    timeout: Duration,
}

/// A writer's turn on a SQLite database (see [`Writers`]); the next one goes when it is dropped.
#[derive(Debug)]
pub struct WriteTurn(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);

impl Writers {
    fn new(timeout: Duration) -> Self {
        Self {
            turn: Arc::new(tokio::sync::Mutex::new(())),
            timeout,
        }
    }

    async fn turn(&self) -> sqlx::Result<WriteTurn> {
        tokio::time::timeout(self.timeout, self.turn.clone().lock_owned())
            .await
            .map(WriteTurn)
            .map_err(|_| sqlx::Error::PoolTimedOut)
    }
}

/// A service's migrations, one folder per backend (`migrations/sqlite`, `migrations/postgres`).
#[derive(Debug)]
pub struct Migrations {
    pub sqlite: Migrator,
    pub postgres: Migrator,
}

/// The tables every service database has: the event outbox and inbox.
pub static PLATFORM_MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    postgres: sqlx::migrate!("./migrations/postgres"),
};

/// The same migrations, tolerant of applied versions that belong to the other set.
fn lenient(migrator: &Migrator) -> Migrator {
    Migrator {
        migrations: migrator.migrations.clone(),
        ignore_missing: true,
        locking: migrator.locking,
        no_tx: migrator.no_tx,
    }
}

impl Migrations {
    /// No migrations of its own (the platform's tables only).
    pub const NONE: Migrations = Migrations {
        sqlite: Migrator::DEFAULT,
        postgres: Migrator::DEFAULT,
    };
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Largest number of pooled connections; `None` is the backend's default
    /// ([`SQLITE_CONNECTIONS`], [`POSTGRES_CONNECTIONS`]).
    pub max_connections: Option<u32>,
    /// How long a request waits for a pooled connection before failing.
    pub acquire_timeout: Duration,
}

/// SQLite's default pool: one writer at a time, and each connection is a thread of its own
/// with its own page cache. Measured with the `browse` bench on 2 cores: 4 connections per
/// service serve the listing and a rush as fast as 10, and `up` (7 databases) holds 15–20 MB
/// less after the rush.
pub const SQLITE_CONNECTIONS: u32 = 4;

/// PostgreSQL's default pool.
pub const POSTGRES_CONNECTIONS: u32 = 10;

/// A pooled PostgreSQL connection idle for at least this long is pinged before it is handed
/// out: a server restart or a cut connection leaves connections that look idle and are dead.
/// One used more recently is handed out at once, because sqlx pings every connection as it is
/// released (which also confirms it is in a clean state), so a check on acquire would be a
/// second round trip before each transaction within moments of the first. sqlx's default pings
/// on every acquire; HikariCP skips that check within 500 ms of the last use
/// (`aliveBypassWindowMs`) for the same reason.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Whether a pooled PostgreSQL connection idle for `idle_for` must be pinged before it is
/// handed out ([`PING_AFTER_IDLE`]).
pub fn needs_ping(idle_for: Duration) -> bool {
    idle_for >= PING_AFTER_IDLE
}

/// A PostgreSQL pool's settings: a connection is checked before it is handed out only when it
/// has been idle ([`needs_ping`]); one found dead is closed and another one is used.
fn postgres_pool() -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if needs_ping(meta.idle_for) {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
}

/// A SQLite pool's settings: a connection is a local file served by a thread of its own, with
/// no other end to lose, so it is not pinged before it is handed out (sqlx's default: a round
/// trip to that thread and back before each transaction or statement).
pub(crate) fn sqlite_pool() -> SqlitePoolOptions {
    SqlitePoolOptions::new().test_before_acquire(false)
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported database URL {0:?}: expected sqlite://... or postgres://...")]
    UnsupportedUrl(String),
    #[error("could not open the database: {0}")]
    Connect(#[from] sqlx::Error),
    #[error("could not migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Db {
    /// Opens the database at `url` (creating it when missing) and applies `migrations`.
    pub async fn open(
        url: &str,
        options: &DbOptions,
        migrations: &Migrations,
    ) -> Result<Self, OpenError> {
        let db = Self::connect(url, options).await?;
        db.migrate(migrations).await?;
        Ok(db)
    }

    /// Opens the database at `url`, creating it when missing, without migrating.
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Self, OpenError> {
        match Backend::of_url(url) {
            Some(Backend::Sqlite) => {
                let connect = SqliteConnectOptions::from_str(url)?;
                private_file(connect.get_filename())
                    .map_err(|e| OpenError::Connect(sqlx::Error::Io(e)))?;
                let connect = connect
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true);
                let pool = sqlite_pool()
                    .max_connections(options.max_connections.unwrap_or(SQLITE_CONNECTIONS))
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(connect)
                    .await?;
                Ok(Self::Sqlite(pool, Writers::new(options.acquire_timeout)))
            }
            Some(Backend::Postgres) => {
                let connect = PgConnectOptions::from_str(url)?;
                create_postgres_database_if_missing(&connect).await?;
                let pool = postgres_pool()
                    .max_connections(options.max_connections.unwrap_or(POSTGRES_CONNECTIONS))
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(connect)
                    .await?;
                Ok(Self::Postgres(pool))
            }
            None => Err(OpenError::UnsupportedUrl(redact_url(url))),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(..) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the platform's tables (outbox, inbox) and then the service's own migrations,
    /// each only when not applied yet. Both sets share sqlx's migrations table, so each run
    /// ignores the versions of the other set.
    pub async fn migrate(
        &self,
        migrations: &Migrations,
    ) -> Result<(), sqlx::migrate::MigrateError> {
        for set in [&PLATFORM_MIGRATIONS, migrations] {
            match self {
                Self::Sqlite(pool, _) => lenient(&set.sqlite).run(pool).await?,
                Self::Postgres(pool) => lenient(&set.postgres).run(pool).await?,
            }
        }
        Ok(())
    }

    /// Starts a transaction for reads whose statements all see the database as of one
    /// instant: several reads that must agree (a page and the sums over every row) come from
    /// one snapshot even while writers commit. It takes no writer's turn and blocks no writer:
    /// on SQLite a deferred transaction (in WAL mode, the snapshot of its first read), on
    /// PostgreSQL `REPEATABLE READ READ ONLY` (the snapshot of its first statement). Never
    /// write through one: PostgreSQL refuses, and on SQLite the write would take the
    /// database's lock without the writer's turn ([`Writers`]).
    pub async fn snapshot(&self) -> sqlx::Result<Snapshot> {
        Ok(match self {
            Self::Sqlite(pool, _) => Snapshot::Sqlite(pool.begin_with("BEGIN DEFERRED").await?),
            Self::Postgres(pool) => Snapshot::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
        })
    }

    /// Starts a transaction. On SQLite it waits for its writer's turn in this process
    /// ([`Writers`]) and takes the write lock up front (`BEGIN IMMEDIATE`), so a
    /// read-then-write transaction never fails to upgrade under concurrent writers.
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Self::Sqlite(pool, writers) => {
                let turn = writers.turn().await?;
                Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?, turn)
            }
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// The writer's turn for a statement that writes outside [`Db::begin`] (SQLite; `None` on
    /// PostgreSQL, whose writers do not queue for one lock). Hold it while the statement runs.
    pub async fn write_turn(&self) -> sqlx::Result<Option<WriteTurn>> {
        match self {
            Self::Sqlite(_, writers) => writers.turn().await.map(Some),
            Self::Postgres(_) => Ok(None),
        }
    }

    /// The same database through a pool of its own of at most `connections` connections, for a
    /// task that must not wait behind the requests for a pooled connection (a group writer).
    /// On SQLite its writers still take their turn with the others of this process.
    pub async fn own_pool(&self, connections: u32) -> sqlx::Result<Db> {
        Ok(match self {
            Self::Sqlite(pool, writers) => {
                let options = pool.connect_options().as_ref().clone();
                let own = sqlite_pool()
                    .max_connections(connections)
                    .acquire_timeout(writers.timeout)
                    .connect_with(options)
                    .await?;
                Self::Sqlite(own, writers.clone())
            }
            Self::Postgres(pool) => {
                let options = pool.connect_options().as_ref().clone();
                let own = postgres_pool()
                    .max_connections(connections)
                    .acquire_timeout(pool.options().get_acquire_timeout())
                    .connect_with(options)
                    .await?;
                Self::Postgres(own)
            }
        })
    }

    /// The most connections the pool opens.
    pub fn max_connections(&self) -> u32 {
        match self {
            Self::Sqlite(pool, _) => pool.options().get_max_connections(),
            Self::Postgres(pool) => pool.options().get_max_connections(),
        }
    }

    /// Round trip to the database, for `/readyz`.
    pub async fn ping(&self) -> sqlx::Result<()> {
        match self {
            Self::Sqlite(pool, _) => pool.acquire().await?.ping().await,
            Self::Postgres(pool) => pool.acquire().await?.ping().await,
        }
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool, _) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// An open transaction on either backend. Dropped without [`Tx::commit`], it rolls back (and
/// a SQLite transaction gives the next writer its turn).
#[derive(Debug)]
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>, WriteTurn),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(..) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            Self::Sqlite(tx, _turn) => tx.commit().await,
            Self::Postgres(tx) => tx.commit().await,
        }
    }

    pub async fn rollback(self) -> sqlx::Result<()> {
        match self {
            Self::Sqlite(tx, _turn) => tx.rollback().await,
            Self::Postgres(tx) => tx.rollback().await,
        }
    }
}

/// A transaction for reads on either backend ([`Db::snapshot`]); ended by [`Snapshot::end`]
/// (or dropped, when it rolls back).
#[derive(Debug)]
pub enum Snapshot {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Snapshot {
    /// Ends the transaction (it wrote nothing: rolled back).
    pub async fn end(self) -> sqlx::Result<()> {
        match self {
            Self::Sqlite(tx) => tx.rollback().await,
            Self::Postgres(tx) => tx.rollback().await,
        }
    }
}

/// Runs `$body` with `$conn` bound to the connection of a `&mut` [`Snapshot`]:
/// `on_snapshot!(&mut snapshot, |conn| sqlx::query(SQL).fetch_all(conn).await)`.
#[macro_export]
macro_rules! on_snapshot {
    ($snapshot:expr, |$conn:ident| $body:expr) => {
        match $snapshot {
            $crate::db::Snapshot::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::db::Snapshot::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

/// Runs `$body` with `$pool` bound to the concrete pool of a [`Db`]:
/// `on_db!(&state.db, |pool| sqlx::query(SQL).bind(id).execute(pool).await)`.
#[macro_export]
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool, _) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` like [`on_db!`](crate::on_db), for a statement that writes outside a [`Tx`]:
/// `write_on_db!(&state.db, |pool| sqlx::query(SQL).bind(id).execute(pool).await)`.
///
/// On SQLite it first takes the writer's turn ([`Db::write_turn`]) and holds it while `$body`
/// runs: a lone `UPDATE` that met a transaction of this process at SQLite's lock would sleep in
/// the busy handler's steps (tens of ms, see [`Writers`]); with the turn it queues behind that
/// transaction and goes as soon as it commits. A turn not given within the acquire timeout is
/// `$body`'s `Err` (the `sqlx::Error` of [`Db::write_turn`], answered 503). On PostgreSQL
/// `$body` runs as it is.
///
/// Never while this task holds a [`Tx`] of the same database or a turn: the turn is not
/// reentrant, so the statement would wait for itself until the timeout.
#[macro_export]
macro_rules! write_on_db {
    ($db:expr, |$pool:ident| $body:expr) => {{
        let db: &$crate::db::Db = $db;
        match db.write_turn().await {
            Ok(_turn) => $crate::on_db!(db, |$pool| $body),
            Err(err) => Err(::core::convert::From::from(err)),
        }
    }};
}

/// Runs `$body` with `$conn` bound to the connection of a `&mut` [`Tx`]:
/// `on_tx!(&mut tx, |conn| sqlx::query(SQL).execute(conn).await)`.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::db::Tx::Sqlite(tx, _) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::db::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

/// The placeholders of `rows` rows of `columns` values, for a multi-row statement whose only
/// parameters they are: `($1, $2), ($3, $4)` on PostgreSQL, `(?, ?), (?, ?)` on SQLite.
///
/// Why not numbered on SQLite too: SQLite keeps named parameters (`$1` is a name to it) in a
/// list that it looks through for each one it reads, and sqlx asks it the name of each
/// parameter it binds, which walks that list again; both are quadratic in the parameters. An
/// anonymous `?` is not in the list and is bound by its position. Measured (`cargo bench -p
/// bt-platform --bench placeholders`, BENCHMARKS.md issue 16 part 17): a rush's group commit
/// of 100 orders of 15 values took 10–16 ms with `$N` and under 1 ms with `?`.
pub fn values_placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    let anonymous = format!("({})", anonymous_placeholders(columns));
    let row = |row: usize| match backend {
        Backend::Sqlite => anonymous.clone(),
        Backend::Postgres => format!("({})", list_placeholders(columns, 1 + row * columns)),
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

/// `?, ?, ?`: `count` anonymous placeholders, for a SQLite statement whose parameters are all
/// anonymous and bound in the order they are written (sqlx binds an anonymous one by its
/// position among the anonymous ones, so a `$1` beside them would take the first value twice).
/// Long lists are why: see [`values_placeholders`].
pub fn anonymous_placeholders(count: usize) -> String {
    vec!["?"; count].join(", ")
}

/// `$3, $4, $5`: `count` placeholders numbered from `first`, for `IN (...)` lists.
pub fn list_placeholders(count: usize, first: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// True when `err` is a unique-constraint violation, on either backend.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// Milliseconds since the Unix epoch, the stored form of every timestamp.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A URL with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                if userinfo.contains(':') {
                    format!("{scheme}://{user}:***@{host}")
                } else {
                    format!("{scheme}://{user}@{host}")
                }
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Makes a SQLite database file (and its `-wal` / `-shm` companions) readable by its owner
/// only — creating it so when it is missing: it may hold password hashes or payment records.
pub fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" || name.starts_with("file::memory:") {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
        for companion in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{name}{companion}"));
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

/// Creates the database named in `options` when the server says it does not exist (so that a
/// fresh PostgreSQL needs nothing but a role that may create databases).
async fn create_postgres_database_if_missing(options: &PgConnectOptions) -> sqlx::Result<()> {
    match options.connect().await {
        Ok(conn) => conn.close().await,
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("3D000") => {
            let name = options.get_database().unwrap_or("postgres").to_owned();
            let mut admin = options.clone().database("postgres").connect().await?;
            let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
            match sqlx::Executor::execute(&mut admin, sql.as_str()).await {
                Ok(_) => {}
                // Another replica created it first.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
                Err(e) => return Err(e),
            }
            admin.close().await
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pooled_connection_is_pinged_only_after_it_was_idle() {
        assert!(!needs_ping(Duration::ZERO));
        assert!(!needs_ping(PING_AFTER_IDLE - Duration::from_millis(1)));
        assert!(needs_ping(PING_AFTER_IDLE));
        assert!(needs_ping(Duration::from_secs(3600)));
    }

    #[test]
    fn the_backend_is_chosen_by_the_url_scheme() {
        assert_eq!(
            Backend::of_url("sqlite://data/auth.db"),
            Some(Backend::Sqlite)
        );
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("mysql://u@h/db"), None);
    }

    #[test]
    fn placeholders_number_rows_and_lists() {
        assert_eq!(
            values_placeholders(Backend::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(
            values_placeholders(Backend::Sqlite, 2, 3),
            "(?, ?, ?), (?, ?, ?)"
        );
        assert_eq!(list_placeholders(3, 2), "$2, $3, $4");
        assert_eq!(anonymous_placeholders(3), "?, ?, ?");
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://data/a.db"), "sqlite://data/a.db");
    }

    #[tokio::test]
    async fn an_unsupported_url_is_a_clear_error() {
        let err = Db::connect("mysql://root:pw@localhost/x", &DbOptions::default())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported database URL \"mysql://root:***@localhost/x\": expected sqlite://... or postgres://..."
        );
    }
}
