//! Matching Sigma wildcard patterns (`*`, `?`) without building an automaton: a pattern is
//! split at its stars into segments; the first must match at the start, the last at the end,
//! and the others are placed leftmost in between, which finds a match whenever there is one.

use memchr::memmem;

use crate::value::{Part, SigmaString};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(String),
    /// `?`: any one character.
    One,
}

/// A run of literals and `?` between two stars.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment(Vec<Tok>);

impl Segment {
    /// Where a match of the segment starting at `pos` ends, if it matches there.
    fn match_at(&self, hay: &str, mut pos: usize) -> Option<usize> {
        for t in &self.0 {
            match t {
                Tok::Lit(l) => {
                    if !hay.get(pos..)?.starts_with(l.as_str()) {
                        return None;
                    }
                    pos += l.len();
                }
                Tok::One => pos += hay.get(pos..)?.chars().next()?.len_utf8(),
            }
        }
        Some(pos)
    }

    /// The start of a match of the segment that ends exactly at `end`.
    fn match_ending_at(&self, hay: &str, mut end: usize) -> Option<usize> {
        for t in self.0.iter().rev() {
            match t {
                Tok::Lit(l) => {
                    if !hay.get(..end)?.ends_with(l.as_str()) {
                        return None;
                    }
                    end -= l.len();
                }
                Tok::One => end -= hay.get(..end)?.chars().next_back()?.len_utf8(),
            }
        }
        Some(end)
    }

    /// The leftmost match at or after `from` that ends by `limit`: (start, end).
    fn find(&self, hay: &str, from: usize, limit: usize) -> Option<(usize, usize)> {
        let window = hay.get(..limit)?;
        if let [Tok::Lit(l)] = self.0.as_slice() {
            let at = memmem::find(window.get(from..)?.as_bytes(), l.as_bytes())?;
            return Some((from + at, from + at + l.len()));
        }
        let mut start = from;
        loop {
            if let Some(end) = self.match_at(window, start) {
                return Some((start, end));
            }
            start += window.get(start..)?.chars().next()?.len_utf8();
        }
    }
}

/// A compiled wildcard pattern, matched against the whole value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    /// Segments between stars; a pattern with no star has exactly one.
    segments: Vec<Segment>,
}

impl Glob {
    /// Compiles `s`, lowercasing its literals when `lowercase`.
    pub fn new(s: &SigmaString, lowercase: bool) -> Glob {
        let mut segments = vec![Segment(Vec::new())];
        for p in &s.parts {
            let current = segments.last_mut().map(|s| &mut s.0);
            match (p, current) {
                (Part::Star, _) => segments.push(Segment(Vec::new())),
                (Part::One, Some(seg)) => seg.push(Tok::One),
                (Part::Lit(l), Some(seg)) => seg.push(Tok::Lit(if lowercase { l.to_lowercase() } else { l.clone() })),
                (_, None) => {}
            }
        }
        Glob { segments }
    }

    pub fn is_match(&self, hay: &str) -> bool {
        let n = self.segments.len();
        let Some(first) = self.segments.first() else { return hay.is_empty() };
        if n == 1 {
            return first.match_at(hay, 0) == Some(hay.len());
        }
        let Some(mut pos) = first.match_at(hay, 0) else { return false };
        let Some(last_start) = self.segments[n - 1].match_ending_at(hay, hay.len()) else { return false };
        if last_start < pos {
            return false;
        }
        for seg in &self.segments[1..n - 1] {
            match seg.find(hay, pos, last_start) {
                Some((_, end)) => pos = end,
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> Glob {
        Glob::new(&SigmaString::parse(p), false)
    }

    /// A straightforward recursive matcher to compare against.
    fn naive(p: &[char], h: &[char]) -> bool {
        match p.split_first() {
            None => h.is_empty(),
            Some(('*', rest)) => (0..=h.len()).any(|i| naive(rest, &h[i..])),
            Some(('?', rest)) => !h.is_empty() && naive(rest, &h[1..]),
            Some((c, rest)) => h.first() == Some(c) && naive(rest, &h[1..]),
        }
    }

    #[test]
    fn examples() {
        assert!(g("a*b?c").is_match("aZZbYc"));
        assert!(!g("a*b?c").is_match("abc"));
        assert!(g("*").is_match(""));
        assert!(g("**").is_match("x"));
        assert!(g("*\\\\temp\\\\*.exe").is_match("c:\\\\temp\\\\x.exe"));
        assert!(g("?").is_match("é"));
        assert!(!g("??").is_match("é"));
        assert!(g("*aa*aa").is_match("aaaa"));
        assert!(!g("*aa*aa").is_match("aaa"));
        assert!(!g("*aa*aa").is_match("aa"));
        assert!(g("").is_match(""));
        assert!(!g("").is_match("a"));
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_a_naive_matcher(p in "[ab*?]{0,7}", h in "[abé]{0,8}") {
            let pc: Vec<char> = p.chars().collect();
            let hc: Vec<char> = h.chars().collect();
            proptest::prop_assert_eq!(g(&p).is_match(&h), naive(&pc, &hc), "pattern {:?} value {:?}", p, h);
        }
    }
}
