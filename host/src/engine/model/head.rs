//! The fusion heads of the official code, and the per-modality logits OGM-GE scores.
//!
//! Per-modality logits (`out_a`, `out_v`), forward only:
//! * concat: the official formula `out_a = a W[:, :D]^T + b/2`, `out_v = v W[:, D:]^T + b/2`
//!   (training and evaluation alike);
//! * sum: the official code uses the full bias in training (`out_a = fc_x(a)`) and half of
//!   it in evaluation (`fc_x.weight a + fc_x.bias / 2`); both are kept;
//! * FiLM and gated: the official halving of `fc_out` does not fit these heads (its shapes
//!   crash). Our rule, the authors' suggestion for non-linear heads: run the whole head with
//!   the other modality's feature set to zero, `out_a = head(a, 0)`, `out_v = head(0, v)`.
//!   For FiLM this gives `out_a = fc_out(beta(a))` and `out_v = fc_out(gamma_0 * v + beta_0)`
//!   with `[gamma_0, beta_0] = fc.bias`; for gated `out_a = fc_out(sigmoid(fc_x(a)) * fc_y.bias)`
//!   and `out_v = fc_out(sigmoid(fc_x.bias) * fc_y(v))`. Same rule in training and evaluation.

use crate::engine::arena::TensorTable;
use crate::engine::backend::Backend;
use crate::engine::scalar::Scalar;

use super::config::FusionKind;
use super::encoder::{exact, Mode};
use super::layers::Linear;

/// Intermediate values of one head evaluation.
struct Work<B: Backend> {
    h: B::Buf,
    gx: B::Buf,
    gy: B::Buf,
    gate: B::Buf,
    z: B::Buf,
}

impl<B: Backend> Work<B> {
    fn new(b: &B) -> Self {
        Work {
            h: b.zeros(0),
            gx: b.zeros(0),
            gy: b.zeros(0),
            gate: b.zeros(0),
            z: b.zeros(0),
        }
    }
}

pub(crate) struct Head<B: Backend> {
    kind: FusionKind,
    d: usize,
    classes: usize,
    fc: Option<Linear>,
    fc_x: Option<Linear>,
    fc_y: Option<Linear>,
    fc_out: Option<Linear>,
    main: Work<B>,
    aux: Work<B>,
    zeros: B::Buf,
    pub(crate) logits: B::Buf,
    pub(crate) out_a: B::Buf,
    pub(crate) out_v: B::Buf,
    dz: B::Buf,
    dh: B::Buf,
    dgx: B::Buf,
    dgy: B::Buf,
    pub(crate) da: B::Buf,
    pub(crate) dv: B::Buf,
}

impl<B: Backend> Head<B> {
    pub(crate) fn new(
        b: &B,
        kind: FusionKind,
        d: usize,
        classes: usize,
        params: &mut TensorTable,
    ) -> Head<B> {
        let p = "fusion_module";
        let (mut fc, mut fc_x, mut fc_y, mut fc_out) = (None, None, None, None);
        match kind {
            FusionKind::Sum => {
                fc_x = Some(Linear::register(params, &format!("{p}.fc_x"), d, classes));
                fc_y = Some(Linear::register(params, &format!("{p}.fc_y"), d, classes));
            }
            FusionKind::Concat => {
                fc_out = Some(Linear::register(
                    params,
                    &format!("{p}.fc_out"),
                    2 * d,
                    classes,
                ));
            }
            FusionKind::Film => {
                fc = Some(Linear::register(params, &format!("{p}.fc"), d, 2 * d));
                fc_out = Some(Linear::register(params, &format!("{p}.fc_out"), d, classes));
            }
            FusionKind::Gated => {
                fc_x = Some(Linear::register(params, &format!("{p}.fc_x"), d, d));
                fc_y = Some(Linear::register(params, &format!("{p}.fc_y"), d, d));
                fc_out = Some(Linear::register(params, &format!("{p}.fc_out"), d, classes));
            }
        }
        Head {
            kind,
            d,
            classes,
            fc,
            fc_x,
            fc_y,
            fc_out,
            main: Work::new(b),
            aux: Work::new(b),
            zeros: b.zeros(0),
            logits: b.zeros(0),
            out_a: b.zeros(0),
            out_v: b.zeros(0),
            dz: b.zeros(0),
            dh: b.zeros(0),
            dgx: b.zeros(0),
            dgy: b.zeros(0),
            da: b.zeros(0),
            dv: b.zeros(0),
        }
    }

