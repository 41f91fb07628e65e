//! The backend boundary: every operation the model needs, over buffers the backend owns.
//!
//! The model ([`crate::engine::model`]) is written once against [`Backend`]; [`CpuBackend`]
//! implements it with the kernels of [`crate::engine::cpu`], and the CUDA backend implements
//! the same trait with device buffers. Parameters, gradients and running statistics live in
//! flat arenas (one buffer each); an operation reaches a tensor inside an arena by a
//! [`Region`]. Batch normalisation's weight and bias (and its running mean and variance) are
//! adjacent, so one region covers both.

use std::marker::PhantomData;
use std::ops::Range;

use crate::engine::cpu::conv::ScratchPool;
use crate::engine::cpu::{conv, elementwise as ew, linear, norm, pool};
use crate::engine::scalar::Scalar;

pub use crate::engine::cpu::conv::ConvGeom;
pub use crate::engine::cpu::linear::LinearSpec;
pub use crate::engine::cpu::norm::{BnAct, BN_SAVED};
pub use crate::engine::cpu::pool::PoolGeom;

/// A tensor inside an arena: `len` elements from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    /// First element.
    pub offset: usize,
    /// Number of elements.
    pub len: usize,
}

impl Region {
    /// The index range.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
    /// The first half (e.g. BN weight out of weight+bias).
    pub fn first_half(&self) -> Region {
        Region {
            offset: self.offset,
            len: self.len / 2,
        }
    }
    /// The second half.
    pub fn second_half(&self) -> Region {
        Region {
            offset: self.offset + self.len / 2,
            len: self.len / 2,
        }
    }
}

/// Hyper-parameters of one SGD step (PyTorch semantics, no dampening, no Nesterov).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor.
    pub momentum: f64,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
    /// Whether this is the first step (the momentum buffer is set to the gradient).
    pub first: bool,
}

/// Hyper-parameters of one Adam step (PyTorch semantics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Weight decay: L2 (added to the gradient) for Adam, decoupled for AdamW.
    pub weight_decay: f64,
    /// AdamW's decoupled decay (`p *= 1 - lr * wd`) instead of L2.
    pub decoupled: bool,
    /// 1-based step number (for bias correction).
    pub step: u64,
}

/// [`Backend::conv2d_bn_forward_train`] as two calls: the convolution, then the batch norm
/// reading its output. The trait's default, and a backend's own path where it cannot fuse.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_then_bn_forward_train<B: Backend + ?Sized>(
    b: &B,
    g: &ConvGeom,
    x: &B::Buf,
    params: &B::Buf,
    w: Region,
    conv_out: &mut B::Buf,
    bn: &BnTrain,
    state: &mut B::Buf,
    act: BnAct<&B::Buf>,
    y: Option<&mut B::Buf>,
    saved: &mut B::Buf,
) {
    b.conv2d_forward(g, x, params, w, conv_out);
    let (len, gb, rs) = (g.cols(), bn.gb, bn.rs);
    b.bn_forward_train(
        len,
        conv_out,
        params,
        gb,
        state,
        rs,
        bn.momentum,
        bn.eps,
        act,
        y,
        saved,
    );
}

/// A training-mode batch norm's parameters and settings, for
/// [`Backend::conv2d_bn_forward_train`]: weight then bias at `gb` (of `params`), running mean
/// then variance at `rs` (of `state`), the running statistics' momentum and the epsilon.
#[derive(Debug, Clone, Copy)]
pub struct BnTrain {
    /// Weight then bias, in the parameters.
    pub gb: Region,
    /// Running mean then variance, in the state.
    pub rs: Region,
    /// `running = (1 - momentum) running + momentum batch`.
    pub momentum: f64,
    /// Added to the variance.
    pub eps: f64,
}

