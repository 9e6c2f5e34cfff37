//! The deployment files agree with the binary and with the architecture:
//!
//! - the Kubernetes manifests (`deploy/k8s`, both overlays as `kubectl kustomize` renders them)
//!   run real `buyticket serve <service>` commands on the port the process listens on, with
//!   health probes on its real endpoints, Services that reach those pods, and config and
//!   secrets that exist;
//! - every Ingress path reaches the service ARCHITECTURE §1 names, proven with real requests to
//!   real `buyticket serve` processes (PostgreSQL and NATS), and `scripts/local-cluster`'s
//!   nginx.conf routes the same way in the same order;
//! - the Dockerfile builds and runs the binary the manifests expect, and skaffold builds and
//!   deploys them.
//!
//! `kubectl` renders the overlays; the tests that need it say so and stop when it is missing.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use bt_test_support::{Backend, BusKind, TestBus, TestClient, TestDb, TestResponse, nats_url};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Process;

/// ARCHITECTURE §1: the ingress path rules, in order (with the second wave's prefixes of §10:
/// payouts, notifications and alerts).
const ARCHITECTURE_RULES: [(&str, &str); 8] = [
    ("/api/payments", "payments"),
    ("/api/payouts", "payments"),
    ("/api/users", "auth"),
    ("/api/tickets", "tickets"),
    ("/api/orders", "orders"),
    ("/api/notifications", "notifications"),
    ("/api/alerts", "notifications"),
    ("/", "client"),
];

const OVERLAYS: [&str; 2] = ["dev", "prod"];

/// The public Ingress (the routes of ARCHITECTURE §1).
const PUBLIC_INGRESS: &str = "buyticket";

/// Endpoints every service answers itself (so they are no proof of routing).
const PLATFORM_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Known GET routes of the services, to send through the ingress rules. Each must be answered
/// by its service with something other than the unknown-path 404 (no id routes: an unknown id
/// is a 404 too). Every Ingress path must have at least one of these under it.
const SAMPLE_ROUTES: [&str; 17] = [
    "/api/payments",
    "/api/payments/webhook",
    "/api/payouts",
    "/api/users/currentuser",
    "/api/tickets",
    "/api/tickets/mine",
    "/api/orders",
    "/api/notifications",
    "/api/notifications/openapi.json",
    "/api/alerts",
    "/",
    "/auth/signin",
    "/auth/signup",
    "/tickets/new",
    "/orders",
    "/assets/app.css",
    "/healthz",
];

/// Deployments that are not BuyTicket services, and the one overlay each may run in: the dev
/// overlay's mail catcher, which receives every email of the notifications service there.
const DEV_TOOLS: [(&str, &str); 1] = [("mailpit", "dev")];

/// Secrets by nature: wherever a Deployment sets one of these, it comes from a Secret.
const SECRET_VARS: [&str; 5] = [
    "JWT_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "POSTGRES_PASSWORD",
    // The mail server's URL may carry its user and password.
    "SMTP_URL",
];

const KEY: &str = "a-test-key-that-is-at-least-32-bytes-long";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    let file = repo_root().join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

// ---------------------------------------------------------------------------------------------
// The binary

/// Runs the binary with a clean environment.
fn buyticket(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_buyticket"))
        .args(args)
        .env_clear()
        .env("RUST_LOG", "off")
        .output()
        .expect("run buyticket")
}

/// `<args> --help` succeeds: the arguments parse (clap validates the subcommand and the
/// service name before it prints help).
fn assert_args_parse(args: &[&str], what: &str) {
    let mut with_help: Vec<&str> = args.to_vec();
    with_help.push("--help");
    let out = buyticket(&with_help);
    assert!(
        out.status.success(),
        "{what}: `buyticket {}` does not parse: {}",
        with_help.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn help(args: &[&str]) -> String {
    let out = buyticket(args);
    assert!(out.status.success(), "buyticket {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The services `buyticket serve` knows (`[possible values: ...]` of its help).
fn real_services() -> Vec<String> {
    let text = help(&["serve", "--help"]);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("<SERVICE>"))
        .expect("serve --help lists <SERVICE>");
    let values = line
        .split("[possible values: ")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("<SERVICE> lists its possible values");
    values.split(", ").map(str::to_owned).collect()
}

/// The environment variables the binary reads (`[env: NAME...]` of `serve` and `up`), plus the
/// logging ones read before clap.
fn known_env_vars() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["RUST_LOG", "LOG_FORMAT"].map(str::to_owned).into();
    for args in [["serve", "--help"], ["up", "--help"]] {
        for part in help(&args).split("[env: ").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

// ---------------------------------------------------------------------------------------------
// Rendered manifests

/// `kubectl kustomize deploy/k8s/overlays/<overlay>`, one JSON value per object; `None` (with a
/// note) when kubectl is not installed.
fn render(overlay: &str) -> Option<Vec<Value>> {
    let dir = repo_root().join("deploy/k8s/overlays").join(overlay);
    let out = match Command::new("kubectl").arg("kustomize").arg(&dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: kubectl is not installed, so the manifests cannot be rendered");
            return None;
        }
        Err(e) => panic!("kubectl: {e}"),
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let objects: Vec<Value> = text
        .split("\n---\n")
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| {
            let yaml: serde_norway::Value = serde_norway::from_str(doc)
                .unwrap_or_else(|e| panic!("{overlay}: rendered YAML does not parse: {e}"));
            serde_json::to_value(yaml).unwrap()
        })
        .collect();
    assert!(!objects.is_empty(), "{overlay} renders no objects");
    Some(objects)
}

/// Both overlays, or `None` when kubectl is missing.
fn render_all() -> Option<Vec<(&'static str, Vec<Value>)>> {
    OVERLAYS
        .iter()
        .map(|o| render(o).map(|objects| (*o, objects)))
        .collect()
}

fn kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn find<'a>(objects: &'a [Value], k: &str, n: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == k && name(o) == n)
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn str_array(value: &Value) -> Vec<&str> {
    array(value).iter().filter_map(Value::as_str).collect()
}

/// The Deployments of BuyTicket services: every Deployment but the [`DEV_TOOLS`] (which
/// `dev_tools_run_only_in_development_pinned_and_locked_down` checks).
fn service_deployments(objects: &[Value]) -> Vec<&Value> {
    kind(objects, "Deployment")
        .into_iter()
        .filter(|d| !DEV_TOOLS.iter().any(|(tool, _)| name(d) == *tool))
        .collect()
}

/// Deployments and StatefulSets: everything that runs pods.
fn workloads(objects: &[Value]) -> Vec<&Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
        .collect()
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

/// Whether `labels` has every entry of `selector`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The container's environment as Kubernetes builds it: `envFrom` ConfigMaps first, then
/// `env` (values, or `{"secret": name, "key": ..., "optional": ...}` for secret references).
fn container_env(objects: &[Value], container: &Value, context: &str) -> BTreeMap<String, Value> {
    let mut env = BTreeMap::new();
    for source in array(&container["envFrom"]) {
        if let Some(cm) = source["configMapRef"]["name"].as_str() {
            let config = find(objects, "ConfigMap", cm)
                .unwrap_or_else(|| panic!("{context}: envFrom ConfigMap {cm} is not rendered"));
            for (k, v) in config["data"].as_object().into_iter().flatten() {
                env.insert(k.clone(), json!({ "value": v }));
            }
        }
        assert!(
            source.get("secretRef").is_none() || source["secretRef"]["name"].is_string(),
            "{context}: envFrom secretRef without a name"
        );
    }
    for var in array(&container["env"]) {
        let var_name = var["name"].as_str().expect("env name").to_owned();
        let value = if let Some(v) = var.get("value") {
            json!({ "value": v })
        } else if let Some(secret) = var["valueFrom"].get("secretKeyRef") {
            json!({
                "secret": secret["name"],
                "key": secret["key"],
                "optional": secret["optional"].as_bool().unwrap_or(false),
            })
        } else if let Some(cm) = var["valueFrom"].get("configMapKeyRef") {
            let config = find(
                objects,
                "ConfigMap",
                cm["name"].as_str().unwrap_or_default(),
            )
            .unwrap_or_else(|| panic!("{context}: {var_name}: ConfigMap {cm} is not rendered"));
            json!({ "value": config["data"][cm["key"].as_str().unwrap_or_default()] })
        } else {
            var["valueFrom"].clone()
        };
        env.insert(var_name, value);
    }
    env
}

fn env_value<'a>(env: &'a BTreeMap<String, Value>, key: &str) -> Option<&'a str> {
    env.get(key).and_then(|v| v["value"].as_str())
}

