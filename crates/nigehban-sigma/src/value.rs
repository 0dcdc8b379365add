//! Sigma strings (`*` and `?` wildcards, `\` escapes) and the value modifiers that transform
//! them (`contains`, `base64offset`, `windash`, `wide` …).

use base64::Engine as _;

/// One piece of a Sigma string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    One,
}

/// A string value with its wildcards recognised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SigmaString {
    pub parts: Vec<Part>,
}

impl SigmaString {
    /// Reads a rule value: `*` and `?` are wildcards; `\*`, `\?` and `\\` stand for the plain
    /// character; a backslash before anything else is a plain backslash.
    pub fn parse(s: &str) -> SigmaString {
        let mut out = SigmaString::default();
        // The literal text since the last wildcard, copied a run at a time.
        let mut lit = String::new();
        let mut rest = s;
        while let Some(at) = memchr::memchr3(b'\\', b'*', b'?', rest.as_bytes()) {
            lit.push_str(&rest[..at]);
            let special = rest.as_bytes()[at];
            rest = &rest[at + 1..];
            match special {
                b'\\' => match rest.as_bytes().first() {
                    Some(&n @ (b'*' | b'?' | b'\\')) => {
                        lit.push(char::from(n));
                        rest = &rest[1..];
                    }
                    _ => lit.push('\\'),
                },
                wildcard => {
                    if !lit.is_empty() {
                        out.parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    out.parts.push(if wildcard == b'*' { Part::Star } else { Part::One });
                }
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            out.parts.push(Part::Lit(lit));
        }
        out
    }

    /// A string with no wildcards at all.
    pub fn literal(s: &str) -> SigmaString {
        let mut out = SigmaString::default();
        if !s.is_empty() {
            out.parts.push(Part::Lit(s.to_owned()));
        }
        out
    }

    fn push_char(&mut self, c: char) {
        if let Some(Part::Lit(s)) = self.parts.last_mut() {
            s.push(c);
        } else {
            self.parts.push(Part::Lit(c.to_string()));
        }
    }

    pub fn has_wildcards(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Lit(_)))
    }

    /// The plain text, when there are no wildcards.
    pub fn as_plain(&self) -> Option<String> {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                _ => return None,
            }
        }
        Some(s)
    }

    pub fn starts_with_star(&self) -> bool {
        matches!(self.parts.first(), Some(Part::Star))
    }

    pub fn ends_with_star(&self) -> bool {
        matches!(self.parts.last(), Some(Part::Star))
    }

    pub fn prepend_star(&mut self) {
        if !self.starts_with_star() {
            self.parts.insert(0, Part::Star);
        }
    }

    pub fn append_star(&mut self) {
        if !self.ends_with_star() {
            self.parts.push(Part::Star);
        }
    }

    /// Applies `f` to every literal piece, keeping wildcards.
    pub fn map_literals(&self, f: impl Fn(&str) -> String) -> SigmaString {
        SigmaString {
            parts: self
                .parts
                .iter()
                .map(|p| match p {
                    Part::Lit(s) => Part::Lit(f(s)),
                    other => other.clone(),
                })
                .collect(),
        }
    }
}

impl std::fmt::Display for SigmaString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.parts {
            match p {
                Part::Lit(s) => {
                    for c in s.chars() {
                        if matches!(c, '*' | '?' | '\\') {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                }
                Part::Star => f.write_str("*")?,
                Part::One => f.write_str("?")?,
            }
        }
        Ok(())
    }
}

/// UTF-16 encodings the `wide`/`utf16*` modifiers produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Utf16 {
    Le,
    Be,
    /// Little-endian with a byte-order mark (`utf16`).
    LeBom,
}

pub fn encode_utf16(s: &str, enc: Utf16) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 2 + 2);
    if enc == Utf16::LeBom {
        out.extend_from_slice(&[0xFF, 0xFE]);
    }
    for unit in s.encode_utf16() {
        match enc {
            Utf16::Be => out.extend_from_slice(&unit.to_be_bytes()),
            Utf16::Le | Utf16::LeBom => out.extend_from_slice(&unit.to_le_bytes()),
        }
    }
    out
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The three base64 encodings of `bytes` at the three possible offsets within an encoded
/// stream, trimmed to the characters that do not depend on the neighbouring bytes.
pub fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    let mut out = Vec::with_capacity(3);
    for (i, start) in START.iter().enumerate() {
        let mut padded = vec![b' '; i];
        padded.extend_from_slice(bytes);
        let enc = base64(&padded);
        let trim_end = match (bytes.len() + i) % 3 {
            0 => 0,
            1 => 3,
            _ => 2,
        };
        let end = enc.len().saturating_sub(trim_end);
        let start = (*start).min(end);
        out.push(enc[start..end].to_owned());
    }
    out
}

