//! The OpenAPI 3.1 documents and the API reference page.
//!
//! Each service builds its routes with `utoipa_axum`'s `OpenApiRouter` and `routes!`, so a
//! route and its description are registered by the same call: a handler cannot be routed
//! without being documented. [`finish`] turns a service's collected description into its
//! document (served at `/api/<service>/openapi.json` behind the ingress's prefix for that
//! service); [`reference`] merges the services' documents with the platform's own routes into
//! the one served at `/api/openapi.json`, with a reference page at `/api/docs` that is rendered
//! here, on the server, from that document: no script, no stylesheet or font from elsewhere,
//! so it works without a network.
//!
//! Documents are JSON values once finished: the platform adds what `utoipa` cannot say
//! (a header that is always sent is `required`), and the answers the platform itself gives on
//! every route (408 after the request timeout, 414 for a request target over 8 KiB, 503 when a
//! dependency is down or busy).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bt_contract::error::{ErrorBody, FieldError};
use bt_contract::openapi::{BEARER, SESSION_COOKIE};
use serde_json::{Map, Value, json};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::Service;

/// The path of the merged document.
pub const DOCUMENT_PATH: &str = "/api/openapi.json";
/// The path of the reference page.
pub const REFERENCE_PATH: &str = "/api/docs";

/// A service's document, finished: `info`, the shared schemas (`ErrorBody`, `FieldError`),
/// the security schemes, the platform's answers on every operation, and the headers that are
/// always sent marked `required`.
pub fn finish(doc: OpenApi, title: &str, description: &str) -> Value {
    let mut doc = serde_json::to_value(doc).expect("an OpenAPI document serialises");
    doc["openapi"] = json!("3.1.0");
    doc["info"] = json!({
        "title": title,
        "version": env!("CARGO_PKG_VERSION"),
        "description": description,
        "license": {"name": "MIT", "identifier": "MIT"},
    });
    let components = object(root(&mut doc), "components");
    let schemas = object(components, "schemas");
    for (name, schema) in [
        (
            "ErrorBody",
            serde_json::to_value(<ErrorBody as utoipa::PartialSchema>::schema()),
        ),
        (
            "FieldError",
            serde_json::to_value(<FieldError as utoipa::PartialSchema>::schema()),
        ),
    ] {
        schemas
            .entry(name)
            .or_insert(schema.expect("a schema serialises"));
    }
    let schemes = object(components, "securitySchemes");
    schemes.insert(
        SESSION_COOKIE.into(),
        json!({
            "type": "apiKey",
            "in": "cookie",
            "name": bt_contract::SESSION_COOKIE,
            "description": "The `session` cookie that sign-up and sign-in set (HttpOnly, \
                SameSite=Lax): a JWT (HS256) with the claims `id`, `email`, `iat`, `exp`."
        }),
    );
    schemes.insert(
        BEARER.into(),
        json!({
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The same token as the `session` cookie, as `Authorization: Bearer <jwt>`."
        }),
    );
    for operation in operations_mut(&mut doc) {
        let responses = object(root(operation), "responses");
        responses.entry("408").or_insert_with(|| {
            error_response("`The request took too long`: it took longer than the request timeout (30 s by default).")
        });
        responses.entry("414").or_insert_with(|| {
            error_response("`The request URL is too long`: the request target is over 8 KiB.")
        });
        responses.entry("503").or_insert_with(|| {
            let mut response = error_response(
                "A dependency is down or busy (the database restarting, a pool exhausted, a \
                 transaction conflict): `Service is temporarily unavailable, please try again` \
                 or `Service is busy, please try again`. Safe to retry; `Retry-After` says when.",
            );
            response["headers"] = json!({"Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 1}
            }});
            response
        });
        for (status, response) in responses.iter_mut() {
            mark_required_headers(status, response);
            spell_links(response);
        }
    }
    doc
}

/// An error answer with the `ErrorBody` schema.
fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

/// Marks the headers that are always sent as `required` (`utoipa` 5 cannot say so):
/// `Retry-After` with every 429 (a 503 sends it only when a retry is expected to help, so it
/// stays optional there), and `Set-Cookie` wherever a response documents it (sign-up, sign-in
/// and sign-out always set or clear the session cookie).
fn mark_required_headers(status: &str, response: &mut Value) {
    let Some(headers) = response.get_mut("headers").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, header) in headers.iter_mut() {
        let always = match name.as_str() {
            "Retry-After" => status == "429",
            "Set-Cookie" => true,
            _ => false,
        };
        if let (true, Some(header)) = (always, header.as_object_mut()) {
            header.insert("required".into(), Value::Bool(true));
        }
    }
}

