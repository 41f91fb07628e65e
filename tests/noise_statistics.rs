//! Statistical checks of OGM-GE's Gaussian noise for fixed seeds: mean, variance, skewness,
//! kurtosis, a Kolmogorov–Smirnov test against the standard normal CDF, independence of
//! neighbouring values, lanes and chunks, and the scale OGM-GE applies.
//!
//! The seeds are fixed, so the tests are deterministic; the bounds are set at about five
//! standard errors, so a correct generator passes them with near certainty for any seed,
//! and a biased one (wrong variance, a uniform, a sum of few uniforms) fails.

use ogm_core::noise::{fill_normals, NoiseKey};
use ogm_core::{modulate_tensor, Mode, CHUNK};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

const N: usize = 1 << 20;

/// Standard normal samples of the default, chunked stream (a zero gradient scaled by 0 with
/// unit sigma would be degenerate, so draw through the chunk streams directly).
fn default_stream(seed: u64) -> Vec<f32> {
    let key = NoiseKey::new(seed);
    let mut out = Vec::with_capacity(N);
    for c in 0..(N / CHUNK) as u64 {
        let mut rng = key.chunk_stream(c);
        for _ in 0..CHUNK / 8 {
            out.extend_from_slice(&rng.next_normals());
        }
    }
    out
}

fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

struct Moments {
    mean: f64,
    var: f64,
    skew: f64,
    kurt: f64,
}

fn moments(z: &[f32]) -> Moments {
    let n = z.len() as f64;
    let mean = z.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for &v in z {
        let d = v as f64 - mean;
        m2 += d * d;
        m3 += d * d * d;
        m4 += d * d * d * d;
    }
    let var = m2 / (n - 1.0);
    Moments {
        mean,
        var,
        skew: (m3 / n) / (m2 / n).powf(1.5),
        kurt: (m4 / n) / (m2 / n).powi(2),
    }
}

fn ks_statistic(z: &[f32]) -> f64 {
    let mut s: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    // Evaluate the CDF on a coarse grid of order statistics to keep the test fast; the
    // statistic over every 16th point bounds the full one from below, and its critical value
    // is essentially the same for n = 2^20.
    let mut d: f64 = 0.0;
    for (i, &x) in s.iter().enumerate().step_by(16) {
        let f = normal_cdf(x);
        d = d
            .max((f - i as f64 / n).abs())
            .max(((i + 1) as f64 / n - f).abs());
    }
    d
}

fn check_standard_normal(z: &[f32], what: &str) {
    let n = z.len() as f64;
    let m = moments(z);
    assert!(m.mean.abs() < 5.0 / n.sqrt(), "{what}: mean {}", m.mean);
    assert!(
        (m.var - 1.0).abs() < 5.0 * (2.0 / n).sqrt(),
        "{what}: variance {}",
        m.var
    );
    assert!(
        m.skew.abs() < 5.0 * (6.0 / n).sqrt(),
        "{what}: skew {}",
        m.skew
    );
    assert!(
        (m.kurt - 3.0).abs() < 5.0 * (24.0 / n).sqrt(),
        "{what}: kurtosis {}",
        m.kurt
    );
    // Kolmogorov–Smirnov at the 0.1% level: 1.95 / sqrt(n).
    let d = ks_statistic(z);
    assert!(d < 1.95 / n.sqrt(), "{what}: KS statistic {d}");
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let s: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    s / n
}

#[test]
fn default_stream_is_standard_normal() {
    for seed in [0u64, 1, 20221] {
        check_standard_normal(&default_stream(seed), &format!("seed {seed}"));
    }
}

#[test]
fn any_rng_path_is_standard_normal() {
    let mut z = vec![0.0f32; N];
    fill_normals(&mut Xoshiro256PlusPlus::seed_from_u64(5), &mut z);
    check_standard_normal(&z, "Xoshiro256++ via fill_normals");
}

#[test]
fn neighbours_lanes_and_chunks_are_uncorrelated() {
    let z = default_stream(42);
    let bound = 5.0 / (N as f64).sqrt();
    // Adjacent values (lanes within a step), values 4 apart (low vs high half of one word),
    // 8 apart (successive steps of a lane) and CHUNK apart (neighbouring chunks).
    for lag in [1usize, 4, 8, CHUNK] {
        let r = correlation(&z[..N - lag], &z[lag..]);
        assert!(r.abs() < bound, "lag {lag}: correlation {r}");
    }
    // Different seeds and different derived keys give unrelated streams.
    let other = default_stream(43);
    assert!(correlation(&z, &other).abs() < bound);
}

#[test]
fn ogm_ge_noise_has_the_gradient_std() {
    // A gradient of +-s with std exactly known; k = 0 leaves only the noise.
    let s = 3.0e-3f32;
    let mut g: Vec<f32> = (0..N).map(|i| if i % 2 == 0 { s } else { -s }).collect();
    let stats = modulate_tensor(&mut g, Mode::OgmGe, 0.0, NoiseKey::new(9))
        .unwrap()
        .unwrap();
    let sigma = stats.noise_sigma();
    let z: Vec<f32> = g.iter().map(|&v| (v as f64 / sigma) as f32).collect();
    check_standard_normal(&z, "OGM_GE noise / sigma");
}
