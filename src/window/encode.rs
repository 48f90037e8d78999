//! Slot histograms in HdrHistogram's V2 encoding, as roll-ups store them, and read back.
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
//!
//! [`decode_stored`] reads an encoding with graywatch's bounds straight into a slot histogram,
//! sparse when it is small, without the 13 KiB histogram HdrHistogram's reader fills first: a
//! start-up at 100,000 series loads six million stored minutes. Other encodings (other bounds
//! or precision, written by other tools) go through HdrHistogram's reader.

use std::io::Read;

use flate2::{Compress, Compression, FlushCompress, Status};

use super::histogram::{HIGHEST_US, LOWEST_US, SIGFIG};
use super::slot_hist::{SlotHist, bucket_index};
use super::snapshot::decode_histogram;

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

/// Longest plain encoding a deflated one may expand to: a header and nine bytes for each of
/// the counters (more than any histogram with graywatch's bounds needs).
const PLAIN_MAX: usize = V2_HEADER_BYTES + 9 * 4_096;

/// Reads a stored encoding (plain or deflated V2) back into a slot histogram.
pub fn decode_stored(bytes: &[u8]) -> Result<SlotHist, String> {
    let cookie = bytes
        .get(..4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")));
    let inflated;
    let plain = match cookie {
        Some(V2_COOKIE) => bytes,
        Some(V2_DEFLATE_COOKIE) => {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(bytes.get(8..).unwrap_or_default())
                .take(PLAIN_MAX as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("cannot inflate the histogram: {e}"))?;
            inflated = out;
            &inflated[..]
        }
        _ => return decode_histogram(bytes).map(|h| SlotHist::from_histogram(&h)),
    };
    match read_plain(plain) {
        Some(hist) => Ok(hist),
        // Other bounds, or something this reader does not expect: HdrHistogram's own reader
        // decides (and re-homes other bounds into ours).
        None => decode_histogram(bytes).map(|h| SlotHist::from_histogram(&h)),
    }
}

/// A plain V2 encoding with graywatch's bounds as a slot histogram; `None` for any other.
fn read_plain(bytes: &[u8]) -> Option<SlotHist> {
    let word = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let long = |at: usize| Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    let ours = word(0)? == V2_COOKIE
        && word(8)? == 0
        && word(12)? == u32::from(SIGFIG)
        && long(16)? == LOWEST_US
        && long(24)? == HIGHEST_US
        && long(32)? == 1.0f64.to_bits();
    if !ours {
        return None;
    }
    let payload = bytes.get(V2_HEADER_BYTES..V2_HEADER_BYTES + word(4)? as usize)?;
    let top = bucket_index(HIGHEST_US);
    let mut entries = Vec::new();
    let (mut pos, mut index) = (0, 0u32);
    while pos < payload.len() {
        let n = un_zig_zag(get_varint(payload, &mut pos)?);
        if n < 0 {
            index = index.checked_add(u32::try_from(n.unsigned_abs()).ok()?)?;
        } else {
            if n > 0 {
                if index > top {
                    return None;
                }
                entries.push((index, n as u64));
            }
            index += 1;
        }
    }
    Some(SlotHist::from_entries(&entries))
}

/// LEB128 of at most eight bytes (56 bits; HdrHistogram's ninth byte never occurs for a
/// 32-bit counter); `None` past that or past the end.
fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..56).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

fn un_zig_zag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
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

    proptest! {
        /// What the encoder stores, and what HdrHistogram's serializers write for the same
        /// histogram, read back as the same calls.
        #[test]
        fn stored_encodings_read_back_as_the_same_slot(
            values in prop::collection::vec((1u64..5_000_000_000, 1u32..1_000), 0..600),
        ) {
            let h = histogram(&values);
            let mut encoder = HistogramEncoder::default();
            let mut theirs = Vec::new();
            V2DeflateSerializer::new().serialize(&h, &mut theirs).unwrap();
            for bytes in [encoder.encode(&SlotHist::from_histogram(&h)), crate_plain(&h), theirs] {
                let back = decode_stored(&bytes).unwrap();
                prop_assert_eq!(back.to_dense(), h.clone());
                prop_assert_eq!(back, SlotHist::from_histogram(&h));
            }
        }
    }

    /// Other bounds (another tool's histogram) are re-homed into ours; damaged bytes are an
    /// error, not a panic.
    #[test]
    fn foreign_and_damaged_encodings() {
        let mut other: hdrhistogram::Histogram<u64> =
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        other.record_n(12_345, 7).unwrap();
        let mut bytes = Vec::new();
        V2Serializer::new().serialize(&other, &mut bytes).unwrap();
        let back = decode_stored(&bytes).unwrap().to_dense();
        assert_eq!((back.len(), back.value_at_quantile(0.5) / 100), (7, 123));

        let good = encoder_bytes(&[(1_000, 3), (2_000_000, 1)]);
        for cut in [0, 3, 8, 39, good.len() - 1] {
            assert!(decode_stored(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_stored(&long).is_err());
    }

    fn encoder_bytes(values: &[(u64, u32)]) -> Vec<u8> {
        HistogramEncoder::default().encode(&SlotHist::from_histogram(&histogram(values)))
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
