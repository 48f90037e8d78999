//! What a notification says, independent of how it is sent. Stored as the outbox payload,
//! rendered by each notifier at delivery time.

use serde::{Deserialize, Serialize};

use crate::detect::{AlertStatus, Transition};

/// An alert transition as receivers see it (the graywatch webhook body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertNotice {
    pub id: i64,
    pub status: String,
    pub dependency: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub zone: Option<String>,
    /// The caller the alert is localized to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    pub detector: String,
    /// Every detector that sees the incident, `detector` first.
    #[serde(default)]
    pub detectors: Vec<String>,
    pub severity: String,
    /// The severity before an `updated` notice.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous_severity: Option<String>,
    pub summary: String,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resolved_at: Option<String>,
    pub evidence: serde_json::Value,
    pub dashboard_url: String,
}

/// The dashboard page of an alert: the link notifications carry.
pub fn alert_page_url(public_url: &str, alert_id: i64) -> String {
    format!("{}/alerts/{alert_id}", public_url.trim_end_matches('/'))
}

impl AlertNotice {
    pub fn from_transition(t: &Transition, alert_id: i64, public_url: &str) -> Self {
        Self {
            id: alert_id,
            status: t.status.as_str().to_string(),
            dependency: t.dependency.clone(),
            instance: t.instance.clone(),
            zone: t.zone.clone(),
            source: t.source.clone(),
            detector: t.detector.as_str().to_string(),
            detectors: t.detectors.iter().map(|d| d.as_str().to_string()).collect(),
            severity: t.severity.as_str().to_string(),
            previous_severity: t.previous_severity.map(|s| s.as_str().to_string()),
            summary: t.summary.clone(),
            started_at: crate::time::to_rfc3339(t.started_ms),
            resolved_at: (t.status == AlertStatus::Resolved)
                .then(|| crate::time::to_rfc3339(t.resolved_ms.unwrap_or(t.at_ms))),
            evidence: t.evidence.clone(),
            dashboard_url: alert_page_url(public_url, alert_id),
        }
    }

    /// "payments-api", "payments-api (instance 10.0.1.7)" or "payments-api (called by
    /// nightly-export)".
    pub fn subject_name(&self) -> String {
        match (&self.instance, &self.zone, &self.source) {
            (Some(i), _, _) => format!("{} (instance {i})", self.dependency),
            (_, Some(z), _) => format!("{} (zone {z})", self.dependency),
            (_, _, Some(c)) => format!("{} (called by {c})", self.dependency),
            _ => self.dependency.clone(),
        }
    }

    /// "latency_tail, error_rate": every detector of the incident, the naming one first.
    pub fn detector_list(&self) -> String {
        if self.detectors.is_empty() {
            self.detector.clone()
        } else {
            self.detectors.join(", ")
        }
    }

    /// One line for chat and subjects.
    pub fn headline(&self) -> String {
        format!(
            "[{}] {} is {}: {}",
            self.status.to_uppercase(),
            self.subject_name(),
            if self.status == "resolved" {
                "healthy again".to_string()
            } else {
                self.severity.clone()
            },
            self.summary
        )
    }
}

/// Everything the outbox can carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// A few notices exist at a time (one per queued delivery being sent): their size is no cost.
#[allow(clippy::large_enum_variant)]
pub enum Notice {
    Alert(AlertNotice),
    /// A breaker changed state (the breaker view after the change).
    Breaker {
        dependency: String,
        instance: Option<String>,
        state: String,
        reason: String,
        at: String,
        /// Earlier changes of this breaker that this notice replaces: they happened before any
        /// of them reached the outbox (while the database refused writes), and only the latest
        /// state is sent. Absent when none.
        #[serde(default, skip_serializing_if = "is_zero")]
        superseded: u32,
    },
    /// `graywatch test-notifier`.
    Test {
        notifier: String,
        at: String,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Notice {
    pub fn headline(&self) -> String {
        match self {
            Notice::Alert(a) => a.headline(),
            Notice::Breaker {
                dependency,
                instance,
                state,
                reason,
                superseded,
                ..
            } => format!(
                "[BREAKER] {}{} is {state}: {reason}{}",
                dependency,
                instance
                    .as_ref()
                    .map(|i| format!(" (instance {i})"))
                    .unwrap_or_default(),
                match superseded {
                    0 => String::new(),
                    1 => " (after 1 earlier change not sent)".to_string(),
                    n => format!(" (after {n} earlier changes not sent)"),
                }
            ),
            Notice::Test { notifier, .. } => {
                format!("[TEST] graywatch test notification through {notifier}")
            }
        }
    }
}
