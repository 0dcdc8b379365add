use std::borrow::Cow;
use std::fmt;

/// A string kept together with its lowercase form, so that case-insensitive matching
/// (the Sigma default) does not lowercase the same value once per rule.
#[derive(Clone, PartialEq, Eq)]
pub struct Text {
    original: Box<str>,
    /// `None` when the original is already lowercase.
    lower: Option<Box<str>>,
}

impl Text {
    pub fn new(s: impl Into<Box<str>>) -> Self {
        let original: Box<str> = s.into();
        // Most values are ASCII: lowercased byte by byte (the same as `to_lowercase` for them).
        let lower = if original.is_ascii() {
            original.bytes().any(|b| b.is_ascii_uppercase()).then(|| original.to_ascii_lowercase().into_boxed_str())
        } else if original.chars().any(char::is_uppercase) {
            Some(original.to_lowercase().into_boxed_str())
        } else {
            None
        };
        Text { original, lower }
    }

    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The value lowercased (Unicode simple case folding by `str::to_lowercase`).
    pub fn lower(&self) -> &str {
        self.lower.as_deref().unwrap_or(&self.original)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.original, f)
    }
}

/// A field value as the source gave it. Sigma compares most values as strings; numbers keep
/// their type so that `lt`/`gt` comparisons and exact integer matches stay exact.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Text),
    List(Vec<Value>),
}

impl Value {
    pub fn str(s: impl Into<Box<str>>) -> Self {
        Value::Str(Text::new(s))
    }

    /// The value as text, the way it would be printed in a log line. `None` for lists and null.
    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Str(t) => Some(Cow::Borrowed(t.as_str())),
            Value::Int(i) => Some(Cow::Owned(i.to_string())),
            Value::Float(f) => Some(Cow::Owned(f.to_string())),
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Value::Null | Value::List(_) => None,
        }
    }

    /// The lowercase text of the value (numbers and booleans have no case).
    pub fn as_lower_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Str(t) => Some(Cow::Borrowed(t.lower())),
            other => other.as_text(),
        }
    }

    /// The value as a number, when it is one or is text that reads as one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(t) => t.as_str().trim().parse::<f64>().ok(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Calls `f` on each scalar: the value itself, or each element of a list (recursively).
    pub fn for_each_scalar<'a>(&'a self, f: &mut dyn FnMut(&'a Value) -> bool) -> bool {
        match self {
            Value::List(items) => items.iter().any(|v| v.for_each_scalar(f)),
            scalar => f(scalar),
        }
    }

    /// Converts a JSON value. Objects are rendered back as compact JSON text; callers that
    /// want nested fields flatten them first (see `Event::push_json`).
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::from_json_number(n),
            serde_json::Value::String(s) => Value::str(s.as_str()),
            serde_json::Value::Array(items) => Value::List(items.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(_) => Value::str(v.to_string()),
        }
    }

    /// Converts a JSON number: integers stay exact (beyond i64, as their digits).
    pub(crate) fn from_json_number(n: &serde_json::Number) -> Value {
        if let Some(i) = n.as_i64() {
            Value::Int(i)
        } else if let Some(u) = n.as_u64() {
            // Larger than i64: keep the exact digits.
            Value::str(u.to_string())
        } else {
            Value::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
            }
            Value::Str(t) => serde_json::Value::String(t.as_str().to_owned()),
            Value::List(items) => serde_json::Value::Array(items.iter().map(Value::to_json).collect()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            other => f.write_str(&other.as_text().unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keeps_lowercase_only_when_needed() {
        let t = Text::new("cmd.exe");
        assert_eq!(t.lower(), "cmd.exe");
        let t = Text::new("C:\\Windows\\CMD.EXE");
        assert_eq!(t.as_str(), "C:\\Windows\\CMD.EXE");
        assert_eq!(t.lower(), "c:\\windows\\cmd.exe");
        for s in ["ABC-xyz_09 ~", "ÄÖÜ Straße", "MiXeD ünïcode ΣΑΣ", "", "İstanbul"] {
            assert_eq!(Text::new(s).lower(), s.to_lowercase(), "{s}");
        }
    }

    #[test]
    fn numbers_print_as_logs_show_them() {
        assert_eq!(Value::Int(4688).as_text().as_deref(), Some("4688"));
        assert_eq!(Value::Bool(true).as_text().as_deref(), Some("true"));
        assert_eq!(Value::str("12").as_f64(), Some(12.0));
    }
}
