//! Max pooling (square window, stride, padding, PyTorch tie rule) and average pooling of
//! whole planes, over CNHW activations.

use rayon::prelude::*;

use super::norm::bn_relu;
use crate::engine::scalar::Scalar;

/// The shape of one max pooling over `planes` planes of `h x w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeom {
    /// Number of planes (`channels * samples`).
    pub planes: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding (implicit `-inf`).
    pub pad: usize,
}

impl PoolGeom {
    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
}

/// Forward: `y` and, per output, the index inside its input plane of the maximum (the first
/// one in scan order on ties, NaN wins, as PyTorch does). With `bn` = (scale, shift), one of
/// each per channel (CNHW: plane `p` is channel `p / (planes / channels)`), the input is a
/// batch norm's input and each value read is first `bn_relu(x, scale, shift)`: the bits of
/// pooling that batch norm's [`BnAct::Relu`] output, without storing it.
///
/// [`BnAct::Relu`]: super::norm::BnAct::Relu
pub fn maxpool_forward<T: Scalar>(
    g: &PoolGeom,
    x: &[T],
    bn: Option<(&[T], &[T])>,
    y: &mut [T],
    idx: &mut [u32],
) {
    let (pi, po) = (g.h * g.w, g.oh() * g.ow());
    assert_eq!(x.len(), g.planes * pi);
    assert_eq!(y.len(), g.planes * po);
    assert_eq!(idx.len(), g.planes * po);
    if let Some((scale, shift)) = bn {
        assert!(scale.len() == shift.len() && !scale.is_empty());
        assert_eq!(g.planes % scale.len(), 0, "planes per channel");
    }
    let per_channel = bn.map_or(1, |(scale, _)| g.planes / scale.len());
    let ow = g.ow();
    y.par_chunks_mut(po)
        .zip(idx.par_chunks_mut(po))
        .enumerate()
        .for_each(|(p, (yp, ip))| {
            let xp = &x[p * pi..(p + 1) * pi];
            let pre = bn.map(|(scale, shift)| (scale[p / per_channel], shift[p / per_channel]));
            let read = |v: T| pre.map_or(v, |(sc, sh)| bn_relu(v, sc, sh));
            for (o, (yv, iv)) in yp.iter_mut().zip(ip.iter_mut()).enumerate() {
                let (oy, ox) = (o / ow, o % ow);
                let y0 = (oy * g.stride) as isize - g.pad as isize;
                let x0 = (ox * g.stride) as isize - g.pad as isize;
                let (ys, ye) = (
                    y0.max(0) as usize,
                    ((y0 + g.k as isize).min(g.h as isize)) as usize,
                );
                let (xs, xe) = (
                    x0.max(0) as usize,
                    ((x0 + g.k as isize).min(g.w as isize)) as usize,
                );
                // PyTorch's rule: start at -inf with the window's first index; take a value
                // when it is greater or NaN.
                let mut b = T::from_f64(f64::NEG_INFINITY);
                let mut i = ys * g.w + xs;
                for iy in ys..ye {
                    for ix in xs..xe {
                        let v = read(xp[iy * g.w + ix]);
                        #[allow(clippy::eq_op)]
                        let is_nan = v != v;
                        if v > b || is_nan {
                            b = v;
                            i = iy * g.w + ix;
                        }
                    }
                }
                *yv = b;
                *iv = i as u32;
            }
        });
}

/// Backward: routes each output gradient to its recorded maximum; `dx` is overwritten.
pub fn maxpool_backward<T: Scalar>(g: &PoolGeom, dy: &[T], idx: &[u32], dx: &mut [T]) {
    let (pi, po) = (g.h * g.w, g.oh() * g.ow());
    assert_eq!(dy.len(), g.planes * po);
    assert_eq!(dx.len(), g.planes * pi);
    dx.par_chunks_mut(pi).enumerate().for_each(|(p, dxp)| {
        dxp.fill(T::ZERO);
        for (d, &i) in dy[p * po..(p + 1) * po]
            .iter()
            .zip(&idx[p * po..(p + 1) * po])
        {
            dxp[i as usize] += *d;
        }
    });
}

/// Average over groups: `x` is CNHW `[c][b * group][plane]`; `feat[b][c]` is the mean of the
/// `group * plane` values of sample `b` in channel `c`. With `group = T` frames this is the
/// official visual pooling over (T, H, W); with `group = 1`, the audio pooling over (H, W).
pub fn avgpool_forward<T: Scalar>(c: usize, b: usize, run: usize, x: &[T], feat: &mut [T]) {
    assert_eq!(x.len(), c * b * run);
    assert_eq!(feat.len(), b * c);
    let means: Vec<T> = x
        .par_chunks(run)
        .map(|r| T::from_f64(r.iter().map(|v| v.to_f64()).sum::<f64>() / run as f64))
        .collect();
    for ch in 0..c {
        for s in 0..b {
            feat[s * c + ch] = means[ch * b + s];
        }
    }
}

/// Backward of [`avgpool_forward`]: spreads `dfeat[b][c] / run` over the run.
pub fn avgpool_backward<T: Scalar>(c: usize, b: usize, run: usize, dfeat: &[T], dx: &mut [T]) {
    assert_eq!(dx.len(), c * b * run);
    assert_eq!(dfeat.len(), b * c);
    let inv = T::from_f64(1.0 / run as f64);
    dx.par_chunks_mut(run).enumerate().for_each(|(i, r)| {
        let (ch, s) = (i / b, i % b);
        r.fill(dfeat[s * c + ch] * inv);
    });
}
