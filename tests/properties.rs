//! Property tests of the invariants of `ogm-core` (proptest).

use ogm_core::balance::balance_multi;
use ogm_core::noise::NoiseKey;
use ogm_core::{
    balance, batch_score, coefficient, discrepancy_ratio, modulate_chunk, modulate_tensor,
    modulate_tensor_with_rng, true_class_probs, GradStats, Mode, NoiseParams, CHUNK,
};
use proptest::prelude::*;
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// A batch: (classes, labels, logits) with logits anywhere in the finite f32 range.
fn batch(max_b: usize, max_c: usize) -> impl Strategy<Value = (usize, Vec<u32>, Vec<f32>)> {
    (1..=max_b, 1..=max_c).prop_flat_map(|(b, c)| {
        (
            Just(c),
            prop::collection::vec(0..c as u32, b),
            prop::collection::vec(
                prop_oneof![
                    -50.0f32..50.0,
                    prop::num::f32::NORMAL | prop::num::f32::ZERO | prop::num::f32::SUBNORMAL,
                ],
                b * c,
            ),
        )
    })
}

/// Logits on a 1/256 grid in [-64, 64]: adding an integer shift below 2^15 is exact in f32.
fn grid_batch() -> impl Strategy<Value = (usize, Vec<u32>, Vec<f32>)> {
    (1..=16usize, 1..=40usize).prop_flat_map(|(b, c)| {
        (
            Just(c),
            prop::collection::vec(0..c as u32, b),
            prop::collection::vec((-16384i32..=16384).prop_map(|k| k as f32 / 256.0), b * c),
        )
    })
}