/// The operations of the engine. Buffers are opaque to the model; lengths are given by the
/// geometry arguments and checked by the caller (the model validates user input first, so a
/// mismatch here is an engine bug and may panic).
///
/// # Conventions
/// Parameters of the same name mean the same in every method:
/// - `params`, `grads` and `state` are the arenas of the parameters, of their gradients and
///   of the running statistics; a [`Region`] argument (`w`, `gb`, `rs`, `bias`) locates a
///   tensor in them. A backward method writes a parameter's gradient at the parameter's place
///   in `grads`.
/// - An optional `dx` (the gradient of the input) is written only when given.
/// - `len` is, for batch norm, the number of values per channel and, for the element-wise
///   methods, the number of elements they touch, from the start of each buffer.
#[allow(clippy::too_many_arguments)]
pub trait Backend: Send + Sync {
    /// The element type.
    type Elem: Scalar;
    /// A buffer of elements.
    type Buf: Send + Sync;
    /// A buffer of `u32` indices (max-pooling arg-maxima).
    type IdxBuf: Send + Sync;

    /// A zero-filled buffer.
    fn zeros(&self, len: usize) -> Self::Buf;
    /// Gives `buf` exactly `len` elements, as `Vec::resize` with zeros: the first
    /// `min(old, len)` elements are kept (the model relies on it for its shared scratch
    /// buffers), new ones are zero. Reuses the allocation when possible.
    fn resize(&self, buf: &mut Self::Buf, len: usize);
    /// An empty index buffer.
    fn idx_empty(&self) -> Self::IdxBuf;
    /// Gives `buf` exactly `len` indices.
    fn idx_resize(&self, buf: &mut Self::IdxBuf, len: usize);
    /// Number of elements in `buf`.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// Copies `src` into `buf` from `offset`.
    fn write(&self, buf: &mut Self::Buf, offset: usize, src: &[Self::Elem]);
    /// A point in the work queued so far, for [`Backend::write_after`]: 0 (the default) where
    /// work runs in order anyway.
    fn mark(&self) -> u64 {
        0
    }
    /// [`Backend::write`], allowed to overlap the work queued since `after` (a
    /// [`Backend::mark`]; on a GPU the copy engine moves the bytes while that work's kernels
    /// run). Work queued after this call sees the write. The caller guarantees that the work
    /// queued since `after` does not use `buf`. The default is [`Backend::write`].
    fn write_after(&self, buf: &mut Self::Buf, offset: usize, src: &[Self::Elem], after: u64) {
        let _ = after;
        self.write(buf, offset, src);
    }
    /// Copies `range` of `buf` to the host.
    fn read(&self, buf: &Self::Buf, range: Range<usize>) -> Vec<Self::Elem>;
    /// Sets `range` of `buf` to `value`.
    fn fill(&self, buf: &mut Self::Buf, range: Range<usize>, value: Self::Elem);