    /// Evaluates the head on `(a, v)` into `out`, keeping intermediates in `w`.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        b: &B,
        w: &mut Work<B>,
        a: &B::Buf,
        v: &B::Buf,
        rows: usize,
        params: &B::Buf,
        out: &mut B::Buf,
    ) {
        let one = B::Elem::ONE;
        let d = self.d;
        exact(b, out, rows * self.classes);
        match self.kind {
            FusionKind::Sum => {
                let (x, y) = (self.fc_x.as_ref().unwrap(), self.fc_y.as_ref().unwrap());
                b.linear_forward(&x.spec(), rows, a, params, Some(x.b), one, out, false);
                b.linear_forward(&y.spec(), rows, v, params, Some(y.b), one, out, true);
            }
            FusionKind::Concat => {
                let o = self.fc_out.as_ref().unwrap();
                b.linear_forward(&o.block(0, d), rows, a, params, Some(o.b), one, out, false);
                b.linear_forward(&o.block(d, d), rows, v, params, None, one, out, true);
            }
            FusionKind::Film => {
                let (f, o) = (self.fc.as_ref().unwrap(), self.fc_out.as_ref().unwrap());
                exact(b, &mut w.h, rows * 2 * d);
                exact(b, &mut w.z, rows * d);
                b.linear_forward(&f.spec(), rows, a, params, Some(f.b), one, &mut w.h, false);
                b.film_forward(d, &w.h, v, &mut w.z);
                b.linear_forward(&o.spec(), rows, &w.z, params, Some(o.b), one, out, false);
            }
            FusionKind::Gated => {
                let (x, y) = (self.fc_x.as_ref().unwrap(), self.fc_y.as_ref().unwrap());
                let o = self.fc_out.as_ref().unwrap();
                for buf in [&mut w.gx, &mut w.gy, &mut w.gate, &mut w.z] {
                    exact(b, buf, rows * d);
                }
                b.linear_forward(&x.spec(), rows, a, params, Some(x.b), one, &mut w.gx, false);
                b.linear_forward(&y.spec(), rows, v, params, Some(y.b), one, &mut w.gy, false);
                b.gate_forward(&w.gx, &w.gy, &mut w.gate, &mut w.z);
                b.linear_forward(&o.spec(), rows, &w.z, params, Some(o.b), one, out, false);
            }
        }
    }

    /// Fused logits (kept for backward) and per-modality logits, see the module docs.
    pub(crate) fn forward(
        &mut self,
        b: &B,
        mode: Mode,
        a: &B::Buf,
        v: &B::Buf,
        rows: usize,
        params: &B::Buf,
    ) {
        let mut main = std::mem::replace(&mut self.main, Work::new(b));
        let mut logits = std::mem::replace(&mut self.logits, b.zeros(0));
        self.run(b, &mut main, a, v, rows, params, &mut logits);
        self.main = main;
        self.logits = logits;

        let mut out_a = std::mem::replace(&mut self.out_a, b.zeros(0));
        let mut out_v = std::mem::replace(&mut self.out_v, b.zeros(0));
        exact(b, &mut out_a, rows * self.classes);
        exact(b, &mut out_v, rows * self.classes);
        let half = B::Elem::from_f64(0.5);
        let d = self.d;
        match self.kind {
            FusionKind::Sum => {
                let scale = if mode == Mode::Train {
                    B::Elem::ONE
                } else {
                    half
                };
                let (x, y) = (self.fc_x.as_ref().unwrap(), self.fc_y.as_ref().unwrap());
                b.linear_forward(
                    &x.spec(),
                    rows,
                    a,
                    params,
                    Some(x.b),
                    scale,
                    &mut out_a,
                    false,
                );
                b.linear_forward(
                    &y.spec(),
                    rows,
                    v,
                    params,
                    Some(y.b),
                    scale,
                    &mut out_v,
                    false,
                );
            }
            FusionKind::Concat => {
                let o = self.fc_out.as_ref().unwrap();
                b.linear_forward(
                    &o.block(0, d),
                    rows,
                    a,
                    params,
                    Some(o.b),
                    half,
                    &mut out_a,
                    false,
                );
                b.linear_forward(
                    &o.block(d, d),
                    rows,
                    v,
                    params,
                    Some(o.b),
                    half,
                    &mut out_v,
                    false,
                );
            }
            FusionKind::Film | FusionKind::Gated => {
                let mut zeros = std::mem::replace(&mut self.zeros, b.zeros(0));
                exact(b, &mut zeros, rows * d);
                b.fill(&mut zeros, 0..rows * d, B::Elem::ZERO);
                let mut aux = std::mem::replace(&mut self.aux, Work::new(b));
                self.run(b, &mut aux, a, &zeros, rows, params, &mut out_a);
                self.run(b, &mut aux, &zeros, v, rows, params, &mut out_v);
                self.aux = aux;
                self.zeros = zeros;
            }
        }
        self.out_a = out_a;
        self.out_v = out_v;
    }

    /// Backward from `dlogits` (on the device): head gradients into `grads`, feature
    /// gradients into `self.da`, `self.dv`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &mut self,
        b: &B,
        a: &B::Buf,
        v: &B::Buf,
        rows: usize,
        dlogits: &B::Buf,
        params: &B::Buf,
        grads: &mut B::Buf,
    ) {
        let d = self.d;
        exact(b, &mut self.da, rows * d);
        exact(b, &mut self.dv, rows * d);
        match self.kind {
            FusionKind::Sum => {
                let (x, y) = (self.fc_x.as_ref().unwrap(), self.fc_y.as_ref().unwrap());
                b.linear_backward(
                    &x.spec(),
                    rows,
                    a,
                    params,
                    Some(x.b),
                    dlogits,
                    grads,
                    Some(&mut self.da),
                );
                b.linear_backward(
                    &y.spec(),
                    rows,
                    v,
                    params,
                    Some(y.b),
                    dlogits,
                    grads,
                    Some(&mut self.dv),
                );
            }
            FusionKind::Concat => {
                let o = self.fc_out.as_ref().unwrap();
                b.linear_backward(
                    &o.block(0, d),
                    rows,
                    a,
                    params,
                    Some(o.b),
                    dlogits,
                    grads,
                    Some(&mut self.da),
                );
                b.linear_backward(
                    &o.block(d, d),
                    rows,
                    v,
                    params,
                    None,
                    dlogits,
                    grads,
                    Some(&mut self.dv),
                );
            }
            FusionKind::Film => {
                let (f, o) = (self.fc.as_ref().unwrap(), self.fc_out.as_ref().unwrap());
                exact(b, &mut self.dz, rows * d);
                exact(b, &mut self.dh, rows * 2 * d);
                b.linear_backward(
                    &o.spec(),
                    rows,
                    &self.main.z,
                    params,
                    Some(o.b),
                    dlogits,
                    grads,
                    Some(&mut self.dz),
                );
                b.film_backward(d, &self.main.h, v, &self.dz, &mut self.dh, &mut self.dv);
                b.linear_backward(
                    &f.spec(),
                    rows,
                    a,
                    params,
                    Some(f.b),
                    &self.dh,
                    grads,
                    Some(&mut self.da),
                );
            }
            FusionKind::Gated => {
                let (x, y) = (self.fc_x.as_ref().unwrap(), self.fc_y.as_ref().unwrap());
                let o = self.fc_out.as_ref().unwrap();
                for buf in [&mut self.dz, &mut self.dgx, &mut self.dgy] {
                    exact(b, buf, rows * d);
                }
                b.linear_backward(
                    &o.spec(),
                    rows,
                    &self.main.z,
                    params,
                    Some(o.b),
                    dlogits,
                    grads,
                    Some(&mut self.dz),
                );
                b.gate_backward(
                    &self.main.gate,
                    &self.main.gy,
                    &self.dz,
                    &mut self.dgx,
                    &mut self.dgy,
                );
                b.linear_backward(
                    &x.spec(),
                    rows,
                    a,
                    params,
                    Some(x.b),
                    &self.dgx,
                    grads,
                    Some(&mut self.da),
                );
                b.linear_backward(
                    &y.spec(),
                    rows,
                    v,
                    params,
                    Some(y.b),
                    &self.dgy,
                    grads,
                    Some(&mut self.dv),
                );
            }
        }
    }
}
