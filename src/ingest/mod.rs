//! Ingest: wire formats (JSON object, JSON array, NDJSON, gzip) parsed once into [`Event`]s.
//!
//! Parsing is lenient per event and strict per body: a body that is not JSON at all is refused
//! whole with the position of the problem, while a batch with some bad events keeps the good
//! ones and reports each bad one by index with the field at fault.

pub(crate) mod fast;
mod raw;
mod reason;
mod validate;

use std::io::Read;

pub use raw::{Body, Element, Field, RawEvent};
pub use reason::{
    EVENT_REJECTION_REASONS, body_rejection_reason, record_rejection_reason, rejection_reason,
};
pub use validate::{MAX_FUTURE_MS, Validation};

use crate::domain::Event;

/// Wire format of a body, chosen by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
}

impl Format {
    /// The format a media type names (parameters such as `charset` aside): JSON, or NDJSON
    /// under `application/x-ndjson` and its common aliases; `None` for any other type.
    pub fn of_media_type(ct: &str) -> Option<Self> {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/json" => Some(Format::Json),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines" => Some(Format::Ndjson),
            _ => None,
        }
    }

    /// NDJSON for its media types; anything else (or none) is read as JSON.
    pub fn from_content_type(ct: Option<&str>) -> Self {
        ct.and_then(Self::of_media_type).unwrap_or(Format::Json)
    }
}

/// Why a whole body was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid JSON: {message} at line {line} column {column}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("body must be an event object or an array of event objects")]
    NotEvents,
    #[error("body is larger than the limit of {limit} bytes (after decompression)")]
    TooLarge { limit: usize },
    #[error("body is not valid gzip: {0}")]
    Gzip(String),
    #[error("unsupported Content-Encoding {0:?}; use gzip or identity")]
    Encoding(String),
}

/// A refused event, by index (for NDJSON: the 0-based line number).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventError {
    pub index: usize,
    pub error: String,
}

/// The outcome of parsing one body.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub events: Vec<Event<'a>>,
    /// Index in the body of each entry of `events`.
    pub indexes: Vec<usize>,
    /// The first refused events (by index), as many as the parse was asked to keep.
    pub errors: Vec<EventError>,
    /// Every refused event, those beyond `errors` included.
    pub rejected: usize,
    /// Every refused event by reason (see [`rejection_reason`]).
    pub rejected_by: Vec<(&'static str, u64)>,
    /// How many errors `errors` keeps; the others are only counted, so that a body of a
    /// million bad elements does not hold a million messages.
    max_errors: usize,
}

/// Undoes `Content-Encoding`, refusing bodies (compressed or not) above `limit` bytes.
pub fn decode_body<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, BodyError> {
    match content_encoding
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => {
            if body.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            Ok(body.into())
        }
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity((body.len() * 4).min(limit + 1));
            // Read at most one byte past the limit: a gzip bomb costs us `limit` bytes, no more.
            flate2::read::MultiGzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| BodyError::Gzip(e.to_string()))?;
            if out.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            Ok(out.into())
        }
        Some(other) => Err(BodyError::Encoding(other.to_string())),
    }
}

/// Parses a decoded body and validates each event, keeping every error.
pub fn parse<'a>(body: &'a [u8], format: Format, v: &Validation) -> Result<Parsed<'a>, BodyError> {
    parse_capped(body, format, v, usize::MAX)
}

/// Parses a decoded body and validates each event, keeping the messages of the first
/// `max_errors` refused events only; all of them are counted.
pub fn parse_capped<'a>(
    body: &'a [u8],
    format: Format,
    v: &Validation,
    max_errors: usize,
) -> Result<Parsed<'a>, BodyError> {
    match format {
        Format::Json => parse_json(body, v, max_errors),
        Format::Ndjson => parse_ndjson(body, v, max_errors),
    }
}

fn syntax(e: &serde_json::Error) -> BodyError {
    let message = e.to_string();
    // serde_json appends " at line L column C"; we report them as fields instead.
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_string();
    BodyError::Syntax {
        line: e.line(),
        column: e.column(),
        message,
    }
}

fn parse_json<'a>(
    body: &'a [u8],
    v: &Validation,
    max_errors: usize,
) -> Result<Parsed<'a>, BodyError> {
    let mut out = Parsed::with_capacity_for(body.len(), max_errors);
    if fast::each_event(body, v, |i, event| out.push(i, event)).is_some() {
        return Ok(out);
    }
    // Not the common shape: start over with the general parser.
    parse_json_general(body, v, max_errors)
}

/// A JSON body read by serde alone, without the fast scanner: what [`parse_json`] falls back
/// to, and what the fast scanner must agree with wherever it answers.
pub(crate) fn parse_json_general<'a>(
    body: &'a [u8],
    v: &Validation,
    max_errors: usize,
) -> Result<Parsed<'a>, BodyError> {
    use serde::de::DeserializeSeed;
    let mut out = Parsed::with_capacity_for(body.len(), max_errors);
    let mut de = serde_json::Deserializer::from_slice(body);
    let classify = |e: serde_json::Error| {
        if e.is_data() {
            BodyError::NotEvents
        } else {
            syntax(&e)
        }
    };
    raw::BatchSeed {
        validation: v,
        out: &mut out,
    }
    .deserialize(&mut de)
    .map_err(classify)?;
    de.end().map_err(|e| syntax(&e))?;
    Ok(out)
}

