//! The `ogm` command line: `train`, `eval`, `synth`, `demo`.
//!
//! `train` takes the official `main.py` flags (same names, same defaults) plus ours; a
//! `--config` TOML file gives a whole experiment, and flags given on the command line override
//! it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    read_classes_file, AudioFrontend, ConfigError, ConvAlgo, Device, Fusion, OptimizerKind,
    Precision, TrainConfig,
};
use crate::data::{LabelSet, SynthConfig};
use crate::train::eval::EvalRequest;

/// Balanced audio-visual training with OGM-GE (CVPR 2022).
#[derive(Debug, Parser)]
#[command(name = "ogm", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train an audio-visual classifier (CREMA-D layout) with Normal, OGM or OGM_GE.
    Train(Box<TrainArgs>),
    /// Evaluate a checkpoint on a test split: acc, acc_a, acc_v.
    Eval(EvalArgs),
    /// Make a checkpoint of the official PyTorch code (`.pth`) into a run folder for `ogm eval`.
    Import(ImportArgs),
    /// Write a synthetic audio-visual dataset in the CREMA-D layout.
    Synth(SynthArgs),
    /// Build a small synthetic dataset, train Normal and OGM-GE on the CPU, compare them.
    Demo(DemoArgs),
}

/// `ogm train`: every flag is optional; unset flags come from `--config` or the defaults.
#[derive(Debug, Args, Default)]
#[command(rename_all = "snake_case")]
#[allow(missing_docs)] // each field is documented by its clap help text
pub struct TrainArgs {
    /// A TOML file with a whole experiment (keys are the flag names).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Resume the run folder from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Name of the run folder under --ckpt_path (default: derived from the settings).
    #[arg(long)]
    pub run_name: Option<String>,
    /// Stop before training on any bad sample instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Only epoch summaries on the terminal.
    #[arg(long)]
    pub quiet: bool,
    /// Dataset name: CREMAD (classes built in), or any name with --classes_file.
    #[arg(long)]
    pub dataset: Option<String>,
    /// The class names, one a line, in label-index order (the labels of the split files).
    #[arg(long)]
    pub classes_file: Option<PathBuf>,
    /// Normal, OGM or OGM_GE.
    #[arg(long)]
    pub modulation: Option<String>,
    /// sum, concat, film or gated.
    #[arg(long, value_enum)]
    pub fusion_method: Option<Fusion>,
    /// Modulation strength (0.8 for CREMA-D, 0.1 for VGGSound in the paper).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// First modulated epoch (0-based, inclusive).
    #[arg(long)]
    pub modulation_starts: Option<u32>,
    /// Last modulated epoch (inclusive).
    #[arg(long)]
    pub modulation_ends: Option<u32>,
    #[arg(long, help = "Samples per step (64)")]
    pub batch_size: Option<usize>,
    #[arg(long, help = "Epochs (100)")]
    pub epochs: Option<u32>,
    #[arg(long, value_enum, help = "sgd or adam")]
    pub optimizer: Option<OptimizerKind>,
    #[arg(long, help = "Initial learning rate (1e-3)")]
    pub learning_rate: Option<f64>,
    #[arg(long, help = "StepLR period in epochs (70)")]
    pub lr_decay_step: Option<u32>,
    #[arg(long, help = "StepLR factor (0.1)")]
    pub lr_decay_ratio: Option<f64>,
    #[arg(
        long,
        help = "Frame folder rate Image-XX-FPS, and frames per clip unless --use_video_frames (1)"
    )]
    pub fps: Option<usize>,
    #[arg(
        long,
        help = "Frames per clip read from the Image-XX-FPS folder (0: --fps; official VGGSound: 3)"
    )]
    pub use_video_frames: Option<usize>,
    #[arg(
        long,
        value_enum,
        help = "Audio features of the official loader: cremad (22050 Hz, STFT 512/353) or \
                vggsound (16 kHz, random crops, STFT 256/128; --audio_seconds defaults to 5)"
    )]
    pub audio_frontend: Option<AudioFrontend>,
    #[arg(long, help = "Folder of <clip>.wav files (./data/CREMAD/AudioWAV)")]
    pub audio_path: Option<PathBuf>,
    #[arg(
        long,
        help = "Folder holding Image-XX-FPS/<clip>/*.jpg (./data/CREMAD)"
    )]
    pub visual_path: Option<PathBuf>,
    #[arg(
        long,
        help = "Folder of the test clips' <clip>.wav files, when apart from --audio_path \
                (official VGGSound: test-audios/test-set)"
    )]
    pub test_audio_path: Option<PathBuf>,
    #[arg(
        long,
        help = "Folder holding the test clips' Image-XX-FPS/, when apart from --visual_path \
                (official VGGSound: test-videos/test-set-img)"
    )]
    pub test_visual_path: Option<PathBuf>,
    #[arg(
        long,
        help = "What follows the clip id in a frame folder's name (none; official VGGSound: .mp4)"
    )]
    pub frame_dir_suffix: Option<String>,
    #[arg(
        long,
        help = "Training split CSV, rows clip_id,LABEL (./data/CREMAD/train.csv)"
    )]
    pub train_csv: Option<PathBuf>,
    #[arg(long, help = "Test split CSV (./data/CREMAD/test.csv)")]
    pub test_csv: Option<PathBuf>,
    #[arg(long, help = "Seed of everything random (0)")]
    pub random_seed: Option<u64>,
    #[arg(long, help = "Folder receiving run folders (./ckpt)")]
    pub ckpt_path: Option<PathBuf>,
    #[arg(long, value_enum, help = "cpu or cuda")]
    pub device: Option<Device>,
    #[arg(
        long,
        value_enum,
        help = "GPU matrix products: fp32 (the reference, default), tf32 or bf16 (tensor \
                cores, operands rounded, f32 accumulation; --device cuda only)"
    )]
    pub precision: Option<Precision>,
    #[arg(
        long,
        value_enum,
        help = "GPU convolutions: im2col (default) or implicit (implicit GEMMs, at every \
                precision: forward and weight gradient bit for bit im2col's, stride-1 data \
                gradients within FP32 rounding; less memory and traffic; --device cuda only)"
    )]
    pub conv: Option<ConvAlgo>,
    #[arg(long, help = "Engine threads (0: all cores)")]
    pub threads: Option<usize>,
    #[arg(
        long,
        help = "Modulate every encoder weight, not only the conv weights"
    )]
    pub modulate_all_encoder_weights: bool,
    #[arg(long, help = "Channels of the first ResNet stage (64)")]
    pub model_width: Option<usize>,
    #[arg(long, help = "Basic blocks per ResNet stage (2)")]
    pub model_blocks: Option<usize>,
    #[arg(long, help = "Side of the square input frames (224)")]
    pub image_size: Option<usize>,
    #[arg(long, help = "Seconds of audio in the spectrogram (3)")]
    pub audio_seconds: Option<f64>,
    #[arg(
        long,
        help = "Data-loading worker threads (0: 2 on the CPU; on a GPU one per core but one, at most 16)"
    )]
    pub loader_workers: Option<usize>,
    #[arg(long, help = "Also checkpoint every N steps (0: at epoch ends only)")]
    pub checkpoint_every_steps: Option<u64>,
    #[arg(
        long,
        help = "Start from this model file's weights (a run's checkpoint or one ogm import \
                wrote; same model shape), not a seeded initialisation; a fresh optimiser"
    )]
    pub init_weights: Option<PathBuf>,
}

