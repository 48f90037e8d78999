//! Roll-ups the database still refused when the daemon stopped, kept in a file beside the
//! database until the next start writes them.
//!
//! The last flush at shutdown writes every minute in memory within its budget. What it could
//! not write (the database is locked, read-only, or too slow) would be lost with the process;
//! instead the minutes go to `<database>-unsaved-rollups.jsonl`, one stored row per line, with
//! the part numbers they were given, so writing a line twice stores the same row twice over
//! the same key rather than counting its calls twice. The file is replaced whole (see
//! [`crate::storage::files`]); an earlier file the last start could not write is kept ahead
//! of the new lines. At most [`MAX_BYTES`]; lines beyond are dropped and counted.

use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::storage::{RollupRow, files};
use crate::window::{Counts, SeriesKey, SeriesKind};

/// The most the file holds: a line of a quiet series' minute should be about 300 bytes (an
/// estimate from the fields and a histogram of tens of distinct values, not measured), so
/// about nine minutes of 100,000 series. Written and parsed a line at a time.
pub const MAX_BYTES: usize = 256 * 1024 * 1024;

/// One line: a stored row, its histogram in base64.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    dependency: String,
    kind: String,
    label: String,
    minute_ms: i64,
    node: String,
    part: i64,
    counts: Counts,
    histogram: String,
}

impl From<&RollupRow> for Line {
    fn from(r: &RollupRow) -> Self {
        Self {
            dependency: r.key.dependency.clone(),
            kind: r.key.kind.as_str().to_string(),
            label: r.key.label.clone(),
            minute_ms: r.minute_ms,
            node: r.node.clone(),
            part: r.part,
            counts: r.counts,
            histogram: BASE64.encode(&r.histogram),
        }
    }
}

impl Line {
    fn into_row(self) -> Option<RollupRow> {
        Some(RollupRow {
            key: SeriesKey {
                dependency: self.dependency,
                kind: SeriesKind::parse(&self.kind)?,
                label: self.label,
            },
            minute_ms: self.minute_ms,
            node: self.node,
            part: self.part,
            counts: self.counts,
            histogram: BASE64.decode(self.histogram).ok()?,
        })
    }
}

/// The file for the database at `url`; `None` for an in-memory database.
pub fn path_for(url: &str) -> Option<PathBuf> {
    files::beside_database(url, "-unsaved-rollups.jsonl")
}

/// What [`keep`] wrote: lines of an earlier file kept, new rows, and lines dropped for want
/// of room.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub earlier: usize,
    pub rows: usize,
    pub dropped: usize,
}

/// Replaces the file at `path` with the lines of the file already there, then `rows` (in
/// their order: main rows before the late parts written after them), up to [`MAX_BYTES`].
pub fn keep(path: &Path, rows: &[RollupRow]) -> io::Result<Kept> {
    keep_within(path, rows, MAX_BYTES)
}

fn keep_within(path: &Path, rows: &[RollupRow], max_bytes: usize) -> io::Result<Kept> {
    let mut kept = Kept::default();
    // The earlier file is read while the new one is written beside it.
    let earlier = match fs::File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    files::replace_with(path, |out| {
        let mut size = 0;
        let mut put = |line: &[u8], out: &mut dyn Write| -> io::Result<bool> {
            if size + line.len() + 1 > max_bytes {
                return Ok(false);
            }
            size += line.len() + 1;
            out.write_all(line)?;
            out.write_all(b"\n")?;
            Ok(true)
        };
        if let Some(earlier) = earlier {
            for line in io::BufReader::new(earlier)
                .take(2 * MAX_BYTES as u64)
                .lines()
            {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                match put(line.as_bytes(), out)? {
                    true => kept.earlier += 1,
                    false => kept.dropped += 1,
                }
            }
        }
        let mut line = Vec::new();
        for row in rows {
            line.clear();
            serde_json::to_writer(&mut line, &Line::from(row))?;
            match put(&line, out)? {
                true => kept.rows += 1,
                false => kept.dropped += 1,
            }
        }
        Ok(())
    })?;
    Ok(kept)
}

