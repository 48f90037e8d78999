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
//! max_errors_reported = 100   # per-event errors listed in a response
//!
//! [limits]
//! max_series = 4000           # all kinds together; ~643 KiB each when busy
//! max_dependencies = 500
//! max_instances_per_dependency = 100
//! max_zones_per_dependency = 16
//!
//! [storage]
//! retention = "7d"
//! flush_interval = "10s"
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::actions::breaker::BreakerSettings;
use crate::actions::notifier::NotifierConfig;
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
    pub limits: Limits,
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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9797".parse().expect("valid default address"),
            database: "sqlite://graywatch.db".into(),
            node_id: "default".into(),
            ingest: IngestSettings::default(),
            limits: Limits::default(),
            storage: StorageSettings::default(),
            detection: DetectionSettings::default(),
            dependencies: Specs::default(),
            notifiers: Vec::new(),
            routes: Vec::new(),
            routing: RoutingSettings::default(),
            breakers: BreakerSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
    pub max_errors_reported: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_in_flight: 32,
            max_errors_reported: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// How long per-minute roll-ups are kept.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// How often completed minutes are written.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            flush_interval: Duration::from_secs(10),
        }
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
        ] {
            if v == 0 {
                bad(key, "0".into(), "must be at least 1");
            }
        }
        if self.storage.retention < Duration::from_secs(3600) {
            bad(
                "storage.retention",
                humantime::format_duration(self.storage.retention).to_string(),
                "must be at least 1h (the longest window is reloaded from roll-ups at start-up)",
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
        assert_eq!(s.limits.max_zones_per_dependency, 16);
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
    }
}
