//! One training step and one evaluation pass, with the official semantics.

use ogm_core::{
    batch_score, modulate_chunk, GradStats, Mode, NoiseKey, NoiseParams, Schedule, StepPlan, CHUNK,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::loader::{Batch, Loader};
use crate::engine::{
    softmax_cross_entropy, AvModel, Backend, CpuBackend, Input, Modality, Mode as EngineMode,
    TensorInfo, TensorTable,
};
use crate::run::metrics::StepRecord;

use super::optimizer::Optimizer;
use super::TrainError;

/// Test-set results: loss and the three accuracies of the official evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Mean cross-entropy of the fused logits.
    pub loss: f64,
    /// Accuracy of `argmax(out)`.
    pub acc: f64,
    /// Accuracy of `argmax(out_a)`.
    pub acc_a: f64,
    /// Accuracy of `argmax(out_v)`.
    pub acc_v: f64,
    /// Samples evaluated.
    pub samples: usize,
}

pub(crate) fn input(b: &Batch) -> Input<'_, f32> {
    Input {
        batch: b.len(),
        audio: &b.audio,
        audio_hw: (b.audio_shape[2], b.audio_shape[3]),
        visual: &b.visual,
        visual_hw: (b.visual_shape[3], b.visual_shape[4]),
    }
}

fn argmax(row: &[f32]) -> usize {
    // The first maximum, as torch.argmax.
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// What one training step needs besides the model, the optimiser and the batch.
#[derive(Debug, Clone, Copy)]
pub struct StepArgs<'a> {
    /// OGM-GE's mode, alpha and window.
    pub schedule: &'a Schedule,
    /// The run's configuration (seed, modulation targets).
    pub config: &'a TrainConfig,
    /// The epoch (decides whether the step modulates).
    pub epoch: u32,
    /// The global step (1 for the first; the noise key's step word).
    pub step: u64,
    /// The learning rate of this epoch (logged).
    pub lr: f64,
}

/// How a backend runs training steps. The CPU runs each at once; a GPU queues them and the
/// host reads their logged scalars in batches, so the steady-state step never waits for the
/// device (`train::device`).
///
/// Both methods push the records of the steps that finished into `done`, oldest first, even
/// when they then return an error (the records of the steps before a divergence are kept).
pub trait StepBackend: Backend<Elem = f32> + Sized {
    /// Runs one training step on `batch` (forward, cross-entropy, backward, scores, OGM-GE,
    /// optimiser update), or queues it. Its record is pushed now (CPU) or by a later call.
    ///
    /// Errors: invalid input, a device failure, a diverged step (non-finite loss, logits or
    /// modulated gradients), named with its epoch and step.
    fn queue_step(
        model: &mut AvModel<Self>,
        opt: &mut Optimizer<Self>,
        args: &StepArgs<'_>,
        batch: &Batch,
        done: &mut Vec<StepRecord>,
    ) -> Result<(), TrainError>;

    /// Waits for every queued step and pushes their records (nothing to do on the CPU).
    ///
    /// Errors: as [`StepBackend::queue_step`], for the first queued step that failed.
    fn finish_steps(
        _model: &mut AvModel<Self>,
        _done: &mut Vec<StepRecord>,
    ) -> Result<(), TrainError> {
        Ok(())
    }

    /// The first error the backend met since the last call (none on the CPU).
    fn check(&self) -> Result<(), TrainError> {
        Ok(())
    }
}

impl StepBackend for CpuBackend<f32> {
    fn queue_step(
        model: &mut AvModel<Self>,
        opt: &mut Optimizer<Self>,
        args: &StepArgs<'_>,
        batch: &Batch,
        done: &mut Vec<StepRecord>,
    ) -> Result<(), TrainError> {
        done.push(host_step(model, opt, args, batch)?);
        Ok(())
    }
}

/// The tensors a step modulates, with their index in the parameter table (the last word of
/// their noise key): the official targets (4-D encoder weights) or, with `all_weights`, every
/// encoder parameter. The CPU and the GPU trainers both select through this.
pub(crate) fn modulation_targets(
    table: &TensorTable,
    all_weights: bool,
) -> impl Iterator<Item = (usize, &TensorInfo)> {
    table.iter().enumerate().filter(move |(_, t)| {
        if all_weights {
            t.modality != Modality::Fusion
        } else {
            t.is_modulation_target()
        }
    })
}

/// Applies a step's plan to the encoders' gradients: the official targets (4-D encoder
/// weights) or, with `all_weights`, every encoder parameter. Each tensor's noise key is
/// `NoiseKey::new(seed).derive(step).derive(parameter_index)` (the index in the parameter
/// table), the convention the GPU kernels share; chunks run in parallel with the same result
/// as serially.
#[allow(clippy::too_many_arguments)]
pub fn modulate_encoders(
    model: &mut AvModel<CpuBackend<f32>>,
    plan: &StepPlan,
    all_weights: bool,
    seed: u64,
    epoch: u32,
    step: u64,
) -> Result<(), TrainError> {
    if !plan.active {
        return Ok(());
    }
    let mode = if plan.noise { Mode::OgmGe } else { Mode::Ogm };
    let targets: Vec<(usize, std::ops::Range<usize>, f64, String)> =
        modulation_targets(model.params_table(), all_weights)
            .map(|(i, t)| {
                let k = match t.modality {
                    Modality::Audio => plan.coeff_audio,
                    _ => plan.coeff_visual,
                };
                (i, t.region.range(), k, t.name.clone())
            })
            .collect();
    let step_key = NoiseKey::new(seed).derive(step);
    let grads = model.grads_mut();
    for (index, range, coeff, name) in targets {
        if mode == Mode::Ogm && coeff == 1.0 {
            continue; // the identity
        }
        let g = &mut grads[range];
        let partials: Vec<GradStats> = g.par_chunks(CHUNK).map(GradStats::of_chunk).collect();
        let stats = partials
            .into_iter()
            .fold(GradStats::EMPTY, GradStats::merge);
        let p = NoiseParams::new(&stats, coeff, mode).map_err(|e| TrainError::Diverged {
            epoch,
            step,
            what: format!("gradient of {name}: {e}"),
        })?;
        let key = step_key.derive(index as u64);
        g.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, ch)| modulate_chunk(ch, c as u64, p, key));
    }
    Ok(())
}

