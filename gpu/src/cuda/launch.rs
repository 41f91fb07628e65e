//! One typed wrapper per kernel. The parameter list of each function is the kernel's, type for
//! type (`u32` for `unsigned int`, `u64` for `unsigned long long`, `f32`/`f64`, device
//! pointers for pointers): `launch!` passes every argument by address, so a `usize` where the
//! kernel reads an `unsigned int` would silently corrupt the launch. Nothing else calls
//! `launch!`.
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
// test below reads them from there, so the two cannot drift apart).
/// Threads per block of `ogm_batch_scores` (`SCORES_BLOCK`).
const SCORES_BLOCK: u32 = 256;
/// Threads per block of `ogm_tensor_stats` (`STATS_BLOCK`).
const STATS_BLOCK: u32 = 256;
/// Threads per block of `ogm_modulate` (`MOD_BLOCK`).
const MOD_BLOCK: u32 = 64;
/// Chunks per block of `ogm_modulate` (`MOD_CHUNKS_PER_BLOCK`).
const MOD_CHUNKS_PER_BLOCK: u64 = 16;
/// Threads per block of `ogm_sgd` (`SGD_BLOCK`).
const SGD_BLOCK: u32 = 256;

/// `ogm_batch_scores` (kernels/scores.cu): grid 2 (audio, visual).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn batch_scores(
    gpu: &Gpu,
    logits_audio: DevicePointer<f32>,
    logits_visual: DevicePointer<f32>,
    labels: DevicePointer<u32>,
    batch: u32,
    classes: u32,
    state: DevicePointer<BalanceState>,
    status: DevicePointer<DeviceStatus>,
) -> CudaResult<()> {
    let module = &gpu.modules.scores;
    let stream = &gpu.stream;
    launch!(module.ogm_batch_scores<<<2u32, SCORES_BLOCK, 0, stream>>>(
        logits_audio, logits_visual, labels, batch, classes, state, status
    ))
}

/// `ogm_balance` (kernels/balance.cu): one thread.
pub(crate) unsafe fn balance(
    gpu: &Gpu,
    state: DevicePointer<BalanceState>,
    alpha: f64,
    active: u32,
) -> CudaResult<()> {
    let module = &gpu.modules.balance;
    let stream = &gpu.stream;
    launch!(module.ogm_balance<<<1u32, 1u32, 0, stream>>>(state, alpha, active))
}

/// `ogm_tensor_stats` (kernels/stats.cu): one block per chunk; `total_chunks` is the list's
/// (at most `2^31 - 1`, checked by `TensorList`).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tensor_stats(
    gpu: &Gpu,
    total_chunks: u32,
    grads: DevicePointer<f32>,
    tensors: DevicePointer<TensorDesc>,
    num_tensors: u32,
    partials: DevicePointer<Stats>,
    counters: DevicePointer<u32>,
    out: DevicePointer<Stats>,
    status: DevicePointer<DeviceStatus>,
) -> CudaResult<()> {
    let module = &gpu.modules.stats;
    let stream = &gpu.stream;
    launch!(module.ogm_tensor_stats<<<total_chunks, STATS_BLOCK, 0, stream>>>(
        grads, tensors, num_tensors, partials, counters, out, status
    ))
}

/// `ogm_modulate` (kernels/modulate.cu): one block per [`MOD_CHUNKS_PER_BLOCK`] chunks.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn modulate(
    gpu: &Gpu,
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
) -> CudaResult<()> {
    let module = &gpu.modules.modulate;
    let stream = &gpu.stream;
    // total_chunks < 2^31 (TensorList), so the block count fits easily.
    let blocks = total_chunks.div_ceil(MOD_CHUNKS_PER_BLOCK) as u32;
    launch!(module.ogm_modulate<<<blocks, MOD_BLOCK, 0, stream>>>(
        grads, tensors, num_tensors, stats, state, step_key, total_chunks, noise, max_z, status
    ))
}

/// `ogm_sgd` (kernels/sgd.cu): a grid-stride loop over `n` values.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgd(
    gpu: &Gpu,
    blocks: u32,
    params: DevicePointer<f32>,
    grads: DevicePointer<f32>,
    momentum_buf: DevicePointer<f32>,
    n: u64,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    first_step: u32,
) -> CudaResult<()> {
    let module = &gpu.modules.sgd;
    let stream = &gpu.stream;
    launch!(module.ogm_sgd<<<blocks, SGD_BLOCK, 0, stream>>>(
        params, grads, momentum_buf, n, lr, momentum, weight_decay, first_step
    ))
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

    /// The value of `#define NAME <expression>` in kernels/common.cuh, for the simple integer
    /// expressions used there (a literal, or `(A * B)` of other defines).
    fn define(name: &str) -> u64 {
        let src = include_str!("../../kernels/common.cuh");
        let line = src
            .lines()
            .find_map(|l| {
                l.strip_prefix("#define ")?
                    .strip_prefix(name)?
                    .strip_prefix(' ')
            })
            .unwrap_or_else(|| panic!("no #define {name} in common.cuh"));
        let expr = line.split("//").next().unwrap().trim();
        let expr = expr.trim_start_matches('(').trim_end_matches(')');
        expr.split('*')
            .map(|f| {
                let f = f.trim();
                f.parse().unwrap_or_else(|_| define(f))
            })
            .product()
    }

    #[test]
    fn geometry_matches_the_kernels() {
        assert_eq!(define("SCORES_BLOCK"), u64::from(SCORES_BLOCK));
        assert_eq!(define("STATS_BLOCK"), u64::from(STATS_BLOCK));
        assert_eq!(define("MOD_BLOCK"), u64::from(MOD_BLOCK));
        assert_eq!(define("MOD_CHUNKS_PER_BLOCK"), MOD_CHUNKS_PER_BLOCK);
        assert_eq!(define("SGD_BLOCK"), u64::from(SGD_BLOCK));
        assert_eq!(define("OGM_CHUNK") as usize, crate::KERNEL_CHUNK);
    }
}
