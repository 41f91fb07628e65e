//! Fixed-capacity state a trainer keeps between steps (no allocator): the latest
//! per-modality scores and coefficients and a short history of ratios for logging.

use heapless::HistoryBuffer;

use crate::balance::{MultiBalance, PerModality};

/// The last step's balance and the last `H` dominance ratios.
///
/// The recorded ratio is the largest one-to-others ratio of the step (for two modalities,
/// `max(r_a, r_v)`: how far the dominant modality leads); steps without a ratio (all scores
/// zero) are not recorded.
#[derive(Debug, Clone)]
pub struct BalanceTracker<const H: usize> {
    scores: PerModality,
    coeffs: PerModality,
    ratios: HistoryBuffer<f64, H>,
    steps: u64,
}

impl<const H: usize> Default for BalanceTracker<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const H: usize> BalanceTracker<H> {
    /// An empty tracker.
    pub fn new() -> Self {
        BalanceTracker {
            scores: PerModality::new(),
            coeffs: PerModality::new(),
            ratios: HistoryBuffer::new(),
            steps: 0,
        }
    }

    /// Records one step's scores and their balance (as computed by
    /// [`crate::balance::balance_multi`] from the same scores).
    pub fn record(&mut self, scores: &[f64], balance: &MultiBalance) {
        self.scores.clear();
        // Both come from balance_multi, whose inputs are at most MAX_MODALITIES long.
        let _ = self.scores.extend_from_slice(scores);
        self.coeffs = balance.coeffs.clone();
        if let Some(r) = &balance.ratios {
            let top = r.iter().copied().fold(0.0f64, f64::max);
            self.ratios.write(top);
        }
        self.steps += 1;
    }

    /// Steps recorded so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The last step's scores.
    pub fn scores(&self) -> &[f64] {
        &self.scores
    }

    /// The last step's coefficients.
    pub fn coeffs(&self) -> &[f64] {
        &self.coeffs
    }

    /// The recorded ratios, oldest first.
    pub fn recent_ratios(&self) -> impl Iterator<Item = f64> + '_ {
        self.ratios.oldest_ordered().copied()
    }

    /// Mean of the finite recorded ratios, `None` when there is none. An incremental mean, so
    /// that ratios near `f64::MAX` do not overflow a running sum.
    pub fn mean_recent_ratio(&self) -> Option<f64> {
        let (mean, n) = self
            .recent_ratios()
            .filter(|r| r.is_finite())
            .fold((0.0f64, 0u32), |(m, n), r| {
                (m + (r - m) / (n + 1) as f64, n + 1)
            });
        (n > 0).then_some(mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::balance_multi;

    #[test]
    fn keeps_the_last_h_ratios() {
        let mut t = BalanceTracker::<3>::new();
        for s in [1.0, 2.0, 3.0, 4.0] {
            let scores = [1.0, s];
            t.record(&scores, &balance_multi(&scores, 0.1).unwrap());
        }
        let r: std::vec::Vec<f64> = t.recent_ratios().collect();
        assert_eq!(r, [2.0, 3.0, 4.0]);
        assert_eq!(t.mean_recent_ratio(), Some(3.0));
        assert_eq!(t.steps(), 4);
        assert_eq!(t.scores(), &[1.0, 4.0]);
        assert_eq!(t.coeffs()[0], 1.0);
        assert!(t.coeffs()[1] < 1.0);
    }

    #[test]
    fn mean_of_huge_ratios_is_finite() {
        // Found by the state fuzz target: a running sum of two 1e308 ratios overflowed.
        let mut t = BalanceTracker::<4>::new();
        for _ in 0..2 {
            let s = [1e308, 1.0];
            t.record(&s, &balance_multi(&s, 0.5).unwrap());
        }
        assert_eq!(t.mean_recent_ratio(), Some(1e308));
    }
}
