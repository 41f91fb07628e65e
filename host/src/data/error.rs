//! Typed errors of the data pipeline.
//!
//! Two levels: a [`SampleError`] is wrong with one clip (a missing or corrupt file, an unknown
//! label, a malformed CSV row) and the bad-sample policy decides whether it skips the clip or
//! stops the run; a [`DataError`] stops the run (an unreadable split file, an empty split, an
//! invalid configuration, a write failure). Every message names the file, and the CSV line where
//! there is one. Decoder errors are kept as text so that the errors stay `Clone` and comparable,
//! which the skip summary and the tests rely on.

use std::fmt;
use std::path::{Path, PathBuf};

/// What is wrong with one clip (or one CSV row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// A CSV row without exactly two fields `clip_id,LABEL`.
    #[error("{}:{line}: expected 2 columns `clip_id,LABEL`, found {found}", .path.display())]
    Columns {
        /// The split file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// How many comma-separated fields the row has.
        found: usize,
    },
    /// A CSV row with a double-quoted field that is not closed.
    #[error("{}:{line}: a double-quoted field is not closed", .path.display())]
    Quote {
        /// The split file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A CSV row whose clip id is empty.
    #[error("{}:{line}: empty clip id", .path.display())]
    EmptyClip {
        /// The split file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A CSV row whose label is not one of the dataset's classes.
    #[error("{}:{line}: unknown label {label:?} (known: {known})", .path.display())]
    UnknownLabel {
        /// The split file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The label as written.
        label: String,
        /// The known labels, comma-separated.
        known: String,
    },
    /// The clip's WAV file does not exist.
    #[error("{}: audio file is missing", .path.display())]
    MissingAudio {
        /// The expected WAV path.
        path: PathBuf,
    },
    /// The WAV file exists but cannot be decoded.
    #[error("{}: cannot decode WAV: {detail}", .path.display())]
    CorruptAudio {
        /// The WAV path.
        path: PathBuf,
        /// The decoder's message.
        detail: String,
    },
    /// The WAV file decodes to no samples.
    #[error("{}: WAV holds no samples", .path.display())]
    EmptyAudio {
        /// The WAV path.
        path: PathBuf,
    },
    /// The clip's frame directory does not exist.
    #[error("{}: frame directory is missing", .path.display())]
    MissingFrames {
        /// The expected directory.
        path: PathBuf,
    },
    /// The frame directory holds no `.jpg` file.
    #[error("{}: frame directory holds no .jpg frames", .path.display())]
    NoFrames {
        /// The directory.
        path: PathBuf,
    },
    /// The frame directory holds fewer frames than one clip needs.
    #[error("{}: {found} .jpg frames, {needed} needed per clip", .path.display())]
    TooFewFrames {
        /// The directory.
        path: PathBuf,
        /// Frames found.
        found: usize,
        /// Frames needed (`fps`).
        needed: usize,
    },
    /// A frame cannot be read or decoded.
    #[error("{}: cannot decode JPEG: {detail}", .path.display())]
    CorruptImage {
        /// The JPEG path.
        path: PathBuf,
        /// The decoder's message.
        detail: String,
    },
    /// Another I/O failure on a clip's file (permissions, a directory that cannot be listed).
    #[error("{}: {detail}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's message.
        detail: String,
    },
}

/// The kind of a [`SampleError`], for counting skipped samples by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// [`SampleError::Columns`].
    Columns,
    /// [`SampleError::Quote`].
    Quote,
    /// [`SampleError::EmptyClip`].
    EmptyClip,
    /// [`SampleError::UnknownLabel`].
    UnknownLabel,
    /// [`SampleError::MissingAudio`].
    MissingAudio,
    /// [`SampleError::CorruptAudio`].
    CorruptAudio,
    /// [`SampleError::EmptyAudio`].
    EmptyAudio,
    /// [`SampleError::MissingFrames`].
    MissingFrames,
    /// [`SampleError::NoFrames`].
    NoFrames,
    /// [`SampleError::TooFewFrames`].
    TooFewFrames,
    /// [`SampleError::CorruptImage`].
    CorruptImage,
    /// [`SampleError::Io`].
    Io,
}

