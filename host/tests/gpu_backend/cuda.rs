// The GPU backend on a real GPU, for the device twins of the GPU tests (engine_gpu_cuda.rs,
// train_gpu_cuda.rs include this; feature `cuda`).

/// The backend the shared cases run on.
type Gpu = ogm_host::engine::gpu::GpuBackend<ogm_gpu::cuda::CudaDevice>;

/// The CUDA backend, or None (with the reason printed) where there is no device;
/// `OGM_GPU_REQUIRED=1` (set by the device check) makes a missing device a failure.
fn gpu() -> Option<Gpu> {
    use ogm_gpu::cuda::CudaDevice;
    static DEV: std::sync::OnceLock<Result<std::sync::Arc<CudaDevice>, String>> =
        std::sync::OnceLock::new();
    let dev = DEV.get_or_init(|| match CudaDevice::probe() {
        Ok(Ok(d)) => Ok(std::sync::Arc::new(d)),
        Ok(Err(why)) => Err(why),
        Err(e) => panic!("CUDA device present but unusable: {e}"),
    });
    match dev {
        Ok(d) => Some(ogm_host::engine::gpu::GpuBackend::new(d.clone())),
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