/// The number of a container port given by name or number.
fn port_number(container: &Value, port: &Value) -> Option<u64> {
    match port {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => array(&container["ports"])
            .iter()
            .find(|p| p["name"] == s.as_str())
            .and_then(|p| p["containerPort"].as_u64()),
        _ => None,
    }
}

/// `scheme://[user[:password]@]host[:port]/path` → (host, port, path).
fn url_parts(url: &str) -> (String, Option<u16>, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.split_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().ok(), format!("/{path}")),
        None => (host_port.to_owned(), None, format!("/{path}")),
    }
}

/// The rendered Service named `host` (a short in-namespace name) exposes `port`.
fn assert_service_port(objects: &[Value], host: &str, port: u16, context: &str) {
    let service = find(objects, "Service", host)
        .unwrap_or_else(|| panic!("{context}: no Service named {host} is rendered"));
    assert!(
        array(&service["spec"]["ports"])
            .iter()
            .any(|p| p["port"].as_u64() == Some(u64::from(port))),
        "{context}: Service {host} has no port {port}"
    );
}

/// Not root, a read-only root file system, no privilege escalation, no capabilities, and CPU
/// and memory requests and limits.
fn assert_locked_down_and_bounded(pod: &Value, container: &Value, context: &str) {
    let security = &container["securityContext"];
    assert!(
        pod["securityContext"]["runAsNonRoot"] == true || security["runAsNonRoot"] == true,
        "{context}: runAsNonRoot"
    );
    for user in [&pod["securityContext"]["runAsUser"], &security["runAsUser"]] {
        assert_ne!(user.as_u64(), Some(0), "{context}: runs as root");
    }
    assert_eq!(security["readOnlyRootFilesystem"], true, "{context}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{context}");
    assert!(
        str_array(&security["capabilities"]["drop"]).contains(&"ALL"),
        "{context}: drops all capabilities"
    );
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][bound][resource].is_string(),
                "{context}: resources.{bound}.{resource}"
            );
        }
    }
}

/// The value of a rendered Secret's key (`data` is base64, `stringData` plain).
fn secret_value(secret: &Value, key: &str) -> Option<String> {
    if let Some(text) = secret["stringData"][key].as_str() {
        return Some(text.to_owned());
    }
    let encoded = secret["data"][key].as_str()?;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut bits, mut count, mut bytes) = (0u32, 0u32, Vec::new());
    for c in encoded
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
    {
        let value = ALPHABET
            .iter()
            .position(|a| *a == c)
            .unwrap_or_else(|| panic!("Secret data {key} is not base64: {encoded}"));
        bits = (bits << 6) | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(String::from_utf8(bytes).expect("Secret data is UTF-8"))
}

/// `skaffold.yaml` as JSON.
fn skaffold() -> Value {
    let yaml: serde_norway::Value =
        serde_norway::from_str(&read("skaffold.yaml")).expect("skaffold.yaml parses");
    serde_json::to_value(yaml).unwrap()
}

/// The port-forward to the ingress controller (the first Service that skaffold forwards).
fn skaffold_ingress_forward(config: &Value) -> &Value {
    array(&config["portForward"])
        .iter()
        .find(|f| f["resourceType"] == "service")
        .expect("a service port-forward")
}

// ---------------------------------------------------------------------------------------------
// Ingress rules

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    ingress: String,
    host: Option<String>,
    path: String,
    path_type: String,
    service: String,
    port: Value,
}

fn ingress_rules(ingress: &Value) -> Vec<Rule> {
    let mut rules = Vec::new();
    for rule in array(&ingress["spec"]["rules"]) {
        for path in array(&rule["http"]["paths"]) {
            rules.push(Rule {
                ingress: name(ingress).to_owned(),
                host: rule["host"].as_str().map(str::to_owned),
                path: path["path"].as_str().unwrap_or_default().to_owned(),
                path_type: path["pathType"].as_str().unwrap_or_default().to_owned(),
                service: path["backend"]["service"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                port: path["backend"]["service"]["port"].clone(),
            });
        }
    }
    rules
}

/// Whether a request path falls under a rule path (Kubernetes semantics: `Prefix` matches
/// whole path elements, `Exact` the path itself).
fn rule_matches(rule: &Rule, request: &str) -> bool {
    match rule.path_type.as_str() {
        "Exact" => rule.path == request,
        "Prefix" => {
            let prefix = rule.path.trim_end_matches('/');
            prefix.is_empty() || request == prefix || request.starts_with(&format!("{prefix}/"))
        }
        other => panic!(
            "Ingress {} path {}: pathType {other} has no portable meaning; use Prefix or Exact",
            rule.ingress, rule.path
        ),
    }
}

/// The rule a request takes among the rules of one host: the longest matching path, `Exact`
/// before `Prefix` (the Ingress specification's precedence).
fn route<'a>(rules: &[&'a Rule], request: &str) -> Option<&'a Rule> {
    rules
        .iter()
        .copied()
        .filter(|r| rule_matches(r, request))
        .max_by_key(|r| (r.path.len(), r.path_type == "Exact"))
}

