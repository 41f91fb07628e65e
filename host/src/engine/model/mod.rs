//! The audio-visual classifier of the official code (`AVClassifier`): two ResNet encoders
//! and a fusion head, defined once over any [`Backend`].

mod config;
mod encoder;
mod head;
mod init;
mod layers;

pub use config::{FusionKind, ModelConfig, AUDIO_CHANNELS, VISUAL_CHANNELS};
pub use encoder::Mode;
pub use layers::{BN_EPS, BN_MOMENTUM};

use crate::engine::arena::{Modality, TensorInfo, TensorTable};
use crate::engine::backend::Backend;
use crate::engine::error::{check_len, EngineError, Result};
use crate::engine::scalar::Scalar;

use encoder::{exact, Encoder};
use head::Head;

/// One batch of inputs, on the host, in the official layouts.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a, T> {
    /// Samples in the batch.
    pub batch: usize,
    /// Spectrograms `(batch, 1, h, w)`, row-major.
    pub audio: &'a [T],
    /// Spectrogram height and width (257 x 188 for CREMA-D).
    pub audio_hw: (usize, usize),
    /// Frames `(batch, 3, T, h, w)`, row-major (the official visual input).
    pub visual: &'a [T],
    /// Frame height and width (224 x 224).
    pub visual_hw: (usize, usize),
}

/// What a forward pass returns (on the host): `[batch][classes]` logits and
/// `[batch][feature_dim]` features.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs<T> {
    /// Samples in the batch.
    pub batch: usize,
    /// Classes.
    pub classes: usize,
    /// Fused logits `out`, the ones the loss is taken on.
    pub logits: Vec<T>,
    /// Audio-only logits `out_a` (see [`FusionKind`] and the head rules in the crate docs).
    pub out_a: Vec<T>,
    /// Visual-only logits `out_v`.
    pub out_v: Vec<T>,
    /// Audio features `a` (pooled encoder output).
    pub feat_a: Vec<T>,
    /// Visual features `v`.
    pub feat_v: Vec<T>,
}

/// The model: configuration, arenas (parameters, gradients, running statistics), layers.
pub struct AvModel<B: Backend> {
    backend: B,
    config: ModelConfig,
    params_table: TensorTable,
    state_table: TensorTable,
    counters: Vec<(String, u64)>,
    params: B::Buf,
    grads: B::Buf,
    state: B::Buf,
    audio: Encoder<B>,
    visual: Encoder<B>,
    head: Head<B>,
    /// The input buffers: two sets, so that on a backend whose writes can overlap queued work
    /// (a GPU's copy engine, [`Backend::write_after`]) the next batch is uploaded while the
    /// previous step's kernels run. A backend without marks uses set 0 only.
    in_audio: [B::Buf; 2],
    in_visual: [B::Buf; 2],
    /// The set the next forward pass fills.
    in_next: usize,
    /// Per set, the mark after the work that last read it (its encoders' first kernels).
    in_free: [u64; 2],
    dlogits: B::Buf,
    scratch: [B::Buf; 4],
    trained_batch: Option<usize>,
}

