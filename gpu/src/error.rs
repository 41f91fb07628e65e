//! The crate's one error type.

use crate::state::StatusFlags;

/// What went wrong in an `ogm-gpu` call. Host-side validation happens before anything is
/// launched; errors the kernels detect on the device arrive later, through
/// [`GpuError::DeviceReported`], when the host reads the sticky device status.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// A buffer's length does not match what the other arguments imply.
    #[error("{what}: expected {expected} elements, got {got}")]
    LengthMismatch {
        /// The argument at fault.
        what: &'static str,
        /// The length the other arguments imply.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A list or size that must not be empty or zero was.
    #[error("{what} must not be empty")]
    Empty {
        /// The argument at fault.
        what: &'static str,
    },
    /// A size does not fit the kernel argument or launch dimension it is passed as.
    #[error("{what} = {value} exceeds the limit {limit}")]
    TooLarge {
        /// The quantity at fault.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The largest value accepted.
        limit: u64,
    },
    /// A tensor of a [`crate::TensorList`] does not fit its buffer or overlaps another.
    #[error("tensor {index}: {reason}")]
    InvalidTensor {
        /// Position of the tensor in the list.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A scalar parameter is out of its valid range.
    #[error("{what} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter at fault.
        what: &'static str,
        /// Its value.
        value: f64,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The CPU reference (`ogm-core`) rejected its input.
    #[error("ogm-core: {0}")]
    Core(#[from] ogm_core::OgmError),
    /// The CPU reference rejected one tensor of a list (the others were processed, as on the
    /// device); the smallest such index.
    #[error("tensor {index}: {source}")]
    TensorRejected {
        /// Position of the tensor in the list.
        index: usize,
        /// Why `ogm-core` rejected it.
        source: ogm_core::OgmError,
    },
    /// The kernels met invalid input (a bad label, a non-finite logit or gradient, an
    /// overflowing modulation) since the status was last cleared; the affected values were left
    /// unmodulated.
    #[error("device reported {flags} (first affected tensor: {first_bad_tensor:?})")]
    DeviceReported {
        /// What the kernels met.
        flags: StatusFlags,
        /// Smallest index of a tensor left unmodulated, if any.
        first_bad_tensor: Option<u32>,
    },
    /// An engine kernel was launched with arguments that do not match its parameter list
    /// (an engine bug caught before the launch: a wrong argument would corrupt it silently).
    #[error("launch of {kernel}: {reason}")]
    Launch {
        /// The kernel.
        kernel: &'static str,
        /// What does not match.
        reason: String,
    },
    /// The device has too little free memory for an allocation.
    #[error(
        "device out of memory: {} MiB asked for{}",
        mib(*bytes),
        match (free, total) {
            (Some(f), Some(t)) => format!(", {} MiB free of {} MiB", mib(*f), mib(*t)),
            _ => String::new(),
        }
    )]
    OutOfMemory {
        /// The allocation's size in bytes.
        bytes: usize,
        /// Free device memory in bytes when it failed, where the device says.
        free: Option<usize>,
        /// The device's memory in bytes, where the device says.
        total: Option<usize>,
    },
    /// The CPU emulator of the kernels (tests and checks without a GPU) failed.
    #[error("kernel emulator: {0}")]
    Emulator(String),
    /// The driver rejected an embedded PTX module (e.g. a PTX ISA newer than the driver;
    /// cust 0.3.2 reports some of these as `UnknownError`).
    #[cfg(feature = "cuda")]
    #[error("loading the PTX of kernels/{name}.cu: {source}")]
    ModuleLoad {
        /// The kernel file.
        name: &'static str,
        /// The driver's error.
        source: cust::error::CudaError,
    },
    /// The CUDA driver reported an error.
    #[cfg(feature = "cuda")]
    #[error("CUDA: {0}")]
    Cuda(#[from] cust::error::CudaError),
}

/// Bytes as MiB, rounded up (so that a small allocation does not read as 0 MiB).
fn mib(bytes: usize) -> usize {
    bytes.div_ceil(1 << 20)
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, GpuError>;

/// Converts a size to a kernel's `unsigned int` argument, naming it when it does not fit.
#[cfg(feature = "cuda")]
pub(crate) fn to_u32(what: &'static str, value: usize) -> Result<u32> {
    u32::try_from(value).map_err(|_| GpuError::TooLarge {
        what,
        value: value as u64,
        limit: u64::from(u32::MAX),
    })
}
