//! Who is calling, and may they: bearer tokens with scopes, dashboard sessions behind a
//! cookie, and the `Host` check of a loopback listener.
//!
//! The token table is built once at start from `[[auth.tokens]]`: each token is read (from
//! the environment or a file) and only its SHA-256 digest is kept. A request's token is
//! hashed and compared with every digest in constant time, so neither a token nor how much of
//! one matched shows in memory or in timing. Tokens are never logged; their names are.
//!
//! The scope a route needs is chosen where the routes are declared (`api::router`): each
//! group is wrapped by [`require`], which answers `401` (no or unknown credentials) or `403`
//! (known, without the scope), or hands the [`Principal`] to the handler as an extension.
//!
//! Browsers sign in once by posting a token to `POST /session`; they get an opaque random
//! session id in an `HttpOnly`, `SameSite=Strict` cookie, mapped here to the token's name and
//! scopes. A request authenticated by that cookie that changes state must also carry the
//! session's CSRF value in `X-Graywatch-CSRF` (the dashboard shell hands it to its script):
//! another site can make a browser send the cookie, but not read the value nor set the header
//! without a CORS preflight graywatch never grants.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Form;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::config::{AuthSettings, MIN_TOKEN_LEN, Scope};

/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "graywatch_session";
/// The header a cookie-authenticated request that changes state must carry.
pub const CSRF_HEADER: &str = "x-graywatch-csrf";
/// How long a dashboard sign-in lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; past this the one closest to expiry goes. A session is ~200 bytes.
const MAX_SESSIONS: usize = 1000;

/// Who made a request: a configured token's name and scopes, or `anonymous` (with every
/// scope) when authentication is off.
#[derive(Debug, Clone)]
pub struct Principal {
    name: Arc<str>,
    scopes: Arc<[Scope]>,
}

impl Principal {
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            scopes: [Scope::Ingest, Scope::Read, Scope::Admin].into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// The CSRF value of the session a request came with, for the dashboard shell to embed.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

struct KnownToken {
    digest: [u8; 32],
    principal: Principal,
}

/// The token table and the dashboard sessions.
pub struct Auth {
    tokens: Vec<KnownToken>,
    /// Sessions by the SHA-256 of their id. A mutex, not a concurrent map: it is touched once
    /// per dashboard request, for a hash lookup.
    sessions: parking_lot::Mutex<HashMap<[u8; 32], Session>>,
    /// Cookies get `Secure` when graywatch is reached over HTTPS (`routing.public_url`).
    secure_cookie: bool,
}

struct Session {
    principal: Principal,
    csrf: String,
    expires: Instant,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Auth {
    /// Reads every token once (`token_env`, `token_file`) and keeps its digest.
    pub fn from_settings(settings: &AuthSettings, secure_cookie: bool) -> anyhow::Result<Self> {
        let mut tokens = Vec::new();
        for (i, t) in settings.tokens.iter().enumerate() {
            let key = format!("auth.tokens[{i}]");
            let secret = if let Some(var) = &t.token_env {
                Some(std::env::var(var).with_context(|| {
                    format!("{key}.token_env: environment variable {var} is not set (or not UTF-8)")
                })?)
            } else if let Some(path) = &t.token_file {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("{key}.token_file: cannot read {}", path.display()))?;
                Some(text.trim().to_string())
            } else {
                None
            };
            let digest = match (secret, &t.sha256) {
                (Some(secret), _) => {
                    let secret = secret.trim();
                    if secret.len() < MIN_TOKEN_LEN {
                        anyhow::bail!(
                            "{key}: the token of {:?} is {} characters long; use at least \
                             {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)",
                            t.name,
                            secret.len()
                        );
                    }
                    digest(secret.as_bytes())
                }
                (None, Some(hex_digest)) => hex::decode(hex_digest)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .with_context(|| format!("{key}.sha256: not 64 hex digits"))?,
                (None, None) => {
                    anyhow::bail!("{key}: give one of token_env, token_file, sha256")
                }
            };
            tokens.push(KnownToken {
                digest,
                principal: Principal {
                    name: t.name.as_str().into(),
                    scopes: t.scopes.clone().into(),
                },
            });
        }
        Ok(Self {
            tokens,
            sessions: parking_lot::Mutex::new(HashMap::new()),
            secure_cookie,
        })
    }

    /// Authentication is on when at least one token is configured.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The principal of a bearer token. Every digest is compared, in constant time, whatever
    /// matches.
    fn by_token(&self, token: &[u8]) -> Option<Principal> {
        let d = digest(token);
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.digest.ct_eq(&d)) {
                found = Some(t.principal.clone());
            }
        }
        found
    }

    /// A new session for `principal`: (session id, CSRF value).
    fn open_session(&self, principal: Principal) -> (String, String) {
        let id = random_hex();
        let csrf = random_hex();
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            digest(id.as_bytes()),
            Session {
                principal,
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        (id, csrf)
    }

    /// The live session with this id: (principal, CSRF value).
    fn session(&self, id: &str) -> Option<(Principal, String)> {
        let key = digest(id.as_bytes());
        let mut sessions = self.sessions.lock();
        match sessions.get(&key) {
            Some(s) if s.expires > Instant::now() => Some((s.principal.clone(), s.csrf.clone())),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    fn close_session(&self, id: &str) {
        self.sessions.lock().remove(&digest(id.as_bytes()));
    }

    fn cookie(&self, value: &str, max_age_s: u64) -> HeaderValue {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{secure}"
        ))
        .expect("hex and fixed text make a valid header")
    }
}

