//! The CPU emulator as a [`Device`]: `tests/emulator/engine_lib.cpp` (the engine kernels'
//! own source with the CUDA stand-in) compiled with g++ into a shared library, loaded with
//! `dlopen`. Device memory is host memory; launches run on the calling thread, one at a time.
//!
//! This is a test tool: it checks indexing, tiling, reductions and the launch geometry of
//! the real kernel source against the CPU engine on machines without a GPU. It says nothing
//! about the device memory model or speed, and it is slow (every CUDA thread is a fiber):
//! keep its problems small.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::{check_args, Arg, DevPtr, Device, Grid, KernelSpec};
use crate::error::{GpuError, Result};

type ScheduleFn = unsafe extern "C" fn(c_uint, c_ulonglong) -> c_int;

/// The order in which the emulator runs a launch's blocks and threads
/// (`tests/emulator/fibers.h`).
///
/// A GPU promises no order, and every engine kernel must give the same bits under any: its
/// results may depend only on barriers, warp exchanges and fixed-order reductions. In-order
/// emulation hides races that the other orders expose; the tests run the same work under
/// several and compare bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// Blocks in order (x fastest); in each round every runnable thread once, 0, 1, ...
    #[default]
    InOrder,
    /// The last block first, each round from the highest thread down: a thread that reads
    /// shared memory written by a lower thread in the same barrier interval, with no barrier
    /// between, reads it before the write.
    Reverse,
    /// A permutation of the blocks per launch and of the threads per round, drawn from the
    /// seed and the device's launch count (the same orders on every run).
    Shuffled(u64),
    /// Blocks shuffled; each warp in turn (warps in a new random order each pass, lanes
    /// shuffled) runs until all its lanes wait at `__syncthreads` or have finished. One warp
    /// then runs whole warp-level phases (its shuffles, the next call of a block reduction)
    /// before the others start: a shared-memory write that another warp may still be reading,
    /// with no `__syncthreads` between, is seen early. The round-robin orders cannot show
    /// that, since every thread passes each warp exchange in step with the others.
    WarpsAhead(u64),
}

impl Schedule {
    /// The schedule of `OGM_EMU_SCHEDULE` (`in-order`, `reverse`, `shuffle[:SEED]` or
    /// `warps-ahead[:SEED]`), [`Schedule::InOrder`] when it is unset, so that a whole test
    /// suite can be run under another order without changing it.
    ///
    /// Errors: [`GpuError::Emulator`] naming the variable when its value is none of these.
    pub fn from_env() -> Result<Schedule> {
        match std::env::var("OGM_EMU_SCHEDULE") {
            Err(std::env::VarError::NotPresent) => Ok(Schedule::InOrder),
            Ok(v) => Schedule::parse(&v).ok_or_else(|| {
                GpuError::Emulator(format!(
                    "OGM_EMU_SCHEDULE={v}: expected in-order, reverse, shuffle[:SEED] or \
                     warps-ahead[:SEED]"
                ))
            }),
            Err(e) => Err(GpuError::Emulator(format!("OGM_EMU_SCHEDULE: {e}"))),
        }
    }

    /// Parses the names of [`Schedule::from_env`] (a seed is a decimal `u64`).
    pub fn parse(spec: &str) -> Option<Schedule> {
        let seeded = |name: &str| -> Option<u64> {
            match spec.strip_prefix(name)? {
                "" => Some(0),
                rest => rest
                    .strip_prefix(':')
                    .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))?
                    .parse()
                    .ok(),
            }
        };
        match spec {
            "in-order" => Some(Schedule::InOrder),
            "reverse" => Some(Schedule::Reverse),
            _ => seeded("shuffle")
                .map(Schedule::Shuffled)
                .or_else(|| seeded("warps-ahead").map(Schedule::WarpsAhead)),
        }
    }

    /// The library's (mode, seed) for the `launch`-th launch of a device.
    fn mode_seed(self, launch: u64) -> (c_uint, c_ulonglong) {
        let mix = |seed: u64| seed ^ launch.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        match self {
            Schedule::InOrder => (0, 0),
            Schedule::Reverse => (1, 0),
            Schedule::Shuffled(seed) => (2, mix(seed)),
            Schedule::WarpsAhead(seed) => (3, mix(seed)),
        }
    }
}

