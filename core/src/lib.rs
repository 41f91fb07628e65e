//! `ogm-core`: the math of OGM-GE (On-the-fly Gradient Modulation with Generalization
//! Enhancement, Peng et al., CVPR 2022) over plain slices, `no_std`, no allocator.
//!
//! One training step of a two-branch (audio, visual) classifier, as the official code does it:
//!
//! 1. [`score::batch_score`] of each modality's logits: `s_u = sum_i softmax(out_u)[i, y_i]`.
//! 2. [`Schedule::plan`]: ratio `r_v = s_v / s_a`, coefficients `k_a`, `k_v`
//!    ([`balance::balance`]), and whether this epoch modulates.
//! 3. [`modulate::modulate_tensor`] on every convolution-weight gradient of each encoder:
//!    `g <- k g` (`OGM`) or `g <- k g + N(0, (std(g) + 1e-8)^2)` (`OGM_GE`).
//!
//! Every function validates its input and returns [`OgmError`] rather than panicking or
//! producing NaN. Noise is reproducible from a seed and splittable across threads (see
//! [`noise`]).
//!
//! ```
//! use ogm_core::{batch_score, modulate_tensor, Mode, NoiseKey, Schedule};
//! let labels = [0u32, 1];
//! let audio_logits = [2.0f32, 0.0, 0.0, 2.0]; // confident and right
//! let visual_logits = [0.1f32, 0.0, 0.0, 0.1]; // barely better than chance
//! let s_a = batch_score(&audio_logits, &labels, 2)?;
//! let s_v = batch_score(&visual_logits, &labels, 2)?;
//! let plan = Schedule::official(Mode::OgmGe, 0.8)?.plan(0, s_a, s_v)?;
//! assert!(plan.coeff_audio < 1.0 && plan.coeff_visual == 1.0);
//! let mut grad = [0.1f32, -0.2, 0.3, 0.05];
//! modulate_tensor(&mut grad, Mode::OgmGe, plan.coeff_audio, NoiseKey::new(0).derive(0))?;
//! # Ok::<(), ogm_core::OgmError>(())
//! ```
#![no_std]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod balance;
pub mod error;
pub mod modulate;
pub mod noise;
pub mod schedule;
pub mod score;
mod simd;
pub mod state;
pub mod stats;

pub use balance::{balance, balance_multi, coefficient, discrepancy_ratio, Balance, Ratio};
pub use error::{OgmError, Result};
pub use modulate::{modulate_chunk, modulate_tensor, modulate_tensor_with_rng, Mode, NoiseParams};
pub use noise::{LaneRng, NoiseKey};
pub use schedule::{Schedule, StepPlan};
pub use score::{batch_score, true_class_probs};
pub use state::BalanceTracker;
pub use stats::GradStats;

/// Most modalities [`balance_multi`] accepts (the capacity of the fixed-size state).
pub const MAX_MODALITIES: usize = 8;

/// Values per chunk: the unit of splittable statistics and noise (see [`noise`], [`stats`]).
pub const CHUNK: usize = 1024;
