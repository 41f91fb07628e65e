//! [`CudaDevice`]: the engine's [`Device`] on a CUDA GPU (one context, a compute stream and a
//! copy stream, every PTX module of `kernels/` loaded).
//!
//! Host-to-device copies go through a ring of page-locked staging buffers and
//! `cuMemcpyHtoDAsync`: [`Device::upload`] returns as soon as the bytes are staged, so a batch
//! upload does not wait for the previous step's kernels. A slot is reused only when its
//! previous copy has completed (an event wait on a copy queued [`STAGING_SLOTS`] uploads
//! earlier, normally long done). Only [`Device::download`] and [`Device::synchronize`] wait for
//! the device.
//!
//! [`Device::upload`] copies in compute-stream order. [`Device::upload_after`] copies on the
//! copy stream instead, after an event the compute stream recorded at [`Device::mark`]: the
//! copy engine moves the next batch while the previous step's kernels run, and the compute
//! stream waits for the copy (another event) before the work queued after it. Marks are
//! events in a small map, waited on in increasing order; waiting on a later point than asked
//! is always allowed, so a mark that was dropped (more than [`MARKS`] outstanding) is served
//! by a later one, or by an event recorded at once.
//!
//! Optional profiling ([`CudaDevice::set_profiling`]) brackets every launch with CUDA events
//! and reports each kernel's total time, launch count and summed work (flops by unit and
//! minimum DRAM traffic, [`crate::engine::work::estimate`]), which with the device's peak
//! rates ([`CudaDevice::peaks`]) tells how close each kernel runs to its roofline bound.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use cust::context::CurrentContext;
use cust::event::{Event, EventFlags};
use cust::memory::{
    cuda_free, cuda_free_locked, cuda_malloc, cuda_malloc_locked, AsyncCopyDestination,
    DevicePointer, DeviceSlice,
};
use cust::stream::{Stream, StreamFlags, StreamWaitEventFlags};

use super::{Gpu, Probe};
use crate::engine::work::{self, DeviceAttrs, KernelTotals, Peaks, Work};
use crate::engine::{check_args, Arg, DevPtr, Device, Grid, KernelSpec, Mark};
use crate::error::{GpuError, Result};

/// Page-locked staging buffers for uploads. A training step uploads three buffers (audio,
/// frames, labels), so 8 slots let the host stage batches about two steps ahead of the device
/// before a slot's previous copy has to be waited for (each slot grows to the largest upload
/// it has carried: about 38 MB for a batch of 64 frames at 224 x 224).
pub const STAGING_SLOTS: usize = 8;

/// Marks kept for [`Device::upload_after`]; the oldest is dropped beyond this (see the module
/// documentation: correctness does not depend on it).
pub const MARKS: usize = 16;

struct Slot {
    host: *mut u8,
    cap: usize,
    done: Option<Event>,
}

impl Slot {
    /// Queues the copy of the slot's first `len` staged bytes to `dst` on `stream`, and
    /// records the slot's `done` event after it.
    ///
    /// # Safety
    /// `dst .. dst + len` is live device memory; the slot holds `len` staged bytes.
    unsafe fn copy_to(&mut self, len: usize, dst: DevPtr, stream: &Stream) -> Result<()> {
        // SAFETY: the caller's contract; the staged bytes are page-locked and stay untouched
        // until the event below has fired (Inner::stage waits for it before reusing the slot).
        unsafe {
            let staged = std::slice::from_raw_parts(self.host, len);
            let mut d = DeviceSlice::from_raw_parts(DevicePointer::<u8>::from_raw(dst), len);
            d.async_copy_from(staged, stream)?;
        }
        let ev = Event::new(EventFlags::DISABLE_TIMING)?;
        ev.record(stream)?;
        self.done = Some(ev);
        Ok(())
    }
}

/// One profiled launch.
struct Profiled {
    kernel: &'static str,
    work: Option<Work>,
    start: Event,
    end: Event,
}

// Fields drop in order: the events and the copy stream before `gpu`, which owns the context.
struct Inner {
    slots: Vec<Slot>,
    next: usize,
    /// While profiling: each launch's kernel, work estimate and start and end events.
    profile: Option<Vec<Profiled>>,
    /// The copy stream of `upload_after` (created at its first use).
    copy: Option<Stream>,
    /// Outstanding marks: compute-stream events by mark id.
    marks: BTreeMap<Mark, Event>,
    /// The last mark id given out.
    last_mark: Mark,
    /// The copy stream already waits for the compute stream's work up to this mark.
    copy_after: Mark,
    gpu: Gpu,
}

