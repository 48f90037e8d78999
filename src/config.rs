//! Configuration: a TOML file (optional), overridden by command-line flags and `GRAYWATCH_*`
//! environment variables. Every key has a default, so `graywatch serve` runs with none.
//!
//! ```toml
//! listen = "127.0.0.1:9797"
//! database = "sqlite://graywatch.db"
//! node_id = "default"
//!
//! [ingest]
//! max_body_bytes = 10485760   # after decompression; larger bodies get 413
//! max_in_flight = 32          # concurrent ingest requests; more get 503 + Retry-After
//! max_receiving = 128         # bodies received at once; more get 503 + Retry-After
//! max_errors_reported = 100   # per-event errors listed in a response
//! body_timeout = "10s"        # a body not received in full by then gets 408
//!
//! [http]
//! header_timeout = "30s"      # to receive a request's headers; also the keep-alive idle limit
//! max_connections = 1024      # open connections; more wait in the listen backlog
//!
//! [limits]
//! max_series = 100000         # all kinds together; ~12 KiB each when quiet, ~200 KiB busy
//! max_dependencies = 1000
//! max_instances_per_dependency = 100
//! max_zones_per_dependency = 16
//! max_silences = 1000         # active and scheduled silences; one more is refused (400)
//! max_silence_duration = "30d"  # from a silence's start to its end
//! max_comment_chars = 1000    # a silence's comment, an override's reason
//! max_override_ttl = "7d"     # from now to a breaker override's expiry
//! max_sources_per_dependency = 64   # callers (the `source` of events)
//!
//! [storage]
//! retention = "7d"                 # roll-ups
//! alert_retention = "90d"          # resolved alerts, after they resolved
//! notification_retention = "30d"   # delivered/failed/dead/suppressed notifications
//! silence_retention = "30d"        # ended silences, expired or removed overrides
//! prune_interval = "1h"            # how often rows past their retention are deleted
//! flush_interval = "10s"
//!
//! [auth]
//! allow_anonymous = false     # serve a non-loopback address with no tokens (not advised)
//! public_metrics = false      # GET /metrics without a token
//!
//! [[auth.tokens]]
//! name = "checkout"           # shown in logs and as created_by
//! scopes = ["ingest"]         # any of ingest, read, admin
//! sha256 = "8a8e8fb6ee9f1e9b4cf4b2a5c1a6f2a3dbb0e0fdcf3d8b7a1c0e9f8d7c6b5a49"
//! # or token_env = "GW_TOKEN_CHECKOUT", or token_file = "/etc/graywatch/checkout-token"
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::actions::breaker::BreakerSettings;
use crate::actions::notifier::NotifierConfig;
use crate::actions::operator::OperatorLimits;
use crate::actions::route::{Route, RoutingSettings};
use crate::detect::{DetectionSettings, Specs};
use crate::window::Limits;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Database URL: `sqlite://PATH` (created if missing) or `sqlite::memory:`.
    pub database: String,
    /// Name of this node in stored roll-ups; nodes sharing one database need distinct names.
    pub node_id: String,
    pub ingest: IngestSettings,
    pub http: HttpSettings,
    pub limits: LimitSettings,
    pub storage: StorageSettings,
    /// Detection defaults for every dependency.
    pub detection: DetectionSettings,
    /// Fault-tolerance specs by dependency name.
    pub dependencies: Specs,
    /// Where notifications go (`[[notifiers]]`).
    pub notifiers: Vec<NotifierConfig>,
    /// Which alerts go to which notifiers (`[[routes]]`).
    pub routes: Vec<Route>,
    pub routing: RoutingSettings,
    pub breakers: BreakerSettings,
    /// Who may call the API (`[auth]`, `[[auth.tokens]]`).
    pub auth: AuthSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9797".parse().expect("valid default address"),
            database: "sqlite://graywatch.db".into(),
            node_id: "default".into(),
            ingest: IngestSettings::default(),
            http: HttpSettings::default(),
            limits: LimitSettings::default(),
            storage: StorageSettings::default(),
            detection: DetectionSettings::default(),
            dependencies: Specs::default(),
            notifiers: Vec::new(),
            routes: Vec::new(),
            routing: RoutingSettings::default(),
            breakers: BreakerSettings::default(),
            auth: AuthSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
    pub max_errors_reported: usize,
    /// How long a client has to send a request body in full, from the end of its headers;
    /// a slower one gets `408`. Bodies are read before an ingest permit is taken, so slow
    /// senders hold a connection, never one of the `max_in_flight` permits.
    #[serde(with = "duration")]
    pub body_timeout: Duration,
    /// Request bodies received at once; more get `503` with `Retry-After`. With
    /// `max_body_bytes` it bounds the memory bodies can hold while they arrive.
    pub max_receiving: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_in_flight: 32,
            max_errors_reported: 100,
            body_timeout: Duration::from_secs(10),
            max_receiving: 128,
        }
    }
}

