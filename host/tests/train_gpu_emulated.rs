//! The trainer's device step (`ogm_host::train::device`) against the CPU step, on the kernel
//! emulator: queued steps (fused cross-entropy, device scores and coefficients, part 1's
//! statistics and modulation kernels, the optimiser) give the CPU's records, gradients and
//! parameters; records arrive in batches from the device ring, in order; a step with a bad
//! label is reported with its epoch and step, and the records before it are kept; the whole
//! training loop (`train_on`) on the emulated GPU backend checkpoints, resumes to exactly the
//! weights of an uninterrupted run, and logs every step as the CPU does. The cases are in
//! train_gpu_common/cases.rs; train_gpu_cuda.rs runs them on a GPU.
//!
//! Tolerances as in engine_gpu_emulated.rs (the GPU's sums run in another order): 2e-3 of each
//! tensor's largest magnitude for gradients and parameters; 1e-4 for losses and scores, 1e-3
//! for ratios and coefficients.

mod train_common;

include!("gpu_backend/emulated.rs");
include!("gpu_backend/recorder.rs");

include!("train_gpu_common/cases.rs");
