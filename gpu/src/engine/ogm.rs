//! Part 1's OGM-GE kernels (scores, balance, statistics, modulation) on any [`Device`], with a
//! ring of per-step logs, so that a training step on the engine's backend (the CUDA device or
//! the emulator) goes from logits to modulated gradients without the host.
//!
//! [`crate::cuda::OgmStep`] is the same step over `cust` buffers (part 1's public API); this
//! one is what the trainer uses, because the engine's devices are where its buffers live and
//! because the emulator runs it, so the trainer's device step is tested without a GPU.
//!
//! Each queued step writes into its own [`StepLog`] slot: the kernels take the slot's
//! [`BalanceState`] as their state and its [`DeviceStatus`] as their status, and the losses
//! land beside them. The host reads a batch of slots when it logs ([`DeviceOgm::read_logs`]),
//! not every step.

use std::sync::Arc;

use ogm_core::noise::max_normal_magnitude;
use ogm_core::{Mode, NoiseKey};

use super::ops::u32_of;
use super::{kernels as k, Arg, DevPtr, Device, Grid};
use crate::error::{GpuError, Result};
use crate::layout::{TensorDesc, TensorList};
use crate::state::{BalanceState, DeviceStatus, Stats};

/// Threads of `ogm_batch_scores` (`SCORES_BLOCK` in `kernels/common.cuh`).
pub const SCORES_BLOCK: u32 = 256;
/// Threads of `ogm_tensor_stats` (`STATS_BLOCK`).
pub const STATS_BLOCK: u32 = 256;
/// Chunks per block of `ogm_tensor_stats` (one per warp).
pub const STATS_CHUNKS_PER_BLOCK: u64 = (STATS_BLOCK / 32) as u64;
/// Threads of `ogm_modulate` (`MOD_BLOCK`).
pub const MOD_BLOCK: u32 = 64;
/// Chunks per block of `ogm_modulate` (`MOD_CHUNKS_PER_BLOCK`).
pub const MOD_CHUNKS_PER_BLOCK: u64 = 16;

/// What one queued training step leaves on the device for the host to log.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C)]
pub struct StepLog {
    /// Scores, ratios and coefficients (the kernels' state for this step).
    pub state: BalanceState,
    /// What the step's kernels reported (bad labels, non-finite logits or gradients).
    pub status: DeviceStatus,
    /// Mean cross-entropy of the fused logits.
    pub loss: f64,
    /// Mean cross-entropy of the audio-only logits.
    pub loss_a: f64,
    /// Mean cross-entropy of the visual-only logits.
    pub loss_v: f64,
}

const _: () = assert!(std::mem::size_of::<StepLog>() == 112);
const LOG_STATUS: usize = std::mem::offset_of!(StepLog, status);
const LOG_LOSS: usize = std::mem::offset_of!(StepLog, loss);
const LOG_LOSS_A: usize = std::mem::offset_of!(StepLog, loss_a);
const LOG_LOSS_V: usize = std::mem::offset_of!(StepLog, loss_v);

/// Which of a step's losses a cross-entropy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossSlot {
    /// The fused logits' loss (the one trained on).
    Fused,
    /// The audio-only logits' loss.
    Audio,
    /// The visual-only logits' loss.
    Visual,
}

/// The plain-data structs this module copies as bytes.
///
/// # Safety
/// `#[repr(C)]`, no padding, every bit pattern valid.
unsafe trait Pod: Copy {}
// SAFETY: each is #[repr(C)] of u64/f64/u32 fields with sizes asserted equal to their
// fields' sum (here and in layout.rs / state.rs), so without padding.
unsafe impl Pod for TensorDesc {}
unsafe impl Pod for Stats {}
unsafe impl Pod for StepLog {}
unsafe impl Pod for DeviceStatus {}

