//! Webhooks: graywatch's signed JSON, Slack-compatible, or Alertmanager's API.
//!
//! Requests are signed as [Standard Webhooks](https://www.standardwebhooks.com/) sign them:
//! `webhook-id` is the delivery id (the same on every retry, so receivers drop duplicates),
//! `webhook-timestamp` the Unix seconds of this attempt, and `webhook-signature` a
//! space-separated list of `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, one per
//! configured secret. The timestamp is inside the MAC, so a receiver that refuses old
//! timestamps refuses a captured request replayed later. `X-Graywatch-Delivery` and
//! `X-Graywatch-Timestamp` carry the same values for receivers written against them; the old
//! body-only `X-Graywatch-Signature` is sent only with `legacy_signature = true`.
//!
//! A webhook URL may hold a secret (Slack's token is its path), so it is never logged nor
//! written into an error: errors name it as [`redact_url`] does.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use sha2::Sha256;

use super::DeliveryError;
use super::config::{NotifierConfig, WebhookFormat, read_secret};
use crate::actions::notice::Notice;

/// How much of an error response body is read: enough for a receiver's message, never a
/// whole page (or an endless stream) held in memory or in the outbox.
const MAX_ERROR_BODY: usize = 4 * 1024;
/// How much of that body goes into `last_error`.
const MAX_ERROR_TEXT_CHARS: usize = 200;

pub struct WebhookNotifier {
    client: reqwest::Client,
    url: reqwest::Url,
    /// Signing keys, in the order configured; empty when the webhook is not signed.
    keys: Vec<Vec<u8>>,
    legacy_signature: bool,
    format: WebhookFormat,
    headers: HeaderMap,
}

/// Hex HMAC-SHA256 of `body` with `secret`: the legacy `X-Graywatch-Signature` (after
/// `sha256=`).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// One Standard Webhooks signature: `v1,` and the base64 HMAC-SHA256 of
/// `"{id}.{timestamp}.{body}"` keyed with `key`.
pub fn sign_v1(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The signing keys in a secret: one per non-empty line, `whsec_<base64>` decoded as the
/// Standard Webhooks libraries do, anything else taken as its bytes. Errors never quote the
/// secret.
pub fn signing_keys(secret: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    for (i, line) in secret.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let key = match line.strip_prefix("whsec_") {
            Some(b64) => BASE64.decode(b64).map_err(|_| {
                anyhow::anyhow!(
                    "secret line {}: starts with whsec_ but the rest is not base64",
                    i + 1
                )
            })?,
            None => line.as_bytes().to_vec(),
        };
        anyhow::ensure!(!key.is_empty(), "secret line {}: empty key", i + 1);
        keys.push(key);
    }
    anyhow::ensure!(!keys.is_empty(), "the secret is empty");
    Ok(keys)
}

/// `scheme://host[:port]/…`: how a webhook URL appears in errors, logs and API answers (its
/// path, query and user info may hold a token).
pub fn redact_url(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}/…", url.scheme()),
        None => format!("{}://{host}/…", url.scheme()),
    }
}

