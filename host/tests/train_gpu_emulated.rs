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
