//! The properties the fuzz targets in `fuzz/` check, one function per target, each taking the
//! fuzzer's bytes and panicking (a crash, to libFuzzer) when graywatch misbehaves on them.
//!
//! They live in the library rather than in the fuzz crate so that they call exactly the
//! functions the daemon calls (some are crate-private) and so that `cargo test` replays the
//! committed corpus through them without libFuzzer (see the tests below). Not an API.

use std::io::{BufReader, Read};

use crate::config::{ConfigError, Settings};
use crate::detect::{DetectionSettings, Specs};
use crate::ingest::{self, BodyError, Element, Format, Parsed, Validation, fast};
use crate::window::{Limits, WindowStore};

/// The receipt time of live validation: 2027-01-15T08:00:00Z.
const NOW_MS: i64 = 1_800_000_000_000;
/// A small cap on reported errors, so that capping is exercised on short inputs.
const FEW_ERRORS: usize = 3;

fn validations() -> [(&'static str, Validation); 2] {
    [
        ("live", Validation::live(NOW_MS)),
        ("replay", Validation::replay()),
    ]
}

fn show(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The parts of a parse the caller sees, in a comparable form.
fn outcome<'a, 'p>(r: &'p Result<Parsed<'a>, BodyError>) -> Result<ParsedView<'a, 'p>, BodyError> {
    match r {
        Ok(p) => Ok(ParsedView {
            events: &p.events,
            indexes: &p.indexes,
            errors: &p.errors,
            rejected: p.rejected,
            rejected_by: {
                let mut by = p.rejected_by.clone();
                by.sort_unstable();
                by
            },
        }),
        Err(e) => Err(e.clone()),
    }
}

#[derive(Debug, PartialEq)]
struct ParsedView<'a, 'p> {
    events: &'p [crate::domain::Event<'a>],
    indexes: &'p [usize],
    errors: &'p [ingest::EventError],
    rejected: usize,
    rejected_by: Vec<(&'static str, u64)>,
}

/// The invariants of any successful parse: every refusal counted once by reason, the kept
/// messages the first `max_errors` refusals in index order, events in index order.
fn check_counts(p: &Parsed<'_>, max_errors: usize, data: &[u8]) {
    let by: u64 = p.rejected_by.iter().map(|r| r.1).sum();
    assert_eq!(
        by,
        p.rejected as u64,
        "rejected_by adds up: {:?}",
        show(data)
    );
    assert_eq!(
        p.errors.len(),
        p.rejected.min(max_errors),
        "kept messages: {:?}",
        show(data)
    );
    assert_eq!(p.events.len(), p.indexes.len());
    assert!(
        p.indexes.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        show(data)
    );
    assert!(
        p.errors.windows(2).all(|w| w[0].index < w[1].index),
        "{:?}",
        show(data)
    );
    assert!(
        p.errors.iter().all(|e| !p.indexes.contains(&e.index)),
        "an element both kept and refused: {:?}",
        show(data)
    );
}

/// `fuzz_targets/event_json`: a JSON body parsed by the daemon's parser (the fast scanner,
/// falling back to serde) gives exactly what serde alone gives (events, errors, counts, or the
/// error refusing the whole body), live and in replay, capped and not.
pub fn check_event_json(data: &[u8]) {
    for (mode, v) in validations() {
        for cap in [usize::MAX, FEW_ERRORS] {
            let daemon = ingest::parse_capped(data, Format::Json, &v, cap);
            let general = ingest::parse_json_general(data, &v, cap);
            assert_eq!(
                outcome(&daemon),
                outcome(&general),
                "fast and serde paths differ ({mode}, cap {cap}) on {:?}",
                show(data)
            );
            if let Ok(p) = &daemon {
                check_counts(p, cap, data);
            }
        }
        // The scanner alone, where it answers, hands over the same results in the same order.
        let mut fast_events = Vec::new();
        if fast::each_event(data, &v, |i, e| fast_events.push((i, e))).is_some() {
            let general = ingest::parse_json_general(data, &v, usize::MAX).unwrap_or_else(|e| {
                panic!(
                    "fast path took a body serde refuses ({e}): {:?}",
                    show(data)
                )
            });
            let mut events = general.events.iter().zip(&general.indexes);
            let mut errors = general.errors.iter();
            for (i, e) in fast_events {
                match e {
                    Ok(event) => assert_eq!(events.next(), Some((&event, &i)), "{:?}", show(data)),
                    Err(error) => assert_eq!(
                        errors.next(),
                        Some(&ingest::EventError { index: i, error }),
                        "{:?}",
                        show(data)
                    ),
                }
            }
            assert!(
                events.next().is_none() && errors.next().is_none(),
                "{:?}",
                show(data)
            );
        }
    }
}

/// One line read by serde alone, as the NDJSON and replay paths do when the scanner declines:
/// `None` when it is not JSON.
fn general_line<'a>(
    line: &'a [u8],
    v: &Validation,
) -> Option<Result<crate::domain::Event<'a>, String>> {
    use serde::Deserialize;
    let mut de = serde_json::Deserializer::from_slice(line);
    let element = Element::deserialize(&mut de)
        .and_then(|el| de.end().map(|()| el))
        .ok()?;
    Some(match element {
        Element::Event(raw) => v.validate(raw),
        Element::NotAnObject(kind) => Err(format!("event must be a JSON object, got {kind}")),
    })
}

