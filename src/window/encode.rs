//! Slot histograms in HdrHistogram's V2 encoding, as roll-ups store them.
//!
//! The V2 encoding is a fixed header (bounds and precision) followed by the counters from the
//! first to the highest used one, each a zig-zag LEB128 varint, with a run of two or more
//! empty counters written as one negative number. [`HistogramEncoder`] writes it straight from
//! a slot's used buckets, sparse or dense, instead of first expanding the slot into a 13 KiB
//! histogram and then scanning its 3,328 counters, and gives the same bytes HdrHistogram's own
//! serializer gives for that histogram.
//!
//! Deflating (the "compressed" V2 form) pays only for long encodings: a minute of an instance
//! that saw a few calls encodes in some 50 bytes, which zlib's framing alone would grow, and
//! building deflate's code tables dominated the cost of writing roll-ups. So an encoding of up
//! to [`DEFLATE_ABOVE`] bytes is stored as it is, and a longer one deflated by a compressor
//! the encoder keeps and resets instead of allocating one per histogram. Both are standard
//! HdrHistogram encodings, told apart by their cookie; every HdrHistogram reader (and
//! [`super::decode_histogram`]) reads either.

use flate2::{Compress, Compression, FlushCompress, Status};

use super::histogram::{HIGHEST_US, LOWEST_US, SIGFIG};
use super::slot_hist::SlotHist;

/// HdrHistogram's cookies for the V2 encoding, plain and deflated.
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_DEFLATE_COOKIE: u32 = 0x1c84_9304 | 0x10;
/// Cookie, payload length, normalizing offset, significant digits, lowest and highest
/// trackable values, integer-to-double ratio.
const V2_HEADER_BYTES: usize = 40;
/// Longest plain encoding stored as it is.
pub(crate) const DEFLATE_ABOVE: usize = 512;

/// Encodes slot histograms one after the other, reusing its buffer and deflate state.
pub struct HistogramEncoder {
    plain: Vec<u8>,
    deflate: Compress,
}

impl Default for HistogramEncoder {
    fn default() -> Self {
        Self {
            plain: Vec::with_capacity(1_024),
            deflate: Compress::new(Compression::default(), true),
        }
    }
}

impl HistogramEncoder {
    /// The stored encoding of `hist`: plain V2 up to [`DEFLATE_ABOVE`] bytes, deflated V2
    /// beyond.
    pub fn encode(&mut self, hist: &SlotHist) -> Vec<u8> {
        write_plain(hist, &mut self.plain);
        if self.plain.len() <= DEFLATE_ABOVE {
            return self.plain.clone();
        }
        self.deflate.reset();
        let mut out = Vec::with_capacity(8 + self.plain.len() / 2 + 64);
        out.extend_from_slice(&V2_DEFLATE_COOKIE.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        loop {
            let consumed = self.deflate.total_in() as usize;
            let status = self
                .deflate
                .compress_vec(&self.plain[consumed..], &mut out, FlushCompress::Finish)
                .expect("deflating into memory cannot fail");
            if status == Status::StreamEnd {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        let deflated = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&deflated.to_be_bytes());
        out
    }
}

/// Writes the plain V2 encoding of `hist` into `out` (cleared first).
fn write_plain(hist: &SlotHist, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&V2_COOKIE.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // payload length, set below
    out.extend_from_slice(&0u32.to_be_bytes()); // normalizing index offset
    out.extend_from_slice(&u32::from(SIGFIG).to_be_bytes());
    out.extend_from_slice(&LOWEST_US.to_be_bytes());
    out.extend_from_slice(&HIGHEST_US.to_be_bytes());
    out.extend_from_slice(&1.0f64.to_be_bytes());
    debug_assert_eq!(out.len(), V2_HEADER_BYTES);
    // The counters from index 0 to the highest used one; the gaps before a used bucket are
    // runs of zeros. An empty histogram is its counter 0 alone.
    let mut next = 0u32;
    hist.for_each_entry(|index, count| {
        match index - next {
            0 => {}
            1 => put_varint(out, 0),
            gap => put_varint(out, zig_zag(-i64::from(gap))),
        }
        put_varint(out, zig_zag(count as i64));
        next = index + 1;
    });
    if next == 0 {
        put_varint(out, 0);
    }
    let payload = (out.len() - V2_HEADER_BYTES) as u32;
    out[4..8].copy_from_slice(&payload.to_be_bytes());
}

fn zig_zag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

/// LEB128, as HdrHistogram writes it for values under 2^56 (a count here is under 2^33).
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer, V2Serializer};
    use proptest::prelude::*;