/// `utoipa` 5 writes a link's fields in snake case (`operation_id`); OpenAPI spells them in
/// camel case (`operationId`, `operationRef`, `requestBody`).
fn spell_links(response: &mut Value) {
    let Some(links) = response.get_mut("links").and_then(Value::as_object_mut) else {
        return;
    };
    for link in links.values_mut().filter_map(Value::as_object_mut) {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.to_owned(), value);
            }
        }
    }
}

/// A document (or a part of one) as the object it is.
fn root(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    value.as_object_mut().expect("an object")
}

/// `map[key]` as an object, made one if missing.
fn object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("an object")
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation of a document.
fn operations_mut(doc: &mut Value) -> impl Iterator<Item = &mut Value> {
    doc.get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| {
            item.iter_mut()
                .filter(|(method, _)| METHODS.contains(&method.as_str()))
                .map(|(_, operation)| operation)
        })
}

/// Merges finished documents: their paths, schemas, security schemes and tags. The first
/// document's `info` stays.
pub fn merge(mut into: Value, parts: impl IntoIterator<Item = Value>) -> Value {
    for part in parts {
        for section in ["paths"] {
            let target = object(root(&mut into), section);
            if let Some(items) = part[section].as_object() {
                for (path, item) in items {
                    match target.get_mut(path).and_then(Value::as_object_mut) {
                        Some(existing) => {
                            for (k, v) in item.as_object().into_iter().flatten() {
                                existing.entry(k.clone()).or_insert_with(|| v.clone());
                            }
                        }
                        None => {
                            target.insert(path.clone(), item.clone());
                        }
                    }
                }
            }
        }
        for section in ["schemas", "securitySchemes", "responses"] {
            let components = object(root(&mut into), "components");
            let target = object(components, section);
            if let Some(items) = part["components"][section].as_object() {
                for (name, item) in items {
                    target.entry(name.clone()).or_insert_with(|| item.clone());
                }
            }
        }
        let tags = into
            .as_object_mut()
            .expect("an object")
            .entry("tags")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let (Some(tags), Some(more)) = (tags.as_array_mut(), part["tags"].as_array()) {
            for tag in more {
                if !tags.iter().any(|t| t["name"] == tag["name"]) {
                    tags.push(tag.clone());
                }
            }
        }
    }
    into
}

/// A finished document as a response (`application/json`).
pub fn document_response(document: &Arc<String>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.as_str().to_owned(),
    )
        .into_response()
}

/// What the merged document's own routes answer.
#[derive(Clone)]
struct Reference {
    document: Arc<String>,
    page: Arc<String>,
}

impl std::fmt::Debug for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reference").finish_non_exhaustive()
    }
}

/// The whole API in one document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "documentation",
    operation_id = "openapi_document",
    summary = "The OpenAPI document of the whole API",
    description = "Every route of every service, merged (each service also serves its own \
        part, e.g. `/api/tickets/openapi.json`).",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", body = OpenApiDocument),
    )
)]
async fn openapi_document(
    axum::extract::State(reference): axum::extract::State<Reference>,
) -> Response {
    document_response(&reference.document)
}

/// The reference page.
#[utoipa::path(
    get,
    path = "/api/docs",
    tag = "documentation",
    operation_id = "api_reference",
    summary = "The API reference, as a web page",
    description = "Rendered on the server from the OpenAPI document; it loads nothing from \
        elsewhere.",
    responses(
        (status = 200, description = "The reference page.", body = String, content_type = "text/html"),
    )
)]
async fn api_reference(
    axum::extract::State(reference): axum::extract::State<Reference>,
) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        reference.page.as_str().to_owned(),
    )
        .into_response();
    // Nothing but the page itself and its inline style may load.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

/// An OpenAPI document (its schema here is only its outline).
#[derive(Debug)]
pub struct OpenApiDocument;

