//! A short, stable name for each reason an event is refused: the `reason` label of
//! `graywatch_events_rejected_total`. Derived from the error message, whose first word names
//! the field at fault (a documented contract of the ingest API), so every refusal, from the
//! parser or from the window store's limits, is named in one place.

/// Every value [`rejection_reason`] returns.
pub const EVENT_REJECTION_REASONS: &[&str] = &[
    "series_limit",
    "ts_too_old",
    "ts_in_future",
    "invalid_ts",
    "dependency_limit",
    "instance_limit",
    "zone_limit",
    "source_limit",
    "invalid_dependency",
    "invalid_duration",
    "invalid_outcome",
    "invalid_instance",
    "invalid_zone",
    "invalid_source",
    "not_an_object",
    "other",
];

/// The reason an event with this error message was refused.
pub fn rejection_reason(error: &str) -> &'static str {
    let (field, detail) = error.split_once(": ").unwrap_or(("", error));
    if detail.contains("series in total") {
        return "series_limit";
    }
    match field {
        "ts" if detail.starts_with("older than") => "ts_too_old",
        "ts" if detail.contains("in the future") => "ts_in_future",
        "ts" => "invalid_ts",
        "dependency" if detail.starts_with("limit of") => "dependency_limit",
        "instance" if detail.starts_with("limit of") => "instance_limit",
        "zone" if detail.starts_with("limit of") => "zone_limit",
        "source" if detail.starts_with("limit of") => "source_limit",
        "dependency" => "invalid_dependency",
        "duration_ms" => "invalid_duration",
        "outcome" => "invalid_outcome",
        "instance" => "invalid_instance",
        "zone" => "invalid_zone",
        "source" => "invalid_source",
        _ if error.starts_with("event must be a JSON object") => "not_an_object",
        _ => "other",
    }
}

/// The reason of a refusal by the window store, without building its message (a batch can
/// have a million of them); the same as [`rejection_reason`] of the message.
pub fn record_rejection_reason(e: &crate::window::RecordError) -> &'static str {
    use crate::window::RecordError;
    match e {
        RecordError::TooOld => "ts_too_old",
        RecordError::SeriesLimit { .. } => "series_limit",
        RecordError::DependencyLimit(_) => "dependency_limit",
        RecordError::InstanceLimit(_) => "instance_limit",
        RecordError::ZoneLimit(_) => "zone_limit",
        RecordError::SourceLimit(_) => "source_limit",
    }
}

/// The `reason` label of `graywatch_ingest_bodies_rejected_total` (a body not received within
/// `ingest.body_timeout` is counted as `timeout`, where the `408` is made).
pub fn body_rejection_reason(e: &super::BodyError) -> &'static str {
    use super::BodyError;
    match e {
        BodyError::Syntax { .. } => "invalid_json",
        BodyError::NotEvents => "not_events",
        BodyError::TooLarge { .. } => "too_large",
        BodyError::Gzip(_) => "invalid_gzip",
        BodyError::Encoding(_) => "unsupported_encoding",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::RecordError;

    #[test]
    fn every_refusal_of_the_store_has_its_own_reason() {
        let cases = [
            (RecordError::TooOld, "ts_too_old"),
            (
                RecordError::SeriesLimit {
                    field: "instance",
                    max: 3,
                },
                "series_limit",
            ),
            (RecordError::DependencyLimit(2), "dependency_limit"),
            (RecordError::InstanceLimit(2), "instance_limit"),
            (RecordError::ZoneLimit(2), "zone_limit"),
            (RecordError::SourceLimit(2), "source_limit"),
        ];
        for (e, want) in cases {
            assert_eq!(rejection_reason(&e.to_string()), want, "{e}");
            assert_eq!(record_rejection_reason(&e), want, "{e}");
        }
    }

    #[test]
    fn validation_errors_are_named_by_their_field() {
        let cases = [
            ("dependency: required", "invalid_dependency"),
            ("duration_ms: must be >= 0, got -3", "invalid_duration"),
            (
                r#"outcome: must be "ok", "error" or "timeout", got "x""#,
                "invalid_outcome",
            ),
            ("ts: more than 5 minutes in the future", "ts_in_future"),
            ("ts: older than the longest window (1h)", "ts_too_old"),
            ("ts: \"x\" is not an RFC 3339 timestamp", "invalid_ts"),
            ("zone: must be a string, got a number", "invalid_zone"),
            ("event must be a JSON object, got an array", "not_an_object"),
        ];
        for (e, want) in cases {
            assert_eq!(rejection_reason(e), want, "{e}");
        }
    }

    #[test]
    fn every_reason_is_declared_so_its_series_starts_at_zero() {
        for e in [
            "x: y",
            "source: too long",
            "instance: bad",
            "ts: older than 1h",
            "dependency: limit of 3",
            "duration_ms: bad",
            "event must be a JSON object, got null",
            "instance: 2 series in total",
        ] {
            let reason = rejection_reason(e);
            assert!(EVENT_REJECTION_REASONS.contains(&reason), "{reason}");
        }
    }
}
