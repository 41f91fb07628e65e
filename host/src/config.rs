//! The training configuration: the official `main.py` flags, our additions, defaults, a
//! config file, and the checks that refuse contradictions before any work starts.

use std::path::{Path, PathBuf};

use ogm_core::Mode;
use serde::{Deserialize, Serialize};

/// A configuration problem, named precisely.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag's value is out of its range or contradicts another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this schema.
    #[error("config file {path} is not a valid configuration: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
}

/// The refusal of `--device cuda` by a build without the `cuda` feature, with the command that
/// builds one.
pub fn cuda_build_required() -> ConfigError {
    ConfigError::Invalid(
        "--device cuda needs a build with CUDA: cargo build --release --features cuda".into(),
    )
}

/// Which fusion head joins the two encoders (`--fusion_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// `out = fc_x(a) + fc_y(v)`.
    Sum,
    /// `out = fc_out([a; v])` (the official default).
    Concat,
    /// Feature-wise linear modulation of one modality by the other.
    Film,
    /// `out = fc_out(sigmoid(fc_x(a)) * fc_y(v))`.
    Gated,
}

/// The audio features' front end (`--audio_frontend`): the official loader whose audio
/// pipeline is reproduced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AudioFrontend {
    /// `CramedDataset`: 22050 Hz, tiled, the first `audio_seconds`, STFT 512 / hop 353.
    #[default]
    Cremad,
    /// `VGGSound`: 16 kHz, doubled to twice `audio_seconds`, a crop of `audio_seconds` from a
    /// random offset of up to `audio_seconds` (0 in evaluation), STFT 256 / hop 128.
    Vggsound,
}

impl AudioFrontend {
    fn is_default(&self) -> bool {
        *self == AudioFrontend::default()
    }

    /// The rate its clips are resampled to (22050 Hz, 16 kHz).
    pub fn sample_rate(self) -> u32 {
        match self {
            AudioFrontend::Cremad => crate::data::SpectrogramConfig::default().sample_rate,
            AudioFrontend::Vggsound => crate::data::SpectrogramConfig::vggsound(1.0).sample_rate,
        }
    }
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// The optimiser (`--optimizer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum 0.9 and weight decay 1e-4 (official).
    Sgd,
    /// Adam (betas 0.9, 0.999, eps 1e-8, weight decay 1e-4), as the official code offers.
    Adam,
}

/// Where the training step runs (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The CPU engine (default).
    Cpu,
    /// An NVIDIA GPU (needs a build with the `cuda` feature).
    Cuda,
}

/// The arithmetic of the GPU's matrix products (`--precision`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// FP32 SIMT kernels: the reference (default).
    #[default]
    Fp32,
    /// TF32 tensor cores for the large convolution products (operands rounded to 10 mantissa
    /// bits, f32 accumulation); `--device cuda` only.
    Tf32,
    /// BF16 tensor cores for the large convolution products (operands rounded to 7 mantissa
    /// bits, ties to even, f32 accumulation; weights, activations and gradients stay f32);
    /// `--device cuda` only.
    Bf16,
}

impl Precision {
    /// The GPU engine's precision.
    pub fn engine(self) -> ogm_gpu::engine::ops::Precision {
        match self {
            Precision::Fp32 => ogm_gpu::engine::ops::Precision::Fp32,
            Precision::Tf32 => ogm_gpu::engine::ops::Precision::Tf32,
            Precision::Bf16 => ogm_gpu::engine::ops::Precision::Bf16,
        }
    }
}

/// How the GPU's convolutions meet their lowered input (`--conv`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ConvAlgo {
    /// im2col: the lowered input is materialised, then multiplied (default).
    #[default]
    Im2col,
    /// Implicit GEMM: the FP32 products of the forward pass and the weight gradient gather the
    /// lowered input as they load it (the same results bit for bit, less memory traffic; not
    /// yet measured on a device); `--device cuda` only.
    Implicit,
}

impl ConvAlgo {
    /// The GPU engine's algorithm.
    pub fn engine(self) -> ogm_gpu::engine::ops::ConvAlgo {
        match self {
            ConvAlgo::Im2col => ogm_gpu::engine::ops::ConvAlgo::Im2col,
            ConvAlgo::Implicit => ogm_gpu::engine::ops::ConvAlgo::Implicit,
        }
    }
}

