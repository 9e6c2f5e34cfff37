//! The local distributed mode (`scripts/local-cluster`) under failure: 2 replicas of every
//! service on PostgreSQL and NATS JetStream behind real NGINX, the notifications service
//! sending to a real SMTP server (`LOCAL_CLUSTER_SMTP_URL`). The whole purchase flow runs
//! through nginx; in the middle of an on-sale rush one replica of every service is killed with
//! SIGKILL; the flow still completes, every event reaches its consumers (nothing is
//! dead-lettered, and the people involved are notified in the app and by email) and no ticket
//! is sold twice.

mod support;

use bt_contract::events::Event;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bt_platform::bus::BusConfig;
use bt_test_support::smtp::{ReceivedMessage, SmtpServer};
use bt_test_support::{PgDatabasesGuard, TestBus, TestClient, TestResponse, nats_url};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SERVICES: [&str; 7] = [
    "auth",
    "tickets",
    "orders",
    "expiration",
    "payments",
    "notifications",
    "client",
];

/// The order window: short enough to see an unpaid order expire during the test, long enough
/// for the winner of the rush to pay while a replica of every service is dead.
const WINDOW_SECS: u64 = 12;

/// How long anything may take to catch up (events redelivered after a replica died wait for
/// the consumer's ack wait, 2 s here).
const CATCH_UP: Duration = Duration::from_secs(40);

/// How many buyers rush for the one hot ticket.
const RUSH: usize = 12;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A base port with the ports the script uses free after it (nginx's, then one per replica of
/// every service), outside Linux's ephemeral range so that outgoing connections and
/// `127.0.0.1:0` listeners of concurrent tests do not take them meanwhile.
fn free_port_block() -> u16 {
    bt_test_support::free_port_block(u16::try_from(1 + 2 * SERVICES.len()).unwrap())
}

/// A running local cluster; `down` on drop (also when the test fails half-way).
struct Cluster {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    url: String,
    up: bool,
}

impl Cluster {
    fn script(&self, command: &str) -> std::process::Output {
        Command::new("bash")
            .arg(repo_root().join("scripts/local-cluster"))
            .arg(command)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run scripts/local-cluster")
    }

    fn start(stream: &str, prefix: &str, db_prefix: &str, smtp_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port_block();
        let env = [
            ("CLUSTER_PORT", port.to_string()),
            ("CLUSTER_DIR", dir.path().display().to_string()),
            ("CLUSTER_DB_PREFIX", db_prefix.to_owned()),
            ("NATS_URL", nats_url()),
            ("EVENT_STREAM", stream.to_owned()),
            ("EVENT_SUBJECT_PREFIX", prefix.to_owned()),
            ("BUYTICKET_BIN", env!("CARGO_BIN_EXE_buyticket").to_owned()),
            ("ORDER_EXPIRATION_SECONDS", WINDOW_SECS.to_string()),
            ("EVENT_ACK_WAIT_SECONDS", "2".to_owned()),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "10000".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
            ("LOCAL_CLUSTER_SMTP_URL", smtp_url.to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        let mut cluster = Self {
            dir,
            env: env.to_vec(),
            url: format!("http://127.0.0.1:{port}"),
            up: false,
        };
        let out = cluster.script("up");
        cluster.up = true;
        assert!(
            out.status.success(),
            "local-cluster up failed: {}\n{}\nlogs:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.contains(&cluster.url), "prints its URL: {printed}");
        cluster
    }

    fn pid(&self, service: &str, replica: u8) -> u32 {
        let file = self
            .dir
            .path()
            .join(format!("pids/{service}-{replica}.pid"));
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .trim()
            .parse()
            .unwrap()
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = SERVICES
            .iter()
            .flat_map(|s| [self.pid(s, 1), self.pid(s, 2)])
            .collect();
        let nginx = self.dir.path().join("pids/nginx.pid");
        pids.push(
            std::fs::read_to_string(nginx)
                .unwrap()
                .trim()
                .parse()
                .unwrap(),
        );
        pids
    }

    /// The tail of every process's log, for failure messages.
    fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("logs")) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                all.push_str(&format!("== {}\n", entry.path().display()));
                for line in tail.into_iter().rev() {
                    all.push_str(line);
                    all.push('\n');
                }
            }
        }
        all
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.up {
            drop(self.script("down"));
        }
    }
}

