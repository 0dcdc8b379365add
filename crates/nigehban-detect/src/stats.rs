//! Robust statistics for behaviour detectors: quartiles, Bowley skewness and the median
//! absolute deviation, which outliers (a missed beacon, one large upload) barely move.

/// The `p`-quantile (0 ≤ p ≤ 1) of sorted, non-empty `v`, by linear interpolation.
pub fn quantile(v: &[f64], p: f64) -> f64 {
    debug_assert!(!v.is_empty());
    let k = (v.len() - 1) as f64 * p;
    let f = k.floor() as usize;
    let c = (f + 1).min(v.len() - 1);
    v[f] + (v[c] - v[f]) * (k - f as f64)
}

/// Shape of a sample: its median, Bowley skewness (−1 … 1, 0 for symmetric) and median
/// absolute deviation from the median.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub median: f64,
    pub skew: f64,
    pub madm: f64,
}

/// The [`Shape`] of `values` (any order); `None` when empty.
pub fn shape(values: &mut [f64]) -> Option<Shape> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let (q1, q2, q3) = (quantile(values, 0.25), quantile(values, 0.5), quantile(values, 0.75));
    let skew = if q3 == q1 { 0.0 } else { (q3 + q1 - 2.0 * q2) / (q3 - q1) };
    let mut dev: Vec<f64> = values.iter().map(|x| (x - q2).abs()).collect();
    dev.sort_by(f64::total_cmp);
    Some(Shape { median: q2, skew, madm: quantile(&dev, 0.5) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_skew_and_deviation() {
        let s = shape(&mut [10.0, 10.0, 10.0, 10.0]).unwrap();
        assert_eq!(s, Shape { median: 10.0, skew: 0.0, madm: 0.0 });
        let s = shape(&mut [5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.skew, 0.0);
        assert_eq!(s.madm, 1.0);
        // A long right tail: positive skew.
        let s = shape(&mut [1.0, 1.0, 1.0, 2.0, 10.0, 50.0]).unwrap();
        assert!(s.skew > 0.5, "{s:?}");
        assert!(shape(&mut []).is_none());
    }
}
