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
    y.par_chunks_mut(po)
        .zip(idx.par_chunks_mut(po))
        .enumerate()
        .for_each_init(Vec::new, |normed, (p, (yp, ip))| {
            let xp = &x[p * pi..(p + 1) * pi];
            // Each input value lies in up to ceil(k / stride)^2 windows (2.25 on average for
            // the stem's 3 / 2): normalise the plane once into a per-thread buffer rather than
            // on every read (the same bits either way).
            let plane = match bn {
                Some((scale, shift)) => {
                    let (sc, sh) = (scale[p / per_channel], shift[p / per_channel]);
                    normed.clear();
                    normed.extend(xp.iter().map(|&v| bn_relu(v, sc, sh)));
                    &normed[..]
                }
                None => xp,
            };
            pool_plane(g, plane, yp, ip);
        });
}

/// Max pooling of one plane (`x`: `h x w`) into `y` and `idx` (`oh x ow`).
fn pool_plane<T: Scalar>(g: &PoolGeom, x: &[T], y: &mut [T], idx: &mut [u32]) {
    let ow = g.ow();
    // The window's first and one-past-last index along an axis of length `len`, clamped.
    let span = |o: usize, len: usize| {
        let s = (o * g.stride) as isize - g.pad as isize;
        (
            s.max(0) as usize,
            ((s + g.k as isize).min(len as isize)) as usize,
        )
    };
    for (oy, (yr, ir)) in y.chunks_mut(ow).zip(idx.chunks_mut(ow)).enumerate() {
        let (ys, ye) = span(oy, g.h);
        for (ox, (yv, iv)) in yr.iter_mut().zip(ir.iter_mut()).enumerate() {
            let (xs, xe) = span(ox, g.w);
            // PyTorch's rule: start at -inf with the window's first index; take a value when
            // it is greater or NaN.
            let mut b = T::from_f64(f64::NEG_INFINITY);
            let mut i = ys * g.w + xs;
            for iy in ys..ye {
                let row = &x[iy * g.w..(iy + 1) * g.w];
                for (ix, &v) in row.iter().enumerate().take(xe).skip(xs) {
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
    }
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
