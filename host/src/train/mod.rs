//! The training loop: the official `main.py` semantics step by step (forward, cross-entropy,
//! backward, per-modality scores, OGM-GE modulation of the encoders' conv-weight gradients,
//! SGD/Adam, StepLR), evaluation with the three accuracies, checkpoints, resume, logs, plots.

pub mod checkpoint;
pub mod demo;
pub mod device;
pub mod eval;
pub mod footprint;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod import;
pub mod optimizer;
mod step;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::{AudioFrontend, ConfigError, TrainConfig};
use crate::data::dataset::{DataPaths, Dataset, DatasetConfig, Split};
use crate::data::image::ImageConfig;
use crate::data::loader::{Loader, LoaderConfig};
use crate::data::spectrogram::SpectrogramConfig;
use crate::data::split::LabelSet;
use crate::data::{DataError, SampleError};
use crate::engine::{AvModel, CpuBackend, EngineError, FusionKind, ModelConfig, StepLr};
use crate::run::fsio::write_atomic;
use crate::run::metrics::{self, EpochRecord, MetricsWriter, Record, StepRecord};
use crate::run::plots::{self, PlotError};
use crate::run::progress::Progress;

use checkpoint::{Best, RngState, Sidecar};
use optimizer::Optimizer;
pub use step::{evaluate, modulate_encoders, train_step, EvalResult, StepArgs, StepBackend};

/// Why training stopped early; each variant names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration problem (refused before any work).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A data problem (a split, or a bad sample under `--strict`).
    #[error(transparent)]
    Data(#[from] DataError),
    /// A bad sample under `--strict`.
    #[error(transparent)]
    Sample(#[from] SampleError),
    /// The model refused its input or state.
    #[error("model: {0}")]
    Engine(#[from] EngineError),
    /// A file could not be read or written (a full disk included).
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A checkpoint is missing, truncated or does not match the run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Losses or scores became non-finite.
    #[error(
        "training diverged at epoch {epoch}, step {step}: {what}; the last checkpoint is kept"
    )]
    Diverged {
        /// Epoch.
        epoch: u32,
        /// Step.
        step: u64,
        /// What became non-finite.
        what: String,
    },
    /// The run folder already holds a run.
    #[error("{path} already holds a run with a checkpoint: pass --resume to continue it, or choose another --run_name")]
    RunExists {
        /// The run folder.
        path: PathBuf,
    },
    /// `--resume` with settings that differ from the run's.
    #[error("--resume: the settings differ from the run's config.toml in: {keys}")]
    ResumeMismatch {
        /// The differing keys.
        keys: String,
    },
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// The GPU is missing, failed, or reported an error (`--device cuda`).
    #[error("GPU: {0}")]
    Device(String),
    /// Stopped by a signal after saving a checkpoint.
    #[error("interrupted at step {step}: checkpoint saved; continue with the same command plus --resume")]
    Interrupted {
        /// The last completed step.
        step: u64,
    },
}

impl TrainError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> TrainError {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How to run (not part of the experiment's configuration).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run folder's name under `ckpt_path` (default: [`default_run_name`]).
    pub run_name: Option<String>,
    /// Continue the run folder from its last checkpoint.
    pub resume: bool,
    /// Only epoch lines on the terminal.
    pub quiet: bool,
    /// Stop after this many steps in total (a test hook that simulates a kill; 0: never).
    pub stop_after_steps: u64,
}

/// Skipped samples, by split and reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SkippedCounts {
    /// Training samples skipped.
    pub train: usize,
    /// Test samples skipped.
    pub test: usize,
    /// Counts by reason, over both splits.
    pub by_reason: std::collections::BTreeMap<String, usize>,
    /// The first few skipped files with their reasons.
    pub examples: Vec<String>,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Epochs completed.
    pub epochs: u32,
    /// Steps taken.
    pub steps: u64,
    /// The last evaluation.
    pub final_eval: Option<EvalResult>,
    /// The best evaluation (by fused accuracy).
    pub best: Best,
    /// Seconds of training (summed over resumes).
    pub wall_s: f64,
    /// Samples skipped as unreadable or invalid.
    pub skipped: SkippedCounts,
    /// Where this process's training time went (since the start, or since the last resume).
    #[serde(default)]
    pub timing: LoopTiming,
    /// The whole configuration.
    pub config: TrainConfig,
}