impl Inner {
    /// Copies `src` into the next staging slot (waiting for that slot's previous copy) and
    /// returns the slot's index.
    fn stage(&mut self, src: &[u8]) -> Result<usize> {
        if self.slots.is_empty() {
            for _ in 0..STAGING_SLOTS {
                self.slots.push(Slot {
                    host: std::ptr::null_mut(),
                    cap: 0,
                    done: None,
                });
            }
        }
        let i = self.next;
        self.next = (i + 1) % STAGING_SLOTS;
        let slot = &mut self.slots[i];
        if let Some(ev) = slot.done.take() {
            ev.synchronize()?; // the copy from this slot STAGING_SLOTS uploads ago
        }
        if slot.cap < src.len() {
            if !slot.host.is_null() {
                // SAFETY: allocated below by cuda_malloc_locked; its last copy has completed.
                unsafe { cuda_free_locked(slot.host)? };
                slot.host = std::ptr::null_mut();
                slot.cap = 0;
            }
            // SAFETY: a plain page-locked allocation.
            slot.host = unsafe { cuda_malloc_locked::<u8>(src.len())? };
            slot.cap = src.len();
        }
        // SAFETY: the slot holds at least src.len() bytes and no copy reads it now.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), slot.host, src.len()) };
        Ok(i)
    }

    /// Makes the copy stream wait for the compute stream's work up to mark `after` (or a later
    /// point).
    fn copy_waits_for(&mut self, after: Mark) -> Result<()> {
        if after <= self.copy_after {
            return Ok(()); // the copy stream is past it already (it runs in order)
        }
        let copy = self.copy.as_ref().expect("created by the caller");
        // The first outstanding mark at or after `after`; none (dropped, or not from this
        // device): everything queued so far.
        let (id, ev) = match self.marks.range(after..).next().map(|(&k, _)| k) {
            Some(id) => (id, self.marks.remove(&id).expect("just found")),
            None => {
                let ev = Event::new(EventFlags::DISABLE_TIMING)?;
                ev.record(self.gpu.stream())?;
                (self.last_mark.max(after), ev)
            }
        };
        self.marks.retain(|&k, _| k > id);
        copy.wait_event(ev, StreamWaitEventFlags::DEFAULT)?;
        self.copy_after = id;
        Ok(())
    }

    /// Waits for both streams.
    fn synchronize(&self) -> Result<()> {
        if let Some(copy) = &self.copy {
            copy.synchronize()?;
        }
        self.gpu.synchronize()
    }
}

/// The CUDA device (see the module documentation).
pub struct CudaDevice {
    inner: Mutex<Inner>,
    sms: u32,
    name: String,
    attrs: DeviceAttrs,
}

// SAFETY: every use of the context, stream, modules, events and staging memory happens under
// the mutex, with the context made current on the calling thread first (`lock`).
unsafe impl Send for CudaDevice {}
unsafe impl Sync for CudaDevice {}

