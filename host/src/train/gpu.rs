//! Training on a CUDA GPU (`--device cuda`, feature `cuda`): the model runs on
//! [`GpuBackend`] over [`CudaDevice`]; the steps are queued as `super::device` describes
//! (OGM-GE with part 1's kernels, the CPU trainer's targets and noise keys, so the noise is bit
//! for bit the CPU's).

use std::sync::Arc;

use ogm_gpu::cuda::CudaDevice;

use crate::engine::gpu::GpuBackend;

use crate::config::TrainConfig;

use super::TrainError;

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

/// Opens device 0 ([`open`]) set to run `config`'s model: its `--precision` and `--conv`.
pub fn open_for(config: &TrainConfig) -> Result<CudaBackend, TrainError> {
    let mut backend = open()?;
    backend.set_precision(config.precision.engine());
    backend.set_conv_algo(config.conv.engine());
    Ok(backend)
}
