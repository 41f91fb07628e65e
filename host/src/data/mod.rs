//! Data: the CREMA-D layout, the official audio and image pipelines, synthetic datasets,
//! background loading.
//!
//! Layout (as the official `CramedDataset`): `<root>/train.csv`, `<root>/test.csv` with rows
//! `clip_id,LABEL`; `<root>/AudioWAV/<clip>.wav`; `<root>/Image-XX-FPS/<clip>/*.jpg` where `XX`
//! is the frames-per-clip count, two digits (`Image-01-FPS`).
//!
//! - [`split`]: the CSV split files and the label set.
//! - [`audio`]: WAV decoding, mono mixdown, resampling.
//! - [`spectrogram`]: the official log-magnitude STFT.
//! - [`error`]: typed errors; every one names its file.

pub mod audio;
pub mod error;
pub mod spectrogram;
pub mod split;

pub use error::{DataError, SampleError, SkipReason};