impl SkipReason {
    /// A short human name of the reason.
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::Columns => "wrong column count",
            SkipReason::Quote => "unclosed quote",
            SkipReason::EmptyClip => "empty clip id",
            SkipReason::UnknownLabel => "unknown label",
            SkipReason::MissingAudio => "missing WAV",
            SkipReason::CorruptAudio => "corrupt WAV",
            SkipReason::EmptyAudio => "empty WAV",
            SkipReason::MissingFrames => "missing frame directory",
            SkipReason::NoFrames => "no frames",
            SkipReason::TooFewFrames => "too few frames",
            SkipReason::CorruptImage => "corrupt JPEG",
            SkipReason::Io => "I/O error",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl SampleError {
    /// The reason, for counting.
    pub fn reason(&self) -> SkipReason {
        match self {
            SampleError::Columns { .. } => SkipReason::Columns,
            SampleError::Quote { .. } => SkipReason::Quote,
            SampleError::EmptyClip { .. } => SkipReason::EmptyClip,
            SampleError::UnknownLabel { .. } => SkipReason::UnknownLabel,
            SampleError::MissingAudio { .. } => SkipReason::MissingAudio,
            SampleError::CorruptAudio { .. } => SkipReason::CorruptAudio,
            SampleError::EmptyAudio { .. } => SkipReason::EmptyAudio,
            SampleError::MissingFrames { .. } => SkipReason::MissingFrames,
            SampleError::NoFrames { .. } => SkipReason::NoFrames,
            SampleError::TooFewFrames { .. } => SkipReason::TooFewFrames,
            SampleError::CorruptImage { .. } => SkipReason::CorruptImage,
            SampleError::Io { .. } => SkipReason::Io,
        }
    }

    /// The file (or directory) the error is about.
    pub fn path(&self) -> &Path {
        match self {
            SampleError::Columns { path, .. }
            | SampleError::Quote { path, .. }
            | SampleError::EmptyClip { path, .. }
            | SampleError::UnknownLabel { path, .. }
            | SampleError::MissingAudio { path }
            | SampleError::CorruptAudio { path, .. }
            | SampleError::EmptyAudio { path }
            | SampleError::MissingFrames { path }
            | SampleError::NoFrames { path }
            | SampleError::TooFewFrames { path, .. }
            | SampleError::CorruptImage { path, .. }
            | SampleError::Io { path, .. } => path,
        }
    }
}

/// An error that stops the data pipeline.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The split CSV cannot be read.
    #[error("{}: cannot read split file: {source}", .path.display())]
    SplitRead {
        /// The split file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The split CSV is not UTF-8.
    #[error("{}: split file is not valid UTF-8", .path.display())]
    SplitEncoding {
        /// The split file.
        path: PathBuf,
    },
    /// A folder of the dataset does not exist (or is not a folder).
    #[error("{}: {what} does not exist", .path.display())]
    MissingFolder {
        /// Which folder: audio or frames.
        what: &'static str,
        /// The folder as configured.
        path: PathBuf,
    },
    /// No usable sample is left in a split.
    #[error("{}: the split has no usable samples ({skipped} skipped)", .path.display())]
    EmptySplit {
        /// The split file.
        path: PathBuf,
        /// How many rows were skipped as bad.
        skipped: usize,
    },
    /// A bad sample under the strict policy.
    #[error("bad sample (strict mode): {0}")]
    Strict(SampleError),
    /// An invalid configuration value.
    #[error("invalid data configuration: {0}")]
    Config(String),
    /// Writing a file failed (synthetic datasets).
    #[error("{}: cannot write: {detail}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The error's message.
        detail: String,
    },
    /// A loader worker thread panicked (a bug, never bad input).
    #[error("a data loader worker panicked")]
    WorkerPanic,
}
