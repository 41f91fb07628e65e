//! The training engine's kernels (`kernels/engine_*.cu`): GEMM, convolution lowering, batch
//! norm, pooling, element-wise, head, loss and optimiser kernels, launched on any [`Device`].
//!
//! A [`Device`] allocates memory, copies and launches kernels by name with a list of
//! [`Arg`]s. Two devices run kernels: the CUDA one (`crate::cuda::CudaDevice`, feature
//! `cuda`) and the CPU emulator ([`emu::EmuDevice`]: the same kernel source compiled with g++,
//! see `tests/emulator/`), so everything above this module, the host crate's GPU backend
//! included, is tested on machines without a GPU. A third runs none: [`plan::PlanDevice`]
//! records the launches of some work and their roofline floors on a given device.
//!
//! Every kernel's parameter list is declared once, in [`kernels`]; [`Device::launch`]
//! implementations call [`check_args`] first, so an argument of the wrong width (the `launch!`
//! pitfall: a `usize` where the kernel reads an `unsigned int`) is an error instead of a
//! corrupted launch, and a test compares each declaration with the PTX `.entry`.

pub mod emu;
pub mod kernels;
pub mod ogm;
pub mod ops;
pub mod plan;
pub mod work;

use crate::error::{GpuError, Result};

/// A device address (a CUDA device pointer, or a host address on the emulator).
pub type DevPtr = u64;

/// The type of one kernel parameter (the discriminant is the emulator's kind code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ParamTy {
    /// A pointer (`.u64` in PTX).
    Ptr = 0,
    /// `unsigned int`.
    U32 = 1,
    /// `unsigned long long`.
    U64 = 2,
    /// `float`.
    F32 = 3,
    /// `double`.
    F64 = 4,
}

impl ParamTy {
    /// The PTX parameter type this compiles to.
    pub fn ptx(self) -> &'static str {
        match self {
            ParamTy::Ptr | ParamTy::U64 => ".u64",
            ParamTy::U32 => ".u32",
            ParamTy::F32 => ".f32",
            ParamTy::F64 => ".f64",
        }
    }
}

/// One kernel argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg {
    /// A device pointer (0 is the null pointer, for optional inputs).
    Ptr(DevPtr),
    /// `unsigned int`.
    U32(u32),
    /// `unsigned long long`.
    U64(u64),
    /// `float`.
    F32(f32),
    /// `double`.
    F64(f64),
}

impl Arg {
    /// The parameter type this argument fills.
    pub fn ty(&self) -> ParamTy {
        match self {
            Arg::Ptr(_) => ParamTy::Ptr,
            Arg::U32(_) => ParamTy::U32,
            Arg::U64(_) => ParamTy::U64,
            Arg::F32(_) => ParamTy::F32,
            Arg::F64(_) => ParamTy::F64,
        }
    }
    /// The argument's bits, zero-extended to 64 (the layout kernels read it in).
    pub fn bits(&self) -> u64 {
        match *self {
            Arg::Ptr(p) => p,
            Arg::U32(v) => u64::from(v),
            Arg::U64(v) => v,
            Arg::F32(v) => u64::from(v.to_bits()),
            Arg::F64(v) => v.to_bits(),
        }
    }
}

/// A kernel: the module (`kernels/<module>.cu`), its name and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSpec {
    /// The kernel file's stem.
    pub module: &'static str,
    /// The `extern "C"` name.
    pub name: &'static str,
    /// Parameter names and types, in order.
    pub params: &'static [(&'static str, ParamTy)],
}

/// Launch geometry: a grid of up to three dimensions of one-dimensional blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Blocks along x, y, z.
    pub blocks: [u32; 3],
    /// Threads per block.
    pub threads: u32,
}

impl Grid {
    /// A one-dimensional grid.
    pub fn linear(blocks: u32, threads: u32) -> Grid {
        Grid {
            blocks: [blocks, 1, 1],
            threads,
        }
    }
}

/// Checks `args` against `spec`'s parameter list (count and types).
pub fn check_args(spec: &KernelSpec, args: &[Arg]) -> Result<()> {
    if args.len() != spec.params.len() {
        return Err(GpuError::Launch {
            kernel: spec.name,
            reason: format!(
                "{} arguments for {} parameters",
                args.len(),
                spec.params.len()
            ),
        });
    }
    for ((name, ty), arg) in spec.params.iter().zip(args) {
        if arg.ty() != *ty {
            return Err(GpuError::Launch {
                kernel: spec.name,
                reason: format!("parameter {name} is {ty:?}, the argument is {:?}", arg.ty()),
            });
        }
    }
    Ok(())
}

/// A point in a device's queue of work, from [`Device::mark`]: marks increase in queue order,
/// and 0 is the start (no work).
pub type Mark = u64;

/// What the engine needs from a device. All work is ordered (one stream): a launch or copy
/// may return before it has run, and [`Device::download`] and [`Device::synchronize`] wait
/// for everything queued before them. The one exception is [`Device::upload_after`], a copy
/// that may overlap work queued before it.
pub trait Device: Send + Sync {
    /// Allocates `bytes` (at least 256-byte aligned); 0 bytes gives a valid, unusable address.
    fn alloc(&self, bytes: usize) -> Result<DevPtr>;
    /// Frees an allocation of [`Device::alloc`] (after the work queued on it).
    ///
    /// # Safety
    /// `ptr` came from `alloc` on this device and is not used afterwards.
    unsafe fn free(&self, ptr: DevPtr);
    /// Copies `src` to `dst`. The host may reuse `src` when this returns; the copy itself may
    /// still be queued.
    ///
    /// # Safety
    /// `dst .. dst + src.len()` lies inside a live allocation.
    unsafe fn upload(&self, dst: DevPtr, src: &[u8]) -> Result<()>;
    /// Copies device memory to `dst`, after all queued work.
    ///
    /// # Safety
    /// `src .. src + dst.len()` lies inside a live allocation.
    unsafe fn download(&self, src: DevPtr, dst: &mut [u8]) -> Result<()>;
    /// Queues a launch of `spec` (arguments checked with [`check_args`]).
    ///
    /// # Safety
    /// Every pointer argument addresses live memory of the length the kernel's documentation
    /// implies for the given sizes.
    unsafe fn launch(&self, spec: &KernelSpec, grid: Grid, args: &[Arg]) -> Result<()>;
    /// Waits for all queued work.
    fn synchronize(&self) -> Result<()>;
    /// A point in the work queued so far, for [`Device::upload_after`]. A device that runs
    /// its copies in queue order returns 0.
    fn mark(&self) -> Result<Mark> {
        Ok(0)
    }
    /// Copies `src` to `dst` after the work queued before `after` and after every earlier
    /// `upload_after`, but possibly while the work queued since `after` runs (on a GPU: on a
    /// copy stream, so that the next batch's upload overlaps the previous step's kernels).
    /// Work queued after this call sees the copy done. The host may reuse `src` when this
    /// returns. The default is [`Device::upload`] (in queue order, which is always allowed).
    ///
    /// # Safety
    /// As [`Device::upload`], and no work queued since `after` reads or writes
    /// `dst .. dst + src.len()`.
    unsafe fn upload_after(&self, after: Mark, dst: DevPtr, src: &[u8]) -> Result<()> {
        let _ = after;
        // SAFETY: the caller's contract covers upload's.
        unsafe { self.upload(dst, src) }
    }
    /// Number of multiprocessors (sizes grid-stride launches); the emulator reports 1.
    fn multiprocessors(&self) -> u32;
}
