//! Signing out ends the session everywhere: once a user signs out, the token they held is
//! refused by every service (a stolen copy is worth nothing), also after the services
//! restart; the user's other sessions go on. Through `buyticket up` and through `serve`
//! processes on PostgreSQL and NATS.

mod support;

use std::time::Duration;

use bt_test_support::TestClient;
use reqwest::StatusCode;
use serde_json::json;
use support::deployment::{Deployment, Ingress};

/// How long the other processes may take to learn of a sign-out.
const CATCH_UP: Duration = Duration::from_secs(15);

/// Signs in as `email` (signing up first when `sign_up`); the session token.
async fn session(ingress: &Ingress, email: &str, sign_up: bool) -> String {
    let client = TestClient::new("");
    let path = if sign_up {
        "/api/users/signup"
    } else {
        "/api/users/signin"
    };
    let res = client
        .send(
            client
                .http
                .post(ingress.url(path))
                .json(&json!({"email": email, "password": "password"})),
        )
        .await;
    assert!(res.status.is_success(), "{path}: {}", res.text);
    res.set_cookies()
        .iter()
        .find_map(|c| c.strip_prefix("session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// The status of listing a ticket with `token`.
async fn list_a_ticket(ingress: &Ingress, token: &str) -> StatusCode {
    let client = TestClient::new("");
    client
        .send(
            client
                .http
                .post(ingress.url("/api/tickets"))
                .bearer_auth(token)
                .json(&json!({"title": "Concert", "price": 10})),
        )
        .await
        .status
}

async fn sign_out(ingress: &Ingress, token: &str) {
    let client = TestClient::new("");
    let res = client
        .send(
            client
                .http
                .post(ingress.url("/api/users/signout"))
                .bearer_auth(token),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
}

async fn refused_everywhere(ingress: &Ingress, token: &str) {
    support::deployment::poll_for(
        CATCH_UP,
        "the tickets service refuses the token",
        || async {
            match list_a_ticket(ingress, token).await {
                StatusCode::UNAUTHORIZED => Ok(()),
                other => Err(format!("answered {other}")),
            }
        },
    )
    .await;
    // Each process follows the sign-outs on its own: the orders service may learn it a moment
    // after the tickets service.
    let client = TestClient::new("");
    support::deployment::poll_for(CATCH_UP, "the orders service refuses the token", || async {
        let orders = client
            .send(
                client
                    .http
                    .get(ingress.url("/api/orders"))
                    .bearer_auth(token),
            )
            .await;
        match orders.status {
            StatusCode::UNAUTHORIZED => Ok(()),
            other => Err(format!("answered {other}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_session_through_up_also_after_a_restart() {
    let mut deployment = Deployment::embedded(&[]);
    let ingress = deployment.ingress();
    let token = session(&ingress, "gus@test.com", true).await;
    let other = session(&ingress, "gus@test.com", false).await;
    assert_eq!(list_a_ticket(&ingress, &token).await, StatusCode::CREATED);

    sign_out(&ingress, &token).await;
    refused_everywhere(&ingress, &token).await;
    assert_eq!(list_a_ticket(&ingress, &other).await, StatusCode::CREATED);

    deployment.kill("all");
    deployment.start("all");
    let ingress = deployment.ingress();
    refused_everywhere(&ingress, &token).await;
    assert_eq!(list_a_ticket(&ingress, &other).await, StatusCode::CREATED);
    deployment.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_session_in_every_serve_process_also_after_restarts() {
    let mut deployment = Deployment::distributed(&[]).await;
    let ingress = deployment.ingress();
    let token = session(&ingress, "hal@test.com", true).await;
    let other = session(&ingress, "hal@test.com", false).await;
    assert_eq!(list_a_ticket(&ingress, &token).await, StatusCode::CREATED);

    sign_out(&ingress, &token).await;
    refused_everywhere(&ingress, &token).await;
    assert_eq!(list_a_ticket(&ingress, &other).await, StatusCode::CREATED);

    // Processes started afterwards read the sign-outs of the session lifetime first.
    deployment.kill("tickets");
    deployment.start("tickets");
    deployment.kill("orders");
    deployment.start("orders");
    let ingress = deployment.ingress();
    assert_eq!(
        list_a_ticket(&ingress, &token).await,
        StatusCode::UNAUTHORIZED
    );
    refused_everywhere(&ingress, &token).await;
    assert_eq!(list_a_ticket(&ingress, &other).await, StatusCode::CREATED);
    deployment.stop();
}