/// One official training step on `batch`, run to the end on any backend: forward,
/// cross-entropy, backward, scores, OGM-GE, optimiser update. Returns the step's log record.
/// (The training loop queues steps instead, see [`StepBackend`]; on a GPU this call waits for
/// the device.)
#[allow(clippy::too_many_arguments)]
pub fn train_step<B: StepBackend>(
    model: &mut AvModel<B>,
    opt: &mut Optimizer<B>,
    schedule: &Schedule,
    config: &TrainConfig,
    batch: &Batch,
    epoch: u32,
    step: u64,
    lr: f64,
) -> Result<StepRecord, TrainError> {
    let args = StepArgs {
        schedule,
        config,
        epoch,
        step,
        lr,
    };
    let mut done = Vec::new();
    B::queue_step(model, opt, &args, batch, &mut done)?;
    B::finish_steps(model, &mut done)?;
    done.pop()
        .ok_or_else(|| TrainError::Device(format!("step {step} finished without a record")))
}

/// The CPU's step, with the official semantics on the host.
fn host_step(
    model: &mut AvModel<CpuBackend<f32>>,
    opt: &mut Optimizer<CpuBackend<f32>>,
    args: &StepArgs<'_>,
    batch: &Batch,
) -> Result<StepRecord, TrainError> {
    let StepArgs {
        schedule,
        config,
        epoch,
        step,
        lr,
    } = *args;
    let classes = model.config().classes;
    let diverged = |what: String| TrainError::Diverged { epoch, step, what };
    model.zero_grads();
    let out = model.forward(&input(batch), EngineMode::Train)?;
    let (loss, dlogits) = softmax_cross_entropy(&out.logits, &batch.labels, classes)?;
    if !loss.is_finite() {
        return Err(diverged(format!("loss is {loss}")));
    }
    model.backward(&dlogits)?;
    let (loss_a, _) = softmax_cross_entropy(&out.out_a, &batch.labels, classes)?;
    let (loss_v, _) = softmax_cross_entropy(&out.out_v, &batch.labels, classes)?;
    let score = |logits: &[f32], what: &str| {
        batch_score(logits, &batch.labels, classes).map_err(|e| diverged(format!("{what}: {e}")))
    };
    let score_a = score(&out.out_a, "audio logits")?;
    let score_v = score(&out.out_v, "visual logits")?;
    let plan = schedule
        .plan(epoch, score_a, score_v)
        .map_err(|e| diverged(e.to_string()))?;
    modulate_encoders(
        model,
        &plan,
        config.modulate_all_encoder_weights,
        config.random_seed,
        epoch,
        step,
    )?;
    opt.step(model);
    Ok(StepRecord {
        epoch,
        step,
        loss,
        loss_a,
        loss_v,
        score_a,
        score_v,
        ratio_v: plan
            .balance
            .ratio
            .map(|r| r.visual)
            .filter(|r| r.is_finite()),
        coeff_a: plan.coeff_audio,
        coeff_v: plan.coeff_visual,
        lr,
    })
}

/// Evaluates on every batch of `loader` (evaluation mode: BN running statistics).
pub fn evaluate<B: StepBackend>(
    model: &mut AvModel<B>,
    loader: &Loader,
    classes: usize,
) -> Result<EvalResult, TrainError> {
    let (mut n, mut loss, mut hit, mut hit_a, mut hit_v) = (0usize, 0.0, 0usize, 0usize, 0usize);
    for batch in loader.epoch(0) {
        let batch = batch?;
        let out = model.forward(&input(&batch), EngineMode::Eval)?;
        model.backend().check()?;
        let (l, _) = softmax_cross_entropy(&out.logits, &batch.labels, classes)?;
        loss += l * batch.len() as f64;
        for (i, &y) in batch.labels.iter().enumerate() {
            let row = i * classes..(i + 1) * classes;
            hit += (argmax(&out.logits[row.clone()]) == y as usize) as usize;
            hit_a += (argmax(&out.out_a[row.clone()]) == y as usize) as usize;
            hit_v += (argmax(&out.out_v[row]) == y as usize) as usize;
        }
        n += batch.len();
    }
    let d = n.max(1) as f64;
    Ok(EvalResult {
        loss: loss / d,
        acc: hit as f64 / d,
        acc_a: hit_a as f64 / d,
        acc_v: hit_v as f64 / d,
        samples: n,
    })
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 0.5, 0.5, 0.2]), 1);
        assert_eq!(argmax(&[3.0]), 0);
    }
}
