//! Authentication and request hygiene, against the real server over HTTP: bearer tokens and
//! their scopes, the dashboard's cookie sign-in and its CSRF header, the rule that a
//! non-loopback daemon needs tokens, the `Host` check of a loopback daemon, and the content
//! types ingest takes.

#[allow(dead_code)]
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use common::*;
use graywatch::config::{Scope, Settings, TokenConfig};
use graywatch::startup::Application;
use graywatch::time::Clock;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INGEST: &str = "ingest-token-7f3a9c1e5b";
const READ: &str = "read-token-2d8e4b6a0c";
const ADMIN: &str = "admin-token-9b1f7d3e5a";
/// Read and admin, as a person at the dashboard who may silence alerts holds.
const OPS: &str = "ops-token-4c6e8a0b2d";

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn token(name: &str, scopes: &[Scope], secret: &str) -> TokenConfig {
    TokenConfig {
        name: name.into(),
        scopes: scopes.to_vec(),
        sha256: Some(sha256_hex(secret)),
        ..TokenConfig::default()
    }
}

/// The four tokens, by digest.
fn with_tokens(s: &mut Settings) {
    s.auth.tokens = vec![
        token("checkout", &[Scope::Ingest], INGEST),
        token("grafana", &[Scope::Read], READ),
        token("automation", &[Scope::Admin], ADMIN),
        token("ops", &[Scope::Read, Scope::Admin], OPS),
    ];
}

async fn secured() -> TestApp {
    TestApp::spawn_with(with_tokens).await
}

/// A request with an optional bearer token and JSON body: (status, headers, body text).
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, HeaderMap, String) {
    let mut req = app.client.request(method.clone(), app.url(path));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status();
    let headers = resp.headers().clone();
    // An SSE stream never ends: its status and headers are enough.
    let text = if path.ends_with("/stream") && status.is_success() {
        String::new()
    } else {
        resp.text().await.unwrap()
    };
    (status, headers, text)
}

fn json_error(text: &str) -> String {
    let v: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("a JSON error ({e}): {text:?}"));
    error_of(&v).to_string()
}

fn silence_body() -> Value {
    json!({"dependency": "payments-api", "duration": "1h", "comment": "maintenance"})
}

fn override_body() -> Value {
    json!({"state": "open", "reason": "failover drill", "ttl": "10m"})
}

