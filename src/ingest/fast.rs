//! A fast path for the common body: a JSON array (or NDJSON lines) of flat event objects
//! whose keys are plain strings and whose values are strings without escapes, numbers, or
//! null. Anything else (escapes, nested values, unusual whitespace inside numbers, syntax
//! errors) makes it give up, and the body goes through the general serde path, which also
//! produces the error messages. Both paths feed the same validation, so they accept and
//! refuse exactly the same events; a property test holds them to that.

use std::borrow::Cow;

use super::raw::{Field, Key, RawEvent};

/// Bytes that end the fast scan of a string: its closing quote, an escape, or a control
/// character (which JSON forbids inside strings).
static STOPS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Offset of the first byte in [`STOPS`]. Kept out of line: inlined into the object loop
/// the scan ran short of registers and spilled its counters on every byte.
#[inline(never)]
fn string_end(rest: &[u8]) -> Option<usize> {
    // Eight bytes at a time while none can be a stop byte: the classic "has a zero byte" bit
    // trick, applied to the bytes xor '"', xor '\\', and to "less than 0x20". It can flag
    // a chunk falsely only above a real stop, and the byte loop settles the chunk exactly.
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut i = 0;
    while let Some(chunk) = rest.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let stops = zero_in(w ^ (ONES * u64::from(b'"')))
            | zero_in(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if stops != 0 {
            break;
        }
        i += 8;
    }
    rest[i..]
        .iter()
        .position(|&c| STOPS[usize::from(c)])
        .map(|p| p + i)
}

/// Reads the ASCII digits from `b[i..]` into `value` (wrapping: the caller uses it only for
/// 19 digits or fewer) and returns the index after them. Eight digits at a time while it can:
/// a timestamp has thirteen.
#[inline]
fn digit_run(b: &[u8], mut i: usize, value: &mut u64) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // Every byte is '0'..='9' when its high nibble is 3 and adding 6 leaves it 3 (a carry
        // out of a byte can only come from a byte that already fails the first test).
        const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
        let all_digits = (w & HIGH) | (((w.wrapping_add(0x0606_0606_0606_0606)) & HIGH) >> 4)
            == 0x3333_3333_3333_3333;
        if !all_digits {
            break;
        }
        // The first digit is the lowest byte: combine neighbours into 2-, 4- and 8-digit
        // numbers, each step within its lane.
        let mut v = w - 0x3030_3030_3030_3030;
        v = (v * 10 + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
        v = (v * 100 + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
        v = (v.wrapping_mul(10_000) + (v >> 32)) & 0xFFFF_FFFF;
        *value = value.wrapping_mul(100_000_000).wrapping_add(v);
        i += 8;
    }
    while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
        *value = value.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        i += 1;
    }
    i
}

