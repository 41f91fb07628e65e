//! `modulate_tensor`, `modulate_tensor_with_rng`, `NoiseParams::new` and `modulate_chunk` on
//! arbitrary gradients, coefficients, keys and random words.
//!
//! Ok: every modulated value finite, the statistics those of the unscaled gradient, `OGM` an
//! exact `f32` scaling, the chunked path equal to `modulate_tensor` bit for bit in any chunk
//! order, and the RNG path equal to `k g + sigma z` with `z` from `fill_normals`. Err: the
//! gradient's bytes untouched, and the error names a real fault.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_core::noise::{fill_normals, max_normal_magnitude};
use ogm_core::{
    modulate_chunk, modulate_tensor, modulate_tensor_with_rng, GradStats, Mode, NoiseKey,
    NoiseParams, OgmError, CHUNK,
};
use ogm_core_fuzz::{f32s, mode, same_bits_f32, tile, ReplayRng, F32, F64};

#[derive(Arbitrary, Debug)]
struct Input {
    grad: Vec<F32>,
    reps: u8,
    mode: u8,
    coeff: F64,
    key: u64,
    words: Vec<u64>,
    /// A summary as a caller might build it by hand (`GradStats`' fields are public).
    raw_stats: (u64, F64, F64, F64),
}

fuzz_target!(|input: Input| {
    let g0 = tile(f32s(&input.grad), input.reps);
    let mode = mode(input.mode);
    let coeff = input.coeff.get();
    let key = NoiseKey::new(input.key);

    // NoiseParams::new on any summary: no panic, and Ok only with finite parameters.
    let (count, mean, m2, max_abs) = input.raw_stats;
    let raw = GradStats {
        count,
        mean: mean.get(),
        m2: m2.get(),
        max_abs: max_abs.get(),
    };
    let params = NoiseParams::new(&raw, coeff, mode);
    // Only a summary some tensor could have: the overflow bound is |k| max_abs + sigma max|z|,
    // which means nothing for a negative max_abs or M2 (those get the no-panic check only).
    let describes_a_tensor = raw.max_abs >= 0.0 && raw.m2 >= 0.0;
    if let (Ok(p), true) = (params, describes_a_tensor) {
        assert!(p.coeff.is_finite(), "{p:?} from {raw:?}, coeff {coeff}");
        assert!(p.sigma.is_finite() && p.sigma >= 0.0, "{p:?} from {raw:?}");
    }

    // modulate_tensor.
    let mut g = g0.clone();
    let res = modulate_tensor(&mut g, mode, coeff, key);
    let stats = GradStats::of(&g0);
    match res {
        Ok(None) => {
            assert_eq!(mode, Mode::Normal);
            assert!(same_bits_f32(&g, &g0), "Normal touched the gradient");
        }
        Ok(Some(s)) => {
            assert_ne!(mode, Mode::Normal);
            assert_eq!(Ok(s), stats, "returned statistics are not the input's");
            assert!(coeff.is_finite());
            if let Some(i) = g.iter().position(|x| !x.is_finite()) {
                panic!(
                    "non-finite output g[{i}] = {} from g0[{i}] = {:e}, mode {mode:?}, coeff {coeff:e}, {s:?}",
                    g[i], g0[i]
                );
            }
            let p = NoiseParams::new(&s, coeff, mode).expect("params of an Ok call");
            if mode == Mode::Ogm {
                assert_eq!(p.sigma, 0.0);
                let want: Vec<f32> = g0.iter().map(|&x| p.coeff * x).collect();
                assert!(same_bits_f32(&g, &want), "OGM is not k * g");
            }

            // The chunk path, chunks taken last to first: the same bits.
            let mut h = g0.clone();
            for (c, chunk) in h.chunks_mut(CHUNK).enumerate().rev() {
                modulate_chunk(chunk, c as u64, p, key);
            }
            assert!(
                same_bits_f32(&h, &g),
                "modulate_chunk differs from modulate_tensor"
            );
        }
        Err(e) => {
            assert_ne!(mode, Mode::Normal);
            // "On an error the gradient is untouched."
            assert!(same_bits_f32(&g, &g0), "{e:?} but the gradient changed");
            check_error(e, &g0, coeff, mode, &stats);
        }
    }

    // modulate_tensor_with_rng: the same validation, the documented noise mapping.
    let mut g = g0.clone();
    let mut rng = ReplayRng::new(input.words.clone());
    let res_rng = modulate_tensor_with_rng(&mut g, mode, coeff, &mut rng);
    assert_eq!(res_rng.is_ok(), res.is_ok());
    match res_rng {
        Ok(None) => {
            assert!(same_bits_f32(&g, &g0));
            assert_eq!(rng.draws, 0);
        }
        Ok(Some(s)) => {
            assert_eq!(Ok(s), stats);
            assert!(
                g.iter().all(|x| x.is_finite()),
                "non-finite output (rng path)"
            );
            let p = NoiseParams::new(&s, coeff, mode).unwrap();
            let mut z = vec![0.0f32; g0.len()];
            if p.sigma != 0.0 {
                fill_normals(&mut ReplayRng::new(input.words), &mut z);
                assert_eq!(rng.draws, 4 * g0.len().div_ceil(8));
            } else {
                assert_eq!(rng.draws, 0, "OGM drew noise");
            }
            let want: Vec<f32> = g0
                .iter()
                .zip(&z)
                .map(|(&x, &z)| {
                    if p.sigma == 0.0 {
                        p.coeff * x
                    } else {
                        p.coeff * x + p.sigma * z
                    }
                })
                .collect();
            assert!(same_bits_f32(&g, &want), "rng path is not k g + sigma z");
        }
        Err(e) => {
            assert!(
                same_bits_f32(&g, &g0),
                "{e:?} but the gradient changed (rng path)"
            );
            assert_eq!(Err(e), res);
        }
    }
});

/// Checks that an error of a non-`Normal` modulation names a real fault.
fn check_error(
    e: OgmError,
    g0: &[f32],
    coeff: f64,
    mode: Mode,
    stats: &Result<GradStats, OgmError>,
) {
    match e {
        OgmError::Empty { what: "gradient" } => assert!(g0.is_empty()),
        OgmError::NonFinite {
            what: "gradient",
            index,
        } => assert!(!g0[index].is_finite()),
        OgmError::NonFinite { what: "coeff", .. } => {
            assert!(!coeff.is_finite() && stats.is_ok())
        }
        OgmError::Overflow { what: "coeff" } => {
            // A finite coefficient beyond the f32 range.
            assert!(
                coeff.is_finite() && !(coeff as f32).is_finite(),
                "coeff {coeff}"
            )
        }
        OgmError::Overflow { what: "gradient" } => {
            // Only when the documented bound really comes near f32::MAX.
            let s = stats.as_ref().expect("overflow on a non-finite gradient");
            let sigma = if mode == Mode::OgmGe {
                s.noise_sigma()
            } else {
                0.0
            };
            let bound = coeff.abs() * s.max_abs + sigma * max_normal_magnitude() as f64;
            assert!(
                bound >= 0.99 * f32::MAX as f64,
                "spurious overflow, bound {bound}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}
