//! `ogm eval`: a checkpoint evaluated on its run's test split (or on other data), on the CPU
//! engine or on a GPU.
//!
//! The model is the one the run's `config.toml` describes (two levels above the checkpoint:
//! `<run>/checkpoints/<file>.safetensors`). On a GPU it runs with the run's `--precision` and
//! `--conv`, so the figures are those the run's own evaluations computed after each epoch; on
//! the CPU, in FP32 whatever the run used (the CPU engine has no tensor cores to imitate).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Device, TrainConfig};
use crate::data::{Loader, LoaderConfig, Split};
use crate::engine::{checkpoint, AvModel, CpuBackend};

use super::{evaluate, footprint, model_config, open_split, EvalResult, StepBackend, TrainError};

/// What `ogm eval` evaluates, and where.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// The checkpoint (`<run>/checkpoints/<file>.safetensors`).
    pub checkpoint: PathBuf,
    /// Test split CSV instead of the run's.
    pub test_csv: Option<PathBuf>,
    /// Folder of the test clips' `<clip>.wav` files instead of the run's.
    pub audio_path: Option<PathBuf>,
    /// Folder holding the test clips' `Image-XX-FPS/` instead of the run's.
    pub visual_path: Option<PathBuf>,
    /// The frame folders' name suffix instead of the run's (`.mp4` for the official
    /// VGGSound extraction; empty for none).
    pub frame_dir_suffix: Option<String>,
    /// Samples per batch.
    pub batch_size: usize,
    /// The engine that runs the model.
    pub device: Device,
}

/// A checkpoint's evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckpointEval {
    /// Loss and the three accuracies.
    pub result: EvalResult,
    /// Clips of the split left out (unreadable media).
    pub skipped: usize,
}

/// The run configuration `req` evaluates under: the checkpoint's run's, with the request's
/// paths and device. Errors name the missing checkpoint or the misplaced one.
pub fn request_config(req: &EvalRequest) -> Result<TrainConfig, TrainError> {
    // A missing checkpoint is named as such, not as the config.toml its path would imply.
    if !req.checkpoint.is_file() {
        return Err(TrainError::Checkpoint {
            path: req.checkpoint.clone(),
            message: "no such file".into(),
        });
    }
    // <run>/checkpoints/<file>.safetensors: the run's config.toml is two levels up.
    let run_dir = req
        .checkpoint
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| TrainError::Checkpoint {
            path: req.checkpoint.clone(),
            message: "expected <run folder>/checkpoints/<file>.safetensors".into(),
        })?;
    let mut config = TrainConfig::from_file(&run_dir.join("config.toml"))?;
    if let Some(p) = &req.test_csv {
        config.test_csv = p.clone();
    }
    // The request's folders hold the clips evaluated, the test split's, whether the run kept
    // its test media apart or not.
    if let Some(p) = &req.audio_path {
        config.audio_path = p.clone();
        config.test_audio_path = None;
    }
    if let Some(p) = &req.visual_path {
        config.visual_path = p.clone();
        config.test_visual_path = None;
    }
    if let Some(s) = &req.frame_dir_suffix {
        config.frame_dir_suffix = s.clone();
    }
    config.device = req.device;
    Ok(config)
}

/// Evaluates `req` on its device. With `Device::Cuda` the GPU is opened first, so a machine
/// without one stops before any media is read; a build without the `cuda` feature refuses it
/// with the command that builds one.
pub fn evaluate_checkpoint(req: &EvalRequest) -> Result<CheckpointEval, TrainError> {
    let config = request_config(req)?;
    match config.device {
        Device::Cpu => evaluate_checkpoint_on(req, &config, CpuBackend::<f32>::new()),
        #[cfg(feature = "cuda")]
        Device::Cuda => evaluate_checkpoint_on(req, &config, super::gpu::open_for(&config)?),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => Err(crate::config::cuda_build_required().into()),
    }
}

/// Evaluates `req` under `config` ([`request_config`]) on `backend` (configured by the caller:
/// precision, convolution algorithm).
pub fn evaluate_checkpoint_on<B: StepBackend>(
    req: &EvalRequest,
    config: &TrainConfig,
    backend: B,
) -> Result<CheckpointEval, TrainError> {
    let mut ds = open_split(config, Split::Test)?;
    let batch = req.batch_size.min(ds.len());
    footprint::check_memory(config, batch)?;
    ds.verify(config.loader_threads())?;
    let classes = ds.num_classes();
    let skipped = ds.skipped().len();
    let loader = Loader::new(
        Arc::new(ds),
        LoaderConfig::eval(req.batch_size, config.loader_threads()),
    )?;
    let mut model = AvModel::new(backend, model_config(config, classes), config.random_seed)?;
    checkpoint::load(&mut model, &req.checkpoint)?;
    let result = evaluate(&mut model, &loader, classes)?;
    Ok(CheckpointEval { result, skipped })
}