/// `rest` starts with `key`; the fixed length lets the comparison compile inline.
#[inline(always)]
fn starts<const N: usize>(rest: &[u8], key: &[u8; N]) -> bool {
    rest.get(..N) == Some(&key[..])
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        // Compact JSON has no whitespace between tokens: try the byte itself first.
        if self.peek() != Some(c) {
            self.ws();
        }
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string without escapes or control characters, borrowed.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        let bytes = self.string_bytes()?;
        if bytes.is_ascii() {
            // SAFETY: ASCII bytes are valid UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(bytes) })
        } else {
            std::str::from_utf8(bytes).ok()
        }
    }

    /// The raw bytes of a string without escapes or control characters. One pass: names and
    /// labels are short, so a byte loop beats searching and then checking.
    #[inline]
    fn string_bytes(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let rest = &self.b[start..];
        let len = string_end(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        Some(&rest[..len])
    }

    /// An object key. The event's own keys are recognised by their first letter and compared
    /// whole, closing quote included, without scanning or decoding; any other key must still
    /// be a valid string, or serde would refuse the body.
    #[inline]
    fn key(&mut self) -> Option<Key> {
        self.ws();
        if self.peek() == Some(b'"') {
            let rest = &self.b[self.i + 1..];
            let known = match rest.first() {
                Some(b'd') if starts(rest, b"dependency\"") => Some((Key::Dependency, 10)),
                Some(b'd') if starts(rest, b"duration_ms\"") => Some((Key::DurationMs, 11)),
                Some(b'o') if starts(rest, b"outcome\"") => Some((Key::Outcome, 7)),
                Some(b't') if starts(rest, b"ts\"") => Some((Key::Ts, 2)),
                Some(b'i') if starts(rest, b"instance\"") => Some((Key::Instance, 8)),
                Some(b'z') if starts(rest, b"zone\"") => Some((Key::Zone, 4)),
                Some(b's') if starts(rest, b"source\"") => Some((Key::Source, 6)),
                _ => None,
            };
            if let Some((key, len)) = known {
                self.i += len + 2;
                return Some(key);
            }
        }
        // Not one of ours: an exact known key would have matched above, and one spelt with
        // escapes stops the scan (the body goes to serde, which reads it as that key).
        let bytes = self.string_bytes()?;
        (bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()).then_some(Key::Unknown)
    }

    /// A JSON number: checked against the JSON grammar while its digits are read, then its
    /// value. The common shapes are read exactly right there: an integer of up to 19 digits
    /// (a `ts`), or a non-negative fraction of at most 15 significant digits without exponent
    /// (a `duration_ms`), which is `digits / 10^k` with both exactly representable, so the
    /// one rounding of the division gives the correctly rounded value, as serde_json and the
    /// standard parser do. Anything else goes to the standard parsers.
    #[inline]
    fn number(&mut self) -> Option<Field<'a>> {
        const POW10: [f64; 16] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
        ];
        let start = self.i;
        let b = self.b;
        let mut i = start;
        let negative = b.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        // The digits' value, exact while there are at most 19 of them (beyond, it wraps and
        // is not used).
        let mut mantissa: u64 = 0;
        let int_start = i;
        i = digit_run(b, i, &mut mantissa);
        let int_len = i - int_start;
        let mut digits = int_len;
        if int_len == 0 || (int_len > 1 && b[int_start] == b'0') {
            return None;
        }
        let mut fraction = None;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let f = i;
            i = digit_run(b, i, &mut mantissa);
            if i == f {
                return None;
            }
            digits += i - f;
            fraction = Some(i - f);
        }
        let mut exponent = false;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            exponent = true;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let e = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == e {
                return None;
            }
        }
        self.i = i;
        if !negative && !exponent && digits <= 19 {
            match fraction {
                None => return Some(Field::UInt(mantissa)),
                Some(k) if digits <= 15 => {
                    return Some(Field::Float(mantissa as f64 / POW10[k]));
                }
                Some(_) => {}
            }
        }
        // SAFETY: the bytes were checked above to be ASCII digits, signs, '.', 'e' or 'E'.
        let text = unsafe { std::str::from_utf8_unchecked(&b[start..i]) };
        let integer = fraction.is_none() && !exponent;
        // serde_json reads "-0" as the float -0.0.
        if integer && text != "-0" {
            if let Ok(u) = text.parse::<u64>() {
                return Some(Field::UInt(u));
            }
            if let Ok(n) = text.parse::<i64>() {
                return Some(Field::Int(n));
            }
        }
        // serde_json would refuse an infinite value; leave such bodies to it.
        text.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Field::Float)
    }

    #[inline]
    fn value(&mut self) -> Option<Field<'a>> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(|s| Field::Str(Cow::Borrowed(s))),
            b'-' | b'0'..=b'9' => self.number(),
            b'n' if self.b[self.i..].starts_with(b"null") => {
                self.i += 4;
                Some(Field::Null)
            }
            _ => None,
        }
    }

    /// One flat event object.
    fn object(&mut self) -> Option<RawEvent<'a>> {
        self.eat(b'{')?;
        let mut ev = RawEvent::default();
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(ev);
        }
        loop {
            let key = self.key()?;
            self.eat(b':')?;
            let value = self.value()?;
            // Unknown keys are ignored, as by the general path.
            if let Some(slot) = ev.field_mut(key) {
                *slot = value;
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(ev);
                }
                _ => return None,
            }
        }
    }
}

