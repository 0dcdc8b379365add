//! The condition language: `sel and not (filter1 or filter2)`, `1 of sel_*`, `all of them`.
//!
//! Precedence, tightest first: `not`, `and`, `or`; parentheses group. Search names may
//! contain `*` in `x of` patterns. Aggregations after a pipe (`| count() > 5`, Sigma v1) are
//! not part of Sigma v2: they are reported as unsupported (correlation rules replace them).

/// A condition over the searches of one detection, by index into the detection's search list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Search(usize),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    /// Always false (e.g. `1 of x*` where no search matches `x*`); kept rather than an error
    /// only where the specification allows it.
    False,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Of,
    Them,
    One,
    All,
    Word(String),
    Pipe,
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        match c {
            '(' => {
                chars.next();
                out.push(Token::LParen);
            }
            ')' => {
                chars.next();
                out.push(Token::RParen);
            }
            '|' => {
                chars.next();
                out.push(Token::Pipe);
            }
            _ => {
                let mut end = i;
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_whitespace() || d == '(' || d == ')' || d == '|' {
                        break;
                    }
                    end = j + d.len_utf8();
                    chars.next();
                }
                let word = &s[i..end];
                out.push(match word.to_ascii_lowercase().as_str() {
                    "and" => Token::And,
                    "or" => Token::Or,
                    "not" => Token::Not,
                    "of" => Token::Of,
                    "them" => Token::Them,
                    "1" | "any" => Token::One,
                    "all" => Token::All,
                    _ => Token::Word(word.to_owned()),
                });
            }
        }
    }
    Ok(out)
}

/// Parses a condition. `names` are the detection's search names in order; an identifier is
/// resolved to its index, and an unknown identifier is an error.
pub fn parse(condition: &str, names: &[String]) -> Result<Expr, String> {
    let tokens = tokenize(condition)?;
    if tokens.contains(&Token::Pipe) {
        return Err("aggregation expressions (`| count() …`) are not supported; use a correlation rule".into());
    }
    let mut p = Parser { tokens, pos: 0, names, depth: 0 };
    let expr = p.or()?;
    if p.pos != p.tokens.len() {
        return Err(format!("unexpected `{}`", p.describe(p.pos)));
    }
    Ok(expr)
}

/// How deeply parentheses and `not`s may nest: far beyond any real rule, and low enough
/// that neither parsing nor evaluating (both recursive) can exhaust the stack.
pub const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    names: &'a [String],
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn describe(&self, pos: usize) -> String {
        match self.tokens.get(pos) {
            None => "end of condition".into(),
            Some(Token::Word(w)) => w.clone(),
            Some(t) => format!("{t:?}").to_lowercase(),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Expr::Or(items) })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.not()?];
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Expr::And(items) })
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Token::Not) {
            self.pos += 1;
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} levels deep"));
        }
        Ok(())
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let tok = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        match tok {
            Some(Token::LParen) => {
                self.enter()?;
                let e = self.or()?;
                self.depth -= 1;
                if self.peek() != Some(&Token::RParen) {
                    return Err(format!("expected `)`, found {}", self.describe(self.pos)));
                }
                self.pos += 1;
                Ok(e)
            }
            Some(quant @ (Token::One | Token::All)) => {
                if self.peek() != Some(&Token::Of) {
                    return Err(format!("expected `of` after `{}`", if quant == Token::All { "all" } else { "1" }));
                }
                self.pos += 1;
                let targets: Vec<usize> = match self.tokens.get(self.pos).cloned() {
                    Some(Token::Them) => (0..self.names.len()).filter(|&i| !self.names[i].starts_with('_')).collect(),
                    Some(Token::Word(pattern)) => {
                        let matched: Vec<usize> =
                            (0..self.names.len()).filter(|&i| name_matches(&pattern, &self.names[i])).collect();
                        if matched.is_empty() {
                            return Err(format!("`{pattern}` matches no search"));
                        }
                        matched
                    }
                    _ => {
                        return Err(format!(
                            "expected a search pattern or `them` after `of`, found {}",
                            self.describe(self.pos)
                        ));
                    }
                };
                self.pos += 1;
                let items: Vec<Expr> = targets.into_iter().map(Expr::Search).collect();
                Ok(match (quant, items.len()) {
                    (_, 0) => Expr::False,
                    (_, 1) => items.into_iter().next().unwrap_or(Expr::False),
                    (Token::All, _) => Expr::And(items),
                    _ => Expr::Or(items),
                })
            }
            Some(Token::Word(w)) => match self.names.iter().position(|n| *n == w) {
                Some(i) => Ok(Expr::Search(i)),
                None => Err(format!("unknown search `{w}`")),
            },
            Some(_) => Err(format!("unexpected `{}`", self.describe(self.pos - 1))),
            None => Err("condition ends too early".into()),
        }
    }
}

/// `x of` patterns: `*` matches any run of characters.
fn name_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn precedence_not_and_or() {
        let n = names(&["a", "b", "c"]);
        assert_eq!(
            parse("a or not b and c", &n).unwrap(),
            Expr::Or(vec![Expr::Search(0), Expr::And(vec![Expr::Not(Box::new(Expr::Search(1))), Expr::Search(2)])])
        );
        assert_eq!(
            parse("(a or b) and c", &n).unwrap(),
            Expr::And(vec![Expr::Or(vec![Expr::Search(0), Expr::Search(1)]), Expr::Search(2)])
        );
    }

    #[test]
    fn quantifiers() {
        let n = names(&["sel_a", "sel_b", "filter", "_hidden"]);
        assert_eq!(parse("1 of sel_*", &n).unwrap(), Expr::Or(vec![Expr::Search(0), Expr::Search(1)]));
        assert_eq!(parse("all of sel*", &n).unwrap(), Expr::And(vec![Expr::Search(0), Expr::Search(1)]));
        assert_eq!(
            parse("all of them", &n).unwrap(),
            Expr::And(vec![Expr::Search(0), Expr::Search(1), Expr::Search(2)])
        );
        assert_eq!(parse("1 of filter*", &n).unwrap(), Expr::Search(2));
        assert_eq!(parse("any of sel_b", &n).unwrap(), Expr::Search(1));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let n = names(&["a"]);
        let deep = format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&deep, &n).unwrap_err().contains("nested more than"));
        let nots = format!("{}a", "not ".repeat(100_000));
        assert!(parse(&nots, &n).unwrap_err().contains("nested more than"));
        let ok = format!("{}a{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(parse(&ok, &n).unwrap(), Expr::Search(0));
    }

    #[test]
    fn errors_name_the_problem() {
        let n = names(&["a"]);
        assert!(parse("a and b", &n).unwrap_err().contains("unknown search `b`"));
        assert!(parse("(a", &n).unwrap_err().contains("expected `)`"));
        assert!(parse("a | count() > 5", &n).unwrap_err().contains("aggregation"));
        assert!(parse("1 of x*", &n).unwrap_err().contains("matches no search"));
        assert!(parse("a a", &n).unwrap_err().contains("unexpected"));
    }
}
