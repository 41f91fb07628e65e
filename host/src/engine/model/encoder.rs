//! The ResNet-18 encoder of the official code (no fc): 7x7/2 stem, BN, ReLU, 3x3/2 max-pool,
//! four stages of basic blocks, then average pooling over (T,) H, W into features.
//!
//! Activations stay in the backend's buffers between forward and backward; buffers are
//! reused from step to step (same batch shape: no allocation).

use crate::engine::arena::{Modality, TensorTable};
use crate::engine::backend::{Backend, BnAct, BnTrain, ConvGeom, PoolGeom, Region, BN_SAVED};
use crate::engine::error::{EngineError, Result};

use super::layers::{Bn, Conv, BN_EPS, BN_MOMENTUM};

/// Whether a forward pass trains (batch statistics, updates running statistics, keeps
/// what backward needs) or evaluates (running statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `model.train()`.
    Train,
    /// `model.eval()`.
    Eval,
}

/// Spatial size of a batch: samples, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Dims {
    n: usize,
    h: usize,
    w: usize,
}

/// Gives `buf` at least `len` elements (scratch buffers only grow).
pub(crate) fn ensure<B: Backend>(b: &B, buf: &mut B::Buf, len: usize) {
    if b.len(buf) < len {
        b.resize(buf, len);
    }
}

/// Gives `buf` exactly `len` elements.
pub(crate) fn exact<B: Backend>(b: &B, buf: &mut B::Buf, len: usize) {
    if b.len(buf) != len {
        b.resize(buf, len);
    }
}

/// Convolution `g` (weight `w`) of `x` into `c`, then batch norm `bn` of it with `act` into `y`
/// (`None`: not written, the consumer applies `saved` as it reads `c`, as the stem's max
/// pooling does). `saved` receives what the backward needs in training, and with `y` `None`
/// in evaluation the running statistics' values in the same layout
/// ([`Backend::bn_eval_saved`]). In training the backend gets both at once
/// ([`Backend::conv2d_bn_forward_train`]: it may take the statistics from the convolution's
/// own pass).
#[allow(clippy::too_many_arguments)]
fn conv_bn_forward<B: Backend>(
    b: &B,
    g: &ConvGeom,
    w: Region,
    bn: &Bn,
    mode: Mode,
    x: &B::Buf,
    c: &mut B::Buf,
    params: &B::Buf,
    state: &mut B::Buf,
    counters: &mut [(String, u64)],
    act: BnAct<&B::Buf>,
    mut y: Option<&mut B::Buf>,
    saved: &mut B::Buf,
) -> Result<()> {
    let len = g.cols();
    exact(b, c, g.out_len());
    if let Some(y) = y.as_deref_mut() {
        exact(b, y, bn.c * len);
    }
    match mode {
        Mode::Train => {
            if len < 2 {
                return Err(EngineError::TooFewValues {
                    what: bn.name.clone(),
                    count: len,
                });
            }
            exact(b, saved, BN_SAVED * bn.c);
            let spec = BnTrain {
                gb: bn.gb,
                rs: bn.rs,
                momentum: BN_MOMENTUM,
                eps: BN_EPS,
            };
            b.conv2d_bn_forward_train(g, x, params, w, c, &spec, state, act, y, saved);
            counters[bn.counter].1 += 1;
        }
        Mode::Eval => {
            b.conv2d_forward(g, x, params, w, c);
            match y {
                Some(y) => b.bn_forward_eval(len, c, params, bn.gb, state, bn.rs, BN_EPS, act, y),
                None => {
                    exact(b, saved, BN_SAVED * bn.c);
                    b.bn_eval_saved(params, bn.gb, state, bn.rs, BN_EPS, saved);
                }
            }
        }
    }
    Ok(())
}

/// A basic block with its saved activations.
struct Block<B: Backend> {
    conv1: Conv,
    bn1: Bn,
    conv2: Conv,
    bn2: Bn,
    down: Option<(Conv, Bn)>,
    inp: Dims,
    outd: Dims,
    c1: B::Buf,
    a1: B::Buf,
    s1: B::Buf,
    c2: B::Buf,
    s2: B::Buf,
    out: B::Buf,
    dc: B::Buf,
    dbn: B::Buf,
    sd: B::Buf,
}

