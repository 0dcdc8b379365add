//! The block YAML that rules are written in, read line by line.
//!
//! Rule files use a small part of YAML: block maps and lists (lists of maps written compactly,
//! `- key: value`), one-line plain and quoted scalars, plain scalars continued on more indented
//! lines, literal block scalars (`|`, `|-`) and one-line flow lists of scalars; comments;
//! several documents separated by `---`. This reader takes exactly that, with every scalar
//! resolved as [`super::scalar`] resolves it, and gives `None` for anything else (tabs,
//! carriage returns, tags, anchors, flow maps, folded or kept block scalars, quoted scalars
//! over several lines, a scalar on its own line, and every error), so that the parser's event
//! reader and then serde-saphyr decide. It reads a rule file several times faster than the
//! general parser, and the values are the same (a test over every SigmaHQ rule file and the
//! fuzz target check it).

use serde_json::{Map, Value};

use super::{MAX_DEPTH, MAX_DOCUMENTS, MAX_NODES, map_key, plain_scalar};

/// Larger files are left to the general readers: rule files are a few KiB (the largest
/// SigmaHQ one, a list of driver hashes, ~300 KiB), and this bound keeps every scalar far
/// inside serde-saphyr's budget.
const MAX_BYTES: usize = 4 << 20;

/// At most this many comment lines between a key or entry and a value on the next lines.
const MAX_COMMENTS_AHEAD: usize = 16;

/// An implicit key is at most this long (YAML's own limit).
const MAX_KEY_BYTES: usize = 1024;

/// The file's documents (an empty one as null), or `None` where the general readers decide.
pub fn documents(text: &str) -> Option<Vec<Value>> {
    if text.len() > MAX_BYTES || !plain_text(text) {
        return None;
    }
    let open_end = !text.ends_with('\n');
    let body = if open_end { text } else { &text[..text.len() - 1] };
    let mut lines: Vec<(usize, &str)> = Vec::new();
    let mut from = 0;
    for end in memchr::memchr_iter(b'\n', body.as_bytes()) {
        lines.push(split_indent(body.get(from..end)?));
        from = end + 1;
    }
    lines.push(split_indent(body.get(from..)?));
    let mut reader = Reader { lines: Vec::new(), pos: 0, nodes: 0, open_end: false };
    let mut docs = Vec::new();
    let mut start = 0;
    let mut marked = false;
    for i in 0..=lines.len() {
        let boundary = match lines.get(i) {
            None => true,
            Some(&(0, line)) => marker(line)?,
            Some(_) => false,
        };
        if !boundary {
            continue;
        }
        let body = &lines[start..i];
        if marked || body.iter().any(|(_, content)| !ignorable(content)) {
            reader.lines.clear();
            reader.lines.extend_from_slice(body);
            reader.pos = 0;
            reader.open_end = open_end && i == lines.len();
            docs.push(reader.document()?);
            if docs.len() > MAX_DOCUMENTS {
                return None;
            }
        }
        marked = true;
        start = i + 1;
    }
    Some(docs)
}

/// Only characters that need no thought: printable, no tab, no carriage return, no byte order
/// mark or other line or paragraph separator.
fn plain_text(text: &str) -> bool {
    let plain = |b: u8| b == b'\n' || (b' '..=b'~').contains(&b);
    // Tested 32 bytes at a time without a branch per byte, which the compiler vectorizes.
    let mut chunks = text.as_bytes().chunks_exact(32);
    let ascii = chunks.by_ref().all(|c| c.iter().fold(true, |all, &b| all & plain(b)))
        && chunks.remainder().iter().all(|&b| plain(b));
    if ascii {
        return true;
    }
    text.chars().all(|c| {
        c == '\n'
            || (' '..='~').contains(&c)
            || (('\u{a0}'..='\u{fffd}').contains(&c) && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}'))
            || c >= '\u{10000}'
    })
}