fn parse_ndjson<'a>(
    body: &'a [u8],
    v: &Validation,
    max_errors: usize,
) -> Result<Parsed<'a>, BodyError> {
    use serde::Deserialize;
    let mut out = Parsed::with_capacity_for(body.len(), max_errors);
    let mut first_syntax_error = None;
    let mut parsed_any = false;
    // Lines are found with memchr: a byte-at-a-time split cost as much as parsing them.
    let ends = memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len()));
    let lines = ends.scan(0, |start, end| {
        let line = &body[*start..end];
        *start = end + 1;
        Some(line)
    });
    for (i, line) in lines.enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some(event) = fast::json_line(line, v) {
            parsed_any = true;
            out.push(i, event);
            continue;
        }
        // The line is validated only once it is known to hold nothing after its element
        // (trailing garbage makes the whole line a syntax error).
        let mut de = serde_json::Deserializer::from_slice(line);
        let result = raw::Element::deserialize(&mut de).and_then(|el| de.end().map(|()| el));
        match result {
            Ok(element) => {
                parsed_any = true;
                out.push_element(i, element, v);
            }
            Err(e) => {
                let err = syntax(&e);
                if let BodyError::Syntax {
                    column, message, ..
                } = &err
                {
                    out.reject_with(i, "other", || {
                        format!("line {}: invalid JSON: {message} at column {column}", i + 1)
                    });
                }
                if first_syntax_error.is_none() {
                    first_syntax_error = Some(match err {
                        BodyError::Syntax {
                            column, message, ..
                        } => BodyError::Syntax {
                            line: i + 1,
                            column,
                            message,
                        },
                        other => other,
                    });
                }
            }
        }
    }
    // Not one line was JSON: the body is not NDJSON at all.
    match (parsed_any, first_syntax_error) {
        (false, Some(e)) => Err(e),
        _ => Ok(out),
    }
}

impl<'a> Parsed<'a> {
    /// Sized for a body of `len` bytes (events are rarely shorter than ~60 bytes), so that
    /// pushing does not reallocate and copy the events already parsed.
    fn with_capacity_for(len: usize, max_errors: usize) -> Self {
        let n = (len / 60).min(1 << 20);
        Self {
            events: Vec::with_capacity(n),
            indexes: Vec::with_capacity(n),
            errors: Vec::new(),
            rejected: 0,
            rejected_by: Vec::new(),
            max_errors,
        }
    }

    pub(crate) fn push(&mut self, index: usize, r: Result<Event<'a>, String>) {
        match r {
            Ok(ev) => {
                self.events.push(ev);
                self.indexes.push(index);
            }
            Err(error) => self.reject(index, error),
        }
    }

    /// Validates one element of a batch (or one NDJSON line) into the events or the errors.
    pub(crate) fn push_element(&mut self, index: usize, element: Element<'a>, v: &Validation) {
        match element {
            Element::Event(raw) => self.push(index, v.validate(raw)),
            Element::NotAnObject(kind) => self.reject_with(index, "not_an_object", || {
                format!("event must be a JSON object, got {kind}")
            }),
        }
    }

    /// Counts a refused event whose message is already built, keeping it if there is room.
    #[cold]
    fn reject(&mut self, index: usize, error: String) {
        self.count(rejection_reason(&error));
        if self.errors.len() < self.max_errors {
            self.errors.push(EventError { index, error });
        }
    }

    /// Counts a refused event under `reason`, building its message only if it is kept.
    #[cold]
    pub(crate) fn reject_with(
        &mut self,
        index: usize,
        reason: &'static str,
        message: impl FnOnce() -> String,
    ) {
        self.count(reason);
        if self.errors.len() < self.max_errors {
            self.errors.push(EventError {
                index,
                error: message(),
            });
        }
    }

