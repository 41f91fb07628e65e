//! The device state of OGM-GE's modulation step and its safe, validated launch API.

use cust::memory::{CopyDestination, DeviceBox, DeviceBuffer, DeviceSlice};
use ogm_core::balance::validate_alpha;
use ogm_core::noise::max_normal_magnitude;
use ogm_core::{Mode, NoiseKey, Schedule};

use super::{launch, Gpu};
use crate::error::{to_u32, GpuError, Result};
use crate::layout::{TensorDesc, TensorList};
use crate::state::{BalanceState, DeviceStatus, Stats};

/// One batch's per-modality logits (row-major `batch x classes`) and labels, on the device.
#[derive(Debug, Clone, Copy)]
pub struct Logits<'a> {
    /// `out_a`.
    pub audio: &'a DeviceSlice<f32>,
    /// `out_v`.
    pub visual: &'a DeviceSlice<f32>,
    /// `y`, one per row.
    pub labels: &'a DeviceSlice<u32>,
    /// Number of classes.
    pub classes: usize,
}

/// The device buffers of the modulation step for one [`TensorList`]: the tensor table,
/// per-chunk and per-tensor statistics, the step's [`BalanceState`] and the sticky
/// [`DeviceStatus`].
pub struct OgmStep {
    list: TensorList,
    tensors: DeviceBuffer<TensorDesc>,
    partials: DeviceBuffer<Stats>,
    counters: DeviceBuffer<u32>,
    stats: DeviceBuffer<Stats>,
    state: DeviceBox<BalanceState>,
    status: DeviceBox<DeviceStatus>,
    max_z: f32,
}

impl OgmStep {
    /// Uploads the tensor table and allocates the step's state (a synchronous setup, once per
    /// layout, not per step).
    pub fn new(_gpu: &Gpu, list: TensorList) -> Result<OgmStep> {
        let chunks = list.total_chunks() as usize;
        Ok(OgmStep {
            tensors: DeviceBuffer::from_slice(list.descs())?,
            partials: DeviceBuffer::from_slice(&vec![Stats::default(); chunks])?,
            // The stats kernel's ticket counters start at zero and it resets them itself.
            counters: DeviceBuffer::zeroed(list.len())?,
            stats: DeviceBuffer::from_slice(&vec![Stats::default(); list.len()])?,
            state: DeviceBox::new(&BalanceState::default())?,
            status: DeviceBox::new(&DeviceStatus::CLEAR)?,
            max_z: max_normal_magnitude(),
            list,
        })
    }

    /// The tensors this step modulates.
    pub fn list(&self) -> &TensorList {
        &self.list
    }

    /// Queues the scores kernel: `BalanceState::score` from the logits and labels.
    ///
    /// Errors (nothing is queued): zero classes, empty labels, logits that are not
    /// `labels.len() x classes`, sizes beyond `u32`. Labels out of range and non-finite logits
    /// are only visible on the device: they are reported through [`OgmStep::take_status`], and
    /// the step then does not modulate.
    pub fn scores(&mut self, gpu: &Gpu, logits: &Logits<'_>) -> Result<()> {
        let batch = logits.labels.len();
        if logits.classes == 0 {
            return Err(GpuError::Empty { what: "classes" });
        }
        if batch == 0 {
            return Err(GpuError::Empty { what: "labels" });
        }
        let expected = batch
            .checked_mul(logits.classes)
            .ok_or(GpuError::TooLarge {
                what: "batch x classes",
                value: u64::MAX,
                limit: usize::MAX as u64,
            })?;
        for (what, got) in [
            ("logits.audio", logits.audio.len()),
            ("logits.visual", logits.visual.len()),
        ] {
            if got != expected {
                return Err(GpuError::LengthMismatch {
                    what,
                    expected,
                    got,
                });
            }
        }
        let batch = to_u32("batch", batch)?;
        let classes = to_u32("classes", logits.classes)?;
        // SAFETY: both logits buffers hold batch x classes values and labels holds batch, as
        // checked above; state and status are this step's own allocations.
        unsafe {
            launch::batch_scores(
                gpu,
                logits.audio.as_device_ptr(),
                logits.visual.as_device_ptr(),
                logits.labels.as_device_ptr(),
                batch,
                classes,
                self.state.as_device_ptr(),
                self.status.as_device_ptr(),
            )?;
        }
        Ok(())
    }

    /// Queues the balance kernel: ratios and coefficients from the scores, and the applied
    /// coefficients (`active`: the step modulates).
    ///
    /// Errors: a negative or non-finite `alpha`.
    pub fn balance(&mut self, gpu: &Gpu, alpha: f64, active: bool) -> Result<()> {
        validate_alpha(alpha)?;
        // SAFETY: state is this step's own allocation.
        unsafe { launch::balance(gpu, self.state.as_device_ptr(), alpha, active as u32)? };
        Ok(())
    }

    fn check_grads(&self, grads: &DeviceSlice<f32>) -> Result<()> {
        if grads.len() != self.list.buffer_len() {
            return Err(GpuError::LengthMismatch {
                what: "grads",
                expected: self.list.buffer_len(),
                got: grads.len(),
            });
        }
        Ok(())
    }

