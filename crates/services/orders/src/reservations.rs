//! How a rush is decided: most buyers of an on-sale are too late, and they are refused from
//! memory; the few who win are written together, many orders per transaction.
//!
//! - **Memory of taken tickets.** When this process places an order for a ticket (or learns
//!   from the database that it has an open one), it remembers the ticket as taken, with the
//!   ticket as the replica had it. A buyer of a remembered ticket is refused at once (`Ticket
//!   is already reserved`, after the same checks [`Order::place`] makes, so the reason given
//!   is the same as before), with no database read. While an order is being written the ticket
//!   is *claimed*: the other buyers of that instant are refused too.
//! - **One read per ticket.** The buyers of one ticket who come at the same instant share one
//!   read of the replica, and the ticket is kept in memory until an event about it is applied
//!   ([`Reservations::read_ticket`], `Replica`).
//! - **The database stays the authority.** The partial unique index (one open order per
//!   ticket) decides; memory only short-cuts refusals. A ticket is forgotten when this process
//!   cancels or completes its order, and any memory of a taken ticket is trusted for at most
//!   [`TRUST`]: an order cancelled elsewhere (another replica, an expiry being applied) can only
//!   make a buyer retry within that bound, never sell a ticket twice.
//! - **Group commit.** The orders that pass are queued to one writer task, which inserts all
//!   those waiting in one transaction (at most [`MAX_BATCH`]): `INSERT .. ON CONFLICT DO
//!   NOTHING`, so a ticket taken meanwhile is a lost order, not a failed batch, and each
//!   inserted order stages its `order.created` in the same transaction. If a batch fails as a
//!   whole, its orders are retried one transaction each, so that each buyer gets their own
//!   answer. On PostgreSQL a ticket another replica's batch is inserting, or whose open order
//!   another transaction is changing, is a lost order at once, not a wait for that transaction
//!   to end; so is one whose replica row is off sale (sold through another replica while this
//!   one's copy was a moment old) ([`store::insert_orders_if_free`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bt_contract::events::OrderCreated;
use bt_contract::{ApiError, ApiResult, OrderId, TicketId};
use bt_platform::bus::Outbox;
use bt_platform::context::request_id;
use bt_platform::{Backend, Db};
use tokio::sync::{OnceCell, mpsc, oneshot};

use crate::domain::{ListedTicket, Order};
use crate::store;

/// How long a memory of a taken ticket is trusted without the database, by default
/// ([`crate::Settings::taken_trust`]).
pub const TRUST: Duration = Duration::from_secs(1);

/// The most orders written in one transaction.
pub const MAX_BATCH: usize = 256;

/// Remembered tickets kept before the old ones are dropped.
const MAX_REMEMBERED: usize = 16_384;

/// Orders waiting for the writer.
const QUEUE: usize = 4096;

/// A read of the replica shared by the buyers of one ticket.
type Read = OnceCell<Option<ListedTicket>>;

/// What the memory says of a ticket.
#[derive(Debug, Clone)]
enum Taken {
    /// An order for it is being written by this process.
    Claimed,
    /// It had an open order when this process last looked.
    Since(Instant),
}

#[derive(Debug, Clone)]
struct Remembered {
    taken: Taken,
    /// The ticket as the replica had it, for the checks a refused buyer gets.
    ticket: ListedTicket,
}

/// What came of writing an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Stored, its `order.created` staged: the buyer has the ticket.
    Won,
    /// The ticket has another open order.
    Taken,
}

struct Pending {
    order: Order,
    created: OrderCreated,
    request_id: Option<String>,
    reply: oneshot::Sender<Result<Written, ApiError>>,
}

/// The memory of taken tickets and the writer of new orders of one orders service.
#[derive(Debug, Clone)]
pub struct Reservations {
    /// The service's pool, for reads of the replica.
    db: Db,
    remembered: Arc<Mutex<HashMap<TicketId, Remembered>>>,
    replica: Arc<Replica>,
    /// Replica reads in progress: the buyers of one ticket who come at the same instant share
    /// one read.
    reading: Arc<Mutex<HashMap<TicketId, Arc<Read>>>>,
    queue: mpsc::Sender<Pending>,
    /// How long a memory of a taken ticket (and, in `serve`, a kept ticket) is trusted.
    trust: Duration,
}

/// The tickets of the replica as last read, so that the buyers of a ticket do not each read it.
///
/// A ticket is forgotten after every commit of an event about it here (an observer of the
/// consumers, [`Reservations::replica_changed`]), and a read that raced such a commit is not
/// kept (the count of replica commits moved while it ran). Where other replicas apply some of
/// the events (`serve`), a ticket is kept at most [`TRUST`]: an order placed on terms changed
/// a moment before is refused by the tickets service (`ticket.reservation_refused`), never
/// charged at other terms.
#[derive(Debug)]
struct Replica {
    tickets: Mutex<HashMap<TicketId, (ListedTicket, Instant)>>,
    changes: AtomicU64,
    max_age: Option<Duration>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("order", &self.order.id)
            .finish()
    }
}