    use super::*;
    use crate::window::decode_histogram;
    use crate::window::histogram::{SlotHistogram, new_histogram};

    fn histogram(values: &[(u64, u32)]) -> SlotHistogram {
        let mut h: SlotHistogram = new_histogram();
        for &(v, n) in values {
            h.saturating_record_n(v.min(HIGHEST_US), n);
        }
        h
    }

    fn crate_plain(h: &SlotHistogram) -> Vec<u8> {
        let mut out = Vec::new();
        V2Serializer::new().serialize(h, &mut out).unwrap();
        out
    }

    fn both_forms(h: &SlotHistogram) -> [SlotHist; 2] {
        let mut dense = SlotHist::dense();
        dense.add_histogram(h);
        let mut sparse = SlotHist::default();
        sparse.add_histogram(h);
        [sparse, dense]
    }

    proptest! {
        /// Sparse or dense, the plain encoding is HdrHistogram's to the byte, and what is
        /// stored (plain or deflated) reads back as the same histogram.
        #[test]
        fn encodings_are_hdrhistograms_own_and_read_back_the_same(
            values in prop::collection::vec((1u64..5_000_000_000, 1u32..1_000), 0..600),
        ) {
            let h = histogram(&values);
            let mut encoder = HistogramEncoder::default();
            for form in both_forms(&h) {
                let mut plain = Vec::new();
                write_plain(&form, &mut plain);
                prop_assert_eq!(&plain, &crate_plain(&h));
                let stored = encoder.encode(&form);
                if plain.len() <= DEFLATE_ABOVE {
                    prop_assert_eq!(&stored, &plain);
                } else {
                    prop_assert_eq!(&stored[..4], &V2_DEFLATE_COOKIE.to_be_bytes()[..]);
                }
                let back = decode_histogram(&stored).unwrap();
                prop_assert_eq!(&back, &h);
                prop_assert_eq!(back.len(), h.len());
            }
        }
    }

    #[test]
    fn an_empty_histogram_encodes_as_hdrhistogram_encodes_it() {
        let h = histogram(&[]);
        for form in both_forms(&h) {
            let mut plain = Vec::new();
            write_plain(&form, &mut plain);
            assert_eq!(plain, crate_plain(&h));
        }
    }

    /// A long encoding is deflated, by a compressor reused across histograms, into the bytes
    /// HdrHistogram's own deflating serializer writes.
    #[test]
    fn a_long_encoding_is_deflated_as_hdrhistogram_deflates_it() {
        let mut encoder = HistogramEncoder::default();
        for seed in 1..4u64 {
            let values: Vec<(u64, u32)> = (0..2_000u64)
                .map(|i| (1 + (i * 7_919 * seed) % 3_000_000, 1 + (i % 5) as u32))
                .collect();
            let h = histogram(&values);
            let mut theirs = Vec::new();
            V2DeflateSerializer::new()
                .serialize(&h, &mut theirs)
                .unwrap();
            let ours = encoder.encode(&SlotHist::from_histogram(&h));
            assert!(ours.len() < crate_plain(&h).len(), "deflated");
            assert_eq!(ours, theirs, "seed {seed}");
        }
    }
}
