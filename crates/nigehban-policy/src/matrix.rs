//! The expected visibility matrix (`docs/visibility-matrix.tsv`) as data, for the tests that
//! check the policy and the HTTP API against it.

use std::collections::HashMap;

use crate::{Action, Kind, Role, Tlp};

/// The expected matrix: for a role, a relation and a kind, the actions allowed at each TLP.
#[derive(Debug, Clone, Default)]
pub struct ExpectedMatrix {
    /// (role, relation, kind or `None` for `*`) → actions per TLP (in [`Tlp::ALL`] order).
    cells: HashMap<(Role, String, Option<Kind>), [Vec<Action>; 5]>,
}

/// A line of the matrix that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("visibility matrix line {line}: {message}")]
pub struct MatrixError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn action_of(c: char) -> Option<Action> {
    Some(match c {
        'l' => Action::List,
        'r' => Action::Read,
        's' => Action::Search,
        'e' => Action::Export,
        'w' => Action::Write,
        'h' => Action::Share,
        _ => return None,
    })
}

impl ExpectedMatrix {
    /// Reads the TSV text (comment lines start with `#`; the first other line is the header).
    pub fn parse(text: &str) -> Result<ExpectedMatrix, MatrixError> {
        let mut cells = HashMap::new();
        let mut header_seen = false;
        for (i, line) in text.lines().enumerate() {
            let err = |message: String| MatrixError { line: i + 1, message };
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if !header_seen {
                header_seen = true;
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() != 8 {
                return Err(err(format!("expected 8 tab-separated columns, found {}", cols.len())));
            }
            let role: Role = cols[0].parse().map_err(err)?;
            let relation = cols[1].to_owned();
            let mut per_tlp: [Vec<Action>; 5] = Default::default();
            for (t, cell) in cols[3..].iter().enumerate() {
                if *cell == "-" {
                    continue;
                }
                for c in cell.chars() {
                    per_tlp[t].push(action_of(c).ok_or_else(|| err(format!("unknown action letter {c:?}")))?);
                }
            }
            let kinds: Vec<Option<Kind>> = if cols[2] == "*" {
                vec![None]
            } else {
                cols[2].split(',').map(|k| k.parse::<Kind>().map(Some)).collect::<Result<_, _>>().map_err(err)?
            };
            for kind in kinds {
                if cells.insert((role, relation.clone(), kind), per_tlp.clone()).is_some() {
                    return Err(err(format!("{} / {relation} / {} appears twice", cols[0], cols[2])));
                }
            }
        }
        Ok(ExpectedMatrix { cells })
    }

    /// Every (role, relation) pair the matrix covers.
    pub fn rows(&self) -> Vec<(Role, String)> {
        let mut rows: Vec<(Role, String)> = self.cells.keys().map(|(r, rel, _)| (*r, rel.clone())).collect();
        rows.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
        rows.dedup();
        rows
    }

    /// Whether the action is expected to be allowed; `None` when the matrix has no row for it.
    pub fn allows(&self, role: Role, relation: &str, kind: Kind, tlp: Tlp, action: Action) -> Option<bool> {
        let t = Tlp::ALL.iter().position(|x| *x == tlp)?;
        let row = self
            .cells
            .get(&(role, relation.to_owned(), Some(kind)))
            .or_else(|| self.cells.get(&(role, relation.to_owned(), None)))?;
        Some(row[t].contains(&action))
    }
}
