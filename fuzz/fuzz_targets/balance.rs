//! `validate_alpha`, `discrepancy_ratio`, `coefficient`, `balance` and `balance_multi` on
//! arbitrary scores, strengths and ratios.
//!
//! Valid input (finite, non-negative scores and alpha): coefficients in `[0, 1]`, at most one
//! of two below 1, the official branch chosen, `r_a * r_v ~= 1` whenever both are finite, no
//! NaN ratio. Invalid input: an error (never `Ok` with NaN).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_core::balance::validate_alpha;
use ogm_core::{balance, balance_multi, coefficient, discrepancy_ratio, OgmError, MAX_MODALITIES};
use ogm_core_fuzz::{f64s, F64};

#[derive(Arbitrary, Debug)]
struct Input {
    score_audio: F64,
    score_visual: F64,
    alpha: F64,
    alpha2: F64,
    ratio: F64,
    ratio2: F64,
    scores: Vec<F64>,
}

fn valid_score(s: f64) -> bool {
    s.is_finite() && s >= 0.0
}

/// Finite and not negative (`-0.0` is a valid zero).
fn valid_alpha(a: f64) -> bool {
    a.is_finite() && a >= 0.0
}

fn unit(k: f64) -> bool {
    (0.0..=1.0).contains(&k)
}

