//! Notifier configuration (`[[notifiers]]`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierType {
    Email,
    Webhook,
}

/// SMTP transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain SMTP (only for a relay on a trusted network or loopback).
    None,
    /// Plain connection upgraded with STARTTLS (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Body format of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// graywatch's own JSON (signed).
    #[default]
    Graywatch,
    /// A Slack-compatible incoming-webhook body (`{"text": ...}`).
    Slack,
    /// Alertmanager's `POST /api/v2/alerts` body; `url` is that endpoint.
    Alertmanager,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One notifier. Email keys and webhook keys share the table; each type uses its own.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: NotifierType,
    /// Also notify when an alert resolves.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Give up on one attempt after this long.
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
    /// Re-send still-firing alerts this often (default: `routing.renotify_every`, or 1 minute
    /// for `format = "alertmanager"`, which forgets alerts not re-sent within its
    /// `resolve_timeout`).
    #[serde(
        default,
        with = "crate::actions::route::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub renotify_every: Option<Duration>,

    // email
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    pub username: Option<String>,
    /// Environment variable holding the SMTP password.
    pub password_env: Option<String>,
    /// File holding the SMTP password.
    pub password_file: Option<PathBuf>,
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,

    // webhook
    pub url: Option<String>,
    /// Environment variable holding the HMAC secret (same forms as `secret_file`).
    pub secret_env: Option<String>,
    /// File holding the HMAC secret: `whsec_<base64>` (as Standard Webhooks issues them) or
    /// plain text used as bytes. Several secrets, one per line, sign each request with every
    /// one of them (for rotating keys without a gap).
    pub secret_file: Option<PathBuf>,
    /// Also send the old body-only `X-Graywatch-Signature: sha256=<hex>` (keyed with the
    /// first secret), for receivers not yet verifying `webhook-signature`. It does not cover
    /// the timestamp, so a captured request can be replayed against it.
    #[serde(default)]
    pub legacy_signature: bool,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl NotifierConfig {
    /// Problems as (key, value, why).
    pub fn problems(&self, index: usize) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let key = |k: &str| format!("notifiers[{index}].{k}");
        let mut bad = |k: &str, v: String, why: &str| out.push((key(k), v, why.to_string()));
        if self.name.trim().is_empty() {
            bad("name", format!("{:?}", self.name), "must not be empty");
        }
        if self.timeout.is_zero() {
            bad("timeout", "0s".into(), "must be positive");
        }
        match self.kind {
            NotifierType::Email => {
                if self.smtp_host.as_deref().is_none_or(str::is_empty) {
                    bad(
                        "smtp_host",
                        "(missing)".into(),
                        "required for type = \"email\"",
                    );
                }
                match &self.from {
                    None => bad("from", "(missing)".into(), "required for type = \"email\""),
                    Some(f) if f.parse::<lettre::message::Mailbox>().is_err() => {
                        bad("from", format!("{f:?}"), "is not an email address")
                    }
                    _ => {}
                }
                if self.to.is_empty() {
                    bad("to", "[]".into(), "needs at least one recipient");
                }
                for t in &self.to {
                    if t.parse::<lettre::message::Mailbox>().is_err() {
                        bad("to", format!("{t:?}"), "is not an email address");
                    }
                }
                if self.password_env.is_some() && self.password_file.is_some() {
                    bad(
                        "password_env",
                        "(set)".into(),
                        "set password_env or password_file, not both",
                    );
                }
                for (k, set) in [
                    ("url", self.url.is_some()),
                    ("secret_env", self.secret_env.is_some()),
                    ("secret_file", self.secret_file.is_some()),
                    ("headers", !self.headers.is_empty()),
                    ("legacy_signature", self.legacy_signature),
                ] {
                    if set {
                        bad(k, "(set)".into(), "only applies to type = \"webhook\"");
                    }
                }
            }
            NotifierType::Webhook => {
                match &self.url {
                    None => bad("url", "(missing)".into(), "required for type = \"webhook\""),
                    // The URL may hold a token (Slack puts one in the path): never echo it.
                    Some(u) => match reqwest::Url::parse(u) {
                        Ok(p) if matches!(p.scheme(), "http" | "https") => {}
                        Ok(p) => bad(
                            "url",
                            super::webhook::redact_url(&p),
                            "must be an http:// or https:// URL",
                        ),
                        Err(e) => bad(
                            "url",
                            "(not shown: it may hold a secret)".into(),
                            &format!("is not a URL ({e})"),
                        ),
                    },
                }
                if self.legacy_signature && self.secret_env.is_none() && self.secret_file.is_none()
                {
                    bad(
                        "legacy_signature",
                        "true".into(),
                        "needs secret_env or secret_file",
                    );
                }
                if self.secret_env.is_some() && self.secret_file.is_some() {
                    bad(
                        "secret_env",
                        "(set)".into(),
                        "set secret_env or secret_file, not both",
                    );
                }
                for (name, value) in &self.headers {
                    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                        || reqwest::header::HeaderValue::from_str(value).is_err()
                    {
                        bad("headers", format!("{name:?}"), "is not a valid HTTP header");
                    }
                }
                for (k, set) in [
                    ("smtp_host", self.smtp_host.is_some()),
                    ("from", self.from.is_some()),
                    ("to", !self.to.is_empty()),
                ] {
                    if set {
                        bad(k, "(set)".into(), "only applies to type = \"email\"");
                    }
                }
            }
        }
        out
    }
}

/// Reads a secret from an environment variable or a file (trailing newline trimmed).
pub fn read_secret(
    env: Option<&str>,
    file: Option<&std::path::Path>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(var) = env {
        let v = std::env::var(var)
            .map_err(|_| anyhow::anyhow!("{what}: environment variable {var} is not set"))?;
        return Ok(Some(v));
    }
    if let Some(path) = file {
        let v = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{what}: cannot read {}: {e}", path.display()))?;
        return Ok(Some(v.trim_end_matches(['\r', '\n']).to_string()));
    }
    Ok(None)
}