/// Reads a whole JSON body (an object or an array of objects), handing each raw event and
/// its index to `each` as soon as it is read. `None` when the body needs the general parser;
/// events already handed over must then be discarded by the caller.
pub fn each_event<'a>(body: &'a [u8], mut each: impl FnMut(usize, RawEvent<'a>)) -> Option<()> {
    let mut c = Cursor { b: body, i: 0 };
    c.ws();
    match c.peek()? {
        b'{' => each(0, c.object()?),
        b'[' => {
            c.i += 1;
            c.ws();
            if c.peek()? == b']' {
                c.i += 1;
            } else {
                let mut index = 0;
                loop {
                    each(index, c.object()?);
                    index += 1;
                    c.ws();
                    match c.peek()? {
                        b',' => c.i += 1,
                        b']' => {
                            c.i += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
            }
        }
        _ => return None,
    }
    c.ws();
    (c.i == body.len()).then_some(())
}

/// Parses one NDJSON line holding one event object.
pub fn json_line(line: &[u8]) -> Option<RawEvent<'_>> {
    let mut c = Cursor { b: line, i: 0 };
    let ev = c.object()?;
    c.ws();
    (c.i == line.len()).then_some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_body(body: &[u8]) -> Option<Vec<RawEvent<'_>>> {
        let mut out = Vec::new();
        each_event(body, |_, e| out.push(e))?;
        Some(out)
    }
    use crate::ingest::Body;
    use proptest::prelude::*;

    fn serde_events(body: &[u8]) -> Option<Vec<RawEvent<'_>>> {
        match serde_json::from_slice::<Body>(body).ok()? {
            Body::One(e) => Some(vec![e]),
            Body::Many(els) => els
                .into_iter()
                .map(|e| match e {
                    crate::ingest::Element::Event(r) => Some(r),
                    _ => None,
                })
                .collect(),
        }
    }

    #[test]
    fn common_bodies_take_the_fast_path_and_match_serde() {
        let body = br#" [ {"dependency":"db","duration_ms":1.5,"outcome":"ok","ts":1800000000000,"instance":"i-1","zone":null},
            {"duration_ms":-2e3,"dependency":"x"} ,{}, { "dependency" : "y", "zone": "z",
            "instance" :"i"}] "#;
        let fast = json_body(body).expect("fast path");
        assert_eq!(Some(fast), serde_events(body));
    }

    #[test]
    fn unusual_bodies_fall_back() {
        for body in [
            &br#"[{"dependency":"a\/b"}]"#[..],
            br#"[{"dependency":"a","extra":{"x":1}}]"#,
            br#"[{"duration_ms":01}]"#,
            br#"[{"duration_ms":1e999}]"#,
            br#"[{"dependency":"a"},]"#,
            br#"[{"dependency":"a"}] x"#,
            br#"[1]"#,
            br#"[{"dependency":true}]"#,
        ] {
            assert!(
                json_body(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    fn value_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "\"[a-zA-Z0-9._:/ \u{e9}-]{0,12}\"",
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,6})?([eE][-+]?[0-9]{1,2})?",
            Just("null".to_string()),
            Just("true".to_string()),
            Just("{\"a\":1}".to_string()),
            Just("\"a\\\"b\"".to_string()),
        ]
    }

    fn key_strategy() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("dependency"),
            Just("duration_ms"),
            Just("outcome"),
            Just("ts"),
            Just("instance"),
            Just("zone"),
            Just("source"),
            Just("other"),
        ]
    }

    proptest! {
        /// Well-formed batches (and the same batches with one byte inserted) are read the same
        /// by both paths, or the fast path declines; simple well-formed ones take the fast path.
        #[test]
        fn batches_read_the_same_on_both_paths(
            events in proptest::collection::vec(
                proptest::collection::vec((key_strategy(), value_strategy()), 0..8),
                0..6,
            ),
            ws in "[ \n\t]{0,2}",
            mutate in proptest::option::of((0usize..400, 0u8..128)),
        ) {
            let objects: Vec<String> = events
                .iter()
                .map(|kv| {
                    let fields: Vec<String> =
                        kv.iter().map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}")).collect();
                    format!("{{{}{ws}}}", fields.join(","))
                })
                .collect();
            let mut body = format!("{ws}[{}]{ws}", objects.join(&format!(",{ws}"))).into_bytes();
            if let Some((at, byte)) = mutate {
                let at = at % (body.len() + 1);
                body.insert(at, byte);
            }
            if let Some(fast) = json_body(&body) {
                prop_assert_eq!(Some(fast), serde_events(&body), "{}", String::from_utf8_lossy(&body));
            }
            let simple = events
                .iter()
                .flatten()
                .all(|(_, v)| !v.starts_with('t') && !v.starts_with('{') && !v.contains('\\'));
            if mutate.is_none() && simple && serde_events(&body).is_some() {
                prop_assert!(json_body(&body).is_some(), "{}", String::from_utf8_lossy(&body));
            }
        }
    }

    proptest! {
        /// The eight-at-a-time digit reader agrees with reading one digit at a time.
        #[test]
        fn digit_runs_read_like_one_digit_at_a_time(
            bytes in proptest::collection::vec(
                prop_oneof![6 => b'0'..=b'9', 1 => any::<u8>()],
                0..40,
            ),
            start in 0usize..4,
        ) {
            let start = start.min(bytes.len());
            let mut value = 0u64;
            let end = digit_run(&bytes, start, &mut value);
            let expected_end = start + bytes[start..].iter().take_while(|c| c.is_ascii_digit()).count();
            prop_assert_eq!(end, expected_end);
            let expected = bytes[start..end]
                .iter()
                .fold(0u64, |v, c| v.wrapping_mul(10).wrapping_add(u64::from(c - b'0')));
            prop_assert_eq!(value, expected);
        }
    }

    proptest! {
        /// The word-at-a-time scan finds exactly the first stop byte.
        #[test]
        fn string_end_finds_the_first_stop_byte(
            bytes in proptest::collection::vec(
                prop_oneof![4 => 0x20u8..0x7f, 1 => any::<u8>()],
                0..40,
            )
        ) {
            let expected = bytes.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            prop_assert_eq!(string_end(&bytes), expected);
        }
    }

    proptest! {
        /// Whatever the fast path accepts, serde reads identically.
        #[test]
        fn the_fast_path_never_disagrees_with_serde(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("{".to_string()), Just("}".to_string()), Just("[".to_string()),
                    Just("]".to_string()), Just(",".to_string()), Just(":".to_string()),
                    Just(" ".to_string()), Just("null".to_string()),
                    Just("\"dependency\"".to_string()), Just("\"duration_ms\"".to_string()),
                    Just("\"ts\"".to_string()), Just("\"zone\"".to_string()),
                    "\"[a-z\\\\\u{e9} ]{0,4}\"", "-?[0-9]{1,3}(\\.[0-9]{0,2})?([eE][-+]?[0-9]{1,2})?",
                ],
                0..24,
            )
        ) {
            let body = parts.concat();
            if let Some(fast) = json_body(body.as_bytes()) {
                prop_assert_eq!(Some(fast), serde_events(body.as_bytes()), "{}", body);
            }
        }
    }
}
