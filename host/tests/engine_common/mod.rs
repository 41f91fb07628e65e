//! Helpers shared by the engine tests: fixture loading and tolerance checks.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};

/// The fixture directory.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/engine")
}

/// A fixture tensor as f64 (float tensors) or i64 (integer tensors, converted).
#[derive(Debug, Clone)]
pub struct Fx {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// Reads every tensor of a fixture file.
pub fn read_fixture(name: &str) -> HashMap<String, Fx> {
    let path = fixture_dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let st = SafeTensors::deserialize(&bytes).expect("valid fixture");
    let mut out = HashMap::new();
    for (n, v) in st.tensors() {
        let data: Vec<f64> = match v.dtype() {
            Dtype::F64 => v
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F32 => v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            Dtype::I64 => v
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            d => panic!("unexpected dtype {d:?}"),
        };
        out.insert(
            n,
            Fx {
                shape: v.shape().to_vec(),
                data,
            },
        );
    }
    out
}

/// Asserts `got` matches `want` to `tol` relative to the tensor's scale:
/// `max |got - want| <= tol * max(max |want|, floor)`.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64, floor: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(floor, |m, v| m.max(v.abs()));
    let (mut worst, mut at) = (0.0f64, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        if e > worst || e.is_nan() {
            worst = e;
            at = i;
        }
    }
    assert!(
        worst <= tol * scale,
        "{what}: max error {worst:.3e} at {at} (got {}, want {}), allowed {:.3e}",
        got[at],
        want[at],
        tol * scale
    );
}

/// Central-difference check of an analytic gradient at the coordinates `idx` of `x`:
/// `|numeric - analytic| <= atol + rtol * max(|numeric|, |analytic|)`.
#[allow(clippy::too_many_arguments)]
pub fn check_grad(
    what: &str,
    x: &mut [f64],
    analytic: &[f64],
    idx: &[usize],
    eps: f64,
    rtol: f64,
    atol: f64,
    mut f: impl FnMut(&[f64]) -> f64,
) {
    let mut checked = 0;
    for &i in idx {
        let orig = x[i];
        x[i] = orig + eps;
        let fp = f(x);
        x[i] = orig - eps;
        let fm = f(x);
        x[i] = orig;
        let num = (fp - fm) / (2.0 * eps);
        let ana = analytic[i];
        let allowed = atol + rtol * num.abs().max(ana.abs());
        assert!(
            (num - ana).abs() <= allowed,
            "{what}[{i}]: numeric {num:.10e} vs analytic {ana:.10e} (allowed {allowed:.2e})"
        );
        checked += 1;
    }
    assert!(checked > 0, "{what}: nothing checked");
}

/// A small deterministic generator for test data (SplitMix64 to uniform in [-1, 1)).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform()).collect()
    }
    /// `k` distinct-ish indices below `n` (all of them when `n <= k`).
    pub fn indices(&mut self, n: usize, k: usize) -> Vec<usize> {
        if n <= k {
            return (0..n).collect();
        }
        (0..k)
            .map(|_| (self.next_u64() % n as u64) as usize)
            .collect()
    }
}

/// `sum_i r_i y_i`: the probe loss whose gradient with respect to `y` is `r`.
pub fn dot(r: &[f64], y: &[f64]) -> f64 {
    r.iter().zip(y).map(|(a, b)| a * b).sum()
}