/// The rules of every Ingress, grouped by (ingress, host).
fn rules_by_host(objects: &[Value]) -> BTreeMap<(String, Option<String>), Vec<Rule>> {
    let mut groups: BTreeMap<(String, Option<String>), Vec<Rule>> = BTreeMap::new();
    for ingress in kind(objects, "Ingress") {
        for rule in ingress_rules(ingress) {
            groups
                .entry((rule.ingress.clone(), rule.host.clone()))
                .or_default()
                .push(rule);
        }
    }
    groups
}

fn public_rules(objects: &[Value], overlay: &str) -> Vec<Rule> {
    let ingress = find(objects, "Ingress", PUBLIC_INGRESS)
        .unwrap_or_else(|| panic!("{overlay}: no Ingress named {PUBLIC_INGRESS}"));
    ingress_rules(ingress)
}

/// The nginx.conf that `scripts/local-cluster` writes, produced by running its own
/// `write_nginx_conf` (the script minus its command dispatch) into a temporary directory.
fn local_cluster_nginx_conf() -> String {
    let script = read("scripts/local-cluster");
    let dispatch = script
        .rfind("\ncase \"${1:-}\" in")
        .expect("scripts/local-cluster ends with its `case \"${1:-}\" in` command dispatch");
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}\nwrite_nginx_conf\ncat \"$CLUSTER_DIR/nginx.conf\"\n",
        &script[..dispatch]
    );
    let copy = dir.path().join("scripts/local-cluster-conf");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::write(&copy, body).unwrap();
    let out = Command::new("bash")
        .arg(&copy)
        .env("CLUSTER_DIR", dir.path().join("cluster"))
        .env("CLUSTER_PORT", "8080")
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "write_nginx_conf of scripts/local-cluster failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `location <path> { proxy_pass http://<upstream>; }` entries in order, and the upstream
/// names defined.
fn nginx_routes(conf: &str) -> (Vec<(String, String)>, BTreeSet<String>) {
    let mut locations = Vec::new();
    let mut upstreams = BTreeSet::new();
    for line in conf.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["upstream", upstream, "{", ..] => {
                upstreams.insert((*upstream).to_owned());
            }
            ["location", path, ..] => {
                let target = line
                    .split("proxy_pass http://")
                    .nth(1)
                    .and_then(|rest| rest.split(';').next())
                    .unwrap_or_else(|| panic!("nginx.conf: location without proxy_pass: {line}"));
                locations.push(((*path).to_owned(), target.trim().to_owned()));
            }
            _ => {}
        }
    }
    (locations, upstreams)
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

#[derive(Debug)]
struct Stage {
    base: String,
    name: Option<String>,
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, a)| a.as_str())
            .collect()
    }

    fn last(&self, keyword: &str) -> Option<&str> {
        self.all(keyword).last().copied()
    }
}

/// The Dockerfile's stages with their instructions (continuation lines joined, comments
/// dropped).
fn dockerfile() -> Vec<Stage> {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Docker ignores empty lines and comments, also inside a continued instruction.
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(start) = trimmed.strip_suffix('\\') {
            current.push_str(start);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_uppercase();
        let args = args.trim().to_owned();
        if keyword == "FROM" {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            stages.push(Stage {
                base: words[0].to_owned(),
                name: match words.as_slice() {
                    [_, keyword, stage] if keyword.eq_ignore_ascii_case("as") => {
                        Some((*stage).to_owned())
                    }
                    _ => None,
                },
                instructions: Vec::new(),
            });
        } else if keyword != "ARG" || !stages.is_empty() {
            stages
                .last_mut()
                .expect("the Dockerfile starts with FROM")
                .instructions
                .push((keyword, args));
        }
    }
    stages
}

/// An exec-form (`["a", "b"]`) instruction argument.
fn exec_form(args: &str, what: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|_| panic!("Dockerfile {what} must use the exec form [\"...\"]: {args}"))
}

/// `ENV` entries of a stage (`K=V` pairs; values without spaces or quotes).
fn dockerfile_env(stage: &Stage) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for args in stage.all("ENV") {
        if let Some((k, v)) = args
            .split_once(char::is_whitespace)
            .filter(|(k, _)| !k.contains('='))
        {
            env.insert(k.to_owned(), v.trim().to_owned());
            continue;
        }
        for pair in args.split_whitespace() {
            let (k, v) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("Dockerfile ENV {pair}: expected K=V"));
            env.insert(k.to_owned(), v.trim_matches('"').to_owned());
        }
    }
    env
}