impl CudaDevice {
    /// A context on device 0 with every kernel loaded; [`Probe::Unavailable`] when the driver
    /// reports no device (the clean "no GPU here" case), an error for anything else.
    pub fn probe() -> Result<std::result::Result<CudaDevice, String>> {
        match Gpu::probe()? {
            Probe::Unavailable(why) => Ok(Err(why)),
            Probe::Ready(gpu) => {
                let sms = gpu.multiprocessors()?;
                let name = gpu.device_name()?;
                let attrs = gpu.attributes()?;
                Ok(Ok(CudaDevice {
                    inner: Mutex::new(Inner {
                        gpu: *gpu,
                        slots: Vec::new(),
                        next: 0,
                        profile: None,
                        copy: None,
                        marks: BTreeMap::new(),
                        last_mark: 0,
                        copy_after: 0,
                    }),
                    sms,
                    name,
                    attrs,
                }))
            }
        }
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's attributes (multiprocessors, clocks, bus width, compute capability).
    pub fn attributes(&self) -> DeviceAttrs {
        self.attrs
    }

    /// The device's peak FP32, FP64, TF32 and BF16 flop/s and DRAM bandwidth
    /// ([`work::peaks`]: from the attributes and a per-architecture table; a unit's peak is
    /// `None` on an architecture the table does not hold).
    pub fn peaks(&self) -> Peaks {
        work::peaks(&self.attrs)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        CurrentContext::set_current(&g.gpu._context)?;
        Ok(g)
    }

    /// Runs `f` with the part-1 [`Gpu`] (same context and stream), e.g. to queue the OGM-GE
    /// step's kernels between the engine's.
    pub fn with_gpu<R>(&self, f: impl FnOnce(&Gpu) -> R) -> Result<R> {
        let g = self.lock()?;
        Ok(f(&g.gpu))
    }

    /// Starts (or stops) timing every launch with CUDA events.
    pub fn set_profiling(&self, on: bool) -> Result<()> {
        self.lock()?.profile = on.then(Vec::new);
        Ok(())
    }

    /// Waits for the device and returns, per kernel, the total milliseconds, the launch count
    /// and the launches' summed work estimate since profiling started (or was last taken).
    pub fn take_profile(&self) -> Result<BTreeMap<&'static str, KernelTotals>> {
        let mut g = self.lock()?;
        g.gpu.synchronize()?;
        let mut out: BTreeMap<&'static str, KernelTotals> = BTreeMap::new();
        if let Some(list) = g.profile.as_mut() {
            for p in list.drain(..) {
                let ms = f64::from(p.end.elapsed_time_f32(&p.start)?);
                out.entry(p.kernel).or_default().record(ms, p.work);
            }
        }
        Ok(out)
    }
}