impl<B: Backend> AvModel<B> {
    /// Builds the model and initialises it as the official `weight_init` does (conv
    /// kaiming-normal fan-out, linear xavier-normal with zero bias, BN weight 1, bias 0,
    /// running mean 0, variance 1), from `seed` deterministically.
    pub fn new(backend: B, config: ModelConfig, seed: u64) -> Result<AvModel<B>> {
        config.validate()?;
        let b = &backend;
        let mut params_table = TensorTable::default();
        let mut state_table = TensorTable::default();
        let mut counters = Vec::new();
        // PyTorch registers fusion_module first (AVClassifier.__init__), then the encoders.
        let head = Head::new(
            b,
            config.fusion,
            config.feature_dim(),
            config.classes,
            &mut params_table,
        );
        let audio = Encoder::new(
            b,
            "audio_net",
            Modality::Audio,
            AUDIO_CHANNELS,
            config.widths,
            config.blocks,
            1,
            &mut params_table,
            &mut state_table,
            &mut counters,
        );
        let visual = Encoder::new(
            b,
            "visual_net",
            Modality::Visual,
            VISUAL_CHANNELS,
            config.widths,
            config.blocks,
            config.frames,
            &mut params_table,
            &mut state_table,
            &mut counters,
        );
        let host_params = init::initial_params::<B::Elem>(&params_table, seed);
        let host_state = init::initial_state::<B::Elem>(&state_table);
        let mut params = b.zeros(params_table.total_len());
        b.write(&mut params, 0, &host_params);
        let mut state = b.zeros(state_table.total_len());
        b.write(&mut state, 0, &host_state);
        let grads = b.zeros(params_table.total_len());
        Ok(AvModel {
            config,
            params_table,
            state_table,
            counters,
            params,
            grads,
            state,
            audio,
            visual,
            head,
            in_audio: [b.zeros(0), b.zeros(0)],
            in_visual: [b.zeros(0), b.zeros(0)],
            in_next: 0,
            in_free: [0, 0],
            dlogits: b.zeros(0),
            scratch: [b.zeros(0), b.zeros(0), b.zeros(0), b.zeros(0)],
            trained_batch: None,
            backend,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }
    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// Names, shapes and regions of the trainable parameters (and of their gradients: the
    /// gradient arena has the same layout).
    pub fn params_table(&self) -> &TensorTable {
        &self.params_table
    }
    /// Names, shapes and regions of the running statistics.
    pub fn state_table(&self) -> &TensorTable {
        &self.state_table
    }
    /// `num_batches_tracked` of every BN layer, by state_dict key.
    pub fn batch_counters(&self) -> &[(String, u64)] {
        &self.counters
    }
    /// The parameter arena.
    pub fn params(&self) -> &B::Buf {
        &self.params
    }
    /// The parameter arena, mutable.
    pub fn params_mut(&mut self) -> &mut B::Buf {
        &mut self.params
    }
    /// The gradient arena (same layout as the parameters).
    pub fn grads(&self) -> &B::Buf {
        &self.grads
    }
    /// The gradient arena, mutable (OGM-GE modulates it in place).
    pub fn grads_mut(&mut self) -> &mut B::Buf {
        &mut self.grads
    }
    /// Parameters and gradients together (for optimisers).
    pub fn params_and_grads(&mut self) -> (&B, &mut B::Buf, &B::Buf) {
        (&self.backend, &mut self.params, &self.grads)
    }
    /// The running-statistics arena.
    pub fn state(&self) -> &B::Buf {
        &self.state
    }
    /// The OGM-GE modulation targets (4-D encoder weights) with their gradient regions.
    pub fn modulation_targets(&self) -> impl Iterator<Item = &TensorInfo> {
        self.params_table.modulation_targets()
    }

    /// Copies a named parameter or running statistic to the host.
    pub fn read_tensor(&self, name: &str) -> Result<Vec<B::Elem>> {
        if let Some(t) = self.params_table.get(name) {
            return Ok(self.backend.read(&self.params, t.region.range()));
        }
        if let Some(t) = self.state_table.get(name) {
            return Ok(self.backend.read(&self.state, t.region.range()));
        }
        Err(EngineError::UnknownName(name.to_string()))
    }

    /// Copies a named parameter's gradient to the host.
    pub fn read_grad(&self, name: &str) -> Result<Vec<B::Elem>> {
        let t = self
            .params_table
            .get(name)
            .ok_or_else(|| EngineError::UnknownName(name.to_string()))?;
        Ok(self.backend.read(&self.grads, t.region.range()))
    }

    /// Overwrites a named parameter or running statistic from the host.
    pub fn write_tensor(&mut self, name: &str, values: &[B::Elem]) -> Result<()> {
        let (buf, t) = if let Some(t) = self.params_table.get(name) {
            (&mut self.params, t)
        } else if let Some(t) = self.state_table.get(name) {
            (&mut self.state, t)
        } else {
            return Err(EngineError::UnknownName(name.to_string()));
        };
        check_len(name, t.region.len, values.len())?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(EngineError::NonFinite {
                what: name.to_string(),
                index: i,
            });
        }
        self.backend.write(buf, t.region.offset, values);
        Ok(())
    }

    /// Sets a `num_batches_tracked` counter.
    pub fn set_batch_counter(&mut self, name: &str, value: u64) -> Result<()> {
        let c = self
            .counters
            .iter_mut()
            .find(|(n, _)| n == name)
            .ok_or_else(|| EngineError::UnknownName(name.to_string()))?;
        c.1 = value;
        Ok(())
    }

    /// Sets every gradient to zero.
    pub fn zero_grads(&mut self) {
        let n = self.params_table.total_len();
        self.backend.fill(&mut self.grads, 0..n, B::Elem::ZERO);
    }

    fn validate(&self, x: &Input<'_, B::Elem>) -> Result<()> {
        if x.batch == 0 {
            return Err(EngineError::Config(
                "batch must hold at least one sample".into(),
            ));
        }
        let (ah, aw) = x.audio_hw;
        let (vh, vw) = x.visual_hw;
        if ah == 0 || aw == 0 || vh == 0 || vw == 0 {
            return Err(EngineError::Config(format!(
                "input planes must be non-empty, got audio {ah}x{aw}, visual {vh}x{vw}"
            )));
        }
        check_len(
            "audio input",
            x.batch * AUDIO_CHANNELS * ah * aw,
            x.audio.len(),
        )?;
        check_len(
            "visual input",
            x.batch * VISUAL_CHANNELS * self.config.frames * vh * vw,
            x.visual.len(),
        )?;
        for (what, data) in [("audio input", x.audio), ("visual input", x.visual)] {
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(EngineError::NonFinite {
                    what: what.into(),
                    index: i,
                });
            }
        }
        Ok(())
    }

