//! Discrepancy ratios and modulation coefficients: which modality dominates, and by how much
//! its encoder's gradient is slowed.
//!
//! Two modalities follow the official code exactly (`../shared/design.md` §1, steps 4–5):
//! `r_v = s_v / s_a`, `r_a = 1 / r_v`; if `r_v > 1` then `k_v = 1 - tanh(alpha * relu(r_v))`,
//! `k_a = 1`, else `k_a = 1 - tanh(alpha * relu(r_a))`, `k_v = 1`. The else branch includes the
//! tie `r_v == 1` (the audio encoder is slowed), as in the official code; the paper's "k = 1 for
//! rho <= 1" differs only on that measure-zero tie.
//!
//! Zero scores (documented rule of this project): both zero, there is no ratio and no
//! modulation (both coefficients 1; the official code would produce NaN). One zero, the
//! official limit: the ratio of the other modality is `+inf` and its coefficient is
//! `1 - tanh(inf) = 0` (for `alpha > 0`).

use crate::error::{check_finite, OgmError, Result};
use crate::MAX_MODALITIES;

/// A fixed-capacity per-modality array (no allocator needed).
pub type PerModality = heapless::Vec<f64, MAX_MODALITIES>;

/// The two discrepancy ratios of an audio-visual pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    /// `r_v = s_v / s_a`; `+inf` when only the audio score is zero.
    pub visual: f64,
    /// `r_a = 1 / r_v`; `+inf` when only the visual score is zero.
    pub audio: f64,
}

/// The outcome of comparing two modalities' scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Balance {
    /// The ratios; `None` when both scores are zero (no modulation).
    pub ratio: Option<Ratio>,
    /// `k_a`, in `[0, 1]`.
    pub coeff_audio: f64,
    /// `k_v`, in `[0, 1]`; at most one of the two is below 1.
    pub coeff_visual: f64,
}

/// Checks a modulation strength: finite and not negative.
pub fn validate_alpha(alpha: f64) -> Result<()> {
    check_finite("alpha", alpha)?;
    if alpha < 0.0 {
        return Err(OgmError::Negative { what: "alpha" });
    }
    Ok(())
}

/// Checks a score (finite, not negative) and returns it with `-0.0` turned into `+0.0`, so
/// that a zero score divides into `+inf`, never `-inf`.
fn validate_score(what: &'static str, s: f64) -> Result<f64> {
    check_finite(what, s)?;
    if s < 0.0 {
        return Err(OgmError::Negative { what });
    }
    Ok(s + 0.0)
}

/// `1 - tanh(alpha * relu(ratio))`, the official coefficient, with `alpha = 0` meaning exactly
/// 1 (so that `0 * inf` never turns into NaN). Non-increasing in `alpha` and in `ratio`, in
/// `[0, 1]` for `alpha >= 0`.
pub fn coefficient(alpha: f64, ratio: f64) -> f64 {
    if alpha == 0.0 {
        return 1.0;
    }
    let relu = if ratio > 0.0 { ratio } else { 0.0 };
    1.0 - libm::tanh(alpha * relu)
}

/// The two ratios from the batch scores, with the official `r_a = 1 / r_v`.
///
/// Errors: a non-finite or negative score. `Ok(None)` when both scores are zero.
pub fn discrepancy_ratio(score_audio: f64, score_visual: f64) -> Result<Option<Ratio>> {
    let score_audio = validate_score("score_audio", score_audio)?;
    let score_visual = validate_score("score_visual", score_visual)?;
    if score_audio == 0.0 && score_visual == 0.0 {
        return Ok(None);
    }
    // IEEE division gives the official limits: s_a = 0 -> +inf, s_v = 0 -> 0 (then r_a = +inf).
    let visual = score_visual / score_audio;
    Ok(Some(Ratio {
        visual,
        audio: 1.0 / visual,
    }))
}

