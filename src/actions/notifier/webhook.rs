//! Webhooks: graywatch's signed JSON, Slack-compatible, or Alertmanager's API.
//!
//! The graywatch format is signed: `X-Graywatch-Signature: sha256=<hex>` is the HMAC-SHA256
//! of the raw request body with the shared secret. Receivers recompute it over the bytes they
//! received and compare in constant time; `X-Graywatch-Delivery` stays the same across retries
//! of one notification, so receivers can drop duplicates.

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use sha2::Sha256;

use super::DeliveryError;
use super::config::{NotifierConfig, WebhookFormat, read_secret};
use crate::actions::notice::Notice;

pub struct WebhookNotifier {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Option<Vec<u8>>,
    format: WebhookFormat,
    headers: HeaderMap,
}

/// Hex HMAC-SHA256 of `body` with `secret` (the value after `sha256=`).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

impl WebhookNotifier {
    pub fn new(cfg: &NotifierConfig) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(cfg.url.as_deref().unwrap_or_default())?;
        let secret = read_secret(
            cfg.secret_env.as_deref(),
            cfg.secret_file.as_deref(),
            &format!("notifier {}", cfg.name),
        )?
        .map(String::into_bytes);
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
            .build()?;
        Ok(Self {
            client,
            url,
            secret,
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

    pub async fn deliver(&self, delivery_id: &str, notice: &Notice) -> Result<(), DeliveryError> {
        let body =
            serde_json::to_vec(&self.body(delivery_id, notice)).expect("JSON values serialize");
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Graywatch-Delivery", delivery_id)
            .header(
                "X-Graywatch-Timestamp",
                chrono::Utc::now().timestamp().to_string(),
            );
        if let Some(secret) = &self.secret {
            req = req.header(
                "X-Graywatch-Signature",
                format!("sha256={}", sign(secret, &body)),
            );
        }
        let resp = req.body(body).send().await.map_err(|e| {
            // Connection refused, reset, DNS, timeouts: all worth retrying.
            DeliveryError::Transient(format!("request failed: {}", error_chain(&e)))
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let msg = format!("HTTP {status}: {text}");
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(DeliveryError::Transient(msg))
        } else {
            Err(DeliveryError::Permanent(msg))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
