//! A JSON document read for one purpose: the members a [`Shape`] names are
//! kept, borrowed from the body where they can be; everything else is checked
//! as strictly as `serde_json::Value` would check it, and dropped.
//!
//! A Vapi server message is mostly what this product never reads (the
//! assistant's configuration, transcripts, artifacts). Building a whole
//! `serde_json::Value` for it allocated every string and object: about 400
//! allocations and a third of the component's instructions per request. The
//! body is still validated in full: a document `Value` refuses (bad syntax,
//! invalid UTF-8, a number beyond f64, nesting deeper than 128) is refused here
//! with the same error.
//!
//! [`Node`] walks such a document for the rules that read it, so that every
//! refusal names the field's path ([`FieldError`]).

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;
use std::borrow::Cow;
use std::fmt;

/// Which members of an object to keep, each with the shape of its value. A
/// value whose shape has no members is kept as a scalar, or as the kind of
/// object or array it is.
#[derive(Debug)]
pub struct Shape {
    pub members: &'static [(&'static str, &'static Shape)],
}

/// Keep the value itself (a scalar), nothing inside it.
pub const LEAF: Shape = Shape { members: &[] };

/// A value as kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    /// The members the shape names that were present; a repeated member keeps
    /// its last value, as `serde_json::Value` does.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
    /// Arrays are checked and counted, never kept: no rule reads inside one.
    Array(usize),
}

impl<'a> Json<'a> {
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| same(k, key)).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Json::Number(n) => Some(n),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    /// For error messages: "expected a string, got an array".
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

/// Reads `body` as one JSON document, keeping what `shape` names.
pub fn read<'a>(body: &'a [u8], shape: &'static Shape) -> Result<Json<'a>, serde_json::Error> {
    match std::str::from_utf8(body) {
        // Checked once, whole: the text reader then skips the per-string check
        // (a fifth of the parse, in wasm).
        Ok(text) => read_from(serde_json::Deserializer::from_str(text), shape),
        // The byte reader finds the same fault `Value` would, with its position.
        Err(_) => read_from(serde_json::Deserializer::from_slice(body), shape),
    }
}

fn read_from<'a, R: serde_json::de::Read<'a>>(
    mut deserializer: serde_json::Deserializer<R>,
    shape: &'static Shape,
) -> Result<Json<'a>, serde_json::Error> {
    let document = shape.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(document)
}

impl<'de> DeserializeSeed<'de> for &'static Shape {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json<'de>, D::Error> {
        deserializer.deserialize_any(KeptVisitor(self))
    }
}

struct KeptVisitor(&'static Shape);

impl<'de> Visitor<'de> for KeptVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        // serde_json never hands over a NaN or an infinity (`1e999` is its error).
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(text.to_string())))
    }

    fn visit_string<E>(self, text: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(text)))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut count = 0;
        while seq.next_element_seed(Checked)?.is_some() {
            count += 1;
        }
        Ok(Json::Array(count))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut kept: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let Some((_, shape)) = self.0.members.iter().find(|(name, _)| same(name, &key)) else {
                map.next_value_seed(Checked)?;
                continue;
            };
            let value = map.next_value_seed(*shape)?;
            match kept.iter_mut().find(|(k, _)| *k == key) {
                Some(member) => member.1 = value,
                None => kept.push((key, value)),
            }
        }
        Ok(Json::Object(kept))
    }
}

/// `a == b`, with the first byte compared before any call to `memcmp`: most
/// of a message's keys are compared against a shape's members and differ early.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

/// An object's key, borrowed unless it had escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_string()))
    }
}

/// A value nobody reads: parsed with every check (`deserialize_any`, unlike
/// `IgnoredAny`, validates strings' UTF-8 and numbers' range), nothing kept.
struct Checked;

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Checked)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Checked)?.is_some() {
            map.next_value_seed(Checked)?;
        }
        Ok(())
    }
}

/// What [`read`] gives for a body whose `serde_json::Value` is `value`
/// (members in key order): the reference the tests hold `read` to.
/// Why a document is not what a rule needs: `field` is its JSON path, such as
/// `message.call.id`, or `body` for the document itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl FieldError {
    pub fn new(field: &str, problem: &str) -> FieldError {
        FieldError {
            field: field.to_string(),
            problem: problem.to_string(),
        }
    }
}

/// A value, its shape and how it was reached, so every error can name its
/// field. The path is spelled out only for an error.
pub(crate) struct Node<'a, 'p> {
    pub(crate) value: &'a Json<'a>,
    shape: &'static Shape,
    /// The member name that reached this node; empty for the document.
    key: &'static str,
    parent: Option<&'p Node<'a, 'p>>,
}

impl<'a, 'p> Node<'a, 'p> {
    pub(crate) fn root(value: &'a Json<'a>, shape: &'static Shape) -> Self {
        Node {
            value,
            shape,
            key: "",
            parent: None,
        }
    }

