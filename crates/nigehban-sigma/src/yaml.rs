//! Rule files' YAML → JSON values, quickly for the YAML that rules are written in.
//!
//! Two fast readers come before serde-saphyr, each giving `None` where it is not sure:
//! - [`block_documents`] reads the block YAML that rule files are written in line by line
//!   (see [`block`]); it takes nearly every SigmaHQ rule file, several times faster than a
//!   general parser;
//! - [`event_documents`] reads the parser's events straight into [`serde_json::Value`]s: block
//!   and flow maps and lists with string keys, and scalars whose meaning the YAML 1.2 core
//!   schema leaves in no doubt (quoted and block scalars; plain scalars that are plainly text,
//!   `null`/`~`/empty, `true`/`false` in their three spellings, or a decimal integer).
//!
//! Anything else — tags, anchors and aliases, merge keys, duplicate keys, keys that are not
//! text, a `%YAML` directive, plain scalars that another reading could take for a number or a
//! boolean (`0x1F`, `1e3`, `.inf`, `yes`, `on`, `007`), deep nesting, very large files, and
//! every syntax error — gives `None`, and the caller reads the file with serde-saphyr, whose
//! result (or error) then stands. So the values are those serde-saphyr gives; the fast paths
//! only skip its general machinery (budgets, anchor replay, duplicate-key fingerprints).

mod block;

use granit_parser::{Event, Parser, ScalarStyle};
use serde_json::{Map, Number, Value};

use crate::Error;

/// The file's documents, empty ones left out: by the fast path where it applies, else by
/// serde-saphyr.
pub fn parse(text: &str) -> Result<Vec<Value>, Error> {
    match documents(text) {
        Some(docs) => Ok(docs.into_iter().filter(|d| !d.is_null()).collect()),
        None => parse_general(text),
    }
}

/// The file's documents, empty ones left out, by serde-saphyr alone.
pub fn parse_general(text: &str) -> Result<Vec<Value>, Error> {
    serde_saphyr::from_multiple::<Value>(text)
        .map(|docs| docs.into_iter().filter(|d| !d.is_null()).collect())
        .map_err(|e| Error::Yaml(first_line(&e.to_string())))
}

fn first_line(s: &str) -> String {
    let mut lines = s.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("").trim().to_owned();
    match lines.next() {
        Some(second) if first.len() < 30 => format!("{first} {}", second.trim()),
        _ => first,
    }
}

/// Files beyond these are left to serde-saphyr and its budget (whose defaults are 64 levels,
/// 250,000 nodes, 1,024 documents, 64 MiB of scalar text): well inside them, so that the fast
/// path never accepts a file serde-saphyr would refuse.
const MAX_DEPTH: usize = 32;
const MAX_NODES: usize = 200_000;
const MAX_DOCUMENTS: usize = 1_000;
const MAX_SCALAR_BYTES: usize = 32 << 20;

/// The file's documents by the fast paths, or `None` where serde-saphyr must decide.
pub fn documents(text: &str) -> Option<Vec<Value>> {
    block_documents(text).or_else(|| event_documents(text))
}

/// The file's documents by the line reader for block YAML alone (see [`block`]), or `None`.
pub fn block_documents(text: &str) -> Option<Vec<Value>> {
    block::documents(text)
}

