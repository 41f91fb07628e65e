//! Training steps on the engine's GPU backend ([`GpuBackend`], any [`Device`]: the CUDA GPU,
//! or the CPU emulator in the tests), with no host synchronisation in the steady state.
//!
//! A step queues everything on the device and returns: the forward pass (outputs stay on the
//! device), the loss stage as one kernel (`ogm_step_losses`: the fused, audio-only and
//! visual-only cross-entropies, the fused logits' gradient, part 1's scores and the balance's
//! coefficients, reading each logit row once), the backward pass, the statistics and
//! modulation kernels when the epoch modulates, and the optimiser update. The only per-step
//! host work is staging the batch: the model writes it with `Backend::write_after`, which on
//! CUDA copies it into page-locked memory, returns, and moves it on a copy stream while the
//! device still runs the previous step.
//!
//! Each step's scalars (losses, scores, ratios, coefficients) and what its kernels reported
//! (bad labels, non-finite logits or gradients) land in its own slot of a device ring of
//! [`LOG_SLOTS`] [`StepLog`]s. The host reads the ring in one copy when it is full, and when
//! the loop needs the records (a checkpoint, the end of an epoch): one wait every
//! [`LOG_SLOTS`] steps instead of several per step. A divergence is therefore found up to
//! [`LOG_SLOTS`] steps late; it is still reported with the step that diverged, the records
//! before it are kept, and no checkpoint is written after it (the loop reads the ring before
//! saving one).
//!
//! The semantics are the CPU step's (`train::step`): the same targets, noise keys
//! (`step_key(seed, step).derive(parameter index)`), window and coefficient rules.

use ogm_gpu::engine::ogm::{DeviceOgm, StepLog};
use ogm_gpu::engine::Device;
use ogm_gpu::{step_key, GpuError, Modality as GpuModality, StatusFlags, TensorList, TensorSpec};

use crate::data::loader::Batch;
use crate::engine::gpu::{DevBuf, GpuBackend};
use crate::engine::{AvModel, Backend, Modality, Mode as EngineMode};
use crate::run::metrics::StepRecord;

use super::optimizer::Optimizer;
use super::step::{input, modulation_targets, StepArgs, StepBackend};
use super::TrainError;

/// Steps that may be queued before the host reads their records (the device log ring).
pub const LOG_SLOTS: usize = 16;

/// A queued step: what its record needs besides its log slot.
#[derive(Debug, Clone, Copy)]
struct Pending {
    epoch: u32,
    step: u64,
    lr: f64,
}

/// The device step's state, kept in the backend's extension slot.
struct Queue<D: Device> {
    ogm: DeviceOgm<D>,
    /// The modulated tensors' specs (to notice a changed model) and names (for errors).
    specs: Vec<TensorSpec>,
    names: Vec<String>,
    labels: DevBuf<D>,
    pending: Vec<Pending>,
}

fn device_error(e: GpuError) -> TrainError {
    match e {
        // Say which settings size the device's share of the run.
        GpuError::OutOfMemory { .. } => TrainError::Device(format!(
            "{e}; the activations of a batch take most of it: lower --batch_size (or \
             --image_size, --audio_seconds, --fps, --model_width)"
        )),
        e => TrainError::Device(e.to_string()),
    }
}

/// The modulated tensors of `model`, as part 1's specs keyed by parameter index (computed
/// every step to notice a changed model: no allocation beyond the list).
fn target_specs<D: Device + 'static>(
    model: &AvModel<GpuBackend<D>>,
    all_weights: bool,
) -> Vec<TensorSpec> {
    modulation_targets(model.params_table(), all_weights)
        .map(|(i, t)| {
            let m = match t.modality {
                Modality::Audio => GpuModality::Audio,
                _ => GpuModality::Visual,
            };
            TensorSpec::new(t.region.offset, t.region.len, m, i as u64)
        })
        .collect()
}

/// The modulated tensors' names, in list order (for errors).
fn target_names<D: Device + 'static>(
    model: &AvModel<GpuBackend<D>>,
    all_weights: bool,
) -> Vec<String> {
    modulation_targets(model.params_table(), all_weights)
        .map(|(_, t)| t.name.clone())
        .collect()
}

/// Takes the queue out of the backend (so that the model can be borrowed mutably while it is
/// used), or `None` when there is none yet.
fn take_queue<D: Device + 'static>(model: &AvModel<GpuBackend<D>>) -> Option<Box<Queue<D>>> {
    let mut ext = model.backend().extension();
    match ext.take() {
        Some(b) => match b.downcast::<Queue<D>>() {
            Ok(q) => Some(q),
            Err(other) => {
                *ext = Some(other);
                None
            }
        },
        None => None,
    }
}

