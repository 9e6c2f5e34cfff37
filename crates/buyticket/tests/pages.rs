//! The web client without JavaScript: plain HTML forms over HTTP against `buyticket up`,
//! POST-redirect-GET, CSRF protection, errors as pages (never JSON or stack traces).

mod support;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use support::Process;

/// A browser without JavaScript: keeps cookies, does not follow redirects.
struct Browser {
    http: reqwest::Client,
    base: String,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    content_type: String,
    html: String,
}

impl Browser {
    fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            base: base.to_owned(),
        }
    }

    async fn read(response: reqwest::Response) -> Page {
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        Page {
            status,
            location,
            content_type,
            html: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        Self::read(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Submits a form the way a browser does after loading `page_path` (which sets the CSRF
    /// cookie and carries the token in the form).
    async fn submit(&self, page_path: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.get(page_path).await;
        let token = csrf_token(&page.html)
            .unwrap_or_else(|| panic!("{page_path} has a form with a CSRF token"));
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("_csrf", &token));
        Self::read(
            self.http
                .post(format!("{}{action}", self.base))
                .form(&form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

fn csrf_token(html: &str) -> Option<String> {
    let marker = "name=\"_csrf\" value=\"";
    let start = html.find(marker)? + marker.len();
    Some(html[start..].split('"').next()?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selling_and_signing_out_work_with_plain_form_posts() {
    let data = tempfile::tempdir().unwrap();
    let process = Process::up(data.path());
    let browser = Browser::new(&process.url);

    let signed_up = browser
        .submit(
            "/auth/signup",
            "/auth/signup",
            &[
                ("email", "plain@test.com"),
                ("password", "password"),
                ("next", "/tickets/new"),
            ],
        )
        .await;
    assert_eq!(
        signed_up.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_up.html
    );
    assert_eq!(
        signed_up.location.as_deref(),
        Some("/tickets/new"),
        "back where the visitor was going"
    );

    let listed = browser
        .submit(
            "/tickets/new",
            "/tickets/new",
            &[("title", "Plain <b>HTML</b> night"), ("price", "20.50")],
        )
        .await;
    assert_eq!(listed.status, StatusCode::SEE_OTHER, "{}", listed.html);
    let ticket_path = listed.location.unwrap();
    assert!(ticket_path.starts_with("/tickets/"));
    let ticket = browser.get(&ticket_path).await;
    assert_eq!(ticket.status, StatusCode::OK);
    assert!(
        !ticket.html.contains("<b>HTML</b>"),
        "titles are escaped: {}",
        ticket.html
    );
    assert!(
        ticket
            .html
            .contains("Plain &#60;b&#62;HTML&#60;/b&#62; night"),
        "{}",
        ticket.html
    );
    assert!(ticket.html.contains("$20.50"));
    assert!(ticket.html.contains("This is your listing."));

    let listings = browser.get("/listings").await;
    assert!(listings.html.contains("On sale"), "{}", listings.html);

    let signed_out = browser.submit("/", "/auth/signout", &[]).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    let home = browser.get("/").await;
    assert!(
        home.html.contains("href=\"/auth/signin\""),
        "signed out: {}",
        home.html
    );
    let orders = browser.get("/orders").await;
    assert_eq!(orders.status, StatusCode::SEE_OTHER);
    assert_eq!(
        orders.location.as_deref(),
        Some("/auth/signin?next=/orders")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_posts_without_the_csrf_token_or_from_another_site_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let process = Process::up(data.path());
    let browser = Browser::new(&process.url);
    browser.get("/auth/signup").await;

    let no_token = Browser::read(
        browser
            .http
            .post(format!("{}/auth/signup", process.url))
            .form(&[("email", "csrf@test.com"), ("password", "password")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert!(no_token.html.contains("This form has expired"));

    let page = browser.get("/auth/signup").await;
    let token = csrf_token(&page.html).unwrap();
    let cross_site = Browser::read(
        browser
            .http
            .post(format!("{}/auth/signup", process.url))
            .header("origin", "http://evil.test")
            .form(&[
                ("email", "csrf@test.com"),
                ("password", "password"),
                ("_csrf", &token),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);

    // Neither created the account.
    let fine = browser
        .submit(
            "/auth/signup",
            "/auth/signup",
            &[("email", "csrf@test.com"), ("password", "password")],
        )
        .await;
    assert_eq!(fine.status, StatusCode::SEE_OTHER, "{}", fine.html);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_are_shown_next_to_their_fields() {
    let data = tempfile::tempdir().unwrap();
    let process = Process::up(data.path());
    let browser = Browser::new(&process.url);

    let page = browser
        .submit(
            "/auth/signup",
            "/auth/signup",
            &[("email", "nope"), ("password", "xyz")],
        )
        .await;

    // Post/Redirect/Get: back to the form, whose address can be reloaded or shared.
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/auth/signup"));
    let page = browser.get("/auth/signup").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.content_type.starts_with("text/html"));
    assert!(!page.html.contains("xyz"), "a password is never sent back");
    assert!(
        page.html
            .contains(r#"<p class="field-error" id="email-error">Email must be valid</p>"#),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains(r#"id="password-error">Password must be between 4 and 128 characters</p>"#)
    );
    assert!(page.html.contains(r#"value="nope""#), "the email is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_pages_never_json() {
    let data = tempfile::tempdir().unwrap();
    let process = Process::up(data.path());
    let browser = Browser::new(&process.url);
    let cases = [
        (
            "/tickets/0192f5e4-0000-7000-8000-000000000000",
            StatusCode::NOT_FOUND,
            "Ticket not found",
        ),
        (
            "/tickets/..%2F..%2Fapi",
            StatusCode::NOT_FOUND,
            "Page not found",
        ),
        ("/no/such/page", StatusCode::NOT_FOUND, "Page not found"),
    ];
    for (path, status, heading) in cases {
        let page = browser.get(path).await;
        assert_eq!(page.status, status, "{path}");
        assert!(
            page.content_type.starts_with("text/html"),
            "{path}: {}",
            page.content_type
        );
        assert!(page.html.contains(heading), "{path}: {}", page.html);
        assert!(!page.html.contains("\"errors\""), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_client_renders_pages_from_the_api_behind_api_base_url() {
    let data = tempfile::tempdir().unwrap();
    let api = Process::up(data.path());
    let seller = Browser::new(&api.url);
    seller
        .submit(
            "/auth/signup",
            "/auth/signup",
            &[("email", "s@test.com"), ("password", "password")],
        )
        .await;
    seller
        .submit(
            "/tickets/new",
            "/tickets/new",
            &[("title", "Served elsewhere"), ("price", "12")],
        )
        .await;

    let client = Process::start(
        &["serve", "client", "--host", "127.0.0.1", "--port", "0"],
        &[
            ("API_BASE_URL", &api.url),
            (
                "JWT_KEY",
                &std::fs::read_to_string(data.path().join("jwt_key")).unwrap(),
            ),
        ],
    );
    let visitor = Browser::new(&client.url);
    let home = visitor.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.html.contains("Served elsewhere") && home.html.contains("$12.00"),
        "{}",
        home.html
    );
    assert!(client.stop().success());
}
