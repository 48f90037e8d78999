//! Notifiers: one file per integration, each saying whether a failure is worth retrying.

pub mod config;
mod email;
mod webhook;

pub use config::{NotifierConfig, NotifierType, TlsMode, WebhookFormat};
pub use webhook::sign;

use super::notice::Notice;

/// Why a delivery failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Connection refused, timeout, HTTP 5xx/408/429, SMTP 4xx: retried with backoff.
    #[error("{0}")]
    Transient(String),
    /// Any other HTTP 4xx, SMTP 5xx, a message that cannot be built: recorded, not retried.
    #[error("{0}")]
    Permanent(String),
}

enum Kind {
    Email(email::EmailNotifier),
    Webhook(webhook::WebhookNotifier),
}

pub struct Notifier {
    pub name: String,
    pub send_resolved: bool,
    pub timeout: std::time::Duration,
    /// This notifier's own re-notification interval, if it has one.
    pub renotify_every: Option<std::time::Duration>,
    kind: Kind,
}

impl Notifier {
    /// Builds a notifier, reading its secrets (an unset variable is an error here).
    pub fn new(cfg: &NotifierConfig) -> anyhow::Result<Self> {
        let kind = match cfg.kind {
            NotifierType::Email => Kind::Email(email::EmailNotifier::new(cfg)?),
            NotifierType::Webhook => Kind::Webhook(webhook::WebhookNotifier::new(cfg)?),
        };
        let renotify_every = cfg.renotify_every.or_else(|| {
            (cfg.kind == NotifierType::Webhook && cfg.format == WebhookFormat::Alertmanager)
                .then(|| std::time::Duration::from_secs(60))
        });
        Ok(Self {
            name: cfg.name.clone(),
            send_resolved: cfg.send_resolved,
            timeout: cfg.timeout,
            renotify_every,
            kind,
        })
    }

    pub async fn deliver(&self, delivery_id: &str, notice: &Notice) -> Result<(), DeliveryError> {
        let attempt = async {
            match &self.kind {
                Kind::Email(e) => e.deliver(delivery_id, notice).await,
                Kind::Webhook(w) => w.deliver(delivery_id, notice).await,
            }
        };
        // The whole attempt, from connecting to the last byte of the answer, is bounded by
        // `timeout`. The HTTP client has the same bound of its own; lettre bounds only the
        // connection and the commands, not the server's greeting, so a server that accepts
        // and says nothing is cut here.
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::Transient(format!(
                "timed out after {:?}",
                self.timeout
            ))),
        }
    }
}
