//! One typed wrapper per kernel. The parameter list of each function is the kernel's, type for
//! type (`u32` for `unsigned int`, `u64` for `unsigned long long`, `f32`/`f64`, device
//! pointers for pointers): `launch!` passes every argument by address, so a `usize` where the
//! kernel reads an `unsigned int` would silently corrupt the launch. Nothing else calls
//! `launch!`. The `kernel!` macro that defines the wrappers also records their parameter types,
//! and a unit test compares them with each kernel's `.entry` in the embedded PTX.
//!
//! # Safety
//!
//! Every function here is `unsafe`: the caller guarantees that each pointer addresses a live
//! device allocation of at least the length the kernel's documentation (in `kernels/`) implies
//! for the given sizes. The safe API in `step.rs` and `optim.rs` checks those lengths.

use cust::error::CudaResult;
use cust::launch;
use cust::memory::DevicePointer;

use super::Gpu;
use crate::layout::TensorDesc;
use crate::state::{BalanceState, DeviceStatus, Stats};

// Launch geometry: the values of kernels/common.cuh, which the kernels are compiled with (the
// tests read them from there, so the two cannot drift apart). The OGM-GE kernels' sizes are
// the engine's (`crate::engine::ogm`), which launches the same kernels on any device.
use crate::engine::ogm::{
    MOD_BLOCK, MOD_CHUNKS_PER_BLOCK, SCORES_BLOCK, STATS_BLOCK, STATS_CHUNKS_PER_BLOCK,
};
/// Threads per block of `ogm_sgd` (`SGD_BLOCK`).
const SGD_BLOCK: u32 = 256;

#[cfg(test)]
/// The PTX type a kernel parameter of this Rust type must have (`.u32` for `unsigned int`,
/// `.u64` for `unsigned long long` and pointers, `.f32`, `.f64`).
pub(crate) trait PtxParam {
    /// The PTX parameter type.
    const PTX: &'static str;
}

#[cfg(test)]
impl PtxParam for u32 {
    const PTX: &'static str = ".u32";
}
#[cfg(test)]
impl PtxParam for u64 {
    const PTX: &'static str = ".u64";
}
#[cfg(test)]
impl PtxParam for f32 {
    const PTX: &'static str = ".f32";
}
#[cfg(test)]
impl PtxParam for f64 {
    const PTX: &'static str = ".f64";
}
#[cfg(test)]
impl<T: cust::memory::DeviceCopy> PtxParam for DevicePointer<T> {
    const PTX: &'static str = ".u64";
}

#[cfg(test)]
/// A kernel's name, the PTX module it lives in, and the PTX types of the parameters its
/// wrapper passes, in order; the tests compare them with the PTX entry.
pub(crate) struct Signature {
    pub ptx: &'static str,
    pub kernel: &'static str,
    pub params: &'static [&'static str],
}

/// Defines a wrapper `unsafe fn $name(gpu, launch params..., kernel params...)` that launches
/// `$module.$kernel` with exactly the kernel parameters, and the constant `$sig` describing them
/// (see [`Signature`]). Launch parameters only size the grid.
macro_rules! kernel {
    (
        $(#[$doc:meta])*
        fn $name:ident($($lp:ident: $lty:ty),*), $sig:ident = $module:ident . $kernel:ident
            in $ptx:ident, grid $grid:expr, block $block:expr; ($($arg:ident: $ty:ty),* $(,)?)
    ) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn $name(
            gpu: &Gpu,
            $($lp: $lty,)*
            $($arg: $ty),*
        ) -> CudaResult<()> {
            let module = &gpu.modules.$module;
            let stream = &gpu.stream;
            launch!(module.$kernel<<<$grid, $block, 0, stream>>>($($arg),*))
        }

        #[cfg(test)]
        pub(crate) const $sig: Signature = Signature {
            ptx: super::ptx::$ptx,
            kernel: stringify!($kernel),
            params: &[$(<$ty as PtxParam>::PTX),*],
        };
    };
}