/// The size of the two ResNet encoders (a config file's `[model]` table; a missing key keeps
/// its default, an unknown one is refused like the top level's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSize {
    /// Channels of the stem and first stage (64 in ResNet-18; stages double it).
    pub width: usize,
    /// BasicBlocks per stage (2 in ResNet-18).
    pub blocks: usize,
}

impl Default for ModelSize {
    fn default() -> Self {
        ModelSize {
            width: 64,
            blocks: 2,
        }
    }
}

/// A whole experiment. Field names are the official flags where those exist, so a config file
/// reads like a `main.py` command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Dataset name. `CREMAD` has its class list built in; any other name needs `classes`.
    pub dataset: String,
    /// The class names in label-index order (`--classes_file`, one a line): the labels the
    /// split files use and the rows of the model's output. Empty: the dataset's built-in list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// `Normal`, `OGM` or `OGM_GE`.
    #[serde(with = "mode_serde")]
    pub modulation: Mode,
    /// The fusion head.
    pub fusion_method: Fusion,
    /// Modulation strength (required by the official script: 0.8 for CREMA-D).
    pub alpha: f64,
    /// First modulated epoch (0-based, inclusive).
    pub modulation_starts: u32,
    /// Last modulated epoch (inclusive).
    pub modulation_ends: u32,
    /// Samples per step.
    pub batch_size: usize,
    /// Epochs to train.
    pub epochs: u32,
    /// The optimiser.
    pub optimizer: OptimizerKind,
    /// Initial learning rate.
    pub learning_rate: f64,
    /// StepLR period in epochs.
    pub lr_decay_step: u32,
    /// StepLR factor.
    pub lr_decay_ratio: f64,
    /// The frame folder's rate (`Image-XX-FPS`), and the frames per clip unless
    /// `use_video_frames` is set.
    pub fps: usize,
    /// Frames per clip fed to the model (the official `--use_video_frames`: 3 for VGGSound);
    /// 0: `fps`, as the official CREMA-D loader.
    #[serde(skip_serializing_if = "is_zero")]
    pub use_video_frames: usize,
    /// The audio features' front end (CREMA-D's unless VGGSound's is asked for).
    #[serde(skip_serializing_if = "AudioFrontend::is_default")]
    pub audio_frontend: AudioFrontend,
    /// Folder of `<clip>.wav` files (the test clips' too, unless `test_audio_path` is set).
    pub audio_path: PathBuf,
    /// Folder holding `Image-XX-FPS/<clip>/*.jpg` (the test clips' too, unless
    /// `test_visual_path` is set).
    pub visual_path: PathBuf,
    /// Folder of the test clips' WAVs when apart from the training ones (the official
    /// VGGSound layout: `train-audios/train-set`, `test-audios/test-set`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_audio_path: Option<PathBuf>,
    /// Folder holding the test clips' `Image-XX-FPS/` when apart from the training ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_visual_path: Option<PathBuf>,
    /// What follows the clip id in a frame folder's name: empty (`<clip>/`, CREMA-D), or
    /// `.mp4` for the official VGGSound extraction (`<ytid>_<start>.mp4/`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub frame_dir_suffix: String,
    /// Training split CSV (`clip_id,LABEL`).
    pub train_csv: PathBuf,
    /// Test split CSV.
    pub test_csv: PathBuf,
    /// Seed of initialisation, shuffling, augmentation and noise.
    pub random_seed: u64,
    /// Folder that receives run folders.
    pub ckpt_path: PathBuf,
    /// Where the step runs.
    pub device: Device,
    /// The GPU's matrix-product arithmetic (FP32 unless `tf32` or `bf16` is asked for, with
    /// `--device cuda`).
    pub precision: Precision,
    /// How the GPU's convolutions meet their lowered input (im2col unless `implicit` is asked
    /// for, with `--device cuda`).
    pub conv: ConvAlgo,
    /// Worker threads for the engine (0: all cores).
    pub threads: usize,
    /// Stop before training on any bad sample instead of skipping it.
    pub strict: bool,
    /// Modulate every encoder weight (BN included) instead of the official conv weights only.
    pub modulate_all_encoder_weights: bool,
    /// Encoder size (the paper's ResNet-18 by default).
    pub model: ModelSize,
    /// Side of the square input frames (224 in the official pipeline).
    pub image_size: usize,
    /// Seconds of audio fed to the spectrogram (3 in the official pipeline).
    pub audio_seconds: f64,
    /// Data-loading worker threads; 0 (the default) chooses by device
    /// ([`TrainConfig::loader_threads`]).
    pub loader_workers: usize,
    /// Checkpoint every this many steps as well as at each epoch end (0: epochs only).
    pub checkpoint_every_steps: u64,
    /// A model file (`.safetensors`: a run's checkpoint, or one `ogm import` wrote) whose
    /// weights and batch-norm statistics replace the seeded initialisation of a new run; the
    /// optimiser starts afresh. Unused when resuming (the run's checkpoint holds the weights).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_weights: Option<PathBuf>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            dataset: "CREMAD".into(),
            classes: Vec::new(),
            modulation: Mode::OgmGe,
            fusion_method: Fusion::Concat,
            alpha: 0.8,
            modulation_starts: 0,
            modulation_ends: 50,
            batch_size: 64,
            epochs: 100,
            optimizer: OptimizerKind::Sgd,
            learning_rate: 1e-3,
            lr_decay_step: 70,
            lr_decay_ratio: 0.1,
            fps: 1,
            use_video_frames: 0,
            audio_frontend: AudioFrontend::Cremad,
            audio_path: "./data/CREMAD/AudioWAV".into(),
            visual_path: "./data/CREMAD".into(),
            test_audio_path: None,
            test_visual_path: None,
            frame_dir_suffix: String::new(),
            train_csv: "./data/CREMAD/train.csv".into(),
            test_csv: "./data/CREMAD/test.csv".into(),
            random_seed: 0,
            ckpt_path: "./ckpt".into(),
            device: Device::Cpu,
            precision: Precision::Fp32,
            conv: ConvAlgo::Im2col,
            threads: 0,
            strict: false,
            modulate_all_encoder_weights: false,
            model: ModelSize::default(),
            image_size: 224,
            audio_seconds: 3.0,
            loader_workers: 0,
            checkpoint_every_steps: 0,
            init_weights: None,
        }
    }
}

