//! The engine's one error type: every fallible call names the tensor, file or setting at fault.

use std::path::PathBuf;

/// What went wrong in an engine call.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A buffer's length does not match the shape the other arguments imply.
    #[error("{what}: expected {expected} values, got {got}")]
    Length {
        /// The tensor at fault.
        what: String,
        /// The length the shape implies.
        expected: usize,
        /// The length that was passed.
        got: usize,
    },
    /// A tensor's shape does not match what the model expects.
    #[error("{what}: expected shape {expected:?}, got {got:?}")]
    Shape {
        /// The tensor at fault.
        what: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A value that must be finite was NaN or infinite.
    #[error("{what}: non-finite value at index {index}")]
    NonFinite {
        /// The tensor at fault.
        what: String,
        /// Position of the first offending element.
        index: usize,
    },
    /// A label is not below the class count.
    #[error("label {label} at row {row} is out of range for {classes} classes")]
    Label {
        /// Row of the batch.
        row: usize,
        /// The label.
        label: u32,
        /// The class count.
        classes: usize,
    },
    /// A model or layer setting that cannot work (zero width, zero classes, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Batch normalisation in training mode needs more than one value per channel.
    #[error("{what}: batch normalisation in training mode needs more than one value per channel, got {count}")]
    TooFewValues {
        /// The layer at fault.
        what: String,
        /// Values per channel in this batch.
        count: usize,
    },
    /// `backward` was called without a training-mode `forward` before it.
    #[error("backward needs a training-mode forward pass first")]
    NoForward,
    /// A named tensor is not part of the model.
    #[error("unknown tensor name {0:?}")]
    UnknownName(String),
    /// A checkpoint lacks a tensor the model needs.
    #[error("checkpoint {path:?} has no tensor {name:?}")]
    MissingTensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The missing key.
        name: String,
    },
    /// A checkpoint tensor has the wrong dtype or shape.
    #[error("checkpoint {path:?}, tensor {name:?}: {problem}")]
    BadTensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The key at fault.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A checkpoint file that is not valid safetensors (truncated, bad header, ...).
    #[error("checkpoint {path:?} is not a valid safetensors file: {reason}")]
    Safetensors {
        /// The checkpoint file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`EngineError`].
pub type Result<T> = std::result::Result<T, EngineError>;

/// Checks that `got` equals `expected`, naming `what` otherwise.
pub(crate) fn check_len(what: &str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(EngineError::Length {
            what: what.to_string(),
            expected,
            got,
        })
    }
}
