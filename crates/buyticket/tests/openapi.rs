//! The OpenAPI documents as `buyticket up` serves them: the merged document at
//! `/api/openapi.json` is valid OpenAPI 3.1 (checked against the OpenAPI Initiative's schema,
//! `tests/openapi/oas-3.1-schema.json`, the 2022-10-07 schema of OpenAPI 3.1, Apache-2.0),
//! it lists exactly the routes the running routers answer, each service serves its own part
//! behind its ingress prefix, and the reference page at `/api/docs` loads nothing from
//! elsewhere.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::Process;

/// Every route of the API as `METHOD path`. The services register a route and its description
/// with one call (`utoipa_axum::routes!`), so a new route is in the documents by
/// construction; listing it here too says that the change was meant.
const ROUTES: &[&str] = &[
    "POST /api/users/signup",
    "POST /api/users/signin",
    "POST /api/users/signout",
    "GET /api/users/currentuser",
    "GET /api/users/openapi.json",
    "GET /api/tickets",
    "POST /api/tickets",
    "GET /api/tickets/mine",
    "GET /api/tickets/undelivered",
    "GET /api/tickets/openapi.json",
    "GET /api/tickets/{id}",
    "PUT /api/tickets/{id}",
    "GET /api/tickets/{id}/file",
    "PUT /api/tickets/{id}/file",
    "GET /api/orders",
    "POST /api/orders",
    "GET /api/orders/openapi.json",
    "GET /api/orders/{id}",
    "DELETE /api/orders/{id}",
    "POST /api/payments",
    "POST /api/payments/webhook",
    "GET /api/payments/openapi.json",
    "GET /api/payouts",
    "POST /api/payouts/account",
    "GET /api/notifications",
    "POST /api/notifications/read",
    "GET /api/notifications/openapi.json",
    "GET /api/alerts",
    "POST /api/alerts",
    "DELETE /api/alerts/{id}",
    "GET /api/openapi.json",
    "GET /api/docs",
    "GET /healthz",
    "GET /readyz",
];

/// Each service's own document: where it is served and the prefix of its routes.
/// Each service's document and the ingress prefixes its routes live under.
const SERVICE_DOCUMENTS: &[(&str, &[&str])] = &[
    ("/api/users/openapi.json", &["/api/users/"]),
    ("/api/tickets/openapi.json", &["/api/tickets"]),
    ("/api/orders/openapi.json", &["/api/orders"]),
    (
        "/api/payments/openapi.json",
        &["/api/payments", "/api/payouts"],
    ),
    (
        "/api/notifications/openapi.json",
        &["/api/notifications", "/api/alerts"],
    ),
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

struct Up {
    _dir: tempfile::TempDir,
    process: Process,
    http: reqwest::Client,
}

impl Up {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let process = Process::up(&dir.path().join("data"));
        Self {
            _dir: dir,
            process,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.request(Method::GET, path).await
    }

    async fn request(&self, method: Method, path: &str) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.process.url))
            .send()
            .await
            .unwrap()
    }

    async fn document(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{path}"
        );
        response.json().await.unwrap()
    }
}

/// Every `METHOD path` of a document.
fn operations(doc: &Value) -> BTreeSet<String> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect()
}