mod mode_serde {
    use ogm_core::Mode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Mode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        let s = String::deserialize(d)?;
        Mode::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown modulation `{s}` (expected Normal, OGM or OGM_GE)"
            ))
        })
    }
}

/// The built-in class names of a dataset, in label-index order.
pub fn dataset_classes(dataset: &str) -> Result<Vec<String>, ConfigError> {
    match dataset {
        "CREMAD" => Ok(["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]
            .iter()
            .map(|s| s.to_string())
            .collect()),
        other => Err(ConfigError::Invalid(format!(
            "dataset `{other}` has no built-in class list: give its classes with \
             --classes_file (one name a line, in label-index order)"
        ))),
    }
}

/// Checks a class list: at least two classes, distinct, each a label a split file's
/// `clip_id,LABEL` row can hold (not empty, no surrounding spaces, no line break; a label
/// with a comma is written in double quotes there).
pub fn check_classes(names: &[String]) -> Result<(), ConfigError> {
    match classes_problem(names) {
        Some(m) => Err(ConfigError::Invalid(format!("classes: {m}"))),
        None => Ok(()),
    }
}

fn classes_problem(names: &[String]) -> Option<String> {
    if names.len() < 2 {
        return Some(format!("at least two are needed, got {}", names.len()));
    }
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || n.trim() != n || n.contains(['\n', '\r']) {
            return Some(format!(
                "class {} `{n}`: a label must be non-empty, without surrounding spaces",
                i + 1
            ));
        }
        if names[..i].contains(n) {
            return Some(format!("class `{n}` is listed twice"));
        }
    }
    None
}

/// Reads a class list file: one class name a line, in label-index order; blank lines are
/// skipped, a UTF-8 byte-order mark is allowed. The names are checked by [`check_classes`].
pub fn read_classes_file(path: &Path) -> Result<Vec<String>, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |m: &str| ConfigError::Invalid(format!("--classes_file {}: {m}", path.display()));
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 text"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    match classes_problem(&names) {
        Some(m) => Err(bad(&m)),
        None => Ok(names),
    }
}

