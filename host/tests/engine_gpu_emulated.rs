//! The GPU backend against the CPU engine, on the CPU: `GpuBackend` runs on the kernel
//! emulator (`ogm_gpu::engine::emu::EmuDevice`: the CUDA source of `gpu/kernels/engine_*.cu`
//! compiled with g++, every CUDA thread a fiber), so the kernels' indexing, tiling, split-K
//! sums, reductions and the backend's launch geometry are checked here without a GPU. Sizes are
//! small (the emulator is slow). Without a C++ compiler the tests print why they skip.
//!
//! Tolerances: relative to each tensor's largest magnitude. Single operations 1e-5 (GEMM and
//! reductions sum in another order than the CPU; element-wise kernels agree bit for bit and are
//! asserted so); the whole model 1e-3 for outputs and 2e-3 for gradients and updated
//! parameters (the f32 engine's tolerance against PyTorch in engine_torch.rs).

use std::sync::Arc;

use ogm_host::engine::backend::{
    AdamStep, BnAct, BnTrain, ConvGeom, LinearSpec, PoolGeom, Region, SgdStep, BN_SAVED,
};
use ogm_host::engine::gpu::GpuBackend;
use ogm_host::engine::{
    softmax_cross_entropy, AvModel, Backend, CpuBackend, FusionKind, Input, Mode, ModelConfig, Sgd,
};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

include!("gpu_backend/emulated.rs");
include!("gpu_backend/recorder.rs");

include!("engine_gpu_common/cases.rs");