/// Limits of the HTTP server itself, which bound what idle or slow connections can hold.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// How long a connection may take to send a request's headers, counted from the moment
    /// the server waits for that request: on a new connection, or on a kept-alive one after
    /// its previous response. So it is also the limit on an idle keep-alive connection.
    #[serde(with = "duration")]
    pub header_timeout: Duration,
    /// Open connections at most. At the limit graywatch stops accepting: further
    /// connections wait in the kernel's listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// `[limits]`: what clients and operators can make graywatch hold. Series limits bound the
/// window store's memory; the others bound silences and breaker overrides, which every
/// delivery and the board match against.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Series of all kinds together (see [`Limits::max_series`]).
    pub max_series: usize,
    pub max_dependencies: usize,
    pub max_instances_per_dependency: usize,
    pub max_zones_per_dependency: usize,
    pub max_sources_per_dependency: usize,
    /// Active and scheduled silences at most; creating one more is refused with `400`.
    pub max_silences: usize,
    /// Longest silence, from its start to its end.
    #[serde(with = "duration")]
    pub max_silence_duration: Duration,
    /// Longest comment of a silence, and reason of a breaker override, in characters.
    pub max_comment_chars: usize,
    /// Longest breaker override, from the request to its expiry.
    #[serde(with = "duration")]
    pub max_override_ttl: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let series = Limits::default();
        let operator = OperatorLimits::default();
        Self {
            max_series: series.max_series,
            max_dependencies: series.max_dependencies,
            max_instances_per_dependency: series.max_instances_per_dependency,
            max_zones_per_dependency: series.max_zones_per_dependency,
            max_sources_per_dependency: series.max_sources_per_dependency,
            max_silences: operator.max_silences,
            max_silence_duration: Duration::from_millis(operator.max_silence_ms as u64),
            max_comment_chars: operator.max_text_chars,
            max_override_ttl: Duration::from_millis(operator.max_override_ms as u64),
        }
    }
}

impl LimitSettings {
    /// The window store's cardinality limits.
    pub fn series(&self) -> Limits {
        Limits {
            max_series: self.max_series,
            max_dependencies: self.max_dependencies,
            max_instances_per_dependency: self.max_instances_per_dependency,
            max_zones_per_dependency: self.max_zones_per_dependency,
            max_sources_per_dependency: self.max_sources_per_dependency,
        }
    }