/// Whether the process is gone (SIGKILL is delivered asynchronously) within `limit`.
fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while support::alive(pid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn kill_9(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

/// Waits (up to [`CATCH_UP`]) until `attempt` gives `Ok`.
async fn poll<T, F, Fut>(what: &str, attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    support::poll(CATCH_UP, Duration::from_millis(100), what, attempt).await
}

async fn sign_up(url: &str, email: &str) -> TestClient {
    let client = TestClient::new(url);
    let res = client
        .post(
            "/api/users/signup",
            &json!({"email": email, "password": "password"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "sign-up: {}", res.text);
    client
}

/// Whether a response is what a client sees while a replica it was talking to dies: nginx's
/// 502/503/504 for a request that was in flight there (nginx does not resend a POST that
/// reached an upstream, so that nothing is done twice).
fn replica_died(res: &TestResponse) -> bool {
    matches!(
        res.status,
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE
    )
}

/// One buyer of the rush: tries to order `ticket_id` until the answer is final. Returns the
/// order's id when this buyer got it.
async fn rush_buyer(buyer: TestClient, ticket_id: String) -> (TestClient, Option<String>) {
    let body = json!({"ticketId": ticket_id});
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    // Whether an answer was lost with a dying replica: the order may have been stored before
    // it died, and then this buyer's own order is what refuses the retry.
    let mut answer_lost = false;
    loop {
        let request = buyer.http.post(buyer.url("/api/orders")).json(&body);
        let Ok(res) = TestClient::try_send(request).await else {
            // The replica died with this request: try again, as a person would.
            answer_lost = true;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        match res.status {
            StatusCode::CREATED => return (buyer, Some(res.json["id"].as_str().unwrap().into())),
            StatusCode::BAD_REQUEST => {
                // Held by the winner's order, or already sold to the winner.
                assert!(
                    res.json == json!({"errors": [{"message": "Ticket is already reserved"}]})
                        || res.json
                            == json!({"errors": [{"message": "This ticket is not for sale"}]}),
                    "{}",
                    res.text
                );
                // The winner may be this buyer, whose 201 died with the replica: as a person
                // would, it looks at its orders.
                let order = if answer_lost {
                    open_order_of(&buyer, &ticket_id).await
                } else {
                    None
                };
                return (buyer, order);
            }
            // Not replicated yet (404) or the replica died under the request: try again, as
            // a person in front of the page would.
            _ if res.status == StatusCode::NOT_FOUND => {}
            _ if replica_died(&res) => answer_lost = true,
            other => panic!("ordering answered {other}: {}", res.text),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rush did not settle: {} {}",
            res.status,
            res.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The id of `buyer`'s order of `ticket_id` that is not cancelled, if any.
async fn open_order_of(buyer: &TestClient, ticket_id: &str) -> Option<String> {
    let res = buyer.get("/api/orders").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    res.json
        .as_array()
        .unwrap()
        .iter()
        .find(|order| order["ticket"]["id"] == json!(ticket_id) && order["status"] != "cancelled")
        .map(|order| order["id"].as_str().unwrap().to_owned())
}

/// Pays `order_id` with a card that is declined, until the answer is final (the order may not
/// have reached the payments service yet, or a replica may die with the request).
async fn pay_declined(buyer: &TestClient, order_id: &str) {
    let body = json!({"orderId": order_id, "token": "tok_chargeDeclined"});
    let body = &body;
    poll("a declined card is answered", move || async move {
        let request = buyer.http.post(buyer.url("/api/payments")).json(body);
        let Ok(res) = TestClient::try_send(request).await else {
            return Err("connection lost".to_owned());
        };
        match res.status {
            StatusCode::BAD_REQUEST => {
                for ended in [
                    "Cannot pay for a cancelled order",
                    "Cannot pay for an expired order",
                ] {
                    assert_ne!(
                        res.json,
                        json!({"errors": [{"message": ended}]}),
                        "the order expired before its declined payment"
                    );
                }
                Ok(())
            }
            s if s == StatusCode::ACCEPTED || s == StatusCode::NOT_FOUND || replica_died(&res) => {
                Err(format!("{s} {}", res.text))
            }
            other => panic!("paying with a declined card answered {other}: {}", res.text),
        }
    })
    .await;
}

/// Whether `message` is an email to `to` whose subject starts with `subject` and whose text
/// holds `link`.
fn is_email(message: &ReceivedMessage, to: &str, subject: &str, link: &str) -> bool {
    message.rcpt_tos.iter().any(|r| r == to)
        && message
            .header("Subject")
            .is_some_and(|s| s.starts_with(subject))
        && message.text_body().contains(link)
}

/// Waits until the buyer's order has `status`.
async fn order_becomes(buyer: &TestClient, order_id: &str, status: &str) {
    let path = format!("/api/orders/{order_id}");
    let path = &path;
    poll(
        &format!("order {order_id} is {status}"),
        move || async move {
            let res = buyer.get(path).await;
            if res.status == StatusCode::OK && res.json["status"] == status {
                Ok(())
            } else {
                Err(format!("{} {}", res.status, res.text))
            }
        },
    )
    .await;
}

/// Waits until the ticket satisfies `check`, and returns it.
async fn ticket_when(
    client: &TestClient,
    ticket_id: &str,
    what: &str,
    check: fn(&Value) -> bool,
) -> Value {
    let path = format!("/api/tickets/{ticket_id}");
    let path = &path;
    poll(what, move || async move {
        let res = client.get(path).await;
        if check(&res.json) {
            Ok(res.json)
        } else {
            Err(res.text)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purchase_flow_survives_losing_a_replica_of_every_service() {
    let unique = TestBus::test_config().stream[1..].to_owned();
    let bus = TestBus::on_nats(
        &nats_url(),
        BusConfig {
            stream: format!("C{unique}"),
            subject_prefix: format!("c{unique}."),
            ..TestBus::test_config()
        },
    )
    .await;
    let db_prefix = format!("bt_cluster_{unique}");
    let _databases = PgDatabasesGuard {
        prefix: db_prefix.clone(),
    };
    // The mail server the notifications service sends to (LOCAL_CLUSTER_SMTP_URL).
    let smtp = SmtpServer::start();
    let cluster = Cluster::start(
        &bus.config.stream,
        &bus.config.subject_prefix,
        &db_prefix,
        &smtp.url(),
    );
    let url = cluster.url.clone();

    // Through nginx: the client's pages and every API.
    let home = TestClient::new(&url).get("/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.text);
    assert!(home.text.contains("BuyTicket"), "{}", home.text);

    let seller = sign_up(&url, "seller@cluster.test").await;
    let mut ids = BTreeMap::new();
    for (name, title, price) in [
        ("hot", "Final, centre court", "180.00"),
        ("unpaid", "Semi-final", "95.50"),
        ("edited", "Quarter-final", "60"),
    ] {
        let res = seller
            .post("/api/tickets", &json!({"title": title, "price": price}))
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
        ids.insert(name, res.json["id"].as_str().unwrap().to_owned());
    }

    // An order that nobody pays: its timer is stored before the crash and must still fire.
    let idler = sign_up(&url, "idler@cluster.test").await;
    let (idler, unpaid_order) = rush_buyer(idler, ids["unpaid"].clone()).await;
    let unpaid_order = unpaid_order.expect("the only buyer of this ticket gets it");
    // Its buyer's card is declined (payment.declined); the reservation stays until it expires.
    pay_declined(&idler, &unpaid_order).await;

    let mut buyers = Vec::new();
    for i in 0..RUSH {
        buyers.push(sign_up(&url, &format!("fan{i}@cluster.test")).await);
    }

    // The on-sale rush on the hot ticket, and in the middle of it one replica of every
    // service dies.
    let rush: Vec<_> = buyers
        .into_iter()
        .map(|b| tokio::spawn(rush_buyer(b, ids["hot"].clone())))
        .collect();
    // Readers browse all along. A read in flight on a replica at the moment it dies may be
    // lost with it (nginx cannot resend what it has half-forwarded); every read that starts
    // once nginx has seen the replica fail is served by the other replica.
    let reading = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = ["/api/tickets", "/", "/api/users/currentuser"]
        .into_iter()
        .map(|path| {
            let (client, reading) = (TestClient::new(&url), reading.clone());
            tokio::spawn(async move {
                let mut reads = Vec::new();
                while reading.load(Ordering::Relaxed) {
                    let started = tokio::time::Instant::now();
                    let outcome =
                        match TestClient::try_send(client.http.get(client.url(path))).await {
                            Ok(res) if res.status.is_server_error() => {
                                Err(format!("GET {path}: {} {}", res.status, res.text))
                            }
                            Ok(_) => Ok(()),
                            Err(err) => Err(format!("GET {path}: {err}")),
                        };
                    reads.push((started, outcome));
                }
                reads
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let victims: Vec<u32> = SERVICES.iter().map(|s| cluster.pid(s, 1)).collect();
    for &pid in &victims {
        kill_9(pid);
    }
    let killed_at = tokio::time::Instant::now();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for task in rush {
        match task.await.unwrap() {
            (buyer, Some(order)) => winners.push((buyer, order)),
            (buyer, None) => losers.push(buyer),
        }
    }
    for &pid in &victims {
        assert!(
            gone_within(pid, Duration::from_secs(5)),
            "replica {pid} was killed"
        );
    }
    let settled = killed_at + Duration::from_secs(1);
    tokio::time::sleep_until(settled + Duration::from_secs(2)).await;
    reading.store(false, Ordering::Relaxed);
    for reader in readers {
        let reads = reader.await.unwrap();
        let after: Vec<_> = reads.iter().filter(|(at, _)| *at >= settled).collect();
        assert!(
            after.len() >= 5,
            "reads went on after the crash: {}",
            after.len()
        );
        let failed: Vec<_> = after.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
        assert!(
            failed.is_empty(),
            "reads failed after the crash: {failed:?}"
        );
    }
    assert_eq!(winners.len(), 1, "exactly one buyer gets the hot ticket");
    assert_eq!(losers.len(), RUSH - 1);
    let (winner, hot_order) = winners.pop().unwrap();

    // The winner pays, with only the second replicas left.
    let body = json!({"orderId": hot_order, "token": "tok_visa"});
    let (winner_ref, body_ref) = (&winner, &body);
    poll("the payment goes through", move || async move {
        let request = winner_ref
            .http
            .post(winner_ref.url("/api/payments"))
            .json(body_ref);
        let Ok(res) = TestClient::try_send(request).await else {
            return Err("connection lost".to_owned());
        };
        match res.status {
            StatusCode::CREATED => Ok(()),
            // 202: the order's decision is still on its way (a replica died with it in flight).
            s if s == StatusCode::ACCEPTED || replica_died(&res) => {
                Err(format!("{s} {}", res.text))
            }
            other => panic!("paying answered {other}: {}", res.text),
        }
    })
    .await;

    // The seller edits a free ticket after the crash; the orders service still learns it.
    let edited_path = format!("/api/tickets/{}", ids["edited"]);
    let res = seller
        .put(
            &edited_path,
            &json!({"title": "Quarter-final, row A", "price": "65"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);

    // Every event reached its consumers:
    // payment.created → orders: the hot order is complete;
    order_becomes(&winner, &hot_order, "complete").await;
    // order.created + order.completed → tickets: the hot ticket is sold to that order's
    // buyer, who owns it now;
    let sold = ticket_when(&seller, &ids["hot"], "the hot ticket is sold", |t| {
        t["sold"] == true
    })
    .await;
    let hot = winner.get(&format!("/api/orders/{hot_order}")).await.json;
    assert_eq!(sold["userId"], hot["userId"], "{sold}");
    assert_eq!(
        (sold["orderId"].clone(), sold["forSale"].clone()),
        (json!(null), json!(false)),
        "{sold}"
    );
    // order.created → expiration → expiration.complete → orders → order.cancelled → tickets:
    // the unpaid order expired and its ticket is back on sale;
    order_becomes(&idler, &unpaid_order, "cancelled").await;
    ticket_when(
        &seller,
        &ids["unpaid"],
        "the expired order's ticket is free",
        |t| t["orderId"].is_null() && t["sold"] == false,
    )
    .await;
    // order.cancelled → payments: the expired order cannot be paid;
    let body = json!({"orderId": unpaid_order, "token": "tok_visa"});
    let (idler_ref, body_ref) = (&idler, &body);
    poll("paying the expired order is refused", move || async move {
        let res = idler_ref.post("/api/payments", body_ref).await;
        if res.status == StatusCode::BAD_REQUEST
            && res.json == json!({"errors": [{"message": "Cannot pay for an expired order"}]})
        {
            Ok(())
        } else {
            Err(format!("{} {}", res.status, res.text))
        }
    })
    .await;
    // ticket.updated → orders: an order placed on the edited ticket is at the edited terms. (One
    // placed before the edit reached the orders service keeps the old terms, is refused by the
    // tickets service and cancelled — the fan then orders again.)
    let late_fan = &losers[0];
    let edited_id = ids["edited"].clone();
    poll("an order at the edited terms", || {
        let edited_id = edited_id.clone();
        async move {
            let res = late_fan
                .post("/api/orders", &json!({"ticketId": edited_id}))
                .await;
            match res.status {
                StatusCode::CREATED
                    if res.json["ticket"]["title"] == "Quarter-final, row A"
                        && res.json["ticket"]["price"] == json!(65) =>
                {
                    Ok(res.json)
                }
                s => Err(format!("{s} {}", res.text)),
            }
        }
    })
    .await;

    // payment.declined, sale.credited, order.completed and order.cancelled → notifications:
    // the people involved are told, in the app (through nginx) and by email, with links to the
    // site's address (PUBLIC_URL: nginx). An email may come twice (a replica killed after the
    // mail server took it and before it recorded that); none may be missing.
    let hot_link = format!("/orders/{hot_order}");
    let hot_link_ref = &hot_link;
    let winner_ref = &winner;
    poll("the winner's receipt is in the app", move || async move {
        let res = winner_ref.get("/api/notifications").await;
        let found = res.status == StatusCode::OK
            && res.json["notifications"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["kind"] == "order_receipt" && n["link"] == json!(hot_link_ref));
        if found {
            Ok(())
        } else {
            Err(format!("{} {}", res.status, res.text))
        }
    })
    .await;
    let winner_email = winner.get("/api/users/currentuser").await.json["currentUser"]["email"]
        .as_str()
        .expect("the winner is signed in")
        .to_owned();
    let expected_emails = [
        (
            winner_email.as_str(),
            "Your receipt",
            format!("{url}{hot_link}"),
        ),
        (
            "seller@cluster.test",
            "Your ticket sold",
            format!("{url}/payouts"),
        ),
        (
            "idler@cluster.test",
            "Payment declined",
            format!("{url}/orders/{unpaid_order}"),
        ),
        // An expired reservation links to its ticket, back on sale.
        (
            "idler@cluster.test",
            "Your reservation expired",
            format!("{url}/tickets/{}", ids["unpaid"]),
        ),
    ];
    let (smtp_ref, expected_ref) = (&smtp, &expected_emails);
    poll("the emails arrive", move || async move {
        let messages = smtp_ref.messages();
        let missing: Vec<String> = expected_ref
            .iter()
            .filter(|(to, subject, link)| {
                !messages
                    .iter()
                    .any(|message| is_email(message, to, subject, link))
            })
            .map(|(to, subject, link)| format!("{subject}... to {to} with {link}"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let received: Vec<String> = messages
            .iter()
            .map(|m| {
                format!(
                    "to {:?}: {:?}\n{}",
                    m.rcpt_tos,
                    m.header("Subject"),
                    m.text_body()
                )
            })
            .collect();
        Err(format!(
            "missing {missing:?}; received:\n{}",
            received.join("\n---\n")
        ))
    })
    .await;

    // Nothing was oversold: across every buyer, the hot ticket has exactly one order that is
    // not cancelled, and it is the paid one.
    let mut live_orders = Vec::new();
    for buyer in losers.iter().chain([&winner, &idler]) {
        let res = buyer.get("/api/orders").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        for order in res.json.as_array().unwrap() {
            if order["ticket"]["id"] == json!(ids["hot"]) && order["status"] != "cancelled" {
                live_orders.push(order.clone());
            }
        }
    }
    assert_eq!(live_orders.len(), 1, "{live_orders:?}");
    assert_eq!(live_orders[0]["id"], json!(hot_order));
    assert_eq!(live_orders[0]["status"], "complete");

    // Nothing was dead-lettered, and every kind of event went over NATS.
    let counts = bus.subject_counts().await;
    assert!(
        counts.keys().all(|s| !s.starts_with("deadletter.")),
        "dead letters: {counts:?}"
    );
    for subject in bt_contract::events::SUBJECTS {
        // A refused reservation needs an edit racing an order: tests/races.rs makes those.
        if subject == bt_contract::events::TicketReservationRefused::SUBJECT {
            continue;
        }
        // Nobody signs out here: tests/sessions.rs covers sign-outs across processes.
        if subject == bt_contract::events::SessionRevoked::SUBJECT {
            continue;
        }
        // Alert holds are off by default (ALERT_HOLD_SECONDS): tests/notify.rs covers them.
        if subject == bt_contract::events::TicketHeld::SUBJECT {
            continue;
        }
        // Nothing is refunded here: refunds come from Stripe's dashboard or from a payment
        // that lands after its order ended (bt-payments' tests).
        if subject == bt_contract::events::PaymentRefunded::SUBJECT {
            continue;
        }
        assert!(counts.contains_key(subject), "no {subject}: {counts:?}");
    }

    // `down` stops everything that is left.
    let survivors = cluster.pids();
    let out = cluster.script("down");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pid in survivors {
        assert!(
            gone_within(pid, Duration::from_secs(5)),
            "{pid} still runs after down"
        );
    }
    let status = TestClient::new(&url)
        .http
        .get(format!("{url}/healthz"))
        .send()
        .await;
    assert!(status.is_err(), "nginx is gone: {status:?}");
}