/// Splits like the NDJSON parser: on `\n`, the last line running to the end.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
}

fn blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// `fuzz_targets/ndjson_body`: every line the scanner reads, serde reads the same; a body
/// either is refused whole (when not one line is JSON) or accounts for each non-blank line as
/// one event or one refusal; capping the messages changes nothing else; and the daemon's
/// whole ingest of the body (parse, then record into the windows) agrees with the parse.
pub fn check_ndjson_body(data: &[u8]) {
    let non_blank = lines(data).filter(|l| !blank(l)).count();
    for (mode, v) in validations() {
        for line in lines(data) {
            if let Some(fast) = fast::json_line(line, &v) {
                assert_eq!(
                    Some(fast),
                    general_line(line, &v),
                    "fast and serde paths differ ({mode}) on line {:?}",
                    show(line)
                );
            }
        }
        let all = ingest::parse(data, Format::Ndjson, &v);
        let capped = ingest::parse_capped(data, Format::Ndjson, &v, FEW_ERRORS);
        match (&all, &capped) {
            (Ok(all), Ok(capped)) => {
                check_counts(all, usize::MAX, data);
                check_counts(capped, FEW_ERRORS, data);
                assert_eq!(
                    all.events.len() + all.rejected,
                    non_blank,
                    "{:?}",
                    show(data)
                );
                assert_eq!(all.events, capped.events);
                assert_eq!(all.rejected, capped.rejected);
                assert_eq!(&all.errors[..capped.errors.len()], &capped.errors[..]);
            }
            (Err(a), Err(c)) => {
                assert_eq!(a, c);
                assert!(matches!(a, BodyError::Syntax { .. }), "{a:?}");
                assert!(
                    non_blank > 0 && lines(data).all(|l| blank(l) || general_line(l, &v).is_none()),
                    "refused whole though a line is JSON: {:?}",
                    show(data)
                );
            }
            _ => panic!("capping changed the answer ({mode}): {:?}", show(data)),
        }
    }
    // The daemon's ingest of the same body, into a fresh window store.
    let store = WindowStore::new(Limits::default());
    let parsed = ingest::parse(data, Format::Ndjson, &Validation::live(NOW_MS));
    let answer = crate::api::ingest_body(
        &store,
        data,
        None,
        Format::Ndjson,
        1 << 20,
        NOW_MS,
        FEW_ERRORS,
    );
    match (parsed, answer) {
        (Ok(p), Ok(a)) => {
            assert_eq!(a.accepted + a.rejected, non_blank, "{:?}", show(data));
            assert_eq!(a.errors.len(), a.rejected.min(FEW_ERRORS));
            assert_eq!(a.errors_truncated, a.rejected > FEW_ERRORS);
            assert!(a.accepted <= p.events.len());
            let by: u64 = a.rejected_by.iter().map(|r| r.1).sum();
            assert_eq!(by, a.rejected as u64);
        }
        (Err(p), Err(a)) => assert_eq!(p, a),
        (p, a) => panic!("parse {p:?} but ingest {:?}", a.map(|a| a.accepted)),
    }
}

