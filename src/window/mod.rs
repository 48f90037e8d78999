//! Rolling windows: per-series rings of HdrHistogram slots, keyed by event time.
//!
//! Synchronous and free of I/O: callers pass the current time in, so the same store serves
//! the live daemon (wall clock) and `replay` (event time). Snapshots are mergeable, which is
//! what roll-ups and cluster merges are built on.

mod encode;
mod fine;
mod histogram;
mod prefetch;
mod ring;
mod sample;
mod series;
mod slot;
mod slot_hist;
mod snapshot;
mod store;
mod totals;

use std::fmt;
use std::str::FromStr;

pub use encode::{HistogramEncoder, decode_stored};
pub use histogram::{
    HIGHEST_US, LOWEST_US, SlotHistogram, new_histogram, quantile_us, slot_histogram_bytes,
};
pub use sample::Sample;
pub use series::{MinuteRollup, Series};
pub use slot::{Counts, Slot};
pub use slot_hist::SlotHist;
pub use snapshot::{Snapshot, WindowStats, decode_histogram, encode_histogram};
pub use store::{
    DependencyTotals, DependencyView, DetectionView, IdleTotal, Limits, PeerTotals, PeerView,
    RecordError, SeriesKey, SeriesKind, StoreStats, WindowStore,
};
pub use totals::{BUCKET_BOUNDS_US, LatencyBuckets, Totals};

/// The windows every series reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    S10,
    M1,
    M5,
    M15,
    H1,
}

impl Window {
    pub const ALL: [Window; 5] = [Window::S10, Window::M1, Window::M5, Window::M15, Window::H1];
    /// The longest window: events older than this are refused at ingest.
    pub const LONGEST_MS: i64 = 3_600_000;

    pub fn as_str(self) -> &'static str {
        match self {
            Window::S10 => "10s",
            Window::M1 => "1m",
            Window::M5 => "5m",
            Window::M15 => "15m",
            Window::H1 => "1h",
        }
    }

    pub fn duration_ms(self) -> i64 {
        match self {
            Window::S10 => 10_000,
            Window::M1 => 60_000,
            Window::M5 => 300_000,
            Window::M15 => 900_000,
            Window::H1 => 3_600_000,
        }
    }

    /// Coarse tier the window reads (`None`: the 1-second ring alone).
    fn tier(self) -> Option<usize> {
        match self {
            Window::S10 => None,
            Window::M1 => Some(0),
            Window::M5 | Window::M15 => Some(1),
            Window::H1 => Some(2),
        }
    }

    /// Slots of its tier the window spans, the current (partial) one included.
    fn slots(self) -> usize {
        match self {
            Window::S10 => 10,
            Window::M1 => 6,
            Window::M5 => 5,
            Window::M15 => 15,
            Window::H1 => 12,
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Window::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| format!("unknown window {s:?}; expected one of 10s, 1m, 5m, 15m, 1h"))
    }
}