/// Whether a line ends a document (`---`, maybe with a comment), or `None` for the lines
/// this reader leaves alone (`...`, directives, `---` followed by content).
fn marker(line: &str) -> Option<bool> {
    if let Some(rest) = line.strip_prefix("---") {
        if rest.is_empty() {
            return Some(true);
        }
        let after = rest.trim_start_matches(' ');
        return (rest.starts_with(' ') && (after.is_empty() || after.starts_with('#'))).then_some(true);
    }
    if line.starts_with("...") || line.starts_with('%') {
        return None;
    }
    Some(false)
}

fn split_indent(line: &str) -> (usize, &str) {
    let content = line.trim_start_matches(' ');
    (line.len() - content.len(), content)
}

/// A blank line or a comment (given the line after its indentation).
fn ignorable(content: &str) -> bool {
    content.is_empty() || content.starts_with('#')
}

/// A list entry: `-` alone or followed by a space.
fn is_entry(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

struct Reader<'a> {
    /// The document's lines: indentation and the rest. A list entry's line is rewritten to
    /// the column and text after its `- `, so that what follows reads as a node there.
    lines: Vec<(usize, &'a str)>,
    pos: usize,
    nodes: usize,
    /// The document's last line has no line break (a literal scalar ending there would
    /// lose its final one).
    open_end: bool,
}

impl<'a> Reader<'a> {
    fn document(&mut self) -> Option<Value> {
        let Some((indent, _)) = self.peek() else { return Some(Value::Null) };
        let value = self.node(indent, 0)?;
        self.peek().is_none().then_some(value)
    }

    /// The next line that is neither blank nor a comment (the position moves to it).
    fn peek(&mut self) -> Option<(usize, &'a str)> {
        while let Some(&(indent, content)) = self.lines.get(self.pos) {
            if !ignorable(content) {
                return Some((indent, content));
            }
            self.pos += 1;
        }
        None
    }

    /// The general parser keeps the comments it meets while it looks for the value of a key
    /// or entry with nothing after it, and refuses more than 32: past a few, the general
    /// readers decide.
    fn few_comments_ahead(&self) -> Option<()> {
        let run = self.lines[self.pos..].iter().take_while(|(_, c)| ignorable(c));
        (run.filter(|(_, c)| !c.is_empty()).count() <= MAX_COMMENTS_AHEAD).then_some(())
    }

    fn count(&mut self) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= MAX_NODES).then_some(())
    }

    /// A list or map whose first line, the current one, is indented `indent`.
    fn node(&mut self, indent: usize, depth: usize) -> Option<Value> {
        let (_, content) = self.peek()?;
        if is_entry(content) {
            self.list(indent, depth)
        } else if key(content)?.is_some() {
            self.map(indent, depth)
        } else {
            None
        }
    }

    fn list(&mut self, n: usize, depth: usize) -> Option<Value> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.count()?;
        let mut items = Vec::new();
        while let Some((indent, content)) = self.peek() {
            if indent < n || (indent == n && !is_entry(content)) {
                break;
            }
            if indent > n {
                return None;
            }
            let rest = &content[1..];
            let body = rest.trim_start_matches(' ');
            if ignorable(body) {
                self.pos += 1;
                items.push(self.nested(n, depth)?);
                continue;
            }
            let col = n + 1 + (rest.len() - body.len());
            self.lines[self.pos] = (col, body);
            let item = if is_entry(body) {
                self.list(col, depth + 1)?
            } else if key(body)?.is_some() {
                self.map(col, depth + 1)?
            } else {
                self.scalar(body, n)?
            };
            items.push(item);
        }
        Some(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Option<Value> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.count()?;
        let mut map = Map::new();
        while let Some((indent, content)) = self.peek() {
            if indent < n {
                break;
            }
            if indent > n {
                return None;
            }
            let (k, after) = key(content)??;
            let k = map_key(k)?;
            let after = after.trim_start_matches(' ');
            let value = if ignorable(after) {
                self.pos += 1;
                self.few_comments_ahead()?;
                match self.peek() {
                    // A list at the key's own indentation.
                    Some((i, c)) if i == n && is_entry(c) => self.list(n, depth + 1)?,
                    _ => self.nested(n, depth)?,
                }
            } else {
                self.scalar(after, n)?
            };
            if map.insert(k, value).is_some() {
                return None;
            }
        }
        Some(Value::Object(map))
    }

    /// The value of a key or entry with nothing after it on its line: a node on the next
    /// lines, more indented than `n`, or null.
    fn nested(&mut self, n: usize, depth: usize) -> Option<Value> {
        self.few_comments_ahead()?;
        match self.peek() {
            Some((i, _)) if i > n => self.node(i, depth + 1),
            _ => {
                self.count()?;
                Some(Value::Null)
            }
        }
    }

    /// A scalar that starts on the current line with `text`, in a node indented `n`.
    fn scalar(&mut self, text: &'a str, n: usize) -> Option<Value> {
        self.count()?;
        match text.as_bytes().first()? {
            b'\'' | b'"' => {
                let (value, rest) = quoted(text)?;
                line_end(rest)?;
                self.pos += 1;
                Some(value)
            }
            b'[' => {
                let (value, rest) = flow_list(text)?;
                line_end(rest)?;
                self.pos += 1;
                Some(value)
            }
            b'|' => self.literal(&text[1..], n),
            _ => self.plain(text, n),
        }
    }

    /// A plain scalar, with the lines that continue it (more indented than `n`) folded in.
    fn plain(&mut self, text: &str, n: usize) -> Option<Value> {
        if !plain_start(text) {
            return None;
        }
        let (first, mut ended) = plain_line(text)?;
        let mut folded = String::new();
        folded.push_str(first);
        self.pos += 1;
        let mut blank = false;
        while !ended && let Some(&(indent, content)) = self.lines.get(self.pos) {
            if content.is_empty() {
                blank = true;
                self.pos += 1;
                continue;
            }
            if indent <= n || content.starts_with('#') {
                break;
            }
            // A blank line inside a plain scalar is a line break: left to the general readers.
            if blank || !plain_start(content) {
                return None;
            }
            let (line, comment) = plain_line(content)?;
            folded.push(' ');
            folded.push_str(line);
            ended = comment;
            self.pos += 1;
        }
        plain_scalar(&folded)
    }

    /// A literal block scalar (`|` or `|-`; `header` is what follows the `|`) in a node
    /// indented `n`.
    fn literal(&mut self, header: &str, n: usize) -> Option<Value> {
        let (strip, rest) = match header.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, header),
        };
        // Keep (`+`) and indentation indicators are left to the general readers.
        line_end(rest)?;
        self.pos += 1;
        let &(block, first) = self.lines.get(self.pos)?;
        if first.is_empty() || block <= n {
            return None;
        }
        let mut text = String::new();
        let (mut blanks, mut last) = (0, self.pos);
        while let Some(&(indent, content)) = self.lines.get(self.pos) {
            if content.is_empty() {
                // Spaces past the block's indentation on a blank line are text.
                if indent > block {
                    return None;
                }
                blanks += 1;
                self.pos += 1;
                continue;
            }
            if indent < block {
                break;
            }
            if !text.is_empty() {
                text.push('\n');
            }
            for _ in 0..blanks {
                text.push('\n');
            }
            blanks = 0;
            text.extend(std::iter::repeat_n(' ', indent - block));
            text.push_str(content);
            last = self.pos;
            self.pos += 1;
        }
        if !strip {
            if self.open_end && last + 1 == self.lines.len() {
                return None;
            }
            text.push('\n');
        }
        Some(Value::String(text))
    }
}

