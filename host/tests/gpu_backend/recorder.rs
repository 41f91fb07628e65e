// A forwarding device for the GPU tests (included by the engine and train GPU test files):
// it records, in order, the kernels launched (by name) and the calls that make the host wait
// for the device ("download", "synchronize", "free"), and passes everything on to the real
// device.

/// Forwards to `D`, recording launches and waits (see the module comment), and apart from
/// them the launches that hand a batch norm its sums through a GEMM's row moments (a GEMM with
/// `moments` set, a batch norm with `tile_w` set).
struct Recorder<D: ogm_gpu::engine::Device> {
    dev: std::sync::Arc<D>,
    events: std::sync::Mutex<Vec<&'static str>>,
    moments: std::sync::Mutex<Vec<&'static str>>,
}

impl<D: ogm_gpu::engine::Device> Recorder<D> {
    fn new(dev: std::sync::Arc<D>) -> Self {
        Recorder {
            dev,
            events: Default::default(),
            moments: Default::default(),
        }
    }
    /// The launches that wrote or read row moments since the last call, oldest first.
    #[allow(dead_code)] // not every test file that includes the recorder asks
    fn take_moments(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.moments.lock().unwrap())
    }
    /// The events since the last call, oldest first.
    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
    fn note(&self, what: &'static str) {
        self.events.lock().unwrap().push(what);
    }
}

impl<D: ogm_gpu::engine::Device> ogm_gpu::engine::Device for Recorder<D> {
    fn alloc(&self, bytes: usize) -> Result<ogm_gpu::engine::DevPtr, ogm_gpu::GpuError> {
        self.dev.alloc(bytes)
    }
    unsafe fn free(&self, ptr: ogm_gpu::engine::DevPtr) {
        self.note("free");
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.dev.free(ptr) }
    }
    unsafe fn upload(
        &self,
        dst: ogm_gpu::engine::DevPtr,
        src: &[u8],
    ) -> Result<(), ogm_gpu::GpuError> {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.dev.upload(dst, src) }
    }
    unsafe fn download(
        &self,
        src: ogm_gpu::engine::DevPtr,
        dst: &mut [u8],
    ) -> Result<(), ogm_gpu::GpuError> {
        self.note("download");
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.dev.download(src, dst) }
    }
    unsafe fn launch(
        &self,
        spec: &ogm_gpu::engine::KernelSpec,
        grid: ogm_gpu::engine::Grid,
        args: &[ogm_gpu::engine::Arg],
    ) -> Result<(), ogm_gpu::GpuError> {
        self.note(spec.name);
        use ogm_gpu::engine::Arg;
        let moments = spec.params.iter().zip(args).any(|((name, _), arg)| {
            matches!((*name, arg), ("moments", Arg::Ptr(p)) if *p != 0)
                || matches!((*name, arg), ("tile_w", Arg::U32(t)) if *t != 0)
        });
        if moments {
            self.moments.lock().unwrap().push(spec.name);
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.dev.launch(spec, grid, args) }
    }
    fn synchronize(&self) -> Result<(), ogm_gpu::GpuError> {
        self.note("synchronize");
        self.dev.synchronize()
    }
    fn mark(&self) -> Result<ogm_gpu::engine::Mark, ogm_gpu::GpuError> {
        self.dev.mark()
    }
    unsafe fn upload_after(
        &self,
        after: ogm_gpu::engine::Mark,
        dst: ogm_gpu::engine::DevPtr,
        src: &[u8],
    ) -> Result<(), ogm_gpu::GpuError> {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.dev.upload_after(after, dst, src) }
    }
    fn multiprocessors(&self) -> u32 {
        self.dev.multiprocessors()
    }
}