impl<B: Backend> Block<B> {
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        b: &B,
        mode: Mode,
        x: &B::Buf,
        d: Dims,
        params: &B::Buf,
        state: &mut B::Buf,
        counters: &mut [(String, u64)],
    ) -> Result<Dims> {
        self.inp = d;
        let g1 = self.conv1.geom(d.n, d.h, d.w);
        let od = Dims {
            n: d.n,
            h: g1.oh(),
            w: g1.ow(),
        };
        self.outd = od;
        conv_bn_forward(
            b,
            &g1,
            self.conv1.w,
            &self.bn1,
            mode,
            x,
            &mut self.c1,
            params,
            state,
            counters,
            BnAct::Relu,
            Some(&mut self.a1),
            &mut self.s1,
        )?;
        // The shortcut first: the second batch norm adds it and applies the block's ReLU in
        // its own pass (BnAct::AddRelu).
        if let Some((dconv, dbn)) = &self.down {
            let gd = dconv.geom(d.n, d.h, d.w);
            conv_bn_forward(
                b,
                &gd,
                dconv.w,
                dbn,
                mode,
                x,
                &mut self.dc,
                params,
                state,
                counters,
                BnAct::Identity,
                Some(&mut self.dbn),
                &mut self.sd,
            )?;
        }
        let shortcut = if self.down.is_some() { &self.dbn } else { x };
        let g2 = self.conv2.geom(od.n, od.h, od.w);
        conv_bn_forward(
            b,
            &g2,
            self.conv2.w,
            &self.bn2,
            mode,
            &self.a1,
            &mut self.c2,
            params,
            state,
            counters,
            BnAct::AddRelu(shortcut),
            Some(&mut self.out),
            &mut self.s2,
        )?;
        Ok(od)
    }

    /// Backward: `s[0]` holds the gradient of the block output on entry and the gradient of
    /// the block input on exit.
    fn backward(
        &self,
        b: &B,
        x: &B::Buf,
        params: &B::Buf,
        grads: &mut B::Buf,
        s: &mut [B::Buf; 4],
    ) {
        let (d, od) = (self.inp, self.outd);
        let len = od.n * od.h * od.w;
        let out_total = self.conv2.cout * len;
        let in_total = self.conv1.cin * d.n * d.h * d.w;
        for buf in s.iter_mut() {
            ensure(b, buf, out_total.max(in_total));
        }
        let [s0, s1, s2, s3] = s;
        b.relu_backward(out_total, &self.out, s0);
        b.bn_backward(
            len,
            &self.c2,
            params,
            self.bn2.gb,
            &self.s2,
            s0,
            false,
            grads,
            s1,
        );
        let g2 = self.conv2.geom(od.n, od.h, od.w);
        b.conv2d_backward(
            &g2,
            &self.a1,
            params,
            self.conv2.w,
            s1,
            grads,
            Some(s2),
            false,
        );
        b.bn_backward(
            len,
            &self.c1,
            params,
            self.bn1.gb,
            &self.s1,
            s2,
            true,
            grads,
            s1,
        );
        // The two branches' input gradients meet in the second one's data gradient (dx_add):
        // no add pass of their own where the backend fuses it (the GPU does).
        let g1 = self.conv1.geom(d.n, d.h, d.w);
        if let Some((dconv, dbn)) = &self.down {
            b.conv2d_backward(&g1, x, params, self.conv1.w, s1, grads, Some(s3), false);
            b.bn_backward(
                len, &self.dc, params, dbn.gb, &self.sd, s0, false, grads, s1,
            );
            let gd = dconv.geom(d.n, d.h, d.w);
            b.conv2d_backward(&gd, x, params, dconv.w, s1, grads, Some(s3), true);
            std::mem::swap(s0, s3);
        } else {
            // The identity branch's gradient is s0 itself: conv1's is added to it in place.
            b.conv2d_backward(&g1, x, params, self.conv1.w, s1, grads, Some(s0), true);
        }
    }
}

