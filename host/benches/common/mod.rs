//! Helpers shared by the engine's criterion benchmarks.

/// `n` deterministic pseudo-random values in [-1, 1) (values do not change the work done).
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}
