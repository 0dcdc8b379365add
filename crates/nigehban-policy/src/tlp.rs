//! Traffic Light Protocol 2.0 (FIRST).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A TLP 2.0 level, ordered from the least to the most restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tlp {
    /// May be shared publicly.
    #[serde(rename = "CLEAR")]
    Clear,
    /// The community: every member organisation of the platform.
    #[serde(rename = "GREEN")]
    Green,
    /// The owner's chain, plus organisations a CERT of the chain shares it with, on need-to-know,
    /// inside that CERT's constituency.
    #[serde(rename = "AMBER")]
    Amber,
    /// The owner's organisation and the chain it reported to; no onward sharing.
    #[serde(rename = "AMBER+STRICT")]
    AmberStrict,
    /// Named recipients only.
    #[serde(rename = "RED")]
    Red,
}

impl Tlp {
    /// Every level, least restrictive first.
    pub const ALL: [Tlp; 5] = [Tlp::Clear, Tlp::Green, Tlp::Amber, Tlp::AmberStrict, Tlp::Red];

    /// The level's name as TLP 2.0 writes it (`TLP:` prefix omitted).
    pub fn as_str(self) -> &'static str {
        match self {
            Tlp::Clear => "CLEAR",
            Tlp::Green => "GREEN",
            Tlp::Amber => "AMBER",
            Tlp::AmberStrict => "AMBER+STRICT",
            Tlp::Red => "RED",
        }
    }

    /// The marking of data derived from two sources: the stricter of the two.
    pub fn strictest(self, other: Tlp) -> Tlp {
        self.max(other)
    }
}

impl fmt::Display for Tlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLP:{}", self.as_str())
    }
}

/// A TLP level that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown TLP level {0:?}: expected CLEAR, GREEN, AMBER, AMBER+STRICT or RED (TLP 1.0's WHITE is read as CLEAR)"
)]
pub struct TlpError(pub String);

impl FromStr for Tlp {
    type Err = TlpError;

    /// Reads `RED`, `tlp:red`, `TLP:AMBER+STRICT`, and TLP 1.0's `WHITE` (= CLEAR).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_prefix("TLP:").or_else(|| t.strip_prefix("tlp:")).unwrap_or(t);
        match t.to_ascii_uppercase().as_str() {
            "CLEAR" | "WHITE" => Ok(Tlp::Clear),
            "GREEN" => Ok(Tlp::Green),
            "AMBER" => Ok(Tlp::Amber),
            "AMBER+STRICT" | "AMBER_STRICT" | "AMBER-STRICT" => Ok(Tlp::AmberStrict),
            "RED" => Ok(Tlp::Red),
            _ => Err(TlpError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_levels_in_their_usual_spellings() {
        assert_eq!("TLP:AMBER+STRICT".parse(), Ok(Tlp::AmberStrict));
        assert_eq!("white".parse(), Ok(Tlp::Clear));
        assert_eq!("tlp:red".parse(), Ok(Tlp::Red));
        assert!("PURPLE".parse::<Tlp>().is_err());
        for t in Tlp::ALL {
            assert_eq!(t.as_str().parse(), Ok(t));
        }
    }

    #[test]
    fn derived_data_keeps_the_strictest_marking() {
        assert_eq!(Tlp::Green.strictest(Tlp::Amber), Tlp::Amber);
        assert_eq!(Tlp::AmberStrict.strictest(Tlp::Clear), Tlp::AmberStrict);
    }
}