/// The most engine threads a run may ask for: far beyond any useful count, low enough that
/// a typo (`--threads 100000`) is refused rather than left to stall in thread creation.
pub const MAX_THREADS: usize = 1024;
/// The most data-loading threads a run may ask for, for the same reason.
pub const MAX_LOADER_WORKERS: usize = 256;
/// The most data-loading threads chosen on a GPU when `--loader_workers` is not given: enough
/// for about 60 batches of 64 clips a second, and the loader keeps two batches per worker in
/// flight (about 1.6 GB at 16 workers with CREMA-D's shapes).
pub const AUTO_GPU_LOADER_WORKERS: usize = 16;

impl TrainConfig {
    /// Reads a TOML config file (unknown keys are refused).
    pub fn from_file(path: &Path) -> Result<TrainConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The class names in label-index order: `classes` when given, else the dataset's
    /// built-in list.
    pub fn class_names(&self) -> Result<Vec<String>, ConfigError> {
        if self.classes.is_empty() {
            dataset_classes(&self.dataset)
        } else {
            check_classes(&self.classes)?;
            Ok(self.classes.clone())
        }
    }

    /// Frames per clip fed to the model: `use_video_frames`, or `fps` when that is 0.
    pub fn frames_per_clip(&self) -> usize {
        if self.use_video_frames == 0 {
            self.fps
        } else {
            self.use_video_frames
        }
    }

