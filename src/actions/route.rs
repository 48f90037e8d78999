//! Routing: which notifiers hear about which alerts.
//!
//! In order of precedence: a dependency spec that is `silent` gets nothing; a spec's
//! `on_breach.notify` list wins; otherwise the first matching `[[routes]]` entry (and any
//! following ones while `continue = true`); otherwise `routing.default_notifiers`, which
//! defaults to every notifier.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::{DependencySpec, Severity};

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Dependency names; a trailing `*` matches a prefix. Empty: every dependency.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Severities; empty: all.
    #[serde(default)]
    pub severities: Vec<Severity>,
    pub notifiers: Vec<String>,
    /// Keep looking at later routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
}

impl Route {
    fn matches(&self, dependency: &str, severity: Severity) -> bool {
        let dep_ok = self.dependencies.is_empty()
            || self.dependencies.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => dependency.starts_with(prefix),
                None => p == dependency,
            });
        dep_ok && (self.severities.is_empty() || self.severities.contains(&severity))
    }
}

/// `[routing]`: defaults and delivery policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSettings {
    /// Notifiers for alerts no route matches; unset means every notifier.
    pub default_notifiers: Option<Vec<String>>,
    /// Notifiers told about breaker changes (none by default).
    pub breaker_notifiers: Vec<String>,
    /// A still-firing alert is notified again this often.
    #[serde(with = "crate::config::duration")]
    pub renotify_every: Duration,
    /// A notification not delivered within this time is dead-lettered.
    #[serde(with = "crate::config::duration")]
    pub retry_horizon: Duration,
    /// Longest wait between two attempts.
    #[serde(with = "crate::config::duration")]
    pub max_backoff: Duration,
    /// Base URL of this graywatch as receivers should link to it.
    pub public_url: Option<String>,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            default_notifiers: None,
            breaker_notifiers: Vec::new(),
            renotify_every: Duration::from_secs(4 * 3600),
            retry_horizon: Duration::from_secs(24 * 3600),
            max_backoff: Duration::from_secs(300),
            public_url: None,
        }
    }
}

/// Optional human-readable durations (`"1m"`).
pub mod opt_duration {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => crate::config::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        crate::config::duration::deserialize(d).map(Some)
    }
}

/// Resolves notifiers for an alert.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    default: Vec<String>,
}

impl Router {
    pub fn new(routes: &[Route], settings: &RoutingSettings, all_notifiers: &[String]) -> Self {
        Self {
            routes: routes.to_vec(),
            default: settings
                .default_notifiers
                .clone()
                .unwrap_or_else(|| all_notifiers.to_vec()),
        }
    }

    pub fn notifiers_for(
        &self,
        dependency: &str,
        severity: Severity,
        spec: Option<&DependencySpec>,
    ) -> Vec<String> {
        if let Some(spec) = spec {
            if spec.on_breach.silent {
                return Vec::new();
            }
            if !spec.on_breach.notify.is_empty() {
                return spec.on_breach.notify.clone();
            }
        }
        let mut out: Vec<String> = Vec::new();
        let mut matched = false;
        for r in &self.routes {
            if r.matches(dependency, severity) {
                matched = true;
                for n in &r.notifiers {
                    if !out.contains(n) {
                        out.push(n.clone());
                    }
                }
                if !r.continue_matching {
                    break;
                }
            }
        }
        if matched { out } else { self.default.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::spec::OnBreach;

    fn router(routes: Vec<Route>) -> Router {
        Router::new(
            &routes,
            &RoutingSettings::default(),
            &["mail".into(), "hook".into()],
        )
    }

    #[test]
    fn with_no_routes_every_alert_goes_to_every_notifier() {
        assert_eq!(
            router(vec![]).notifiers_for("db", Severity::Degraded, None),
            vec!["mail", "hook"]
        );
    }

    #[test]
    fn routes_match_by_dependency_prefix_and_severity_in_order() {
        let r = router(vec![
            Route {
                dependencies: vec!["pay*".into()],
                severities: vec![Severity::Failing],
                notifiers: vec!["mail".into()],
                continue_matching: true,
            },
            Route {
                dependencies: vec!["payments".into()],
                severities: vec![],
                notifiers: vec!["hook".into()],
                continue_matching: false,
            },
            Route {
                dependencies: vec![],
                severities: vec![],
                notifiers: vec!["never".into()],
                continue_matching: false,
            },
        ]);
        assert_eq!(
            r.notifiers_for("payments", Severity::Failing, None),
            vec!["mail", "hook"]
        );
        assert_eq!(
            r.notifiers_for("payments", Severity::Degraded, None),
            vec!["hook"]
        );
        assert_eq!(
            r.notifiers_for("cache", Severity::Degraded, None),
            vec!["never"]
        );
    }

    #[test]
    fn a_spec_overrides_routes_and_silent_specs_get_nothing() {
        let r = router(vec![]);
        let spec = DependencySpec {
            on_breach: OnBreach {
                notify: vec!["hook".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            r.notifiers_for("db", Severity::Degraded, Some(&spec)),
            vec!["hook"]
        );
        let silent = DependencySpec {
            on_breach: OnBreach {
                silent: true,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(
            r.notifiers_for("db", Severity::Failing, Some(&silent))
                .is_empty()
        );
    }
}