/// What a request presents.
enum Credentials<'a> {
    None,
    Bearer(&'a str),
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
    Cookie(&'a str),
}

fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else {
            return Credentials::Malformed;
        };
        return match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                Credentials::Bearer(token.trim())
            }
            _ => Credentials::Malformed,
        };
    }
    match session_cookie(headers) {
        Some(id) => Credentials::Cookie(id),
        None => Credentials::None,
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// True when the browser says the request comes from another site (or another origin of the
/// same site: another port of `localhost` is another application).
fn cross_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()),
        host,
    ) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// The layer state of one group of routes: the scope they need.
#[derive(Clone)]
pub struct Gate {
    auth: Arc<Auth>,
    scope: Scope,
}

/// The gate of routes that need `scope`, for `middleware::from_fn_with_state(.., check)`.
pub fn require(auth: &Arc<Auth>, scope: Scope) -> Gate {
    Gate {
        auth: auth.clone(),
        scope,
    }
}

/// Lets the request through with its [`Principal`] (and, for a session, its [`CsrfToken`])
/// in the extensions, or answers 401/403.
pub async fn check(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let auth = &gate.auth;
    if !auth.enabled() {
        req.extensions_mut().insert(Principal::anonymous());
        return next.run(req).await;
    }
    let scope = gate.scope;
    let wants_page = req.method() == Method::GET && accepts_html(req.headers());
    let here = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let (principal, csrf) = match credentials(req.headers()) {
        Credentials::Bearer(token) => match auth.by_token(token.as_bytes()) {
            Some(p) => (p, None),
            None => {
                tracing::info!(method = %req.method(), path = req.uri().path(), "Refused a request: unknown bearer token.");
                return unauthorized("unknown token", true);
            }
        },
        Credentials::Malformed => {
            tracing::info!(method = %req.method(), path = req.uri().path(), "Refused a request: Authorization is not `Bearer <token>`.");
            return unauthorized("the Authorization header must be `Bearer <token>`", true);
        }
        Credentials::Cookie(id) => match auth.session(id) {
            Some((p, csrf)) => (p, Some(csrf)),
            None => {
                tracing::debug!(method = %req.method(), path = req.uri().path(), "Refused a request: unknown or expired session.");
                if wants_page {
                    return sign_in_page(StatusCode::UNAUTHORIZED, &here, None);
                }
                return unauthorized("the session has expired: sign in again", false);
            }
        },
        Credentials::None => {
            tracing::debug!(method = %req.method(), path = req.uri().path(), "Refused a request: no credentials.");
            if wants_page {
                return sign_in_page(StatusCode::UNAUTHORIZED, &here, None);
            }
            return unauthorized(
                "authentication required: send `Authorization: Bearer <token>`",
                false,
            );
        }
    };
    if !principal.has(scope) {
        tracing::info!(token = principal.name(), scope = scope.as_str(), method = %req.method(), path = req.uri().path(), "Refused a request: the token lacks the scope.");
        return ApiError::Forbidden(format!(
            "the token {:?} lacks the `{}` scope needed for {} {}",
            principal.name(),
            scope.as_str(),
            req.method(),
            req.uri().path()
        ))
        .into_response();
    }
    if let Some(csrf) = &csrf
        && !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
    {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let matches = bool::from(sent.ct_eq(csrf.as_bytes()));
        if !matches || cross_origin(req.headers()) {
            tracing::info!(token = principal.name(), method = %req.method(), path = req.uri().path(), "Refused a request: a session request that changes state without the CSRF header, or from another origin.");
            return ApiError::Forbidden(format!(
                "a request signed in by cookie that changes state needs the {CSRF_HEADER} \
                 header of its session (the dashboard sends it), from the same origin; API \
                 clients send `Authorization: Bearer <token>` instead"
            ))
            .into_response();
        }
    }
    req.extensions_mut().insert(principal);
    if let Some(csrf) = csrf {
        req.extensions_mut().insert(CsrfToken(csrf));
    }
    next.run(req).await
}

fn unauthorized(message: &str, invalid_token: bool) -> Response {
    ApiError::Unauthorized {
        message: message.into(),
        invalid_token,
    }
    .into_response()
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

const SIGN_IN_HTML: &str = include_str!("dashboard/assets/signin.html");

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A path on this server to go back to after signing in; anything else is `/` (no open
/// redirect: `//host` and `/\host` are other hosts to a browser).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p)
            if p.starts_with('/') && !p.starts_with("//") && !p.contains(['\\', '\r', '\n']) =>
        {
            p
        }
        _ => "/",
    }
}