/// The dashes Windows command-line parsers accept for `-`/`/` options.
pub const WINDASH_CHARS: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// All variants of `s` with each option dash (a `-` or `/` at the start of a word, i.e. not
/// preceded by a word character and followed by one) replaced by each Windows dash. Capped
/// at `limit` variants.
pub fn windash_variants(s: &SigmaString, limit: usize) -> Vec<SigmaString> {
    // Flatten to a list of tokens so that positions can be found across literal pieces.
    #[derive(Clone)]
    enum Tok {
        Ch(char),
        Star,
        One,
    }
    let mut toks = Vec::new();
    for p in &s.parts {
        match p {
            Part::Lit(l) => toks.extend(l.chars().map(Tok::Ch)),
            Part::Star => toks.push(Tok::Star),
            Part::One => toks.push(Tok::One),
        }
    }
    let is_word = |t: Option<&Tok>| matches!(t, Some(Tok::Ch(c)) if c.is_alphanumeric() || *c == '_');
    let positions: Vec<usize> = (0..toks.len())
        .filter(|&i| {
            matches!(toks[i], Tok::Ch('-' | '/'))
                && !is_word(if i == 0 { None } else { toks.get(i - 1) })
                && is_word(toks.get(i + 1))
        })
        .collect();
    let mut variants = vec![toks.clone()];
    for &pos in &positions {
        let mut next = Vec::new();
        for v in &variants {
            for d in WINDASH_CHARS {
                let mut nv = v.clone();
                nv[pos] = Tok::Ch(d);
                next.push(nv);
                if next.len() >= limit {
                    break;
                }
            }
        }
        variants = next;
    }
    variants
        .into_iter()
        .map(|toks| {
            let mut out = SigmaString::default();
            for t in toks {
                match t {
                    Tok::Ch(c) => out.push_char(c),
                    Tok::Star => out.parts.push(Part::Star),
                    Tok::One => out.parts.push(Part::One),
                }
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_wildcards() {
        // `\*` is a plain star; a backslash followed by a wildcard is written `\\*`.
        let s = SigmaString::parse(r"C:\Windows\\*\a\*b?\\");
        assert_eq!(
            s.parts,
            vec![
                Part::Lit(r"C:\Windows\".into()),
                Part::Star,
                Part::Lit(r"\a*b".into()),
                Part::One,
                Part::Lit("\\".into())
            ]
        );
        assert_eq!(SigmaString::parse(r"C:\Windows\*").as_plain().as_deref(), Some(r"C:\Windows*"));
        assert_eq!(SigmaString::parse(r"\\\\").as_plain().as_deref(), Some(r"\\"));
        assert_eq!(SigmaString::parse(r"a\b").as_plain().as_deref(), Some(r"a\b"));
        assert_eq!(SigmaString::parse("").parts, vec![]);
        assert_eq!(SigmaString::parse("**").parts, vec![Part::Star, Part::Star]);
        assert_eq!(SigmaString::parse("é\\").parts, vec![Part::Lit("é\\".into())]);
    }

    /// The reading rule applied one character at a time, as the specification states it.
    fn parse_by_chars(s: &str) -> SigmaString {
        let mut out = SigmaString::default();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.peek() {
                    Some(&n @ ('*' | '?' | '\\')) => {
                        chars.next();
                        out.push_char(n);
                    }
                    _ => out.push_char('\\'),
                },
                '*' => out.parts.push(Part::Star),
                '?' => out.parts.push(Part::One),
                c => out.push_char(c),
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn parse_reads_as_the_rule_states(s in "[a\\\\*?é ]{0,24}") {
            proptest::prop_assert_eq!(SigmaString::parse(&s).parts, parse_by_chars(&s).parts);
        }
    }

    #[test]
    fn base64_offsets_match_the_reference_algorithm() {
        // Values from the Sigma specification's example for `/bin/bash`.
        let v = base64_offsets(b"/bin/bash");
        assert_eq!(v, vec!["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]);
    }

    #[test]
    fn windash_expands_option_dashes_only() {
        let v = windash_variants(&SigmaString::parse("-exec bypass -nop x-y"), 100);
        assert_eq!(v.len(), 25);
        assert!(v.iter().all(|s| s.as_plain().unwrap().contains("x-y")));
        assert!(v.iter().any(|s| s.as_plain().unwrap() == "/exec bypass \u{2014}nop x-y"));
    }

    #[test]
    fn utf16_encodings() {
        assert_eq!(encode_utf16("ab", Utf16::Le), b"a\0b\0");
        assert_eq!(encode_utf16("ab", Utf16::Be), b"\0a\0b");
        assert_eq!(encode_utf16("a", Utf16::LeBom), b"\xFF\xFEa\0");
    }
}
