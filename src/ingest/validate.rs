//! Turning a [`RawEvent`] into an [`Event`], with an error that names the field.

use super::raw::{Field, RawEvent};
use crate::domain::{DependencyName, Event, Label, Outcome};
use crate::window::Window;

/// How far in the future an event's `ts` may be (clock skew between hosts).
pub const MAX_FUTURE_MS: i64 = 5 * 60_000;
/// The last millisecond of the year 9999: a replayed `ts` beyond it (or before 1970) is
/// refused, so that event-time arithmetic never comes near overflow.
pub const MAX_TS_MS: i64 = 253_402_300_799_999;

/// The context events are validated in.
#[derive(Debug, Clone, Copy)]
pub struct Validation {
    /// Time of receipt: the default `ts`, and the reference for the age checks.
    pub now_ms: i64,
    /// Refuse events older than the longest window or too far in the future (live ingest).
    /// `replay` turns this off: there, time is whatever the recording says, within the years
    /// 1970 to 9999.
    pub check_age: bool,
    /// Require `ts` (replay needs event time; live ingest defaults it to receipt time).
    pub require_ts: bool,
}

impl Validation {
    pub fn live(now_ms: i64) -> Self {
        Self {
            now_ms,
            check_age: true,
            require_ts: false,
        }
    }

    pub fn replay() -> Self {
        Self {
            now_ms: 0,
            check_age: false,
            require_ts: true,
        }
    }

    pub fn validate<'a>(&self, raw: RawEvent<'a>) -> Result<Event<'a>, String> {
        let dependency = match raw.dependency {
            Field::Missing | Field::Null => return Err("dependency: required".into()),
            Field::Str(s) => DependencyName::parse(s).map_err(|e| format!("dependency: {e}"))?,
            other => {
                return Err(format!(
                    "dependency: must be a string, got {}",
                    other.type_name()
                ));
            }
        };
        let duration_ms = match raw.duration_ms {
            Field::Missing | Field::Null => return Err("duration_ms: required".into()),
            Field::UInt(n) => n as f64,
            Field::Int(n) => n as f64,
            Field::Float(f) => f,
            other => {
                return Err(format!(
                    "duration_ms: must be a number, got {}",
                    other.type_name()
                ));
            }
        };
        if !duration_ms.is_finite() {
            return Err("duration_ms: must be finite".into());
        }
        if duration_ms < 0.0 {
            return Err(format!("duration_ms: must be >= 0, got {duration_ms}"));
        }
        let outcome = match raw.outcome {
            Field::Missing | Field::Null => Outcome::Ok,
            Field::Str(s) => Outcome::parse(&s).ok_or_else(|| {
                format!(r#"outcome: must be "ok", "error" or "timeout", got {s:?}"#)
            })?,
            other => {
                return Err(format!(
                    "outcome: must be a string, got {}",
                    other.type_name()
                ));
            }
        };
        let ts_ms = match raw.ts {
            Field::Missing | Field::Null if self.require_ts => return Err("ts: required".into()),
            Field::Missing | Field::Null => self.now_ms,
            Field::UInt(n) => i64::try_from(n).map_err(|_| "ts: out of range".to_string())?,
            Field::Int(n) => n,
            Field::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
            Field::Str(s) => crate::time::parse_rfc3339(&s).ok_or_else(|| {
                format!("ts: {s:?} is not an RFC 3339 timestamp (e.g. 2026-01-02T03:04:05.678Z)")
            })?,
            _ => {
                return Err(
                    "ts: must be integer Unix epoch milliseconds or an RFC 3339 string".into(),
                );
            }
        };
        if let Some(e) = self.time_error(ts_ms) {
            return Err(e);
        }
        Ok(Event {
            dependency,
            duration_us: duration_us(duration_ms),
            outcome,
            ts_ms,
            instance: label("instance", raw.instance)?,
            zone: label("zone", raw.zone)?,
            source: label("source", raw.source)?,
        })
    }

    /// Why an event at `ts_ms` is refused, when it is: too old or too far in the future (live),
    /// or outside the years 1970 to 9999 (replay, where any other time is what the recording
    /// says).
    #[inline]
    pub(super) fn time_error(&self, ts_ms: i64) -> Option<String> {
        if !self.check_age {
            return (!(0..=MAX_TS_MS).contains(&ts_ms))
                .then(|| "ts: out of range (must be from 1970 to 9999)".to_string());
        }
        if ts_ms < self.now_ms - Window::LONGEST_MS {
            let hint = if ts_ms.unsigned_abs() < 100_000_000_000 {
                " (ts is in milliseconds; this looks like seconds)"
            } else {
                ""
            };
            return Some(format!("ts: older than the longest window (1h){hint}"));
        }
        if ts_ms > self.now_ms + MAX_FUTURE_MS {
            return Some("ts: more than 5 minutes in the future".into());
        }
        None
    }
}