    /// Refuses values out of range and contradictory combinations, before any work starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.class_names()?;
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return bad(format!(
                "--alpha must be finite and >= 0, got {}",
                self.alpha
            ));
        }
        if self.modulation_ends < self.modulation_starts {
            return bad(format!(
                "--modulation_ends ({}) is before --modulation_starts ({})",
                self.modulation_ends, self.modulation_starts
            ));
        }
        if self.batch_size == 0 {
            return bad("--batch_size must be at least 1".into());
        }
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "--learning_rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if self.lr_decay_step == 0 {
            return bad("--lr_decay_step must be at least 1".into());
        }
        if !(self.lr_decay_ratio.is_finite() && self.lr_decay_ratio > 0.0) {
            return bad(format!(
                "--lr_decay_ratio must be positive, got {}",
                self.lr_decay_ratio
            ));
        }
        if self.fps == 0 {
            return bad("--fps must be at least 1".into());
        }
        if let Some(m) = crate::data::dataset::suffix_problem(&self.frame_dir_suffix) {
            return bad(format!("--frame_dir_suffix {m}"));
        }
        if self.model.width == 0 || self.model.blocks == 0 {
            return bad("model width and blocks must be at least 1".into());
        }
        if self.image_size < 32 {
            return bad(format!(
                "image_size {} is too small for the ResNet stem (at least 32)",
                self.image_size
            ));
        }
        if !(self.audio_seconds.is_finite() && self.audio_seconds > 0.0) {
            return bad(format!(
                "audio_seconds must be positive, got {}",
                self.audio_seconds
            ));
        }
        // The clip is `round(seconds * rate)` samples: it must hold one.
        let rate = self.audio_frontend.sample_rate();
        if (self.audio_seconds * rate as f64).round() < 1.0 {
            return bad(format!(
                "audio_seconds {} is less than one sample at the audio front end's {rate} Hz",
                self.audio_seconds
            ));
        }
        if self.loader_workers > MAX_LOADER_WORKERS {
            return bad(format!(
                "loader_workers must be at most {MAX_LOADER_WORKERS} (0: chosen by device), got {}",
                self.loader_workers
            ));
        }
        if self.threads > MAX_THREADS {
            return bad(format!(
                "--threads must be at most {MAX_THREADS} (0: all cores), got {}",
                self.threads
            ));
        }
        if self.modulation == Mode::Normal && self.modulate_all_encoder_weights {
            return bad(
                "--modulate_all_encoder_weights has no effect with --modulation Normal".into(),
            );
        }
        if self.precision != Precision::Fp32 && self.device == Device::Cpu {
            let name = self.precision.engine().name();
            return bad(format!(
                "--precision {name} runs on the GPU's tensor cores: it needs --device cuda (the \
                 CPU engine computes in FP32 only)"
            ));
        }
        if self.conv == ConvAlgo::Implicit && self.device == Device::Cpu {
            return bad(
                "--conv implicit is a GPU kernel choice: it needs --device cuda (the CPU engine \
                 lowers its convolutions with im2col)"
                    .into(),
            );
        }
        if self.device == Device::Cuda && !ogm_gpu::CUDA_ENABLED {
            return Err(cuda_build_required());
        }
        Ok(())
    }

    /// The data-loading threads to run: `loader_workers`, or when it is 0, by device. On the
    /// CPU 2: the model's own threads need the cores, and a step takes far longer than
    /// loading its batch. On a GPU one per core but one (for the thread that queues the
    /// steps), at most [`AUTO_GPU_LOADER_WORKERS`]: a batch of 64 CREMA-D-shaped clips takes
    /// about 0.3 s of one core to decode and transform (`scripts/bench-data.sh`), while the
    /// device takes a few tens of milliseconds to train on it, so two workers would leave it
    /// idle most of the time.
    pub fn loader_threads(&self) -> usize {
        self.loader_threads_with(
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        )
    }

    /// [`TrainConfig::loader_threads`] on a machine of `cores` cores.
    pub fn loader_threads_with(&self, cores: usize) -> usize {
        match (self.loader_workers, self.device) {
            (0, Device::Cpu) => 2,
            (0, Device::Cuda) => cores.saturating_sub(1).clamp(2, AUTO_GPU_LOADER_WORKERS),
            (n, _) => n,
        }
    }

    /// The core crate's schedule for this configuration.
    pub fn schedule(&self) -> Result<ogm_core::Schedule, ConfigError> {
        ogm_core::Schedule::new(
            self.modulation,
            self.alpha,
            self.modulation_starts,
            self.modulation_ends,
        )
        .map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_official_ones_and_valid() {
        let c = TrainConfig::default();
        assert_eq!((c.batch_size, c.epochs, c.learning_rate), (64, 100, 1e-3));
        assert_eq!((c.modulation_starts, c.modulation_ends), (0, 50));
        assert_eq!((c.lr_decay_step, c.lr_decay_ratio), (70, 0.1));
        c.validate().unwrap();
    }

    /// A run's class list and the other dataset settings are written only when given, so
    /// the config of a CREMA-D run reads as before (and a run folder from before they existed
    /// resumes unchanged); a given list replaces the dataset's built-in one.
    #[test]
    fn class_lists_are_written_only_when_given() {
        let c = TrainConfig::default();
        let text = toml::to_string(&c).unwrap();
        for key in ["classes", "use_video_frames", "audio_frontend"] {
            assert!(!text.contains(key), "{key} in {text}");
        }
        assert_eq!(c.class_names().unwrap()[0], "NEU");
        let named = TrainConfig {
            classes: vec!["b".into(), "a".into()],
            ..TrainConfig::default()
        };
        let text = toml::to_string(&named).unwrap();
        let back: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.class_names().unwrap(), ["b", "a"]);
        let bad = TrainConfig {
            classes: vec!["a".into(), " a".into()],
            ..TrainConfig::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("surrounding spaces"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_in_the_model_table_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "epochs = 3\n[model]\nwidth = 4\n").unwrap();
        let c = TrainConfig::from_file(&path).unwrap();
        assert_eq!((c.epochs, c.model.width, c.model.blocks), (3, 4, 2));
        std::fs::write(&path, "[model]\nwidth = 4\noops = 1\n").unwrap();
        let e = TrainConfig::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("oops"), "{e}");
    }

    #[test]
    fn contradictions_are_refused() {
        let mut c = TrainConfig {
            modulation_starts: 10,
            modulation_ends: 5,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--modulation_ends"));
        c.modulation_ends = 20;
        c.alpha = -1.0;
        assert!(c.validate().unwrap_err().to_string().contains("--alpha"));
        c.alpha = 0.1;
        c.modulation = Mode::Normal;
        c.modulate_all_encoder_weights = true;
        assert!(c.validate().is_err());
    }

    #[test]
    fn clips_shorter_than_a_sample_are_refused() {
        // Found by the `config` fuzz target: a tiny positive audio_seconds passed validation
        // and rounded to a clip of no samples, which only the data pipeline then refused.
        for (frontend, rate) in [
            (AudioFrontend::Cremad, 22050.0),
            (AudioFrontend::Vggsound, 16000.0),
        ] {
            let mut c = TrainConfig {
                audio_frontend: frontend,
                audio_seconds: 0.49 / rate,
                ..Default::default()
            };
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains("audio_seconds") && e.contains(&format!("{rate} Hz")),
                "{e}"
            );
            c.audio_seconds = 0.5 / rate;
            c.validate().unwrap();
            let data = crate::train::dataset_config(&c).unwrap();
            assert_eq!(data.spectrogram.clip_samples, 1);
            data.validate().unwrap();
        }
    }

    #[test]
    fn tensor_core_precisions_on_the_cpu_are_refused_naming_the_flags() {
        use ogm_gpu::engine::ops::Precision as Engine;
        for (p, name, engine) in [
            (Precision::Tf32, "tf32", Engine::Tf32),
            (Precision::Bf16, "bf16", Engine::Bf16),
        ] {
            let c = TrainConfig {
                precision: p,
                ..Default::default()
            };
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains(&format!("--precision {name}")) && e.contains("--device cuda"),
                "{e}"
            );
            let text = toml::to_string(&c).unwrap();
            assert!(text.contains(&format!("precision = \"{name}\"")), "{text}");
            assert_eq!(toml::from_str::<TrainConfig>(&text).unwrap(), c);
            assert_eq!(p.engine(), engine);
        }
        // Config files written before the key existed read as FP32.
        assert_eq!(TrainConfig::default().precision, Precision::Fp32);
        assert_eq!(Precision::Fp32.engine(), Engine::Fp32);
    }

    #[test]
    fn implicit_convolutions_on_the_cpu_are_refused_naming_the_flags() {
        let c = TrainConfig {
            conv: ConvAlgo::Implicit,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("--conv implicit") && e.contains("--device cuda"),
            "{e}"
        );
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("conv = \"implicit\""), "{text}");
        assert_eq!(toml::from_str::<TrainConfig>(&text).unwrap(), c);
        assert_eq!(
            ConvAlgo::Implicit.engine(),
            ogm_gpu::engine::ops::ConvAlgo::Implicit
        );
        // Config files written before the key existed read as im2col.
        assert_eq!(TrainConfig::default().conv, ConvAlgo::Im2col);
        assert_eq!(
            ConvAlgo::Im2col.engine(),
            ogm_gpu::engine::ops::ConvAlgo::Im2col
        );
    }

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let c = TrainConfig {
            modulation: Mode::Ogm,
            fusion_method: Fusion::Film,
            ..Default::default()
        };
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("modulation = \"OGM\""));
        assert_eq!(toml::from_str::<TrainConfig>(&text).unwrap(), c);
        let dir = std::env::temp_dir().join(format!("ogm-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.toml");
        std::fs::write(&f, "alpah = 0.3\n").unwrap();
        let e = TrainConfig::from_file(&f).unwrap_err().to_string();
        assert!(e.contains("alpah"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn loader_threads_follow_the_device_unless_given() {
        let cpu = TrainConfig::default();
        assert_eq!(cpu.loader_workers, 0, "chosen by device by default");
        let gpu = TrainConfig {
            device: Device::Cuda,
            ..cpu.clone()
        };
        for cores in [1, 2, 4, 16, 128] {
            assert_eq!(cpu.loader_threads_with(cores), 2);
        }
        assert_eq!(gpu.loader_threads_with(1), 2);
        assert_eq!(gpu.loader_threads_with(4), 3);
        assert_eq!(gpu.loader_threads_with(16), 15);
        assert_eq!(gpu.loader_threads_with(128), AUTO_GPU_LOADER_WORKERS);
        for c in [&cpu, &gpu] {
            let given = TrainConfig {
                loader_workers: 5,
                ..c.clone()
            };
            assert_eq!(given.loader_threads_with(64), 5);
        }
    }
}