fn bytes<T: Pod>(v: &[T]) -> &[u8] {
    // SAFETY: T is plain data without padding (Pod), so every byte is initialised.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

fn bytes_mut<T: Pod>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: as above, and any bytes written form valid values (Pod).
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// One device allocation, freed on drop.
struct Alloc<D: Device> {
    ptr: DevPtr,
    dev: Arc<D>,
}

impl<D: Device> Alloc<D> {
    fn new(dev: &Arc<D>, bytes: usize) -> Result<Alloc<D>> {
        Ok(Alloc {
            ptr: dev.alloc(bytes.max(8))?,
            dev: dev.clone(),
        })
    }
    fn zeroed(dev: &Arc<D>, bytes: usize) -> Result<Alloc<D>> {
        let a = Alloc::new(dev, bytes)?;
        // SAFETY: a holds `bytes` bytes.
        unsafe { dev.upload(a.ptr, &vec![0u8; bytes])? };
        Ok(a)
    }
    fn with<T: Pod>(dev: &Arc<D>, values: &[T]) -> Result<Alloc<D>> {
        let a = Alloc::new(dev, std::mem::size_of_val(values))?;
        // SAFETY: a holds size_of_val(values) bytes.
        unsafe { dev.upload(a.ptr, bytes(values))? };
        Ok(a)
    }
}

impl<D: Device> Drop for Alloc<D> {
    fn drop(&mut self) {
        // SAFETY: allocated by self.dev.alloc, owned here only.
        unsafe { self.dev.free(self.ptr) };
    }
}

/// The OGM-GE step's device state for one [`TensorList`] inside a flat gradient buffer, with
/// a ring of `slots` [`StepLog`]s and room for `batch` per-row losses.
pub struct DeviceOgm<D: Device> {
    dev: Arc<D>,
    list: TensorList,
    tensors: Alloc<D>,
    partials: Alloc<D>,
    counters: Alloc<D>,
    stats: Alloc<D>,
    logs: Alloc<D>,
    slots: usize,
    losses: Alloc<D>,
    batch: usize,
    max_z: f32,
}

impl<D: Device> DeviceOgm<D> {
    /// Allocates the step's buffers, uploads the tensor table and clears every log slot.
    ///
    /// Errors: zero slots or batch, device errors.
    pub fn new(dev: Arc<D>, list: TensorList, slots: usize, batch: usize) -> Result<Self> {
        if slots == 0 {
            return Err(GpuError::Empty { what: "log slots" });
        }
        if batch == 0 {
            return Err(GpuError::Empty { what: "batch" });
        }
        let chunks = list.total_chunks() as usize;
        let clear = vec![Self::clear_log(); slots];
        Ok(DeviceOgm {
            tensors: Alloc::with(&dev, list.descs())?,
            partials: Alloc::with(&dev, &vec![Stats::default(); chunks])?,
            // The statistics kernel's tickets start at zero; it resets them itself.
            counters: Alloc::zeroed(&dev, 4 * list.len())?,
            stats: Alloc::with(&dev, &vec![Stats::default(); list.len()])?,
            logs: Alloc::with(&dev, &clear)?,
            slots,
            // Per-row losses: one row of the scratch per loss (cross_entropy uses the first).
            losses: Alloc::new(&dev, 8 * 3 * batch)?,
            batch,
            max_z: max_normal_magnitude(),
            list,
            dev,
        })
    }

    fn clear_log() -> StepLog {
        StepLog {
            status: DeviceStatus::CLEAR,
            ..StepLog::default()
        }
    }

    /// The tensors this step modulates.
    pub fn list(&self) -> &TensorList {
        &self.list
    }

    /// Log slots in the ring.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The largest batch the loss scratch holds.
    pub fn batch(&self) -> usize {
        self.batch
    }

    fn log_ptr(&self, slot: usize, offset: usize) -> Result<DevPtr> {
        if slot >= self.slots {
            return Err(GpuError::LengthMismatch {
                what: "log slot",
                expected: self.slots,
                got: slot,
            });
        }
        Ok(self.logs.ptr + (slot * std::mem::size_of::<StepLog>() + offset) as u64)
    }

    /// Queues softmax cross-entropy over `batch x classes` logits: the mean loss into the
    /// slot's `which` loss, the gradient into `dlogits` when it is non-zero, bad labels and
    /// non-finite logits into the slot's status.
    ///
    /// Errors: a batch larger than the scratch, zero classes, a slot out of range.
    ///
    /// # Safety
    /// `logits` (and `dlogits` when non-zero) hold `batch x classes` f32, `labels` `batch`
    /// u32, on this device.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn cross_entropy(
        &self,
        slot: usize,
        which: LossSlot,
        logits: DevPtr,
        labels: DevPtr,
        batch: usize,
        classes: usize,
        dlogits: DevPtr,
    ) -> Result<()> {
        self.check_batch(batch, classes)?;
        let offset = match which {
            LossSlot::Fused => LOG_LOSS,
            LossSlot::Audio => LOG_LOSS_A,
            LossSlot::Visual => LOG_LOSS_V,
        };
        let out = self.log_ptr(slot, offset)?;
        let status = self.log_ptr(slot, LOG_STATUS)?;
        // SAFETY: the caller's buffers; losses holds self.batch >= batch f64; out and status
        // lie in the ring.
        unsafe {
            super::ops::softmax_xent(
                &*self.dev,
                logits,
                labels,
                batch,
                classes,
                dlogits,
                self.losses.ptr,
                status,
                out,
            )
        }
    }

    fn check_batch(&self, batch: usize, classes: usize) -> Result<()> {
        if classes == 0 {
            return Err(GpuError::Empty { what: "classes" });
        }
        if batch == 0 {
            return Err(GpuError::Empty { what: "batch" });
        }
        if batch > self.batch {
            return Err(GpuError::LengthMismatch {
                what: "batch (larger than the step's loss scratch)",
                expected: self.batch,
                got: batch,
            });
        }
        Ok(())
    }

    /// The slot's state and status addresses.
    fn state_and_status(&self, slot: usize) -> Result<(DevPtr, DevPtr)> {
        Ok((self.log_ptr(slot, 0)?, self.log_ptr(slot, LOG_STATUS)?))
    }

    /// Checks what a scores-and-balance launch is given and returns the slot's state and
    /// status addresses.
    fn balance_args(
        &self,
        slot: usize,
        batch: usize,
        classes: usize,
        alpha: f64,
    ) -> Result<(DevPtr, DevPtr)> {
        self.check_batch(batch, classes)?;
        ogm_core::balance::validate_alpha(alpha)?;
        self.state_and_status(slot)
    }

    /// Queues the scores and balance kernels into `slot`: the two true-class scores, ratios and
    /// coefficients, applied only when `active` (the epoch modulates).
    ///
    /// Errors: as [`DeviceOgm::cross_entropy`]; a negative or non-finite `alpha`.
    ///
    /// # Safety
    /// `audio` and `visual` hold `batch x classes` f32, `labels` `batch` u32.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn scores_and_balance(
        &self,
        slot: usize,
        audio: DevPtr,
        visual: DevPtr,
        labels: DevPtr,
        batch: usize,
        classes: usize,
        alpha: f64,
        active: bool,
    ) -> Result<()> {
        let (state, status) = self.balance_args(slot, batch, classes, alpha)?;
        // SAFETY: the caller's logits and labels; state and status lie in the ring.
        unsafe {
            self.dev.launch(
                &k::SCORES,
                Grid::linear(2, SCORES_BLOCK),
                &[
                    Arg::Ptr(audio),
                    Arg::Ptr(visual),
                    Arg::Ptr(labels),
                    Arg::U32(u32_of("batch", batch)?),
                    Arg::U32(u32_of("classes", classes)?),
                    Arg::Ptr(state),
                    Arg::Ptr(status),
                ],
            )?;
            self.dev.launch(
                &k::BALANCE,
                Grid::linear(1, 1),
                &[Arg::Ptr(state), Arg::F64(alpha), Arg::U32(active as u32)],
            )
        }
    }

    /// Queues a step's whole loss stage as one kernel (`ogm_step_losses`), the same values as
    /// [`DeviceOgm::cross_entropy`] for the three losses (fused, audio, visual), then
    /// [`DeviceOgm::scores_and_balance`], bit for bit, reading each logit row once: the
    /// slot's three losses, the fused logits' gradient into `dlogits`, the scores, ratios and
    /// coefficients (applied only when `active`), bad labels and non-finite logits into the
    /// slot's status.
    ///
    /// Errors: as [`DeviceOgm::scores_and_balance`].
    ///
    /// # Safety
    /// `logits`, `audio`, `visual` and `dlogits` hold `batch x classes` f32, `labels` `batch`
    /// u32, on this device.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn step_losses(
        &self,
        slot: usize,
        logits: DevPtr,
        audio: DevPtr,
        visual: DevPtr,
        labels: DevPtr,
        batch: usize,
        classes: usize,
        dlogits: DevPtr,
        alpha: f64,
        active: bool,
    ) -> Result<()> {
        let (state, status) = self.balance_args(slot, batch, classes, alpha)?;
        let losses = self.log_ptr(slot, LOG_LOSS)?;
        // SAFETY: the caller's buffers; the scratch holds 3 x self.batch >= 3 x batch f64; the
        // slot's state, status and three consecutive losses lie in the ring.
        unsafe {
            self.dev.launch(
                &k::STEP_LOSSES,
                Grid::linear(1, SCORES_BLOCK),
                &[
                    Arg::Ptr(logits),
                    Arg::Ptr(audio),
                    Arg::Ptr(visual),
                    Arg::Ptr(labels),
                    Arg::U32(u32_of("batch", batch)?),
                    Arg::U32(u32_of("classes", classes)?),
                    Arg::Ptr(dlogits),
                    Arg::Ptr(self.losses.ptr),
                    Arg::Ptr(state),
                    Arg::Ptr(status),
                    Arg::Ptr(losses),
                    Arg::F64(alpha),
                    Arg::U32(active as u32),
                ],
            )
        }
    }

    /// Queues the statistics and modulation kernels over the list's tensors of `grads` with
    /// the coefficients `slot`'s balance applies: scale (`Ogm`), scale and noise of `step_key`
    /// (`OgmGe`); `Normal` queues nothing.
    ///
    /// # Safety
    /// `grads` holds the list's buffer length of f32 on this device.
    pub unsafe fn modulate(
        &self,
        slot: usize,
        grads: DevPtr,
        mode: Mode,
        step_key: NoiseKey,
    ) -> Result<()> {
        if mode == Mode::Normal {
            return Ok(());
        }
        let (state, status) = self.state_and_status(slot)?;
        let n = self.list.len() as u32; // <= MAX_TENSORS, checked by TensorList
        let chunks = self.list.total_chunks(); // < 2^31, checked by TensorList
                                               // SAFETY: grads holds the list's buffer (the caller's contract) and every tensor lies
                                               // inside it; the other buffers were sized from the same list.
        unsafe {
            self.dev.launch(
                &k::TENSOR_STATS,
                Grid::linear(chunks.div_ceil(STATS_CHUNKS_PER_BLOCK) as u32, STATS_BLOCK),
                &[
                    Arg::Ptr(grads),
                    Arg::Ptr(self.tensors.ptr),
                    Arg::U32(n),
                    Arg::U64(chunks),
                    Arg::Ptr(self.partials.ptr),
                    Arg::Ptr(self.counters.ptr),
                    Arg::Ptr(self.stats.ptr),
                    Arg::Ptr(status),
                ],
            )?;
            self.dev.launch(
                &k::MODULATE,
                Grid::linear(chunks.div_ceil(MOD_CHUNKS_PER_BLOCK) as u32, MOD_BLOCK),
                &[
                    Arg::Ptr(grads),
                    Arg::Ptr(self.tensors.ptr),
                    Arg::U32(n),
                    Arg::Ptr(self.stats.ptr),
                    Arg::Ptr(state),
                    Arg::U64(step_key.0),
                    Arg::U64(chunks),
                    Arg::U32((mode == Mode::OgmGe) as u32),
                    Arg::F32(self.max_z),
                    Arg::Ptr(status),
                ],
            )
        }
    }

    /// Waits for the queued work and returns slots `0..count`, then clears them for reuse
    /// (the clear is queued in stream order).
    ///
    /// Errors: `count` beyond the ring, device errors.
    pub fn read_logs(&self, count: usize) -> Result<Vec<StepLog>> {
        if count > self.slots {
            return Err(GpuError::LengthMismatch {
                what: "log slots read",
                expected: self.slots,
                got: count,
            });
        }
        let mut out = vec![StepLog::default(); count];
        // SAFETY: the ring holds `slots >= count` logs.
        unsafe {
            self.dev.download(self.logs.ptr, bytes_mut(&mut out))?;
            self.dev
                .upload(self.logs.ptr, bytes(&vec![Self::clear_log(); count]))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn define(name: &str) -> u64 {
        crate::kernel_source::define(include_str!("../../kernels/common.cuh"), "common.cuh", name)
    }

    #[test]
    fn geometry_matches_the_kernels() {
        assert_eq!(define("SCORES_BLOCK"), u64::from(SCORES_BLOCK));
        assert_eq!(define("STATS_BLOCK"), u64::from(STATS_BLOCK));
        assert_eq!(define("STATS_CHUNKS_PER_BLOCK"), STATS_CHUNKS_PER_BLOCK);
        assert_eq!(define("MOD_BLOCK"), u64::from(MOD_BLOCK));
        assert_eq!(define("MOD_CHUNKS_PER_BLOCK"), MOD_CHUNKS_PER_BLOCK);
    }

    #[test]
    fn step_log_offsets_are_the_kernels_struct_sizes() {
        assert_eq!(LOG_STATUS, std::mem::size_of::<BalanceState>());
        assert_eq!(LOG_LOSS, LOG_STATUS + std::mem::size_of::<DeviceStatus>());
        assert_eq!(LOG_LOSS % 8, 0);
        // ogm_step_losses writes the three losses as losses[0..3).
        assert_eq!((LOG_LOSS_A, LOG_LOSS_V), (LOG_LOSS + 8, LOG_LOSS + 16));
    }
}
