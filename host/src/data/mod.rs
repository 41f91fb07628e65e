//! Data: the CREMA-D layout, the official audio and image pipelines, synthetic datasets,
//! background loading.
//!
//! Layout (as the official `CramedDataset`): split files `train.csv`, `test.csv` with rows
//! `clip_id,LABEL`; `<audio>/<clip>.wav`; `<visual>/Image-XX-FPS/<clip>/*.jpg` where `XX` is
//! the frames-per-clip count, two digits (`Image-01-FPS`). The four places are independent
//! ([`DataPaths`]); the official single folder is [`DataPaths::under`].
//!
//! - [`split`]: the CSV split files and the label set.
//! - [`audio`]: WAV decoding, mono mixdown, resampling.
//! - [`spectrogram`]: the official log-magnitude STFT.
//! - [`image`]: JPEG decoding and the official torchvision transforms.
//! - [`dataset`]: clips over the layout, the bad-sample policy, loading one sample.
//! - [`loader`]: batches built on worker threads ahead of the training step.
//! - [`synth`]: synthetic datasets in the same layout, with a controllable imbalance.
//! - [`error`]: typed errors; every one names its file.

pub mod audio;
pub mod dataset;
pub mod error;
pub mod image;
pub mod loader;
pub mod spectrogram;
pub mod split;
pub mod synth;

pub use dataset::{
    DataPaths, Dataset, DatasetConfig, FramePick, Pipeline, Sample, SkipSummary, Split,
};
pub use error::{DataError, SampleError, SkipReason};
pub use image::ImageConfig;
pub use loader::{Batch, Epoch, Loader, LoaderConfig, LoaderStats};
pub use spectrogram::SpectrogramConfig;
pub use split::LabelSet;
pub use synth::{write_dataset, SynthConfig, SynthSummary};
