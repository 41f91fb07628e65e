//! The trainer's device step on a real GPU (feature `cuda`): the cases of
//! train_gpu_emulated.rs (train_gpu_common/cases.rs: queued OGM-GE steps against the CPU
//! steps, the log ring's order, a bad label's report, the whole loop with an exact resume),
//! with the same tolerances. Without a device each test prints why it skips;
//! `OGM_GPU_REQUIRED=1` turns that into a failure (the device check sets it).
#![cfg(feature = "cuda")]

mod train_common;

use std::sync::OnceLock;

use ogm_gpu::cuda::CudaDevice;

type Gpu = GpuBackend<CudaDevice>;

/// The CUDA backend, or None (with the reason printed) where there is no device.
fn gpu() -> Option<Gpu> {
    static DEV: OnceLock<Result<Arc<CudaDevice>, String>> = OnceLock::new();
    let dev = DEV.get_or_init(|| match CudaDevice::probe() {
        Ok(Ok(d)) => Ok(Arc::new(d)),
        Ok(Err(why)) => Err(why),
        Err(e) => panic!("CUDA device present but unusable: {e}"),
    });
    match dev {
        Ok(d) => Some(GpuBackend::new(d.clone())),
        Err(why) => {
            assert!(
                std::env::var_os("OGM_GPU_REQUIRED").is_none_or(|v| v != "1"),
                "OGM_GPU_REQUIRED=1 but {why}"
            );
            eprintln!("skipping: {why}");
            None
        }
    }
}

include!("train_gpu_common/cases.rs");