/// One ResNet encoder with its saved activations.
pub(crate) struct Encoder<B: Backend> {
    cin: usize,
    width: usize,
    group: usize,
    stem: Conv,
    stem_bn: Bn,
    blocks: Vec<Block<B>>,
    x: B::Buf,
    stem_c: B::Buf,
    stem_s: B::Buf,
    pooled: B::Buf,
    pool_idx: B::IdxBuf,
    dims: [Dims; 3],
    feat_dims: Dims,
    pub(crate) feat: B::Buf,
}

impl<B: Backend> Encoder<B> {
    /// Registers the encoder's tensors under `prefix` (`audio_net` / `visual_net`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        b: &B,
        prefix: &str,
        modality: Modality,
        cin: usize,
        widths: [usize; 4],
        blocks: [usize; 4],
        group: usize,
        params: &mut TensorTable,
        state: &mut TensorTable,
        counters: &mut Vec<(String, u64)>,
    ) -> Encoder<B> {
        let stem = Conv::register(
            params,
            &format!("{prefix}.conv1"),
            modality,
            cin,
            widths[0],
            7,
            2,
            3,
        );
        let stem_bn = Bn::register(
            params,
            state,
            counters,
            &format!("{prefix}.bn1"),
            modality,
            widths[0],
        );
        let mut inplanes = widths[0];
        let mut list = Vec::new();
        for (stage, (&planes, &count)) in widths.iter().zip(&blocks).enumerate() {
            for i in 0..count {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let p = format!("{prefix}.layer{}.{i}", stage + 1);
                let conv1 = Conv::register(
                    params,
                    &format!("{p}.conv1"),
                    modality,
                    inplanes,
                    planes,
                    3,
                    stride,
                    1,
                );
                let bn1 = Bn::register(
                    params,
                    state,
                    counters,
                    &format!("{p}.bn1"),
                    modality,
                    planes,
                );
                let conv2 = Conv::register(
                    params,
                    &format!("{p}.conv2"),
                    modality,
                    planes,
                    planes,
                    3,
                    1,
                    1,
                );
                let bn2 = Bn::register(
                    params,
                    state,
                    counters,
                    &format!("{p}.bn2"),
                    modality,
                    planes,
                );
                let down = (stride != 1 || inplanes != planes).then(|| {
                    let c = Conv::register(
                        params,
                        &format!("{p}.downsample.0"),
                        modality,
                        inplanes,
                        planes,
                        1,
                        stride,
                        0,
                    );
                    let n = Bn::register(
                        params,
                        state,
                        counters,
                        &format!("{p}.downsample.1"),
                        modality,
                        planes,
                    );
                    (c, n)
                });
                list.push(Block {
                    conv1,
                    bn1,
                    conv2,
                    bn2,
                    down,
                    inp: Dims::default(),
                    outd: Dims::default(),
                    c1: b.zeros(0),
                    a1: b.zeros(0),
                    s1: b.zeros(0),
                    c2: b.zeros(0),
                    s2: b.zeros(0),
                    out: b.zeros(0),
                    dc: b.zeros(0),
                    dbn: b.zeros(0),
                    sd: b.zeros(0),
                });
                inplanes = planes;
            }
        }
        Encoder {
            cin,
            width: widths[3],
            group,
            stem,
            stem_bn,
            blocks: list,
            x: b.zeros(0),
            stem_c: b.zeros(0),
            stem_s: b.zeros(0),
            pooled: b.zeros(0),
            pool_idx: b.idx_empty(),
            dims: [Dims::default(); 3],
            feat_dims: Dims::default(),
            feat: b.zeros(0),
        }
    }

    /// Forward from a host input laid out `[batch][cin][group * h * w]` (NCHW, or the
    /// visual N,C,T,H,W); the features `[batch][width]` end in `self.feat`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &mut self,
        b: &B,
        mode: Mode,
        input: &B::Buf,
        batch: usize,
        h: usize,
        w: usize,
        params: &B::Buf,
        state: &mut B::Buf,
        counters: &mut [(String, u64)],
    ) -> Result<()> {
        let n = batch * self.group;
        // (B, C, T*H*W) -> (C, B*T, H, W): the engine's CNHW layout.
        exact(b, &mut self.x, self.cin * n * h * w);
        b.swap_outer(batch, self.cin, self.group * h * w, input, &mut self.x);
        let gs = self.stem.geom(n, h, w);
        let d1 = Dims {
            n,
            h: gs.oh(),
            w: gs.ow(),
        };
        conv_bn_forward(
            b,
            &gs,
            self.stem.w,
            &self.stem_bn,
            mode,
            &self.x,
            &mut self.stem_c,
            params,
            state,
            counters,
            BnAct::Relu,
            None,
            &mut self.stem_s,
        )?;
        let pg = self.pool_geom(d1);
        let d2 = Dims {
            n,
            h: pg.oh(),
            w: pg.ow(),
        };
        exact(b, &mut self.pooled, pg.planes * d2.h * d2.w);
        b.idx_resize(&mut self.pool_idx, pg.planes * d2.h * d2.w);
        // The pooling applies the stem's batch norm and ReLU as it reads the convolution's
        // output (the same bits as pooling the ReLU'd output, which is never stored).
        let bn = Some(&self.stem_s);
        b.maxpool_forward(&pg, &self.stem_c, bn, &mut self.pooled, &mut self.pool_idx);
        self.dims = [Dims { n, h, w }, d1, d2];
        let mut d = d2;
        for i in 0..self.blocks.len() {
            let (before, after) = self.blocks.split_at_mut(i);
            let x = if i == 0 {
                &self.pooled
            } else {
                &before[i - 1].out
            };
            d = after[0].forward(b, mode, x, d, params, state, counters)?;
        }
        self.feat_dims = d;
        let last = &self.blocks[self.blocks.len() - 1].out;
        exact(b, &mut self.feat, batch * self.width);
        b.avgpool_forward(
            self.width,
            batch,
            self.group * d.h * d.w,
            last,
            &mut self.feat,
        );
        Ok(())
    }

    fn pool_geom(&self, d1: Dims) -> PoolGeom {
        PoolGeom {
            planes: self.stem.cout * d1.n,
            h: d1.h,
            w: d1.w,
            k: 3,
            stride: 2,
            pad: 1,
        }
    }

    /// Backward from the feature gradient `dfeat` (`[batch][width]`), writing every
    /// parameter gradient of this encoder into `grads`.
    pub(crate) fn backward(
        &self,
        b: &B,
        dfeat: &B::Buf,
        params: &B::Buf,
        grads: &mut B::Buf,
        s: &mut [B::Buf; 4],
    ) {
        let d = self.feat_dims;
        let batch = d.n / self.group;
        ensure(b, &mut s[0], self.width * d.n * d.h * d.w);
        b.avgpool_backward(self.width, batch, self.group * d.h * d.w, dfeat, &mut s[0]);
        for i in (0..self.blocks.len()).rev() {
            let x = if i == 0 {
                &self.pooled
            } else {
                &self.blocks[i - 1].out
            };
            self.blocks[i].backward(b, x, params, grads, s);
        }
        let [_, d1, _] = self.dims;
        let pg = self.pool_geom(d1);
        let stem_len = self.stem.cout * d1.n * d1.h * d1.w;
        ensure(b, &mut s[1], stem_len);
        ensure(b, &mut s[2], stem_len);
        let [s0, s1, s2, _] = s;
        b.maxpool_backward(&pg, s0, &self.pool_idx, s1);
        b.bn_backward(
            d1.n * d1.h * d1.w,
            &self.stem_c,
            params,
            self.stem_bn.gb,
            &self.stem_s,
            s1,
            true,
            grads,
            s2,
        );
        let [d0, _, _] = self.dims;
        let gs = self.stem.geom(d0.n, d0.h, d0.w);
        b.conv2d_backward(&gs, &self.x, params, self.stem.w, s2, grads, None, false);
    }
}
