//! The CPU training engine: tensors, layers with hand-written backward passes, the
//! audio-visual ResNet-18 model, parameter arenas, optimisers.
//!
//! Module map:
//! * [`scalar`]: the element types (`f32` for training, `f64` for gradient checks);
//! * [`cpu`]: the CPU kernels (convolution as im2col + GEMM, batch norm, pooling, linear,
//!   element-wise, loss), plain functions over slices;
//! * [`backend`]: the [`Backend`] trait the model is written against, and [`CpuBackend`];
//! * [`arena`]: named regions of the flat parameter, gradient and state arenas;
//! * [`model`]: the official `AVClassifier` (two ResNet-18s and a fusion head);
//! * [`optim`]: SGD, Adam(W), StepLR with PyTorch's semantics;
//! * [`checkpoint`]: safetensors with PyTorch state_dict keys.
//!
//! A training step on the CPU:
//! ```no_run
//! use ogm_host::engine::*;
//! let cfg = ModelConfig::small(6, FusionKind::Concat);
//! let mut model = AvModel::new(CpuBackend::<f32>::new(), cfg, 0).unwrap();
//! let mut sgd = Sgd::official();
//! let (audio, visual) = (vec![0.0f32; 2 * 40 * 30], vec![0.0f32; 2 * 3 * 32 * 32]);
//! let input = Input { batch: 2, audio: &audio, audio_hw: (40, 30), visual: &visual, visual_hw: (32, 32) };
//! let out = model.forward(&input, Mode::Train).unwrap();
//! let (loss, dlogits) = softmax_cross_entropy(&out.logits, &[0, 1], 6).unwrap();
//! model.backward(&dlogits).unwrap();
//! // OGM-GE would modulate model.grads_mut() over model.modulation_targets() here.
//! sgd.step(&mut model);
//! # let _ = loss;
//! ```

pub mod arena;
pub mod backend;
pub mod checkpoint;
pub mod cpu;
pub mod error;
pub mod gpu;
pub mod model;
pub mod optim;
pub mod pth;
pub mod scalar;

pub use arena::{Modality, TensorInfo, TensorKind, TensorTable};
pub use backend::{Backend, CpuBackend, Region};
pub use cpu::loss::softmax_cross_entropy;
pub use error::{EngineError, Result};
pub use model::{AvModel, FusionKind, Input, Mode, ModelConfig, Outputs};
pub use optim::{Adam, Sgd, StepLr};
pub use scalar::Scalar;