/// Where the training loop's time went, to tell a run limited by its data loading from one
/// limited by its model steps: when `loader_wait_s` is a large share of `train_s`, more
/// `--loader_workers` (or faster storage) would speed the run up, not a faster device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopTiming {
    /// Training steps taken by this process.
    pub steps: u64,
    /// Seconds in the epochs' training loops (steps, data waits, checkpoints; no evaluation).
    pub train_s: f64,
    /// Seconds of `train_s` spent waiting for the next batch from the data loader.
    pub loader_wait_s: f64,
    /// Seconds of evaluation on the test split.
    pub eval_s: f64,
}

impl LoopTiming {
    /// Training samples per second of `train_s` (0 when nothing was timed).
    pub fn samples_per_s(&self, batch_size: usize) -> f64 {
        if self.train_s > 0.0 {
            self.steps as f64 * batch_size as f64 / self.train_s
        } else {
            0.0
        }
    }

    /// The share of `train_s` spent waiting for data (0 when nothing was timed).
    pub fn loader_wait_share(&self) -> f64 {
        if self.train_s > 0.0 {
            self.loader_wait_s / self.train_s
        } else {
            0.0
        }
    }
}

/// The default run folder name: the settings that distinguish experiments.
pub fn default_run_name(c: &TrainConfig) -> String {
    format!(
        "{}_{}_{:?}_alpha{}_seed{}",
        c.dataset,
        c.modulation.as_str(),
        c.fusion_method,
        c.alpha,
        c.random_seed
    )
    .to_lowercase()
}

/// Refuses a run name that is not one plain folder name (`--run_name ../x` would write
/// outside `--ckpt_path`).
pub fn check_run_name(name: &str) -> Result<(), ConfigError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1;
    if plain {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "--run_name {name:?} must be one folder name (no path separators, not . or ..)"
        )))
    }
}

/// The engine's model configuration for a training configuration.
pub fn model_config(c: &TrainConfig, classes: usize) -> ModelConfig {
    let w = c.model.width;
    let fusion = match c.fusion_method {
        crate::config::Fusion::Sum => FusionKind::Sum,
        crate::config::Fusion::Concat => FusionKind::Concat,
        crate::config::Fusion::Film => FusionKind::Film,
        crate::config::Fusion::Gated => FusionKind::Gated,
    };
    ModelConfig {
        classes,
        fusion,
        widths: [w, 2 * w, 4 * w, 8 * w],
        blocks: [c.model.blocks; 4],
        frames: c.frames_per_clip(),
    }
}

/// The data pipeline's settings for a training configuration.
pub fn dataset_config(c: &TrainConfig) -> Result<DatasetConfig, TrainError> {
    let names = c.class_names()?;
    let labels = LabelSet::new(names).ok_or_else(|| {
        ConfigError::Invalid(format!("dataset {} has an invalid class list", c.dataset))
    })?;
    let spectrogram = match c.audio_frontend {
        AudioFrontend::Cremad => SpectrogramConfig {
            clip_samples: (c.audio_seconds * 22050.0).round() as usize,
            ..SpectrogramConfig::default()
        },
        AudioFrontend::Vggsound => SpectrogramConfig::vggsound(c.audio_seconds),
    };
    let frames = c.frames_per_clip();
    Ok(DatasetConfig {
        labels,
        fps: frames,
        // The folder keeps naming the extraction rate when fewer or more frames are used.
        frame_dir: (frames != c.fps).then(|| format!("Image-{:02}-FPS", c.fps)),
        frame_dir_suffix: c.frame_dir_suffix.clone(),
        spectrogram,
        image: ImageConfig::with_size(c.image_size as u32, c.image_size as u32),
        strict: c.strict,
        ..DatasetConfig::default()
    })
}