/// Ratios and coefficients for two modalities (audio, visual) with the official semantics.
///
/// Errors: a non-finite or negative score or `alpha`.
pub fn balance(score_audio: f64, score_visual: f64, alpha: f64) -> Result<Balance> {
    validate_alpha(alpha)?;
    let ratio = discrepancy_ratio(score_audio, score_visual)?;
    let (coeff_audio, coeff_visual) = match ratio {
        None => (1.0, 1.0),
        Some(r) if r.visual > 1.0 => (1.0, coefficient(alpha, r.visual)),
        Some(r) => (coefficient(alpha, r.audio), 1.0),
    };
    Ok(Balance {
        ratio,
        coeff_audio,
        coeff_visual,
    })
}

/// The outcome of comparing `M` modalities' scores.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiBalance {
    /// One-to-others ratio of each modality; `None` when every score is zero.
    pub ratios: Option<PerModality>,
    /// Coefficient of each modality, in `[0, 1]`.
    pub coeffs: PerModality,
}

/// Ratios and coefficients for 2 to [`MAX_MODALITIES`] modalities.
///
/// The generalisation (the authors' suggestion): modality `m`'s ratio is the mean of its
/// pairwise ratios to the others, `rho_m = mean_{j != m} s_m / s_j` (a term is 0 when
/// `s_m = 0`, `+inf` when only `s_j = 0`). Every modality with `rho_m > 1` is slowed with
/// `k_m = 1 - tanh(alpha * rho_m)`; the others keep `k = 1`. When no `rho_m` exceeds 1 (all
/// scores equal) modality 0 is slowed, the official tie rule. All scores zero: no modulation.
///
/// For two modalities this calls [`balance`], so it reduces to the official rule bit for bit
/// (index 0 is audio, 1 is visual; `ratios = [r_a, r_v]`).
///
/// Errors: fewer than 2 or more than [`MAX_MODALITIES`] scores, a non-finite or negative score
/// or `alpha`.
pub fn balance_multi(scores: &[f64], alpha: f64) -> Result<MultiBalance> {
    let m = scores.len();
    if !(2..=MAX_MODALITIES).contains(&m) {
        return Err(OgmError::ModalityCount { got: m });
    }
    validate_alpha(alpha)?;
    let mut clean = PerModality::new();
    for &s in scores {
        // Capacity is MAX_MODALITIES and m <= MAX_MODALITIES was checked above.
        let _ = clean.push(validate_score("scores", s)?);
    }
    let scores = clean.as_slice();
    let mut coeffs = PerModality::new();
    if m == 2 {
        let b = balance(scores[0], scores[1], alpha)?;
        let ratios = b.ratio.map(|r| {
            let mut v = PerModality::new();
            // Capacity is MAX_MODALITIES >= 2: these pushes cannot fail.
            let _ = v.push(r.audio);
            let _ = v.push(r.visual);
            v
        });
        let _ = coeffs.push(b.coeff_audio);
        let _ = coeffs.push(b.coeff_visual);
        return Ok(MultiBalance { ratios, coeffs });
    }
    if scores.iter().all(|&s| s == 0.0) {
        for _ in 0..m {
            let _ = coeffs.push(1.0);
        }
        return Ok(MultiBalance {
            ratios: None,
            coeffs,
        });
    }
    let mut ratios = PerModality::new();
    for (i, &si) in scores.iter().enumerate() {
        let mut total = 0.0;
        for (j, &sj) in scores.iter().enumerate() {
            if i != j {
                total += if si == 0.0 { 0.0 } else { si / sj };
            }
        }
        let _ = ratios.push(total / (m - 1) as f64);
    }
    let any_dominant = ratios.iter().any(|&r| r > 1.0);
    for (i, &r) in ratios.iter().enumerate() {
        let slowed = r > 1.0 || (!any_dominant && i == 0);
        let _ = coeffs.push(if slowed { coefficient(alpha, r) } else { 1.0 });
    }
    Ok(MultiBalance {
        ratios: Some(ratios),
        coeffs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_branches() {
        let b = balance(1.0, 2.0, 0.5).unwrap();
        assert_eq!(b.coeff_audio, 1.0);
        assert_eq!(b.coeff_visual, 1.0 - libm::tanh(1.0));
        let b = balance(2.0, 1.0, 0.5).unwrap();
        assert_eq!(b.coeff_visual, 1.0);
        assert_eq!(b.coeff_audio, 1.0 - libm::tanh(1.0));
        // The tie goes to the else branch: audio is slowed.
        let b = balance(3.0, 3.0, 0.5).unwrap();
        assert_eq!(b.coeff_visual, 1.0);
        assert_eq!(b.coeff_audio, 1.0 - libm::tanh(0.5));
    }

    #[test]
    fn zero_scores() {
        let b = balance(0.0, 0.0, 0.8).unwrap();
        assert_eq!((b.ratio, b.coeff_audio, b.coeff_visual), (None, 1.0, 1.0));
        let b = balance(0.0, 1.0, 0.8).unwrap();
        assert_eq!(b.ratio.unwrap().visual, f64::INFINITY);
        assert_eq!((b.coeff_audio, b.coeff_visual), (1.0, 0.0));
        let b = balance(1.0, 0.0, 0.8).unwrap();
        assert_eq!(b.ratio.unwrap().audio, f64::INFINITY);
        assert_eq!((b.coeff_audio, b.coeff_visual), (0.0, 1.0));
        // alpha = 0 never turns 0 * inf into NaN.
        let b = balance(0.0, 1.0, 0.0).unwrap();
        assert_eq!((b.coeff_audio, b.coeff_visual), (1.0, 1.0));
    }

    #[test]
    fn negative_zero_is_zero() {
        // Found by the balance fuzz target: -0.0 passed validation and divided into -inf.
        assert_eq!(balance(1.0, -0.0, 0.8), balance(1.0, 0.0, 0.8));
        assert_eq!(balance(-0.0, 1.0, 0.8), balance(0.0, 1.0, 0.8));
        assert_eq!(
            balance_multi(&[1.0, 0.0, -0.0], 0.8),
            balance_multi(&[1.0, 0.0, 0.0], 0.8)
        );
        assert_eq!(
            balance_multi(&[1.0, 0.0, -0.0], 0.8).unwrap().coeffs[0],
            0.0
        );
    }

    #[test]
    fn bad_scalars() {
        assert_eq!(
            balance(1.0, 1.0, -0.1),
            Err(OgmError::Negative { what: "alpha" })
        );
        assert!(matches!(
            balance(f64::NAN, 1.0, 0.1),
            Err(OgmError::NonFinite {
                what: "score_audio",
                ..
            })
        ));
        assert_eq!(
            balance(1.0, -1.0, 0.1),
            Err(OgmError::Negative {
                what: "score_visual"
            })
        );
        assert_eq!(
            balance_multi(&[1.0], 0.1),
            Err(OgmError::ModalityCount { got: 1 })
        );
        assert_eq!(
            balance_multi(&[1.0; 9], 0.1),
            Err(OgmError::ModalityCount { got: 9 })
        );
    }

    #[test]
    fn multi_three_modalities() {
        let b = balance_multi(&[1.0, 2.0, 4.0], 0.1).unwrap();
        let r = b.ratios.unwrap();
        assert_eq!(r.as_slice(), &[0.375, 1.25, 3.0]);
        assert_eq!(b.coeffs[0], 1.0);
        assert_eq!(b.coeffs[1], coefficient(0.1, 1.25));
        assert_eq!(b.coeffs[2], coefficient(0.1, 3.0));
        let b = balance_multi(&[2.0, 2.0, 2.0], 0.1).unwrap();
        assert_eq!(b.coeffs.as_slice(), &[1.0 - libm::tanh(0.1), 1.0, 1.0]);
        let b = balance_multi(&[0.0, 0.0, 1.0], 0.1).unwrap();
        assert_eq!(b.coeffs.as_slice(), &[1.0, 1.0, 0.0]);
    }
}