/// The file's documents read from the parser's events alone, or `None`.
pub fn event_documents(text: &str) -> Option<Vec<Value>> {
    // serde-saphyr's parser settings, so that the parser refuses what it refuses (it keeps at
    // most 32 comments while looking ahead for a key; its other limits are the parser's own
    // defaults).
    let options = granit_parser::options! { emit_comments: true, max_buffered_comment_events: 32 };
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut docs = Vec::new();
    // Open collections: a list, or a map with the key waiting for its value.
    let mut stack: Vec<Open> = Vec::new();
    let (mut nodes, mut documents, mut scalar_bytes) = (0usize, 0usize, 0usize);
    loop {
        let (event, _) = parser.next_event()?.ok()?;
        if matches!(event, Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)) {
            nodes += 1;
            if nodes > MAX_NODES {
                return None;
            }
        }
        let done = match event {
            Event::StreamStart => None,
            Event::StreamEnd => return Some(docs),
            Event::DocumentStart(_, None) => {
                documents += 1;
                if documents > MAX_DOCUMENTS {
                    return None;
                }
                None
            }
            Event::DocumentEnd => {
                if !stack.is_empty() {
                    return None;
                }
                None
            }
            Event::Scalar(text, style, 0, None) => {
                scalar_bytes += text.len();
                if scalar_bytes > MAX_SCALAR_BYTES {
                    return None;
                }
                Some(scalar(&text, style)?)
            }
            Event::SequenceStart(_, 0, None) => {
                if stack.len() >= MAX_DEPTH {
                    return None;
                }
                stack.push(Open::List(Vec::new()));
                None
            }
            Event::MappingStart(_, 0, None) => {
                if stack.len() >= MAX_DEPTH {
                    return None;
                }
                stack.push(Open::Map(Map::new(), None));
                None
            }
            Event::SequenceEnd => match stack.pop()? {
                Open::List(items) => Some(Value::Array(items)),
                Open::Map(..) => return None,
            },
            Event::MappingEnd => match stack.pop()? {
                Open::Map(map, None) => Some(Value::Object(map)),
                Open::Map(_, Some(_)) | Open::List(_) => return None,
            },
            Event::Comment(..) => None,
            // Tags, anchors, aliases, directives: serde-saphyr's part.
            _ => return None,
        };
        let Some(value) = done else { continue };
        match stack.last_mut() {
            None => {
                // serde-saphyr leaves out empty documents (null); so does the caller.
                docs.push(value);
            }
            Some(Open::List(items)) => items.push(value),
            Some(Open::Map(map, key)) => match key.take() {
                Some(k) => {
                    if map.insert(k, value).is_some() {
                        return None;
                    }
                }
                None => *key = Some(map_key(value)?),
            },
        }
    }
}

enum Open {
    List(Vec<Value>),
    Map(Map<String, Value>, Option<String>),
}

/// A key is taken only as text: a plain key that reads as a number, boolean or null, the merge
/// key `<<`, a collection as key, and serde_json's private keys (a map whose first key is
/// `$serde_json::private::RawValue` is read by serde_json as raw JSON text), are serde-saphyr's
/// part.
fn map_key(key: Value) -> Option<String> {
    match key {
        Value::String(s) if s != "<<" && !s.starts_with("$serde_json::private::") => Some(s),
        _ => None,
    }
}

/// A plain scalar's value, or `None` where it could be read as something other than text,
/// null, a boolean or a decimal integer.
fn plain_scalar(text: &str) -> Option<Value> {
    scalar(text, ScalarStyle::Plain)
}

fn scalar(text: &str, style: ScalarStyle) -> Option<Value> {
    if style != ScalarStyle::Plain {
        return Some(Value::String(text.to_owned()));
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    if let Some(n) = decimal(text) {
        return Some(Value::Number(n));
    }
    if maybe_not_text(text) {
        return None;
    }
    Some(Value::String(text.to_owned()))
}

/// `0`, or an optional `-` and digits without a leading zero, within 64 bits.
fn decimal(text: &str) -> Option<Number> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    if text.starts_with('-') {
        text.parse::<i64>().ok().map(Number::from)
    } else {
        text.parse::<u64>().ok().map(Number::from)
    }
}

/// Plain text that serde-saphyr could read as something else: a YAML 1.1 boolean or a
/// null-like word in any case, an integer in any radix or with underscores, a float (Rust's
/// decimal grammar, which its fallback uses) or YAML's `.inf`/`.nan`. Dates and identifiers
/// that merely start with digits (`2022-10-12`, `5b3d2b1c-…`) are text.
fn maybe_not_text(text: &str) -> bool {
    if ["y", "yes", "n", "no", "on", "off", "true", "false", "null"].iter().any(|w| text.eq_ignore_ascii_case(w)) {
        return true;
    }
    let u = text.strip_prefix(['+', '-']).unwrap_or(text).as_bytes();
    match u {
        [b'0', b'x' | b'X' | b'o' | b'O' | b'b' | b'B', ..] => return true,
        [b'.', rest @ ..] if [&b"inf"[..], b"nan"].iter().any(|w| rest.eq_ignore_ascii_case(w)) => return true,
        _ => {}
    }
    if !u.is_empty() && u.iter().all(|&b| b.is_ascii_digit() || b == b'_') {
        return true;
    }
    float(u)
}