/// Every value of `key` anywhere in `value`.
fn all_values<'a>(value: &'a Value, key: &str, found: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    found.push(v);
                }
                all_values(v, key, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| all_values(v, key, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_merged_document_is_valid_openapi_3_1() {
    let up = Up::start();
    let doc = up.document("/api/openapi.json").await;

    let oas: Value =
        serde_json::from_str(include_str!("openapi/oas-3.1-schema.json")).expect("the schema");
    let validator = jsonschema::validator_for(&oas).expect("the OpenAPI 3.1 schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "not valid OpenAPI 3.1: {errors:#?}");
    let mut broken = doc.clone();
    broken["paths"]["/api/tickets"]["get"]["responses"] = Value::Null;
    assert!(!validator.is_valid(&broken), "the check can fail");
    assert_eq!(doc["openapi"], "3.1.0");

    // Every schema is a JSON Schema (2020-12, OpenAPI 3.1's dialect) that compiles, patterns
    // included, with the document's components for its references.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for (name, schema) in schemas {
        let mut wrapped = schema.clone();
        wrapped["components"] = doc["components"].clone();
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&wrapped)
            .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"));
    }

    // Every reference resolves.
    let mut refs = Vec::new();
    all_values(&doc, "$ref", &mut refs);
    for reference in refs {
        let name = reference
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .unwrap_or_else(|| panic!("unexpected reference {reference}"));
        assert!(
            schemas.contains_key(name),
            "{name} is referenced, not defined"
        );
    }

    // Operation ids are unique; links name existing operations; security names declared
    // schemes; every path parameter of a template is declared.
    let mut ids = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(
                ids.insert(id.to_owned(), format!("{method} {path}"))
                    .is_none(),
                "operationId {id} twice"
            );
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let in_template: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            assert_eq!(declared, in_template, "path parameters of {method} {path}");
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} documents no success"
            );
            for requirement in operation["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(
                        doc["components"]["securitySchemes"].get(scheme).is_some(),
                        "{method} {path} names the undeclared scheme {scheme}"
                    );
                }
            }
        }
    }
    let mut links = Vec::new();
    all_values(&doc["paths"], "links", &mut links);
    assert!(!links.is_empty(), "the stateful links are there");
    for link in links.iter().flat_map(|l| l.as_object().unwrap().values()) {
        let target = link["operationId"]
            .as_str()
            .expect("links name operationIds");
        assert!(ids.contains_key(target), "a link to {target}");
    }
    // Both ways of sending the session.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["sessionCookie"]["in"], "cookie");
    assert_eq!(schemes["sessionCookie"]["name"], "session");
    assert_eq!(schemes["bearerJwt"]["scheme"], "bearer");
}

#[tokio::test]
async fn the_merged_document_lists_exactly_the_routes_the_routers_answer() {
    let up = Up::start();
    let doc = up.document("/api/openapi.json").await;
    let documented = operations(&doc);
    let expected: BTreeSet<String> = ROUTES.iter().map(|r| (*r).to_owned()).collect();
    assert_eq!(
        documented, expected,
        "the document and the list of routes differ"
    );

    // The router's own word: a method no route has (TRACE) on a routed path is answered 405
    // with `Allow`, which names the methods the router has for that path. They must be the
    // document's (HEAD comes with GET).
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "01a20000-0000-7000-8000-000000000000");
        let response = up.request(Method::TRACE, &concrete).await;
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{path} is not routed"
        );
        let allowed: BTreeSet<String> = response.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_lowercase())
            .filter(|m| m != "head")
            .collect();
        let documented: BTreeSet<String> = METHODS
            .iter()
            .filter(|m| item.get(**m).is_some())
            .map(|m| (*m).to_owned())
            .collect();
        assert_eq!(allowed, documented, "the methods of {path}");
    }
}

