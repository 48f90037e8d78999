//! A fast path for the common body: a JSON array (or NDJSON lines) of flat event objects
//! whose keys are plain strings and whose values are strings without escapes, numbers, or
//! null. Anything else (escapes, nested values, unusual whitespace inside numbers, syntax
//! errors) makes it give up, and the body goes through the general serde path, which also
//! produces the error messages. Both paths feed the same validation, so they accept and
//! refuse exactly the same events; a property test holds them to that.
//!
//! Within the fast path, an event of the usual shape (known keys, a valid name, a number, a
//! known outcome, short printable labels) is checked while it is read and becomes an
//! [`Event`] at once. Any other object is read again into a [`RawEvent`] and validated as the
//! general path does, which settles it or names the field at fault; a second property test
//! holds the one-pass reading to exactly the same events.

use std::borrow::Cow;

use super::raw::{Field, Key, RawEvent};
use super::validate::{Validation, duration_us};
use crate::domain::{DEPENDENCY_BYTES, DependencyName, Event, Label, Outcome};

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

/// Bytes of a label the one-pass reading takes: printable ASCII except the quote and the
/// backslash, which end or escape a JSON string.
static LABEL_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0x20;
    while c < 0x7f {
        t[c] = c != b'"' as usize && c != b'\\' as usize;
        c += 1;
    }
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

const POW10_U64: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// Reads the ASCII digits from `b[i..]` into `value` (wrapping: the caller uses it only for
/// 19 digits or fewer) and returns the index after them. Eight digits at a time while it can:
/// a timestamp has thirteen.
#[inline]
fn digit_run(b: &[u8], mut i: usize, value: &mut u64) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A byte is '0'..='9' when its high nibble is 3 and adding 6 leaves it 3; the bytes of
        // `not_digit` are zero exactly up to the first other byte (a carry out of a byte comes
        // only from a byte that fails the first test, and only disturbs the bytes above it).
        const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
        let not_digit = ((w & HIGH) | (((w.wrapping_add(0x0606_0606_0606_0606)) & HIGH) >> 4))
            ^ 0x3333_3333_3333_3333;
        let n = (not_digit.trailing_zeros() / 8) as usize;
        if n == 0 {
            return i;
        }
        // The n digits, shifted to the top of the word so the bytes below them are zero (and
        // whatever follows them is shifted out). The first digit is then the lowest nonzero
        // byte: combine neighbours into 2-, 4- and 8-digit numbers, each step within its lane.
        let mut v = w.wrapping_sub(0x3030_3030_3030_3030) << (8 * (8 - n));
        v = (v * 10 + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
        v = (v * 100 + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
        v = (v.wrapping_mul(10_000) + (v >> 32)) & 0xFFFF_FFFF;
        *value = value.wrapping_mul(POW10_U64[n]).wrapping_add(v);
        i += n;
        if n < 8 {
            return i;
        }
    }
    while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
        *value = value.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        i += 1;
    }
    i
}

/// The little-endian word of up to eight bytes (for comparing against loaded words).
const fn word(s: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = s.len();
    while i > 0 {
        i -= 1;
        w = (w << 8) | s[i] as u64;
    }
    w
}

