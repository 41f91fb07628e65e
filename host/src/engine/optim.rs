//! Optimisers with PyTorch's exact update rules, over the whole parameter arena at once.

use crate::engine::backend::{AdamStep, Backend, SgdStep};
use crate::engine::model::AvModel;

/// `torch.optim.SGD(params, lr, momentum, weight_decay)` (no dampening, no Nesterov):
/// `d = g + wd * p`; `buf = d` on the first step, else `buf = momentum * buf + d`;
/// `p -= lr * buf`.
pub struct Sgd<B: Backend> {
    /// Learning rate (set it from a [`StepLr`] each epoch).
    pub lr: f64,
    /// Momentum factor.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    buf: Option<B::Buf>,
}

impl<B: Backend> Sgd<B> {
    /// A new optimiser with an empty momentum buffer.
    pub fn new(lr: f64, momentum: f64, weight_decay: f64) -> Sgd<B> {
        Sgd {
            lr,
            momentum,
            weight_decay,
            buf: None,
        }
    }

    /// The official settings: lr 1e-3, momentum 0.9, weight decay 1e-4.
    pub fn official() -> Sgd<B> {
        Sgd::new(1e-3, 0.9, 1e-4)
    }

    /// The momentum buffer (after the first step).
    pub fn momentum_buffer(&self) -> Option<&B::Buf> {
        self.buf.as_ref()
    }

    /// One update of every parameter of `model` from its gradient arena.
    pub fn step(&mut self, model: &mut AvModel<B>) {
        let (b, params, grads) = model.params_and_grads();
        let first = self.buf.is_none();
        let buf = self.buf.get_or_insert_with(|| b.zeros(b.len(params)));
        b.sgd_step(
            &SgdStep {
                lr: self.lr,
                momentum: self.momentum,
                weight_decay: self.weight_decay,
                first,
            },
            params,
            grads,
            buf,
        );
    }
}

/// `torch.optim.Adam` (or `AdamW` with `decoupled`), without amsgrad.
pub struct Adam<B: Backend> {
    /// Learning rate.
    pub lr: f64,
    /// `(beta1, beta2)`.
    pub betas: (f64, f64),
    /// Denominator epsilon.
    pub eps: f64,
    /// Weight decay (L2 for Adam, decoupled for AdamW).
    pub weight_decay: f64,
    /// AdamW.
    pub decoupled: bool,
    step: u64,
    moments: Option<(B::Buf, B::Buf)>,
}

impl<B: Backend> Adam<B> {
    /// Adam with PyTorch's defaults for betas (0.9, 0.999) and eps 1e-8.
    pub fn new(lr: f64, weight_decay: f64) -> Adam<B> {
        Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            decoupled: false,
            step: 0,
            moments: None,
        }
    }

    /// AdamW with PyTorch's defaults for betas and eps.
    pub fn adamw(lr: f64, weight_decay: f64) -> Adam<B> {
        Adam {
            decoupled: true,
            ..Adam::new(lr, weight_decay)
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update of every parameter of `model`.
    pub fn step(&mut self, model: &mut AvModel<B>) {
        let (b, params, grads) = model.params_and_grads();
        self.step += 1;
        let n = b.len(params);
        let (m, v) = self.moments.get_or_insert_with(|| (b.zeros(n), b.zeros(n)));
        b.adam_step(
            &AdamStep {
                lr: self.lr,
                beta1: self.betas.0,
                beta2: self.betas.1,
                eps: self.eps,
                weight_decay: self.weight_decay,
                decoupled: self.decoupled,
                step: self.step,
            },
            params,
            grads,
            m,
            v,
        );
    }
}

/// `torch.optim.lr_scheduler.StepLR`: `lr = base * gamma^(epoch / step_size)` (integer
/// division), stepped once per epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLr {
    /// The initial learning rate.
    pub base_lr: f64,
    /// Epochs between decays.
    pub step_size: u32,
    /// Decay factor.
    pub gamma: f64,
}

impl StepLr {
    /// The official schedule: step 70, gamma 0.1.
    pub fn official(base_lr: f64) -> StepLr {
        StepLr {
            base_lr,
            step_size: 70,
            gamma: 0.1,
        }
    }

    /// The learning rate during 0-based `epoch` (after `epoch` scheduler steps).
    pub fn lr_at(&self, epoch: u32) -> f64 {
        // PyTorch's StepLR multiplies by gamma at each boundary (chainable form), so the
        // value is a product, not a power: match its rounding.
        let mut lr = self.base_lr;
        for _ in 0..epoch / self.step_size.max(1) {
            lr *= self.gamma;
        }
        lr
    }
}

/// Optimiser state for checkpoints: what [`Sgd`] and [`Adam`] carry between steps, copied
/// to and from the host so that a resumed run continues exactly.
impl<B: Backend> Sgd<B> {
    /// The momentum buffer on the host (`None` before the first step).
    pub fn export_state(&self, backend: &B) -> Option<Vec<B::Elem>> {
        self.buf
            .as_ref()
            .map(|b| backend.read(b, 0..backend.len(b)))
    }

    /// Restores a momentum buffer saved by [`Sgd::export_state`] (`None`: before the first
    /// step). The length must be the parameter count.
    pub fn import_state(&mut self, backend: &B, state: Option<&[B::Elem]>) {
        self.buf = state.map(|s| {
            let mut b = backend.zeros(s.len());
            backend.write(&mut b, 0, s);
            b
        });
    }
}

impl<B: Backend> Adam<B> {
    /// The step count and the two moment buffers on the host (`None` before the first step).
    #[allow(clippy::type_complexity)]
    pub fn export_state(&self, backend: &B) -> (u64, Option<(Vec<B::Elem>, Vec<B::Elem>)>) {
        let moments = self.moments.as_ref().map(|(m, v)| {
            (
                backend.read(m, 0..backend.len(m)),
                backend.read(v, 0..backend.len(v)),
            )
        });
        (self.step, moments)
    }

    /// Restores what [`Adam::export_state`] saved.
    #[allow(clippy::type_complexity)]
    pub fn import_state(
        &mut self,
        backend: &B,
        step: u64,
        moments: Option<(&[B::Elem], &[B::Elem])>,
    ) {
        self.step = step;
        self.moments = moments.map(|(m, v)| {
            let (mut bm, mut bv) = (backend.zeros(m.len()), backend.zeros(v.len()));
            backend.write(&mut bm, 0, m);
            backend.write(&mut bv, 0, v);
            (bm, bv)
        });
    }
}