/// Where the data is: the four path flags, each independent (`--audio_path`, `--visual_path`,
/// `--train_csv`, `--test_csv`), and the test clips' media folders where they are apart
/// (`--test_audio_path`, `--test_visual_path`); the defaults are the official
/// `./data/CREMAD` layout.
pub fn data_paths(c: &TrainConfig) -> DataPaths {
    DataPaths {
        audio: c.audio_path.clone(),
        visual: c.visual_path.clone(),
        test_audio: c.test_audio_path.clone().unwrap_or(c.audio_path.clone()),
        test_visual: c.test_visual_path.clone().unwrap_or(c.visual_path.clone()),
        train_csv: c.train_csv.clone(),
        test_csv: c.test_csv.clone(),
    }
}

/// Opens one split (errors name the missing file or folder).
pub fn open_split(c: &TrainConfig, split: Split) -> Result<Dataset, TrainError> {
    Ok(Dataset::open(&data_paths(c), split, dataset_config(c)?)?)
}

/// Writes a file of the run folder atomically ([`write_atomic`]), the error naming the file.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    write_atomic(path, bytes).map_err(|e| TrainError::io(path, e))
}

/// Writes a run folder's `config.toml` (atomically), which `--resume` and `ogm eval` read.
fn write_config(path: &Path, config: &TrainConfig) -> Result<(), TrainError> {
    let text = toml::to_string(config).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    write_file(path, text.as_bytes())
}

/// Settings a resumed run may change: the number of epochs (to train longer), those that
/// do not change what is computed: the data-loading threads (a batch is the same whatever
/// their number) and how often checkpoints are written, and the starting weights, which the
/// run's checkpoint has replaced (the saved config keeps the ones the run started from).
const RESUMABLE_CHANGES: [&str; 4] = [
    "epochs",
    "loader_workers",
    "checkpoint_every_steps",
    "init_weights",
];

/// The settings of `a` and `b` that differ and may not, by name. Both ways: a setting only
/// one of them writes (an optional one, such as `classes` or `frame_dir_suffix`) differs.
fn config_differences(a: &TrainConfig, b: &TrainConfig) -> Vec<String> {
    let (ta, tb) = (toml::Value::try_from(a).ok(), toml::Value::try_from(b).ok());
    let (Some(toml::Value::Table(ta)), Some(toml::Value::Table(tb))) = (ta, tb) else {
        return vec!["(unreadable)".into()];
    };
    let keys: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
    keys.into_iter()
        .filter(|k| !RESUMABLE_CHANGES.contains(&k.as_str()) && ta.get(*k) != tb.get(*k))
        .cloned()
        .collect()
}

/// Trains per `config` in `<ckpt_path>/<run name>`, stopping cleanly (with a checkpoint)
/// when `stop` becomes true. Returns the summary also written to `summary.json`.
///
/// With `--device cuda` the GPU is opened first: a machine without one stops here, before any
/// data is read.
pub fn train(
    config: &TrainConfig,
    opts: &RunOptions,
    stop: Arc<AtomicBool>,
) -> Result<Summary, TrainError> {
    config.validate()?;
    match config.device {
        crate::config::Device::Cpu => train_on(config, opts, stop, CpuBackend::<f32>::new()),
        #[cfg(feature = "cuda")]
        crate::config::Device::Cuda => train_on(config, opts, stop, gpu::open_for(config)?),
        // validate() refuses --device cuda in a build without the `cuda` feature.
        #[cfg(not(feature = "cuda"))]
        crate::config::Device::Cuda => Err(crate::config::cuda_build_required().into()),
    }
}

/// Logs finished steps' records (progress, metrics file) and adds their losses to the
/// epoch's sum and count.
fn log_steps(
    done: &mut Vec<StepRecord>,
    (loss_sum, loss_n): (&mut f64, &mut u64),
    progress: &mut Progress,
    metrics_out: &mut MetricsWriter,
    metrics_path: &Path,
) -> Result<(), TrainError> {
    for rec in done.drain(..) {
        *loss_sum += rec.loss;
        *loss_n += 1;
        progress.step(rec.epoch, rec.step, rec.loss, rec.ratio_v);
        metrics_out
            .write(&Record::Step(rec))
            .map_err(|e| TrainError::io(metrics_path, e))?;
    }
    Ok(())
}

