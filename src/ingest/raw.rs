//! Lenient deserialisation of one event object.
//!
//! Every field is read with `deserialize_any` into a [`Field`], so a wrong type in one event
//! becomes an error for that event instead of failing the whole batch, and strings are
//! borrowed from the body whenever they contain no escapes. Unknown keys are skipped.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A field's value as it appeared on the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field<'a> {
    #[default]
    Missing,
    Null,
    Str(Cow<'a, str>),
    UInt(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array,
    Object,
}

impl Field<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            Field::Missing => "nothing",
            Field::Null => "null",
            Field::Str(_) => "a string",
            Field::UInt(_) | Field::Int(_) | Field::Float(_) => "a number",
            Field::Bool(_) => "a boolean",
            Field::Array => "an array",
            Field::Object => "an object",
        }
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::UInt(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Field::Int(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Field::Float(v))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Field::Bool(v))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Object)
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

/// The keys of an event object (the fast scanner names them too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
pub(super) enum Key {
    Dependency,
    DurationMs,
    Outcome,
    Ts,
    Instance,
    Zone,
    Source,
    #[serde(other)]
    Unknown,
}

/// One event object with each known field kept as it was sent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawEvent<'a> {
    pub dependency: Field<'a>,
    pub duration_ms: Field<'a>,
    pub outcome: Field<'a>,
    pub ts: Field<'a>,
    pub instance: Field<'a>,
    pub zone: Field<'a>,
    pub source: Field<'a>,
}

fn read_event<'de, A: MapAccess<'de>>(mut map: A) -> Result<RawEvent<'de>, A::Error> {
    let mut ev = RawEvent::default();
    while let Some(key) = map.next_key::<Key>()? {
        match ev.field_mut(key) {
            Some(slot) => *slot = map.next_value()?,
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(ev)
}

impl<'a> RawEvent<'a> {
    /// Where the value of `key` goes; `None` for a key that is ignored.
    #[inline]
    pub(super) fn field_mut(&mut self, key: Key) -> Option<&mut Field<'a>> {
        Some(match key {
            Key::Dependency => &mut self.dependency,
            Key::DurationMs => &mut self.duration_ms,
            Key::Outcome => &mut self.outcome,
            Key::Ts => &mut self.ts,
            Key::Instance => &mut self.instance,
            Key::Zone => &mut self.zone,
            Key::Source => &mut self.source,
            Key::Unknown => return None,
        })
    }
}

/// An element of a batch: an event object, or something else (reported per element).
#[derive(Debug, Clone, PartialEq)]
pub enum Element<'a> {
    Event(RawEvent<'a>),
    NotAnObject(&'static str),
}

struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Element<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        read_event(map).map(Element::Event)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        FieldVisitor
            .visit_seq(seq)
            .map(|_| Element::NotAnObject("an array"))
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject("a string"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject("a string"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject("a number"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject("a number"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject("a boolean"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Element::NotAnObject("null"))
    }
}

impl<'de> Deserialize<'de> for Element<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ElementVisitor)
    }
}

/// A whole JSON body: one object, or an array of elements.
#[derive(Debug, Clone, PartialEq)]
pub enum Body<'a> {
    One(RawEvent<'a>),
    Many(Vec<Element<'a>>),
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Body<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object or an array of event objects")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        read_event(map).map(Body::One)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(64).min(16_384));
        while let Some(el) = seq.next_element()? {
            out.push(el);
        }
        Ok(Body::Many(out))
    }
}

impl<'de> Deserialize<'de> for Body<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BodyVisitor)
    }
}

/// Streams a body straight into validated events: each element is validated as soon as it is
/// read, so no intermediate list of raw events is built (that copy was a tenth of the cost).
pub(super) struct BatchSeed<'p, 'v, 'a> {
    pub validation: &'v super::Validation,
    pub out: &'p mut super::Parsed<'a>,
}

impl<'a> serde::de::DeserializeSeed<'a> for BatchSeed<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for BatchSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object or an array of event objects")
    }

    fn visit_map<A: MapAccess<'a>>(self, map: A) -> Result<(), A::Error> {
        let raw = read_event(map)?;
        self.out.push(0, self.validation.validate(raw));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(ElementSeed {
                validation: self.validation,
                out: &mut *self.out,
                index,
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }
}

/// One element of a batch (or one NDJSON line), validated into `out` at `index`.
pub(super) struct ElementSeed<'p, 'v, 'a> {
    pub validation: &'v super::Validation,
    pub out: &'p mut super::Parsed<'a>,
    pub index: usize,
}

impl<'a> serde::de::DeserializeSeed<'a> for ElementSeed<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        let element = d.deserialize_any(ElementVisitor)?;
        self.out.push_element(self.index, element, self.validation);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_type_is_kept_for_the_validator_not_fatal() {
        let body: Body = serde_json::from_str(
            r#"[{"dependency": 5, "duration_ms": "slow", "x": {"y": [1]}}, 3, {"dependency": "a\/b"}]"#,
        )
        .unwrap();
        let Body::Many(els) = body else {
            panic!("expected an array")
        };
        assert_eq!(els.len(), 3);
        let Element::Event(first) = &els[0] else {
            panic!()
        };
        assert_eq!(first.dependency, Field::UInt(5));
        assert_eq!(first.duration_ms, Field::Str("slow".into()));
        assert_eq!(els[1], Element::NotAnObject("a number"));
        let Element::Event(third) = &els[2] else {
            panic!()
        };
        assert_eq!(third.dependency, Field::Str("a/b".into()));
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let raw = br#"{"dependency": "db", "instance": "i-1"}"#;
        let Body::One(ev) = serde_json::from_slice(raw).unwrap() else {
            panic!()
        };
        assert!(matches!(ev.dependency, Field::Str(Cow::Borrowed("db"))));
    }
}
