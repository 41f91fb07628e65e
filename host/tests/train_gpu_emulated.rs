//! The trainer's device step (`ogm_host::train::device`) against the CPU step, on the kernel
//! emulator: queued steps (fused cross-entropy, device scores and coefficients, part 1's
//! statistics and modulation kernels, the optimiser) give the CPU's records, gradients and
//! parameters; records arrive in batches from the device ring, in order; a step with a bad
//! label is reported with its epoch and step, and the records before it are kept; the whole
//! training loop (`train_on`) on the emulated GPU backend checkpoints, resumes to exactly the
//! weights of an uninterrupted run, and logs every step as the CPU does. The cases are in
//! train_gpu_common/cases.rs; train_gpu_cuda.rs runs them on a GPU.
//!
//! Batch uploads that overlap the previous step (`Device::upload_after`, the copy stream on a
//! GPU) are run here as early as their contract allows (`gpu_backend/early_copies.rs`), and
//! the steps must come out bit for bit as with in-order uploads (this case is emulator-only).
//!
//! Tolerances as in engine_gpu_emulated.rs (the GPU's sums run in another order): 2e-3 of each
//! tensor's largest magnitude for gradients and parameters; 1e-4 for losses and scores, 1e-3
//! for ratios and coefficients.

mod train_common;

include!("gpu_backend/emulated.rs");
include!("gpu_backend/recorder.rs");
include!("gpu_backend/early_copies.rs");

include!("train_gpu_common/cases.rs");

/// The model's double-buffered batch uploads, run as early as `upload_after` allows (each
/// overlapping the previous step's work), give the in-order run's records and parameters bit
/// for bit, over more steps than the log ring holds.
#[test]
fn uploads_overlapping_the_previous_step_change_nothing() {
    let Some(gpu) = gpu() else { return };
    let cfg = config(Mode::OgmGe);
    let steps = LOG_SLOTS as u64 + 5;
    let early = Arc::new(EarlyCopies::new(gpu.device().clone()));
    let mut in_order = AvModel::new(gpu, model_config(), 9).unwrap();
    let (want, _) = run(&mut in_order, &cfg, steps);
    let mut overlapped = AvModel::new(GpuBackend::new(early.clone()), model_config(), 9).unwrap();
    let (got, _) = run(&mut overlapped, &cfg, steps);
    // Two input buffers (audio, frames) per step went through upload_after.
    assert_eq!(early.early_copies(), 2 * steps as usize);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        let bits = |r: &StepRecord| {
            [
                r.loss, r.loss_a, r.loss_v, r.score_a, r.score_v, r.coeff_a, r.coeff_v,
            ]
            .map(f64::to_bits)
        };
        assert_eq!(bits(g), bits(w), "step {}", g.step);
    }
    for t in in_order.params_table().iter() {
        let (a, b) = (
            overlapped.read_tensor(&t.name).unwrap(),
            in_order.read_tensor(&t.name).unwrap(),
        );
        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{} differs", t.name);
    }
}

/// A GPU too small for the run: the trainer stops with the device's sizes and the flags that
/// size a batch, writes no checkpoint, and a rerun with a smaller setting may use the same
/// run folder.
#[test]
fn a_full_device_stops_the_run_naming_the_sizes_and_the_flags() {
    let Some(_) = gpu() else { return };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ogm-engine-emulator");
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    train_common::dataset(&root);
    let c = train_common::config(&root, &runs);
    let stop = Arc::new(AtomicBool::new(false));
    // From too small for the parameters to too small for the step's buffers: each fails at
    // another allocation, and none may panic or launch on a buffer without memory.
    for kib in [16usize, 256, 1024, 1536] {
        let small = ogm_gpu::engine::emu::EmuDevice::build(&dir)
            .unwrap()
            .with_memory_limit(kib << 10);
        let e = train_on(
            &c,
            &train_common::opts("full", false, 0),
            stop.clone(),
            GpuBackend::new(Arc::new(small)),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, TrainError::Device(_)), "{kib} KiB: {msg}");
        assert!(
            msg.contains("device out of memory")
                && msg.contains(&format!("MiB free of {} MiB", kib.div_ceil(1024)))
                && msg.contains("--batch_size"),
            "{kib} KiB: {msg}"
        );
        assert!(!runs.join("full/checkpoints/last.json").exists());
    }
    let gpu = gpu().unwrap();
    train_on(
        &c,
        &train_common::opts("full", false, 0),
        stop,
        GpuBackend::new(gpu.device().clone()),
    )
    .unwrap();
}