/// The port the image's process listens on: its `PORT`, or the binary's default.
fn image_port() -> u64 {
    let stages = dockerfile();
    let runtime = stages.last().expect("a Dockerfile stage");
    dockerfile_env(runtime).get("PORT").map_or(3000, |p| {
        p.parse().expect("Dockerfile ENV PORT is a number")
    })
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn every_deployment_runs_a_real_service_on_its_port_with_health_probes() {
    let Some(overlays) = render_all() else { return };
    let services = real_services();
    let known_env = known_env_vars();
    assert!(services.contains(&"auth".to_owned()), "{services:?}");
    for (overlay, objects) in &overlays {
        let deployments = service_deployments(objects);
        let mut deployed = BTreeSet::new();
        for deployment in &deployments {
            let context = format!("{overlay}: Deployment {}", name(deployment));
            let pod = pod_spec(deployment);
            let containers = array(&pod["containers"]);
            assert_eq!(containers.len(), 1, "{context}: one container");
            let container = &containers[0];

            // The image's entrypoint is the binary: the manifests give only its arguments.
            let image = container["image"].as_str().unwrap_or_default();
            let repository = image.split(['@', ':']).next().unwrap_or_default();
            assert_eq!(
                repository.rsplit('/').next(),
                Some("buyticket"),
                "{context}: runs the buyticket image, not {image}"
            );
            assert!(
                container.get("command").is_none(),
                "{context}: `command` would replace the image's ENTRYPOINT"
            );
            let args = str_array(&container["args"]);
            let [serve, service] = args.as_slice() else {
                panic!("{context}: args must be [serve, <service>], not {args:?}");
            };
            assert_eq!(*serve, "serve", "{context}: {args:?}");
            assert!(
                services.iter().any(|s| s == service),
                "{context}: `{service}` is not a service of the binary ({services:?})"
            );
            assert_args_parse(&args, &context);
            assert!(
                deployed.insert(service.to_string()),
                "{context}: {service} twice"
            );
            assert_eq!(
                name(deployment),
                *service,
                "{context}: named after its service"
            );
            for labels in [
                &deployment["metadata"]["labels"],
                &deployment["spec"]["template"]["metadata"]["labels"],
            ] {
                assert_eq!(labels["app.kubernetes.io/name"], *service, "{context}");
                assert_eq!(
                    labels["app.kubernetes.io/part-of"], "buyticket",
                    "{context}"
                );
            }

            // The environment: only variables the binary reads (or that another value refers
            // to as $(NAME)), secrets from Secrets.
            let env = container_env(objects, container, &context);
            let referenced: BTreeSet<&str> = env
                .values()
                .filter_map(|v| v["value"].as_str())
                .flat_map(|v| v.split("$(").skip(1))
                .filter_map(|rest| rest.split(')').next())
                .collect();
            for var in env.keys() {
                assert!(
                    known_env.contains(var) || referenced.contains(var.as_str()),
                    "{context}: the binary does not read {var} (known: {known_env:?})"
                );
            }
            for secret in SECRET_VARS {
                if let Some(v) = env.get(secret) {
                    assert!(
                        v["secret"].is_string(),
                        "{context}: {secret} from a Secret: {v}"
                    );
                }
            }
            assert!(
                env.contains_key("JWT_KEY"),
                "{context}: JWT_KEY is required"
            );
            let cookie_secure = env_value(&env, "COOKIE_SECURE");
            let expected = if *overlay == "prod" { "true" } else { "false" };
            assert_eq!(cookie_secure, Some(expected), "{context}: COOKIE_SECURE");
            assert!(
                env.contains_key("TRUSTED_PROXIES"),
                "{context}: TRUSTED_PROXIES"
            );
            // What `serve notifications` refuses to start without: the mail server, and the
            // site's address for the links in emails.
            if *service == "notifications" {
                assert!(
                    env.get("SMTP_URL").is_some_and(|v| v["optional"] == false),
                    "{context}: SMTP_URL is required, from a Secret that must exist"
                );
                let public = env_value(&env, "PUBLIC_URL")
                    .unwrap_or_else(|| panic!("{context}: PUBLIC_URL is required"));
                assert!(
                    public.starts_with("https://") || public.starts_with("http://"),
                    "{context}: PUBLIC_URL is an absolute http(s) address: {public}"
                );
            }
            if *service == "client" {
                let api = env_value(&env, "API_BASE_URL")
                    .unwrap_or_else(|| panic!("{context}: the client needs API_BASE_URL"));
                assert!(api.starts_with("http://"), "{context}: {api}");
                assert!(!env.contains_key("DATABASE_URL"), "{context}: no database");
            } else {
                let url = env_value(&env, "DATABASE_URL")
                    .unwrap_or_else(|| panic!("{context}: DATABASE_URL"));
                assert!(url.starts_with("postgres://"), "{context}: {url}");
                let (host, port, path) = url_parts(url);
                assert_eq!(path, format!("/buyticket_{service}"), "{context}: {url}");
                assert_service_port(objects, &host, port.unwrap_or(5432), &context);
                let nats = env_value(&env, "NATS_URL").expect("NATS_URL");
                let (host, port, _) = url_parts(nats);
                assert_service_port(objects, &host, port.unwrap_or(4222), &context);
            }

            // It listens where the pod says, and the probes ask its health endpoints there.
            let port = env_value(&env, "PORT")
                .map(|p| p.parse::<u64>().expect("PORT is a number"))
                .unwrap_or_else(image_port);
            let http = array(&container["ports"])
                .iter()
                .find(|p| p["name"] == "http")
                .unwrap_or_else(|| panic!("{context}: a container port named http"));
            assert_eq!(
                http["containerPort"].as_u64(),
                Some(port),
                "{context}: PORT"
            );
            for (probe, path) in [
                ("readinessProbe", "/readyz"),
                ("livenessProbe", "/healthz"),
                ("startupProbe", "/healthz"),
            ] {
                let get = &container[probe]["httpGet"];
                if probe == "startupProbe" && container.get(probe).is_none() {
                    continue;
                }
                assert_eq!(get["path"], path, "{context}: {probe}");
                assert_eq!(
                    port_number(container, &get["port"]),
                    Some(port),
                    "{context}: {probe} asks port {}",
                    get["port"]
                );
            }

            // Metrics: scraped on a port of their own (METRICS_ADDR), not the public one.
            let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
            if annotations["prometheus.io/scrape"] == "true" {
                let addr = env_value(&env, "METRICS_ADDR")
                    .unwrap_or_else(|| panic!("{context}: scraped, so METRICS_ADDR is set"));
                let metrics_port: u64 = addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("{context}: METRICS_ADDR {addr} has a port"));
                assert_ne!(metrics_port, port, "{context}: metrics off the public port");
                assert_eq!(
                    annotations["prometheus.io/port"].as_str(),
                    Some(metrics_port.to_string().as_str()),
                    "{context}: the scrape port"
                );
                assert!(
                    array(&container["ports"])
                        .iter()
                        .any(|p| p["containerPort"].as_u64() == Some(metrics_port)),
                    "{context}: a container port for the metrics"
                );
            }

            assert_locked_down_and_bounded(pod, container, &context);

            // Replicas: prod keeps at least 2 (fixed or autoscaled) and a disruption budget.
            let labels = &deployment["spec"]["template"]["metadata"]["labels"];
            let replicas = deployment["spec"]["replicas"].as_u64();
            if *overlay == "prod" {
                let autoscaled = kind(objects, "HorizontalPodAutoscaler")
                    .into_iter()
                    .find(|h| {
                        h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
                            && h["spec"]["scaleTargetRef"]["name"] == name(deployment)
                    })
                    .and_then(|h| h["spec"]["minReplicas"].as_u64());
                assert!(
                    replicas.or(autoscaled).is_some_and(|n| n >= 2),
                    "{context}: at least 2 replicas (replicas {replicas:?}, HPA min {autoscaled:?})"
                );
                assert!(
                    replicas.is_none() || autoscaled.is_none(),
                    "{context}: replicas and an HPA fight over the replica count"
                );
                assert!(
                    kind(objects, "PodDisruptionBudget")
                        .iter()
                        .any(|p| selects(&p["spec"]["selector"]["matchLabels"], labels)),
                    "{context}: a PodDisruptionBudget"
                );
            } else {
                assert!(replicas.unwrap_or(1) >= 1, "{context}");
            }
        }
        let all: BTreeSet<String> = services.iter().cloned().collect();
        assert_eq!(deployed, all, "{overlay}: one Deployment per service");
    }
}