/// The sign-in page: a form posting a token to `POST /session`. Self-contained (no assets:
/// those need a session too).
fn sign_in_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let message = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", html_escape(e)))
        .unwrap_or_default();
    let html = SIGN_IN_HTML
        .replace("{{next}}", &html_escape(local_path(Some(next))))
        .replace("{{message}}", &message);
    let mut resp = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"graywatch\""),
        );
    }
    resp
}

#[derive(Deserialize)]
pub struct SignIn {
    token: String,
    next: Option<String>,
}

/// `POST /session` (a form: `token`, optional `next`): opens a dashboard session for a token
/// with the `read` scope and redirects to `next`.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Response {
    let auth = &state.auth;
    if !auth.enabled() {
        return ApiError::bad("authentication is off (no auth.tokens): no sign-in needed")
            .into_response();
    }
    let Ok(Form(form)) = form else {
        return ApiError::bad(
            "token: post a form (application/x-www-form-urlencoded) with `token`",
        )
        .into_response();
    };
    let next = local_path(form.next.as_deref()).to_string();
    if cross_origin(&headers) {
        tracing::info!("Refused a sign-in from another origin.");
        return ApiError::Forbidden("sign in from graywatch's own page".into()).into_response();
    }
    let Some(principal) = auth.by_token(form.token.trim().as_bytes()) else {
        tracing::info!("Refused a sign-in: unknown token.");
        return sign_in_page(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That token is not known."),
        );
    };
    if !principal.has(Scope::Read) {
        tracing::info!(
            token = principal.name(),
            "Refused a sign-in: the token lacks the read scope."
        );
        return sign_in_page(
            StatusCode::FORBIDDEN,
            &next,
            Some(&format!(
                "The token {:?} lacks the `read` scope the dashboard needs.",
                principal.name()
            )),
        );
    }
    tracing::info!(token = principal.name(), "Dashboard sign-in.");
    let (id, _csrf) = auth.open_session(principal);
    let mut resp = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, &next)
        .header(header::CACHE_CONTROL, "no-store")
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    resp.headers_mut()
        .insert(header::SET_COOKIE, auth.cookie(&id, SESSION_TTL.as_secs()));
    resp
}

/// `DELETE /session`: signs out (ends the session and clears the cookie).
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state.auth.close_session(id);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, state.auth.cookie("", 0));
    resp
}

/// Refuses requests whose `Host` is not a loopback name or address: layered on a daemon that
/// listens on loopback, where only this machine should reach it. A web page elsewhere could
/// otherwise point a name of its own at 127.0.0.1 (DNS rebinding) and read the API as if it
/// were same-origin.
pub async fn loopback_host(req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        Some(h) if is_loopback_host(h) => next.run(req).await,
        other => {
            let shown = other.unwrap_or("(none)");
            tracing::info!(host = %shown.escape_debug(), path = req.uri().path(), "Refused a request for another host.");
            ApiError::MisdirectedRequest(format!(
                "Host {shown:?} is not a loopback name: graywatch listens on a loopback address \
                 and answers only requests for localhost, 127.0.0.1 or [::1] (protection against \
                 DNS rebinding); listen on another address to serve other names"
            ))
            .into_response()
        }
    }
}

/// `localhost`, `*.localhost`, `127.x.x.x` or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, after)) => {
                let port = match after {
                    "" => None,
                    p => match p.strip_prefix(':') {
                        Some(p) => Some(p),
                        None => return false,
                    },
                };
                return port.is_none_or(|p| p.parse::<u16>().is_ok())
                    && ip
                        .parse::<std::net::Ipv6Addr>()
                        .is_ok_and(|a| a.is_loopback());
            }
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return false;
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    #[test]
    fn loopback_names_and_addresses_with_any_port() {
        for h in [
            "localhost",
            "localhost:9797",
            "LOCALHOST:1",
            "app.localhost:80",
            "127.0.0.1",
            "127.0.0.1:9797",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:9797",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:9797",
            "localhost.evil.example",
            "10.0.0.1:9797",
            "0.0.0.0:9797",
            "[::2]:80",
            "[::1]x",
            "localhost:port",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn redirects_stay_on_this_server() {
        assert_eq!(local_path(Some("/alerts?x=1")), "/alerts?x=1");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn tokens_are_found_by_digest_and_sessions_expire_by_count() {
        let settings = AuthSettings {
            tokens: vec![TokenConfig {
                name: "ops".into(),
                scopes: vec![Scope::Read],
                sha256: Some(hex::encode(digest(b"0123456789abcdef-ops"))),
                ..TokenConfig::default()
            }],
            ..AuthSettings::default()
        };
        let auth = Auth::from_settings(&settings, false).unwrap();
        let p = auth.by_token(b"0123456789abcdef-ops").expect("known");
        assert_eq!(p.name(), "ops");
        assert!(p.has(Scope::Read) && !p.has(Scope::Admin));
        assert!(auth.by_token(b"0123456789abcdef-op").is_none());

        let (first, _) = auth.open_session(p.clone());
        for _ in 0..MAX_SESSIONS {
            auth.open_session(p.clone());
        }
        assert_eq!(auth.sessions.lock().len(), MAX_SESSIONS);
        assert!(
            auth.session(&first).is_none(),
            "the oldest session made room"
        );
    }
}