impl WebhookNotifier {
    pub fn new(cfg: &NotifierConfig) -> anyhow::Result<Self> {
        // The parse error does not quote the URL; keep it that way.
        let url = reqwest::Url::parse(cfg.url.as_deref().unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("url: not a URL ({e})"))?;
        let what = format!("notifier {}", cfg.name);
        let keys = match read_secret(cfg.secret_env.as_deref(), cfg.secret_file.as_deref(), &what)?
        {
            Some(secret) => signing_keys(&secret).map_err(|e| anyhow::anyhow!("{what}: {e}"))?,
            None => Vec::new(),
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes())?,
                HeaderValue::from_str(v)?,
            );
        }
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(std::time::Duration::from_secs(5)))
            .user_agent(concat!("graywatch/", env!("CARGO_PKG_VERSION")))
            // A redirect would send the signed body somewhere the operator did not name (and
            // reqwest drops no custom headers across hosts): a 3xx is a failure instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            url,
            keys,
            legacy_signature: cfg.legacy_signature,
            format: cfg.format,
            headers,
        })
    }

    fn body(&self, delivery_id: &str, notice: &Notice) -> serde_json::Value {
        match (self.format, notice) {
            (WebhookFormat::Graywatch, Notice::Alert(a)) => {
                serde_json::to_value(a).unwrap_or_default()
            }
            (WebhookFormat::Graywatch, other) => {
                let mut v = serde_json::to_value(other).unwrap_or_default();
                v["id"] = json!(delivery_id);
                v
            }
            (WebhookFormat::Slack, n) => {
                // Slack reads &, < and > as markup; labels may contain them.
                let mut text = n
                    .headline()
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;");
                if let Notice::Alert(a) = n {
                    text.push_str(&format!("\n<{}|details>", a.dashboard_url));
                }
                json!({ "text": text })
            }
            (WebhookFormat::Alertmanager, n) => {
                let (labels, summary, starts, ends, url) = match n {
                    Notice::Alert(a) => {
                        let mut labels = json!({
                            "alertname": format!("graywatch_{}", a.detector),
                            "dependency": a.dependency, "severity": a.severity, "detector": a.detector,
                        });
                        if let Some(i) = &a.instance {
                            labels["instance"] = json!(i);
                        }
                        if let Some(z) = &a.zone {
                            labels["zone"] = json!(z);
                        }
                        if let Some(c) = &a.source {
                            labels["source"] = json!(c);
                        }
                        (
                            labels,
                            a.summary.clone(),
                            a.started_at.clone(),
                            a.resolved_at.clone(),
                            a.dashboard_url.clone(),
                        )
                    }
                    // One alert per breaker (the state is not a label), so that "closed" ends
                    // the alert that "open" started.
                    Notice::Breaker {
                        dependency,
                        instance,
                        state,
                        reason,
                        at,
                        ..
                    } => (
                        match instance {
                            Some(i) => {
                                json!({ "alertname": "graywatch_breaker", "dependency": dependency, "instance": i })
                            }
                            None => {
                                json!({ "alertname": "graywatch_breaker", "dependency": dependency })
                            }
                        },
                        format!("breaker {state}: {reason}"),
                        at.clone(),
                        (state == "closed").then(|| at.clone()),
                        String::new(),
                    ),
                    Notice::Test { notifier, at } => (
                        json!({ "alertname": "graywatch_test", "notifier": notifier }),
                        "graywatch test notification".to_string(),
                        at.clone(),
                        Some(at.clone()),
                        String::new(),
                    ),
                };
                let mut alert = json!({
                    "labels": labels,
                    "annotations": { "summary": summary },
                    "startsAt": starts,
                    "generatorURL": url,
                });
                if let Some(e) = ends {
                    alert["endsAt"] = json!(e);
                }
                json!([alert])
            }
        }
    }

    /// The signing headers of one attempt at `timestamp` (Unix seconds).
    fn signature_headers(&self, delivery_id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        let text = |s: String| HeaderValue::from_str(&s).expect("hex, digits and base64");
        h.insert("webhook-id", text(delivery_id.to_string()));
        h.insert("webhook-timestamp", text(timestamp.to_string()));
        h.insert("x-graywatch-delivery", text(delivery_id.to_string()));
        h.insert("x-graywatch-timestamp", text(timestamp.to_string()));
        if !self.keys.is_empty() {
            let signatures: Vec<String> = self
                .keys
                .iter()
                .map(|k| sign_v1(k, delivery_id, timestamp, body))
                .collect();
            h.insert("webhook-signature", text(signatures.join(" ")));
            if self.legacy_signature {
                let legacy = format!("sha256={}", sign(&self.keys[0], body));
                h.insert("x-graywatch-signature", text(legacy));
            }
        }
        h
    }

    pub async fn deliver(&self, delivery_id: &str, notice: &Notice) -> Result<(), DeliveryError> {
        let body =
            serde_json::to_vec(&self.body(delivery_id, notice)).expect("JSON values serialize");
        let signing = self.signature_headers(delivery_id, chrono::Utc::now().timestamp(), &body);
        let req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .headers(signing);
        let resp = req.body(body).send().await.map_err(|e| {
            // Connection refused, reset, DNS, timeouts: all worth retrying.
            DeliveryError::Transient(format!(
                "request failed ({}): {}",
                redact_url(&self.url),
                self.scrub(error_chain(&e.without_url()))
            ))
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            // Not followed (see the client). Retried like a receiver that is redeploying; the
            // operator sees why in `last_error`. The target is named as redacted as the URL.
            let target = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| self.url.join(l).ok())
                .map(|u| format!(" to {}", redact_url(&u)))
                .unwrap_or_default();
            return Err(DeliveryError::Transient(format!(
                "HTTP {status}: redirect{target} not followed; set url to the final address"
            )));
        }
        let text = self.scrub(read_error_body(resp).await);
        let msg = format!("HTTP {status}: {text}");
        match status.as_u16() {
            // 401/403/404 are retried within the retry horizon: keys rotate and receivers
            // redeploy, and a notification given up at once is lost for good.
            401 | 403 | 404 | 408 | 429 => Err(DeliveryError::Transient(msg)),
            _ if status.is_server_error() => Err(DeliveryError::Transient(msg)),
            _ => Err(DeliveryError::Permanent(msg)),
        }
    }

    /// Removes the URL from a message that may quote it (a receiver echoing its path, a
    /// library error we did not write).
    fn scrub(&self, text: String) -> String {
        let path = self.url.path();
        let mut out = text.replace(self.url.as_str(), &redact_url(&self.url));
        if path.len() > 1 {
            out = out.replace(path, "/…");
        }
        if let Some(q) = self.url.query().filter(|q| !q.is_empty()) {
            out = out.replace(q, "…");
        }
        out
    }
}