#[test]
fn every_service_selects_pods_and_targets_a_port_they_expose() {
    let Some(overlays) = render_all() else { return };
    for (overlay, objects) in &overlays {
        let pods = workloads(objects);
        for service in kind(objects, "Service") {
            let context = format!("{overlay}: Service {}", name(service));
            let selector = &service["spec"]["selector"];
            let targets: Vec<&&Value> = pods
                .iter()
                .filter(|w| selects(selector, &w["spec"]["template"]["metadata"]["labels"]))
                .collect();
            assert!(
                !targets.is_empty(),
                "{context}: its selector {selector} matches no Deployment or StatefulSet"
            );
            for port in array(&service["spec"]["ports"]) {
                let target = port.get("targetPort").unwrap_or(&port["port"]);
                for workload in &targets {
                    assert!(
                        array(&pod_spec(workload)["containers"])
                            .iter()
                            .any(|c| port_number(c, target).is_some()),
                        "{context}: targetPort {target} is not a port of {}",
                        name(workload)
                    );
                }
            }
        }
        // Every workload is reachable through a Service; StatefulSets name a headless one.
        for workload in pods {
            let labels = &workload["spec"]["template"]["metadata"]["labels"];
            assert!(
                selects(&workload["spec"]["selector"]["matchLabels"], labels),
                "{overlay}: {} selects its own pods",
                name(workload)
            );
            assert!(
                kind(objects, "Service")
                    .iter()
                    .any(|s| selects(&s["spec"]["selector"], labels)),
                "{overlay}: no Service selects the pods of {}",
                name(workload)
            );
            if workload["kind"] == "StatefulSet" {
                let headless = workload["spec"]["serviceName"].as_str().unwrap_or_default();
                let service = find(objects, "Service", headless).unwrap_or_else(|| {
                    panic!(
                        "{overlay}: StatefulSet {}: Service {headless}",
                        name(workload)
                    )
                });
                assert_eq!(
                    service["spec"]["clusterIP"], "None",
                    "{overlay}: {headless}"
                );
                assert!(
                    !array(&workload["spec"]["volumeClaimTemplates"]).is_empty(),
                    "{overlay}: StatefulSet {} keeps its data on a volume",
                    name(workload)
                );
            }
        }
    }
}

#[test]
fn referenced_config_and_secrets_exist_or_are_documented() {
    let Some(overlays) = render_all() else { return };
    let prod_readme = read("deploy/k8s/overlays/prod/README.md");
    for (overlay, objects) in &overlays {
        let mut missing_secrets = BTreeSet::new();
        for workload in workloads(objects) {
            let context = format!("{overlay}: {}", name(workload));
            let pod = pod_spec(workload);
            let mut secret_refs = Vec::new();
            let mut config_refs = Vec::new();
            for container in array(&pod["containers"]) {
                for source in array(&container["envFrom"]) {
                    config_refs.extend(source["configMapRef"]["name"].as_str());
                    secret_refs.extend(source["secretRef"]["name"].as_str().map(|n| (n, false)));
                }
                for var in array(&container["env"]) {
                    let from = &var["valueFrom"];
                    config_refs.extend(from["configMapKeyRef"]["name"].as_str());
                    if let Some(n) = from["secretKeyRef"]["name"].as_str() {
                        let optional = from["secretKeyRef"]["optional"] == true;
                        secret_refs.push((n, optional));
                        if let Some(secret) = find(objects, "Secret", n) {
                            let key = from["secretKeyRef"]["key"].as_str().unwrap_or_default();
                            let has = secret["data"].get(key).is_some()
                                || secret["stringData"].get(key).is_some();
                            assert!(has || optional, "{context}: Secret {n} has no key {key}");
                        }
                    }
                }
            }
            for volume in array(&pod["volumes"]) {
                config_refs.extend(volume["configMap"]["name"].as_str());
                secret_refs.extend(volume["secret"]["secretName"].as_str().map(|n| (n, false)));
            }
            for config in config_refs {
                assert!(
                    find(objects, "ConfigMap", config).is_some(),
                    "{context}: ConfigMap {config} is not rendered"
                );
            }
            for (secret, optional) in secret_refs {
                if find(objects, "Secret", secret).is_none() && !optional {
                    missing_secrets.insert(secret.to_owned());
                }
            }
        }
        for ingress in kind(objects, "Ingress") {
            for tls in array(&ingress["spec"]["tls"]) {
                if let Some(secret) = tls["secretName"].as_str()
                    && find(objects, "Secret", secret).is_none()
                {
                    missing_secrets.insert(secret.to_owned());
                }
            }
        }
        if *overlay == "prod" {
            // Production secrets are created out of band: each must be documented.
            assert!(
                kind(objects, "Secret").is_empty(),
                "prod: no Secret may be committed"
            );
            for secret in &missing_secrets {
                assert!(
                    prod_readme.contains(&format!("`{secret}`")),
                    "prod: Secret {secret} is not documented in overlays/prod/README.md"
                );
            }
        } else {
            assert!(
                missing_secrets.is_empty(),
                "{overlay}: Secrets {missing_secrets:?} are referenced but not generated"
            );
        }
    }
}

#[test]
fn dev_tools_run_only_in_development_pinned_and_locked_down() {
    let Some(overlays) = render_all() else { return };
    for (overlay, objects) in &overlays {
        for deployment in kind(objects, "Deployment") {
            let Some((tool, allowed)) = DEV_TOOLS.iter().find(|(t, _)| *t == name(deployment))
            else {
                continue;
            };
            let context = format!("{overlay}: Deployment {tool}");
            assert_eq!(overlay, allowed, "{context}: only in the {allowed} overlay");
            let pod = pod_spec(deployment);
            assert_eq!(
                pod["automountServiceAccountToken"], false,
                "{context}: no service-account token"
            );
            for container in array(&pod["containers"]) {
                // A tag that names one release (`v1.27.8`), not `latest` or a moving `v1.27`.
                let image = container["image"].as_str().unwrap_or_default();
                let tag = image
                    .rsplit_once(':')
                    .map(|(_, tag)| tag)
                    .filter(|tag| !tag.contains('/'));
                let release = tag.is_some_and(|tag| {
                    let parts: Vec<&str> = tag.trim_start_matches('v').split('.').collect();
                    parts.len() == 3
                        && parts
                            .iter()
                            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
                });
                assert!(
                    image.contains("@sha256:") || release,
                    "{context}: the image is pinned to one release: {image}"
                );
                assert_locked_down_and_bounded(pod, container, &context);
            }
        }
    }
}