type LaunchFn = unsafe extern "C" fn(
    *const c_char,
    *const c_uint,
    c_uint,
    *const c_ulonglong,
    *const u8,
    c_uint,
    *mut c_char,
    c_uint,
) -> c_int;

/// The emulated device.
pub struct EmuDevice {
    launch: LaunchFn,
    set_schedule: ScheduleFn,
    schedule: Schedule,
    // Launches so far (the shuffled orders' draw).
    launches: std::sync::atomic::AtomicU64,
    // Allocations by address, with their layouts (to free them).
    allocs: Mutex<HashMap<DevPtr, std::alloc::Layout>>,
    // A device memory size to emulate (`with_memory_limit`): allocations beyond it fail as a
    // full GPU's would.
    memory_limit: Option<usize>,
    _handle: Library,
}

/// One launch at a time in the process: the library's scheduler state is global, and every
/// `EmuDevice` of the process shares it (dlopen returns the loaded library again), so the
/// lock cannot belong to one device.
static LAUNCH: Mutex<()> = Mutex::new(());

struct Library(*mut c_void);
// SAFETY: the handle is only passed to dlclose; the library's functions are called under
// LAUNCH.
unsafe impl Send for Library {}
unsafe impl Sync for Library {}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: a handle from dlopen, closed once.
        unsafe { libc::dlclose(self.0) };
    }
}

/// The files the emulator library is built from, relative to the crate root.
const SOURCES: &[&str] = &[
    "kernels/engine.cuh",
    "kernels/engine_gemm.cu",
    "kernels/engine_conv.cu",
    "kernels/engine_norm.cu",
    "kernels/engine_ew.cu",
    "kernels/sgd.cu",
    "kernels/scores.cu",
    "kernels/balance.cu",
    "kernels/balance.cuh",
    "kernels/stats.cu",
    "kernels/modulate.cu",
    "kernels/noise.cuh",
    "kernels/common.cuh",
    "tests/emulator/cuda_shim.h",
    "tests/emulator/fibers.h",
    "tests/emulator/engine_lib.cpp",
];

impl EmuDevice {
    /// Builds the library into `dir` (once per version of the sources: the file name carries
    /// their hash) with `$CXX` or g++, and loads it.
    ///
    /// Errors: [`GpuError::Emulator`] when there is no C++ compiler (the message starts with
    /// `SKIP`, so that tests can skip), the build fails, or the library does not load.
    pub fn build(dir: &Path) -> Result<EmuDevice> {
        if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            return Err(GpuError::Emulator(
                "SKIP the emulator's fibers are written for x86-64 Linux".into(),
            ));
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for s in SOURCES {
            let bytes = std::fs::read(root.join(s))
                .map_err(|e| GpuError::Emulator(format!("reading {s}: {e}")))?;
            for b in bytes {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| GpuError::Emulator(format!("{}: {e}", dir.display())))?;
        for flag in sanitizer_flags() {
            for b in flag.bytes() {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let lib = dir.join(format!("libogm-engine-emu-{hash:016x}.so"));
        if !lib.is_file() {
            compile(root, &lib)?;
        }
        let path = CString::new(lib.as_os_str().as_encoded_bytes())
            .map_err(|_| GpuError::Emulator("library path holds a NUL byte".into()))?;
        // SAFETY: a valid C string; the library has no initialisers beyond C++ statics.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(GpuError::Emulator(format!(
                "dlopen {}: {}",
                lib.display(),
                dl_error()
            )));
        }
        let handle = Library(handle);
        // SAFETY: a live handle and a C string.
        let sym = unsafe { libc::dlsym(handle.0, c"emu_launch".as_ptr()) };
        if sym.is_null() {
            return Err(GpuError::Emulator(format!("no emu_launch: {}", dl_error())));
        }
        // SAFETY: emu_launch has exactly this signature (engine_lib.cpp).
        let launch: LaunchFn = unsafe { std::mem::transmute::<*mut c_void, LaunchFn>(sym) };
        // SAFETY: a live handle and a C string.
        let sym = unsafe { libc::dlsym(handle.0, c"emu_set_schedule".as_ptr()) };
        if sym.is_null() {
            return Err(GpuError::Emulator(format!(
                "no emu_set_schedule: {}",
                dl_error()
            )));
        }
        // SAFETY: emu_set_schedule has exactly this signature (engine_lib.cpp).
        let set_schedule: ScheduleFn =
            unsafe { std::mem::transmute::<*mut c_void, ScheduleFn>(sym) };
        Ok(EmuDevice {
            launch,
            set_schedule,
            schedule: Schedule::from_env()?,
            launches: std::sync::atomic::AtomicU64::new(0),
            allocs: Mutex::new(HashMap::new()),
            memory_limit: None,
            _handle: handle,
        })
    }

    /// The same device with `bytes` of memory: an allocation that would take the live total
    /// beyond it fails with [`GpuError::OutOfMemory`], as on a GPU that is full (tests of
    /// what a user sees then).
    pub fn with_memory_limit(mut self, bytes: usize) -> EmuDevice {
        self.memory_limit = Some(bytes);
        self
    }

    /// The same device running its launches in the order `schedule` (by default the one of
    /// `OGM_EMU_SCHEDULE`, in order when that is unset).
    pub fn with_schedule(mut self, schedule: Schedule) -> EmuDevice {
        self.schedule = schedule;
        self
    }

    /// The order this device runs its launches in.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a C string valid until the next dl call.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: non-null, NUL-terminated.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// The compiler flags that `OGM_EMU_SANITIZE` asks for: `address` builds the kernels with
