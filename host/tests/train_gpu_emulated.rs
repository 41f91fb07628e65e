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
