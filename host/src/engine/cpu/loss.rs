//! Softmax cross-entropy with mean reduction (PyTorch's `nn.CrossEntropyLoss()`).

use crate::engine::error::{check_len, EngineError, Result};
use crate::engine::scalar::Scalar;

/// Mean cross-entropy of `logits` (`[rows][classes]`) against `labels`, and its gradient
/// with respect to the logits. Log-sum-exp is shifted by the row maximum, so large logits do
/// not overflow.
pub fn softmax_cross_entropy<T: Scalar>(
    logits: &[T],
    labels: &[u32],
    classes: usize,
) -> Result<(f64, Vec<T>)> {
    if classes == 0 {
        return Err(EngineError::Config("zero classes".into()));
    }
    let rows = labels.len();
    if rows == 0 {
        return Err(EngineError::Config("empty batch of labels".into()));
    }
    check_len("logits", rows * classes, logits.len())?;
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        return Err(EngineError::NonFinite {
            what: "logits".into(),
            index: i,
        });
    }
    let mut grad = vec![T::ZERO; logits.len()];
    let mut total = 0.0f64;
    let inv_rows = 1.0 / rows as f64;
    for (r, &label) in labels.iter().enumerate() {
        if label as usize >= classes {
            return Err(EngineError::Label {
                row: r,
                label,
                classes,
            });
        }
        let row = &logits[r * classes..(r + 1) * classes];
        let max = row
            .iter()
            .map(|v| v.to_f64())
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v.to_f64() - max).exp()).sum();
        let lse = max + sum.ln();
        total += lse - row[label as usize].to_f64();
        for (c, g) in grad[r * classes..(r + 1) * classes].iter_mut().enumerate() {
            let p = (row[c].to_f64() - lse).exp();
            let t = if c == label as usize { 1.0 } else { 0.0 };
            *g = T::from_f64((p - t) * inv_rows);
        }
    }
    Ok((total * inv_rows, grad))
}