#[test]
fn notifications_link_to_the_public_site_and_reach_their_mail_server() {
    let Some(overlays) = render_all() else { return };
    let forward = skaffold_ingress_forward(&skaffold()).clone();
    for (overlay, objects) in &overlays {
        let deployment = find(objects, "Deployment", "notifications")
            .unwrap_or_else(|| panic!("{overlay}: Deployment notifications"));
        let context = format!("{overlay}: notifications");
        let container = &array(&pod_spec(deployment)["containers"])[0];
        let env = container_env(objects, container, &context);

        // The links in emails lead to where people reach the site: the public Ingress's host
        // with its TLS (prod), or the ingress controller as `skaffold dev` forwards it (dev).
        let public =
            env_value(&env, "PUBLIC_URL").unwrap_or_else(|| panic!("{context}: PUBLIC_URL"));
        let host = public_rules(objects, overlay)[0].host.clone();
        let expected = match &host {
            Some(host) => format!("https://{host}"),
            None => format!("http://localhost:{}", forward["localPort"]),
        };
        assert_eq!(public, expected, "{context}: PUBLIC_URL");

        // SMTP_URL: a Secret created out of band in prod (documented, see
        // referenced_config_and_secrets_exist_or_are_documented); a generated one elsewhere,
        // naming a mail server that is a rendered Service with that port.
        let smtp = &env["SMTP_URL"];
        let secret_name = smtp["secret"]
            .as_str()
            .unwrap_or_else(|| panic!("{context}: SMTP_URL from a Secret: {smtp}"));
        let Some(secret) = find(objects, "Secret", secret_name) else {
            assert_eq!(
                *overlay, "prod",
                "{context}: Secret {secret_name} is not rendered"
            );
            continue;
        };
        let key = smtp["key"].as_str().unwrap_or_default();
        let url = secret_value(secret, key)
            .unwrap_or_else(|| panic!("{context}: Secret {secret_name} has no key {key}"));
        let default_port = match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("smtp") => 25,
            Some("smtps") => 465,
            _ => panic!("{context}: SMTP_URL {url} is smtp:// or smtps://"),
        };
        let (host, port, _) = url_parts(&url);
        assert_service_port(objects, &host, port.unwrap_or(default_port), &context);
    }
}

#[test]
fn nats_keeps_jetstream_on_its_volume() {
    let Some(overlays) = render_all() else { return };
    for (overlay, objects) in &overlays {
        let nats = find(objects, "StatefulSet", "nats")
            .unwrap_or_else(|| panic!("{overlay}: StatefulSet nats"));
        let pod = pod_spec(nats);
        let container = &array(&pod["containers"])[0];
        let claims: Vec<&str> = array(&nats["spec"]["volumeClaimTemplates"])
            .iter()
            .filter_map(|c| c["metadata"]["name"].as_str())
            .collect();
        let mount_of = |volume: &str| {
            array(&container["volumeMounts"])
                .iter()
                .find(|m| m["name"] == volume)
                .and_then(|m| m["mountPath"].as_str())
                .map(str::to_owned)
        };
        let data = claims
            .iter()
            .find_map(|c| mount_of(c))
            .unwrap_or_else(|| panic!("{overlay}: nats mounts a volume claim"));
        // Its config file comes from a ConfigMap volume and enables JetStream on that volume.
        let config = array(&pod["volumes"])
            .iter()
            .find_map(|v| {
                let cm = find(objects, "ConfigMap", v["configMap"]["name"].as_str()?)?;
                let conf = cm["data"]
                    .as_object()?
                    .values()
                    .find_map(|c| c.as_str().filter(|c| c.contains("jetstream")))?;
                Some((mount_of(v["name"].as_str()?)?, conf.to_owned()))
            })
            .unwrap_or_else(|| panic!("{overlay}: nats config with a jetstream block"));
        let store_dir = config
            .1
            .lines()
            .find_map(|l| l.trim().strip_prefix("store_dir:"))
            .map(|d| d.trim().trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("{overlay}: jetstream {{ store_dir: ... }}"));
        assert!(
            store_dir.starts_with(&data),
            "{overlay}: JetStream stores in {store_dir}, not on the volume at {data}"
        );
        let args = str_array(&container["args"]).join(" ");
        assert!(
            args.contains(&config.0),
            "{overlay}: nats is started with its config file under {} ({args})",
            config.0
        );
        // The services' NATS_URL reaches it (checked per Deployment); the bus is JetStream.
        assert!(find(objects, "Service", "nats").is_some(), "{overlay}");
    }
}

#[test]
fn ingress_rules_follow_the_architecture_and_the_local_cluster_nginx() {
    let expected: Vec<(String, String)> = ARCHITECTURE_RULES
        .iter()
        .map(|(p, s)| ((*p).to_owned(), (*s).to_owned()))
        .collect();

    // scripts/local-cluster's nginx routes like ARCHITECTURE §1, in its order, and so like the
    // public Ingress (checked below against the same list).
    let conf = local_cluster_nginx_conf();
    let (locations, upstreams) = nginx_routes(&conf);
    assert_eq!(
        locations, expected,
        "scripts/local-cluster nginx.conf locations (path → upstream) must equal the Ingress rules, in order:\n{conf}"
    );
    let used: BTreeSet<String> = locations.iter().map(|(_, u)| u.clone()).collect();
    assert_eq!(
        upstreams, used,
        "scripts/local-cluster nginx.conf: upstreams defined vs used"
    );

    let Some(overlays) = render_all() else { return };
    for (overlay, objects) in &overlays {
        let rules = public_rules(objects, overlay);
        let actual: Vec<(String, String)> = rules
            .iter()
            .map(|r| (r.path.clone(), r.service.clone()))
            .collect();
        assert_eq!(
            actual, expected,
            "{overlay}: Ingress {PUBLIC_INGRESS} rules (path → service) must be ARCHITECTURE §1's, in order"
        );
        for rule in &rules {
            assert_eq!(rule.path_type, "Prefix", "{overlay}: {}", rule.path);
        }
        let hosts: BTreeSet<&Option<String>> = rules.iter().map(|r| &r.host).collect();
        assert_eq!(hosts.len(), 1, "{overlay}: one host for every public rule");
        let public = find(objects, "Ingress", PUBLIC_INGRESS).unwrap();
        if *overlay == "prod" {
            let host = rules[0]
                .host
                .as_deref()
                .expect("prod: the Ingress names its host");
            assert!(
                array(&public["spec"]["tls"])
                    .iter()
                    .any(|t| str_array(&t["hosts"]).contains(&host)),
                "prod: TLS for {host}"
            );
        }

        // Every Ingress: class nginx, backends that are rendered Services with that port.
        for ingress in kind(objects, "Ingress") {
            assert_eq!(
                ingress["spec"]["ingressClassName"],
                "nginx",
                "{overlay}: {}",
                name(ingress)
            );
            for rule in ingress_rules(ingress) {
                let context = format!("{overlay}: Ingress {} {}", rule.ingress, rule.path);
                let service = find(objects, "Service", &rule.service)
                    .unwrap_or_else(|| panic!("{context}: no Service {}", rule.service));
                assert!(
                    array(&service["spec"]["ports"]).iter().any(|p| {
                        rule.port.get("name").is_some_and(|n| p["name"] == *n)
                            || rule.port.get("number").is_some_and(|n| p["port"] == *n)
                    }),
                    "{context}: Service {} has no port {}",
                    rule.service,
                    rule.port
                );
            }
        }

        // The web client's gateway (API_BASE_URL) routes every API prefix as the public
        // Ingress does, and answers /healthz from a service other than the client (the
        // client's readiness asks it: through the client itself it would never be ready).
        let client = find(objects, "Deployment", "client").expect("Deployment client");
        let container = &array(&pod_spec(client)["containers"])[0];
        let env = container_env(objects, container, "client");
        let api = env_value(&env, "API_BASE_URL").expect("client API_BASE_URL");
        let (host, _, _) = url_parts(api);
        let groups = rules_by_host(objects);
        let gateway: Vec<&Rule> = groups
            .iter()
            .find(|((_, h), _)| h.as_deref() == Some(host.as_str()))
            .or_else(|| groups.iter().find(|((_, h), _)| h.is_none()))
            .map(|(_, rules)| rules.iter().collect())
            .unwrap_or_else(|| panic!("{overlay}: no Ingress rule serves {api}"));
        for (prefix, service) in ARCHITECTURE_RULES
            .iter()
            .filter(|(p, _)| p.starts_with("/api/"))
        {
            let probe = format!("{prefix}/x");
            assert_eq!(
                route(&gateway, &probe).map(|r| r.service.as_str()),
                Some(*service),
                "{overlay}: the client's gateway {api} routes {probe}"
            );
        }
        let health = route(&gateway, "/healthz")
            .unwrap_or_else(|| panic!("{overlay}: the gateway {api} does not route /healthz"));
        assert_ne!(
            health.service, "client",
            "{overlay}: the client's readiness would wait for itself"
        );
    }
}