/// A map key at the start of `content`: the key and what follows its `:`; `Some(None)` if
/// the line is not a key; `None` for keys left to the general readers.
fn key(content: &str) -> Option<Option<(Value, &str)>> {
    let bytes = content.as_bytes();
    match bytes.first()? {
        b'\'' | b'"' => {
            let (k, rest) = quoted(content)?;
            let after = rest.trim_start_matches(' ');
            Some(after.strip_prefix(':').filter(|a| a.is_empty() || a.starts_with(' ')).map(|a| (k, a)))
        }
        b'?' | b':' if bytes.get(1).is_none_or(|&b| b == b' ') => None,
        _ if !plain_start(content) => Some(None),
        _ => {
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'#' && bytes[i - 1] == b' ' {
                    return Some(None);
                }
                if b == b':' && bytes.get(i + 1).is_none_or(|&b| b == b' ') {
                    let k = content[..i].trim_end_matches(' ');
                    if k.len() > MAX_KEY_BYTES {
                        return None;
                    }
                    return Some(Some((plain_scalar(k)?, &content[i + 1..])));
                }
            }
            Some(None)
        }
    }
}

/// Whether `text` may start a plain scalar without a second look: not an indicator, or `-`,
/// `?` or `:` followed by a character that is not a space or a flow indicator.
fn plain_start(text: &str) -> bool {
    match text.as_bytes() {
        [] => false,
        [b'-' | b'?' | b':', next, ..] => !matches!(next, b' ' | b',' | b'[' | b']' | b'{' | b'}'),
        [first, ..] => !b"-?:,[]{}#&*!|>'\"%@`".contains(first),
    }
}