    /// The limits of operator requests (silences, overrides). Validation keeps the
    /// durations far below `i64` milliseconds.
    pub fn operator(&self) -> OperatorLimits {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        OperatorLimits {
            max_silences: self.max_silences,
            max_silence_ms: ms(self.max_silence_duration),
            max_text_chars: self.max_comment_chars,
            max_override_ms: ms(self.max_override_ttl),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// How long per-minute roll-ups are kept.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// How long resolved alerts are kept after they resolved (firing ones always are).
    #[serde(with = "duration")]
    pub alert_retention: Duration,
    /// How long notifications in a final state are kept after their last attempt (pending
    /// ones always are).
    #[serde(with = "duration")]
    pub notification_retention: Duration,
    /// How long silences and breaker overrides are kept after they ended or were removed.
    #[serde(with = "duration")]
    pub silence_retention: Duration,
    /// How often rows past their retention are deleted.
    #[serde(with = "duration")]
    pub prune_interval: Duration,
    /// How often completed minutes are written.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            alert_retention: Duration::from_secs(90 * 24 * 3600),
            notification_retention: Duration::from_secs(30 * 24 * 3600),
            silence_retention: Duration::from_secs(30 * 24 * 3600),
            prune_interval: Duration::from_secs(3600),
            flush_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Bearer tokens and what each may do. None: every request is anonymous and allowed,
    /// which is only accepted on a loopback address (or with `allow_anonymous`).
    pub tokens: Vec<TokenConfig>,
    /// Serve a non-loopback address without tokens (logged as a warning at start).
    pub allow_anonymous: bool,
    /// `GET /metrics` needs no token (for scrapers that cannot send one).
    pub public_metrics: bool,
}

/// One bearer token. The secret itself is given by exactly one of `token_env`, `token_file`
/// or `sha256`; it is read once at start and only its SHA-256 digest is kept.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Shown in logs and recorded as `created_by` of what the token creates.
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Environment variable holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// File holding the token (surrounding whitespace ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<std::path::PathBuf>,
    /// Hex SHA-256 digest of the token, so that the configuration holds no secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// What a token may do. Scopes are independent: `admin` does not include `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `POST /v1/events`.
    Ingest,
    /// Every `GET` of the API and the dashboard, the SSE stream, `/metrics`.
    Read,
    /// Everything that changes state: silences, breaker overrides.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// Tokens shorter than this (read from `token_env` or `token_file`) are refused: they could
/// be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

impl AuthSettings {
    /// Problems of the `[auth]` section, and the rule that a daemon reachable from other
    /// machines does not serve anonymously unless told to.
    pub fn problems(&self, listen: SocketAddr) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let key = format!("auth.tokens[{i}]");
            if t.name.trim().is_empty()
                || t.name.len() > 64
                || t.name.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                out.push((
                    format!("{key}.name"),
                    format!("{:?}", t.name),
                    "must be 1 to 64 characters without spaces".into(),
                ));
            } else if names.contains(&t.name.as_str()) {
                out.push((
                    format!("{key}.name"),
                    format!("{:?}", t.name),
                    "is used by another token".into(),
                ));
            }
            names.push(&t.name);
            if t.scopes.is_empty() {
                out.push((
                    format!("{key}.scopes"),
                    "[]".into(),
                    "must name at least one of \"ingest\", \"read\", \"admin\"".into(),
                ));
            }
            let given = [
                t.token_env.is_some(),
                t.token_file.is_some(),
                t.sha256.is_some(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                out.push((
                    key.clone(),
                    format!("{:?}", t.name),
                    "give exactly one of token_env, token_file, sha256".into(),
                ));
            }
            if let Some(d) = &t.sha256
                && (d.len() != 64 || !d.chars().all(|c| c.is_ascii_hexdigit()))
            {
                out.push((
                    format!("{key}.sha256"),
                    format!("{d:?}"),
                    "must be 64 hex digits (e.g. the output of `printf %s TOKEN | sha256sum`)"
                        .into(),
                ));
            }
            if let Some(e) = &t.token_env
                && e.is_empty()
            {
                out.push((
                    format!("{key}.token_env"),
                    "\"\"".into(),
                    "must name an environment variable".into(),
                ));
            }
        }
        if let Some(why) = self.anonymous_exposure(listen) {
            out.push(("auth.tokens".into(), "[]".into(), why));
        }
        out
    }

    /// Why serving `listen` with these settings would expose the API to anyone, if it would.
    pub fn anonymous_exposure(&self, listen: SocketAddr) -> Option<String> {
        if !self.tokens.is_empty() || self.allow_anonymous || listen.ip().is_loopback() {
            return None;
        }
        Some(format!(
            "graywatch would listen on {listen}, which is not a loopback address, with no \
             tokens: anyone who reaches it could send events, read everything and silence \
             alerts. Add a token, e.g.\n\n    [[auth.tokens]]\n    name = \"ops\"\n    \
             scopes = [\"ingest\", \"read\", \"admin\"]\n    token_env = \"GW_TOKEN_OPS\"\n\n\
             or listen on 127.0.0.1, or set auth.allow_anonymous = true to serve without \
             authentication"
        ))
    }
}