impl utoipa::PartialSchema for OpenApiDocument {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("openapi", ObjectBuilder::new().schema_type(Type::String))
            .required("openapi")
            .property("info", ObjectBuilder::new().schema_type(Type::Object))
            .required("info")
            .property("paths", ObjectBuilder::new().schema_type(Type::Object))
            .description(Some("An OpenAPI 3.1 document."))
            .into()
    }
}

impl utoipa::ToSchema for OpenApiDocument {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("OpenApiDocument")
    }
}

/// The platform's own routes: the merged document, the reference page, `/healthz`, `/readyz`.
fn platform_document() -> Value {
    let (_, mut doc) = OpenApiRouter::<Reference>::new()
        .routes(routes!(openapi_document))
        .routes(routes!(api_reference))
        .split_for_parts();
    doc.merge(crate::http::health_routes(Arc::default()).1);
    doc.tags = Some(vec![
        tag("documentation", "This document and its reference page."),
        tag(
            "operations",
            "Liveness and readiness (also served by every service on its own).",
        ),
    ]);
    finish(doc, "BuyTicket platform", "")
}

/// A tag with a description.
pub fn tag(name: &str, description: &str) -> utoipa::openapi::tag::Tag {
    let mut tag = utoipa::openapi::tag::Tag::new(name);
    tag.description = Some(description.to_owned());
    tag
}

/// The merged document of `services` (finished documents) and the platform's own routes.
pub fn merged_document(services: impl IntoIterator<Item = Value>) -> Value {
    let mut doc = merge(
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "BuyTicket API",
                "version": env!("CARGO_PKG_VERSION"),
                "summary": "A ticket resale marketplace.",
                "description": MERGED_DESCRIPTION,
                "license": {"name": "MIT", "identifier": "MIT"},
            },
            "paths": {},
            "components": {},
            "tags": [],
        }),
        services,
    );
    doc = merge(doc, [platform_document()]);
    doc
}

const MERGED_DESCRIPTION: &str = "The HTTP API of the BuyTicket services behind one address: \
    `/api/users` (auth), `/api/tickets` (tickets), `/api/orders` (orders), `/api/payments` \
    and `/api/payouts` (payments). Errors are always `{\"errors\": [{\"message\", \"field\"?}]}` (`field` only for \
    validation errors, one entry per failed field). Sign up or sign in to get the `session` \
    cookie; the same token is accepted as `Authorization: Bearer <jwt>`. Money is a JSON number \
    in currency units with at most two decimals.";