/// The low `n` bytes of a word.
const fn low(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

/// One of the event's keys at the start of `rest`, closing quote included, and its length
/// without the quote. Where the body has sixteen bytes left, the key is compared as two
/// loaded words against constants.
#[inline]
fn known_key(rest: &[u8]) -> Option<(Key, usize)> {
    let Some(head) = rest.first_chunk::<16>() else {
        return match rest.first() {
            Some(b'd') if starts(rest, b"dependency\"") => Some((Key::Dependency, 10)),
            Some(b'd') if starts(rest, b"duration_ms\"") => Some((Key::DurationMs, 11)),
            Some(b'o') if starts(rest, b"outcome\"") => Some((Key::Outcome, 7)),
            Some(b't') if starts(rest, b"ts\"") => Some((Key::Ts, 2)),
            Some(b'i') if starts(rest, b"instance\"") => Some((Key::Instance, 8)),
            Some(b'z') if starts(rest, b"zone\"") => Some((Key::Zone, 4)),
            Some(b's') if starts(rest, b"source\"") => Some((Key::Source, 6)),
            _ => None,
        };
    };
    let (a, b) = head.split_at(8);
    let a = u64::from_le_bytes(a.try_into().expect("eight bytes"));
    let b = u64::from_le_bytes(b.try_into().expect("eight bytes"));
    let found = match head[0] {
        b'd' if a == word(b"dependen") && b & low(3) == word(b"cy\"") => (Key::Dependency, 10),
        b'd' if a == word(b"duration") && b & low(4) == word(b"_ms\"") => (Key::DurationMs, 11),
        b'o' if a == word(b"outcome\"") => (Key::Outcome, 7),
        b't' if a & low(3) == word(b"ts\"") => (Key::Ts, 2),
        b'i' if a == word(b"instance") && b & low(1) == word(b"\"") => (Key::Instance, 8),
        b'z' if a & low(5) == word(b"zone\"") => (Key::Zone, 4),
        b's' if a & low(7) == word(b"source\"") => (Key::Source, 6),
        _ => return None,
    };
    Some(found)
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
        if self.peek() == Some(b'"')
            && let Some((key, len)) = known_key(&self.b[self.i + 1..])
        {
            self.i += len + 2;
            return Some(key);
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

    /// After an object member or array element: `Some(true)` past a comma, `Some(false)` past
    /// `close`, `None` for anything else.
    #[inline]
    fn comma_or(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let c = self.peek()?;
        self.i += 1;
        match c {
            b',' => Some(true),
            c if c == close => Some(false),
            _ => None,
        }
    }

    /// A string value made only of `allowed` bytes, up to its closing quote. `None` when
    /// another byte comes first: the general path decides about such a string. (Names and
    /// labels are short: a table lookup per byte beat checking eight bytes at a time.)
    #[inline]
    fn plain_string(&mut self, allowed: &[bool; 256]) -> Option<&'a str> {
        self.ws();
        if self.peek()? != b'"' {
            return None;
        }
        let b = self.b;
        let start = self.i + 1;
        let mut end = start;
        while b.get(end).is_some_and(|&c| allowed[usize::from(c)]) {
            end += 1;
        }
        if b.get(end) != Some(&b'"') {
            return None;
        }
        self.i = end + 1;
        // SAFETY: both byte tables allow ASCII only.
        Some(unsafe { std::str::from_utf8_unchecked(&b[start..end]) })
    }

    /// `"ok"`, `"error"` or `"timeout"`.
    #[inline]
    fn outcome(&mut self) -> Option<Outcome> {
        self.ws();
        let rest = &self.b[self.i..];
        let (outcome, len) = if starts(rest, b"\"ok\"") {
            (Outcome::Ok, 4)
        } else if starts(rest, b"\"error\"") {
            (Outcome::Error, 7)
        } else if starts(rest, b"\"timeout\"") {
            (Outcome::Timeout, 9)
        } else {
            return None;
        };
        self.i += len;
        Some(outcome)
    }

    /// An optional label: null, or a plain string of at most [`Label::MAX_LEN`] printable
    /// bytes, where "" means not given (as in validation).
    #[inline]
    fn label(&mut self) -> Option<Option<Label<'a>>> {
        self.ws();
        if self.peek()? == b'n' {
            if !self.b[self.i..].starts_with(b"null") {
                return None;
            }
            self.i += 4;
            return Some(None);
        }
        let s = self.plain_string(&LABEL_BYTES)?;
        if s.len() > Label::MAX_LEN {
            return None;
        }
        Some((!s.is_empty()).then(|| Label::from_checked(s)))
    }

    /// One event object of the usual shape, read and validated in one pass: known keys only,
    /// and values that validation accepts as they are. `None` for anything else (including
    /// every event that validation would refuse), with the cursor left anywhere: the caller
    /// reads the object again on the general path, which gives the event or the error.
    fn valid_event(&mut self, v: &Validation) -> Option<Event<'a>> {
        self.eat(b'{')?;
        let (mut dependency, mut duration_ms, mut ts) = (None, None, None);
        let mut outcome = Outcome::Ok;
        let (mut instance, mut zone, mut source) = (None, None, None);
        loop {
            let key = self.key()?;
            self.eat(b':')?;
            match key {
                Key::Dependency => {
                    let name = self.plain_string(&DEPENDENCY_BYTES)?;
                    if name.is_empty() || name.len() > DependencyName::MAX_LEN {
                        return None;
                    }
                    dependency = Some(DependencyName::from_checked(name));
                }
                Key::DurationMs => {
                    self.ws();
                    duration_ms = Some(match self.number()? {
                        Field::UInt(n) => n as f64,
                        // Finite (the scanner refuses infinities); -0.0 passes, as in validation.
                        Field::Float(f) if f >= 0.0 => f,
                        _ => return None,
                    });
                }
                Key::Outcome => outcome = self.outcome()?,
                Key::Ts => {
                    self.ws();
                    ts = match self.number()? {
                        Field::UInt(n) => Some(i64::try_from(n).ok()?),
                        _ => return None,
                    };
                }
                Key::Instance => instance = self.label()?,
                Key::Zone => zone = self.label()?,
                Key::Source => source = self.label()?,
                Key::Unknown => return None,
            }
            if !self.comma_or(b'}')? {
                break;
            }
        }
        let ts_ms = match ts {
            Some(ts) => ts,
            None if v.require_ts => return None,
            None => v.now_ms,
        };
        if v.time_error(ts_ms).is_some() {
            return None;
        }
        Some(Event {
            dependency: dependency?,
            duration_us: duration_us(duration_ms?),
            outcome,
            ts_ms,
            instance,
            zone,
            source,
        })
    }

    /// One event object, validated: in one pass when it has the usual shape, else read whole
    /// and then validated. `None` when the object is not one the fast path reads.
    #[inline]
    fn event(&mut self, v: &Validation) -> Option<Result<Event<'a>, String>> {
        let start = self.i;
        if let Some(event) = self.valid_event(v) {
            return Some(Ok(event));
        }
        self.i = start;
        Some(v.validate(self.object()?))
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
            if !self.comma_or(b'}')? {
                return Some(ev);
            }
        }
    }
}

