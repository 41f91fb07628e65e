//! Criterion benchmarks of the stem's max pooling (3x3, stride 2, padding 1, its batch norm
//! and ReLU applied as it reads) at batch 16 with CREMA-D inputs: the visual stem's 64
//! planes of 112x112 a sample and the audio stem's 64 of 129x94, each pooled both ways in the
//! same run: separable (`maxpool_forward`, the engine's) and window by window
//! (`maxpool_forward_direct`, the reference). Threads: `RAYON_NUM_THREADS` (default: all
//! cores).

mod common;

use common::values;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ogm_host::engine::cpu::pool::{maxpool_forward, maxpool_forward_direct, PoolGeom};

fn pools(c: &mut Criterion) {
    for (label, h, w) in [("visual-stem", 112, 112), ("audio-stem", 129, 94)] {
        let (channels, batch) = (64, 16);
        let g = PoolGeom {
            planes: channels * batch,
            h,
            w,
            k: 3,
            stride: 2,
            pad: 1,
        };
        let x = values(g.planes * h * w, 1);
        let (scale, shift) = (values(channels, 2), values(channels, 3));
        let no = g.planes * g.oh() * g.ow();
        let (mut y, mut idx) = (vec![0f32; no], vec![0u32; no]);
        let bn = Some((&scale[..], &shift[..]));
        let mut grp = c.benchmark_group(label);
        grp.sample_size(20);
        grp.bench_function(BenchmarkId::new("maxpool", "separable"), |b| {
            b.iter(|| maxpool_forward(&g, &x, bn, &mut y, &mut idx))
        });
        grp.bench_function(BenchmarkId::new("maxpool", "direct"), |b| {
            b.iter(|| maxpool_forward_direct(&g, &x, bn, &mut y, &mut idx))
        });
        grp.finish();
    }
}

criterion_group!(benches, pools);
criterion_main!(benches);