impl TrainArgs {
    /// The configuration: defaults, then the `--config` file, then the flags given.
    pub fn to_config(&self) -> Result<TrainConfig, ConfigError> {
        let mut c = match &self.config {
            Some(p) => TrainConfig::from_file(p)?,
            None => TrainConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field {
                    c.$field = v.clone();
                }
            )*};
        }
        set!(
            dataset,
            fusion_method,
            alpha,
            modulation_starts,
            modulation_ends,
            batch_size,
            epochs,
            optimizer,
            learning_rate,
            lr_decay_step,
            lr_decay_ratio,
            fps,
            use_video_frames,
            audio_frontend,
            audio_path,
            visual_path,
            frame_dir_suffix,
            train_csv,
            test_csv,
            random_seed,
            ckpt_path,
            device,
            precision,
            conv,
            threads,
            image_size,
            audio_seconds,
            loader_workers,
            checkpoint_every_steps
        );
        // The official VGGSound loader crops 5 s: the front end brings its length along
        // unless one is given.
        if self.audio_frontend == Some(AudioFrontend::Vggsound) && self.audio_seconds.is_none() {
            c.audio_seconds = 5.0;
        }
        if let Some(p) = &self.init_weights {
            c.init_weights = Some(p.clone());
        }
        if let Some(p) = &self.test_audio_path {
            c.test_audio_path = Some(p.clone());
        }
        if let Some(p) = &self.test_visual_path {
            c.test_visual_path = Some(p.clone());
        }
        if let Some(path) = &self.classes_file {
            c.classes = read_classes_file(path)?;
        }
        if let Some(m) = &self.modulation {
            c.modulation = ogm_core::Mode::parse(m).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "--modulation `{m}` is not one of Normal, OGM, OGM_GE"
                ))
            })?;
        }
        if let Some(w) = self.model_width {
            c.model.width = w;
        }
        if let Some(b) = self.model_blocks {
            c.model.blocks = b;
        }
        c.strict |= self.strict;
        c.modulate_all_encoder_weights |= self.modulate_all_encoder_weights;
        c.validate()?;
        Ok(c)
    }
}