/// Durations are written as humans write them: "10s", "5m", "7d", "1h 30m".
pub mod duration {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration ({e}); write e.g. \"10s\", \"5m\", \"7d\""
            ))
        })
    }
}

/// A problem found in a configuration: which key, which value, and why it is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key} = {value}: {why}")]
pub struct ConfigProblem {
    pub key: String,
    pub value: String,
    pub why: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: String,
        problems: Vec<ConfigProblem>,
    },
}

impl Settings {
    /// Reads and validates a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::from_toml(&text, &p)
    }

    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        let settings: Settings = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        settings.validated(path)
    }

    /// Checks the values serde cannot: ranges and relationships between keys.
    pub fn validated(self, path: &str) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, value: String, why: &str| {
            problems.push(ConfigProblem {
                key: key.into(),
                value,
                why: why.into(),
            })
        };
        if !(self.database.starts_with("sqlite:")) {
            bad(
                "database",
                format!("{:?}", self.database),
                "must be a sqlite: URL (e.g. sqlite://graywatch.db)",
            );
        }
        if self.node_id.is_empty() || self.node_id.len() > 64 {
            bad(
                "node_id",
                format!("{:?}", self.node_id),
                "must be 1 to 64 characters",
            );
        }
        if self.ingest.max_receiving == 0 {
            bad(
                "ingest.max_receiving",
                "0".to_string(),
                "must be at least 1",
            );
        }
        if self.ingest.max_body_bytes < 1024 {
            bad(
                "ingest.max_body_bytes",
                self.ingest.max_body_bytes.to_string(),
                "must be at least 1024",
            );
        }
        if self.ingest.max_in_flight == 0 {
            bad("ingest.max_in_flight", "0".into(), "must be at least 1");
        }
        for (key, d) in [
            ("ingest.body_timeout", self.ingest.body_timeout),
            ("http.header_timeout", self.http.header_timeout),
        ] {
            if d < Duration::from_millis(100) || d > Duration::from_secs(600) {
                bad(
                    key,
                    humantime::format_duration(d).to_string(),
                    "must be between 100ms and 10m",
                );
            }
        }
        if self.http.max_connections < 16 {
            bad(
                "http.max_connections",
                self.http.max_connections.to_string(),
                "must be at least 16",
            );
        }
        for (key, v) in [
            ("limits.max_series", self.limits.max_series),
            ("limits.max_dependencies", self.limits.max_dependencies),
            (
                "limits.max_instances_per_dependency",
                self.limits.max_instances_per_dependency,
            ),
            (
                "limits.max_zones_per_dependency",
                self.limits.max_zones_per_dependency,
            ),
            (
                "limits.max_sources_per_dependency",
                self.limits.max_sources_per_dependency,
            ),
        ] {
            if v == 0 {
                bad(key, "0".into(), "must be at least 1");
            }
        }
        for (key, v) in [
            ("limits.max_silences", self.limits.max_silences),
            ("limits.max_comment_chars", self.limits.max_comment_chars),
        ] {
            if !(1..=100_000).contains(&v) {
                bad(key, v.to_string(), "must be between 1 and 100000");
            }
        }
        const MINUTE: Duration = Duration::from_secs(60);
        const DAY: Duration = Duration::from_secs(86_400);
        for (key, value, max, max_text) in [
            (
                "limits.max_silence_duration",
                self.limits.max_silence_duration,
                3650 * DAY,
                "10 years",
            ),
            (
                "limits.max_override_ttl",
                self.limits.max_override_ttl,
                365 * DAY,
                "365d",
            ),
        ] {
            if value < MINUTE || value > max {
                bad(
                    key,
                    humantime::format_duration(value).to_string(),
                    &format!("must be between 1m and {max_text}"),
                );
            }
        }
        if self.storage.retention < Duration::from_secs(3600) {
            bad(
                "storage.retention",
                humantime::format_duration(self.storage.retention).to_string(),
                "must be at least 1h (the longest window is reloaded from roll-ups at start-up)",
            );
        }
        for (key, value) in [
            ("storage.alert_retention", self.storage.alert_retention),
            (
                "storage.notification_retention",
                self.storage.notification_retention,
            ),
            ("storage.silence_retention", self.storage.silence_retention),
        ] {
            if value < Duration::from_secs(3600) || value > Duration::from_secs(100 * 365 * 86400) {
                bad(
                    key,
                    humantime::format_duration(value).to_string(),
                    "must be between 1h and 100 years",
                );
            }
        }
        if self.storage.prune_interval < Duration::from_secs(1)
            || self.storage.prune_interval > Duration::from_secs(86400)
        {
            bad(
                "storage.prune_interval",
                humantime::format_duration(self.storage.prune_interval).to_string(),
                "must be between 1s and 1d",
            );
        }
        if self.storage.flush_interval < Duration::from_secs(1)
            || self.storage.flush_interval > Duration::from_secs(60)
        {
            bad(
                "storage.flush_interval",
                humantime::format_duration(self.storage.flush_interval).to_string(),
                "must be between 1s and 60s",
            );
        }
        for (key, value, why) in self.detection.problems() {
            problems.push(ConfigProblem { key, value, why });
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, n) in self.notifiers.iter().enumerate() {
            for (key, value, why) in n.problems(i) {
                problems.push(ConfigProblem { key, value, why });
            }
            if names.contains(&n.name.as_str()) {
                problems.push(ConfigProblem {
                    key: format!("notifiers[{i}].name"),
                    value: format!("{:?}", n.name),
                    why: "is used by another notifier".into(),
                });
            }
            names.push(&n.name);
        }
        let mut unknown = |key: String, list: &[String]| {
            for n in list {
                if !names.contains(&n.as_str()) {
                    problems.push(ConfigProblem {
                        key: key.clone(),
                        value: format!("{n:?}"),
                        why: "is not the name of a configured notifier".into(),
                    });
                }
            }
        };
        for (i, r) in self.routes.iter().enumerate() {
            unknown(format!("routes[{i}].notifiers"), &r.notifiers);
        }
        if let Some(d) = &self.routing.default_notifiers {
            unknown("routing.default_notifiers".into(), d);
        }
        unknown(
            "routing.breaker_notifiers".into(),
            &self.routing.breaker_notifiers,
        );
        for (name, spec) in &self.dependencies {
            unknown(
                format!("dependencies.{name}.on_breach.notify"),
                &spec.on_breach.notify,
            );
        }
        for (key, value, why) in self.breakers.problems() {
            problems.push(ConfigProblem { key, value, why });
        }
        for (key, value, why) in self.auth.problems(self.listen) {
            problems.push(ConfigProblem { key, value, why });
        }
        for (name, spec) in &self.dependencies {
            if let Err(e) = crate::domain::DependencyName::parse(name.as_str()) {
                problems.push(ConfigProblem {
                    key: format!("dependencies.{name}"),
                    value: format!("{name:?}"),
                    why: format!("not a valid dependency name: {e}"),
                });
            }
            for (key, value, why) in spec.problems(name) {
                problems.push(ConfigProblem { key, value, why });
            }
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(ConfigError::Invalid {
                path: path.into(),
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(
            Settings::from_toml("", "x.toml").unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn every_documented_key_parses() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let s = Settings::from_toml(&example, "doc").unwrap();
        assert_eq!(s.storage.retention, Duration::from_secs(7 * 86400));
        assert_eq!(s.storage, StorageSettings::default());
        assert_eq!(s.limits.max_zones_per_dependency, 16);
        assert_eq!(s.limits.max_sources_per_dependency, 64);
    }

    #[test]
    fn the_shipped_example_configuration_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/graywatch.example.toml");
        let s = Settings::from_file(std::path::Path::new(path)).unwrap();
        assert_eq!(s.notifiers.len(), 2);
        assert_eq!(s.dependencies.len(), 3);
        assert!(s.dependencies["analytics-ingest"].on_breach.silent);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Settings::from_toml("[ingest]\nmax_body = 5\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `max_body`"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = Settings::from_toml("[storage]\nretention = \"soon\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"soon\" is not a duration"), "{err}");
        let err = Settings::from_toml(
            "[limits]\nmax_dependencies = 0\n[storage]\nretention = \"10m\"\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("limits.max_dependencies = 0: must be at least 1"),
            "{err}"
        );
        assert!(
            err.contains("storage.retention = 10m: must be at least 1h"),
            "{err}"
        );
        let err = Settings::from_toml("[storage]\nalert_retention = \"5m\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("storage.alert_retention = 5m: must be between 1h and 100 years"),
            "{err}"
        );
    }

    #[test]
    fn silence_and_override_limits_are_settings_with_checked_ranges() {
        let s = Settings::from_toml(
            "[limits]\nmax_silences = 5\nmax_silence_duration = \"2h\"\nmax_comment_chars = 40\nmax_override_ttl = \"30m\"\n",
            "x.toml",
        )
        .unwrap();
        let o = s.limits.operator();
        assert_eq!(o.max_silences, 5);
        assert_eq!(o.max_silence_ms, 2 * 3_600_000);
        assert_eq!(o.max_text_chars, 40);
        assert_eq!(o.max_override_ms, 30 * 60_000);
        // The series limits are untouched by them.
        assert_eq!(s.limits.series(), Limits::default());
        assert_eq!(
            Settings::default().limits.operator(),
            OperatorLimits::default()
        );
        let err = Settings::from_toml(
            "[limits]\nmax_silences = 0\nmax_silence_duration = \"30s\"\nmax_comment_chars = 1000000\nmax_override_ttl = \"400d\"\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        for part in [
            "limits.max_silences = 0: must be between 1 and 100000",
            "limits.max_silence_duration = 30s: must be between 1m and 10 years",
            "limits.max_comment_chars = 1000000: must be between 1 and 100000",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
        let line = err
            .lines()
            .find(|l| l.contains("limits.max_override_ttl = "))
            .unwrap_or_else(|| panic!("max_override_ttl in {err}"));
        assert!(line.ends_with(": must be between 1m and 365d"), "{line}");
    }

    #[test]
    fn connection_and_body_limits_are_checked() {
        let s = Settings::from_toml(
            "[ingest]\nbody_timeout = \"2s\"\n[http]\nheader_timeout = \"5s\"\nmax_connections = 64\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!(s.ingest.body_timeout, Duration::from_secs(2));
        assert_eq!(s.http.header_timeout, Duration::from_secs(5));
        assert_eq!(s.http.max_connections, 64);
        let err = Settings::from_toml(
            "[ingest]\nbody_timeout = \"0s\"\n[http]\nheader_timeout = \"1h\"\nmax_connections = 1\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        for part in [
            "ingest.body_timeout = 0s: must be between 100ms and 10m",
            "http.header_timeout = 1h: must be between 100ms and 10m",
            "http.max_connections = 1: must be at least 16",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
        let err = Settings::from_toml("[http]\nidle = \"5s\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `idle`"), "{err}");
    }

    #[test]
    fn auth_problems_name_their_key() {
        let err = Settings::from_toml(
            r#"
[[auth.tokens]]
name = "checkout"
scopes = []
token_env = "GW_TOKEN_CHECKOUT"

[[auth.tokens]]
name = "checkout"
scopes = ["read"]
token_env = "A"
sha256 = "abc"
"#,
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        for part in [
            "auth.tokens[0].scopes = []: must name at least one",
            "auth.tokens[1].name = \"checkout\": is used by another token",
            "auth.tokens[1] = \"checkout\": give exactly one of token_env, token_file, sha256",
            "auth.tokens[1].sha256 = \"abc\": must be 64 hex digits",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
        let err = Settings::from_toml(
            "[[auth.tokens]]\nname = \"x\"\nscopes = [\"write\"]\ntoken_env = \"A\"\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown variant `write`"), "{err}");
        let err = Settings::from_toml("listen = \"0.0.0.0:9797\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.tokens = []"), "{err}");
        assert!(err.contains("auth.allow_anonymous = true"), "{err}");
        Settings::from_toml(
            "listen = \"0.0.0.0:9797\"\n[auth]\nallow_anonymous = true\n",
            "x.toml",
        )
        .unwrap();
    }
}