    /// Forward pass. In [`Mode::Train`] batch statistics are used, running statistics and
    /// `num_batches_tracked` are updated, and what [`AvModel::backward`] needs is kept.
    pub fn forward(&mut self, x: &Input<'_, B::Elem>, mode: Mode) -> Result<Outputs<B::Elem>> {
        self.forward_queued(x, mode)?;
        let b = &self.backend;
        let n = x.batch * self.config.classes;
        let d = x.batch * self.config.feature_dim();
        Ok(Outputs {
            batch: x.batch,
            classes: self.config.classes,
            logits: b.read(&self.head.logits, 0..n),
            out_a: b.read(&self.head.out_a, 0..n),
            out_v: b.read(&self.head.out_v, 0..n),
            feat_a: b.read(&self.audio.feat, 0..d),
            feat_v: b.read(&self.visual.feat, 0..d),
        })
    }

    /// [`AvModel::forward`] without reading anything back: the outputs stay in the backend's
    /// buffers ([`AvModel::logit_buffers`]), so a device runs the pass without waiting for it.
    pub fn forward_queued(&mut self, x: &Input<'_, B::Elem>, mode: Mode) -> Result<()> {
        self.validate(x)?;
        self.trained_batch = None;
        let b = &self.backend;
        let set = self.in_next;
        let resized = b.len(&self.in_audio[set]) != x.audio.len()
            || b.len(&self.in_visual[set]) != x.visual.len();
        exact(b, &mut self.in_audio[set], x.audio.len());
        exact(b, &mut self.in_visual[set], x.visual.len());
        // The copy may overlap everything queued since the set's last reader; a resize queued
        // work on the new buffers (their zero fill), which the copy must follow.
        let after = if resized { b.mark() } else { self.in_free[set] };
        b.write_after(&mut self.in_audio[set], 0, x.audio, after);
        b.write_after(&mut self.in_visual[set], 0, x.visual, after);
        let (ah, aw) = x.audio_hw;
        let (vh, vw) = x.visual_hw;
        self.audio.forward(
            b,
            mode,
            &self.in_audio[set],
            x.batch,
            ah,
            aw,
            &self.params,
            &mut self.state,
            &mut self.counters,
        )?;
        self.visual.forward(
            b,
            mode,
            &self.in_visual[set],
            x.batch,
            vh,
            vw,
            &self.params,
            &mut self.state,
            &mut self.counters,
        )?;
        // The encoders read the input first thing (its layout change); nothing queued after
        // this point uses the set, so the forward pass after next may refill it.
        let mark = b.mark();
        self.in_free[set] = mark;
        if mark != 0 {
            self.in_next = 1 - set;
        }
        self.head.forward(
            b,
            mode,
            &self.audio.feat,
            &self.visual.feat,
            x.batch,
            &self.params,
        );
        if mode == Mode::Train {
            self.trained_batch = Some(x.batch);
        }
        Ok(())
    }

    /// The last forward pass's fused, audio-only and visual-only logits, in the backend's
    /// buffers (`[batch][classes]` at the front of each; a buffer may be longer).
    pub fn logit_buffers(&self) -> (&B::Buf, &B::Buf, &B::Buf) {
        (&self.head.logits, &self.head.out_a, &self.head.out_v)
    }

    /// Backward pass from the gradient of the loss with respect to the fused logits
    /// (`[batch][classes]`, e.g. from [`crate::engine::softmax_cross_entropy`]). Every
    /// gradient in the arena is overwritten (not accumulated).
    pub fn backward(&mut self, dlogits: &[B::Elem]) -> Result<()> {
        let batch = self.trained_batch.ok_or(EngineError::NoForward)?;
        check_len("logit gradient", batch * self.config.classes, dlogits.len())?;
        if let Some(i) = dlogits.iter().position(|v| !v.is_finite()) {
            return Err(EngineError::NonFinite {
                what: "logit gradient".into(),
                index: i,
            });
        }
        self.backward_with(|b, _, d| b.write(d, 0, dlogits))
    }

    /// Backward pass from a logit gradient that `grad` writes into the model's buffer
    /// (`[batch][classes]`, sized), given the backend and the fused logits: a device computes
    /// it where the logits are (a fused cross-entropy kernel) and nothing waits for it. Unlike
    /// [`AvModel::backward`] the gradient is not checked for non-finite values: that is
    /// `grad`'s to report.
    pub fn backward_with<R>(
        &mut self,
        grad: impl FnOnce(&B, &B::Buf, &mut B::Buf) -> R,
    ) -> Result<R> {
        let batch = self.trained_batch.ok_or(EngineError::NoForward)?;
        let b = &self.backend;
        exact(b, &mut self.dlogits, batch * self.config.classes);
        let r = grad(b, &self.head.logits, &mut self.dlogits);
        self.head.backward(
            b,
            &self.audio.feat,
            &self.visual.feat,
            batch,
            &self.dlogits,
            &self.params,
            &mut self.grads,
        );
        self.audio.backward(
            b,
            &self.head.da,
            &self.params,
            &mut self.grads,
            &mut self.scratch,
        );
        self.visual.backward(
            b,
            &self.head.dv,
            &self.params,
            &mut self.grads,
            &mut self.scratch,
        );
        Ok(r)
    }
}
