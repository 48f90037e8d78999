//! What the database still refused when the daemon stopped: alert transitions and breaker
//! notifications, kept in a file beside the database until the next start writes them.
//!
//! While the daemon runs, what the database refuses waits in memory and is retried. At
//! shutdown the writer keeps retrying within its budget; what is still refused then would be
//! lost with the process. Instead it goes to `<database>-unsaved.jsonl`: JSON lines, one
//! transition or breaker notification each, written to a temporary file, synced and renamed
//! over the old one, so a crash while writing leaves either the old file or the new one
//! whole. The next start reads it, writes its content into the database before detection
//! restores the firing alerts (so a spilled firing alert is known as firing) and removes it.
//! If that start cannot write it either, the file stays, and the next shutdown keeps its lines
//! ahead of its own.
//!
//! The file holds at most [`MAX_BYTES`]; lines beyond are dropped (breaker notifications go
//! first, then transitions oldest first) and the number dropped is logged.

use std::fs;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::breaker::BreakerState;
use super::breaker_notices::Waiting;
use crate::detect::Transition;
use crate::storage::files;

/// The most the file holds: about 10,000 transitions with their evidence, or a hundred
/// thousand breaker notifications.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// One line of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Transition(Transition),
    Breaker(BreakerLine),
}

/// A breaker notification as the file holds it.
#[derive(Debug, Serialize, Deserialize)]
struct BreakerLine {
    notifier: String,
    dependency: String,
    instance: Option<String>,
    state: BreakerState,
    reason: String,
    at_ms: i64,
    superseded: u32,
}

impl From<&Waiting> for BreakerLine {
    fn from(w: &Waiting) -> Self {
        Self {
            notifier: w.notifier.clone(),
            dependency: w.dependency.clone(),
            instance: w.instance.clone(),
            state: w.state,
            reason: w.reason.clone(),
            at_ms: w.at_ms,
            superseded: w.superseded,
        }
    }
}

impl From<BreakerLine> for Waiting {
    fn from(b: BreakerLine) -> Self {
        let mut w = Waiting::new(
            &b.notifier,
            &b.dependency,
            b.instance.as_deref(),
            b.state,
            &b.reason,
            b.at_ms,
        );
        w.superseded = b.superseded;
        w
    }
}

/// What a spill file holds, in the order it was kept.
#[derive(Debug, Default)]
pub struct Unsaved {
    pub transitions: Vec<Transition>,
    pub breaker_notices: Vec<Waiting>,
    /// Lines that could not be read (a file from another version, or damaged): skipped.
    pub unreadable: usize,
}

impl Unsaved {
    pub fn is_empty(&self) -> bool {
        self.transitions.is_empty() && self.breaker_notices.is_empty()
    }
}

/// What [`keep`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// Lines of an earlier file that no start could write, kept ahead of the new ones.
    pub earlier: usize,
    pub transitions: usize,
    pub breaker_notices: usize,
    /// Lines left out at [`MAX_BYTES`].
    pub dropped: usize,
}

/// The spill file of the database at `url`, `None` for an in-memory database.
pub fn path_for(url: &str) -> Option<PathBuf> {
    files::beside_database(url, "-unsaved.jsonl")
}

