//! Time at the edge. The core works on epoch milliseconds handed to it; only the daemon's
//! tasks read the wall clock, through [`Clock`], so tests and `replay` can supply their own.

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats epoch milliseconds as RFC 3339 with millisecond precision, in UTC.
pub fn to_rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Parses an RFC 3339 timestamp into epoch milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Parses a query-string time: epoch milliseconds, or RFC 3339.
pub fn parse_query_time(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().or_else(|| parse_rfc3339(s))
}

/// Source of "now" for the live daemon.
#[derive(Clone, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A clock that reads a shared value: lets tests move time without sleeping.
    Manual(std::sync::Arc<std::sync::atomic::AtomicI64>),
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => Utc::now().timestamp_millis(),
            Clock::Manual(v) => v.load(std::sync::atomic::Ordering::SeqCst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_at_millisecond_precision() {
        let ms = 1_790_000_000_123;
        assert_eq!(parse_rfc3339(&to_rfc3339(ms)), Some(ms));
        assert_eq!(
            parse_rfc3339("2026-11-27T10:00:00+01:00"),
            Some(1_795_770_000_000)
        );
        assert_eq!(parse_query_time("12345"), Some(12345));
        assert_eq!(parse_query_time("yesterday"), None);
    }
}
