//! CPU references of the kernels, built on `ogm-core`: what every kernel is tested against.
//!
//! Each function computes what the corresponding kernel computes, with the device's handling
//! of per-tensor problems: a tensor `ogm-core` rejects is left untouched and the others are
//! still processed; the smallest rejected index is returned as
//! [`GpuError::TensorRejected`] (the device reports it through its status).

use ogm_core::{
    balance, batch_score, modulate_chunk, GradStats, Mode, NoiseKey, NoiseParams, CHUNK,
};

use crate::error::{GpuError, Result};
use crate::layout::TensorList;
use crate::state::BalanceState;

pub use crate::sgd::sgd_step;

/// `[s_a, s_v]`: the true-class score of each modality's logits (`ogm_core::batch_score`).
///
/// Errors: those of `batch_score` (shapes, labels, non-finite logits).
pub fn batch_scores(
    logits_audio: &[f32],
    logits_visual: &[f32],
    labels: &[u32],
    classes: usize,
) -> Result<[f64; 2]> {
    Ok([
        batch_score(logits_audio, labels, classes)?,
        batch_score(logits_visual, labels, classes)?,
    ])
}

/// The balance kernel's output for valid scores (`ogm_core::balance`); `active` says whether
/// the step modulates (then `applied = coeff`, else 1).
///
/// Errors: a negative or non-finite score or `alpha`.
pub fn balance_state(scores: [f64; 2], alpha: f64, active: bool) -> Result<BalanceState> {
    let b = balance(scores[0], scores[1], alpha)?;
    let coeff = [b.coeff_audio, b.coeff_visual];
    Ok(BalanceState {
        score: scores,
        ratio: b.ratio.map_or([f64::NAN; 2], |r| [r.audio, r.visual]),
        coeff,
        applied: if active { coeff } else { [1.0; 2] },
        score_ok: [1; 2],
        has_ratio: b.ratio.is_some() as u32,
        active: active as u32,
    })
}

fn check_buffer(grads_len: usize, list: &TensorList) -> Result<()> {
    if grads_len != list.buffer_len() {
        return Err(GpuError::LengthMismatch {
            what: "grads",
            expected: list.buffer_len(),
            got: grads_len,
        });
    }
    Ok(())
}

/// Statistics of every tensor of `list` (`ogm_core::GradStats::of`).
///
/// Errors: a buffer of the wrong length; a tensor with a non-finite value (the smallest index).
pub fn tensor_stats(grads: &[f32], list: &TensorList) -> Result<Vec<GradStats>> {
    check_buffer(grads.len(), list)?;
    list.specs()
        .iter()
        .enumerate()
        .map(|(index, s)| {
            GradStats::of(&grads[s.offset..s.offset + s.len])
                .map_err(|source| GpuError::TensorRejected { index, source })
        })
        .collect()
}

/// Modulates every tensor of `list` in place, `g <- k g` (`Ogm`) or `g <- k g + sigma z`
/// (`OgmGe`), from the given statistics (one per tensor) and applied coefficients
/// `[k_a, k_v]`, with the noise of tensor `t` drawn under `step_key.derive(noise_id[t])`
/// (`ogm_core::NoiseParams::new` and `ogm_core::modulate_chunk`, chunk by chunk). `Normal`
/// touches nothing.
///
/// Errors: a buffer or statistics list of the wrong length; a tensor `NoiseParams::new`
/// rejects (non-finite, or overflowing): it is left untouched, the others are modulated, and
/// the smallest such index is returned.
pub fn modulate(
    grads: &mut [f32],
    list: &TensorList,
    stats: &[GradStats],
    applied: [f64; 2],
    mode: Mode,
    step_key: NoiseKey,
) -> Result<()> {
    check_buffer(grads.len(), list)?;
    if stats.len() != list.len() {
        return Err(GpuError::LengthMismatch {
            what: "stats",
            expected: list.len(),
            got: stats.len(),
        });
    }
    if mode == Mode::Normal {
        return Ok(());
    }
    let mut first_error = None;
    for (index, (s, st)) in list.specs().iter().zip(stats).enumerate() {
        match NoiseParams::new(st, applied[s.modality.index()], mode) {
            Ok(p) => {
                let key = step_key.derive(s.noise_id);
                let tensor = &mut grads[s.offset..s.offset + s.len];
                for (c, chunk) in tensor.chunks_mut(CHUNK).enumerate() {
                    modulate_chunk(chunk, c as u64, p, key);
                }
            }
            Err(source) => {
                first_error.get_or_insert(GpuError::TensorRejected { index, source });
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Modality, TensorSpec};
    use ogm_core::modulate_tensor;

    #[test]
    fn modulate_matches_core_per_tensor() {
        let list = TensorList::new(
            5000,
            vec![
                TensorSpec::new(10, 2100, Modality::Audio, 7),
                TensorSpec::new(3000, 1999, Modality::Visual, 9),
            ],
        )
        .unwrap();
        let grads: Vec<f32> = (0..5000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3)
            .collect();
        let key = crate::layout::step_key(42, 3);
        let stats = tensor_stats(&grads, &list).unwrap();
        let mut got = grads.clone();
        modulate(&mut got, &list, &stats, [0.25, 1.0], Mode::OgmGe, key).unwrap();
        let mut want = grads.clone();
        modulate_tensor(&mut want[10..2110], Mode::OgmGe, 0.25, key.derive(7)).unwrap();
        modulate_tensor(&mut want[3000..4999], Mode::OgmGe, 1.0, key.derive(9)).unwrap();
        assert_eq!(got, want);
        assert_eq!(got[..10], grads[..10]);
    }

    #[test]
    fn rejected_tensors_are_left_alone() {
        let list = TensorList::packed(&[(Modality::Audio, 4), (Modality::Visual, 4)]).unwrap();
        let mut grads = vec![1.0f32, 2.0, 3.0, 4.0, 1.0, f32::NAN, 0.0, 0.0];
        assert!(matches!(
            tensor_stats(&grads, &list),
            Err(GpuError::TensorRejected { index: 1, .. })
        ));
        let stats = [
            GradStats::of(&grads[..4]).unwrap(),
            GradStats {
                count: 4,
                mean: f64::NAN,
                m2: f64::NAN,
                max_abs: 1.0,
            },
        ];
        let before = grads.clone();
        let err = modulate(
            &mut grads,
            &list,
            &stats,
            [0.5, 0.5],
            Mode::Ogm,
            NoiseKey::new(0),
        );
        assert!(matches!(
            err,
            Err(GpuError::TensorRejected { index: 1, .. })
        ));
        assert_eq!(grads[..4], [0.5, 1.0, 1.5, 2.0]);
        assert_eq!(
            grads[4..].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            before[4..].iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn balance_state_mirrors_core() {
        let s = balance_state([1.0, 2.0], 0.5, true).unwrap();
        assert_eq!(s.ratio, [0.5, 2.0]);
        assert_eq!(s.coeff[0], 1.0);
        assert_eq!(s.applied, s.coeff);
        let s = balance_state([0.0, 0.0], 0.5, true).unwrap();
        assert_eq!((s.has_ratio, s.coeff, s.applied), (0, [1.0; 2], [1.0; 2]));
        assert!(s.ratio[0].is_nan());
        let s = balance_state([3.0, 1.0], 0.5, false).unwrap();
        assert!(s.coeff[0] < 1.0);
        assert_eq!(s.applied, [1.0; 2]);
    }
}