/// A claim on a ticket while its order is written; dropped unresolved (the request went
/// away, the write failed), the ticket is forgotten.
#[derive(Debug)]
pub struct Claim {
    reservations: Reservations,
    ticket: Option<ListedTicket>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.reservations.forget(&ticket.id);
        }
    }
}

impl Reservations {
    /// Starts the writer of `db`, which ends when the last handle is dropped; `shared` when
    /// other replicas apply some of the events (then a ticket read is kept at most [`TRUST`]).
    ///
    /// On SQLite the writer runs on a thread of its own: a write is several round trips to the
    /// database's connection thread, and on the request runtime each would wait behind every
    /// request of a rush (measured: a batch of one order took 51 ms there).
    ///
    /// The writer has a connection of its own, so that it never waits behind the requests'
    /// reads for one.
    pub async fn start(
        db: Db,
        outbox: Outbox,
        shared: bool,
        trust: Duration,
    ) -> sqlx::Result<Self> {
        let (queue, pending) = mpsc::channel(QUEUE);
        let reads = db.clone();
        let db = db.own_pool(1).await?;
        let own_thread = match db.backend() {
            Backend::Sqlite => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok(),
            Backend::Postgres => None,
        };
        match own_thread {
            Some(runtime) => {
                let spawned = std::thread::Builder::new()
                    .name("orders-writer".into())
                    .spawn(move || runtime.block_on(write_orders(db, outbox, pending)));
                if let Err(err) = spawned {
                    panic!("cannot start the orders writer thread: {err}");
                }
            }
            None => {
                tokio::spawn(write_orders(db, outbox, pending));
            }
        }
        Ok(Self {
            db: reads,
            remembered: Arc::new(Mutex::new(HashMap::new())),
            replica: Arc::new(Replica {
                tickets: Mutex::new(HashMap::new()),
                changes: AtomicU64::new(0),
                max_age: shared.then_some(trust),
            }),
            reading: Arc::new(Mutex::new(HashMap::new())),
            queue,
            trust,
        })
    }