fuzz_target!(|input: Input| {
    let (sa, sv) = (input.score_audio.get(), input.score_visual.get());
    let (alpha, alpha2) = (input.alpha.get(), input.alpha2.get());
    let (ratio, ratio2) = (input.ratio.get(), input.ratio2.get());

    assert_eq!(validate_alpha(alpha).is_ok(), valid_alpha(alpha));

    // coefficient: in [0, 1] for alpha >= 0 whatever the ratio (NaN included: relu(NaN) is
    // taken as 0), exactly 1 for alpha == 0, non-increasing in alpha and in ratio.
    if valid_alpha(alpha) {
        let k = coefficient(alpha, ratio);
        assert!(unit(k), "coefficient({alpha}, {ratio}) = {k}");
        if alpha == 0.0 {
            assert_eq!(k, 1.0);
        }
        if !ratio.is_nan() && !ratio2.is_nan() {
            let (lo, hi) = if ratio <= ratio2 {
                (ratio, ratio2)
            } else {
                (ratio2, ratio)
            };
            assert!(
                coefficient(alpha, lo) >= coefficient(alpha, hi),
                "not non-increasing in ratio: alpha {alpha}, {lo} < {hi}"
            );
        }
        if valid_alpha(alpha2) && !ratio.is_nan() {
            let (lo, hi) = if alpha <= alpha2 {
                (alpha, alpha2)
            } else {
                (alpha2, alpha)
            };
            assert!(
                coefficient(lo, ratio) >= coefficient(hi, ratio),
                "not non-increasing in alpha: ratio {ratio}, {lo} < {hi}"
            );
        }
    }

    // discrepancy_ratio.
    let scores_ok = valid_score(sa) && valid_score(sv);
    let r = discrepancy_ratio(sa, sv);
    match r {
        Err(e) => {
            assert!(!scores_ok, "{e:?} for scores {sa}, {sv}");
            assert!(matches!(
                e,
                OgmError::NonFinite { .. } | OgmError::Negative { .. }
            ));
        }
        Ok(None) => assert!(sa == 0.0 && sv == 0.0),
        Ok(Some(r)) => {
            assert!(scores_ok && !(sa == 0.0 && sv == 0.0));
            assert!(!r.visual.is_nan() && !r.audio.is_nan(), "{r:?}");
            assert!(r.visual >= 0.0 && r.audio >= 0.0, "{r:?}");
            // -0.0 scores count as +0.0 (documented), so divide the normalised scores.
            assert_eq!(r.visual.to_bits(), ((sv + 0.0) / (sa + 0.0)).to_bits());
            assert_eq!(r.audio.to_bits(), (1.0 / r.visual).to_bits());
            if r.visual.is_finite() && r.audio.is_finite() {
                // 1 / r_v is correctly rounded; a subnormal r_v carries fewer bits, hence the
                // second term.
                let tol = 4.0 * f64::EPSILON + 5e-324 / r.visual;
                let p = r.audio * r.visual;
                assert!((p - 1.0).abs() <= tol, "r_a * r_v = {p} for {r:?}");
            }
        }
    }

    // balance: the official rule.
    let b = balance(sa, sv, alpha);
    match b {
        Err(e) => assert!(!(scores_ok && valid_alpha(alpha)), "{e:?}"),
        Ok(b) => {
            assert!(scores_ok && valid_alpha(alpha));
            assert_eq!(b.ratio, r.unwrap());
            let (ka, kv) = (b.coeff_audio, b.coeff_visual);
            assert!(unit(ka) && unit(kv), "{b:?}");
            assert!(ka == 1.0 || kv == 1.0, "both slowed: {b:?}");
            match b.ratio {
                None => assert!(ka == 1.0 && kv == 1.0),
                Some(r) if r.visual > 1.0 => {
                    assert_eq!(ka, 1.0);
                    assert_eq!(kv.to_bits(), coefficient(alpha, r.visual).to_bits());
                }
                Some(r) => {
                    assert_eq!(kv, 1.0);
                    assert_eq!(ka.to_bits(), coefficient(alpha, r.audio).to_bits());
                }
            }
            // The weaker modality is never the one slowed.
            if sv < sa {
                assert_eq!(kv, 1.0);
            }
            if sa < sv {
                assert_eq!(ka, 1.0);
            }
        }
    }

    // balance_multi.
    let scores = f64s(&input.scores);
    let m = scores.len();
    let valid = (2..=MAX_MODALITIES).contains(&m)
        && valid_alpha(alpha)
        && scores.iter().all(|&s| valid_score(s));
    match balance_multi(&scores, alpha) {
        Err(e) => {
            assert!(!valid, "{e:?} for valid input");
            if !(2..=MAX_MODALITIES).contains(&m) {
                assert_eq!(e, OgmError::ModalityCount { got: m });
            }
        }
        Ok(mb) => {
            assert!(valid, "Ok for invalid input");
            assert_eq!(mb.coeffs.len(), m);
            assert!(mb.coeffs.iter().all(|&k| unit(k)), "{mb:?}");
            let all_zero = scores.iter().all(|&s| s == 0.0);
            assert_eq!(mb.ratios.is_none(), all_zero);
            if let Some(rs) = &mb.ratios {
                assert_eq!(rs.len(), m);
                assert!(rs.iter().all(|&r| !r.is_nan() && r >= 0.0), "{mb:?}");
                let any_dominant = rs.iter().any(|&r| r > 1.0);
                for (i, (&r, &k)) in rs.iter().zip(&mb.coeffs).enumerate() {
                    // Only a dominant modality (or modality 0 on a full tie) is slowed.
                    if r > 1.0 || (!any_dominant && i == 0) {
                        assert_eq!(k.to_bits(), coefficient(alpha, r).to_bits());
                    } else {
                        assert_eq!(k, 1.0, "modality {i} slowed: {mb:?}");
                    }
                }
            } else {
                assert!(mb.coeffs.iter().all(|&k| k == 1.0));
            }
            if m == 2 {
                // Reduces to the official rule bit for bit.
                let b = balance(scores[0], scores[1], alpha).unwrap();
                assert_eq!(mb.coeffs[0].to_bits(), b.coeff_audio.to_bits());
                assert_eq!(mb.coeffs[1].to_bits(), b.coeff_visual.to_bits());
                let rs = b.ratio.map(|r| [r.audio.to_bits(), r.visual.to_bits()]);
                let got = mb.ratios.map(|v| [v[0].to_bits(), v[1].to_bits()]);
                assert_eq!(rs, got);
            }
        }
    }
});