/// The service that serves the merged document at [`DOCUMENT_PATH`] and the reference page
/// at [`REFERENCE_PATH`].
pub fn reference_service(services: impl IntoIterator<Item = Value>) -> Service {
    let doc = merged_document(services);
    let reference = Reference {
        page: Arc::new(render_reference(&doc)),
        document: Arc::new(doc.to_string()),
    };
    let (router, _) = OpenApiRouter::<Reference>::new()
        .routes(routes!(openapi_document))
        .routes(routes!(api_reference))
        .split_for_parts();
    Service {
        name: "api-docs",
        router: Router::new().merge(router.with_state(reference)),
        checks: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The reference page.

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Descriptions are short Markdown: `code` spans become `<code>`; the rest is text.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

fn anchor(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A schema as a short nested description.
fn schema_html(schema: &Value, out: &mut String, depth: usize) {
    if depth > 6 {
        out.push('…');
        return;
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        let _ = write!(
            out,
            "<a href=\"#schema-{}\"><code>{}</code></a>",
            anchor(name),
            escape(name)
        );
        return;
    }
    for (key, word) in [
        ("oneOf", "one of"),
        ("anyOf", "any of"),
        ("allOf", "all of"),
    ] {
        if let Some(items) = schema[key].as_array() {
            let _ = write!(out, "{word}: ");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(" | ");
                }
                schema_html(item, out, depth + 1);
            }
            constraints(schema, out);
            return;
        }
    }
    let types: Vec<String> = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let shown = if types.is_empty() {
        "any".to_owned()
    } else {
        types.join(" | ")
    };
    if types.iter().any(|t| t == "array") {
        out.push_str("<span class=type>array</span> of ");
        schema_html(&schema["items"], out, depth + 1);
        if types.len() > 1 {
            let _ = write!(out, " <span class=type>({})</span>", escape(&shown));
        }
        constraints(schema, out);
        return;
    }
    let _ = write!(out, "<span class=type>{}</span>", escape(&shown));
    constraints(schema, out);
    if let Some(properties) = schema["properties"].as_object() {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str("<ul class=props>");
        for (name, property) in properties {
            let _ = write!(out, "<li><code class=prop>{}</code>", escape(name));
            if required.contains(&name.as_str()) {
                out.push_str(" <span class=req>required</span>");
            }
            out.push_str(": ");
            schema_html(property, out, depth + 1);
            if let Some(description) = property["description"].as_str() {
                let _ = write!(out, " — {}", prose(description));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
}

/// A schema with its reference (or its array's items' reference) followed one level, so that
/// bodies show their fields where they are used.
fn expanded_schema_html(schema: &Value, doc: &Value, out: &mut String) {
    let target = schema["$ref"]
        .as_str()
        .or_else(|| schema["items"]["$ref"].as_str());
    schema_html(schema, out, 0);
    if let Some(name) = target.and_then(|r| r.strip_prefix("#/components/schemas/")) {
        let resolved = &doc["components"]["schemas"][name];
        if resolved["properties"].is_object() {
            out.push(' ');
            schema_html(resolved, out, 1);
        }
    }
}

fn constraints(schema: &Value, out: &mut String) {
    let mut notes = Vec::new();
    if let Some(format) = schema["format"].as_str() {
        notes.push(format!("format {}", escape(format)));
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
            .collect();
        notes.push(format!("one of {}", values.join(", ")));
    }
    for (key, word) in [
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
    ] {
        if let Some(n) = schema.get(key).filter(|v| v.is_number()) {
            notes.push(format!("{word} {n}"));
        }
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        if pattern.chars().count() > 40 {
            notes.push(format!(
                "<details><summary>pattern</summary><code>{}</code></details>",
                escape(pattern)
            ));
        } else {
            notes.push(format!("pattern <code>{}</code>", escape(pattern)));
        }
    }
    if !notes.is_empty() {
        let _ = write!(out, " <span class=notes>({})</span>", notes.join("; "));
    }
}

const STYLE: &str = "
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:1.5rem 2rem}header a{color:#9cd0ff}
header h1{margin:0 0 .25rem}header code{background:#344054;color:#fff}main{max-width:70rem;margin:0 auto;padding:1rem 2rem 4rem}
nav{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:.5rem 1.5rem;margin:1rem 0}
nav ul{padding-left:1.2rem}nav li{margin:.1rem 0}
section>h2{border-bottom:2px solid #dde1e7;padding-bottom:.25rem;margin-top:2.5rem;text-transform:capitalize}
article{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:1rem 1.5rem;margin:1rem 0}
article h3{margin:0 0 .5rem;font-size:1.05rem;display:flex;gap:.6rem;align-items:center;flex-wrap:wrap}
.method{font:700 .8rem ui-monospace,monospace;padding:.15rem .5rem;border-radius:4px;color:#fff;text-transform:uppercase}
.get{background:#2f6fd6}.post{background:#1f8a4c}.put{background:#b7791f}.delete{background:#c53030}.patch{background:#6b46c1}
code{font:.9em ui-monospace,SFMono-Regular,Menlo,monospace;background:#eef1f5;padding:0 .25rem;border-radius:3px}
table{border-collapse:collapse;width:100%;margin:.25rem 0 .75rem}th,td{text-align:left;vertical-align:top;border-top:1px solid #e7eaef;padding:.35rem .5rem}
th{font-size:.8rem;text-transform:uppercase;color:#5b6575;border-top:0}
.type{color:#6b46c1;font-family:ui-monospace,monospace;font-size:.9em}.req{color:#c53030;font-size:.8em}
.notes{color:#5b6575;font-size:.9em}.props{margin:.25rem 0;padding-left:1.2rem}.status{font-weight:700;font-family:ui-monospace,monospace}
.auth{font-size:.9rem;color:#5b6575}details{display:inline}summary{cursor:pointer;display:inline}h4{margin:.75rem 0 .25rem;font-size:.9rem;color:#3c4656}
";

/// A tag's operations: its name, its description and `(method, path, operation)`.
type Group<'a> = (String, String, Vec<(String, String, &'a Value)>);

/// The reference page of a document: every operation by tag, its parameters, body, answers
/// and links, and every schema.
pub fn render_reference(doc: &Value) -> String {
    let mut out = String::new();
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let version = doc["info"]["version"].as_str().unwrap_or("");
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>{t} — reference</title><style>{STYLE}</style></head><body><header>\
         <h1>{t}</h1><p>Version {v} · OpenAPI {o} · <a href=\"{DOCUMENT_PATH}\">openapi.json</a></p>\
         <p>{d}</p></header><main>",
        t = escape(title),
        v = escape(version),
        o = escape(doc["openapi"].as_str().unwrap_or("")),
        d = prose(doc["info"]["description"].as_str().unwrap_or("")),
    );
    // Operations grouped by their first tag, in the order of the document's tags.
    let mut groups: Vec<Group> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or("").to_owned(),
                t["description"].as_str().unwrap_or("").to_owned(),
                Vec::new(),
            )
        })
        .collect();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let tag = operation["tags"][0].as_str().unwrap_or("other").to_owned();
            let index = match groups.iter().position(|(name, _, _)| *name == tag) {
                Some(i) => i,
                None => {
                    groups.push((tag, String::new(), Vec::new()));
                    groups.len() - 1
                }
            };
            groups[index]
                .2
                .push((method.to_owned(), path.clone(), operation));
        }
    }
    out.push_str("<nav><h2>Operations</h2><ul>");
    for (tag, _, operations) in &groups {
        if operations.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<li><a href=\"#tag-{}\">{}</a><ul>",
            anchor(tag),
            escape(tag)
        );
        for (method, path, operation) in operations {
            let _ = write!(
                out,
                "<li><a href=\"#op-{}\"><code>{} {}</code></a> {}</li>",
                anchor(&operation_id(method, path, operation)),
                method.to_uppercase(),
                escape(path),
                prose(operation["summary"].as_str().unwrap_or(""))
            );
        }
        out.push_str("</ul></li>");
    }
    out.push_str("<li><a href=\"#schemas\">Schemas</a></li></ul></nav>");
    for (tag, description, operations) in &groups {
        if operations.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<section id=\"tag-{}\"><h2>{}</h2><p>{}</p>",
            anchor(tag),
            escape(tag),
            prose(description)
        );
        for (method, path, operation) in operations {
            render_operation(method, path, operation, doc, &mut out);
        }
        out.push_str("</section>");
    }
    out.push_str("<section id=schemas><h2>Schemas</h2>");
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let _ = write!(
            out,
            "<article id=\"schema-{}\"><h3><code>{}</code></h3><p>{}</p>",
            anchor(name),
            escape(name),
            prose(schema["description"].as_str().unwrap_or(""))
        );
        schema_html(schema, &mut out, 0);
        out.push_str("</article>");
    }
    out.push_str("</section></main></body></html>\n");
    out
}

fn operation_id(method: &str, path: &str, operation: &Value) -> String {
    operation["operationId"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{method}-{path}"))
}

fn render_operation(method: &str, path: &str, operation: &Value, doc: &Value, out: &mut String) {
    let id = operation_id(method, path, operation);
    let _ = write!(
        out,
        "<article id=\"op-{}\"><h3><span class=\"method {m}\">{m}</span><code>{}</code> {}</h3>",
        anchor(&id),
        escape(path),
        prose(operation["summary"].as_str().unwrap_or("")),
        m = method,
    );
    if let Some(description) = operation["description"].as_str() {
        let _ = write!(out, "<p>{}</p>", prose(description));
    }
    let security = operation
        .get("security")
        .or_else(|| doc.get("security"))
        .and_then(Value::as_array);
    match security {
        Some(requirements) if !requirements.is_empty() => {
            let optional = requirements
                .iter()
                .any(|r| r.as_object().is_some_and(|r| r.is_empty()));
            let names: Vec<String> = requirements
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|r| r.keys().cloned())
                .map(|name| match name.as_str() {
                    SESSION_COOKIE => "the <code>session</code> cookie".to_owned(),
                    BEARER => "<code>Authorization: Bearer &lt;jwt&gt;</code>".to_owned(),
                    other => format!("<code>{}</code>", escape(other)),
                })
                .collect();
            let _ = write!(
                out,
                "<p class=auth>{}: {}.</p>",
                if optional {
                    "Reads the session if there is one"
                } else {
                    "Needs a session"
                },
                names.join(" or ")
            );
        }
        _ => out.push_str("<p class=auth>No session needed.</p>"),
    }
    if let Some(parameters) = operation["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str("<h4>Parameters</h4><table><tr><th>Name</th><th>In</th><th>Schema</th><th>Description</th></tr>");
        for parameter in parameters {
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>",
                escape(parameter["name"].as_str().unwrap_or("")),
                if parameter["required"].as_bool() == Some(true) {
                    " <span class=req>required</span>"
                } else {
                    ""
                },
                escape(parameter["in"].as_str().unwrap_or(""))
            );
            schema_html(&parameter["schema"], out, 0);
            let _ = write!(
                out,
                "</td><td>{}</td></tr>",
                prose(parameter["description"].as_str().unwrap_or(""))
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = operation["requestBody"].as_object() {
        out.push_str("<h4>Request body</h4>");
        if let Some(description) = body.get("description").and_then(Value::as_str) {
            let _ = write!(out, "<p>{}</p>", prose(description));
        }
        for (content_type, content) in body
            .get("content")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let _ = write!(out, "<p><code>{}</code>: ", escape(content_type));
            expanded_schema_html(&content["schema"], doc, out);
            out.push_str("</p>");
        }
    }
    out.push_str(
        "<h4>Responses</h4><table><tr><th>Status</th><th>Description</th><th>Body</th></tr>",
    );
    for (status, response) in operation["responses"].as_object().into_iter().flatten() {
        let _ = write!(
            out,
            "<tr><td class=status>{}</td><td>{}",
            escape(status),
            prose(response["description"].as_str().unwrap_or(""))
        );
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let _ = write!(
                out,
                "<br>Header <code>{}</code>{}: {}",
                escape(name),
                if header["required"].as_bool() == Some(true) {
                    " (always)"
                } else {
                    ""
                },
                prose(header["description"].as_str().unwrap_or(""))
            );
        }
        for (name, link) in response["links"].as_object().into_iter().flatten() {
            let target = link["operationId"].as_str().unwrap_or("");
            let _ = write!(
                out,
                "<br>Link <code>{}</code> → <a href=\"#op-{}\"><code>{}</code></a>",
                escape(name),
                anchor(target),
                escape(target)
            );
        }
        out.push_str("</td><td>");
        for (content_type, content) in response["content"].as_object().into_iter().flatten() {
            let _ = write!(out, "<code>{}</code>: ", escape(content_type));
            if status.starts_with('2') {
                expanded_schema_html(&content["schema"], doc, out);
            } else {
                schema_html(&content["schema"], out, 0);
            }
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</table></article>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_page_escapes_the_document_and_loads_nothing() {
        let doc = merged_document([json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {"/api/x": {"get": {
                "tags": ["x"], "summary": "<script>alert(1)</script>",
                "responses": {"200": {"description": "ok"}}
            }}},
            "tags": [{"name": "x"}]
        })]);
        let page = render_reference(&doc);
        assert!(page.contains("&lt;script&gt;"), "{page}");
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("http://") && !page.contains("https://"));
    }

    #[test]
    fn finishing_adds_the_platform_answers_and_required_headers() {
        let doc: OpenApi = serde_json::from_value(json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {"/api/x": {"post": {"responses": {
                "429": {"description": "slow down", "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
                "201": {"description": "made",
                    "headers": {"Set-Cookie": {"schema": {"type": "string"}}},
                    "links": {"Get": {"operation_id": "get_x", "parameters": {"id": "$response.body#/id"}}}},
                "503": {"description": "later", "headers": {"Retry-After": {"schema": {"type": "integer"}}}}
            }}}}
        }))
        .unwrap();
        let doc = finish(doc, "x", "");
        let responses = &doc["paths"]["/api/x"]["post"]["responses"];
        assert!(responses["414"].is_object() && responses["408"].is_object());
        assert_eq!(responses["429"]["headers"]["Retry-After"]["required"], true);
        assert_eq!(responses["201"]["links"]["Get"]["operationId"], "get_x");
        assert_eq!(responses["201"]["headers"]["Set-Cookie"]["required"], true);
        assert!(responses["503"]["headers"]["Retry-After"]["required"].is_null());
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        assert_eq!(
            doc["components"]["securitySchemes"][SESSION_COOKIE]["in"],
            "cookie"
        );
    }
}
