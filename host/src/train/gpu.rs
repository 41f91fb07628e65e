//! Training on a CUDA GPU (`--device cuda`, feature `cuda`): the model runs on
//! [`GpuBackend`] over [`CudaDevice`], and OGM-GE's modulation uses the part-1 kernels
//! (`ogm_gpu::cuda::OgmStep`: per-tensor statistics, then scale + noise in place) on the
//! gradient arena, with the CPU trainer's targets and noise keys, so the noise is bit for bit
//! the CPU's.

use std::sync::Arc;

use cust::memory::{DevicePointer, DeviceSlice};
use ogm_core::{Mode, StepPlan};
use ogm_gpu::cuda::{CudaDevice, OgmStep};
use ogm_gpu::{step_key, BalanceState, Modality as GpuModality, TensorList, TensorSpec};

use crate::engine::gpu::GpuBackend;
use crate::engine::{AvModel, Modality};

use super::step::modulation_targets;
use super::{StepBackend, TrainError};

/// The CUDA backend the trainer uses.
pub type CudaBackend = GpuBackend<CudaDevice>;

/// Opens device 0. A machine without a GPU gets a clear error (the caller has read no data
/// yet).
pub fn open() -> Result<CudaBackend, TrainError> {
    match CudaDevice::probe() {
        Ok(Ok(dev)) => Ok(GpuBackend::new(Arc::new(dev))),
        Ok(Err(why)) => Err(TrainError::Device(format!(
            "--device cuda: no GPU is available ({why}); train with --device cpu instead"
        ))),
        Err(e) => Err(TrainError::Device(format!(
            "--device cuda: the GPU could not be used: {e}"
        ))),
    }
}

/// The part-1 step buffers for one target list.
struct GpuOgm {
    specs: Vec<TensorSpec>,
    step: OgmStep,
}

// SAFETY: the step's device buffers are only used inside `CudaDevice::with_gpu`, which holds
// the device's lock with its context current.
unsafe impl Send for GpuOgm {}

impl StepBackend for CudaBackend {
    fn modulate(
        model: &mut AvModel<Self>,
        plan: &StepPlan,
        all_weights: bool,
        seed: u64,
        step: u64,
    ) -> Result<(), TrainError> {
        if !plan.active {
            return Ok(());
        }
        let mode = if plan.noise { Mode::OgmGe } else { Mode::Ogm };
        // The CPU trainer's targets (modulate_encoders), keyed by their parameter index.
        let specs: Vec<TensorSpec> = modulation_targets(model.params_table(), all_weights)
            .map(|(i, t)| {
                let m = match t.modality {
                    Modality::Audio => GpuModality::Audio,
                    _ => GpuModality::Visual,
                };
                TensorSpec::new(t.region.offset, t.region.len, m, i as u64)
            })
            .collect();
        let diverged = |what: String| TrainError::Diverged {
            epoch: 0,
            step,
            what,
        };
        let b = model.backend();
        let (grads_ptr, grads_len) = (model.grads().ptr(), model.grads().len());
        let dev = b.device().clone();
        let mut ext = b.extension();
        let fresh = !matches!(ext.as_ref().and_then(|e| e.downcast_ref::<GpuOgm>()), Some(g) if g.specs == specs);
        let result = dev.with_gpu(|gpu| -> Result<(), ogm_gpu::GpuError> {
            if fresh {
                let list = TensorList::new(grads_len, specs.clone())?;
                *ext = Some(Box::new(GpuOgm {
                    specs: specs.clone(),
                    step: OgmStep::new(gpu, list)?,
                }));
            }
            let Some(g) = ext.as_mut().and_then(|e| e.downcast_mut::<GpuOgm>()) else {
                unreachable!("the extension was just set");
            };
            let state = BalanceState {
                applied: [plan.coeff_audio, plan.coeff_visual],
                active: 1,
                ..BalanceState::default()
            };
            g.step.set_state(gpu, &state)?;
            // SAFETY: the gradient arena's allocation, grads_len f32 values, alive for the
            // call (the model is borrowed); the slice does not own it.
            let mut grads = unsafe {
                DeviceSlice::from_raw_parts(DevicePointer::<f32>::from_raw(grads_ptr), grads_len)
            };
            g.step.tensor_stats(gpu, &grads)?;
            g.step
                .modulate(gpu, &mut grads, mode, step_key(seed, step))?;
            // Non-finite gradients are found on the device; report them as the CPU does.
            g.step.take_status(gpu)
        });
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e @ ogm_gpu::GpuError::DeviceReported { .. })) => {
                Err(diverged(format!("encoder gradients: {e}")))
            }
            Ok(Err(e)) | Err(e) => Err(TrainError::Device(e.to_string())),
        }
    }

    fn check(&self) -> Result<(), TrainError> {
        match self.take_error() {
            None => Ok(()),
            Some(e) => Err(TrainError::Device(e.to_string())),
        }
    }
}
