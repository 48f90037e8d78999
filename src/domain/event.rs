use super::{DependencyName, Label};

/// How one outbound call ended. Timeouts are kept apart from errors: a dependency that hangs
/// is a different failure from one that answers with an error, and detectors treat them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Error,
    Timeout,
}

impl Outcome {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ok" => Some(Self::Ok),
            "error" => Some(Self::Error),
            "timeout" => Some(Self::Timeout),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }
}

/// One outbound call, validated. Times are integers: event time in Unix epoch milliseconds and
/// duration in microseconds (the histogram unit), so the core never handles floats for time.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub dependency: DependencyName<'a>,
    pub duration_us: u64,
    pub outcome: Outcome,
    pub ts_ms: i64,
    pub instance: Option<Label<'a>>,
    pub zone: Option<Label<'a>>,
    pub source: Option<Label<'a>>,
}

impl Event<'_> {
    pub fn into_owned(self) -> Event<'static> {
        Event {
            dependency: self.dependency.into_owned(),
            duration_us: self.duration_us,
            outcome: self.outcome,
            ts_ms: self.ts_ms,
            instance: self.instance.map(Label::into_owned),
            zone: self.zone.map(Label::into_owned),
            source: self.source.map(Label::into_owned),
        }
    }
}