kernel! {
    /// `ogm_batch_scores` (kernels/scores.cu): grid 2 (audio, visual).
    fn batch_scores(), BATCH_SCORES = scores.ogm_batch_scores in SCORES, grid 2u32, block SCORES_BLOCK;
    (
        logits_audio: DevicePointer<f32>,
        logits_visual: DevicePointer<f32>,
        labels: DevicePointer<u32>,
        batch: u32,
        classes: u32,
        state: DevicePointer<BalanceState>,
        status: DevicePointer<DeviceStatus>,
    )
}

kernel! {
    /// `ogm_balance` (kernels/balance.cu): one thread.
    fn balance(), BALANCE = balance.ogm_balance in BALANCE, grid 1u32, block 1u32;
    (state: DevicePointer<BalanceState>, alpha: f64, active: u32)
}

kernel! {
    /// `ogm_tensor_stats` (kernels/stats.cu): one warp per chunk (`total_chunks` is the
    /// list's, at most `2^31 - 1`, checked by `TensorList`, so the block count fits).
    fn tensor_stats(), TENSOR_STATS = stats.ogm_tensor_stats in STATS,
    grid total_chunks.div_ceil(STATS_CHUNKS_PER_BLOCK) as u32, block STATS_BLOCK;
    (
        grads: DevicePointer<f32>,
        tensors: DevicePointer<TensorDesc>,
        num_tensors: u32,
        total_chunks: u64,
        partials: DevicePointer<Stats>,
        counters: DevicePointer<u32>,
        out: DevicePointer<Stats>,
        status: DevicePointer<DeviceStatus>,
    )
}

kernel! {
    /// `ogm_modulate` (kernels/modulate.cu): one block per `MOD_CHUNKS_PER_BLOCK` chunks
    /// (`total_chunks < 2^31`, so the block count fits).
    fn modulate(), MODULATE = modulate.ogm_modulate in MODULATE, grid total_chunks.div_ceil(MOD_CHUNKS_PER_BLOCK) as u32, block MOD_BLOCK;
    (
        grads: DevicePointer<f32>,
        tensors: DevicePointer<TensorDesc>,
        num_tensors: u32,
        stats: DevicePointer<Stats>,
        state: DevicePointer<BalanceState>,
        step_key: u64,
        total_chunks: u64,
        noise: u32,
        max_z: f32,
        status: DevicePointer<DeviceStatus>,
    )
}

kernel! {
    /// `ogm_sgd` (kernels/sgd.cu): a grid-stride loop over `n` values on `blocks` blocks
    /// (see [`sgd_blocks`]).
    fn sgd(blocks: u32), SGD = sgd.ogm_sgd in SGD, grid blocks, block SGD_BLOCK;
    (
        params: DevicePointer<f32>,
        grads: DevicePointer<f32>,
        momentum_buf: DevicePointer<f32>,
        n: u64,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        first_step: u32,
    )
}

/// Blocks for `ogm_sgd` over `n` values: one float4 per thread, at most 8 blocks of 256
/// threads per multiprocessor resident at once (the grid-stride loop covers the rest).
pub(crate) fn sgd_blocks(n: u64, multiprocessors: u32) -> u32 {
    let wanted = n.div_ceil(4 * u64::from(SGD_BLOCK)).max(1);
    wanted.min(u64::from(multiprocessors) * 8) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kernel_source::ptx_params;

    fn define(name: &str) -> u64 {
        crate::kernel_source::define(include_str!("../../kernels/common.cuh"), "common.cuh", name)
    }

    /// Each wrapper passes exactly the parameters its kernel declares, type for type (the
    /// launch! pitfall: a mismatch would silently corrupt the launch).
    #[test]
    fn wrappers_match_the_ptx_entries() {
        for sig in [BATCH_SCORES, BALANCE, TENSOR_STATS, MODULATE, SGD] {
            assert_eq!(
                ptx_params(sig.ptx, sig.kernel),
                sig.params,
                "{}",
                sig.kernel
            );
        }
    }

    /// (The OGM-GE kernels' sizes are checked with `crate::engine::ogm`'s.)
    #[test]
    fn geometry_matches_the_kernels() {
        assert_eq!(define("SGD_BLOCK"), u64::from(SGD_BLOCK));
        assert_eq!(define("OGM_CHUNK") as usize, crate::KERNEL_CHUNK);
    }
}