    /// `message.call.id`, or `body` for the document itself.
    pub(crate) fn path(&self) -> String {
        let mut keys = Vec::new();
        let mut node = Some(self);
        while let Some(current) = node {
            if !current.key.is_empty() {
                keys.push(current.key);
            }
            node = current.parent;
        }
        if keys.is_empty() {
            return "body".to_string();
        }
        keys.reverse();
        keys.join(".")
    }

    fn child_path(&self, key: &str) -> String {
        match self.parent {
            None => key.to_string(),
            Some(_) => format!("{}.{key}", self.path()),
        }
    }

    pub(crate) fn fail(&self, problem: &str) -> FieldError {
        FieldError::new(&self.path(), problem)
    }

    pub(crate) fn object(&self) -> Result<(), FieldError> {
        if self.value.is_object() {
            Ok(())
        } else {
            Err(self.fail(&format!("expected an object, got {}", self.value.kind())))
        }
    }

    /// A present, non-null member.
    pub(crate) fn optional(&'p self, key: &'static str) -> Option<Node<'a, 'p>> {
        let shape = self.shape.members.iter().find(|(name, _)| *name == key);
        // A member the shape does not keep always reads as absent: a rule that
        // reads one is a bug, caught by every unit test that reaches it.
        if cfg!(test) {
            assert!(
                shape.is_some(),
                "{}: not in the shape",
                self.child_path(key)
            );
        }
        let (_, shape) = shape?;
        match self.value.get(key) {
            None | Some(Json::Null) => None,
            Some(value) => Some(Node {
                value,
                shape,
                key,
                parent: Some(self),
            }),
        }
    }

    pub(crate) fn required(&'p self, key: &'static str) -> Result<Node<'a, 'p>, FieldError> {
        self.optional(key)
            .ok_or_else(|| FieldError::new(&self.child_path(key), "is required"))
    }

    pub(crate) fn non_empty_str(&self) -> Result<&'a str, FieldError> {
        match self.value.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(self.fail("must not be empty")),
            None => Err(self.fail(&format!("expected a string, got {}", self.value.kind()))),
        }
    }

    pub(crate) fn opt_str(&'p self, key: &'static str) -> Result<Option<String>, FieldError> {
        match self.optional(key) {
            None => Ok(None),
            Some(node) => match node.value.as_str() {
                Some(s) if s.trim().is_empty() => Ok(None),
                Some(s) => Ok(Some(s.to_string())),
                None => Err(node.fail(&format!("expected a string, got {}", node.value.kind()))),
            },
        }
    }

    pub(crate) fn opt_f64(&'p self, key: &'static str) -> Result<Option<f64>, FieldError> {
        match self.optional(key) {
            None => Ok(None),
            Some(node) => match node.value.as_number().and_then(|n| n.as_f64()) {
                Some(n) if n.is_finite() => Ok(Some(n)),
                _ => Err(node.fail(&format!("expected a number, got {}", node.value.kind()))),
            },
        }
    }

    pub(crate) fn opt_timestamp_ms(&'p self, key: &'static str) -> Result<Option<i64>, FieldError> {
        let Some(node) = self.optional(key) else {
            return Ok(None);
        };
        let parsed = match node.value {
            Json::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .filter(|ms| *ms >= 0),
            Json::String(s) => iso_to_ms(s),
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| node.fail("expected Unix milliseconds or an ISO-8601 time"))
    }
}

/// Unix milliseconds of an RFC 3339 time such as `2024-07-15T05:45:29.814Z`
/// (offsets `+hh:mm` are applied; digits past milliseconds are dropped).
/// `None` for anything else, and for times before 1970, which are no more a
/// Vapi timestamp than a negative number is.
pub fn iso_to_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|time| time.timestamp_millis())
        .filter(|ms| *ms >= 0)
}