/// `fuzz_targets/gzip_body`: the first byte picks a size limit (0 to 4032 bytes) and whether
/// the rest is sent as it is (almost always broken gzip) or compressed first (valid gzip of
/// arbitrary content). Decoding never yields more than the limit, refuses exactly the streams
/// that decode to more, and otherwise yields what an unbounded decoder yields; the daemon's
/// ingest of the body answers accordingly.
pub fn check_gzip_body(data: &[u8]) {
    use std::io::Write;
    let Some((&head, payload)) = data.split_first() else {
        return;
    };
    let limit = usize::from(head & 0x3f) * 64;
    let compress = head & 0x40 != 0;
    let format = if head & 0x80 != 0 {
        Format::Ndjson
    } else {
        Format::Json
    };
    let body = if compress {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(payload).expect("in memory");
        enc.finish().expect("in memory")
    } else {
        payload.to_vec()
    };
    let decoded = ingest::decode_body(&body, Some("gzip"), limit);
    // An unbounded decoder (inputs are small, so even a bomb stays within a few MiB here).
    let mut full = Vec::new();
    let full_result = flate2::read::MultiGzDecoder::new(&body[..])
        .take(64 << 20)
        .read_to_end(&mut full);
    match &decoded {
        Ok(out) => {
            assert!(
                out.len() <= limit,
                "{} bytes past a limit of {limit}",
                out.len()
            );
            assert!(
                full_result.is_ok(),
                "accepted a stream that fails: {full_result:?}"
            );
            assert_eq!(out.as_ref(), &full[..]);
        }
        Err(BodyError::TooLarge { limit: l }) => {
            assert_eq!(*l, limit);
            assert!(
                full.len() > limit,
                "refused {} bytes as over {limit}",
                full.len()
            );
        }
        Err(BodyError::Gzip(_)) => assert!(full_result.is_err(), "refused a valid stream"),
        Err(e) => panic!("unexpected {e:?}"),
    }
    if compress {
        match &decoded {
            Ok(out) => assert_eq!(out.as_ref(), payload),
            Err(e) => assert!(
                payload.len() > limit && matches!(e, BodyError::TooLarge { .. }),
                "{e:?} for {} bytes under a limit of {limit}",
                payload.len()
            ),
        }
    }
    let store = WindowStore::new(Limits::default());
    let answer = crate::api::ingest_body(
        &store,
        &body,
        Some("gzip"),
        format,
        limit,
        NOW_MS,
        FEW_ERRORS,
    );
    match (decoded, answer) {
        (Ok(plain), Ok(a)) => {
            assert!(ingest::parse(&plain, format, &Validation::live(NOW_MS)).is_ok());
            assert_eq!(a.errors.len(), a.rejected.min(FEW_ERRORS));
        }
        (Ok(plain), Err(e)) => {
            assert_eq!(
                ingest::parse(&plain, format, &Validation::live(NOW_MS)).err(),
                Some(e)
            );
        }
        (Err(d), Err(a)) => assert_eq!(d, a),
        (Err(d), Ok(_)) => panic!("decoding refused ({d}) but ingest accepted"),
    }
}

/// The top-level keys of the configuration file: a problem found in it names one of them
/// (followed by the path to the field).
const TOP_LEVEL_KEYS: [&str; 14] = [
    "listen",
    "database",
    "node_id",
    "ingest",
    "http",
    "limits",
    "storage",
    "detection",
    "dependencies",
    "notifiers",
    "routes",
    "routing",
    "breakers",
    "auth",
];

