//! `ogm-gpu`: the OGM-GE training hot path as CUDA kernels, compiled to PTX by `build.rs` and
//! launched through `cust`.
//!
//! One step goes from "backward done" to "parameters updated" on the device, without a copy to
//! the host and without a host synchronisation:
//!
//! 1. `ogm_batch_scores`: per-modality true-class scores, summed over the batch.
//! 2. `ogm_balance`: ratios and coefficients with `ogm_core`'s exact rules.
//! 3. `ogm_tensor_stats`: per-tensor unbiased standard deviation of every modulated tensor of
//!    the flat gradient buffer, in one launch.
//! 4. `ogm_modulate`: `g <- k g + sigma z` in place, with `ogm_core`'s noise stream bit for bit.
//! 5. `ogm_sgd`: SGD with momentum and weight decay over the flat buffers, fused.
//!
//! Everything that touches CUDA sits behind the `cuda` feature (module `cuda`); the layout
//! ([`TensorList`]), the shared device structs ([`mod@state`]) and the CPU references of every
//! kernel ([`mod@reference`]) build everywhere, so the workspace builds and tests without CUDA.
//!
//! A training step with the `cuda` feature (the trainer owns the flat buffers and the logits):
//!
//! ```no_run
//! # #[cfg(feature = "cuda")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cust::memory::DeviceBuffer;
//! use ogm_core::{Mode, Schedule};
//! use ogm_gpu::cuda::{Gpu, Logits, OgmStep, Sgd};
//! use ogm_gpu::workload::{official_model_params, Arena};
//! use ogm_gpu::{step_key, SgdConfig};
//!
//! let gpu = Gpu::new()?;
//! let arena = Arena::new(official_model_params(6)); // the flat parameter layout
//! let mut step = OgmStep::new(&gpu, arena.modulated()?)?;
//! let mut sgd = Sgd::new(&gpu, arena.len, SgdConfig::OFFICIAL)?;
//! let schedule = Schedule::official(Mode::OgmGe, 0.8)?;
//! let mut params = DeviceBuffer::from_slice(&vec![0.0f32; arena.len])?;
//! let mut grads = DeviceBuffer::from_slice(&vec![0.0f32; arena.len])?;
//! let (out_a, out_v) = (DeviceBuffer::from_slice(&[0.0f32; 64 * 6])?, DeviceBuffer::from_slice(&[0.0f32; 64 * 6])?);
//! let labels = DeviceBuffer::from_slice(&[0u32; 64])?;
//! // ... forward and backward fill `grads`, `out_a`, `out_v` ...
//! let logits = Logits { audio: &out_a, visual: &out_v, labels: &labels, classes: 6 };
//! let (epoch, global_step, seed) = (0, 0, 0);
//! step.enqueue(&gpu, &logits, &mut grads, &schedule, epoch, step_key(seed, global_step))?;
//! sgd.step(&gpu, &mut params, &grads)?;
//! // Nothing above waited for the device. When convenient (e.g. when logging):
//! step.take_status(&gpu)?; // invalid labels, non-finite gradients, ... since the last check
//! let state = step.read_state(&gpu)?; // scores, ratios, coefficients of the last step
//! # let _ = state;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "cuda"))]
//! # fn main() {}
//! ```
#![deny(missing_docs)]

pub mod engine;
pub mod error;
#[cfg(test)]
mod kernel_source;
pub mod layout;
pub mod reference;
pub mod sgd;
pub mod state;
pub mod workload;

#[cfg(feature = "cuda")]
pub mod cuda;

pub use error::{GpuError, Result};
pub use layout::{step_key, Modality, TensorDesc, TensorList, TensorSpec};
pub use sgd::SgdConfig;
pub use state::{BalanceState, DeviceStatus, Stats, StatusFlags};

/// Whether this build of the crate was compiled with CUDA support (the `cuda` feature).
pub const CUDA_ENABLED: bool = cfg!(feature = "cuda");

/// Values per chunk in the kernels (`OGM_CHUNK` in `kernels/common.cuh`); must equal
/// [`ogm_core::CHUNK`], which defines the noise stream and the statistics' chunking.
pub const KERNEL_CHUNK: usize = 1024;
const _: () = assert!(KERNEL_CHUNK == ogm_core::CHUNK);