/// Reads a whole JSON body (an object or an array of objects), handing each event, validated
/// by `v`, and its index to `each` as soon as it is read. `None` when the body needs the
/// general parser; events already handed over must then be discarded by the caller.
pub fn each_event<'a>(
    body: &'a [u8],
    v: &Validation,
    mut each: impl FnMut(usize, Result<Event<'a>, String>),
) -> Option<()> {
    each_object(body, |i, c| {
        each(i, c.event(v)?);
        Some(())
    })
}

/// Walks a JSON body of one object or an array of objects, calling `read` with the cursor at
/// each object and its index; `read` consumes the object.
fn each_object<'a>(
    body: &'a [u8],
    mut read: impl FnMut(usize, &mut Cursor<'a>) -> Option<()>,
) -> Option<()> {
    let mut c = Cursor { b: body, i: 0 };
    c.ws();
    match c.peek()? {
        b'{' => read(0, &mut c)?,
        b'[' => {
            c.i += 1;
            c.ws();
            if c.peek()? == b']' {
                c.i += 1;
            } else {
                let mut index = 0;
                loop {
                    read(index, &mut c)?;
                    index += 1;
                    if !c.comma_or(b']')? {
                        break;
                    }
                }
            }
        }
        _ => return None,
    }
    c.ws();
    (c.i == body.len()).then_some(())
}

