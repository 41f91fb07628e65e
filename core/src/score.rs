//! True-class softmax scores: `s = sum_i softmax(logits_i)[y_i]`, the quantity OGM-GE compares
//! between modalities.
//!
//! Logits are row-major `batch x classes` `f32`; the arithmetic is done in `f64` after
//! subtracting each row's maximum, so any finite logits (±1e30 included) give a probability in
//! `[0, 1]` and never overflow.

use crate::error::{OgmError, Result};

/// Checks the shape, labels and finiteness of a logits batch; returns the batch size.
pub fn validate_logits(logits: &[f32], labels: &[u32], classes: usize) -> Result<usize> {
    if classes == 0 {
        return Err(OgmError::ZeroClasses);
    }
    if labels.is_empty() {
        return Err(OgmError::Empty { what: "labels" });
    }
    let expected = labels
        .len()
        .checked_mul(classes)
        .ok_or(OgmError::LengthMismatch {
            what: "logits",
            expected: usize::MAX,
            got: logits.len(),
        })?;
    if logits.len() != expected {
        return Err(OgmError::LengthMismatch {
            what: "logits",
            expected,
            got: logits.len(),
        });
    }
    if let Some(index) = labels.iter().position(|&y| y as usize >= classes) {
        return Err(OgmError::LabelOutOfRange {
            index,
            label: labels[index],
            classes,
        });
    }
    if let Some(index) = crate::error::first_non_finite(logits) {
        return Err(OgmError::NonFinite {
            what: "logits",
            index,
        });
    }
    Ok(labels.len())
}

/// `exp(x)` for `x <= 0` in `f64`, branch-free so that row sums vectorise: Cody–Waite
/// reduction `x = k ln2 + r`, `|r| <= ln2 / 2`, a degree-13 Taylor polynomial for `exp(r)`
/// (truncation error below 1e-17), and the scaling by `2^k` split in two factors so that
/// results in the subnormal range round once. Relative error within a few ulp; exactly 0 below
/// `-745.2` (where `f64` underflows).
#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const ROUND: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to an integer
    let xc = if x < -746.0 { -746.0 } else { x };
    let t = xc * core::f64::consts::LOG2_E + ROUND;
    let kf = t - ROUND;
    let k = (t.to_bits() as i64).wrapping_sub(ROUND.to_bits() as i64);
    let r = (xc - kf * LN2_HI) - kf * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0; // 1 / 13!
    p = 1.0 / 479_001_600.0 + p * r;
    p = 1.0 / 39_916_800.0 + p * r;
    p = 1.0 / 3_628_800.0 + p * r;
    p = 1.0 / 362_880.0 + p * r;
    p = 1.0 / 40_320.0 + p * r;
    p = 1.0 / 5_040.0 + p * r;
    p = 1.0 / 720.0 + p * r;
    p = 1.0 / 120.0 + p * r;
    p = 1.0 / 24.0 + p * r;
    p = 1.0 / 6.0 + p * r;
    p = 0.5 + p * r;
    p = 1.0 + p * r;
    p = 1.0 + p * r;
    // k is in [-1077, 0]: both halves stay in the normal exponent range.
    let k1 = k >> 1;
    let k2 = k - k1;
    let s1 = f64::from_bits(((k1 + 1023) as u64) << 52);
    let s2 = f64::from_bits(((k2 + 1023) as u64) << 52);
    let e = p * s1 * s2;
    if x < -745.2 {
        0.0
    } else {
        e
    }
}

/// Softmax probability of class `label` for one row of already validated logits.
#[inline(always)]
fn row_true_prob(row: &[f32], label: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    // Every term is exp(<= 0) in [0, 1]; the maximum contributes exactly 1, so sum >= 1.
    // Four accumulators let the loop vectorise (the sum order is fixed, so results are
    // reproducible).
    let mut acc = [0.0f64; 4];
    let mut it = row.chunks_exact(4);
    for c in &mut it {
        for l in 0..4 {
            acc[l] += exp_nonpositive(c[l] as f64 - max);
        }
    }
    let mut sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for &x in it.remainder() {
        sum += exp_nonpositive(x as f64 - max);
    }
    let p = exp_nonpositive(row[label] as f64 - max) / sum;
    // Rounding could in principle push p a hair past 1; keep the documented range.
    p.clamp(0.0, 1.0)
}