fn finite_grad(max: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![
            -1.0f32..1.0,
            -1e-20f32..1e-20,
            prop::num::f32::NORMAL.prop_filter("spread within f32 range", |v| v.abs() < 1e30),
        ],
        1..max,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scores_are_probabilities((c, labels, logits) in batch(32, 64)) {
        let mut p = vec![0.0; labels.len()];
        true_class_probs(&logits, &labels, c, &mut p).unwrap();
        for &x in &p {
            prop_assert!((0.0..=1.0).contains(&x), "{x}");
        }
        let s = batch_score(&logits, &labels, c).unwrap();
        prop_assert!(s >= 0.0 && s <= labels.len() as f64);
    }

    #[test]
    fn rows_are_shift_invariant((c, labels, logits) in grid_batch(), shifts in prop::collection::vec(-30000i32..30000, 16)) {
        let mut shifted = logits.clone();
        for (i, row) in shifted.chunks_mut(c).enumerate() {
            row.iter_mut().for_each(|x| *x += shifts[i] as f32);
        }
        let (mut p, mut q) = (vec![0.0; labels.len()], vec![0.0; labels.len()]);
        true_class_probs(&logits, &labels, c, &mut p).unwrap();
        true_class_probs(&shifted, &labels, c, &mut q).unwrap();
        // Exact: the shifts are exact in f32 and the computation only sees x - max(row).
        prop_assert_eq!(p, q);
    }

    #[test]
    fn batch_order_does_not_matter((c, labels, logits) in batch(32, 16), seed in any::<u64>()) {
        let b = labels.len();
        let mut order: Vec<usize> = (0..b).collect();
        // A seeded Fisher-Yates shuffle.
        let mut s = seed;
        for i in (1..b).rev() {
            s = ogm_core::noise::fmix64(s.wrapping_add(i as u64));
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let labels2: Vec<u32> = order.iter().map(|&i| labels[i]).collect();
        let logits2: Vec<f32> = order.iter().flat_map(|&i| logits[i * c..(i + 1) * c].to_vec()).collect();
        let s1 = batch_score(&logits, &labels, c).unwrap();
        let s2 = batch_score(&logits2, &labels2, c).unwrap();
        // Only the order of an f64 sum of b terms in [0, 1] differs.
        prop_assert!((s1 - s2).abs() <= 1e-15 * b as f64 * s1.max(1.0));
    }

    #[test]
    fn ratios_are_reciprocal(sa in 1e-300f64..1e300, sv in 1e-300f64..1e300) {
        let r = discrepancy_ratio(sa, sv).unwrap().unwrap();
        if r.visual.is_finite() && r.visual > 0.0 && r.audio.is_finite() {
            prop_assert!((r.audio * r.visual - 1.0).abs() <= 4.0 * f64::EPSILON);
        }
    }

    #[test]
    fn coefficients_are_in_range_and_one_sided(sa in 0.0f64..100.0, sv in 0.0f64..100.0, alpha in 0.0f64..10.0) {
        let b = balance(sa, sv, alpha).unwrap();
        for k in [b.coeff_audio, b.coeff_visual] {
            prop_assert!((0.0..=1.0).contains(&k), "{k}");
        }
        prop_assert!(b.coeff_audio == 1.0 || b.coeff_visual == 1.0);
    }

    #[test]
    fn coefficients_do_not_grow_with_alpha_or_ratio(a1 in 0.0f64..5.0, a2 in 0.0f64..5.0, r1 in 0.0f64..50.0, r2 in 0.0f64..50.0) {
        let (alo, ahi) = (a1.min(a2), a1.max(a2));
        let (rlo, rhi) = (r1.min(r2), r1.max(r2));
        prop_assert!(coefficient(ahi, r1) <= coefficient(alo, r1));
        prop_assert!(coefficient(a1, rhi) <= coefficient(a1, rlo));
    }

    #[test]
    fn two_modality_multi_is_the_official_rule(sa in 0.0f64..64.0, sv in 0.0f64..64.0, alpha in 0.0f64..2.0) {
        let b = balance(sa, sv, alpha).unwrap();
        let m = balance_multi(&[sa, sv], alpha).unwrap();
        prop_assert_eq!(m.coeffs.as_slice(), &[b.coeff_audio, b.coeff_visual]);
        match (b.ratio, m.ratios) {
            (Some(r), Some(v)) => {
                prop_assert_eq!(v[0].to_bits(), r.audio.to_bits());
                prop_assert_eq!(v[1].to_bits(), r.visual.to_bits());
            }
            (None, None) => {}
            (x, y) => prop_assert!(false, "{x:?} vs {y:?}"),
        }
    }

    #[test]
    fn multi_coefficients_are_in_range(scores in prop::collection::vec(0.0f64..10.0, 2..=8), alpha in 0.0f64..3.0) {
        let m = balance_multi(&scores, alpha).unwrap();
        prop_assert_eq!(m.coeffs.len(), scores.len());
        for &k in &m.coeffs {
            prop_assert!((0.0..=1.0).contains(&k));
        }
    }

    #[test]
    fn ogm_with_unit_coefficient_is_the_identity(grad in finite_grad(3000)) {
        let mut g = grad.clone();
        modulate_tensor(&mut g, Mode::Ogm, 1.0, NoiseKey::new(7)).unwrap();
        prop_assert_eq!(g, grad);
    }

    #[test]
    fn modulation_is_deterministic_per_seed(grad in finite_grad(5000), seed in any::<u64>(), k in 0.0f64..=1.0) {
        let (mut g1, mut g2) = (grad.clone(), grad.clone());
        modulate_tensor(&mut g1, Mode::OgmGe, k, NoiseKey::new(seed)).unwrap();
        modulate_tensor(&mut g2, Mode::OgmGe, k, NoiseKey::new(seed)).unwrap();
        prop_assert_eq!(&g1, &g2);
        let (mut h1, mut h2) = (grad.clone(), grad);
        modulate_tensor_with_rng(&mut h1, Mode::OgmGe, k, &mut Xoshiro256PlusPlus::seed_from_u64(seed)).unwrap();
        modulate_tensor_with_rng(&mut h2, Mode::OgmGe, k, &mut Xoshiro256PlusPlus::seed_from_u64(seed)).unwrap();
        prop_assert_eq!(h1, h2);
    }

    #[test]
    fn finite_input_gives_finite_output(grad in finite_grad(4000), k in 0.0f64..=1.0, seed in any::<u64>()) {
        let mut g = grad.clone();
        match modulate_tensor(&mut g, Mode::OgmGe, k, NoiseKey::new(seed)) {
            Ok(stats) => {
                let s = stats.unwrap();
                prop_assert!(s.noise_sigma().is_finite());
                prop_assert!(g.iter().all(|v| v.is_finite()));
            }
            // Only overflow may refuse finite input, and then nothing was written.
            Err(e) => {
                prop_assert_eq!(e, ogm_core::OgmError::Overflow { what: "gradient" });
                prop_assert_eq!(g, grad);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Chunks processed on several threads, in any assignment, give the serial result bit for
    /// bit, statistics included (partials merged in chunk order).
    #[test]
    fn parallel_split_equals_serial(n in 1usize..40_000, threads in 1usize..6, seed in any::<u64>(), k in 0.0f64..=1.0) {
        let grad: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin() * 1e-3).collect();
        let key = NoiseKey::new(seed).derive(3).derive(11);
        let mut serial = grad.clone();
        let serial_stats = modulate_tensor(&mut serial, Mode::OgmGe, k, key).unwrap().unwrap();

        let mut par = grad.clone();
        let partials: Vec<GradStats> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let g = &grad;
                    s.spawn(move || {
                        g.chunks(CHUNK)
                            .enumerate()
                            .filter(|(c, _)| c % threads == t)
                            .map(|(c, ch)| (c, GradStats::of_chunk(ch)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut all: Vec<(usize, GradStats)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
            all.sort_by_key(|(c, _)| *c);
            all.into_iter().map(|(_, s)| s).collect()
        });
        let stats = partials.into_iter().fold(GradStats::EMPTY, GradStats::merge);
        prop_assert_eq!(stats, serial_stats);
        let p = NoiseParams::new(&stats, k, Mode::OgmGe).unwrap();
        std::thread::scope(|s| {
            let mut chunks: Vec<(usize, &mut [f32])> = par.chunks_mut(CHUNK).enumerate().collect();
            // Hand chunks out from the back, round robin, to make the order differ from serial.
            chunks.reverse();
            let mut buckets: Vec<Vec<(usize, &mut [f32])>> = (0..threads).map(|_| Vec::new()).collect();
            for (i, item) in chunks.into_iter().enumerate() {
                buckets[i % threads].push(item);
            }
            for bucket in buckets {
                s.spawn(move || {
                    for (c, ch) in bucket {
                        modulate_chunk(ch, c as u64, p, key);
                    }
                });
            }
        });
        prop_assert_eq!(par, serial);
    }
}
