//! Criterion benchmarks of ogm-core on one core, each beside its baseline in the same run:
//!
//! * `score/*`: the true-class score of batch x classes logits (64x6, 64x309, 4096x309);
//! * `modulate/*`: OGM-GE's whole per-tensor work (unbiased std, scale, Gaussian noise) over
//!   the conv-weight gradients of one and two ResNet-18s (11.2 M and 22.4 M f32), beside a plain
//!   copy of the same buffer (`copy/*`), the bandwidth anchor. `OGM` (scale only) is measured
//!   too. `scripts/bench-core.sh` prints the medians and ratios.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ogm_core::{batch_score, modulate_tensor, Mode, NoiseKey};

fn pseudo_random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = ogm_core::noise::fmix64(s.wrapping_add(0x9E37_79B9_7F4A_7C15));
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}

fn scores(c: &mut Criterion) {
    let mut g = c.benchmark_group("score");
    for (b, classes) in [(64usize, 6usize), (64, 309), (4096, 309)] {
        let logits = pseudo_random(b * classes, 1, 8.0);
        let labels: Vec<u32> = (0..b).map(|i| (i % classes) as u32).collect();
        g.throughput(Throughput::Elements((b * classes) as u64));
        g.bench_function(
            BenchmarkId::from_parameter(format!("{b}x{classes}")),
            |bench| bench.iter(|| batch_score(&logits, &labels, classes).unwrap()),
        );
    }
    g.finish();
}

/// Conv-weight gradient values of one ResNet-18 (the 20 conv layers, 11.17 M) and of two.
const SIZES: [(&str, usize); 2] = [("11.2M", 11_200_000), ("22.4M", 22_400_000)];

fn modulation(c: &mut Criterion) {
    let mut g = c.benchmark_group("modulate");
    g.sample_size(20);
    for (name, n) in SIZES {
        let src = pseudo_random(n, 2, 2e-3);
        g.throughput(Throughput::Bytes((n * 4) as u64));
        g.bench_function(BenchmarkId::new("copy", name), |bench| {
            let mut dst = vec![0.0f32; n];
            bench.iter(|| {
                dst.copy_from_slice(&src);
                criterion::black_box(&mut dst);
            })
        });
        for (mode, label) in [(Mode::OgmGe, "ogm_ge"), (Mode::Ogm, "ogm")] {
            g.bench_function(BenchmarkId::new(label, name), |bench| {
                bench.iter_batched_ref(
                    || src.clone(),
                    |grad| modulate_tensor(grad, mode, 0.7, NoiseKey::new(3)).unwrap(),
                    BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(benches, scores, modulation);
criterion_main!(benches);