/// The rows of the file at `path`, in order, and how many lines could not be read; `None`
/// if there is no file.
pub fn read(path: &Path) -> io::Result<Option<(Vec<RollupRow>, usize)>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (mut rows, mut unreadable) = (Vec::new(), 0);
    // Bounded like the writer: a larger file was not written by graywatch.
    for line in io::BufReader::new(file).take(2 * MAX_BYTES as u64).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line)
            .ok()
            .and_then(Line::into_row)
        {
            Some(row) => rows.push(row),
            None => unreadable += 1,
        }
    }
    Ok(Some((rows, unreadable)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, minute_ms: i64, part: i64, ok: u64) -> RollupRow {
        let mut hist = crate::window::new_histogram::<u32>();
        hist.record_n(1_500, ok as u32).unwrap();
        RollupRow {
            key: SeriesKey {
                dependency: "payments".into(),
                kind: if label.is_empty() {
                    SeriesKind::Dependency
                } else {
                    SeriesKind::Instance
                },
                label: label.into(),
            },
            minute_ms,
            node: "n1".into(),
            part,
            counts: Counts {
                ok,
                error: 1,
                ..Counts::default()
            },
            histogram: crate::window::encode_histogram(&hist),
        }
    }

    #[test]
    fn the_file_sits_beside_a_database_file_and_there_is_none_in_memory() {
        assert_eq!(
            path_for("sqlite:///var/lib/graywatch/gw.db?mode=rwc"),
            Some(PathBuf::from(
                "/var/lib/graywatch/gw.db-unsaved-rollups.jsonl"
            ))
        );
        assert_eq!(path_for("sqlite::memory:"), None);
    }

    #[test]
    fn rows_kept_are_read_back_equal_after_an_earlier_file_s() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db-unsaved-rollups.jsonl");
        assert!(read(&path).unwrap().is_none());
        let first = [row("", 60_000, 0, 3)];
        assert_eq!(keep(&path, &first).unwrap().rows, 1);
        let second = [row("i-1", 120_000, 0, 4), row("i-1", 60_000, 7, 2)];
        let kept = keep(&path, &second).unwrap();
        assert_eq!(
            kept,
            Kept {
                earlier: 1,
                rows: 2,
                dropped: 0
            }
        );
        let (rows, unreadable) = read(&path).unwrap().unwrap();
        assert_eq!(unreadable, 0);
        assert_eq!(rows, [first.to_vec(), second.to_vec()].concat());
    }

    #[test]
    fn the_file_is_bounded_and_what_does_not_fit_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db-unsaved-rollups.jsonl");
        let rows: Vec<RollupRow> = (0..10).map(|m| row("", m * 60_000, 0, 1)).collect();
        let line = serde_json::to_vec(&Line::from(&rows[0])).unwrap().len() + 1;
        let kept = keep_within(&path, &rows, 4 * line + line / 2).unwrap();
        assert_eq!((kept.rows, kept.dropped), (4, 6));
        let (back, _) = read(&path).unwrap().unwrap();
        assert_eq!(back, rows[..4]);
    }

    #[test]
    fn a_damaged_line_is_skipped_and_the_rest_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db-unsaved-rollups.jsonl");
        keep(&path, &[row("", 60_000, 0, 3)]).unwrap();
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("{\"dependency\":\"x\",\"kind\":\"planet\"}\nnot json\n");
        fs::write(&path, &text).unwrap();
        keep(&path, &[row("", 120_000, 0, 5)]).unwrap();
        let (rows, unreadable) = read(&path).unwrap().unwrap();
        assert_eq!((rows.len(), unreadable), (2, 2));
        assert_eq!(rows[1].counts.ok, 5);
    }
}
