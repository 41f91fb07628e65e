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

use ogm_host::engine::backend::{AdamStep, ConvGeom, LinearSpec, PoolGeom, Region, SgdStep};
use ogm_host::engine::gpu::GpuBackend;
use ogm_host::engine::{
    softmax_cross_entropy, AvModel, Backend, CpuBackend, FusionKind, Input, Mode, ModelConfig, Sgd,
};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

include!("gpu_backend/emulated.rs");
include!("gpu_backend/recorder.rs");

include!("engine_gpu_common/cases.rs");
