//! Criterion benchmarks of the CPU convolutions the Winograd path takes over: every 3x3
//! stride-1 layer shape of the paper model at batch 16 with CREMA-D inputs (visual 224x224
//! and audio 257x188 planes after the stem), forward and backward (weight and data
//! gradients), each computed both ways in the same run: im2col + GEMM (`im2col/*`) and
//! Winograd F(2x2, 3x3) (`winograd/*`). Threads: `RAYON_NUM_THREADS` (default: all cores).

mod common;

use common::values;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ogm_host::engine::cpu::conv::{
    im2col_backward_with, im2col_forward_with, ConvGeom, ScratchPool,
};
use ogm_host::engine::cpu::winograd;

/// (label, channels, height, width) of the 3x3 stride-1 layers at batch 16.
const LAYERS: [(&str, usize, usize, usize); 8] = [
    ("visual-l1", 64, 56, 56),
    ("visual-l2", 128, 28, 28),
    ("visual-l3", 256, 14, 14),
    ("visual-l4", 512, 7, 7),
    ("audio-l1", 64, 65, 47),
    ("audio-l2", 128, 33, 24),
    ("audio-l3", 256, 17, 12),
    ("audio-l4", 512, 9, 6),
];

fn convs(c: &mut Criterion) {
    let pool = ScratchPool::<f32>::default();
    for (label, ch, h, w) in LAYERS {
        let g = ConvGeom {
            cin: ch,
            cout: ch,
            k: 3,
            stride: 1,
            pad: 1,
            n: 16,
            h,
            w,
        };
        let (x, wt, dy) = (
            values(g.in_len(), 1),
            values(g.w_len(), 2),
            values(g.out_len(), 3),
        );
        let (mut y, mut dw, mut dx) = (
            vec![0.0; g.out_len()],
            vec![0.0; g.w_len()],
            vec![0.0; g.in_len()],
        );
        let mut grp = c.benchmark_group(label);
        grp.sample_size(10);
        grp.bench_function(BenchmarkId::new("forward", "im2col"), |b| {
            b.iter(|| im2col_forward_with(&pool, &g, &x, &wt, &mut y))
        });
        grp.bench_function(BenchmarkId::new("forward", "winograd"), |b| {
            b.iter(|| winograd::forward_with(&pool, &g, &x, &wt, &mut y))
        });
        grp.bench_function(BenchmarkId::new("backward", "im2col"), |b| {
            b.iter(|| im2col_backward_with(&pool, &g, &x, &wt, &dy, &mut dw, Some(&mut dx)))
        });
        grp.bench_function(BenchmarkId::new("backward", "winograd"), |b| {
            b.iter(|| winograd::backward_with(&pool, &g, &x, &wt, &dy, &mut dw, Some(&mut dx)))
        });
        grp.finish();
    }
}

criterion_group!(benches, convs);
criterion_main!(benches);