/// At most [`MAX_ERROR_BODY`] bytes of an error response, as text cut to
/// [`MAX_ERROR_TEXT_CHARS`]; the rest is never read (dropping the response closes the
/// connection).
async fn read_error_body(mut resp: reqwest::Response) -> String {
    let mut buf: Vec<u8> = Vec::new();
    while buf.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ERROR_BODY - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let mut cut: String = text.chars().take(MAX_ERROR_TEXT_CHARS).collect();
    if cut.len() < text.len() || buf.len() == MAX_ERROR_BODY {
        cut.push('…');
    }
    cut
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The Rust verification example of the README, compiled and tested here.
#[cfg(test)]
mod verify_example;

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier(extra: &str) -> WebhookNotifier {
        let cfg: NotifierConfig = toml::from_str(&format!(
            "name = \"h\"\ntype = \"webhook\"\nurl = \"https://hooks.example.com:8443/services/T0/B0/tok3n?key=k3y\"\n{extra}"
        ))
        .unwrap();
        WebhookNotifier::new(&cfg).unwrap()
    }

    #[test]
    fn the_v1_signature_matches_the_standard_webhooks_test_vector() {
        let keys = signing_keys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign_v1(
                &keys[0],
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_whsec_base64_or_plain_bytes_one_per_line_and_errors_do_not_quote_them() {
        assert_eq!(
            signing_keys("plain secret").unwrap(),
            [b"plain secret".to_vec()]
        );
        assert_eq!(
            signing_keys("whsec_AAEC\n\nold-plain\n").unwrap(),
            [vec![0u8, 1, 2], b"old-plain".to_vec()]
        );
        let e = signing_keys("whsec_not*base64").unwrap_err().to_string();
        assert!(!e.contains("not*base64"), "{e}");
        assert!(signing_keys("\n").is_err());
    }

    #[test]
    fn every_secret_signs_and_the_legacy_header_needs_its_option() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "new-key\nold-key\n").unwrap();
        let file = format!("secret_file = '{}'", path.display());
        let body = br#"{"a":1}"#;
        let h = notifier(&file).signature_headers("d1", 1_700_000_000, body);
        assert_eq!(h["webhook-id"], "d1");
        assert_eq!(h["x-graywatch-delivery"], "d1");
        assert_eq!(h["webhook-timestamp"], "1700000000");
        assert_eq!(h["x-graywatch-timestamp"], "1700000000");
        let sigs = h["webhook-signature"].to_str().unwrap().to_string();
        assert_eq!(
            sigs,
            format!(
                "{} {}",
                sign_v1(b"new-key", "d1", 1_700_000_000, body),
                sign_v1(b"old-key", "d1", 1_700_000_000, body)
            )
        );
        assert!(h.get("x-graywatch-signature").is_none());
        // Each signature verifies on its own (a receiver knows one of the keys).
        for key in ["new-key", "old-key"] {
            assert!(verify_example::verify(
                key,
                "d1",
                "1700000000",
                &sigs,
                body,
                1_700_000_000
            ));
        }
        let legacy = notifier(&format!("{file}\nlegacy_signature = true")).signature_headers(
            "d1",
            1_700_000_000,
            body,
        );
        assert_eq!(
            legacy["x-graywatch-signature"],
            format!("sha256={}", sign(b"new-key", body)).as_str()
        );
        let unsigned = notifier("").signature_headers("d1", 1_700_000_000, body);
        assert!(unsigned.get("webhook-signature").is_none());
        assert_eq!(unsigned["webhook-id"], "d1");
    }

    #[test]
    fn the_readme_rust_example_verifies_and_refuses_replays_and_tampering() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let key = signing_keys(secret).unwrap().remove(0);
        let (id, ts, body) = ("d1", 1_700_000_000i64, br#"{"status":"firing"}"#.as_slice());
        let sig = sign_v1(&key, id, ts, body);
        let verify = |secret: &str, ts_header: &str, sigs: &str, body: &[u8], now: i64| {
            verify_example::verify(secret, id, ts_header, sigs, body, now)
        };
        assert!(verify(secret, "1700000000", &sig, body, ts + 299));
        assert!(verify(
            secret,
            "1700000000",
            &format!("v1,bm9wZQ== {sig}"),
            body,
            ts
        ));
        // A replay later than the tolerance, a replay with a fresh timestamp, a changed body,
        // the wrong key.
        assert!(!verify(secret, "1700000000", &sig, body, ts + 301));
        assert!(!verify(secret, "1700000300", &sig, body, ts + 300));
        assert!(!verify(
            secret,
            "1700000000",
            &sig,
            br#"{"status":"resolved"}"#,
            ts
        ));
        assert!(!verify("whsec_AAEC", "1700000000", &sig, body, ts));
        // A plain secret is its bytes.
        let plain = sign_v1(b"plain", id, ts, body);
        assert!(verify("plain", "1700000000", &plain, body, ts));
    }

    #[test]
    fn the_readme_shows_the_tested_rust_example_verbatim() {
        let readme = include_str!("../../../README.md");
        let example = include_str!("webhook/verify_example.rs");
        assert!(
            readme.contains(example.trim()),
            "README.md must hold src/actions/notifier/webhook/verify_example.rs verbatim"
        );
    }

    #[test]
    fn urls_are_redacted_to_scheme_host_and_port() {
        let url =
            reqwest::Url::parse("https://user:pw@hooks.slack.com/services/T/B/X?t=1").unwrap();
        assert_eq!(redact_url(&url), "https://hooks.slack.com/…");
        let url = reqwest::Url::parse("http://127.0.0.1:9000/hook").unwrap();
        assert_eq!(redact_url(&url), "http://127.0.0.1:9000/…");
        let hook = notifier("");
        let scrubbed = hook.scrub(
            "error for https://hooks.example.com:8443/services/T0/B0/tok3n?key=k3y and /services/T0/B0/tok3n key=k3y".into(),
        );
        assert!(
            !scrubbed.contains("tok3n") && !scrubbed.contains("k3y"),
            "{scrubbed}"
        );
    }

    #[test]
    fn slack_text_escapes_markup_in_labels_but_keeps_its_link() {
        let cfg: crate::actions::notifier::NotifierConfig = toml::from_str(
            "name = \"s\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\nformat = \"slack\"",
        )
        .unwrap();
        let hook = WebhookNotifier::new(&cfg).unwrap();
        let notice = Notice::Alert(crate::actions::notice::AlertNotice {
            id: 7,
            status: "firing".into(),
            dependency: "db".into(),
            instance: Some("<i&1>".into()),
            zone: None,
            source: None,
            detector: "hard_failure".into(),
            detectors: vec!["hard_failure".into()],
            severity: "failing".into(),
            previous_severity: None,
            summary: "50% fail".into(),
            started_at: "2027-01-15T08:00:00.000Z".into(),
            resolved_at: None,
            evidence: json!({}),
            dashboard_url: "http://gw/alerts/7".into(),
        });
        let text = hook.body("d", &notice)["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.contains("instance &lt;i&amp;1&gt;"), "{text}");
        assert!(text.ends_with("<http://gw/alerts/7|details>"), "{text}");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