    /// An event about ticket `key` was applied to the replica and committed: the ticket is
    /// forgotten, and read again in the background, so that its buyers find it in memory (a
    /// ticket is listed some time before its on-sale rush).
    pub fn replica_changed(&self, key: &str) {
        self.replica.changes.fetch_add(1, Ordering::AcqRel);
        let id = TicketId::new(key);
        lock(&self.replica.tickets).remove(&id);
        let reservations = self.clone();
        tokio::spawn(async move {
            let changes = reservations.replica.changes.load(Ordering::Acquire);
            match store::find_ticket(&reservations.db, &id).await {
                Ok(Some(ticket)) => reservations.keep(&ticket, changes),
                Ok(None) => {}
                Err(err) => {
                    tracing::debug!(%err, ticket.id = %id, "reading a changed ticket again")
                }
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TicketId, Remembered>> {
        lock(&self.remembered)
    }

    /// Ticket `id` as `read` finds it, read once for all the buyers who ask while the read is
    /// in progress (a failed read is not shared: the next one waiting reads again).
    pub async fn read_ticket<F, Fut>(
        &self,
        id: &TicketId,
        read: F,
    ) -> ApiResult<Option<ListedTicket>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ApiResult<Option<ListedTicket>>>,
    {
        if let Some((ticket, read_at)) = lock(&self.replica.tickets).get(id)
            && self
                .replica
                .max_age
                .is_none_or(|max| read_at.elapsed() < max)
        {
            return Ok(Some(ticket.clone()));
        }
        let cell = lock(&self.reading).entry(id.clone()).or_default().clone();
        let found = cell
            .get_or_try_init(|| async {
                let changes = self.replica.changes.load(Ordering::Acquire);
                let found = read().await?;
                if let Some(ticket) = &found {
                    self.keep(ticket, changes);
                }
                Ok(found)
            })
            .await
            .cloned();
        let mut reading = lock(&self.reading);
        if reading.get(id).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            reading.remove(id);
        }
        found
    }

    /// Keeps `ticket`, read when the replica's commit count was `changes`, unless the replica
    /// changed since.
    fn keep(&self, ticket: &ListedTicket, changes: u64) {
        let mut tickets = lock(&self.replica.tickets);
        if self.replica.changes.load(Ordering::Acquire) != changes {
            return;
        }
        if tickets.len() >= MAX_REMEMBERED {
            tickets.clear();
        }
        tickets.insert(ticket.id.clone(), (ticket.clone(), Instant::now()));
    }

    /// The ticket as remembered, if this process knows it is taken (claimed now, or seen with
    /// an open order within [`TRUST`]).
    pub fn taken(&self, id: &TicketId) -> Option<ListedTicket> {
        let remembered = self.lock();
        let entry = remembered.get(id)?;
        self.holds(&entry.taken).then(|| entry.ticket.clone())
    }

    /// Whether a memory says the ticket is taken now: claimed, or seen with an open order
    /// within the trust.
    fn holds(&self, taken: &Taken) -> bool {
        match taken {
            Taken::Claimed => true,
            Taken::Since(seen) => seen.elapsed() < self.trust,
        }
    }

    /// Claims `ticket` for an order about to be written; `None` when it is taken already.
    pub fn claim(&self, ticket: &ListedTicket) -> Option<Claim> {
        let mut remembered = self.lock();
        if remembered
            .get(&ticket.id)
            .is_some_and(|entry| self.holds(&entry.taken))
        {
            return None;
        }
        if remembered.len() >= MAX_REMEMBERED {
            remembered.retain(|_, entry| self.holds(&entry.taken));
        }
        remembered.insert(
            ticket.id.clone(),
            Remembered {
                taken: Taken::Claimed,
                ticket: ticket.clone(),
            },
        );
        Some(Claim {
            reservations: self.clone(),
            ticket: Some(ticket.clone()),
        })
    }

    /// Forgets `id`: its order was cancelled here.
    pub fn forget(&self, id: &TicketId) {
        self.lock().remove(id);
    }

    /// `ticket` was sold by an order completing here, and the replica's row says so in the
    /// same transaction: its buyers meet the sold ticket from now on, not the copy read while
    /// it was on sale. Set before the commit, so a buyer is never placed on the old copy
    /// meanwhile; a transaction that fails after all is retried (the payment's event is
    /// redelivered), and until then the ticket is refused as sold, at most until the next event
    /// about it (in `serve`, at most [`TRUST`]).
    pub fn sold(&self, ticket: ListedTicket) {
        self.replica.changes.fetch_add(1, Ordering::AcqRel);
        self.forget(&ticket.id);
        lock(&self.replica.tickets).insert(ticket.id.clone(), (ticket, Instant::now()));
    }

    /// Writes `order` (with its event) through the group writer, under `claim`; remembers the
    /// ticket as taken whatever the outcome, unless the write failed.
    pub async fn write(
        &self,
        mut claim: Claim,
        order: Order,
        created: OrderCreated,
    ) -> Result<Written, ApiError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            order,
            created,
            request_id: request_id(),
            reply,
        };
        if self.queue.send(pending).await.is_err() {
            return Err(ApiError::Unavailable("The service is shutting down".into()));
        }
        let written = answer
            .await
            .map_err(|_| ApiError::Unavailable("The service is shutting down".into()))??;
        if let Some(ticket) = claim.ticket.take() {
            self.lock().insert(
                ticket.id.clone(),
                Remembered {
                    taken: Taken::Since(Instant::now()),
                    ticket,
                },
            );
        }
        Ok(written)
    }
}

/// Locks one of the maps. A panic while holding it cannot leave a map half-changed (single
/// inserts and removes), so a poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The writer: takes every order waiting (up to [`MAX_BATCH`]) and writes them in one
/// transaction, until every sender is gone.
async fn write_orders(db: Db, outbox: Outbox, mut pending: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match write_batch(&db, &outbox, &batch).await {
            Ok(written) => {
                metrics::histogram!("orders_group_commit_size").record(batch.len() as f64);
                for (p, written) in batch.drain(..).zip(written) {
                    let _ = p.reply.send(Ok(written));
                }
            }
            Err(err) => {
                tracing::debug!(%err, orders = batch.len(), "group commit failed; writing one by one");
                for p in batch.drain(..) {
                    let result = write_batch(&db, &outbox, std::slice::from_ref(&p))
                        .await
                        .map(|w| w[0])
                        .map_err(ApiError::from);
                    let _ = p.reply.send(result);
                }
            }
        }
    }
}

/// Inserts the orders of `batch` in one transaction; for each (in `batch`'s order), whether it
/// was stored. Each event carries the request id of the request that placed its order.
///
/// The orders are inserted in the order of their tickets' ids. On PostgreSQL an insert waited
/// for another transaction's uncommitted order of the same ticket; two replicas' batches that
/// took two tickets in opposite orders waited for each other until the deadlock detector
/// aborted one (1 s, `deadlock_timeout`, seen in the distributed rush). Such an order is now
/// passed over without a wait ([`store::insert_orders_if_free`]). What an insert can still wait
/// for is narrow (a change to an open order committed after the statement's snapshot), and in
/// one order of tickets no waits can form a cycle.
async fn write_batch(db: &Db, outbox: &Outbox, batch: &[Pending]) -> sqlx::Result<Vec<Written>> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by(|a, b| batch[*a].order.ticket.id.cmp(&batch[*b].order.ticket.id));
    let orders: Vec<&Order> = order.iter().map(|i| &batch[*i].order).collect();
    let mut tx = db.begin().await?;
    let stored: HashSet<OrderId> = store::insert_orders_if_free(&mut tx, &orders)
        .await?
        .into_iter()
        .collect();
    let mut written = vec![Written::Taken; batch.len()];
    let mut events = Vec::with_capacity(stored.len());
    for i in order {
        let p = &batch[i];
        if stored.contains(&p.order.id) {
            events.push((p.created.clone(), p.request_id.clone()));
            written[i] = Written::Won;
        }
    }
    outbox.stage_all(&mut tx, events).await?;
    outbox.commit(tx).await?;
    Ok(written)
}
