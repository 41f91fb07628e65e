//! Helpers shared by the benchmarks: inputs for the engine's criterion benchmarks, and the
//! argument parsing of the ones the scripts run beside PyTorch (`train_step`, `data_pipeline`).

/// `n` deterministic pseudo-random values in [-1, 1) (values do not change the work done).
#[allow(dead_code)] // the script-run benchmarks make their own inputs
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// The value after `--name` on the command line, if any.
#[allow(dead_code)] // the criterion benchmarks take criterion's arguments
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The number after `name` on the command line, or `default`.
#[allow(dead_code)] // the criterion benchmarks take criterion's arguments
pub fn number(name: &str, default: usize) -> usize {
    arg(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}