/// Parses one NDJSON line holding one event object, validated by `v`.
pub fn json_line<'a>(line: &'a [u8], v: &Validation) -> Option<Result<Event<'a>, String>> {
    let mut c = Cursor { b: line, i: 0 };
    let event = c.event(v)?;
    c.ws();
    (c.i == line.len()).then_some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_body(body: &[u8]) -> Option<Vec<RawEvent<'_>>> {
        let mut out = Vec::new();
        each_object(body, |_, c| {
            out.push(c.object()?);
            Some(())
        })?;
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

    const NOW: i64 = 1_800_000_000_000;

    /// Every event of a body the general path reads: parsed by serde, then validated.
    fn general_events<'a>(
        body: &'a [u8],
        v: &Validation,
    ) -> Option<Vec<Result<Event<'a>, String>>> {
        Some(
            serde_events(body)?
                .into_iter()
                .map(|raw| v.validate(raw))
                .collect(),
        )
    }

    fn fast_events<'a>(body: &'a [u8], v: &Validation) -> Option<Vec<Result<Event<'a>, String>>> {
        let mut out = Vec::new();
        each_event(body, v, |_, e| out.push(e))?;
        Some(out)
    }

    #[test]
    fn the_usual_event_is_read_in_one_pass() {
        let v = Validation::live(NOW);
        let usual = br#"{"dependency":"svc-1.internal","duration_ms":12.345,"outcome":"error","ts":1800000000000,"instance":"10.0.1.2","zone":"eu-west-1a","source":"checkout"}"#;
        let mut c = Cursor { b: usual, i: 0 };
        let e = c.valid_event(&v).expect("one pass");
        assert_eq!(c.i, usual.len());
        assert_eq!(e.duration_us, 12_345);
        assert_eq!(e.outcome, Outcome::Error);
        assert_eq!(e.zone.as_ref().map(|l| l.as_str()), Some("eu-west-1a"));
        // An unknown key or a refused value: read again, still by the fast scanner.
        for other in [
            &br#"{"dependency":"a","duration_ms":1,"extra":1}"#[..],
            br#"{"dependency":"a b","duration_ms":1}"#,
            br#"{"dependency":"a","duration_ms":1,"ts":1}"#,
        ] {
            assert!(Cursor { b: other, i: 0 }.valid_event(&v).is_none());
            assert_eq!(fast_events(other, &v).map(|e| e.len()), Some(1));
        }
        // An escape: left to serde.
        let escaped = br#"{"dependency":"a","duration_ms":1,"zone":"z\u0041"}"#;
        assert!(Cursor { b: escaped, i: 0 }.valid_event(&v).is_none());
        assert!(fast_events(escaped, &v).is_none());
    }

    fn plausible_value(key: &'static str) -> BoxedStrategy<String> {
        let specific: BoxedStrategy<String> = match key {
            // Lengths around the limit of 128 as often as short names.
            "dependency" => {
                prop_oneof!["\"[a-zA-Z0-9._:/-]{0,20}\"", "\"[a-z0-9.-]{126,130}\""].boxed()
            }
            "duration_ms" => "(0|[1-9][0-9]{0,5})(\\.[0-9]{1,4})?".boxed(),
            "outcome" => prop_oneof![
                Just("\"ok\"".to_string()),
                Just("\"error\"".to_string()),
                Just("\"timeout\"".to_string()),
                Just("\"OK\"".to_string()),
                Just("null".to_string()),
            ]
            .boxed(),
            "ts" => prop_oneof![
                (-7_200_000i64..600_000).prop_map(|d| (NOW + d).to_string()),
                Just("\"2027-01-15T08:00:00Z\"".to_string()),
                Just("null".to_string()),
            ]
            .boxed(),
            _ => prop_oneof![
                "\"[a-zA-Z0-9 .:_/\u{e9}\t-]{0,20}\"",
                "\"[a-zA-Z0-9 .:_/-]{126,130}\"",
            ]
            .boxed(),
        };
        prop_oneof![3 => specific, 1 => value_strategy()].boxed()
    }

    proptest! {
        /// Reading events in one pass gives exactly the events, and the errors, that parsing
        /// with serde and then validating gives, live and in replay.
        #[test]
        fn one_pass_events_equal_parsed_then_validated(
            events in proptest::collection::vec(
                proptest::collection::vec(
                    key_strategy().prop_flat_map(|k| (Just(k), plausible_value(k))),
                    0..9,
                ),
                1..5,
            ),
            replay in any::<bool>(),
        ) {
            let objects: Vec<String> = events
                .iter()
                .map(|kv| {
                    let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", fields.join(","))
                })
                .collect();
            let body = format!("[{}]", objects.join(","));
            let v = if replay { Validation::replay() } else { Validation::live(NOW) };
            if let Some(fast) = fast_events(body.as_bytes(), &v) {
                prop_assert_eq!(Some(fast), general_events(body.as_bytes(), &v), "{}", body);
            }
            for line in &objects {
                if let Some(fast) = json_line(line.as_bytes(), &v) {
                    let general = general_events(line.as_bytes(), &v).map(|mut e| e.remove(0));
                    prop_assert_eq!(Some(fast), general, "{}", line);
                }
            }
        }
    }

    #[test]
    fn known_keys_are_found_with_and_without_room_for_words() {
        let keys = [
            ("dependency", Key::Dependency),
            ("duration_ms", Key::DurationMs),
            ("outcome", Key::Outcome),
            ("ts", Key::Ts),
            ("instance", Key::Instance),
            ("zone", Key::Zone),
            ("source", Key::Source),
        ];
        for (name, key) in keys {
            for tail in ["", ":1}", ":1,\"padding padding\":1}"] {
                let text = format!("{name}\"{tail}");
                assert_eq!(
                    known_key(text.as_bytes()),
                    Some((key, name.len())),
                    "{text}"
                );
                // One letter more, or one less, is another key.
                let longer = format!("{name}s\"{tail}");
                assert_eq!(known_key(longer.as_bytes()), None, "{longer}");
                let shorter = format!("{}\"{tail}", &name[..name.len() - 1]);
                assert_eq!(known_key(shorter.as_bytes()), None, "{shorter}");
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
