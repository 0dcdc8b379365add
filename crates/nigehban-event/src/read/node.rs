//! A JSON value read in place: an object's members stay a list in their order (no hashing), and
//! strings without escapes are borrowed from the text rather than copied.
//!
//! The EVTX rendering of Windows records (`{"Event": {"System": …, "EventData": …}}`, the EVTX
//! reader's output and what `nigehban ingest` sends for EVTX files) is read through it: building
//! a `serde_json::Value` first cost about as much as everything else done to the record at ingest
//! (every key a `String` hashed into an index map, then copied again into the event's fields).
//! It reads the same as `serde_json::Value` does: a key given twice keeps its first place and its
//! last value, non-finite numbers are null.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use crate::value::Value;

/// One JSON value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Members<'a>),
}

/// An object's members, each key once, in the order the keys first appeared.
pub(crate) type Members<'a> = Vec<(Cow<'a, str>, Node<'a>)>;

/// The null node (what a missing `#text` reads as).
pub(crate) const NULL: Node<'static> = Node::Null;

/// The member `key` of an object.
pub(crate) fn member<'n, 'a>(members: &'n Members<'a>, key: &str) -> Option<&'n Node<'a>> {
    members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

impl<'a> Node<'a> {
    /// The member `key`, when this is an object that has it.
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(members) => member(members, key),
            _ => None,
        }
    }

    pub(crate) fn as_object(&self) -> Option<&Members<'a>> {
        match self {
            Node::Object(members) => Some(members),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    /// The same value as `serde_json::Value` (what reading the text with serde_json gives).
    pub(crate) fn to_json(&self) -> Json {
        match self {
            Node::Null => Json::Null,
            Node::Bool(b) => Json::Bool(*b),
            Node::Number(n) => Json::Number(n.clone()),
            Node::String(s) => Json::String(s.to_string()),
            Node::Array(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            Node::Object(members) => Json::Object(members.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect()),
        }
    }

    /// The field value: as [`Value::from_json`] makes it of the same value.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::from_json_number(n),
            Node::String(s) => Value::str(&**s),
            Node::Array(items) => Value::List(items.iter().map(Node::to_value).collect()),
            Node::Object(_) => Value::from_json(&self.to_json()),
        }
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

/// Above this many members, an object's keys are also indexed (a key given twice is found
/// without going through all the others: no quadratic time on a hostile record).
const INDEXED_FROM: usize = 32;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Node<'de>, E> {
        Ok(serde_json::Number::from_f64(f).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node<'de>, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut members: Members<'de> = Vec::new();
        let mut index: Option<HashMap<Cow<'de, str>, usize>> = None;
        while let Some(Key(key)) = map.next_key()? {
            let value: Node<'de> = map.next_value()?;
            let seen = match &index {
                Some(index) => index.get(&key).copied(),
                None => members.iter().position(|(k, _)| *k == key),
            };
            match seen {
                Some(at) => members[at].1 = value,
                None => {
                    if let Some(index) = &mut index {
                        index.insert(key.clone(), members.len());
                    }
                    members.push((key, value));
                    if index.is_none() && members.len() > INDEXED_FROM {
                        index = Some(members.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect());
                    }
                }
            }
        }
        Ok(Node::Object(members))
    }
}

/// An object's key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(text: &str) -> (Node<'_>, Json) {
        (serde_json::from_str::<Node>(text).unwrap(), serde_json::from_str::<Json>(text).unwrap())
    }

    #[test]
    fn reads_as_serde_json_does() {
        for text in [
            r#"{"a": 1, "b": [true, null, -2, 3.5, 18446744073709551615], "c": {"d": "e\u00e9\n\"x\""}}"#,
            r#"{"k": 1, "j": 2, "k": 3}"#,
            r#"[1e300, -0.0, {"": ""}, "\ud83d\ude00"]"#,
            r#""plain""#,
        ] {
            let (node, json) = both(text);
            assert_eq!(node.to_json(), json, "{text}");
            assert_eq!(node.to_json().to_string(), json.to_string(), "{text}");
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_first_place_and_its_last_value() {
        let (node, _) = both(r#"{"k": 1, "j": 2, "k": 3}"#);
        let members = node.as_object().unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].0, "k");
        assert_eq!(members[0].1, Node::Number(3.into()));
        // The same with many keys (the index takes over).
        let mut text = String::from("{");
        for i in 0..100 {
            text.push_str(&format!("\"k{i}\": {i}, "));
        }
        text.push_str("\"k7\": \"last\", \"k99\": null}");
        let (node, json) = both(&text);
        assert_eq!(node.to_json(), json);
        assert_eq!(node.get("k7").and_then(Node::as_str), Some("last"));
        assert_eq!(node.as_object().map(Vec::len), Some(100));
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let node: Node = serde_json::from_str(r#"{"plain": "text", "escaped": "a\tb"}"#).unwrap();
        assert!(matches!(node.get("plain"), Some(Node::String(Cow::Borrowed("text")))));
        assert!(matches!(node.get("escaped"), Some(Node::String(Cow::Owned(s))) if s == "a\tb"));
    }

    #[test]
    fn field_values_are_those_of_the_json_value() {
        let text = r#"[null, true, 7, -7, 18446744073709551615, 2.5, "Text", [1, "a"], {"o": [1]}]"#;
        let (node, json) = both(text);
        assert_eq!(node.to_value(), Value::from_json(&json));
    }
}