/// `ogm eval`.
#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct EvalArgs {
    /// The checkpoint (`.safetensors`); its run folder's `config.toml` gives the model.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Test split CSV (default: the run's).
    #[arg(long)]
    pub test_csv: Option<PathBuf>,
    /// Folder of the test clips' `<clip>.wav` files (default: the run's).
    #[arg(long)]
    pub audio_path: Option<PathBuf>,
    /// Folder holding the test clips' `Image-XX-FPS/` (default: the run's).
    #[arg(long)]
    pub visual_path: Option<PathBuf>,
    /// What follows the clip id in a frame folder's name (default: the run's; official
    /// VGGSound: .mp4).
    #[arg(long)]
    pub frame_dir_suffix: Option<String>,
    /// Samples per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// cpu, or cuda (a build with the `cuda` feature): on a GPU the model runs with the run's
    /// --precision and --conv.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
    /// Print one JSON object (checkpoint, device, skipped, loss, acc, acc_a, acc_v, samples)
    /// instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl EvalArgs {
    /// The evaluation these arguments ask for.
    pub fn to_request(&self) -> EvalRequest {
        EvalRequest {
            checkpoint: self.checkpoint.clone(),
            test_csv: self.test_csv.clone(),
            audio_path: self.audio_path.clone(),
            visual_path: self.visual_path.clone(),
            frame_dir_suffix: self.frame_dir_suffix.clone(),
            batch_size: self.batch_size,
            device: self.device,
        }
    }
}

/// `ogm import`.
#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct ImportArgs {
    /// The checkpoint `torch.save` wrote: the official `main.py`'s (model, optimiser and
    /// settings) or a bare state_dict.
    #[arg(long)]
    pub pth: PathBuf,
    /// The run folder to create (`config.toml`, `checkpoints/<name>.safetensors`); it must
    /// not hold a run.
    #[arg(long)]
    pub out: PathBuf,
    /// The dataset the model was trained on: CREMAD (classes built in), or any name with
    /// --classes_file.
    #[arg(long, default_value = "CREMAD")]
    pub dataset: String,
    /// The model's class names, one a line, in label-index order.
    #[arg(long)]
    pub classes_file: Option<PathBuf>,
    /// The audio features the model was trained on (cremad or vggsound).
    #[arg(long, value_enum, default_value = "cremad")]
    pub audio_frontend: AudioFrontend,
    /// Seconds of audio in the spectrogram (default: 3 for cremad, 5 for vggsound).
    #[arg(long)]
    pub audio_seconds: Option<f64>,
    /// The frame folder's rate (Image-XX-FPS).
    #[arg(long, default_value_t = 1)]
    pub fps: usize,
    /// Frames per clip (0: --fps; official VGGSound: 3).
    #[arg(long, default_value_t = 0)]
    pub use_video_frames: usize,
    /// What follows the clip id in a frame folder's name (official VGGSound: .mp4).
    #[arg(long, default_value = "")]
    pub frame_dir_suffix: String,
}

impl ImportArgs {
    /// The settings a `.pth` file does not record, from these flags.
    pub fn base_config(&self) -> Result<TrainConfig, ConfigError> {
        let default_seconds = match self.audio_frontend {
            AudioFrontend::Cremad => 3.0,
            AudioFrontend::Vggsound => 5.0,
        };
        Ok(TrainConfig {
            dataset: self.dataset.clone(),
            classes: match &self.classes_file {
                Some(path) => read_classes_file(path)?,
                None => Vec::new(),
            },
            audio_frontend: self.audio_frontend,
            audio_seconds: self.audio_seconds.unwrap_or(default_seconds),
            fps: self.fps,
            use_video_frames: self.use_video_frames,
            frame_dir_suffix: self.frame_dir_suffix.clone(),
            ..TrainConfig::default()
        })
    }
}

impl SynthArgs {
    /// The dataset these arguments ask for; the class list is read from `--classes_file`.
    pub fn to_config(&self) -> Result<SynthConfig, ConfigError> {
        let labels = match &self.classes_file {
            Some(path) => LabelSet::new(read_classes_file(path)?)
                .expect("read_classes_file checks the names are distinct"),
            None => LabelSet::cremad(),
        };
        Ok(SynthConfig {
            labels,
            train_per_class: self.train_per_class,
            test_per_class: self.test_per_class,
            audio_signal: self.audio_signal,
            visual_signal: self.visual_signal,
            clutter_colour: self.clutter_colour,
            width: self.size,
            height: self.size,
            audio_seconds: self.audio_seconds,
            fps: self.fps,
            frames_per_clip: self.frames_per_clip.unwrap_or(self.fps.max(3)),
            seed: self.seed,
            ..SynthConfig::default()
        })
    }
}

