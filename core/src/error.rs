//! The crate's one error type.

use core::fmt;

/// What went wrong in an `ogm-core` call. Every fallible function returns this instead of
/// panicking or producing NaN; each variant names the argument at fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OgmError {
    /// A slice that must hold at least one element was empty.
    Empty {
        /// The argument at fault.
        what: &'static str,
    },
    /// A slice's length does not match what the other arguments imply.
    LengthMismatch {
        /// The argument at fault.
        what: &'static str,
        /// The length the other arguments imply.
        expected: usize,
        /// The length that was passed.
        got: usize,
    },
    /// The class count was zero.
    ZeroClasses,
    /// A label is not below the class count.
    LabelOutOfRange {
        /// Row of the batch holding the label.
        index: usize,
        /// The label itself.
        label: u32,
        /// The class count.
        classes: usize,
    },
    /// A value that must be finite was NaN or infinite.
    NonFinite {
        /// The argument at fault.
        what: &'static str,
        /// Position of the first offending element (0 for a scalar).
        index: usize,
    },
    /// A value that must be zero or positive was negative.
    Negative {
        /// The argument at fault.
        what: &'static str,
    },
    /// A modulation window whose last epoch comes before its first.
    InvalidWindow {
        /// First modulated epoch.
        starts: u32,
        /// Last modulated epoch.
        ends: u32,
    },
    /// Modulating would push a gradient value past `f32::MAX` (a gradient whose spread is
    /// near the `f32` range); nothing was written.
    Overflow {
        /// The argument at fault.
        what: &'static str,
    },
    /// More modalities than the crate's fixed capacity, or fewer than two.
    ModalityCount {
        /// The number passed.
        got: usize,
    },
}

impl fmt::Display for OgmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OgmError::Empty { what } => write!(f, "{what} is empty"),
            OgmError::LengthMismatch {
                what,
                expected,
                got,
            } => write!(f, "{what} has length {got}, expected {expected}"),
            OgmError::ZeroClasses => write!(f, "the class count is zero"),
            OgmError::LabelOutOfRange {
                index,
                label,
                classes,
            } => write!(
                f,
                "label {label} at row {index} is out of range for {classes} classes"
            ),
            OgmError::NonFinite { what, index } => {
                write!(f, "{what} holds a non-finite value at index {index}")
            }
            OgmError::Negative { what } => write!(f, "{what} is negative"),
            OgmError::InvalidWindow { starts, ends } => write!(
                f,
                "modulation window ends at epoch {ends}, before it starts at epoch {starts}"
            ),
            OgmError::Overflow { what } => write!(
                f,
                "modulating {what} would overflow f32 (its values or spread are near f32::MAX)"
            ),
            OgmError::ModalityCount { got } => write!(
                f,
                "{got} modalities given; between 2 and {} are supported",
                crate::MAX_MODALITIES
            ),
        }
    }
}

impl core::error::Error for OgmError {}

/// Shorthand for results of this crate.
pub type Result<T> = core::result::Result<T, OgmError>;

/// Finds the first non-finite element of `values`, for error reporting.
pub(crate) fn first_non_finite(values: &[f32]) -> Option<usize> {
    values.iter().position(|v| !v.is_finite())
}

/// Checks a scalar: finite, else [`OgmError::NonFinite`] naming `what`.
pub(crate) fn check_finite(what: &'static str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(OgmError::NonFinite { what, index: 0 })
    }
}
