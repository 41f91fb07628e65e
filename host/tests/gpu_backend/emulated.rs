// The GPU backend on the kernel emulator, for the GPU tests that run everywhere
// (engine_gpu_emulated.rs, train_gpu_emulated.rs include this): `GpuBackend` over
// `ogm_gpu::engine::emu::EmuDevice`, the CUDA source of gpu/kernels compiled with g++.

/// The backend the shared cases run on.
type Gpu = ogm_host::engine::gpu::GpuBackend<ogm_gpu::engine::emu::EmuDevice>;

/// The emulated backend (the library is built once per test binary), or None with the reason
/// printed where it cannot be built (no C++ compiler, not x86-64 Linux).
fn gpu() -> Option<Gpu> {
    use ogm_gpu::engine::emu::EmuDevice;
    static DEV: std::sync::OnceLock<Result<std::sync::Arc<EmuDevice>, String>> =
        std::sync::OnceLock::new();
    let dev = DEV.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ogm-engine-emulator");
        EmuDevice::build(&dir)
            .map(std::sync::Arc::new)
            .map_err(|e| e.to_string())
    });
    match dev {
        Ok(d) => Some(ogm_host::engine::gpu::GpuBackend::new(d.clone())),
        Err(e) if e.contains("SKIP ") => {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}