/// `ogm synth`.
#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct SynthArgs {
    /// Output folder (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Training clips per class.
    #[arg(long, default_value_t = 40)]
    pub train_per_class: usize,
    /// Test clips per class.
    #[arg(long, default_value_t = 10)]
    pub test_per_class: usize,
    /// How informative the audio is, 0 (noise) to 1 (clean class tones).
    #[arg(long, default_value_t = 0.8)]
    pub audio_signal: f32,
    /// How informative the frames are, 0 (noise) to 1 (clean class colours).
    #[arg(long, default_value_t = 0.15)]
    pub visual_signal: f32,
    /// How colourful the frames' clutter is, 0 (grey: the class colour is faint but clean)
    /// to 1 (random colours that hide it).
    #[arg(long, default_value_t = 0.0)]
    pub clutter_colour: f32,
    /// Frame side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    /// Seconds of audio per clip.
    #[arg(long, default_value_t = 1.0)]
    pub audio_seconds: f32,
    /// The frame folder's rate (`Image-XX-FPS`), as `ogm train --fps` reads it.
    #[arg(long, default_value_t = 1)]
    pub fps: usize,
    /// Frames written a clip (default: --fps, at least 3, so that training's random frame
    /// choice has a choice and `ogm train --fps` finds enough frames).
    #[arg(long)]
    pub frames_per_clip: Option<usize>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Class names, one a line (at most 12; default: CREMA-D's six). Train on the result
    /// with `--dataset <any name> --classes_file` and the same file.
    #[arg(long)]
    pub classes_file: Option<PathBuf>,
}

/// `ogm demo`.
#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct DemoArgs {
    /// Folder for the dataset and the run folders (default: a new temporary folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Epochs per run.
    #[arg(long, default_value_t = crate::train::demo::DEMO_EPOCHS)]
    pub epochs: u32,
    /// A much shorter configuration (for CI smoke tests).
    #[arg(long)]
    pub quick: bool,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_file() {
        let dir = std::env::temp_dir().join(format!("ogm-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("exp.toml");
        std::fs::write(&f, "alpha = 0.3\nepochs = 7\nmodulation = \"OGM\"\n").unwrap();
        let cli = Cli::try_parse_from([
            "ogm",
            "train",
            "--config",
            f.to_str().unwrap(),
            "--epochs",
            "9",
        ])
        .unwrap();
        let Command::Train(args) = cli.command else {
            panic!("not train")
        };
        let c = args.to_config().unwrap();
        assert_eq!(
            (c.alpha, c.epochs, c.modulation),
            (0.3, 9, ogm_core::Mode::Ogm)
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn contradictory_flags_are_refused_before_work() {
        let cli = Cli::try_parse_from([
            "ogm",
            "train",
            "--modulation_starts",
            "9",
            "--modulation_ends",
            "3",
        ])
        .unwrap();
        let Command::Train(args) = cli.command else {
            panic!("not train")
        };
        assert!(args.to_config().is_err());
        let cli = Cli::try_parse_from(["ogm", "train", "--modulation", "OGMGE"]).unwrap();
        let Command::Train(args) = cli.command else {
            panic!("not train")
        };
        assert!(args.to_config().unwrap_err().to_string().contains("OGMGE"));
        // TF32 and BF16 are GPU modes: parsed, then refused with the CPU engine, naming the flag.
        for (name, want) in [("tf32", Precision::Tf32), ("bf16", Precision::Bf16)] {
            let cli = Cli::try_parse_from(["ogm", "train", "--precision", name]).unwrap();
            let Command::Train(args) = cli.command else {
                panic!("not train")
            };
            assert_eq!(args.precision, Some(want));
            assert!(args
                .to_config()
                .unwrap_err()
                .to_string()
                .contains(&format!("--precision {name}")));
        }
        assert!(Cli::try_parse_from(["ogm", "train", "--precision", "fp16"]).is_err());
        // So are implicit-GEMM convolutions.
        let cli = Cli::try_parse_from(["ogm", "train", "--conv", "implicit"]).unwrap();
        let Command::Train(args) = cli.command else {
            panic!("not train")
        };
        assert_eq!(args.conv, Some(ConvAlgo::Implicit));
        assert!(args
            .to_config()
            .unwrap_err()
            .to_string()
            .contains("--conv implicit"));
        assert!(Cli::try_parse_from(["ogm", "train", "--conv", "winograd"]).is_err());
    }
}
