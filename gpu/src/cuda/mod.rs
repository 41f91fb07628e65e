//! Everything that talks to the CUDA driver (feature `cuda`): the context and stream
//! ([`Gpu`]), one typed launch wrapper per kernel (`launch`), the step's device state
//! ([`OgmStep`]) and the fused optimiser ([`Sgd`]).
//!
//! All work is queued on one stream and nothing in a step copies to the host or waits for the
//! device; the `read_*` and `take_status` methods synchronise, and are for logging, checks and
//! tests.

mod device;
mod launch;
mod optim;
pub mod ptx;
mod step;

use cust::context::Context;
use cust::device::{Device, DeviceAttribute};
use cust::error::CudaError;
use cust::module::Module;
use cust::stream::{Stream, StreamFlags};

use crate::engine::work::DeviceAttrs;
use crate::error::{GpuError, Result};

pub use device::{CudaDevice, STAGING_SLOTS};
pub use optim::Sgd;
pub use step::{Logits, OgmStep};

/// The loaded kernel modules, one per `kernels/*.cu` file.
struct Modules {
    scores: Module,
    balance: Module,
    stats: Module,
    modulate: Module,
    sgd: Module,
    engine_gemm: Module,
    engine_conv: Module,
    engine_norm: Module,
    engine_ew: Module,
}

impl Modules {
    fn load() -> Result<Modules> {
        let load = |name: &'static str, ptx: &str| {
            Module::from_ptx(ptx, &[]).map_err(|source| GpuError::ModuleLoad { name, source })
        };
        Ok(Modules {
            scores: load("scores", ptx::SCORES)?,
            balance: load("balance", ptx::BALANCE)?,
            stats: load("stats", ptx::STATS)?,
            modulate: load("modulate", ptx::MODULATE)?,
            sgd: load("sgd", ptx::SGD)?,
            engine_gemm: load("engine_gemm", ptx::ENGINE_GEMM)?,
            engine_conv: load("engine_conv", ptx::ENGINE_CONV)?,
            engine_norm: load("engine_norm", ptx::ENGINE_NORM)?,
            engine_ew: load("engine_ew", ptx::ENGINE_EW)?,
        })
    }

    /// The module of `kernels/<name>.cu` (the engine launches by module name).
    fn by_name(&self, name: &str) -> Option<&Module> {
        Some(match name {
            "scores" => &self.scores,
            "balance" => &self.balance,
            "stats" => &self.stats,
            "modulate" => &self.modulate,
            "sgd" => &self.sgd,
            "engine_gemm" => &self.engine_gemm,
            "engine_conv" => &self.engine_conv,
            "engine_norm" => &self.engine_norm,
            "engine_ew" => &self.engine_ew,
            _ => return None,
        })
    }
}

/// A CUDA context on device 0, the kernels loaded into it, and the stream everything runs on.
pub struct Gpu {
    // Fields drop in order: the stream and modules before the context that owns them.
    stream: Stream,
    modules: Modules,
    device: Device,
    _context: Context,
}

/// The outcome of looking for a device: tests and benchmarks skip on `Unavailable`.
pub enum Probe {
    /// A device is present and the kernels loaded.
    Ready(Box<Gpu>),
    /// No CUDA device here; the driver's reason.
    Unavailable(String),
}

impl Gpu {
    /// Initialises the driver, creates a context on device 0 and loads every kernel.
    ///
    /// Errors: no device, a driver error, a PTX module the driver rejects
    /// ([`GpuError::ModuleLoad`]).
    pub fn new() -> Result<Gpu> {
        let context = cust::quick_init()?;
        let device = Device::get_device(0)?;
        let modules = Modules::load()?;
        let stream = Stream::new(StreamFlags::NON_BLOCKING, None)?;
        Ok(Gpu {
            stream,
            modules,
            device,
            _context: context,
        })
    }

    /// Like [`Gpu::new`], but "no CUDA-capable device" (what the driver library says on a
    /// machine without a GPU) is [`Probe::Unavailable`] rather than an error. Every other
    /// failure stays an error: a present but broken device must not look like a skip.
    pub fn probe() -> Result<Probe> {
        match Gpu::new() {
            Ok(gpu) => Ok(Probe::Ready(Box::new(gpu))),
            Err(GpuError::Cuda(CudaError::NoDevice)) => Ok(Probe::Unavailable(
                "the CUDA driver reports no CUDA-capable device".to_string(),
            )),
            Err(e) => Err(e),
        }
    }

    /// The stream every launch of this crate is queued on.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Waits until all queued work is done (and surfaces asynchronous errors).
    pub fn synchronize(&self) -> Result<()> {
        Ok(self.stream.synchronize()?)
    }

    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn device_name(&self) -> Result<String> {
        Ok(self.device.name()?)
    }

    /// Number of streaming multiprocessors.
    pub fn multiprocessors(&self) -> Result<u32> {
        let n = self
            .device
            .get_attribute(DeviceAttribute::MultiprocessorCount)?;
        Ok(n.max(1) as u32)
    }

    /// The attributes the device's peak rates derive from ([`crate::engine::work::peaks`]).
    pub fn attributes(&self) -> Result<DeviceAttrs> {
        // Every attribute is a non-negative int; a negative one would be a driver bug, read
        // as 0: zero peaks make the fractions infinite (null in JSON), visibly wrong rather
        // than plausibly so.
        let get = |a: DeviceAttribute| -> Result<u32> {
            Ok(u32::try_from(self.device.get_attribute(a)?).unwrap_or(0))
        };
        Ok(DeviceAttrs {
            sms: get(DeviceAttribute::MultiprocessorCount)?,
            clock_khz: get(DeviceAttribute::ClockRate)?,
            mem_clock_khz: get(DeviceAttribute::MemoryClockRate)?,
            bus_bits: get(DeviceAttribute::GlobalMemoryBusWidth)?,
            cc: (
                get(DeviceAttribute::ComputeCapabilityMajor)?,
                get(DeviceAttribute::ComputeCapabilityMinor)?,
            ),
        })
    }
}