/// The trainer's own kernels (the fused loss stage with scores and coefficients, the
/// gradient statistics, the modulation with noise, SGD and Adam) give the same bits whatever
/// order the device runs their blocks and threads in (`Schedule`, see engine_gpu_emulated.rs
/// for the engine's kernels): queued OGM_GE steps on emulated devices that run blocks
/// last-first, shuffled, or one warp ahead of the others, equal the in-order run's records
/// and parameters bit for bit.
#[test]
fn queued_steps_give_the_same_bits_in_any_launch_order() {
    use ogm_gpu::engine::emu::{EmuDevice, Schedule};
    use ogm_gpu::engine::kernels as kn;
    use ogm_host::config::OptimizerKind;
    let Some(_) = gpu() else { return };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ogm-engine-emulator");
    let device = |s: Schedule| Arc::new(EmuDevice::build(&dir).unwrap().with_schedule(s));
    let sgd = config(Mode::OgmGe);
    let adam = TrainConfig {
        optimizer: OptimizerKind::Adam,
        ..config(Mode::OgmGe)
    };
    type Bits = (Vec<Vec<Option<u64>>>, Vec<Vec<u32>>);
    fn work<D: ogm_gpu::engine::Device + 'static>(
        dev: Arc<D>,
        configs: [&TrainConfig; 2],
    ) -> Vec<Bits> {
        let bits = |r: &StepRecord| {
            let f = [
                r.loss, r.loss_a, r.loss_v, r.score_a, r.score_v, r.coeff_a, r.coeff_v,
            ];
            let mut v: Vec<Option<u64>> = f.iter().map(|x| Some(x.to_bits())).collect();
            v.push(r.ratio_v.map(f64::to_bits));
            v
        };
        let mut out = Vec::new();
        for cfg in configs {
            let mut model = AvModel::new(GpuBackend::new(dev.clone()), model_config(), 9).unwrap();
            let (records, _) = run(&mut model, cfg, 3);
            let params = model
                .params_table()
                .iter()
                .map(|t| {
                    let v = model.read_tensor(&t.name).unwrap();
                    v.iter().map(|x| x.to_bits()).collect()
                })
                .collect();
            out.push((records.iter().map(bits).collect(), params));
        }
        out
    }
    let recorder = Arc::new(Recorder::new(device(Schedule::InOrder)));
    let want = work(recorder.clone(), [&sgd, &adam]);
    let ran = recorder.take();
    for k in [
        kn::STEP_LOSSES,
        kn::TENSOR_STATS,
        kn::MODULATE,
        kn::SGD,
        kn::ADAM,
    ] {
        assert!(ran.contains(&k.name), "{} never ran", k.name);
    }
    for schedule in [
        Schedule::Reverse,
        Schedule::Shuffled(3),
        Schedule::WarpsAhead(4),
    ] {
        let got = work(device(schedule), [&sgd, &adam]);
        for (i, ((gr, gp), (wr, wp))) in got.iter().zip(&want).enumerate() {
            let opt = ["SGD", "Adam"][i];
            assert_eq!(gr, wr, "{schedule:?}, {opt}: step records differ");
            for (t, (a, b)) in gp.iter().zip(wp).enumerate() {
                assert!(a == b, "{schedule:?}, {opt}: parameter tensor {t} differs");
            }
        }
    }
}