fn put_queue<D: Device + 'static>(model: &AvModel<GpuBackend<D>>, q: Box<Queue<D>>) {
    *model.backend().extension() = Some(q);
}

/// Reads the pending steps' logs and pushes their records; the first step that failed is
/// the error (the records before it are pushed).
fn drain<D: Device + 'static>(
    model: &AvModel<GpuBackend<D>>,
    q: &mut Queue<D>,
    done: &mut Vec<StepRecord>,
) -> Result<(), TrainError> {
    if q.pending.is_empty() {
        return Ok(());
    }
    let logs = q.ogm.read_logs(q.pending.len());
    model.backend().check()?;
    let logs = logs.map_err(device_error)?;
    let pending = std::mem::take(&mut q.pending);
    for (log, p) in logs.iter().zip(pending) {
        done.push(record(log, p, &q.names)?);
    }
    Ok(())
}

/// A step's record from its log, or the divergence it shows, named as the CPU step names it.
fn record(log: &StepLog, p: Pending, names: &[String]) -> Result<StepRecord, TrainError> {
    let diverged = |what: String| TrainError::Diverged {
        epoch: p.epoch,
        step: p.step,
        what,
    };
    let flags = StatusFlags(log.status.flags);
    if log.status.flags != 0 {
        let what = if flags.contains(StatusFlags::NONFINITE_GRADIENT)
            || flags.contains(StatusFlags::OVERFLOW)
        {
            let name = names
                .get(log.status.first_bad_tensor as usize)
                .map_or("an encoder tensor", String::as_str);
            format!("gradient of {name}: the device reported {flags}")
        } else if flags.contains(StatusFlags::NONFINITE_LOGIT) {
            format!("logits: the device reported {flags}")
        } else {
            format!(
                "batch labels: the device reported {flags} (labels must be below the class count)"
            )
        };
        return Err(diverged(what));
    }
    if !log.loss.is_finite() {
        return Err(diverged(format!("loss is {}", log.loss)));
    }
    let st = &log.state;
    Ok(StepRecord {
        epoch: p.epoch,
        step: p.step,
        loss: log.loss,
        loss_a: log.loss_a,
        loss_v: log.loss_v,
        score_a: st.score[0],
        score_v: st.score[1],
        ratio_v: (st.has_ratio != 0)
            .then_some(st.ratio[1])
            .filter(|r| r.is_finite()),
        coeff_a: st.applied[0],
        coeff_v: st.applied[1],
        lr: p.lr,
    })
}

/// Queues everything of one step after the batch's upload; errors are recorded in the backend
/// or returned (host-side validation).
fn enqueue<D: Device + 'static>(
    model: &mut AvModel<GpuBackend<D>>,
    q: &mut Queue<D>,
    args: &StepArgs<'_>,
    batch: &Batch,
    slot: usize,
) -> Result<(), TrainError> {
    let classes = model.config().classes;
    let n = batch.len();
    model.zero_grads();
    model.forward_queued(&input(batch), EngineMode::Train)?;
    let b = model.backend();
    b.idx_resize(&mut q.labels, n);
    let labels = q.labels.ptr();
    // SAFETY: labels holds n u32 (resized above); the bytes are the batch's labels.
    b.run(|| unsafe {
        b.device().upload(
            labels,
            std::slice::from_raw_parts(batch.labels.as_ptr().cast::<u8>(), 4 * n),
        )
    });
    let (_, out_a, out_v) = model.logit_buffers();
    let (out_a, out_v) = (out_a.ptr(), out_v.ptr());
    let ogm = &q.ogm;
    let schedule = args.schedule;
    let active = schedule.is_active(args.epoch);
    // SAFETY (the launches below): the model's logit buffers hold at least n x classes values
    // after its forward pass, labels n, dlogits is sized by backward_with, and the gradient
    // arena is the list's buffer.
    model.backward_with(|b, logits, dlogits| {
        // The loss stage in one kernel: the three losses, the logit gradient the backward
        // pass starts from, the scores and the coefficients.
        b.run(|| unsafe {
            ogm.step_losses(
                slot,
                logits.ptr(),
                out_a,
                out_v,
                labels,
                n,
                classes,
                dlogits.ptr(),
                schedule.alpha(),
                active,
            )
        })
    })?;
    if active {
        let grads = model.grads().ptr();
        let key = step_key(args.config.random_seed, args.step);
        let b = model.backend();
        // SAFETY: as above.
        b.run(|| unsafe { ogm.modulate(slot, grads, schedule.mode(), key) });
    }
    // A failed launch or allocation above is reported here, before the optimiser's step.
    model.backend().check()
}