/// Writes `transitions` and `breaker_notices` to `path`, after the lines an earlier file
/// there still holds, at most [`MAX_BYTES`] in all. Atomic: the file is written beside,
/// synced, then renamed over `path`.
pub fn keep(
    path: &Path,
    transitions: &[Transition],
    breaker_notices: &[Waiting],
) -> io::Result<Kept> {
    let mut kept = Kept::default();
    let mut out: Vec<u8> = Vec::new();
    let add = |line: &[u8], out: &mut Vec<u8>| -> bool {
        if out.len() + line.len() + 1 > MAX_BYTES {
            return false;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
        true
    };
    match fs::File::open(path) {
        Ok(earlier) => {
            for line in io::BufReader::new(earlier).lines() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                if add(line.as_bytes(), &mut out) {
                    kept.earlier += 1;
                } else {
                    kept.dropped += 1;
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    for w in breaker_notices {
        let line = serde_json::to_vec(&Line::Breaker(w.into()))?;
        if add(&line, &mut out) {
            kept.breaker_notices += 1;
        } else {
            kept.dropped += 1;
        }
    }
    for t in transitions {
        let line = serde_json::to_vec(&Line::Transition(t.clone()))?;
        if add(&line, &mut out) {
            kept.transitions += 1;
        } else {
            kept.dropped += 1;
        }
    }
    files::replace(path, &out)?;
    Ok(kept)
}

/// Replaces `path` with exactly `transitions` and `breaker_notices` (what a start could not
/// write of a file it read), or removes it when both are empty.
pub fn rewrite(path: &Path, unsaved: &Unsaved) -> io::Result<()> {
    if unsaved.is_empty() {
        return files::remove(path);
    }
    let mut out = Vec::new();
    for w in &unsaved.breaker_notices {
        serde_json::to_writer(&mut out, &Line::Breaker(w.into()))?;
        out.push(b'\n');
    }
    for t in &unsaved.transitions {
        serde_json::to_writer(&mut out, &Line::Transition(t.clone()))?;
        out.push(b'\n');
    }
    files::replace(path, &out)
}

/// Reads the file at `path`; `None` if there is none.
pub fn read(path: &Path) -> io::Result<Option<Unsaved>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut unsaved = Unsaved::default();
    // Bounded like the writer: a file larger than that was not written by graywatch.
    let mut reader = io::BufReader::new(file).take(2 * MAX_BYTES as u64);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Transition(t)) => unsaved.transitions.push(t),
            Ok(Line::Breaker(b)) => unsaved.breaker_notices.push(b.into()),
            Err(_) => unsaved.unreadable += 1,
        }
    }
    Ok(Some(unsaved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{AlertStatus, DetectorKind, Severity};
    use std::io::Write;

    fn transition(dep: &str, status: AlertStatus) -> Transition {
        Transition {
            at_ms: 1_000,
            status,
            dependency: dep.into(),
            instance: Some("i-1".into()),
            zone: None,
            source: None,
            detector: DetectorKind::HardFailure,
            detectors: vec![DetectorKind::HardFailure, DetectorKind::ErrorRate],
            severity: Severity::Failing,
            previous_severity: None,
            summary: "\u{1b}[31m quoted \"text\"\nnew line".into(),
            evidence: serde_json::json!({"error_rate": 0.5, "window": "1m"}),
            started_ms: 900,
            resolved_ms: None,
        }
    }

    fn notice(dep: &str, state: BreakerState) -> Waiting {
        let mut w = Waiting::new("hook", dep, None, state, "failing", 1_000);
        w.superseded = 2;
        w
    }

    #[test]
    fn the_file_sits_beside_a_database_file_and_there_is_none_in_memory() {
        assert_eq!(
            path_for("sqlite:///var/lib/graywatch/gw.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/graywatch/gw.db-unsaved.jsonl"))
        );
        assert_eq!(
            path_for("sqlite:gw.db"),
            Some(PathBuf::from("gw.db-unsaved.jsonl"))
        );
        assert_eq!(path_for("sqlite::memory:"), None);
        assert_eq!(path_for("sqlite://:memory:"), None);
        assert_eq!(path_for("sqlite://file?mode=memory&cache=shared"), None);
    }

    #[test]
    fn what_is_kept_is_read_back_whole_and_an_earlier_file_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db-unsaved.jsonl");
        assert!(read(&path).unwrap().is_none());
        let first = keep(
            &path,
            &[transition("db", AlertStatus::Firing)],
            &[notice("db", BreakerState::Open)],
        )
        .unwrap();
        assert_eq!(
            first,
            Kept {
                earlier: 0,
                transitions: 1,
                breaker_notices: 1,
                dropped: 0
            }
        );
        // A start that could not write it: the next shutdown keeps those lines first.
        let second = keep(&path, &[transition("db", AlertStatus::Resolved)], &[]).unwrap();
        assert_eq!(second.earlier, 2);
        let back = read(&path).unwrap().unwrap();
        assert_eq!(back.unreadable, 0);
        assert_eq!(
            back.transitions,
            vec![
                transition("db", AlertStatus::Firing),
                transition("db", AlertStatus::Resolved)
            ]
        );
        assert_eq!(back.breaker_notices, vec![notice("db", BreakerState::Open)]);
        assert!(!dir.path().join("gw.db-unsaved.jsonl.tmp").exists());

        // What a start wrote goes; what it could not write stays alone.
        rewrite(
            &path,
            &Unsaved {
                breaker_notices: vec![notice("db", BreakerState::HalfOpen)],
                ..Unsaved::default()
            },
        )
        .unwrap();
        let back = read(&path).unwrap().unwrap();
        assert!(back.transitions.is_empty());
        assert_eq!(
            back.breaker_notices,
            vec![notice("db", BreakerState::HalfOpen)]
        );
        rewrite(&path, &Unsaved::default()).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn the_file_is_bounded_and_a_damaged_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db-unsaved.jsonl");
        let mut big = transition("db", AlertStatus::Firing);
        big.summary = "x".repeat(MAX_BYTES / 3);
        let kept = keep(
            &path,
            &[big.clone(), big.clone(), big],
            &[notice("db", BreakerState::Open)],
        )
        .unwrap();
        assert_eq!(kept.breaker_notices, 1);
        assert_eq!(kept.transitions, 2);
        assert_eq!(kept.dropped, 1);
        assert!(fs::metadata(&path).unwrap().len() <= MAX_BYTES as u64);

        fs::write(&path, "{\"kind\":\"breaker\",\"notifier\":1}\nnot json\n").unwrap();
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(
            &serde_json::to_vec(&Line::Breaker((&notice("db", BreakerState::Closed)).into()))
                .unwrap(),
        )
        .unwrap();
        let back = read(&path).unwrap().unwrap();
        assert_eq!(back.unreadable, 2);
        assert_eq!(
            back.breaker_notices,
            vec![notice("db", BreakerState::Closed)]
        );
    }
}