/// `fuzz_targets/config_toml`: any text read as the configuration file gives settings or an
/// error, never a panic; every problem names the field at fault, from a top-level key, with
/// its value and why; and settings that were accepted are accepted again.
pub fn check_config(data: &[u8]) {
    // The daemon reads the file into a String first: other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Settings::from_toml(text, "fuzz.toml") {
        Ok(settings) => {
            let again = settings.clone().validated("fuzz.toml");
            assert!(again.is_ok(), "accepted, then refused: {again:?}");
        }
        Err(ConfigError::Parse { message, .. }) => {
            assert!(
                !message.trim().is_empty(),
                "a parse error without a message"
            );
        }
        Err(ConfigError::Invalid { problems, .. }) => {
            assert!(!problems.is_empty());
            for p in problems {
                let top = p.key.split(['.', '[']).next().unwrap_or("");
                assert!(
                    TOP_LEVEL_KEYS.contains(&top),
                    "a problem that names no field: {p:?}"
                );
                assert!(
                    !p.why.trim().is_empty(),
                    "a problem without a reason: {p:?}"
                );
            }
        }
        Err(e @ ConfigError::Read { .. }) => panic!("read error from text: {e}"),
    }
}

/// `fuzz_targets/replay_lines`: `graywatch replay` on any input goes through without an
/// error, accounts for each line (event, skipped, refused or blank), and gives the same
/// output, diagnostics and counts whatever its reader's buffer size (lines split across
/// buffer ends read like whole ones).
pub fn check_replay(data: &[u8]) {
    let run = |capacity: usize| {
        let (mut out, mut diag) = (Vec::new(), Vec::new());
        let s = crate::replay::replay(
            BufReader::with_capacity(capacity, data),
            &mut out,
            &mut diag,
            DetectionSettings::default(),
            Specs::default(),
            Limits::default(),
        )
        .expect("replay of bytes in memory cannot fail");
        (
            out,
            diag,
            (
                s.lines,
                s.events,
                s.malformed,
                s.refused,
                s.fired,
                s.resolved,
            ),
        )
    };
    let whole = run(1 << 16);
    let (lines_read, events, malformed, refused, ..) = whole.2;
    let line_count = data.split(|&b| b == b'\n').count() as u64
        - u64::from(data.ends_with(b"\n") || data.is_empty());
    assert_eq!(lines_read, line_count, "{:?}", show(data));
    let blank_lines = data
        .split(|&b| b == b'\n')
        .take(line_count as usize)
        .filter(|l| blank(l))
        .count() as u64;
    assert_eq!(
        events + malformed + refused + blank_lines,
        lines_read,
        "{:?}",
        show(data)
    );
    let diag_lines = whole.1.iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(diag_lines, malformed + refused);
    let capacity = 1 + data.len() % 13;
    assert_eq!(
        run(capacity),
        whole,
        "reader buffer of {capacity}: {:?}",
        show(data)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs every file of a target's committed corpus through its check.
    fn replay_corpus(target: &str, check: fn(&[u8])) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            let result = std::panic::catch_unwind(|| check(&data));
            assert!(result.is_ok(), "{} fails its check", path.display());
            n += 1;
        }
        assert!(
            n >= 5,
            "{target}: only {n} corpus files in {}",
            dir.display()
        );
    }

    #[test]
    fn the_event_json_corpus_passes() {
        replay_corpus("event_json", check_event_json);
    }

    #[test]
    fn the_ndjson_body_corpus_passes() {
        replay_corpus("ndjson_body", check_ndjson_body);
    }

    #[test]
    fn the_gzip_body_corpus_passes() {
        replay_corpus("gzip_body", check_gzip_body);
    }

    #[test]
    fn the_config_toml_corpus_passes() {
        replay_corpus("config_toml", check_config);
    }

    #[test]
    fn the_replay_lines_corpus_passes() {
        replay_corpus("replay_lines", check_replay);
    }
}