impl<D: Device + 'static> StepBackend for GpuBackend<D> {
    fn queue_step(
        model: &mut AvModel<Self>,
        opt: &mut Optimizer<Self>,
        args: &StepArgs<'_>,
        batch: &Batch,
        done: &mut Vec<StepRecord>,
    ) -> Result<(), TrainError> {
        let all_weights = args.config.modulate_all_encoder_weights;
        let specs = target_specs(model, all_weights);
        let mut q = match take_queue(model) {
            Some(q) if q.specs == specs && q.ogm.batch() >= batch.len() => q,
            old => {
                // A new model layout or a larger batch: finish the old queue's steps first.
                if let Some(mut old) = old {
                    drain(model, &mut old, done)?;
                }
                let list =
                    TensorList::new(model.grads().len(), specs.clone()).map_err(device_error)?;
                let dev = model.backend().device().clone();
                Box::new(Queue {
                    ogm: DeviceOgm::new(dev, list, LOG_SLOTS, batch.len().max(1))
                        .map_err(device_error)?,
                    specs,
                    names: target_names(model, all_weights),
                    labels: model.backend().idx_empty(),
                    pending: Vec::with_capacity(LOG_SLOTS),
                })
            }
        };
        let r = (|| {
            if q.pending.len() == q.ogm.slots() {
                drain(model, &mut q, done)?;
            }
            let slot = q.pending.len();
            enqueue(model, &mut q, args, batch, slot)?;
            opt.step(model);
            model.backend().check()?;
            q.pending.push(Pending {
                epoch: args.epoch,
                step: args.step,
                lr: args.lr,
            });
            Ok(())
        })();
        put_queue(model, q);
        r
    }

    fn finish_steps(
        model: &mut AvModel<Self>,
        done: &mut Vec<StepRecord>,
    ) -> Result<(), TrainError> {
        let Some(mut q) = take_queue(model) else {
            return Ok(());
        };
        let r = drain(model, &mut q, done);
        put_queue(model, q);
        r
    }

    fn check(&self) -> Result<(), TrainError> {
        match self.take_error() {
            None => Ok(()),
            Some(e) => Err(device_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ogm_gpu::{BalanceState, DeviceStatus};

    fn log(flags: u32, bad: u32, loss: f64) -> StepLog {
        StepLog {
            state: BalanceState {
                score: [3.0, 1.5],
                ratio: [2.0, 0.5],
                coeff: [0.4, 1.0],
                applied: [0.4, 1.0],
                score_ok: [1, 1],
                has_ratio: 1,
                active: 1,
            },
            status: DeviceStatus {
                flags,
                first_bad_tensor: bad,
            },
            loss,
            loss_a: 1.0,
            loss_v: 2.0,
        }
    }

    const P: Pending = Pending {
        epoch: 3,
        step: 41,
        lr: 0.001,
    };

    #[test]
    fn a_clean_log_becomes_the_record() {
        let r = record(&log(0, u32::MAX, 0.5), P, &[]).unwrap();
        assert_eq!((r.epoch, r.step, r.lr), (3, 41, 0.001));
        assert_eq!((r.loss, r.loss_a, r.loss_v), (0.5, 1.0, 2.0));
        assert_eq!((r.score_a, r.score_v, r.ratio_v), (3.0, 1.5, Some(0.5)));
        assert_eq!((r.coeff_a, r.coeff_v), (0.4, 1.0));
        let mut no_ratio = log(0, u32::MAX, 0.5);
        no_ratio.state.has_ratio = 0;
        assert_eq!(record(&no_ratio, P, &[]).unwrap().ratio_v, None);
    }

    #[test]
    fn reported_problems_name_the_step_and_the_tensor() {
        let names = [
            "audio.conv1.weight".to_string(),
            "visual.conv1.weight".to_string(),
        ];
        let e = record(&log(StatusFlags::NONFINITE_GRADIENT, 1, 0.5), P, &names).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("epoch 3, step 41"), "{msg}");
        assert!(msg.contains("visual.conv1.weight"), "{msg}");
        let e = record(&log(StatusFlags::BAD_LABEL, u32::MAX, f64::NAN), P, &names).unwrap_err();
        assert!(e.to_string().contains("batch labels: "), "{e}");
        assert!(e.to_string().contains("label out of range"), "{e}");
        let e = record(
            &log(StatusFlags::NONFINITE_LOGIT, u32::MAX, f64::NAN),
            P,
            &names,
        );
        assert!(e.unwrap_err().to_string().contains("logits: "));
        let e = record(&log(0, u32::MAX, f64::INFINITY), P, &names).unwrap_err();
        assert!(e.to_string().contains("loss is inf"), "{e}");
    }
}