/// Writes each row's true-class softmax probability `softmax(logits_i)[labels_i]` into `out`.
///
/// `logits` is row-major `labels.len() x classes`. Errors (nothing is written): zero classes,
/// empty labels, a length mismatch of `logits` or `out`, a label `>= classes`, a non-finite
/// logit. Each probability is in `[0, 1]`; it is exactly 0 only when the label's logit is so
/// far below the row maximum that its probability underflows `f64`.
pub fn true_class_probs(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    out: &mut [f64],
) -> Result<()> {
    let batch = validate_logits(logits, labels, classes)?;
    if out.len() != batch {
        return Err(OgmError::LengthMismatch {
            what: "out",
            expected: batch,
            got: out.len(),
        });
    }
    fill_probs(logits, labels, classes, out);
    Ok(())
}

/// The batch score `sum_i softmax(logits_i)[labels_i]`, in `[0, batch]`.
///
/// Same inputs and errors as [`true_class_probs`]; the sum runs in batch order, so the result
/// is invariant to row permutations up to `f64` rounding of the sum.
pub fn batch_score(logits: &[f32], labels: &[u32], classes: usize) -> Result<f64> {
    validate_logits(logits, labels, classes)?;
    Ok(sum_probs(logits, labels, classes))
}

crate::simd::dispatch_avx2! {
    fn fill_probs(logits: &[f32], labels: &[u32], classes: usize, out: &mut [f64]) -> () => fill_probs_body
}

#[inline(always)]
fn fill_probs_body(logits: &[f32], labels: &[u32], classes: usize, out: &mut [f64]) {
    for ((row, &y), o) in logits.chunks_exact(classes).zip(labels).zip(out.iter_mut()) {
        *o = row_true_prob(row, y as usize);
    }
}

crate::simd::dispatch_avx2! {
    fn sum_probs(logits: &[f32], labels: &[u32], classes: usize) -> f64 => sum_probs_body
}

#[inline(always)]
fn sum_probs_body(logits: &[f32], labels: &[u32], classes: usize) -> f64 {
    logits
        .chunks_exact(classes)
        .zip(labels)
        .map(|(row, &y)| row_true_prob(row, y as usize))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut x = 0.0f64;
        while x > -800.0 {
            let (got, want) = (exp_nonpositive(x), libm::exp(x));
            if want >= f64::MIN_POSITIVE {
                assert!(((got - want) / want).abs() < 4.0 * f64::EPSILON, "{x}");
            } else {
                // Subnormal results: within one unit of the smallest subnormal.
                assert!((got - want).abs() <= 5e-324, "{x}: {got:e} vs {want:e}");
            }
            x -= 0.0137;
        }
        assert_eq!(exp_nonpositive(-1e30), 0.0);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn uniform_logits_give_one_over_classes() {
        let logits = [0.0f32; 12];
        let s = batch_score(&logits, &[0, 1, 2], 4).unwrap();
        assert!((s - 0.75).abs() < 1e-15);
    }

    #[test]
    fn huge_logits_stay_finite() {
        let logits = [1e30f32, -1e30, 3.0e38, -3.0e38];
        let mut out = [0.0; 2];
        true_class_probs(&logits, &[0, 1], 2, &mut out).unwrap();
        assert_eq!(out, [1.0, 0.0]);
    }

    #[test]
    fn bad_inputs_are_named() {
        assert_eq!(batch_score(&[0.0], &[0], 0), Err(OgmError::ZeroClasses));
        assert_eq!(
            batch_score(&[], &[], 3),
            Err(OgmError::Empty { what: "labels" })
        );
        assert!(matches!(
            batch_score(&[0.0; 5], &[0, 0], 3),
            Err(OgmError::LengthMismatch {
                what: "logits",
                expected: 6,
                got: 5
            })
        ));
        assert!(matches!(
            batch_score(&[0.0; 6], &[0, 3], 3),
            Err(OgmError::LabelOutOfRange {
                index: 1,
                label: 3,
                classes: 3
            })
        ));
        assert!(matches!(
            batch_score(&[0.0, f32::NAN, 0.0], &[0], 3),
            Err(OgmError::NonFinite {
                what: "logits",
                index: 1
            })
        ));
        let mut out = [0.0; 1];
        assert!(matches!(
            true_class_probs(&[0.0; 6], &[0, 1], 3, &mut out),
            Err(OgmError::LengthMismatch { what: "out", .. })
        ));
    }
}
