//! The noise primitives: `erfinv`, `normal_from_bits`, `normals_from_u64s`,
//! `max_normal_magnitude`, `NoiseKey`, `LaneRng` and `fill_normals`, against the exact
//! definitions in `ogm_core::noise`'s docs.
//!
//! Every normal is finite and within `max_normal_magnitude`, exactly symmetric, and follows the
//! documented bit mapping; lanes are `rand_xoshiro`'s Xoshiro256++; keys derive by the
//! documented hash; `erfinv` inverts `erf` to its documented accuracy on `(-1, 1)`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_core::noise::{
    erfinv, fill_normals, fmix64, max_normal_magnitude, normal_from_bits, normals_from_u64s, LANES,
    STEP,
};
use ogm_core::{LaneRng, NoiseKey};
use ogm_core_fuzz::{ReplayRng, F32};
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

#[derive(Arbitrary, Debug)]
struct Input {
    xs: Vec<F32>,
    bits: Vec<u32>,
    seeds: [u64; LANES],
    key: u64,
    words: Vec<u64>,
    chunk: u64,
    fill_len: u16,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fuzz_target!(|input: Input| {
    let max = max_normal_magnitude();
    assert!(max.is_finite() && max > 5.3 && max < 5.5, "max {max}");

    // erfinv on (-1, 1) (outside it is not defined; only the absence of a panic is checked).
    for x in input.xs.iter().take(64).map(|x| x.get()) {
        let z = erfinv(x);
        // NaN fails this too.
        let in_domain = x.abs() < 1.0;
        if !in_domain {
            continue;
        }
        assert!(z.is_finite(), "erfinv({x:e}) = {z}");
        // Odd, exactly: (1 - x)(1 + x) is the same product for -x.
        assert_eq!(
            erfinv(-x).to_bits(),
            (-z).to_bits(),
            "erfinv not odd at {x:e}"
        );
        assert!(
            z == 0.0 || (z > 0.0) == (x > 0.0),
            "erfinv({x:e}) = {z}: wrong sign"
        );
        // 1 - 2^-24 is the largest f32 below 1 and the largest |v| normal_from_bits uses.
        assert!(
            core::f32::consts::SQRT_2 * z.abs() <= max,
            "erfinv({x:e}) = {z} past max_normal_magnitude {max}"
        );
        // Accuracy, with the tolerance of ogm-core's own erfinv test, against a Newton
        // solution of erf(r) = x in f64 started from the approximation.
        let x64 = x as f64;
        let mut r = z as f64;
        for _ in 0..40 {
            let f = libm::erf(r) - x64;
            r -= f / (2.0 / core::f64::consts::PI.sqrt() * libm::exp(-r * r));
        }
        assert!(
            (z as f64 - r).abs() <= 2e-6 * r.abs().max(1.0),
            "erfinv({x:e}) = {z}, want {r}"
        );
    }

    // normal_from_bits: finite, bounded, uses only x >> 8, symmetric under !x.
    for &x in input.bits.iter().take(256) {
        let z = normal_from_bits(x);
        assert!(
            z.is_finite() && z.abs() <= max,
            "normal_from_bits({x:#x}) = {z}"
        );
        assert_eq!(z.to_bits(), normal_from_bits(x & !0xFF).to_bits());
        assert_eq!((-z).to_bits(), normal_from_bits(!x).to_bits(), "{x:#x}");
    }

    // normals_from_u64s: low halves of the four words, then the high halves.
    for w in input.words.chunks_exact(LANES).take(16) {
        let r = [w[0], w[1], w[2], w[3]];
        let z = normals_from_u64s(r);
        for l in 0..LANES {
            assert_eq!(z[l].to_bits(), normal_from_bits(r[l] as u32).to_bits());
            assert_eq!(
                z[LANES + l].to_bits(),
                normal_from_bits((r[l] >> 32) as u32).to_bits()
            );
        }
    }

    // LaneRng: four Xoshiro256++ lanes seeded as seed_from_u64.
    let mut lanes = LaneRng::from_lane_seeds(input.seeds);
    let mut refs = input.seeds.map(Xoshiro256PlusPlus::seed_from_u64);
    for _ in 0..8 {
        let mut copy = lanes.clone();
        let got = lanes.next_u64s();
        for l in 0..LANES {
            assert_eq!(got[l], refs[l].next_u64(), "lane {l}");
        }
        let z = copy.next_normals();
        assert_eq!(
            z.map(f32::to_bits),
            normals_from_u64s(got).map(f32::to_bits)
        );
        assert_eq!(copy, lanes);
    }

    // NoiseKey: the documented derivation and chunk streams.
    let key = NoiseKey::new(input.key);
    let w = input.chunk;
    let d = key.derive(w);
    assert_eq!(d.0, fmix64(input.key ^ fmix64(w.wrapping_add(GOLDEN))));
    let c = key.derive(w);
    let want = LaneRng::from_lane_seeds([0, 1, 2, 3].map(|l| c.derive(l).0));
    assert_eq!(key.chunk_stream(w), want);

    // fill_normals: four words per STEP values, the same mapping, the tail dropped.
    let n = input.fill_len as usize % 600;
    let mut out = vec![f32::NAN; n];
    let mut rng = ReplayRng::new(input.words.clone());
    fill_normals(&mut rng, &mut out);
    assert_eq!(rng.draws, 4 * n.div_ceil(STEP));
    let mut replay = ReplayRng::new(input.words);
    for c in out.chunks(STEP) {
        let r = [0; LANES].map(|_| replay.next_u64());
        let z = normals_from_u64s(r);
        assert!(c.iter().zip(&z).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(c.iter().all(|v| v.is_finite() && v.abs() <= max));
    }
});