#[tokio::test]
async fn without_a_token_or_with_an_unknown_one_requests_get_401_and_a_bearer_challenge() {
    let app = secured().await;
    let events = json!([event("payments-api", 10.0, "ok", None)]);
    let cases: [(Method, &str, Option<&Value>); 5] = [
        (Method::GET, "/v1/dependencies", None),
        (Method::POST, "/v1/events", Some(&events)),
        (Method::GET, "/metrics", None),
        (Method::GET, "/v1/overview", None),
        (Method::DELETE, "/v1/silences/1", None),
    ];
    for (method, path, body) in cases {
        for bearer in [None, Some("not-a-token-of-ours-at-all")] {
            let (status, headers, text) = call(&app, method.clone(), path, bearer, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {text}");
            let challenge = headers["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            assert_eq!(
                challenge.contains("invalid_token"),
                bearer.is_some(),
                "{challenge}"
            );
            let error = json_error(&text);
            assert!(
                error.contains("token") || error.contains("Bearer"),
                "{error}"
            );
        }
    }
    // Another scheme is not a bearer token.
    let resp = app
        .client
        .get(app.url("/v1/alerts"))
        .header("authorization", format!("Basic {READ}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Nothing reached ingest.
    let (status, _, text) = call(&app, Method::GET, "/v1/dependencies", Some(READ), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["dependencies"], json!([]), "{list}");
}

#[tokio::test]
async fn each_scope_class_is_refused_403_without_its_scope_and_served_with_it() {
    let app = secured().await;
    let events = json!([event("payments-api", 10.0, "ok", None)]);
    let (silence, overrides) = (silence_body(), override_body());
    // (method, path, body, the scope it needs, the status when served)
    let cases: Vec<(Method, &str, Option<&Value>, &str, StatusCode)> = vec![
        (
            Method::POST,
            "/v1/events",
            Some(&events),
            "ingest",
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/dependencies",
            None,
            "read",
            StatusCode::OK,
        ),
        (Method::GET, "/v1/alerts", None, "read", StatusCode::OK),
        (Method::GET, "/v1/silences", None, "read", StatusCode::OK),
        (Method::GET, "/v1/overview", None, "read", StatusCode::OK),
        (
            Method::GET,
            "/v1/breakers/stream",
            None,
            "read",
            StatusCode::OK,
        ),
        (Method::GET, "/", None, "read", StatusCode::OK),
        (Method::GET, "/assets/app.js", None, "read", StatusCode::OK),
        (Method::GET, "/metrics", None, "read", StatusCode::OK),
        (
            Method::POST,
            "/v1/silences",
            Some(&silence),
            "admin",
            StatusCode::CREATED,
        ),
        (
            Method::PUT,
            "/v1/breakers/payments-api",
            Some(&overrides),
            "admin",
            StatusCode::OK,
        ),
        // After the override, so the dependency has a breaker and a history.
        (
            Method::GET,
            "/v1/breakers/payments-api/history",
            None,
            "read",
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            "/v1/breakers/payments-api",
            None,
            "admin",
            StatusCode::NO_CONTENT,
        ),
    ];
    let tokens = [("ingest", INGEST), ("read", READ), ("admin", ADMIN)];
    for (method, path, body, needed, served) in &cases {
        for (scope, secret) in tokens {
            if scope == *needed {
                continue;
            }
            let (status, _, text) = call(&app, method.clone(), path, Some(secret), *body).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} with {scope}: {text}"
            );
            let error = json_error(&text);
            assert!(
                error.contains(&format!("`{needed}` scope")),
                "the 403 names the scope needed: {error}"
            );
        }
        let secret = tokens.iter().find(|(s, _)| s == needed).unwrap().1;
        let (status, _, text) = call(&app, method.clone(), path, Some(secret), *body).await;
        assert_eq!(status, *served, "{method} {path} with {needed}: {text}");
    }
    // Admin does not include read (scopes are independent), and read does not include admin.
    let (status, _, _) = call(&app, Method::GET, "/v1/alerts", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A token may hold several.
    for (method, path, body) in [
        (Method::GET, "/v1/alerts", None),
        (Method::POST, "/v1/silences", Some(&silence)),
    ] {
        let (status, _, text) = call(&app, method.clone(), path, Some(OPS), body).await;
        assert!(status.is_success(), "{method} {path} with ops: {text}");
    }
}

#[tokio::test]
async fn health_probes_stay_open_and_public_metrics_opens_metrics_alone() {
    let app = secured().await;
    for path in ["/healthz", "/readyz"] {
        let (status, _, text) = call(&app, Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
    }
    let (status, _, _) = call(&app, Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let app = TestApp::spawn_with(|s| {
        with_tokens(s);
        s.auth.public_metrics = true;
    })
    .await;
    let (status, _, text) = call(&app, Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("graywatch_"), "{text}");
    let (status, _, _) = call(&app, Method::GET, "/v1/dependencies", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "only /metrics is public");
}

#[tokio::test]
async fn tokens_are_read_from_a_file_or_given_as_a_digest_and_a_missing_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reader-token");
    std::fs::write(&file, "file-token-5e7a9c1b3d\n").unwrap();
    let app = TestApp::spawn_with(|s| {
        s.auth.tokens = vec![
            TokenConfig {
                name: "from-file".into(),
                scopes: vec![Scope::Read],
                token_file: Some(file.clone()),
                ..TokenConfig::default()
            },
            token("from-digest", &[Scope::Read], READ),
        ];
    })
    .await;
    for secret in ["file-token-5e7a9c1b3d", READ] {
        let (status, _, text) = call(&app, Method::GET, "/v1/alerts", Some(secret), None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    let (status, _, _) = call(&app, Method::GET, "/v1/alerts", Some(INGEST), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A token that cannot be read is an error at start naming its key.
    for (tc, key) in [
        (
            TokenConfig {
                name: "gone".into(),
                scopes: vec![Scope::Read],
                token_env: Some("GRAYWATCH_TEST_TOKEN_THAT_IS_NOT_SET".into()),
                ..TokenConfig::default()
            },
            "auth.tokens[0].token_env",
        ),
        (
            TokenConfig {
                name: "gone".into(),
                scopes: vec![Scope::Read],
                token_file: Some(PathBuf::from("/nonexistent/graywatch-token")),
                ..TokenConfig::default()
            },
            "auth.tokens[0].token_file",
        ),
    ] {
        let mut settings = base_settings(&dir, "127.0.0.1:0");
        settings.auth.tokens = vec![tc];
        let err = build_error(settings).await;
        assert!(err.contains(key), "{err}");
    }
    // A short token could be guessed.
    let short = dir.path().join("short");
    std::fs::write(&short, "hunter2").unwrap();
    let mut settings = base_settings(&dir, "127.0.0.1:0");
    settings.auth.tokens = vec![TokenConfig {
        name: "weak".into(),
        scopes: vec![Scope::Read],
        token_file: Some(short),
        ..TokenConfig::default()
    }];
    let err = build_error(settings).await;
    assert!(err.contains("at least 16"), "{err}");
}

fn base_settings(dir: &tempfile::TempDir, listen: &str) -> Settings {
    Settings {
        listen: listen.parse().unwrap(),
        database: format!("sqlite://{}", dir.path().join("gw.db").display()),
        ..Settings::default()
    }
}

async fn build_error(settings: Settings) -> String {
    match Application::build(settings, Clock::System).await {
        Ok(_) => panic!("the application must not build"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn on_a_non_loopback_address_graywatch_needs_tokens_or_allow_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let settings = base_settings(&dir, "0.0.0.0:0");
    let invalid = settings.clone().validated("graywatch.toml").unwrap_err();
    let invalid = invalid.to_string();
    assert!(invalid.contains("auth.tokens"), "{invalid}");
    assert!(invalid.contains("[[auth.tokens]]"), "says how: {invalid}");
    let err = build_error(settings.clone()).await;
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("token_env"), "says how to add a token: {err}");
    assert!(err.contains("auth.allow_anonymous = true"), "{err}");

    // Told to, it serves anonymously.
    let mut anonymous = settings.clone();
    anonymous.auth.allow_anonymous = true;
    let anonymous = anonymous.validated("graywatch.toml").unwrap();
    let app = Application::build(anonymous, Clock::System).await.unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let resp = reqwest::get(format!("http://{addr}/v1/dependencies"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Not on loopback, so any Host is served.
    let (status, _) = raw_get(addr, "graywatch.example.com", "/healthz").await;
    assert_eq!(status, 200);
    let _ = tx.send(());
    server.await.unwrap().unwrap();

    // With a token, no question.
    let mut with = base_settings(&dir, "0.0.0.0:0");
    with_tokens(&mut with);
    with.validated("graywatch.toml").unwrap();
}

#[tokio::test]
async fn silences_and_overrides_are_created_by_the_token_name_not_the_body() {
    let app = secured().await;
    let mut body = silence_body();
    body["created_by"] = json!("mallory");
    let (status, _, text) = call(&app, Method::POST, "/v1/silences", Some(OPS), Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let silence: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(silence["created_by"], "ops", "{silence}");
    let (_, _, text) = call(&app, Method::GET, "/v1/silences", Some(READ), None).await;
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["silences"][0]["created_by"], "ops", "{list}");

    let (status, _, text) = call(
        &app,
        Method::PUT,
        "/v1/breakers/payments-api",
        Some(ADMIN),
        Some(&override_body()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let set: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(set["created_by"], "automation", "{set}");

    // With authentication off, the creator is `anonymous`.
    let open = TestApp::spawn().await;
    let (status, _, text) = call(&open, Method::POST, "/v1/silences", None, Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let silence: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(silence["created_by"], "anonymous", "{silence}");
}

#[tokio::test]
async fn events_in_other_content_types_than_json_or_ndjson_get_415() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&json!([event("payments-api", 10.0, "ok", None)])).unwrap();
    for ct in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, resp) = app.post_raw(body.clone(), &[("content-type", ct)]).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}: {resp}");
        assert!(error_of(&resp).contains("Content-Type"), "{resp}");
    }
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ] {
        let (status, resp) = app.post_raw(body.clone(), &[("content-type", ct)]).await;
        assert_eq!(status, StatusCode::OK, "{ct}: {resp}");
    }
    let ndjson = b"{\"dependency\":\"db\",\"duration_ms\":1}\n".to_vec();
    for ct in ["application/x-ndjson", "application/ndjson; charset=utf-8"] {
        let (status, resp) = app.post_raw(ndjson.clone(), &[("content-type", ct)]).await;
        assert_eq!(status, StatusCode::OK, "{ct}: {resp}");
    }
    let (status, resp) = app
        .post_raw(
            gzip(&body),
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "gzip: {resp}");
    // No content type is read as JSON, as before.
    let (status, resp) = app.post_raw(body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
}

/// A GET over a raw connection with the given `Host`: (status, body).
async fn raw_get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn a_loopback_daemon_refuses_requests_for_other_host_names() {
    let app = TestApp::spawn().await;
    let port = app.addr.port();
    for host in ["evil.example", &format!("evil.example:{port}"), "10.1.2.3"] {
        for path in ["/v1/dependencies", "/healthz", "/"] {
            let (status, body) = raw_get(app.addr, host, path).await;
            assert_eq!(status, 421, "Host {host} {path}: {body}");
            assert!(body.contains("not a loopback name"), "{body}");
        }
    }
    for host in [
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (status, body) = raw_get(app.addr, &host, "/v1/dependencies").await;
        assert_eq!(status, 200, "Host {host}: {body}");
    }
}

/// The session cookie's `name=value` from a `Set-Cookie`.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn sign_in(app: &TestApp, client: &reqwest::Client, token: &str) -> reqwest::Response {
    client
        .post(app.url("/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", &app.base)
        .body(format!("token={token}&next=%2Falerts%3Fstate%3Dfiring"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_dashboard_signs_in_with_a_cookie_and_changes_state_only_with_the_csrf_header() {
    let app = secured().await;
    let client = no_redirects();

    // A browser without a session is shown the sign-in form (401).
    let resp = client
        .get(app.url("/alerts"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("id=\"signin\"") && html.contains("action=\"/session\""),
        "{html}"
    );
    assert!(
        html.contains("value=\"/alerts\""),
        "comes back here: {html}"
    );

    // Unknown tokens and tokens without `read` do not sign in.
    let resp = sign_in(&app, &client, "not-a-token-of-ours-at-all").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(resp.text().await.unwrap().contains("not known"));
    let resp = sign_in(&app, &client, ADMIN).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get("set-cookie").is_none());

    // Signing in: a cookie, and back to the page.
    let resp = sign_in(&app, &client, OPS).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/alerts?state=firing");
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attr), "{attr} in {set_cookie}");
    }
    assert!(!set_cookie.contains(OPS), "the cookie is not the token");
    let cookie = cookie_pair(&set_cookie);

    // The page, with its CSRF value; the dashboard's reads.
    let resp = client
        .get(app.url("/alerts"))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    let csrf = html
        .split("name=\"graywatch-csrf\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the page carries the CSRF value: {html}"))
        .to_string();
    for path in ["/v1/overview", "/v1/alerts", "/assets/app.js"] {
        let resp = client
            .get(app.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }

    // Changing state by cookie needs the header, from the same origin.
    let post = |headers: Vec<(&'static str, String)>| {
        let mut req = client
            .post(app.url("/v1/silences"))
            .header("cookie", &cookie)
            .json(&silence_body());
        for (k, v) in headers {
            req = req.header(k, HeaderValue::from_str(&v).unwrap());
        }
        req.send()
    };
    let resp = post(vec![]).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.unwrap().contains("x-graywatch-csrf"));
    let resp = post(vec![("x-graywatch-csrf", "0".repeat(64))])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "a wrong value");
    let resp = post(vec![
        ("x-graywatch-csrf", csrf.clone()),
        ("sec-fetch-site", "cross-site".into()),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "from another site");
    let resp = post(vec![
        ("x-graywatch-csrf", csrf.clone()),
        ("sec-fetch-site", "same-origin".into()),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let silence: Value = resp.json().await.unwrap();
    assert_eq!(silence["created_by"], "ops", "{silence}");

    // Signing out ends the session.
    let resp = client
        .delete(app.url("/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let resp = client
        .get(app.url("/v1/alerts"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_sign_in_posted_from_another_site_is_refused() {
    let app = secured().await;
    let resp = no_redirects()
        .post(app.url("/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .body(format!("token={OPS}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn with_authentication_off_on_loopback_everything_stays_open() {
    let app = TestApp::spawn().await;
    for path in ["/v1/dependencies", "/metrics", "/", "/v1/overview"] {
        let (status, _, text) = call(&app, Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
    }
    let (status, _, text) = call(
        &app,
        Method::POST,
        "/v1/silences",
        None,
        Some(&silence_body()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
}
