//! Training checkpoints: the model as safetensors with PyTorch state_dict keys (loadable by
//! `load_state_dict` of the official model), the optimiser's buffers in a second safetensors
//! file, and a JSON sidecar with everything else a resumed run needs.
//!
//! Consistency under crashes: each checkpoint's two safetensors files get step-numbered names
//! and are written atomically first; then `last.json` (the sidecar) is atomically replaced to
//! point at them; only then are older step files removed. Whatever moment a crash hits,
//! `last.json` names a complete, matching set.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{checkpoint as model_ckpt, AvModel, Backend};

use super::optimizer::{Optimizer, OptimizerState};
use super::{write_file, TrainError};

/// The sidecar's format tag.
pub const FORMAT: &str = "ogm-checkpoint/1";

/// The best evaluation so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Best {
    /// Epoch of the best fused accuracy (`None` before the first evaluation).
    pub epoch: Option<u32>,
    /// Its fused accuracy.
    pub acc: f64,
    /// Its audio-only accuracy.
    pub acc_a: f64,
    /// Its visual-only accuracy.
    pub acc_v: f64,
}

/// The sidecar: where training stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    /// [`FORMAT`].
    pub format: String,
    /// The epoch in progress (or the next one, when `batch_in_epoch` is 0).
    pub epoch: u32,
    /// Batches of `epoch` already trained.
    pub batch_in_epoch: u64,
    /// Global steps taken.
    pub step: u64,
    /// Seconds of training so far (summed over resumes).
    pub wall_s: f64,
    /// The best evaluation so far.
    pub best: Best,
    /// Model file, relative to the sidecar's folder.
    pub model_file: String,
    /// Optimiser-buffers file, relative to the sidecar's folder.
    pub optimizer_file: String,
    /// Scalars of the optimiser (its buffers are in `optimizer_file`).
    pub optimizer: OptimizerState,
    /// The randomness: every random choice is a pure function of the run's seed and counters
    /// (shuffles and augmentation of `(seed, epoch, sample)`, noise of `(seed, step, tensor)`),
    /// so the seed is the whole RNG state.
    pub rng: RngState,
}

impl Sidecar {
    /// Whether its position (epoch, batch, step) is one a run of `batches_per_epoch` batches
    /// an epoch reaches: `step = epoch * batches_per_epoch + batch_in_epoch`, the batch within
    /// the epoch. It is not when the training data or the file changed since the checkpoint.
    pub fn fits(&self, batches_per_epoch: u64) -> bool {
        self.batch_in_epoch <= batches_per_epoch
            && (self.epoch as u64)
                .checked_mul(batches_per_epoch)
                .and_then(|s| s.checked_add(self.batch_in_epoch))
                == Some(self.step)
    }
}

/// What determines all remaining randomness of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    /// The run's seed.
    pub seed: u64,
    /// How the noise key of a step's tensor is derived.
    pub noise_key: String,
}

impl RngState {
    /// The state of a run with `seed`.
    pub fn new(seed: u64) -> RngState {
        RngState {
            seed,
            noise_key: "NoiseKey::new(seed).derive(step).derive(parameter_index)".into(),
        }
    }
}

/// Writes a resumable checkpoint into `dir` (`dir/last.json` plus its step files).
pub fn save_last<B: Backend<Elem = f32>>(
    dir: &Path,
    model: &AvModel<B>,
    opt: &Optimizer<B>,
    mut sidecar: Sidecar,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let model_file = format!("step-{:08}.safetensors", sidecar.step);
    let optimizer_file = format!("step-{:08}.optim.safetensors", sidecar.step);
    let bytes = model_ckpt::to_bytes(model)?;
    write_file(&dir.join(&model_file), &bytes)?;
    let (scalars, opt_bytes) = opt.export(model.backend())?;
    write_file(&dir.join(&optimizer_file), &opt_bytes)?;
    sidecar.model_file = model_file.clone();
    sidecar.optimizer_file = optimizer_file.clone();
    sidecar.optimizer = scalars;
    let json = serde_json::to_vec_pretty(&sidecar).map_err(|e| TrainError::Checkpoint {
        path: dir.join("last.json"),
        message: e.to_string(),
    })?;
    write_file(&dir.join("last.json"), &json)?;
    // The new set is in place: older step files are no longer referenced.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("step-") && name != model_file && name != optimizer_file {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Writes the best model so far (`dir/best.safetensors`, atomically, with `best.json`).
pub fn save_best<B: Backend<Elem = f32>>(
    dir: &Path,
    model: &AvModel<B>,
    best: &Best,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let bytes = model_ckpt::to_bytes(model)?;
    write_file(&dir.join("best.safetensors"), &bytes)?;
    let json = serde_json::to_vec_pretty(best).map_err(|e| TrainError::Checkpoint {
        path: dir.join("best.json"),
        message: e.to_string(),
    })?;
    write_file(&dir.join("best.json"), &json)
}

/// Reads `dir/last.json`; `Ok(None)` when there is no checkpoint yet.
pub fn read_sidecar(dir: &Path) -> Result<Option<Sidecar>, TrainError> {
    let path = dir.join("last.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrainError::io(&path, e)),
    };
    let s: Sidecar = serde_json::from_slice(&text).map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        message: format!("not a valid checkpoint sidecar: {e}"),
    })?;
    if s.format != FORMAT {
        return Err(TrainError::Checkpoint {
            path,
            message: format!("format `{}`, expected `{FORMAT}`", s.format),
        });
    }
    Ok(Some(s))
}

/// Loads the checkpoint named by `dir/last.json` into `model` and `opt`.
pub fn load_last<B: Backend<Elem = f32>>(
    dir: &Path,
    model: &mut AvModel<B>,
    opt: &mut Optimizer<B>,
) -> Result<Option<Sidecar>, TrainError> {
    let Some(s) = read_sidecar(dir)? else {
        return Ok(None);
    };
    let model_path: PathBuf = dir.join(&s.model_file);
    model_ckpt::load(model, &model_path)?;
    let opt_path = dir.join(&s.optimizer_file);
    let bytes = std::fs::read(&opt_path).map_err(|e| TrainError::io(&opt_path, e))?;
    opt.import(model.backend(), &s.optimizer, &bytes, &opt_path)?;
    Ok(Some(s))
}