/// AddressSanitizer, so that a kernel reading or writing outside its buffers (device memory
/// is host memory here, each allocation with its own guard zones) or outside a shared array
/// stops the test with a report. The test process must then load the runtime first:
/// `LD_PRELOAD=$(g++ -print-file-name=libasan.so)`.
fn sanitizer_flags() -> Vec<&'static str> {
    match std::env::var("OGM_EMU_SANITIZE").as_deref() {
        Ok("address") => vec!["-fsanitize=address", "-fno-omit-frame-pointer", "-g"],
        _ => Vec::new(),
    }
}

fn compile(root: &Path, lib: &Path) -> Result<()> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    // Build under a temporary name and rename, so that concurrent test binaries never load a
    // half-written library.
    let tmp: PathBuf = lib.with_extension(format!("tmp{}", std::process::id()));
    let out = Command::new(&cxx)
        .args([
            "-std=c++20",
            "-O2",
            "-ffp-contract=off",
            "-fno-strict-aliasing",
        ])
        .args(sanitizer_flags())
        .args([
            "-shared",
            "-fPIC",
            "-Wall",
            "-Wno-unknown-pragmas",
            "-Wno-unused-function",
        ])
        .arg(format!("-I{}", root.join("kernels").display()))
        .arg(format!("-I{}", root.join("tests/emulator").display()))
        .arg("-include")
        .arg(root.join("tests/emulator/cuda_shim.h"))
        .arg(root.join("tests/emulator/engine_lib.cpp"))
        .arg("-o")
        .arg(&tmp)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return Err(GpuError::Emulator(format!(
                "SKIP no C++ compiler ({cxx}: {e})"
            )))
        }
    };
    if !out.status.success() {
        return Err(GpuError::Emulator(format!(
            "compiling the engine kernels for the CPU failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    std::fs::rename(&tmp, lib).map_err(|e| GpuError::Emulator(format!("{}: {e}", lib.display())))
}

impl Device for EmuDevice {
    fn alloc(&self, bytes: usize) -> Result<DevPtr> {
        let layout = std::alloc::Layout::from_size_align(bytes.max(1), 256)
            .map_err(|e| GpuError::Emulator(e.to_string()))?;
        let mut allocs = self.allocs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(limit) = self.memory_limit {
            let used: usize = allocs.values().map(|l| l.size()).sum();
            if used.saturating_add(layout.size()) > limit {
                return Err(GpuError::OutOfMemory {
                    bytes,
                    free: Some(limit.saturating_sub(used)),
                    total: Some(limit),
                });
            }
        }
        // SAFETY: a non-zero size.
        let p = unsafe { std::alloc::alloc(layout) };
        if p.is_null() {
            return Err(GpuError::OutOfMemory {
                bytes,
                free: None,
                total: None,
            });
        }
        let ptr = p as DevPtr;
        allocs.insert(ptr, layout);
        Ok(ptr)
    }
    unsafe fn free(&self, ptr: DevPtr) {
        let layout = self
            .allocs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ptr);
        if let Some(layout) = layout {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { std::alloc::dealloc(ptr as *mut u8, layout) };
        }
    }
    unsafe fn upload(&self, dst: DevPtr, src: &[u8]) -> Result<()> {
        // SAFETY: the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }
    unsafe fn download(&self, src: DevPtr, dst: &mut [u8]) -> Result<()> {
        // SAFETY: the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }
    unsafe fn launch(&self, spec: &KernelSpec, grid: Grid, args: &[Arg]) -> Result<()> {
        check_args(spec, args)?;
        let name = CString::new(spec.name).map_err(|_| GpuError::Emulator("kernel name".into()))?;
        let bits: Vec<c_ulonglong> = args.iter().map(Arg::bits).collect();
        let kinds: Vec<u8> = args.iter().map(|a| a.ty() as u8).collect();
        let mut err = [0 as c_char; 256];
        let launch = self
            .launches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (mode, seed) = self.schedule.mode_seed(launch);
        let _guard = LAUNCH.lock().unwrap_or_else(|e| e.into_inner());
        // The library's schedule is global: set this device's under the lock, every launch.
        // SAFETY: plain values; the mode is one the library knows.
        unsafe { (self.set_schedule)(mode, seed) };
        // SAFETY: the arrays live across the call; pointers in `bits` are the caller's
        // contract.
        let rc = unsafe {
            (self.launch)(
                name.as_ptr(),
                grid.blocks.as_ptr(),
                grid.threads,
                bits.as_ptr(),
                kinds.as_ptr(),
                bits.len() as c_uint,
                err.as_mut_ptr(),
                err.len() as c_uint,
            )
        };
        if rc != 0 {
            // SAFETY: emu_launch NUL-terminates err (snprintf).
            let msg = unsafe { CStr::from_ptr(err.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            return Err(GpuError::Launch {
                kernel: spec.name,
                reason: msg,
            });
        }
        Ok(())
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    fn multiprocessors(&self) -> u32 {
        // Few blocks: grid-stride loops then run several rounds, which the tests want covered.
        1
    }
}

impl Drop for EmuDevice {
    fn drop(&mut self) {
        let allocs = std::mem::take(&mut *self.allocs.lock().unwrap_or_else(|e| e.into_inner()));
        for (ptr, layout) in allocs {
            // SAFETY: every entry is a live allocation of this device.
            unsafe { std::alloc::dealloc(ptr as *mut u8, layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Schedule;

    #[test]
    fn schedule_names_parse_and_others_are_refused() {
        assert_eq!(Schedule::parse("in-order"), Some(Schedule::InOrder));
        assert_eq!(Schedule::parse("reverse"), Some(Schedule::Reverse));
        assert_eq!(Schedule::parse("shuffle"), Some(Schedule::Shuffled(0)));
        assert_eq!(Schedule::parse("shuffle:42"), Some(Schedule::Shuffled(42)));
        assert_eq!(
            Schedule::parse("warps-ahead"),
            Some(Schedule::WarpsAhead(0))
        );
        assert_eq!(
            Schedule::parse("warps-ahead:18446744073709551615"),
            Some(Schedule::WarpsAhead(u64::MAX))
        );
        for bad in [
            "",
            "Reverse",
            "shuffle:",
            "shuffle:-1",
            "shuffle:1x",
            "shuffle42",
            "warps-ahead:18446744073709551616",
            "warps",
        ] {
            assert_eq!(Schedule::parse(bad), None, "{bad:?}");
        }
        // Distinct launches of a seeded order draw distinct orders; the fixed ones do not.
        assert_ne!(
            Schedule::Shuffled(1).mode_seed(0),
            Schedule::Shuffled(1).mode_seed(1)
        );
        assert_eq!(
            Schedule::Reverse.mode_seed(0),
            Schedule::Reverse.mode_seed(9)
        );
    }
}