/// `digits[.digits]` or `.digits`, then an optional exponent.
fn float(u: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let int = digits(u);
    let mut at = int;
    let mut frac = 0;
    if u.get(at) == Some(&b'.') {
        frac = digits(&u[at + 1..]);
        at += 1 + frac;
    }
    if int + frac == 0 {
        return false;
    }
    if matches!(u.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(u.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exp = digits(&u[at..]);
        if exp == 0 {
            return false;
        }
        at += exp;
    }
    at == u.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saphyr(text: &str) -> Result<Vec<Value>, Error> {
        parse_general(text)
    }

    /// Every text the fast path takes, it reads as serde-saphyr does; the others it leaves.
    #[test]
    fn agrees_with_serde_saphyr_or_leaves_it_the_text() {
        let taken = [
            "title: T\nid: 5b3d2b1c\nlevel: high\ntags: [attack.t1059, attack.execution]\n",
            "detection:\n  sel:\n    EventID: 4688\n    CommandLine|contains:\n      - ' -enc '\n      - \"\\\\x41\"\n  condition: sel\n",
            "a: ~\nb: null\nc:\nd: true\ne: FALSE\nf: -12\ng: 0\nh: 18446744073709551615\n",
            "a: -enc\nb: --help\nc: /c whoami\nd: \"007\"\ne: 'yes'\nf: C:\\Windows\\*\n",
            "text: |\n  line one\n  line two\nfolded: >\n  a\n  b\n",
            "flow: {a: 1, b: [x, z, {c: d}]}\nempty: []\nnone: {}\n",
            "a: 1\n---\nb: 2\n---\n",
            "multi: one\n  two\n  three\n",
            "date: 2022-10-12\nmodified: 2023/01/05\nid: 5b3d2b1c-84e0-4a6c-9c6b-0e5cb3c3c9a1\nv: 1.2.3\nx: 1e\nk: e5\nz: .\nw: '-'\n",
        ];
        for text in taken {
            let fast = documents(text).unwrap_or_else(|| panic!("fast path left {text:?}"));
            let fast: Vec<Value> = fast.into_iter().filter(|v| !v.is_null()).collect();
            assert_eq!(Ok(fast), saphyr(text), "{text:?}");
        }
        let left = [
            "a: 0x1F\n",
            "a: 1e3\n",
            "a: 1.5\n",
            "a: .inf\n",
            "a: yes\n",
            "a: On\n",
            "a: 007\n",
            "a: +5\n",
            "a: -.5\n",
            "a: nULL\n",
            "flow: [x, y]\n",
            "a: &x 1\nb: *x\n",
            "a: !!str 5\n",
            "base: &b {x: 1}\nd:\n  <<: *b\n",
            "a: 1\na: 2\n",
            "a: 1_000\n",
            "a: 1.\n",
            "a: -1E+5\n",
            "a: 0b101\n",
            "a: .NaN\n",
            "1: one\n",
            "? [a, b]\n: c\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: [unclosed\n",
            "a: b\n c: d\n",
            "a: 99999999999999999999\n",
            "sel:\n  $serde_json::private::RawValue: 'x'\n",
            "sel: {$serde_json::private::Number: '1'}\n",
        ];
        for text in left {
            assert_eq!(documents(text), None, "{text:?}");
        }
    }

    /// The fuzz target's committed seeds (odd YAML of every kind) and the inputs it found
    /// failing read the same both ways.
    #[test]
    fn fuzz_seeds_read_the_same_both_ways() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let seeds = std::fs::read_dir(fuzz.join("corpus/sigma_rule")).expect("the committed fuzz seeds");
        let found = std::fs::read_dir(fuzz.join("crashes-found/sigma_rule")).expect("the inputs fuzzing found");
        let (mut seen, mut fast) = (0, 0);
        for entry in seeds.chain(found) {
            let bytes = std::fs::read(entry.expect("a seed").path()).expect("read a seed");
            let Ok(text) = std::str::from_utf8(&bytes) else { continue };
            seen += 1;
            // Each fast reader on its own, as `documents` tries the second only where the
            // first declines.
            for read in [block_documents, event_documents] {
                if let Some(docs) = read(text) {
                    fast += 1;
                    let docs: Vec<Value> = docs.into_iter().filter(|v| !v.is_null()).collect();
                    assert_eq!(Ok(docs), parse_general(text), "{text:?}");
                }
            }
        }
        assert!(seen > 100 && fast > 10, "{fast} of {seen} seeds on the fast path");
    }

    #[test]
    fn deep_nesting_and_big_files_are_left_to_serde_saphyr() {
        let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(documents(&nested(MAX_DEPTH)).is_some());
        assert_eq!(documents(&nested(MAX_DEPTH + 1)), None);
        let many_documents = "a: 1\n---\n".repeat(MAX_DOCUMENTS + 1);
        assert_eq!(documents(&many_documents), None);
        let many_nodes = format!("[{}]", "1,".repeat(MAX_NODES));
        assert_eq!(documents(&many_nodes), None);
    }
}