/// A line of a plain scalar: its text up to a comment, and whether a comment ended it; `None`
/// where a `: ` (or a final `:`) makes it something else.
fn plain_line(line: &str) -> Option<(&str, bool)> {
    let bytes = line.as_bytes();
    let mut end = bytes.len();
    let mut comment = false;
    for at in memchr::memchr2_iter(b'#', b':', bytes) {
        if bytes[at] == b'#' {
            if at > 0 && bytes[at - 1] == b' ' {
                (end, comment) = (at, true);
                break;
            }
        } else if bytes.get(at + 1).is_none_or(|&b| b == b' ') {
            return None;
        }
    }
    // No `:` ends the text: it would have been followed by a space or the end of the line.
    Some((line[..end].trim_end_matches(' '), comment))
}

/// What may follow a scalar on its line: nothing, or spaces and a comment.
fn line_end(rest: &str) -> Option<()> {
    let after = rest.trim_start_matches(' ');
    (rest.is_empty() || (rest.starts_with(' ') && (after.is_empty() || after.starts_with('#')))).then_some(())
}

/// A quoted scalar that closes on its line: the value and the rest of the line.
fn quoted(text: &str) -> Option<(Value, &str)> {
    if let Some(body) = text.strip_prefix('\'') {
        let mut out = String::new();
        let mut rest = body;
        loop {
            let at = memchr::memchr(b'\'', rest.as_bytes())?;
            out.push_str(&rest[..at]);
            // `''` is a quote; a single one closes.
            match rest[at + 1..].strip_prefix('\'') {
                Some(after) => {
                    out.push('\'');
                    rest = after;
                }
                None => return Some((Value::String(out), &rest[at + 1..])),
            }
        }
    }
    let mut rest = text.strip_prefix('"')?;
    let mut out = String::new();
    loop {
        let at = memchr::memchr2(b'"', b'\\', rest.as_bytes())?;
        out.push_str(&rest[..at]);
        if rest.as_bytes()[at] == b'"' {
            return Some((Value::String(out), &rest[at + 1..]));
        }
        let mut chars = rest[at + 1..].chars();
        let unit = |chars: &mut std::str::Chars<'_>, digits: usize| {
            let mut code = 0u32;
            for _ in 0..digits {
                code = code * 16 + chars.next()?.to_digit(16)?;
            }
            char::from_u32(code)
        };
        out.push(match chars.next()? {
            '\\' => '\\',
            '"' => '"',
            '/' => '/',
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '0' => '\0',
            'x' => unit(&mut chars, 2)?,
            'u' => unit(&mut chars, 4)?,
            _ => return None,
        });
        rest = chars.as_str();
    }
}