    fn count(&mut self, reason: &'static str) {
        self.rejected += 1;
        match self.rejected_by.iter_mut().find(|r| r.0 == reason) {
            Some(r) => r.1 += 1,
            None => self.rejected_by.push((reason, 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Outcome;

    const NOW: i64 = 1_800_000_000_000;

    fn live() -> Validation {
        Validation::live(NOW)
    }

    #[test]
    fn a_single_object_an_array_and_ndjson_all_parse() {
        let one = parse(
            br#"{"dependency":"db","duration_ms":1.5}"#,
            Format::Json,
            &live(),
        )
        .unwrap();
        assert_eq!(one.events.len(), 1);
        assert_eq!(one.events[0].duration_us, 1_500);
        assert_eq!(one.events[0].outcome, Outcome::Ok);
        assert_eq!(one.events[0].ts_ms, NOW);

        let many = parse(
            br#"[{"dependency":"db","duration_ms":1,"outcome":"timeout"},{"dependency":"db","duration_ms":2,"outcome":"error","instance":"i-1","zone":"z","source":"web","extra":1}]"#,
            Format::Json,
            &live(),
        )
        .unwrap();
        assert_eq!(many.events.len(), 2);
        assert_eq!(many.events[1].instance.as_ref().unwrap().as_str(), "i-1");

        let nd = b"{\"dependency\":\"a\",\"duration_ms\":1}\n\n{\"dependency\":\"b\",\"duration_ms\":2}\r\n";
        let nd = parse(nd, Format::Ndjson, &live()).unwrap();
        assert_eq!(nd.events.len(), 2);
        assert_eq!(nd.indexes, vec![0, 2]);
    }

    #[test]
    fn bad_events_are_reported_by_index_and_good_ones_kept() {
        let body = br#"[{"dependency":"ok","duration_ms":1},{"duration_ms":1},{"dependency":"x","duration_ms":-1},7]"#;
        let p = parse(body, Format::Json, &live()).unwrap();
        assert_eq!(p.events.len(), 1);
        let errs: Vec<_> = p
            .errors
            .iter()
            .map(|e| (e.index, e.error.as_str()))
            .collect();
        assert_eq!(errs[0], (1, "dependency: required"));
        assert!(
            errs[1].1.starts_with("duration_ms: must be >= 0"),
            "{}",
            errs[1].1
        );
        assert_eq!(errs[2], (3, "event must be a JSON object, got a number"));
    }

    #[test]
    fn a_capped_parse_counts_every_refusal_and_keeps_the_first_messages() {
        let body = br#"[7,{"duration_ms":1},{"dependency":"ok","duration_ms":1},"x",[],{"dependency":"d","duration_ms":-1}]"#;
        let p = parse_capped(body, Format::Json, &live(), 2).unwrap();
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.rejected, 5);
        let kept: Vec<_> = p
            .errors
            .iter()
            .map(|e| (e.index, e.error.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                (0, "event must be a JSON object, got a number"),
                (1, "dependency: required")
            ]
        );
        let mut by = p.rejected_by.clone();
        by.sort();
        assert_eq!(
            by,
            [
                ("invalid_dependency", 1),
                ("invalid_duration", 1),
                ("not_an_object", 3)
            ]
        );
        let nd = b"1\n{oops\n{\"dependency\":\"a\",\"duration_ms\":1}\n{\"dependency\":\"a\",\"duration_ms\":1} x\n[]\n";
        let p = parse_capped(nd, Format::Ndjson, &live(), 1).unwrap();
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.rejected, 4);
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].index, 0);
        let mut by = p.rejected_by.clone();
        by.sort();
        assert_eq!(by, [("not_an_object", 2), ("other", 2)]);
        // Uncapped, every message is kept.
        assert_eq!(parse(nd, Format::Ndjson, &live()).unwrap().errors.len(), 4);
    }

    #[test]
    fn garbage_is_refused_with_its_position() {
        let err = parse(b"[{\"dependency\": }", Format::Json, &live()).unwrap_err();
        assert!(
            matches!(
                err,
                BodyError::Syntax {
                    line: 1,
                    column: 17,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            parse(b"42", Format::Json, &live()).unwrap_err(),
            BodyError::NotEvents
        );
        let err = parse(b"not json\nat all", Format::Ndjson, &live()).unwrap_err();
        assert!(matches!(err, BodyError::Syntax { line: 1, .. }), "{err:?}");
    }

    #[test]
    fn one_bad_ndjson_line_does_not_sink_the_rest() {
        let p = parse(
            b"{\"dependency\":\"a\",\"duration_ms\":1}\n{oops\n",
            Format::Ndjson,
            &live(),
        )
        .unwrap();
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.errors[0].index, 1);
        assert!(
            p.errors[0].error.starts_with("line 2: invalid JSON"),
            "{}",
            p.errors[0].error
        );
    }

    #[test]
    fn gzip_is_decoded_and_limits_apply_after_decompression() {
        use std::io::Write;
        let plain = br#"{"dependency":"db","duration_ms":1}"#.repeat(100);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&plain).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(
            decode_body(&gz, Some("gzip"), 1 << 20).unwrap().as_ref(),
            &plain[..]
        );
        assert_eq!(
            decode_body(&gz, Some("gzip"), 100).unwrap_err(),
            BodyError::TooLarge { limit: 100 }
        );
        assert!(matches!(
            decode_body(b"nope", Some("gzip"), 100),
            Err(BodyError::Gzip(_))
        ));
        assert!(matches!(
            decode_body(b"x", Some("br"), 100),
            Err(BodyError::Encoding(_))
        ));
    }

    #[test]
    fn content_types_select_the_format() {
        assert_eq!(
            Format::from_content_type(Some("application/x-ndjson; charset=utf-8")),
            Format::Ndjson
        );
        assert_eq!(
            Format::from_content_type(Some("application/json")),
            Format::Json
        );
        assert_eq!(Format::from_content_type(None), Format::Json);
        assert_eq!(Format::of_media_type("text/plain; charset=utf-8"), None);
        assert_eq!(
            Format::of_media_type("Application/JSON; charset=utf-8"),
            Some(Format::Json)
        );
    }
}