impl Device for CudaDevice {
    fn alloc(&self, bytes: usize) -> Result<DevPtr> {
        let _g = self.lock()?;
        if bytes == 0 {
            return Ok(0);
        }
        // SAFETY: a plain allocation; freed by `free`.
        match unsafe { cuda_malloc::<u8>(bytes) } {
            Ok(p) => Ok(p.as_raw()),
            Err(cust::error::CudaError::OutOfMemory) => {
                // Name the sizes: "out of memory" alone does not say how far off the run is.
                let info = cust::memory::mem_get_info().ok();
                Err(GpuError::OutOfMemory {
                    bytes,
                    free: info.map(|(f, _)| f),
                    total: info.map(|(_, t)| t),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
    unsafe fn free(&self, ptr: DevPtr) {
        if ptr == 0 {
            return;
        }
        if let Ok(g) = self.lock() {
            // Queued kernels and copies may still use the memory: wait for them first.
            let _ = g.synchronize();
            // SAFETY: the caller's contract (an allocation of `alloc`, not used afterwards).
            let _ = unsafe { cuda_free(DevicePointer::<u8>::from_raw(ptr)) };
        }
    }
    unsafe fn upload(&self, dst: DevPtr, src: &[u8]) -> Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        let mut g = self.lock()?;
        let i = g.stage(src)?;
        let inner = &mut *g;
        // SAFETY: dst is live (the caller's contract); slot i holds src.len() staged bytes.
        unsafe { inner.slots[i].copy_to(src.len(), dst, inner.gpu.stream()) }
    }
    unsafe fn upload_after(&self, after: Mark, dst: DevPtr, src: &[u8]) -> Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        let mut g = self.lock()?;
        if g.copy.is_none() {
            g.copy = Some(Stream::new(StreamFlags::NON_BLOCKING, None)?);
        }
        g.copy_waits_for(after)?;
        let i = g.stage(src)?;
        let inner = &mut *g;
        let copy = inner.copy.as_ref().expect("created above");
        // SAFETY: dst is live and untouched by the work queued since `after` (the caller's
        // contract), which is all the copy stream may overlap; slot i holds the bytes.
        unsafe { inner.slots[i].copy_to(src.len(), dst, copy)? };
        // The compute stream waits for the copy before the work queued after this call.
        let ready = Event::new(EventFlags::DISABLE_TIMING)?;
        ready.record(copy)?;
        inner
            .gpu
            .stream()
            .wait_event(ready, StreamWaitEventFlags::DEFAULT)?;
        Ok(())
    }
    unsafe fn download(&self, src: DevPtr, dst: &mut [u8]) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        let g = self.lock()?;
        // SAFETY: the caller's contract; the stream is synchronised before dst is used.
        let d =
            unsafe { DeviceSlice::from_raw_parts(DevicePointer::<u8>::from_raw(src), dst.len()) };
        unsafe { d.async_copy_to(dst, g.gpu.stream())? };
        g.gpu.synchronize()
    }
    unsafe fn launch(&self, spec: &KernelSpec, grid: Grid, args: &[Arg]) -> Result<()> {
        check_args(spec, args)?;
        let mut g = self.lock()?;
        let module = g.gpu.modules.by_name(spec.module).ok_or(GpuError::Launch {
            kernel: spec.name,
            reason: format!("no module {}", spec.module),
        })?;
        let func = module.get_function(spec.name)?;
        // Each argument's bits in an 8-byte slot; the driver reads the parameter's own width
        // (little-endian), which check_args has matched with the kernel's declaration.
        let mut slots: Vec<u64> = args.iter().map(Arg::bits).collect();
        let ptrs: Vec<*mut std::ffi::c_void> = slots
            .iter_mut()
            .map(|s| (s as *mut u64).cast::<std::ffi::c_void>())
            .collect();
        let profiling = g.profile.is_some();
        let events = if profiling {
            let (a, b) = (
                Event::new(EventFlags::DEFAULT)?,
                Event::new(EventFlags::DEFAULT)?,
            );
            a.record(g.gpu.stream())?;
            Some((a, b))
        } else {
            None
        };
        let [x, y, z] = grid.blocks;
        // SAFETY: the argument list matches the kernel (checked); pointers are the caller's
        // contract.
        unsafe {
            g.gpu
                .stream()
                .launch(&func, (x, y, z), grid.threads, 0, &ptrs)?
        };
        if let Some((start, end)) = events {
            end.record(g.gpu.stream())?;
            // Estimated here, where the arguments are at hand; only while profiling, so the
            // unprofiled launch path does no extra work.
            let work = work::estimate(spec, grid, args);
            if let Some(list) = g.profile.as_mut() {
                list.push(Profiled {
                    kernel: spec.name,
                    work,
                    start,
                    end,
                });
            }
        }
        Ok(())
    }
    fn synchronize(&self) -> Result<()> {
        self.lock()?.synchronize()
    }
    fn mark(&self) -> Result<Mark> {
        let mut g = self.lock()?;
        let ev = Event::new(EventFlags::DISABLE_TIMING)?;
        ev.record(g.gpu.stream())?;
        g.last_mark += 1;
        let id = g.last_mark;
        g.marks.insert(id, ev);
        while g.marks.len() > MARKS {
            g.marks.pop_first();
        }
        Ok(id)
    }
    fn multiprocessors(&self) -> u32 {
        self.sms
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        if let Ok(mut g) = self.lock() {
            let _ = g.synchronize();
            for slot in g.slots.drain(..) {
                if !slot.host.is_null() {
                    // SAFETY: allocated by cuda_malloc_locked; the stream is idle.
                    let _ = unsafe { cuda_free_locked(slot.host) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::kernels::ALL;

    use crate::kernel_source::ptx_params;

    /// Every engine kernel's declared parameter list equals its PTX entry's, type for type.
    #[test]
    fn engine_declarations_match_the_ptx_entries() {
        for spec in ALL {
            let (_, ptx) = super::super::ptx::ALL
                .iter()
                .find(|(stem, _)| *stem == spec.module)
                .unwrap_or_else(|| panic!("no PTX module {}", spec.module));
            let want: Vec<&str> = spec.params.iter().map(|(_, t)| t.ptx()).collect();
            assert_eq!(ptx_params(ptx, spec.name), want, "{}", spec.name);
        }
    }

    /// Every kernel of the engine's PTX modules is declared (none can be launched undeclared).
    #[test]
    fn every_engine_kernel_is_declared() {
        for (stem, ptx) in super::super::ptx::ALL {
            if !stem.starts_with("engine_") {
                continue;
            }
            for line in ptx.lines() {
                if let Some(rest) = line.trim().strip_prefix(".visible .entry ") {
                    let name = rest.split('(').next().unwrap();
                    assert!(
                        ALL.iter().any(|s| s.name == name && s.module == *stem),
                        "{stem}: kernel {name} is not declared in engine::kernels"
                    );
                }
            }
        }
    }
}