    /// Queues the statistics kernel over every tensor of the list.
    ///
    /// Errors: a gradient buffer whose length is not the list's buffer length.
    pub fn tensor_stats(&mut self, gpu: &Gpu, grads: &DeviceSlice<f32>) -> Result<()> {
        self.check_grads(grads)?;
        // SAFETY: grads holds buffer_len values and every tensor of the validated list lies
        // inside it; the other buffers were sized from the same list.
        unsafe {
            launch::tensor_stats(
                gpu,
                grads.as_device_ptr(),
                self.tensors.as_device_ptr(),
                self.list.len() as u32,
                self.list.total_chunks(),
                self.partials.as_device_ptr(),
                self.counters.as_device_ptr(),
                self.stats.as_device_ptr(),
                self.status.as_device_ptr(),
            )?;
        }
        Ok(())
    }

    /// Queues the modulation kernel, using the statistics and applied coefficients already
    /// queued. `Normal` queues nothing; `Ogm` scales; `OgmGe` scales and adds the noise of
    /// `step_key` (see [`crate::layout`] for the key convention).
    ///
    /// Errors: a gradient buffer whose length is not the list's buffer length.
    pub fn modulate(
        &mut self,
        gpu: &Gpu,
        grads: &mut DeviceSlice<f32>,
        mode: Mode,
        step_key: NoiseKey,
    ) -> Result<()> {
        self.check_grads(grads)?;
        if mode == Mode::Normal {
            return Ok(());
        }
        // SAFETY: as for tensor_stats; the kernel writes only inside the list's tensors.
        unsafe {
            launch::modulate(
                gpu,
                grads.as_device_ptr(),
                self.tensors.as_device_ptr(),
                self.list.len() as u32,
                self.stats.as_device_ptr(),
                self.state.as_device_ptr(),
                step_key.0,
                self.list.total_chunks(),
                (mode == Mode::OgmGe) as u32,
                self.max_z,
                self.status.as_device_ptr(),
            )?;
        }
        Ok(())
    }

    /// Queues the whole modulation step of epoch `epoch` (as `Schedule::plan` decides it):
    /// scores and coefficients always (for logging), and, when the epoch modulates, the
    /// statistics and the modulation of `grads`. Nothing waits for the device. Returns whether
    /// the step modulates.
    ///
    /// Errors: those of the individual kernels' validation; nothing is queued on an error.
    pub fn enqueue(
        &mut self,
        gpu: &Gpu,
        logits: &Logits<'_>,
        grads: &mut DeviceSlice<f32>,
        schedule: &Schedule,
        epoch: u32,
        step_key: NoiseKey,
    ) -> Result<bool> {
        self.check_grads(grads)?;
        let active = schedule.is_active(epoch);
        self.scores(gpu, logits)?;
        self.balance(gpu, schedule.alpha(), active)?;
        if active {
            self.tensor_stats(gpu, grads)?;
            self.modulate(gpu, grads, schedule.mode(), step_key)?;
        }
        Ok(active)
    }

    /// Waits for the queued work, then overwrites the step's [`BalanceState`] (e.g. scores
    /// summed over several devices' batches, before [`OgmStep::balance`]; tests).
    pub fn set_state(&mut self, gpu: &Gpu, state: &BalanceState) -> Result<()> {
        gpu.synchronize()?;
        Ok(self.state.copy_from(state)?)
    }

    /// Waits for the queued work, then overwrites the per-tensor statistics that
    /// [`OgmStep::modulate`] reads (tests and tools; a step computes them with
    /// [`OgmStep::tensor_stats`]).
    ///
    /// Errors: not one entry per tensor.
    pub fn set_stats(&mut self, gpu: &Gpu, stats: &[Stats]) -> Result<()> {
        if stats.len() != self.list.len() {
            return Err(GpuError::LengthMismatch {
                what: "stats",
                expected: self.list.len(),
                got: stats.len(),
            });
        }
        gpu.synchronize()?;
        Ok(self.stats.copy_from(&stats.to_vec())?)
    }

    /// The device address of the step's [`BalanceState`], for a collective (e.g. an
    /// all-reduce of `score` over data-parallel ranks between [`OgmStep::scores`] and
    /// [`OgmStep::balance`]) queued on the same stream.
    pub fn state_device_ptr(&self) -> cust::memory::DevicePointer<BalanceState> {
        self.state.as_device_ptr()
    }

    /// Waits for the queued work and returns the step's scores, ratios and coefficients.
    pub fn read_state(&self, gpu: &Gpu) -> Result<BalanceState> {
        gpu.synchronize()?;
        Ok(self.state.as_host_value()?)
    }

    /// Waits for the queued work and returns the last statistics of every tensor.
    pub fn read_stats(&self, gpu: &Gpu) -> Result<Vec<Stats>> {
        gpu.synchronize()?;
        let mut out = vec![Stats::default(); self.list.len()];
        self.stats.copy_to(&mut out[..])?;
        Ok(out)
    }

    /// Waits for the queued work, clears the sticky status and reports what the kernels met
    /// since the last call ([`GpuError::DeviceReported`]), if anything.
    pub fn take_status(&mut self, gpu: &Gpu) -> Result<()> {
        gpu.synchronize()?;
        let status = self.status.as_host_value()?;
        self.status.copy_from(&DeviceStatus::CLEAR)?;
        status.check()
    }
}
