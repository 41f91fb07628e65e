//! A device that runs nothing, for planning without a GPU: [`PlanDevice`] takes the launches
//! of some work (a whole training step of the paper model, say) and records, per kernel, how
//! many launches it made, their estimated work ([`super::work::estimate`]) and the sum of
//! their roofline floors on a given device's [`Peaks`]: the time that work cannot go below
//! with perfect kernels run back to back.
//!
//! Nothing is allocated: addresses come from a counter (aligned as `cuMemAlloc`'s), uploads
//! are dropped and downloads read zeros, so the host code runs as it would on a GPU, but
//! nothing it reads back means anything: only the launches do. The allocated total is kept,
//! as the device memory the work would take.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::work::{estimate, Peaks, Work};
use super::{check_args, Arg, DevPtr, Device, Grid, KernelSpec};
use crate::error::Result;

/// What one kernel's launches came to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PlannedKernel {
    /// Launches.
    pub launches: u64,
    /// The summed work of the launches that have an estimate.
    pub work: Work,
    /// The sum of those launches' roofline floors, in seconds (each launch's largest of
    /// `flops / peak` per unit and `bytes / bandwidth`).
    pub floor_s: f64,
    /// Launches without an estimate (see `work::WITHOUT_ESTIMATE`), not in `work` or
    /// `floor_s`.
    pub unestimated: u64,
    /// The part of `floor_s` set by DRAM traffic rather than arithmetic.
    pub memory_bound_s: f64,
}

/// The planning device: see the module documentation.
pub struct PlanDevice {
    peaks: Peaks,
    sms: u32,
    next: AtomicU64,
    allocated: AtomicU64,
    kernels: Mutex<BTreeMap<&'static str, PlannedKernel>>,
}

/// Alignment of the addresses handed out (`cuMemAlloc` gives at least 256 bytes).
const ALIGN: u64 = 256;

impl PlanDevice {
    /// A planning device of `sms` multiprocessors (the engine sizes grids and split-K plans
    /// by them) whose floors are taken against `peaks`.
    pub fn new(peaks: Peaks, sms: u32) -> PlanDevice {
        PlanDevice {
            peaks,
            sms: sms.max(1),
            // Far from 0, so that no address is mistaken for a null pointer.
            next: AtomicU64::new(1 << 32),
            allocated: AtomicU64::new(0),
            kernels: Mutex::new(BTreeMap::new()),
        }
    }

    /// The launches recorded since the last call, by kernel name; the record starts over.
    pub fn take(&self) -> BTreeMap<&'static str, PlannedKernel> {
        std::mem::take(&mut *self.kernels.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Bytes allocated so far (frees are not subtracted: the high-water mark of work that
    /// keeps its buffers, as the engine's backend does).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }
}

impl Device for PlanDevice {
    fn alloc(&self, bytes: usize) -> Result<DevPtr> {
        let size = (bytes as u64).max(1).div_ceil(ALIGN) * ALIGN;
        self.allocated.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(self.next.fetch_add(size, Ordering::Relaxed))
    }
    unsafe fn free(&self, _ptr: DevPtr) {}
    unsafe fn upload(&self, _dst: DevPtr, _src: &[u8]) -> Result<()> {
        Ok(())
    }
    unsafe fn download(&self, _src: DevPtr, dst: &mut [u8]) -> Result<()> {
        dst.fill(0);
        Ok(())
    }
    unsafe fn launch(&self, spec: &KernelSpec, grid: Grid, args: &[Arg]) -> Result<()> {
        check_args(spec, args)?;
        let work = estimate(spec, grid, args);
        let mut kernels = self.kernels.lock().unwrap_or_else(|e| e.into_inner());
        let k = kernels.entry(spec.name).or_default();
        k.launches += 1;
        match work.and_then(|w| w.min_seconds(&self.peaks).map(|f| (w, f))) {
            Some((w, (floor, roof))) => {
                k.work = k.work + w;
                k.floor_s += floor;
                if roof == "dram" {
                    k.memory_bound_s += floor;
                }
            }
            None => k.unestimated += 1,
        }
        Ok(())
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    fn multiprocessors(&self) -> u32 {
        self.sms
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernels as k;
    use super::super::work::{peaks, DeviceAttrs};
    use super::*;

    fn h100() -> DeviceAttrs {
        DeviceAttrs {
            sms: 132,
            clock_khz: 1_980_000,
            mem_clock_khz: 2_619_000,
            bus_bits: 5120,
            cc: (9, 0),
        }
    }

    #[test]
    fn launches_are_counted_with_their_work_and_floor() {
        let p = peaks(&h100());
        let dev = PlanDevice::new(p, 132);
        let a = dev.alloc(1000).unwrap();
        let b = dev.alloc(10).unwrap();
        assert!(a != 0 && b >= a + 1000 && b.is_multiple_of(ALIGN));
        assert_eq!(dev.allocated_bytes(), 1010);
        let mut back = [7u8; 4];
        // SAFETY: nothing is read or written at these addresses.
        unsafe {
            dev.upload(a, &[1, 2, 3]).unwrap();
            dev.download(a, &mut back).unwrap();
        }
        assert_eq!(back, [0; 4]);
        // A 256 x 256 x 256 FP32 product, twice: 2 m n k flops each.
        let args = [
            Arg::U32(256),
            Arg::U32(256),
            Arg::U32(256),
            Arg::F32(1.0),
            Arg::Ptr(a),
            Arg::U32(256),
            Arg::U32(1),
            Arg::Ptr(a),
            Arg::U32(256),
            Arg::U32(1),
            Arg::F32(0.0),
            Arg::Ptr(b),
            Arg::U32(256),
            Arg::U32(256),
            Arg::U64(0),
            Arg::Ptr(0),
        ];
        for _ in 0..2 {
            // SAFETY: the plan device reads no memory.
            unsafe { dev.launch(&k::GEMM, Grid::linear(16, 256), &args).unwrap() };
        }
        let plan = dev.take();
        let g = plan[k::GEMM.name];
        assert_eq!((g.launches, g.unestimated), (2, 0));
        assert_eq!(g.work.fp32, 2.0 * 2.0 * 256f64.powi(3));
        let one = estimate(&k::GEMM, Grid::linear(16, 256), &args).unwrap();
        let floor = one.min_seconds(&p).unwrap().0;
        assert!(
            (g.floor_s - 2.0 * floor).abs() <= 1e-15,
            "{} {}",
            g.floor_s,
            floor
        );
        assert!(dev.take().is_empty(), "take starts the record over");
        // Arguments that do not match the kernel's parameters are refused, as on a GPU.
        // SAFETY: as above.
        assert!(unsafe { dev.launch(&k::GEMM, Grid::linear(1, 256), &args[1..]) }.is_err());
    }
}
