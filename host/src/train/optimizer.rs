//! The run's optimiser (SGD or Adam, as `--optimizer`), and its state in checkpoints.

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::config::{OptimizerKind, TrainConfig};
use crate::engine::{Adam, AvModel, Backend, Sgd};

use super::TrainError;

/// The official optimisers: SGD (momentum 0.9, weight decay 1e-4) or Adam (weight decay 1e-4),
/// over the backend `B` the model trains on.
pub enum Optimizer<B: Backend<Elem = f32>> {
    /// SGD with momentum.
    Sgd(Sgd<B>),
    /// Adam.
    Adam(Adam<B>),
}

/// An optimiser's scalar state (its buffers are stored as safetensors beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OptimizerState {
    /// `sgd` or `adam`.
    pub kind: String,
    /// Steps taken (Adam's bias correction needs it).
    pub steps: u64,
    /// Whether the buffers exist yet (they appear at the first step).
    pub has_buffers: bool,
}

impl<B: Backend<Elem = f32>> Optimizer<B> {
    /// The optimiser `config` asks for, at the initial learning rate.
    pub fn new(config: &TrainConfig) -> Optimizer<B> {
        match config.optimizer {
            OptimizerKind::Sgd => Optimizer::Sgd(Sgd::new(config.learning_rate, 0.9, 1e-4)),
            OptimizerKind::Adam => Optimizer::Adam(Adam::new(config.learning_rate, 1e-4)),
        }
    }

    /// Sets the learning rate (StepLR, once per epoch).
    pub fn set_lr(&mut self, lr: f64) {
        match self {
            Optimizer::Sgd(o) => o.lr = lr,
            Optimizer::Adam(o) => o.lr = lr,
        }
    }

    /// One update of every parameter.
    pub fn step(&mut self, model: &mut AvModel<B>) {
        match self {
            Optimizer::Sgd(o) => o.step(model),
            Optimizer::Adam(o) => o.step(model),
        }
    }

    /// The scalar state and a safetensors file of the buffers.
    pub fn export(&self, b: &B) -> Result<(OptimizerState, Vec<u8>), TrainError> {
        let (kind, steps, buffers): (&str, u64, Vec<(&str, Vec<f32>)>) = match self {
            Optimizer::Sgd(o) => (
                "sgd",
                0,
                o.export_state(b)
                    .map(|m| vec![("momentum_buffer", m)])
                    .unwrap_or_default(),
            ),
            Optimizer::Adam(o) => {
                let (steps, moments) = o.export_state(b);
                let bufs = moments
                    .map(|(m, v)| vec![("exp_avg", m), ("exp_avg_sq", v)])
                    .unwrap_or_default();
                ("adam", steps, bufs)
            }
        };
        let bytes: Vec<Vec<u8>> = buffers
            .iter()
            .map(|(_, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views: Vec<(&str, TensorView<'_>)> = buffers
            .iter()
            .zip(&bytes)
            .map(|((name, v), raw)| {
                TensorView::new(Dtype::F32, vec![v.len()], raw).map(|t| (*name, t))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| TrainError::Checkpoint {
                path: "optimizer state".into(),
                message: e.to_string(),
            })?;
        let file = safetensors::serialize(views, &None).map_err(|e| TrainError::Checkpoint {
            path: "optimizer state".into(),
            message: e.to_string(),
        })?;
        Ok((
            OptimizerState {
                kind: kind.into(),
                steps,
                has_buffers: !buffers.is_empty(),
            },
            file,
        ))
    }

    /// Restores what [`Optimizer::export`] wrote; `path` names the file in errors.
    pub fn import(
        &mut self,
        b: &B,
        state: &OptimizerState,
        bytes: &[u8],
        path: &Path,
    ) -> Result<(), TrainError> {
        let bad = |message: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let read = |name: &str| -> Result<Vec<f32>, TrainError> {
            let t = st
                .tensor(name)
                .map_err(|e| bad(format!("missing `{name}`: {e}")))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(format!("`{name}` is {:?}, expected F32", t.dtype())));
            }
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(bad(format!("`{name}` holds a non-finite value at {i}")));
            }
            Ok(v)
        };
        match (self, state.kind.as_str()) {
            (Optimizer::Sgd(o), "sgd") => {
                let m = state
                    .has_buffers
                    .then(|| read("momentum_buffer"))
                    .transpose()?;
                o.import_state(b, m.as_deref());
            }
            (Optimizer::Adam(o), "adam") => {
                let mv = if state.has_buffers {
                    Some((read("exp_avg")?, read("exp_avg_sq")?))
                } else {
                    None
                };
                o.import_state(
                    b,
                    state.steps,
                    mv.as_ref().map(|(m, v)| (m.as_slice(), v.as_slice())),
                );
            }
            (_, kind) => {
                return Err(bad(format!(
                    "the checkpoint's optimiser is `{kind}`, this run's is different"
                )))
            }
        }
        Ok(())
    }
}
