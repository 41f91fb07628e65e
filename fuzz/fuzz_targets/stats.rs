//! `GradStats::of`, `of_chunk`, `merge`, `std_unbiased` and `noise_sigma` on arbitrary
//! gradients.
//!
//! Valid input (non-empty, finite): finite mean, `M2 >= 0`, exact count and `max_abs`, a
//! finite std `>= 0` bounded by `max_abs`, a finite sigma `>= 1e-8`, and the documented
//! splittability (chunk summaries merged in chunk order give `of`'s bits). Invalid input: an
//! error naming the first non-finite value.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_core::stats::SIGMA_EPS;
use ogm_core::{GradStats, OgmError, CHUNK};
use ogm_core_fuzz::{f32s, tile, F32};

#[derive(Arbitrary, Debug)]
struct Input {
    values: Vec<F32>,
    reps: u8,
    /// Where to cut the values in two for a merge.
    cut: u16,
}

fuzz_target!(|input: Input| {
    let v = tile(f32s(&input.values), input.reps);
    let first_bad = v.iter().position(|x| !x.is_finite());

    // of_chunk never checks, but a non-finite value must surface as a non-finite mean.
    let whole = GradStats::of_chunk(&v);
    if first_bad.is_some() {
        assert!(
            !whole.mean.is_finite(),
            "non-finite input, mean {}",
            whole.mean
        );
    }

    match GradStats::of(&v) {
        Err(e) => match e {
            OgmError::Empty { what: "gradient" } => assert!(v.is_empty()),
            OgmError::NonFinite {
                what: "gradient",
                index,
            } => assert_eq!(Some(index), first_bad),
            other => panic!("unexpected {other:?}"),
        },
        Ok(s) => {
            assert!(!v.is_empty() && first_bad.is_none());
            check_summary(&s, &v);

            // Splittable: the chunk summaries merged in chunk order are `of` bit for bit.
            let folded = v
                .chunks(CHUNK)
                .map(GradStats::of_chunk)
                .fold(GradStats::EMPTY, GradStats::merge);
            assert_eq!(bits(&folded), bits(&s));

            // EMPTY is the identity of merge.
            assert_eq!(bits(&GradStats::EMPTY.merge(s)), bits(&s));
            assert_eq!(bits(&s.merge(GradStats::EMPTY)), bits(&s));

            // A merge at any cut agrees with the direct two-pass summary (exact in exact
            // arithmetic; here up to rounding relative to the data's scale).
            let cut = input.cut as usize % (v.len() + 1);
            let (a, b) = v.split_at(cut);
            let merged = GradStats::of_chunk(a).merge(GradStats::of_chunk(b));
            check_summary(&merged, &v);
            let n = v.len() as f64;
            let scale = whole.max_abs;
            assert_eq!(merged.count, whole.count);
            assert!(
                (merged.mean - whole.mean).abs() <= 1e-12 * scale,
                "mean {} vs {}",
                merged.mean,
                whole.mean
            );
            let tol = 1e-9 * (whole.m2 + n * scale * scale);
            assert!(
                (merged.m2 - whole.m2).abs() <= tol,
                "m2 {} vs {}",
                merged.m2,
                whole.m2
            );
        }
    }
});

/// The documented properties of a summary of the finite, non-empty `v`.
fn check_summary(s: &GradStats, v: &[f32]) {
    assert_eq!(s.count, v.len() as u64);
    assert!(s.mean.is_finite(), "mean {}", s.mean);
    assert!(s.m2.is_finite() && s.m2 >= 0.0, "m2 {}", s.m2);
    let max_abs = v.iter().fold(0.0f32, |m, x| m.max(x.abs())) as f64;
    assert_eq!(s.max_abs, max_abs);
    match s.std_unbiased() {
        None => assert!(v.len() < 2),
        Some(std) => {
            assert!(v.len() >= 2);
            assert!(std.is_finite() && std >= 0.0, "std {std}");
            // sum (x - mean)^2 <= sum x^2 <= n max^2, so std <= max_abs sqrt(n / (n - 1)).
            let n = v.len() as f64;
            let bound = max_abs * (n / (n - 1.0)).sqrt();
            assert!(std <= bound * (1.0 + 1e-9), "std {std} > bound {bound}");
        }
    }
    let sigma = s.noise_sigma();
    assert!(sigma.is_finite() && sigma >= SIGMA_EPS, "sigma {sigma}");
    assert_eq!(sigma, s.std_unbiased().unwrap_or(0.0) + SIGMA_EPS);
}

fn bits(s: &GradStats) -> (u64, u64, u64, u64) {
    (
        s.count,
        s.mean.to_bits(),
        s.m2.to_bits(),
        s.max_abs.to_bits(),
    )
}