/// [`train`] on a backend of the caller's choice (`config.device` is not consulted): the
/// tests run the whole loop on the GPU backend over the kernel emulator with it.
///
/// Errors: as [`train`].
pub fn train_on<B: StepBackend>(
    config: &TrainConfig,
    opts: &RunOptions,
    stop: Arc<AtomicBool>,
    backend: B,
) -> Result<Summary, TrainError> {
    config.validate()?;
    let run_name = opts
        .run_name
        .clone()
        .unwrap_or_else(|| default_run_name(config));
    check_run_name(&run_name)?;
    let run_dir = config.ckpt_path.join(run_name);
    let ckpt_dir = run_dir.join("checkpoints");
    let config_path = run_dir.join("config.toml");
    let has_checkpoint = checkpoint::read_sidecar(&ckpt_dir)?.is_some();
    if has_checkpoint && !opts.resume {
        return Err(TrainError::RunExists { path: run_dir });
    }
    let resumed_config;
    let config = if opts.resume && config_path.exists() {
        let saved = TrainConfig::from_file(&config_path)?;
        let diff = config_differences(&saved, config);
        if !diff.is_empty() {
            return Err(TrainError::ResumeMismatch {
                keys: diff.join(", "),
            });
        }
        // The run started from the saved weights, whatever this call names.
        resumed_config = TrainConfig {
            init_weights: saved.init_weights,
            ..config.clone()
        };
        &resumed_config
    } else {
        config
    };

    // The starting weights of a new run; a resumed one has its own in its checkpoint.
    let init_weights = config.init_weights.as_deref().filter(|_| !has_checkpoint);
    if let Some(path) = init_weights {
        if !path.is_file() {
            return Err(TrainError::Checkpoint {
                path: path.to_path_buf(),
                message: "--init_weights: no such file".into(),
            });
        }
    }

    // Data first: a bad split or (with --strict) a bad sample stops before any training.
    let mut train_ds = open_split(config, Split::Train)?;
    let mut test_ds = open_split(config, Split::Test)?;
    // Before any media is decoded or the run folder is written: an absurd size setting gets
    // an error that names it, not an allocation failure that aborts the process.
    footprint::check_memory(config, config.batch_size.min(train_ds.len()))?;
    // The model before the media are decoded, so that starting weights of another shape
    // stop the run at once, with nothing written.
    let classes = train_ds.num_classes();
    let mut model = AvModel::new(backend, model_config(config, classes), config.random_seed)?;
    if let Some(path) = init_weights {
        crate::engine::checkpoint::load(&mut model, path)?;
    }
    let loader_threads = config.loader_threads();
    let verify_threads = loader_threads;
    train_ds.verify(verify_threads)?;
    test_ds.verify(verify_threads)?;
    let mut skipped = SkippedCounts {
        train: train_ds.skipped().len(),
        test: test_ds.skipped().len(),
        ..Default::default()
    };
    for ds in [&train_ds, &test_ds] {
        for (reason, n) in ds.skipped().by_reason() {
            *skipped
                .by_reason
                .entry(reason.name().to_string())
                .or_default() += n;
        }
        for e in ds.skipped().errors().iter().take(10) {
            skipped.examples.push(e.to_string());
        }
    }
    let train_ds = Arc::new(train_ds);
    let test_ds = Arc::new(test_ds);
    let train_loader = Loader::new(
        train_ds.clone(),
        LoaderConfig::train(config.batch_size, loader_threads, config.random_seed),
    )?;
    let test_loader = Loader::new(
        test_ds.clone(),
        LoaderConfig::eval(config.batch_size, loader_threads),
    )?;

    std::fs::create_dir_all(&ckpt_dir).map_err(|e| TrainError::io(&ckpt_dir, e))?;
    write_config(&config_path, config)?;

    let mut opt = Optimizer::new(config);
    let lr_sched = StepLr {
        base_lr: config.learning_rate,
        step_size: config.lr_decay_step,
        gamma: config.lr_decay_ratio,
    };
    let schedule = config.schedule()?;

    let metrics_path = run_dir.join("metrics.jsonl");
    let resumed = checkpoint::load_last(&ckpt_dir, &mut model, &mut opt)?;
    let steps_per_epoch = train_loader.batches_per_epoch() as u64;
    // Before the metrics are cut back to the checkpoint: a resume that cannot continue the
    // run exactly must leave every file as it was.
    if let Some(s) = resumed.as_ref().filter(|s| !s.fits(steps_per_epoch)) {
        return Err(TrainError::Checkpoint {
            path: ckpt_dir.join("last.json"),
            message: format!(
                "epoch {} batch {} at step {} is not a position of this run's {} batches an \
                 epoch ({} usable training clips in batches of {}): the training data changed \
                 since the checkpoint (resume with the same split file and media), or the \
                 file did",
                s.epoch,
                s.batch_in_epoch,
                s.step,
                steps_per_epoch,
                train_ds.len(),
                config.batch_size
            ),
        });
    }
    let (mut epoch, mut skip_batches, mut step, wall_before, mut best) = match &resumed {
        Some(s) => {
            metrics::truncate_after(&metrics_path, s.step)
                .map_err(|e| TrainError::io(&metrics_path, e))?;
            (s.epoch, s.batch_in_epoch, s.step, s.wall_s, s.best)
        }
        None => {
            if metrics_path.exists() {
                std::fs::remove_file(&metrics_path)
                    .map_err(|e| TrainError::io(&metrics_path, e))?;
            }
            (0, 0, 0, 0.0, Best::default())
        }
    };
    let mut metrics_out =
        MetricsWriter::open(&metrics_path).map_err(|e| TrainError::io(&metrics_path, e))?;

    let total_steps = steps_per_epoch * config.epochs as u64;
    let mut progress = Progress::new(total_steps, step, opts.quiet);
    if let Some(s) = &resumed {
        progress.line(&format!(
            "resuming {} at epoch {} batch {} (step {})",
            run_dir.display(),
            s.epoch,
            s.batch_in_epoch,
            s.step
        ));
    }
    let started = Instant::now();
    let wall = |started: &Instant| wall_before + started.elapsed().as_secs_f64();
    let mut last_eval: Option<EvalResult> = None;

    let sidecar = |epoch: u32, batch_in_epoch: u64, step: u64, wall_s: f64, best: Best| Sidecar {
        format: checkpoint::FORMAT.into(),
        epoch,
        batch_in_epoch,
        step,
        wall_s,
        best,
        model_file: String::new(),
        optimizer_file: String::new(),
        optimizer: Default::default(),
        rng: RngState::new(config.random_seed),
    };

    // Records of finished steps, logged as they arrive: at once on the CPU, in batches from a
    // GPU's queue (see StepBackend).
    let mut done: Vec<StepRecord> = Vec::new();
    let mut timing = LoopTiming::default();
    while epoch < config.epochs {
        let lr = lr_sched.lr_at(epoch);
        opt.set_lr(lr);
        let mut loss_sum = 0.0;
        let mut loss_n = 0u64;
        let mut batch_in_epoch = 0u64;
        // Runs a step call, logs the records it finished (those before a failed step too),
        // then returns its error, if any.
        macro_rules! logged {
            ($call:expr) => {{
                let result = $call;
                log_steps(
                    &mut done,
                    (&mut loss_sum, &mut loss_n),
                    &mut progress,
                    &mut metrics_out,
                    &metrics_path,
                )?;
                result?
            }};
        }
        let loop_started = Instant::now();
        let mut batches = train_loader.epoch(epoch as u64);
        loop {
            let waiting = Instant::now();
            let Some(batch) = batches.next() else { break };
            timing.loader_wait_s += waiting.elapsed().as_secs_f64();
            let batch = batch?;
            if batch_in_epoch < skip_batches {
                // Resuming mid-epoch: these batches were trained before the interruption.
                batch_in_epoch += 1;
                continue;
            }
            step += 1;
            timing.steps += 1;
            batch_in_epoch += 1;
            let args = StepArgs {
                schedule: &schedule,
                config,
                epoch,
                step,
                lr,
            };
            logged!(B::queue_step(
                &mut model, &mut opt, &args, &batch, &mut done
            ));
            let interrupted = stop.load(Ordering::SeqCst)
                || (opts.stop_after_steps > 0 && step >= opts.stop_after_steps);
            let periodic =
                config.checkpoint_every_steps > 0 && step % config.checkpoint_every_steps == 0;
            if interrupted || periodic {
                // The queued steps' records first: a step that diverged stops the run before
                // a checkpoint could keep its state.
                logged!(B::finish_steps(&mut model, &mut done));
                metrics_out
                    .flush()
                    .map_err(|e| TrainError::io(&metrics_path, e))?;
                checkpoint::save_last(
                    &ckpt_dir,
                    &model,
                    &opt,
                    sidecar(epoch, batch_in_epoch, step, wall(&started), best),
                )?;
            }
            if interrupted {
                progress.finish();
                return Err(TrainError::Interrupted { step });
            }
        }
        skip_batches = 0;
        logged!(B::finish_steps(&mut model, &mut done));
        timing.train_s += loop_started.elapsed().as_secs_f64();

        let eval_started = Instant::now();
        let eval = evaluate(&mut model, &test_loader, classes)?;
        timing.eval_s += eval_started.elapsed().as_secs_f64();
        let rec = EpochRecord {
            epoch,
            step,
            train_loss: if loss_n > 0 {
                loss_sum / loss_n as f64
            } else {
                f64::NAN
            },
            loss: eval.loss,
            acc: eval.acc,
            acc_a: eval.acc_a,
            acc_v: eval.acc_v,
            lr,
            wall_s: wall(&started),
        };
        progress.line(&format!(
            "epoch {epoch}: train loss {:.4}, test loss {:.4}, acc {:.4}, acc_a {:.4}, acc_v {:.4}",
            rec.train_loss, rec.loss, rec.acc, rec.acc_a, rec.acc_v
        ));
        metrics_out
            .write(&Record::Epoch(rec))
            .map_err(|e| TrainError::io(&metrics_path, e))?;
        metrics_out
            .flush()
            .map_err(|e| TrainError::io(&metrics_path, e))?;
        if best.epoch.is_none() || eval.acc > best.acc {
            best = Best {
                epoch: Some(epoch),
                acc: eval.acc,
                acc_a: eval.acc_a,
                acc_v: eval.acc_v,
            };
            checkpoint::save_best(&ckpt_dir, &model, &best)?;
        }
        last_eval = Some(eval);
        epoch += 1;
        checkpoint::save_last(
            &ckpt_dir,
            &model,
            &opt,
            sidecar(epoch, 0, step, wall(&started), best),
        )?;
        let records =
            metrics::read_records(&metrics_path).map_err(|e| TrainError::io(&metrics_path, e))?;
        plots::draw_run(&run_dir.join("plots"), &records)?;
    }
    progress.finish();

    if last_eval.is_none() {
        // A resumed run that had already finished: report its last evaluation.
        last_eval = metrics::read_records(&metrics_path)
            .map_err(|e| TrainError::io(&metrics_path, e))?
            .into_iter()
            .rev()
            .find_map(|r| match r {
                Record::Epoch(e) => Some(EvalResult {
                    loss: e.loss,
                    acc: e.acc,
                    acc_a: e.acc_a,
                    acc_v: e.acc_v,
                    samples: 0,
                }),
                Record::Step(_) => None,
            });
    }
    let summary = Summary {
        epochs: epoch,
        steps: step,
        final_eval: last_eval,
        best,
        wall_s: wall(&started),
        skipped,
        timing,
        config: config.clone(),
    };
    let json =
        serde_json::to_vec_pretty(&summary).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let summary_path = run_dir.join("summary.json");
    write_file(&summary_path, &json)?;
    Ok(summary)
}