/// A valid `duration_ms` (finite, not negative) in whole microseconds. `as` saturates: absurd
/// durations become u64::MAX and are clamped (and counted) by the histogram, not refused.
#[inline]
pub(super) fn duration_us(duration_ms: f64) -> u64 {
    (duration_ms * 1000.0).round() as u64
}

/// Optional labels: absent, null and "" all mean "not given".
fn label<'a>(name: &str, f: Field<'a>) -> Result<Option<Label<'a>>, String> {
    match f {
        Field::Missing | Field::Null => Ok(None),
        Field::Str(s) if s.is_empty() => Ok(None),
        Field::Str(s) => Label::parse(s)
            .map(Some)
            .map_err(|e| format!("{name}: {e}")),
        other => Err(format!(
            "{name}: must be a string, got {}",
            other.type_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn check(json: &str) -> Result<Event<'_>, String> {
        let raw: RawEvent = match serde_json::from_str(json).unwrap() {
            crate::ingest::Body::One(r) => r,
            _ => unreachable!(),
        };
        Validation::live(NOW).validate(raw)
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (r#"{"duration_ms":1}"#, "dependency: required"),
            (
                r#"{"dependency":"a b","duration_ms":1}"#,
                "dependency: contains ' '",
            ),
            (
                r#"{"dependency":7,"duration_ms":1}"#,
                "dependency: must be a string",
            ),
            (r#"{"dependency":"a"}"#, "duration_ms: required"),
            (
                r#"{"dependency":"a","duration_ms":"1"}"#,
                "duration_ms: must be a number",
            ),
            (
                r#"{"dependency":"a","duration_ms":-0.5}"#,
                "duration_ms: must be >= 0",
            ),
            (
                r#"{"dependency":"a","duration_ms":1,"outcome":"fail"}"#,
                "outcome: must be",
            ),
            (
                r#"{"dependency":"a","duration_ms":1,"ts":"yesterday"}"#,
                "ts: \"yesterday\" is not",
            ),
            (
                r#"{"dependency":"a","duration_ms":1,"ts":1.5}"#,
                "ts: must be integer",
            ),
            (
                r#"{"dependency":"a","duration_ms":1,"ts":1700000000}"#,
                "ts: older than the longest window (1h) (ts is in milliseconds",
            ),
            (
                r#"{"dependency":"a","duration_ms":1,"ts":1800000400000}"#,
                "ts: more than 5 minutes in the future",
            ),
            (
                r#"{"dependency":"a","duration_ms":1,"ts":-9223372036854775808}"#,
                "ts: older than the longest window (1h)",
            ),
            (
                r#"{"dependency":"a","duration_ms":1,"instance":3}"#,
                "instance: must be a string",
            ),
            (
                r#"{"dependency":"a","duration_ms":1,"zone":"a\u0001"}"#,
                "zone: contains a control character",
            ),
            (
                r#"{"dependency":"a","duration_ms":1,"zone":"eu\u202e1"}"#,
                "zone: contains the invisible format character U+202E",
            ),
            (
                "{\"dependency\":\"a\",\"duration_ms\":1,\"instance\":\"i-1\u{200B}\"}",
                "instance: contains the invisible format character U+200B",
            ),
        ];
        for (json, want) in cases {
            let err = check(json).unwrap_err();
            assert!(
                err.starts_with(want),
                "{json}: got {err:?}, want prefix {want:?}"
            );
        }
    }

    #[test]
    fn replay_takes_any_time_from_1970_to_9999_and_refuses_the_rest() {
        let replay = |json: &str| {
            let raw: RawEvent = match serde_json::from_str(json).unwrap() {
                crate::ingest::Body::One(r) => r,
                _ => unreachable!(),
            };
            Validation::replay().validate(raw).map(|e| e.ts_ms)
        };
        for ts in [0, 1_000, MAX_TS_MS] {
            let e = replay(&format!(
                r#"{{"dependency":"a","duration_ms":1,"ts":{ts}}}"#
            ));
            assert_eq!(e, Ok(ts));
        }
        for ts in [-1, MAX_TS_MS + 1, i64::MAX] {
            let e = replay(&format!(
                r#"{{"dependency":"a","duration_ms":1,"ts":{ts}}}"#
            ));
            assert_eq!(
                e,
                Err("ts: out of range (must be from 1970 to 9999)".to_string())
            );
        }
    }

    #[test]
    fn timestamps_accept_millis_and_rfc3339() {
        let e = check(r#"{"dependency":"a","duration_ms":0,"ts":1799999990000}"#).unwrap();
        assert_eq!(e.ts_ms, 1_799_999_990_000);
        let e = check(r#"{"dependency":"a","duration_ms":0,"ts":"2027-01-15T08:00:00Z"}"#).unwrap();
        assert_eq!(e.ts_ms, 1_800_000_000_000);
        let e = check(r#"{"dependency":"a","duration_ms":2.0004,"instance":""}"#).unwrap();
        assert_eq!(e.duration_us, 2_000);
        assert!(e.instance.is_none());
    }
}