fn is_fallback(res: &TestResponse) -> bool {
    res.status == StatusCode::NOT_FOUND && res.json == json!({"errors": [{"message": "Not Found"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ingress_path_reaches_the_service_that_answers_it() {
    let Some(overlays) = render_all() else { return };

    // One real `buyticket serve` process per service, on PostgreSQL and NATS.
    let services = real_services();
    let bus = TestBus::with_config(BusKind::Nats, TestBus::test_config()).await;
    let mut databases: Vec<Option<TestDb>> = Vec::new();
    for service in &services {
        databases.push(match service.as_str() {
            "client" => None,
            _ => Some(TestDb::new(Backend::Postgres).await),
        });
    }
    let files = tempfile::tempdir().unwrap();
    let mut processes: BTreeMap<String, Process> = BTreeMap::new();
    for (service, db) in services.iter().zip(&databases) {
        let mut env = vec![
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", "0".to_owned()),
            ("JWT_KEY", KEY.to_owned()),
            ("NATS_URL", nats_url()),
            ("EVENT_STREAM", bus.config.stream.clone()),
            ("EVENT_SUBJECT_PREFIX", bus.config.subject_prefix.clone()),
            ("PAYMENT_PROVIDER", "development".to_owned()),
            (
                "FILE_STORE_URL",
                format!("file://{}", files.path().display()),
            ),
            // Notifications: nothing is sent here (nobody signs up), so no mail server listens.
            ("SMTP_URL", "smtp://127.0.0.1:9".to_owned()),
            ("PUBLIC_URL", "http://buyticket.test".to_owned()),
        ];
        match db {
            Some(db) => env.push(("DATABASE_URL", db.url.clone())),
            // Nothing listens there: pages that need the API answer 503, which is no 404.
            None => env.push(("API_BASE_URL", "http://127.0.0.1:9".to_owned())),
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        processes.insert(service.clone(), Process::start(&["serve", service], &env));
    }
    let clients: BTreeMap<&str, TestClient> = processes
        .iter()
        .map(|(s, p)| (s.as_str(), p.client()))
        .collect();

    // The probes' endpoints answer 200 on a healthy process (the client's readiness is its
    // gateway's, and nothing listens at its API_BASE_URL here).
    for (service, client) in &clients {
        let live = client.get("/healthz").await;
        assert_eq!(
            live.status,
            StatusCode::OK,
            "{service} /healthz: {}",
            live.text
        );
        let ready = client.get("/readyz").await;
        let expected = match *service {
            "client" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        };
        assert_eq!(ready.status, expected, "{service} /readyz: {}", ready.text);
    }

    // What each process answers for each sample route.
    let mut answers: BTreeMap<(&str, &str), TestResponse> = BTreeMap::new();
    for route in SAMPLE_ROUTES {
        for (service, client) in &clients {
            answers.insert((*service, route), client.get(route).await);
        }
    }

    for (overlay, objects) in &overlays {
        for ((ingress, host), rules) in rules_by_host(objects) {
            let rules: Vec<&Rule> = rules.iter().collect();
            let mut covered = BTreeSet::new();
            for request in SAMPLE_ROUTES {
                let Some(rule) = route(&rules, request) else {
                    continue;
                };
                covered.insert(rule.path.clone());
                let context = format!(
                    "{overlay}: Ingress {ingress} (host {}) sends GET {request} to {} (rule {})",
                    host.as_deref().unwrap_or("*"),
                    rule.service,
                    rule.path
                );
                let answer = answers
                    .get(&(rule.service.as_str(), request))
                    .unwrap_or_else(|| panic!("{context}, which is not a service of the binary"));
                assert!(
                    !is_fallback(answer),
                    "{context}, which does not know that route: {} {}",
                    answer.status,
                    answer.text
                );
                if PLATFORM_PATHS.contains(&request) {
                    continue;
                }
                for other in clients.keys().filter(|s| **s != rule.service) {
                    let answer = &answers[&(*other, request)];
                    assert!(
                        is_fallback(answer),
                        "{context}, but {other} answers it too ({} {}): the route belongs to one service",
                        answer.status,
                        answer.text
                    );
                }
            }
            for rule in &rules {
                assert!(
                    covered.contains(&rule.path),
                    "{overlay}: Ingress {ingress} path {} ({}) reaches no known route of {}; \
                     the path is wrong, or SAMPLE_ROUTES lacks a route under it",
                    rule.path,
                    rule.path_type,
                    rule.service
                );
            }
        }
    }
    drop(clients);
    drop(processes);
}

#[test]
fn the_dockerfile_builds_and_runs_the_binary_the_manifests_expect() {
    let stages = dockerfile();
    assert!(stages.len() >= 2, "a multi-stage build");
    let runtime = stages.last().unwrap();

    // The build stage: `cargo build --release --locked -p buyticket`.
    let (build_index, build) = stages
        .iter()
        .enumerate()
        .find(|(_, s)| s.all("RUN").iter().any(|r| r.contains("cargo build")))
        .expect("a stage runs cargo build");
    let cargo_build = build
        .all("RUN")
        .into_iter()
        .find_map(|r| r.split("cargo build").nth(1))
        .unwrap()
        .split("&&")
        .next()
        .unwrap();
    let words: Vec<&str> = cargo_build.split_whitespace().collect();
    for flag in ["--release", "--locked"] {
        assert!(words.contains(&flag), "cargo build {flag}: {cargo_build}");
    }
    assert!(
        words
            .windows(2)
            .any(|w| matches!(w[0], "-p" | "--package") && w[1] == "buyticket")
            || words.contains(&"--package=buyticket"),
        "cargo build -p buyticket: {cargo_build}"
    );
    assert!(
        build.base.starts_with("rust:") || build.base.contains("/rust:"),
        "builds with the Rust image: {}",
        build.base
    );
    assert!(
        !runtime.base.starts_with("rust:"),
        "the runtime image is small, not {}",
        runtime.base
    );

    // The runtime stage copies the built binary to the ENTRYPOINT.
    let entrypoint = exec_form(
        runtime.last("ENTRYPOINT").expect("ENTRYPOINT"),
        "ENTRYPOINT",
    );
    assert_eq!(
        entrypoint.len(),
        1,
        "ENTRYPOINT is the binary: {entrypoint:?}"
    );
    let copy = runtime
        .all("COPY")
        .into_iter()
        .map(|args| args.split_whitespace().collect::<Vec<&str>>())
        .find(|words| words.last() == Some(&entrypoint[0].as_str()))
        .unwrap_or_else(|| panic!("the runtime stage copies the binary to {}", entrypoint[0]));
    let from = copy
        .iter()
        .find_map(|w| w.strip_prefix("--from="))
        .expect("COPY --from=<build stage>");
    assert!(
        build.name.as_deref() == Some(from) || from == build_index.to_string(),
        "the binary comes from the build stage, not {from}"
    );
    let source = copy[copy.len() - 2];
    let build_text = build.all("RUN").join(" ");
    assert!(
        build_text.contains("target/release/buyticket"),
        "the build stage produces target/release/buyticket"
    );
    assert!(
        source.ends_with("target/release/buyticket") || build_text.contains(source),
        "COPY --from={from} {source}: the build stage puts the binary there"
    );

    // CMD: real arguments of the binary.
    let cmd = exec_form(runtime.last("CMD").expect("CMD"), "CMD");
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    assert_args_parse(&cmd, "Dockerfile CMD");

    // Listens on every interface of the container, on the port it exposes.
    let env = dockerfile_env(runtime);
    assert_eq!(
        env.get("HOST").map(String::as_str),
        Some("0.0.0.0"),
        "ENV HOST"
    );
    let port = image_port();
    let exposed: Vec<u64> = runtime
        .all("EXPOSE")
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(|p| p.trim_end_matches("/tcp").parse().expect("EXPOSE a port"))
        .collect();
    assert_eq!(exposed, vec![port], "EXPOSE equals ENV PORT");
    if let Some(overlays) = render_all() {
        for (overlay, objects) in &overlays {
            for deployment in service_deployments(objects) {
                let container = &array(&pod_spec(deployment)["containers"])[0];
                assert!(
                    array(&container["ports"])
                        .iter()
                        .filter(|p| p["name"] == "http")
                        .all(|p| p["containerPort"].as_u64() == Some(port)),
                    "{overlay}: Deployment {}: the http containerPort equals the image's PORT {port}",
                    name(deployment)
                );
            }
        }
    }

    // Not root.
    let user = runtime.last("USER").expect("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("USER {user}: numeric, so runAsNonRoot can check it"));
    assert_ne!(uid, 0, "USER is not root");

    if let Some(check) = runtime.last("HEALTHCHECK") {
        assert!(
            check.contains("/healthz"),
            "HEALTHCHECK asks /healthz: {check}"
        );
        assert!(
            check.contains("${PORT") || check.contains(&port.to_string()),
            "HEALTHCHECK asks the port the process listens on: {check}"
        );
    }

    // The build context leaves out build output and local data, but not the sources.
    let ignore = read(".dockerignore");
    let patterns: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/').trim_end_matches('/'))
        .collect();
    for excluded in ["target", "data"] {
        assert!(
            patterns.contains(excluded),
            ".dockerignore excludes {excluded}/"
        );
    }
    for needed in ["crates", "Cargo.toml", "Cargo.lock", "*", "**"] {
        assert!(
            !patterns.contains(needed),
            ".dockerignore must not exclude {needed}"
        );
    }
}

#[test]
fn skaffold_builds_the_image_the_manifests_run_and_forwards_the_gateway() {
    let config = skaffold();
    assert!(
        config["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("skaffold/v4")),
        "{}",
        config["apiVersion"]
    );
    let artifacts = array(&config["build"]["artifacts"]);
    assert_eq!(artifacts.len(), 1, "one image for every service");
    assert_eq!(artifacts[0]["image"], "buyticket");
    let dockerfile = artifacts[0]["docker"]["dockerfile"]
        .as_str()
        .unwrap_or("Dockerfile");
    assert!(repo_root().join(dockerfile).is_file(), "{dockerfile}");
    assert_eq!(
        str_array(&config["manifests"]["kustomize"]["paths"]),
        ["deploy/k8s/overlays/dev"]
    );
    let prod = array(&config["profiles"])
        .iter()
        .find(|p| p["name"] == "prod")
        .expect("a prod profile");
    assert_eq!(
        str_array(&prod["manifests"]["kustomize"]["paths"]),
        ["deploy/k8s/overlays/prod"]
    );
    let forward = skaffold_ingress_forward(&config);
    assert_eq!(forward["localPort"], 8080);
    assert_eq!(forward["port"], 80);

    // The port-forward and the client's gateway are the same ingress controller Service.
    let Some(overlays) = render_all() else { return };
    for (overlay, objects) in &overlays {
        let client = find(objects, "Deployment", "client").expect("Deployment client");
        let container = &array(&pod_spec(client)["containers"])[0];
        let env = container_env(objects, container, "client");
        let api = env_value(&env, "API_BASE_URL").expect("API_BASE_URL");
        let (host, port, _) = url_parts(api);
        let parts: Vec<&str> = host.split('.').collect();
        assert!(
            parts.len() >= 3 && parts[2] == "svc",
            "{overlay}: API_BASE_URL names a Service: {api}"
        );
        assert_eq!(
            (parts[0], parts[1], port.unwrap_or(80)),
            (
                forward["resourceName"].as_str().unwrap(),
                forward["namespace"].as_str().unwrap(),
                80
            ),
            "{overlay}: the client's gateway is the ingress controller skaffold forwards to"
        );
        for deployment in service_deployments(objects) {
            let image = array(&pod_spec(deployment)["containers"])[0]["image"]
                .as_str()
                .unwrap_or_default();
            assert_eq!(
                image.split(':').next(),
                Some("buyticket"),
                "{overlay}: {} runs the image skaffold builds",
                name(deployment)
            );
        }
    }
}