    /// `y[b][a][inner] = x[a][b][inner]` (input layout to CNHW).
    fn swap_outer(&self, a: usize, b: usize, inner: usize, x: &Self::Buf, y: &mut Self::Buf);
    /// Convolution forward with the weight at `w`.
    fn conv2d_forward(
        &self,
        g: &ConvGeom,
        x: &Self::Buf,
        params: &Self::Buf,
        w: Region,
        y: &mut Self::Buf,
    );
    /// Convolution backward: the weight gradient (at `w`, overwritten) and `dx`: overwritten,
    /// or with `dx_add` the data gradient added to it, with the bits of writing it and then
    /// adding the old `dx` ([`Backend::add_assign`]); a residual block's two branches meet
    /// that way without a pass of their own where the backend can fuse the add.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward(
        &self,
        g: &ConvGeom,
        x: &Self::Buf,
        params: &Self::Buf,
        w: Region,
        dy: &Self::Buf,
        grads: &mut Self::Buf,
        dx: Option<&mut Self::Buf>,
        dx_add: bool,
    );
    /// Batch norm, training mode. `gb` is weight then bias, `rs` running mean then variance;
    /// `act` what the normalised output gets (a residual of `y`'s length); `y` `None`: no
    /// output, the statistics alone (for [`Backend::maxpool_forward`] applying them as it
    /// reads); `saved` receives [`BN_SAVED`] runs of `c` values: the batch mean,
    /// `1/sqrt(var+eps)`, the scale and the shift.
    fn bn_forward_train(
        &self,
        len: usize,
        x: &Self::Buf,
        params: &Self::Buf,
        gb: Region,
        state: &mut Self::Buf,
        rs: Region,
        momentum: f64,
        eps: f64,
        act: BnAct<&Self::Buf>,
        y: Option<&mut Self::Buf>,
        saved: &mut Self::Buf,
    );
    /// A convolution straight into a training-mode batch norm: [`Backend::conv2d_forward`]
    /// into `conv_out` (`g.out_len()` values), then [`Backend::bn_forward_train`] over its
    /// `g.cout` channels of `g.cols()` values (`y` `None`: the statistics alone). The default runs the two; a backend may take
    /// the batch norm's sums from the convolution's own pass instead of reading `conv_out`
    /// back (the CUDA backend: its GEMM's epilogue), the same statistics summed in another
    /// order (equal within f64 rounding).
    #[allow(clippy::too_many_arguments)]
    fn conv2d_bn_forward_train(
        &self,
        g: &ConvGeom,
        x: &Self::Buf,
        params: &Self::Buf,
        w: Region,
        conv_out: &mut Self::Buf,
        bn: &BnTrain,
        state: &mut Self::Buf,
        act: BnAct<&Self::Buf>,
        y: Option<&mut Self::Buf>,
        saved: &mut Self::Buf,
    ) {
        conv2d_then_bn_forward_train(self, g, x, params, w, conv_out, bn, state, act, y, saved);
    }
    /// Batch norm, evaluation mode (running statistics), then `act`.
    fn bn_forward_eval(
        &self,
        len: usize,
        x: &Self::Buf,
        params: &Self::Buf,
        gb: Region,
        state: &Self::Buf,
        rs: Region,
        eps: f64,
        act: BnAct<&Self::Buf>,
        y: &mut Self::Buf,
    );
    /// The evaluation batch norm's values (running statistics) in the [`BN_SAVED`] layout the
    /// training forward writes (`saved`, `BN_SAVED * gb.len / 2` values): for
    /// [`Backend::maxpool_forward`] to apply them as it reads, with
    /// [`Backend::bn_forward_eval`]'s bits.
    #[allow(clippy::too_many_arguments)]
    fn bn_eval_saved(
        &self,
        params: &Self::Buf,
        gb: Region,
        state: &Self::Buf,
        rs: Region,
        eps: f64,
        saved: &mut Self::Buf,
    );
    /// Batch norm backward (training mode). `relu`: the forward ran with [`BnAct::Relu`], so
    /// `dy` is first masked where its output was not positive (recomputed from `x` and
    /// `saved`). Writes the weight and bias gradients (at `gb`) and `dx`.
    fn bn_backward(
        &self,
        len: usize,
        x: &Self::Buf,
        params: &Self::Buf,
        gb: Region,
        saved: &Self::Buf,
        dy: &Self::Buf,
        relu: bool,
        grads: &mut Self::Buf,
        dx: &mut Self::Buf,
    );
    /// Max pooling forward with arg-maxima. `bn`: the saved values of the training batch norm
    /// whose input `x` is (its `y` not written, [`Backend::bn_forward_train`]), exactly
    /// [`BN_SAVED`] per channel (the channel count is its length over that; a plane's channel
    /// is its index over the planes per channel): each value read is first normalised with
    /// the saved scale and shift and ReLU'd, the bits of pooling that batch norm's
    /// [`BnAct::Relu`] output.
    fn maxpool_forward(
        &self,
        g: &PoolGeom,
        x: &Self::Buf,
        bn: Option<&Self::Buf>,
        y: &mut Self::Buf,
        idx: &mut Self::IdxBuf,
    );
    /// Max pooling backward (`dx` overwritten).
    fn maxpool_backward(
        &self,
        g: &PoolGeom,
        dy: &Self::Buf,
        idx: &Self::IdxBuf,
        dx: &mut Self::Buf,
    );
    /// Average over runs of `run` values: CNHW `[c][b*group][plane]` to features `[b][c]`.
    fn avgpool_forward(&self, c: usize, b: usize, run: usize, x: &Self::Buf, feat: &mut Self::Buf);
    /// Backward of [`Backend::avgpool_forward`].
    fn avgpool_backward(
        &self,
        c: usize,
        b: usize,
        run: usize,
        dfeat: &Self::Buf,
        dx: &mut Self::Buf,
    );
    /// `dy = 0` where `out <= 0`.
    fn relu_backward(&self, len: usize, out: &Self::Buf, dy: &mut Self::Buf);
    /// `y += x`.
    fn add_assign(&self, len: usize, y: &mut Self::Buf, x: &Self::Buf);
    /// Linear forward `y = x W^T + bias_scale * b`, with the weight at offset `spec.off` and
    /// the bias (if any) at `bias`.
    fn linear_forward(
        &self,
        spec: &LinearSpec,
        rows: usize,
        x: &Self::Buf,
        params: &Self::Buf,
        bias: Option<Region>,
        bias_scale: Self::Elem,
        y: &mut Self::Buf,
        accumulate: bool,
    );
    /// Linear backward: the weight gradient (at `spec.off`), the bias gradient (at `bias`)
    /// and `dx`.
    fn linear_backward(
        &self,
        spec: &LinearSpec,
        rows: usize,
        x: &Self::Buf,
        params: &Self::Buf,
        bias: Option<Region>,
        dy: &Self::Buf,
        grads: &mut Self::Buf,
        dx: Option<&mut Self::Buf>,
    );
    /// Gated fusion forward: `gate = sigmoid(gx)`, `z = gate * y`.
    fn gate_forward(&self, gx: &Self::Buf, y: &Self::Buf, gate: &mut Self::Buf, z: &mut Self::Buf);
    /// Gated fusion backward.
    fn gate_backward(
        &self,
        gate: &Self::Buf,
        y: &Self::Buf,
        dz: &Self::Buf,
        dgx: &mut Self::Buf,
        dy: &mut Self::Buf,
    );
    /// FiLM forward: `h = [gamma, beta]` rows of `2d`; `z = gamma * x + beta`.
    fn film_forward(&self, d: usize, h: &Self::Buf, x: &Self::Buf, z: &mut Self::Buf);
    /// FiLM backward.
    fn film_backward(
        &self,
        d: usize,
        h: &Self::Buf,
        x: &Self::Buf,
        dz: &Self::Buf,
        dh: &mut Self::Buf,
        dx: &mut Self::Buf,
    );
    /// One SGD step over whole arenas (`momentum_buf` has the arenas' length).
    fn sgd_step(
        &self,
        s: &SgdStep,
        params: &mut Self::Buf,
        grads: &Self::Buf,
        momentum_buf: &mut Self::Buf,
    );
    /// One Adam step over whole arenas.
    fn adam_step(
        &self,
        s: &AdamStep,
        params: &mut Self::Buf,
        grads: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
    );
}

