//! `BalanceTracker` fed arbitrary sequences of steps (scores and alpha through
//! `balance_multi`), at three history lengths.
//!
//! The tracker mirrors the last recorded step, keeps the largest ratio of each step that has
//! ratios (at most `H`, oldest first), and its mean of the finite recorded ratios is finite and
//! lies between their minimum and maximum.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_core::{balance_multi, BalanceTracker};
use ogm_core_fuzz::{f64s, F64};

#[derive(Arbitrary, Debug)]
struct Input {
    steps: Vec<(Vec<F64>, F64)>,
}

fuzz_target!(|input: Input| {
    run::<1>(&input);
    run::<4>(&input);
    run::<16>(&input);
});

fn run<const H: usize>(input: &Input) {
    let mut t = BalanceTracker::<H>::default();
    assert_eq!(t.steps(), 0);
    assert_eq!(t.mean_recent_ratio(), None);
    // What the tracker should hold, kept here the simple way.
    let mut tops: Vec<f64> = Vec::new();
    let mut recorded = 0u64;
    for (scores, alpha) in &input.steps {
        let scores = f64s(scores);
        let Ok(b) = balance_multi(&scores, alpha.get()) else {
            continue;
        };
        t.record(&scores, &b);
        recorded += 1;
        if let Some(r) = &b.ratios {
            tops.push(r.iter().copied().fold(0.0, f64::max));
        }
        assert_eq!(t.steps(), recorded);
        assert_eq!(t.scores(), &scores[..]);
        assert_eq!(t.coeffs(), &b.coeffs[..]);
        assert!(t.coeffs().iter().all(|k| (0.0..=1.0).contains(k)));

        let recent: Vec<f64> = t.recent_ratios().collect();
        let want = &tops[tops.len().saturating_sub(H)..];
        assert_eq!(recent.len(), want.len());
        assert!(recent
            .iter()
            .zip(want)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(recent.iter().all(|r| !r.is_nan() && *r >= 0.0));

        let finite: Vec<f64> = recent.iter().copied().filter(|r| r.is_finite()).collect();
        match t.mean_recent_ratio() {
            None => assert!(finite.is_empty()),
            Some(mean) => {
                assert!(!finite.is_empty());
                assert!(mean.is_finite(), "mean {mean} of finite ratios {finite:?}");
                let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = finite.iter().copied().fold(0.0, f64::max);
                let slack = 1e-12 * hi;
                assert!(
                    mean >= lo - slack && mean <= hi + slack,
                    "mean {mean} of {finite:?}"
                );
            }
        }
    }
}
