// A device that runs every `upload_after` copy as early as the `Device` contract allows, for
// the emulated GPU tests (included by train_gpu_emulated.rs): the work queued on it is held
// back until the host waits (a download, a synchronisation, a free), and each overlapping copy
// is placed right after the work queued before its mark (and after the earlier such copies),
// ahead of everything queued since. That is what a GPU's copy stream may do when the copy
// engine is idle and the compute stream is busy. Code that marks too early, or writes a
// buffer that queued work still reads, then computes with the wrong bytes, and the result
// differs from the in-order device's.

/// One held-back operation.
enum Held {
    /// A kernel launch, in queue order number `seq`.
    Launch {
        seq: u64,
        spec: ogm_gpu::engine::KernelSpec,
        grid: ogm_gpu::engine::Grid,
        args: Vec<ogm_gpu::engine::Arg>,
    },
    /// An in-order copy, queue order number `seq`.
    Upload {
        seq: u64,
        dst: ogm_gpu::engine::DevPtr,
        bytes: Vec<u8>,
    },
    /// An overlapping copy (`upload_after`).
    Early {
        dst: ogm_gpu::engine::DevPtr,
        bytes: Vec<u8>,
    },
}

#[derive(Default)]
struct HeldQueue {
    /// Operations not yet run, in the order they will run.
    ops: Vec<Held>,
    /// In-order operations queued so far (a mark `m` stands after the first `m - 1`).
    queued: u64,
    /// Overlapping copies placed.
    early: usize,
}

/// Holds work back and runs overlapping copies early (see the module comment).
struct EarlyCopies<D: ogm_gpu::engine::Device> {
    dev: std::sync::Arc<D>,
    held: std::sync::Mutex<HeldQueue>,
}

impl<D: ogm_gpu::engine::Device> EarlyCopies<D> {
    fn new(dev: std::sync::Arc<D>) -> Self {
        EarlyCopies {
            dev,
            held: Default::default(),
        }
    }
    /// Overlapping copies placed so far.
    fn early_copies(&self) -> usize {
        self.held.lock().unwrap().early
    }
    /// Runs everything held, in order.
    fn flush(&self) -> Result<(), ogm_gpu::GpuError> {
        let ops = std::mem::take(&mut self.held.lock().unwrap().ops);
        for op in ops {
            // SAFETY: each operation was queued under the Device contract, and they run in an
            // order that contract allows.
            unsafe {
                match op {
                    Held::Launch {
                        spec, grid, args, ..
                    } => self.dev.launch(&spec, grid, &args)?,
                    Held::Upload { dst, bytes, .. } | Held::Early { dst, bytes } => {
                        self.dev.upload(dst, &bytes)?
                    }
                }
            }
        }
        Ok(())
    }
}

impl<D: ogm_gpu::engine::Device> ogm_gpu::engine::Device for EarlyCopies<D> {
    fn alloc(&self, bytes: usize) -> Result<ogm_gpu::engine::DevPtr, ogm_gpu::GpuError> {
        self.dev.alloc(bytes)
    }
    unsafe fn free(&self, ptr: ogm_gpu::engine::DevPtr) {
        let _ = self.flush();
        // SAFETY: forwarded with the caller's guarantees; nothing held uses it any more.
        unsafe { self.dev.free(ptr) }
    }
    unsafe fn upload(
        &self,
        dst: ogm_gpu::engine::DevPtr,
        src: &[u8],
    ) -> Result<(), ogm_gpu::GpuError> {
        let mut h = self.held.lock().unwrap();
        h.queued += 1;
        let seq = h.queued;
        h.ops.push(Held::Upload {
            seq,
            dst,
            bytes: src.to_vec(),
        });
        Ok(())
    }
    unsafe fn download(
        &self,
        src: ogm_gpu::engine::DevPtr,
        dst: &mut [u8],
    ) -> Result<(), ogm_gpu::GpuError> {
        self.flush()?;
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.dev.download(src, dst) }
    }
    unsafe fn launch(
        &self,
        spec: &ogm_gpu::engine::KernelSpec,
        grid: ogm_gpu::engine::Grid,
        args: &[ogm_gpu::engine::Arg],
    ) -> Result<(), ogm_gpu::GpuError> {
        ogm_gpu::engine::check_args(spec, args)?;
        let mut h = self.held.lock().unwrap();
        h.queued += 1;
        let seq = h.queued;
        h.ops.push(Held::Launch {
            seq,
            spec: *spec,
            grid,
            args: args.to_vec(),
        });
        Ok(())
    }
    fn synchronize(&self) -> Result<(), ogm_gpu::GpuError> {
        self.flush()?;
        self.dev.synchronize()
    }
    fn mark(&self) -> Result<ogm_gpu::engine::Mark, ogm_gpu::GpuError> {
        Ok(self.held.lock().unwrap().queued + 1)
    }
    unsafe fn upload_after(
        &self,
        after: ogm_gpu::engine::Mark,
        dst: ogm_gpu::engine::DevPtr,
        src: &[u8],
    ) -> Result<(), ogm_gpu::GpuError> {
        let mut h = self.held.lock().unwrap();
        // Right after the last held operation that must precede the copy: in-order work
        // queued before the mark, and earlier overlapping copies (a copy stream is in order).
        let at = h
            .ops
            .iter()
            .rposition(|op| match op {
                Held::Launch { seq, .. } | Held::Upload { seq, .. } => *seq < after,
                Held::Early { .. } => true,
            })
            .map_or(0, |i| i + 1);
        h.ops.insert(
            at,
            Held::Early {
                dst,
                bytes: src.to_vec(),
            },
        );
        h.early += 1;
        Ok(())
    }
    fn multiprocessors(&self) -> u32 {
        self.dev.multiprocessors()
    }
}
