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

/// Softmax probability of class `label` for one row of already validated logits.
#[inline]
fn row_true_prob(row: &[f32], label: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    // Every term is exp(<= 0) in [0, 1]; the maximum contributes exactly 1, so sum >= 1.
    let sum: f64 = row.iter().map(|&x| libm::exp(x as f64 - max)).sum();
    let p = libm::exp(row[label] as f64 - max) / sum;
    // exp and the division are each correctly rounded to within an ulp; keep the documented range.
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
    for ((row, &y), o) in logits.chunks_exact(classes).zip(labels).zip(out.iter_mut()) {
        *o = row_true_prob(row, y as usize);
    }
    Ok(())
}

/// The batch score `sum_i softmax(logits_i)[labels_i]`, in `[0, batch]`.
///
/// Same inputs and errors as [`true_class_probs`]; the sum runs in batch order, so the result
/// is invariant to row permutations up to `f64` rounding of the sum.
pub fn batch_score(logits: &[f32], labels: &[u32], classes: usize) -> Result<f64> {
    validate_logits(logits, labels, classes)?;
    Ok(logits
        .chunks_exact(classes)
        .zip(labels)
        .map(|(row, &y)| row_true_prob(row, y as usize))
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

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