/// A flow list of scalars that closes on its line: the value and the rest of the line.
fn flow_list(text: &str) -> Option<(Value, &str)> {
    let mut rest = text.strip_prefix('[')?.trim_start_matches(' ');
    let mut items = Vec::new();
    if let Some(after) = rest.strip_prefix(']') {
        return Some((Value::Array(items), after));
    }
    loop {
        let (item, after) = match rest.as_bytes().first()? {
            b'\'' | b'"' => quoted(rest)?,
            _ => {
                let end = rest.find([',', ']'])?;
                let text = rest[..end].trim_end_matches(' ');
                if !plain_start(text) || text.contains([':', '#', '[', '{', '}', '\'', '"']) {
                    return None;
                }
                (plain_scalar(text)?, &rest[end..])
            }
        };
        items.push(item);
        let after = after.trim_start_matches(' ');
        if let Some(next) = after.strip_prefix(',') {
            rest = next.trim_start_matches(' ');
            // A trailing comma is left to the general readers.
            if rest.starts_with(']') {
                return None;
            }
        } else {
            return Some((Value::Array(items), after.strip_prefix(']')?));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every text this reader takes, it reads as serde-saphyr does; the others it leaves.
    #[test]
    fn reads_the_block_subset_as_serde_saphyr_does() {
        let taken = [
            "title: T\nid: 5b3d2b1c\nlevel: high\ntags: [attack.t1059, attack.execution]\n",
            "detection:\n  sel:\n    EventID: 4688\n    CommandLine|contains:\n      - ' -enc '\n      - \"\\\\x41\"\n  condition: sel\n",
            "a: ~\nb: null\nc:\nd: true\ne: FALSE\nf: -12\ng: 0\nh: 18446744073709551615\n",
            "a: -enc\nb: --help\nc: /c whoami\nd: \"007\"\ne: 'yes'\nf: C:\\Windows\\*\n",
            "text: |\n  line one\n  line two\nstripped: |-\n    a\n\n      b\n\n\nnext: 1\n",
            "a: 1\n---\nb: 2\n---\n",
            "multi: one\n  two\n  three\nnext: x # comment\n",
            "date: 2022-10-12\nmodified: 2023/01/05\nid: 5b3d2b1c-84e0-4a6c-9c6b-0e5cb3c3c9a1\nv: 1.2.3\nx: 1e\nk: e5\nz: .\nw: '-'\n",
            "sel:\n- a\n- b\nother:\n  - k: 1\n    l: 2\n  -   m: 3\n  - - x\n    - z\n  -\n    p: 4\n  -\n",
            "# head\n---\nlist:\n    # a comment\n    - 'it''s'   # trailing\n    - \"tab\\there \\u00e9 \\/\"\n    - http://x/y:8080\n    - a#b\n",
            "'quoted key': 1\n\"dq\": [1, 'a, b', \"c\"]\nempty: []\nk:    spaced   \n",
            "- item\n  continued\n- |\n  lit\n",
            "u: ünïcode\nv: '日本'\nw: \"\\xe9\\x41\"\n",
        ];
        for text in taken {
            let Some(fast) = documents(text) else { panic!("left {text:?}") };
            let fast: Vec<Value> = fast.into_iter().filter(|v| !v.is_null()).collect();
            assert_eq!(Ok(fast), super::super::parse_general(text), "{text:?}");
        }
        let left = [
            "a: 0x1F\n",
            "a: yes\n",
            "flow: [x, y]\n",
            "a: &x 1\nb: *x\n",
            "a: !!str 5\n",
            "a: 1\na: 2\n",
            "1: one\n",
            "? a\n: b\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: [unclosed\n",
            "a: b\n c: d\n",
            "a:\tb\n",
            "a: b\r\n",
            "a: {x: 1}\n",
            "a: >\n  folded\n",
            "a: |+\n  kept\n",
            "a: |2\n  indented\n",
            "a: 'multi\n  line'\n",
            "a:\n  scalar alone\n",
            "a: one\n\n  two\n",
            "a: b: c\n",
            "a: - b\n",
            "a: \"\\q\"\n",
            "desc: line\n    continued: no\n",
            "a: [x,]\n",
            "a: |\n  no break at the end",
            "a: |\n   \n  x\n",
            "a: |\n  x\n   \n",
            "--- a\n",
            "...\n",
            "a: 1\n  - b\n",
            &format!("a:\n{}  b: 1\n", "# c\n".repeat(40)),
            &format!("l:\n  -\n{}    x: 1\n", "    # c\n".repeat(40)),
            "- a\n b: 1\n",
            "sel:\n  $serde_json::private::RawValue: 'x'\n",
        ];
        for text in left {
            assert_eq!(documents(text), None, "{text:?}");
        }
    }

    /// Rule-like documents: maps and lists nested at varied indentation, written in the
    /// forms rule files use, with comments, blank lines and continued plain scalars.
    #[derive(Clone, Debug)]
    enum Tree {
        Scalar(&'static str),
        Map(Vec<(&'static str, Tree)>),
        List(Vec<Tree>),
    }

    fn tree() -> impl proptest::strategy::Strategy<Value = Tree> {
        use proptest::prelude::*;
        let scalar = prop::sample::select(vec![
            "v",
            "'q''s'",
            "\"d\\\\q\\x41\"",
            "x # c",
            "-1",
            "~",
            "a:b",
            "c:\\w",
            "[a, 'b']",
            "[]",
            "|\n  lit\n\n  eral",
            "|-\n    two\n     more",
            "one\n  two",
            "'it'  ",
            "\"\"",
            "http://h/p",
            "a#b",
            "7",
            "true",
            "-enc",
            "|\n\n  x",
            "|\n  x\n   ",
            "one\n\n  two",
            "[a,]",
            "{a: 1}",
            "&x a",
            "!t a",
            "yes",
        ]);
        let key = prop::sample::select(vec!["k", "EventID", "Image|endswith", "'quoted key'", "a b", "k2", "k3", "k"]);
        scalar.prop_map(Tree::Scalar).prop_recursive(4, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec((key.clone(), inner.clone()), 1..4).prop_map(Tree::Map),
                prop::collection::vec(inner, 1..4).prop_map(Tree::List),
            ]
        })
    }

    /// Writes `tree` as the value after `key:` or `- ` (`inline`) or as a node at `indent`.
    fn render(tree: &Tree, indent: usize, step: usize, comments: bool, out: &mut String) {
        let pad = " ".repeat(indent);
        match tree {
            Tree::Scalar(s) => {
                // A block scalar's or continued scalar's later lines are indented past the node.
                let text = s.replace('\n', &format!("\n{pad}"));
                out.push(' ');
                out.push_str(&text);
                out.push('\n');
            }
            Tree::Map(entries) => {
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 || !out.ends_with("- ") {
                        out.push_str(&pad);
                    }
                    out.push_str(k);
                    out.push(':');
                    match v {
                        Tree::Scalar(_) => render(v, indent + step, step, comments, out),
                        _ => {
                            out.push('\n');
                            if comments {
                                out.push_str(&format!("{pad}# between\n\n"));
                            }
                            render(v, indent + step, step, comments, out);
                        }
                    }
                }
            }
            Tree::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 || !out.ends_with("- ") {
                        out.push_str(&pad);
                    }
                    out.push_str("- ");
                    match item {
                        Tree::Scalar(_) => {
                            out.pop();
                            render(item, indent + 2, step, comments, out);
                        }
                        _ => render(item, indent + 2, step, comments, out),
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn rule_like_documents_read_as_serde_saphyr_reads_them(
            tree in tree(), step in 1usize..5, comments in proptest::bool::ANY,
        ) {
            let mut text = String::new();
            render(&tree, 0, step, comments, &mut text);
            if let Some(docs) = documents(&text) {
                let docs: Vec<Value> = docs.into_iter().filter(|v| !v.is_null()).collect();
                proptest::prop_assert_eq!(Ok(docs), super::super::parse_general(&text), "{:?}", text);
            }
        }
    }
}