/// The CPU backend: `Vec` buffers, rayon-parallel kernels, GEMM by `matrixmultiply`.
/// Threads come from rayon's global pool (`RAYON_NUM_THREADS`).
#[derive(Debug, Default)]
pub struct CpuBackend<T> {
    pool: ScratchPool<T>,
    _elem: PhantomData<T>,
}

impl<T: Scalar> CpuBackend<T> {
    /// The backend, with an empty pool of convolution scratch buffers.
    pub fn new() -> Self {
        CpuBackend {
            pool: ScratchPool::default(),
            _elem: PhantomData,
        }
    }
}

/// Chunk length for the optimisers' parallel passes.
const OPT_CHUNK: usize = 1 << 14;

impl<T: Scalar> Backend for CpuBackend<T> {
    type Elem = T;
    type Buf = Vec<T>;
    type IdxBuf = Vec<u32>;

    fn zeros(&self, len: usize) -> Vec<T> {
        vec![T::ZERO; len]
    }
    fn resize(&self, buf: &mut Vec<T>, len: usize) {
        buf.resize(len, T::ZERO);
    }
    fn idx_empty(&self) -> Vec<u32> {
        Vec::new()
    }
    fn idx_resize(&self, buf: &mut Vec<u32>, len: usize) {
        buf.resize(len, 0);
    }
    fn len(&self, buf: &Vec<T>) -> usize {
        buf.len()
    }
    fn write(&self, buf: &mut Vec<T>, offset: usize, src: &[T]) {
        buf[offset..offset + src.len()].copy_from_slice(src);
    }
    fn read(&self, buf: &Vec<T>, range: Range<usize>) -> Vec<T> {
        buf[range].to_vec()
    }
    fn fill(&self, buf: &mut Vec<T>, range: Range<usize>, value: T) {
        buf[range].fill(value);
    }
    fn swap_outer(&self, a: usize, b: usize, inner: usize, x: &Vec<T>, y: &mut Vec<T>) {
        ew::swap_outer(a, b, inner, &x[..a * b * inner], &mut y[..a * b * inner]);
    }
    fn conv2d_forward(&self, g: &ConvGeom, x: &Vec<T>, params: &Vec<T>, w: Region, y: &mut Vec<T>) {
        conv::conv2d_forward_with(
            &self.pool,
            g,
            &x[..g.in_len()],
            &params[w.range()],
            &mut y[..g.out_len()],
        );
    }
    fn conv2d_backward(
        &self,
        g: &ConvGeom,
        x: &Vec<T>,
        params: &Vec<T>,
        w: Region,
        dy: &Vec<T>,
        grads: &mut Vec<T>,
        dx: Option<&mut Vec<T>>,
        dx_add: bool,
    ) {
        let n = g.in_len();
        let mut run = |out: Option<&mut [T]>| {
            conv::conv2d_backward_with(
                &self.pool,
                g,
                &x[..n],
                &params[w.range()],
                &dy[..g.out_len()],
                &mut grads[w.range()],
                out,
            )
        };
        match dx {
            // Added: computed into a pooled buffer first, then one add per value (the pass the
            // caller's add_assign would make; the CPU's col2im scatter-adds its taps, so
            // starting from dx's old values would change the sum's order and bits).
            Some(d) if dx_add => {
                let mut t = self.pool.take(n);
                run(Some(&mut t[..n]));
                self.add_assign(n, d, &t);
                self.pool.give(t);
            }
            d => run(d.map(|d| &mut d[..n])),
        }
    }
    fn bn_forward_train(
        &self,
        len: usize,
        x: &Vec<T>,
        params: &Vec<T>,
        gb: Region,
        state: &mut Vec<T>,
        rs: Region,
        momentum: f64,
        eps: f64,
        act: BnAct<&Vec<T>>,
        y: Option<&mut Vec<T>>,
        saved: &mut Vec<T>,
    ) {
        let c = gb.len / 2;
        let (rm, rv) = state[rs.range()].split_at_mut(c);
        norm::bn_forward_train(
            len,
            &x[..c * len],
            &params[gb.first_half().range()],
            &params[gb.second_half().range()],
            act.map(|r| &r[..c * len]),
            y.map(|y| &mut y[..c * len]),
            &mut saved[..BN_SAVED * c],
            rm,
            rv,
            momentum,
            eps,
        );
    }
    fn bn_forward_eval(
        &self,
        len: usize,
        x: &Vec<T>,
        params: &Vec<T>,
        gb: Region,
        state: &Vec<T>,
        rs: Region,
        eps: f64,
        act: BnAct<&Vec<T>>,
        y: &mut Vec<T>,
    ) {
        let c = gb.len / 2;
        norm::bn_forward_eval(
            len,
            &x[..c * len],
            &params[gb.first_half().range()],
            &params[gb.second_half().range()],
            &state[rs.first_half().range()],
            &state[rs.second_half().range()],
            act.map(|r| &r[..c * len]),
            &mut y[..c * len],
            eps,
        );
    }
    fn bn_eval_saved(
        &self,
        params: &Vec<T>,
        gb: Region,
        state: &Vec<T>,
        rs: Region,
        eps: f64,
        saved: &mut Vec<T>,
    ) {
        let c = gb.len / 2;
        norm::bn_eval_saved(
            &params[gb.first_half().range()],
            &params[gb.second_half().range()],
            &state[rs.first_half().range()],
            &state[rs.second_half().range()],
            eps,
            &mut saved[..BN_SAVED * c],
        );
    }
    fn bn_backward(
        &self,
        len: usize,
        x: &Vec<T>,
        params: &Vec<T>,
        gb: Region,
        saved: &Vec<T>,
        dy: &Vec<T>,
        relu: bool,
        grads: &mut Vec<T>,
        dx: &mut Vec<T>,
    ) {
        let c = gb.len / 2;
        let (dg, db) = grads[gb.range()].split_at_mut(c);
        norm::bn_backward(
            len,
            &x[..c * len],
            &params[gb.first_half().range()],
            &saved[..BN_SAVED * c],
            &dy[..c * len],
            relu,
            &mut dx[..c * len],
            dg,
            db,
        );
    }
    fn maxpool_forward(
        &self,
        g: &PoolGeom,
        x: &Vec<T>,
        bn: Option<&Vec<T>>,
        y: &mut Vec<T>,
        idx: &mut Vec<u32>,
    ) {
        let (ni, no) = (g.planes * g.h * g.w, g.planes * g.oh() * g.ow());
        let bn = bn.map(|saved| {
            let c = saved.len() / BN_SAVED;
            (&saved[2 * c..3 * c], &saved[3 * c..4 * c])
        });
        pool::maxpool_forward(g, &x[..ni], bn, &mut y[..no], &mut idx[..no]);
    }
    fn maxpool_backward(&self, g: &PoolGeom, dy: &Vec<T>, idx: &Vec<u32>, dx: &mut Vec<T>) {
        let (ni, no) = (g.planes * g.h * g.w, g.planes * g.oh() * g.ow());
        pool::maxpool_backward(g, &dy[..no], &idx[..no], &mut dx[..ni]);
    }
    fn avgpool_forward(&self, c: usize, b: usize, run: usize, x: &Vec<T>, feat: &mut Vec<T>) {
        pool::avgpool_forward(c, b, run, &x[..c * b * run], &mut feat[..b * c]);
    }
    fn avgpool_backward(&self, c: usize, b: usize, run: usize, dfeat: &Vec<T>, dx: &mut Vec<T>) {
        pool::avgpool_backward(c, b, run, &dfeat[..b * c], &mut dx[..c * b * run]);
    }
    fn relu_backward(&self, len: usize, out: &Vec<T>, dy: &mut Vec<T>) {
        ew::relu_backward(&out[..len], &mut dy[..len]);
    }
    fn add_assign(&self, len: usize, y: &mut Vec<T>, x: &Vec<T>) {
        ew::add_assign(&mut y[..len], &x[..len]);
    }
    fn linear_forward(
        &self,
        spec: &LinearSpec,
        rows: usize,
        x: &Vec<T>,
        params: &Vec<T>,
        bias: Option<Region>,
        bias_scale: T,
        y: &mut Vec<T>,
        accumulate: bool,
    ) {
        linear::linear_forward(
            spec,
            rows,
            &x[..rows * spec.inp],
            params,
            bias.map(|b| &params[b.range()]),
            bias_scale,
            &mut y[..rows * spec.out],
            accumulate,
        );
    }
    fn linear_backward(
        &self,
        spec: &LinearSpec,
        rows: usize,
        x: &Vec<T>,
        params: &Vec<T>,
        bias: Option<Region>,
        dy: &Vec<T>,
        grads: &mut Vec<T>,
        dx: Option<&mut Vec<T>>,
    ) {
        // The weight block and the bias are disjoint regions of the gradient arena; take
        // the bias out first so both can be written.
        let mut db = bias.map(|b| grads[b.range()].to_vec());
        linear::linear_backward(
            spec,
            rows,
            &x[..rows * spec.inp],
            params,
            &dy[..rows * spec.out],
            grads,
            db.as_deref_mut(),
            dx.map(|d| &mut d[..rows * spec.inp]),
        );
        if let (Some(b), Some(db)) = (bias, db) {
            grads[b.range()].copy_from_slice(&db);
        }
    }
    fn gate_forward(&self, gx: &Vec<T>, y: &Vec<T>, gate: &mut Vec<T>, z: &mut Vec<T>) {
        let n = gx.len();
        ew::gate_forward(gx, &y[..n], &mut gate[..n], &mut z[..n]);
    }
    fn gate_backward(
        &self,
        gate: &Vec<T>,
        y: &Vec<T>,
        dz: &Vec<T>,
        dgx: &mut Vec<T>,
        dy: &mut Vec<T>,
    ) {
        let n = gate.len();
        ew::gate_backward(gate, &y[..n], &dz[..n], &mut dgx[..n], &mut dy[..n]);
    }
    fn film_forward(&self, d: usize, h: &Vec<T>, x: &Vec<T>, z: &mut Vec<T>) {
        let n = x.len();
        ew::film_forward(d, &h[..2 * n], x, &mut z[..n]);
    }
    fn film_backward(
        &self,
        d: usize,
        h: &Vec<T>,
        x: &Vec<T>,
        dz: &Vec<T>,
        dh: &mut Vec<T>,
        dx: &mut Vec<T>,
    ) {
        let n = x.len();
        ew::film_backward(d, &h[..2 * n], x, &dz[..n], &mut dh[..2 * n], &mut dx[..n]);
    }
    fn sgd_step(&self, s: &SgdStep, params: &mut Vec<T>, grads: &Vec<T>, buf: &mut Vec<T>) {
        use rayon::prelude::*;
        let (lr, m, wd) = (
            T::from_f64(s.lr),
            T::from_f64(s.momentum),
            T::from_f64(s.weight_decay),
        );
        params
            .par_chunks_mut(OPT_CHUNK)
            .zip(grads.par_chunks(OPT_CHUNK))
            .zip(buf.par_chunks_mut(OPT_CHUNK))
            .for_each(|((p, g), b)| {
                for i in 0..p.len() {
                    let d = g[i] + wd * p[i];
                    let step = if s.momentum == 0.0 {
                        d
                    } else {
                        b[i] = if s.first { d } else { m * b[i] + d };
                        b[i]
                    };
                    p[i] -= lr * step;
                }
            });
    }
    fn adam_step(
        &self,
        s: &AdamStep,
        params: &mut Vec<T>,
        grads: &Vec<T>,
        m: &mut Vec<T>,
        v: &mut Vec<T>,
    ) {
        use rayon::prelude::*;
        let bc1 = 1.0 - s.beta1.powi(s.step as i32);
        let bc2 = 1.0 - s.beta2.powi(s.step as i32);
        let step_size = T::from_f64(s.lr / bc1);
        let bc2_sqrt = T::from_f64(bc2.sqrt());
        let (b1, b2, eps) = (
            T::from_f64(s.beta1),
            T::from_f64(s.beta2),
            T::from_f64(s.eps),
        );
        let wd = T::from_f64(s.weight_decay);
        let decay = T::from_f64(1.0 - s.lr * s.weight_decay);
        params
            .par_chunks_mut(OPT_CHUNK)
            .zip(grads.par_chunks(OPT_CHUNK))
            .zip(m.par_chunks_mut(OPT_CHUNK).zip(v.par_chunks_mut(OPT_CHUNK)))
            .for_each(|((p, g), (mc, vc))| {
                for i in 0..p.len() {
                    let mut gi = g[i];
                    if s.decoupled {
                        p[i] *= decay;
                    } else {
                        gi += wd * p[i];
                    }
                    // PyTorch: exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2)
                    //   .addcmul_(grad, grad, 1 - beta2)
                    mc[i] += (gi - mc[i]) * (T::ONE - b1);
                    vc[i] = vc[i] * b2 + gi * gi * (T::ONE - b2);
                    let denom = vc[i].sqrt() / bc2_sqrt + eps;
                    p[i] -= step_size * (mc[i] / denom);
                }
            });
    }
}
