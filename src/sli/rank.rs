//! Nearest-rank quantiles, the one definition every reader uses: the sketches, the
//! lead-time and time-to-restore medians (live, in the API and in `momentum report`), the
//! summaries' quantiles and the pipeline-duration quantiles. The median of an even count
//! is the lower middle value (docs/momentum-index.md).

/// Nearest rank of quantile `q` among `n` values: `max(1, ⌈q·n⌉)`, clamped to `n`.
///
/// `q` is clamped into [0, 1] (NaN acts as 0). A product within a few ulps above an integer is
/// taken as that integer, so `q = 0.07, n = 100` gives 7 — the decimal the caller meant — and
/// not 8, which the f64 nearest to 0.07 (slightly above it) would give in exact arithmetic.
/// Exact for `n ≤ 2^53`.
pub fn nearest_rank(q: f64, n: u64) -> u64 {
    let q = if q >= 0.0 { q.min(1.0) } else { 0.0 };
    let x = q * n as f64;
    let k = (x - x * 4.0 * f64::EPSILON).ceil() as u64;
    k.max(1).min(n)
}

/// The nearest-rank `q` quantile of ascending `sorted`; None when empty.
pub fn of_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len() as u64;
    (n > 0).then(|| sorted[nearest_rank(q, n) as usize - 1])
}

/// The nearest-rank `q` quantile of `(value, weight)` pairs sorted by value, each value
/// standing for `weight` observations; None when the weights sum to 0.
pub fn of_weighted(sorted: &[(f64, u64)], q: f64) -> Option<f64> {
    let total: u64 = sorted.iter().map(|x| x.1).sum();
    if total == 0 {
        return None;
    }
    let k = nearest_rank(q, total);
    let mut seen = 0u64;
    for &(v, w) in sorted {
        seen += w;
        if seen >= k {
            return Some(v);
        }
    }
    sorted.last().map(|x| x.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_readers_agree_on_a_decimal_quantile() {
        // q = 0.07 of 100 values is rank 7 (the f64 0.07 times 100 is a hair above 7).
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(0.07, 100), 7);
        assert_eq!(of_sorted(&v, 0.07), Some(7.0));
        let w: Vec<(f64, u64)> = v.iter().map(|&x| (x, 1)).collect();
        assert_eq!(of_weighted(&w, 0.07), Some(7.0));
        // weights: 3 × 1.0 and 1 × 2.0 — the median (rank 2 of 4) is 1.0
        assert_eq!(of_weighted(&[(1.0, 3), (2.0, 1)], 0.5), Some(1.0));
        assert_eq!(of_weighted(&[(1.0, 3), (2.0, 1)], 0.9), Some(2.0));
        // the median of an even count is the lower middle value
        assert_eq!(of_sorted(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.0));
        assert_eq!(of_sorted(&[], 0.5), None);
        assert_eq!(of_weighted(&[(1.0, 0)], 0.5), None);
    }
}