/// Everything the order test compares, computed on `dev`: whole training steps (every head,
/// implicit convolutions, TF32 and BF16 products) and the convolution shapes of
/// `CONV_SHAPES` plus a split-K weight gradient, each with im2col and implicit GEMMs.
fn launch_order_work<D: ogm_gpu::engine::Device + 'static>(
    dev: &Arc<D>,
) -> Vec<(String, Vec<f32>)> {
    use ogm_gpu::engine::ops::Precision;
    use ogm_host::engine::gpu::ConvAlgo;
    let small = |f| ModelConfig::small(6, f).with_frames(2);
    let wide = ModelConfig {
        widths: [32, 32, 32, 32],
        blocks: [1, 1, 1, 1],
        ..small(FusionKind::Concat)
    };
    let backend = |precision, algo| {
        let mut b = GpuBackend::new(Arc::clone(dev));
        b.set_precision(precision);
        b.set_conv_algo(algo);
        b
    };
    let runs = [
        (
            "concat",
            small(FusionKind::Concat),
            Precision::Fp32,
            ConvAlgo::Im2col,
        ),
        (
            "sum",
            small(FusionKind::Sum),
            Precision::Fp32,
            ConvAlgo::Im2col,
        ),
        (
            "film, implicit",
            small(FusionKind::Film),
            Precision::Fp32,
            ConvAlgo::Implicit,
        ),
        (
            "gated",
            small(FusionKind::Gated),
            Precision::Fp32,
            ConvAlgo::Im2col,
        ),
        ("tf32, implicit", wide, Precision::Tf32, ConvAlgo::Implicit),
        ("bf16, implicit", wide, Precision::Bf16, ConvAlgo::Implicit),
    ];
    let mut out = Vec::new();
    for (what, cfg, precision, algo) in runs {
        let b = backend(precision, algo);
        for (name, v) in model_step_with(b, cfg) {
            out.push((format!("{what} step: {name}"), v));
        }
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut shapes = CONV_SHAPES.to_vec();
    // n oh ow = 8192 columns: a split-K weight gradient.
    shapes.push((2, 3, 3, 1, 1, 2, 64, 64));
    // 130 input channels: the implicit data gradient on the 128 x 128 tile.
    shapes.push((130, 8, 3, 1, 1, 2, 9, 8));
    for algo in [ConvAlgo::Im2col, ConvAlgo::Implicit] {
        let b = backend(Precision::Fp32, algo);
        for &shape in &shapes {
            let g = conv_geom(shape);
            let x = rand_vec(&mut rng, g.in_len());
            let wt = rand_vec(&mut rng, g.w_len());
            let dy = rand_vec(&mut rng, g.out_len());
            let (y, dw, dx) = conv_run(&b, &g, &x, &wt, &dy);
            out.push((format!("{algo:?} {g:?} y"), y));
            out.push((format!("{algo:?} {g:?} dw"), dw));
            out.push((format!("{algo:?} {g:?} dx"), dx));
        }
        assert!(b.take_error().is_none());
    }
    // Batch norm over channels split across blocks (the model above has none that long): the
    // partial sums' kernels, and the main ones adding them.
    let (c, len) = (2, 20_000);
    assert!(ogm_gpu::engine::ops::bn_slices(len) > 1);
    let gb: Vec<f32> = (0..2 * c).map(|i| 0.5 + 0.1 * i as f32).collect();
    let data = vec![
        rand_vec(&mut rng, c * len),
        gb,
        rand_vec(&mut rng, c * len),
        rand_vec(&mut rng, c * len),
    ];
    let b = backend(Precision::Fp32, ConvAlgo::Im2col);
    for act in [Act::Relu, Act::AddRelu(())] {
        for (i, v) in bn_run(&b, c, len, act, &data).into_iter().enumerate() {
            out.push((format!("split batch norm {act:?} output {i}"), v));
        }
    }
    // The residual add the model now fuses into its data gradients (Backend::add_assign).
    let mut y = upload(&b, &data[0]);
    b.add_assign(c * len, &mut y, &upload(&b, &data[2]));
    out.push(("add_assign".into(), all(&b, &y)));
    assert!(b.take_error().is_none());
    out
}

/// Every engine kernel gives the same bits whatever order the device runs its blocks and
/// threads in: [`launch_order_work`] on emulated devices that run blocks last-first and
/// threads highest-first, both shuffled, or one warp ahead of the others between block
/// barriers (`Schedule`), equals the in-order run bit for bit. In-order emulation cannot see
/// a thread that reads shared memory written by a lower thread without a barrier between, or
/// a warp that overwrites shared memory another warp has yet to read; these orders can, and
/// so they can a block that reads another's output without the counter and fence of a
/// last-block merge.
#[test]
fn kernels_give_the_same_bits_in_any_launch_order() {
    use ogm_gpu::engine::emu::{EmuDevice, Schedule};
    use ogm_gpu::engine::kernels as kn;
    let Some(_) = gpu() else { return };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ogm-engine-emulator");
    let device = |s: Schedule| Arc::new(EmuDevice::build(&dir).unwrap().with_schedule(s));
    // The reference runs in order, recorded, to show which kernels the comparison covers.
    let recorder = Arc::new(Recorder::new(device(Schedule::InOrder)));
    let reference = launch_order_work(&recorder);
    let ran: std::collections::BTreeSet<&str> = recorder.take().into_iter().collect();
    // What this work does not run: the trainer's loss and OGM-GE kernels and Adam (their
    // orders are compared in train_gpu_emulated.rs), and the per-row loss kernels that the
    // trainer's fused loss kernel replaced.
    let elsewhere = [
        kn::ADAM.name,
        kn::SOFTMAX_XENT.name,
        kn::SUM_LOSSES.name,
        kn::SCORES.name,
        kn::STEP_LOSSES.name,
        kn::BALANCE.name,
        kn::TENSOR_STATS.name,
        kn::MODULATE.name,
    ];
    let missing: Vec<&str> = kn::ALL
        .iter()
        .map(|k| k.name)
        .filter(|k| !ran.contains(k) && !elsewhere.contains(k))
        .collect();
    assert!(missing.is_empty(), "never ran: {missing:?}");
    for schedule in [
        Schedule::Reverse,
        Schedule::Shuffled(1),
        Schedule::WarpsAhead(2),
    ] {
        let dev = device(schedule);
        assert_eq!(dev.schedule(), schedule);
        let got = launch_order_work(&dev);
        assert_eq!(got.len(), reference.len());
        for ((name, a), (_, b)) in got.iter().zip(&reference) {
            exact(
                &format!("{schedule:?} (\"gpu\") against in order (\"cpu\"), {name}"),
                a,
                b,
            );
        }
    }
}