#[cfg(test)]
pub(crate) fn from_value(value: &serde_json::Value, shape: &'static Shape) -> Json<'static> {
    use serde_json::Value;
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => Json::Number(n.clone()),
        Value::String(s) => Json::String(Cow::Owned(s.clone())),
        Value::Array(items) => Json::Array(items.len()),
        Value::Object(map) => Json::Object(
            map.iter()
                .filter_map(|(k, v)| {
                    let (_, sub) = shape.members.iter().find(|(name, _)| name == k)?;
                    Some((Cow::Owned(k.clone()), from_value(v, sub)))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    // Like the server message's shape (payload.rs): the root, a message, its call.
    static ROOT: Shape = Shape {
        members: &[("message", &MESSAGE), ("call", &CALL), ("type", &LEAF)],
    };
    static MESSAGE: Shape = Shape {
        members: &[
            ("type", &LEAF),
            ("status", &LEAF),
            ("timestamp", &LEAF),
            ("call", &CALL),
        ],
    };
    static CALL: Shape = Shape {
        members: &[("id", &LEAF), ("customer", &CUSTOMER)],
    };
    static CUSTOMER: Shape = Shape {
        members: &[("number", &LEAF)],
    };

    fn sorted(json: Json<'_>) -> Json<'_> {
        match json {
            Json::Object(mut members) => {
                members.sort_by(|a, b| a.0.cmp(&b.0));
                Json::Object(members.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            other => other,
        }
    }

    /// `read` accepts exactly what `Value` accepts, with the same error, and
    /// keeps the same values.
    fn agrees_with_value(body: &[u8]) {
        let ours = read(body, &ROOT);
        let theirs = serde_json::from_slice::<Value>(body);
        match (ours, theirs) {
            (Ok(ours), Ok(theirs)) => assert_eq!(
                sorted(ours),
                from_value(&theirs, &ROOT),
                "{}",
                String::from_utf8_lossy(body)
            ),
            (Err(ours), Err(theirs)) => assert_eq!(
                ours.to_string(),
                theirs.to_string(),
                "{}",
                String::from_utf8_lossy(body)
            ),
            (ours, theirs) => panic!(
                "{}: read {:?}, Value {:?}",
                String::from_utf8_lossy(body),
                ours.map(|_| ()),
                theirs.map(|_| ())
            ),
        }
    }

    #[test]
    fn keeps_what_the_shape_names_and_borrows_plain_strings() {
        let body = br#"{"type":"status-update","skip":{"deep":[1,2,{"x":"y"}]},
            "call":{"id":"c-1","customer":{"number":"+12125550187","name":"A"},"other":true}}"#;
        let json = read(body, &ROOT).unwrap();
        assert_eq!(
            json.get("type").and_then(Json::as_str),
            Some("status-update")
        );
        assert!(json.get("skip").is_none());
        let call = json.get("call").unwrap();
        assert!(call.get("other").is_none());
        assert!(matches!(
            call.get("id"),
            Some(Json::String(Cow::Borrowed("c-1")))
        ));
        let number = call.get("customer").and_then(|c| c.get("number"));
        assert_eq!(number.and_then(Json::as_str), Some("+12125550187"));
    }

    #[test]
    fn escapes_in_keys_and_values_are_decoded() {
        let json = read(br#"{"ty\u0070e":"a\"b\u00e9"}"#, &ROOT).unwrap();
        assert_eq!(json.get("type").and_then(Json::as_str), Some("a\"b\u{e9}"));
    }

    #[test]
    fn a_repeated_member_keeps_its_last_value() {
        let json = read(br#"{"type":"first","type":"second"}"#, &ROOT).unwrap();
        assert_eq!(json.get("type").and_then(Json::as_str), Some("second"));
        agrees_with_value(br#"{"type":"first","type":"second"}"#);
    }

    #[test]
    fn what_value_refuses_is_refused_with_the_same_error_even_where_nothing_is_kept() {
        for body in [
            &br#"{"skip": 1e999}"#[..],
            br#"{"skip": [1, -1e400]}"#,
            b"{\"skip\": \"\xff\"}",
            b"{\"\xff\": 1}",
            br#"{"skip": "\ud800"}"#,
            br#"{"skip": tru}"#,
            br#"{"skip": 1} x"#,
            br#"{"skip": [1,]}"#,
            br#"{"skip": 01}"#,
            b"{\"skip\": \"a\x01b\"}",
            br#"{"type": "a""#,
            b"",
        ] {
            assert!(
                read(body, &ROOT).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
            agrees_with_value(body);
        }
        let deep = format!("{{\"skip\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(read(deep.as_bytes(), &ROOT).is_err());
        agrees_with_value(deep.as_bytes());
    }

    #[test]
    fn numbers_are_kept_as_value_keeps_them() {
        for body in [
            &br#"{"type": 1787241846992}"#[..],
            br#"{"type": -5}"#,
            br#"{"type": 18446744073709551615}"#,
            br#"{"type": 18446744073709551616}"#,
            br#"{"type": 1.5e3}"#,
            br#"{"type": -0}"#,
        ] {
            agrees_with_value(body);
        }
    }

    #[test]
    fn agrees_with_value_on_every_shared_example_and_its_mutations() {
        let mut next = crate::test_support::xorshift(0x9e37_79b9_7f4a_7c15);
        let replacements: &[&[u8]] = &[
            b"\"", b"{", b"}", b"[", b"]", b",", b":", b"1e999", b"\\", b"\xc3", b"null", b"-",
        ];
        let mut checked = 0;
        for (_, body) in crate::test_support::shared_examples() {
            agrees_with_value(&body);
            for _ in 0..300 {
                let mut mutated = body.clone();
                let at = (next() as usize) % mutated.len();
                let with = replacements[(next() as usize) % replacements.len()];
                match next() % 3 {
                    0 => {
                        mutated.splice(at..at + 1, with.iter().copied());
                    }
                    1 => {
                        mutated.splice(at..at, with.iter().copied());
                    }
                    _ => {
                        mutated.remove(at);
                    }
                }
                agrees_with_value(&mutated);
                checked += 1;
            }
        }
        assert_eq!(checked, 15 * 300);
    }
}