#[tokio::test]
async fn each_service_serves_its_part_behind_its_own_prefix() {
    let up = Up::start();
    let merged = up.document("/api/openapi.json").await;
    let mut covered = BTreeSet::new();
    for (path, prefix) in SERVICE_DOCUMENTS {
        let doc = up.document(path).await;
        assert_eq!(doc["openapi"], "3.1.0", "{path}");
        let ops = operations(&doc);
        assert!(!ops.is_empty(), "{path}");
        for op in &ops {
            let route = op.split_once(' ').unwrap().1;
            assert!(
                prefix.iter().any(|p| route.starts_with(p)),
                "{path} describes {op}, outside {prefix:?}"
            );
            assert!(
                merged["paths"][route].is_object(),
                "{op} is not in the merged document"
            );
        }
        covered.extend(ops);
    }
    // The rest is the platform's own: the merged document, the page, health.
    let rest: BTreeSet<String> = operations(&merged).difference(&covered).cloned().collect();
    assert_eq!(
        rest,
        [
            "GET /api/docs",
            "GET /api/openapi.json",
            "GET /healthz",
            "GET /readyz"
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    );

    // The static document paths win over `{id}`: `openapi.json` is never taken for an id.
    let response = up.request(Method::PUT, "/api/tickets/openapi.json").await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let response = up.request(Method::DELETE, "/api/orders/openapi.json").await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_reference_page_shows_every_operation_and_loads_nothing_from_elsewhere() {
    let up = Up::start();
    let doc = up.document("/api/openapi.json").await;
    let response = up.get("/api/docs").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
    );
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    let page = response.text().await.unwrap();

    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                let id = operation["operationId"].as_str().unwrap();
                assert!(
                    page.contains(&format!("id=\"op-{id}\"")),
                    "{id} is not shown"
                );
                let shown_path = path.replace('<', "&lt;");
                assert!(page.contains(&shown_path), "{path} is not shown");
            }
        }
    }
    // No script at all; every link and source stays on the page or on this origin.
    let lower = page.to_lowercase();
    assert!(!lower.contains("<script"), "a script");
    assert!(!lower.contains("<link"), "a linked stylesheet or font");
    assert!(
        !lower.contains("@import") && !lower.contains("url("),
        "style that loads"
    );
    for attribute in ["src=", "href=", "action="] {
        for (i, _) in lower.match_indices(attribute) {
            let value = lower[i + attribute.len()..].trim_start_matches(['"', '\'']);
            assert!(
                value.starts_with('#') || (value.starts_with('/') && !value.starts_with("//")),
                "{attribute} points elsewhere: {}",
                &page[i..(i + 80).min(page.len())]
            );
        }
    }
}

#[tokio::test]
async fn in_the_distributed_mode_every_process_serves_its_part_and_the_whole() {
    let deployment = support::deployment::Deployment::distributed(&[]).await;
    let ingress = deployment.ingress();
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(&url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{url}");
            response.json::<Value>().await.unwrap()
        }
    };
    let up = Up::start();
    let whole = up.document("/api/openapi.json").await;
    for (base, (path, _)) in [
        &ingress.auth,
        &ingress.tickets,
        &ingress.orders,
        &ingress.payments,
        &ingress.notifications,
    ]
    .into_iter()
    .zip(SERVICE_DOCUMENTS)
    {
        // Its own part, where the ingress's prefix rule sends it...
        let part = get(format!("{base}{path}")).await;
        assert_eq!(part, up.document(path).await, "{path}");
        // ... and the whole, which the ingress sends to the client service, itself a `serve`
        // process like these.
        assert_eq!(get(format!("{base}/api/openapi.json")).await, whole);
    }
    deployment.stop();
}

/// The listing's search as documented (`q`'s schema) and as answered agree: every `q` the
/// listing takes (200) fits the schema, every one it refuses (400) does not. The listing trims
/// `q` before it checks it, so white space around it, control characters among them (a form
/// feed), is not refused (found by the API fuzzing: `q=\x0c\u{ec}\\` was answered 200 while the
/// schema forbade it).
#[tokio::test]
async fn the_listings_documented_search_is_the_search_it_takes() {
    let up = Up::start();
    let doc = up.document("/api/openapi.json").await;
    let q = doc["paths"]["/api/tickets"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "q")
        .expect("the q parameter");
    let schema = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&q["schema"])
        .unwrap();
    let long = "a".repeat(200);
    let cases = [
        "concert".to_owned(),
        " concert ".to_owned(),
        "\u{c}\u{ec}\\".to_owned(),
        "\t\n opera \u{3000}".to_owned(),
        "row 5, seat 12".to_owned(),
        String::new(),
        " \t ".to_owned(),
        format!("  {long}  "),
        format!("{long}a"),
        "con\u{1}cert".to_owned(),
        "con\tcert".to_owned(),
        "a\u{85}b".to_owned(),
    ];
    for text in cases {
        let status = up
            .http
            .get(format!("{}/api/tickets", up.process.url))
            .query(&[("q", &text)])
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{text:?}: {status}"
        );
        assert_eq!(
            schema.is_valid(&Value::String(text.clone())),
            status == StatusCode::OK,
            "q = {text:?} is answered {status}"
        );
    }
}
