use std::borrow::Cow;
use std::fmt;

/// Why a name was refused. The message is shown to API users, so it says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters (got {got})")]
    TooLong { max: usize, got: usize },
    #[error("contains {0:?}; allowed characters are A-Z a-z 0-9 . _ : / -")]
    BadDependencyChar(char),
    #[error("contains a control character")]
    ControlChar,
    /// An invisible format character (Unicode general category Cf: bidirectional overrides
    /// and isolates such as U+202E and U+2066-U+2069, zero-width characters such as U+200B).
    /// They make a label render as something it is not in alert text, mail and the dashboard.
    #[error("contains the invisible format character U+{:04X}; format and bidirectional control characters are not allowed", *.0 as u32)]
    FormatChar(char),
}

/// The first format (Cf) character of `text`, as the error that names it. ASCII holds none,
/// so ASCII text costs one pass over its bytes.
pub fn format_char(text: &str) -> Result<(), NameError> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    if text.is_ascii() {
        return Ok(());
    }
    match text
        .chars()
        .find(|c| c.general_category() == GeneralCategory::Format)
    {
        Some(c) => Err(NameError::FormatChar(c)),
        None => Ok(()),
    }
}

/// A dependency's name: 1 to 128 characters of `[A-Za-z0-9._:/-]`.
///
/// Borrowed from the request body where possible: parsing a batch allocates nothing per event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DependencyName<'a>(Cow<'a, str>);

impl<'a> DependencyName<'a> {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: impl Into<Cow<'a, str>>) -> Result<Self, NameError> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(NameError::TooLong {
                max: Self::MAX_LEN,
                got: raw.chars().count(),
            });
        }
        if let Some(bad) = raw.bytes().find(|b| !is_dependency_byte(*b)) {
            // Only ASCII passes, so a non-ASCII byte starts a multi-byte char: report the char.
            let c = raw[raw.bytes().position(|b| b == bad).unwrap_or(0)..]
                .chars()
                .next()
                .unwrap_or('?');
            return Err(NameError::BadDependencyChar(c));
        }
        Ok(Self(raw))
    }

    /// A name already checked to be 1 to [`Self::MAX_LEN`] bytes, each in
    /// [`DEPENDENCY_BYTES`] (the ingest scanner checks them while it finds the string's end).
    pub(crate) fn from_checked(raw: &'a str) -> Self {
        debug_assert!(Self::parse(raw).is_ok(), "{raw:?}");
        Self(Cow::Borrowed(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_owned(self) -> DependencyName<'static> {
        DependencyName(Cow::Owned(self.0.into_owned()))
    }
}

fn is_dependency_byte(b: u8) -> bool {
    DEPENDENCY_BYTES[usize::from(b)]
}

/// `[A-Za-z0-9._:/-]` as a table: one load per byte on the ingest path. None of these bytes
/// ends or escapes a JSON string, so the ingest scanner finds a name's end with it too.
pub(crate) static DEPENDENCY_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'/' | b'-');
        b += 1;
    }
    t
};

/// Every byte is printable ASCII (0x20 to 0x7e). Eight bytes at a time: a word has a byte
/// below `n` when `(w - n*ONES) & !w & HIGH` is set, and one above `m` when
/// `((w + (127 - m)*ONES) | w) & HIGH` is, here with `m` = 0x7e (both exact for the word as
/// a whole).
fn printable_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (words, tail) = bytes.as_chunks::<8>();
    for w in words {
        let w = u64::from_le_bytes(*w);
        let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let above = (w.wrapping_add(ONES) | w) & HIGH;
        if below | above != 0 {
            return false;
        }
    }
    tail.iter().all(|b| (0x20..0x7f).contains(b))
}

impl fmt::Display for DependencyName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A free-form label (instance, zone, caller): 1 to 128 characters, no control or format
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label<'a>(Cow<'a, str>);

impl<'a> Label<'a> {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: impl Into<Cow<'a, str>>) -> Result<Self, NameError> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        // The usual label (a host name, an address, a zone) is short printable ASCII: one
        // pass over its bytes settles it.
        if raw.len() <= Self::MAX_LEN && printable_ascii(raw.as_bytes()) {
            return Ok(Self(raw));
        }
        let chars = raw.chars().count();
        if chars > Self::MAX_LEN {
            return Err(NameError::TooLong {
                max: Self::MAX_LEN,
                got: chars,
            });
        }
        if raw.chars().any(char::is_control) {
            return Err(NameError::ControlChar);
        }
        format_char(&raw)?;
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A label already checked to be 1 to [`Self::MAX_LEN`] bytes of printable ASCII (the
    /// ingest scanner checks them while it finds the string's end).
    pub(crate) fn from_checked(raw: &'a str) -> Self {
        debug_assert!(
            !raw.is_empty() && raw.len() <= Self::MAX_LEN && printable_ascii(raw.as_bytes()),
            "{raw:?}"
        );
        Self(Cow::Borrowed(raw))
    }

    pub fn into_owned(self) -> Label<'static> {
        Label(Cow::Owned(self.0.into_owned()))
    }
}

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The word-at-a-time check agrees with checking byte by byte.
        #[test]
        fn printable_ascii_matches_the_byte_rule(
            bytes in proptest::collection::vec(
                prop_oneof![8 => 0x20u8..0x7f, 1 => any::<u8>(), 1 => prop_oneof![Just(0x1fu8), Just(0x7f), Just(0x80), Just(0xff), Just(0)]],
                0..40,
            )
        ) {
            prop_assert_eq!(
                printable_ascii(&bytes),
                bytes.iter().all(|b| (0x20..0x7f).contains(b))
            );
        }
    }

    #[test]
    fn dependency_names_accept_the_documented_alphabet() {
        assert!(DependencyName::parse("payments-api.v2:eu/primary_1").is_ok());
        assert_eq!(DependencyName::parse(""), Err(NameError::Empty));
        assert_eq!(
            DependencyName::parse("has space"),
            Err(NameError::BadDependencyChar(' '))
        );
        assert_eq!(
            DependencyName::parse("caf\u{e9}"),
            Err(NameError::BadDependencyChar('\u{e9}'))
        );
        assert!(matches!(
            DependencyName::parse("a".repeat(129)),
            Err(NameError::TooLong { max: 128, got: 129 })
        ));
        assert!(DependencyName::parse("a".repeat(128)).is_ok());
    }

    #[test]
    fn labels_refuse_control_characters_and_empty_strings() {
        assert!(Label::parse("i-0abc \u{e9}").is_ok());
        assert_eq!(Label::parse("a\nb"), Err(NameError::ControlChar));
        assert_eq!(Label::parse(""), Err(NameError::Empty));
    }

    #[test]
    fn labels_refuse_bidi_and_zero_width_characters() {
        for c in [
            '\u{202E}', '\u{200B}', '\u{2066}', '\u{2069}', '\u{FEFF}', '\u{00AD}',
        ] {
            let raw = format!("zone-a{c}1");
            assert_eq!(
                Label::parse(raw.as_str()),
                Err(NameError::FormatChar(c)),
                "{c:?}"
            );
        }
        let e = Label::parse("eu\u{202E}1").unwrap_err().to_string();
        assert!(e.contains("U+202E"), "{e}");
        // Letters and marks of other scripts stay allowed.
        assert!(Label::parse("z\u{00FC}rich-\u{6771}\u{4EAC}-\u{0915}\u{093F}").is_ok());
    }
}
