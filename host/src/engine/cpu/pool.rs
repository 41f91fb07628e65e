//! Max pooling (square window, stride, padding, PyTorch tie rule) and average pooling of
//! whole planes, over CNHW activations.

use rayon::prelude::*;

use super::norm::bn_relu;
use super::split_pairs;
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
/// Separable: each input row's window maxima first (per output column), then each output
/// row's maximum over its window's rows. PyTorch's scan visits a window row by row, taking a
/// value when it is greater than the best so far or NaN; running it over a row from `-inf`
/// gives that row's first maximum (or last NaN), and taking a row's result when it is greater
/// or NaN gives what the scan would have reached: the same values and indices as
/// [`maxpool_forward_direct`], with every inner loop over contiguous outputs (the row is split
/// into its `stride` phases first), so they vectorise.
///
/// [`BnAct::Relu`]: super::norm::BnAct::Relu
pub fn maxpool_forward<T: Scalar>(
    g: &PoolGeom,
    x: &[T],
    bn: Option<(&[T], &[T])>,
    y: &mut [T],
    idx: &mut [u32],
) {
    per_plane(
        g,
        x,
        bn,
        y,
        idx,
        RowMaxima::default,
        |rm, xp, bn, yp, ip| {
            match bn {
                Some((sc, sh)) => rm.fill(g, xp, |v| bn_relu(v, sc, sh)),
                None => rm.fill(g, xp, |v| v),
            }
            rm.pool_rows(g, yp, ip);
        },
    );
}

/// Runs `pool` on every plane in parallel, with per-thread scratch from `init`: the plane's
/// input, its channel's batch norm `(scale, shift)` if any, and its outputs. Panics unless
/// the buffers fit the geometry.
fn per_plane<T: Scalar, S>(
    g: &PoolGeom,
    x: &[T],
    bn: Option<(&[T], &[T])>,
    y: &mut [T],
    idx: &mut [u32],
    init: impl Fn() -> S + Sync + Send,
    pool: impl Fn(&mut S, &[T], Option<(T, T)>, &mut [T], &mut [u32]) + Sync + Send,
) {
    let (pi, po) = (g.h * g.w, g.oh() * g.ow());
    assert_eq!(x.len(), g.planes * pi);
    assert_eq!(y.len(), g.planes * po);
    assert_eq!(idx.len(), g.planes * po);
    assert!(g.pad < g.k && g.stride > 0, "pooling window: {g:?}");
    if let Some((scale, shift)) = bn {
        assert!(scale.len() == shift.len() && !scale.is_empty());
        assert_eq!(g.planes % scale.len(), 0, "planes per channel");
    }
    let per_channel = bn.map_or(1, |(scale, _)| g.planes / scale.len());
    y.par_chunks_mut(po)
        .zip(idx.par_chunks_mut(po))
        .enumerate()
        .for_each_init(init, |scratch, (p, (yp, ip))| {
            let ch = p / per_channel;
            let plane_bn = bn.map(|(scale, shift)| (scale[ch], shift[ch]));
            pool(scratch, &x[p * pi..(p + 1) * pi], plane_bn, yp, ip);
        });
}

/// PyTorch's step: take `v` when it is greater than the best `b` so far, or NaN. Both
/// comparisons are made (`|`, not `||`): no branch, so the loops over outputs vectorise.
#[inline(always)]
fn takes<T: Scalar>(v: T, b: T) -> bool {
    #[allow(clippy::eq_op)]
    let is_nan = v != v;
    (v > b) | is_nan
}

/// `(b[t], i[t]) = (v[t], c(t))` wherever [`takes`]`(v[t], b[t])`: one step of the scan for
/// a row of outputs at once. Every operand is read before the select: with a read inside
/// it (`else { i[t] }`), the compiler made that read conditional and the loop ran scalar,
/// a branch per lane.
#[inline(always)]
fn take_lanes<T: Scalar>(v: &[T], b: &mut [T], i: &mut [u32], c: impl Fn(usize) -> u32) {
    let n = v.len().min(b.len()).min(i.len());
    let (v, b, i) = (&v[..n], &mut b[..n], &mut i[..n]);
    for t in 0..n {
        let (x, bv, iv, ct) = (v[t], b[t], i[t], c(t));
        let take = takes(x, bv);
        b[t] = if take { x } else { bv };
        i[t] = if take { ct } else { iv };
    }
}

/// The window `[start, end)` of output position `o` along an axis of length `len`, clamped.
fn span(g: &PoolGeom, o: usize, len: usize) -> (usize, usize) {
    let s = (o * g.stride) as isize - g.pad as isize;
    (
        s.max(0) as usize,
        ((s + g.k as isize).min(len as isize)) as usize,
    )
}

/// Per-thread buffers of the separable pooling of one plane.
#[derive(Default)]
struct RowMaxima<T> {
    /// One input row, read through the batch norm if any, split into its `stride` phases:
    /// column `c` at `phases[(c % stride) * phase_len + c / stride]`.
    phases: Vec<T>,
    /// Per input row and output column: the window's maximum along the row, and its column.
    val: Vec<T>,
    col: Vec<u32>,
}

impl<T: Scalar> RowMaxima<T> {
    /// The row maxima of plane `x` (`h x w`), each value read as `read(v)`.
    fn fill(&mut self, g: &PoolGeom, x: &[T], read: impl Fn(T) -> T) {
        let (w, ow, s) = (g.w, g.ow(), g.stride);
        let plen = w.div_ceil(s);
        self.phases.resize(s * plen, T::ZERO);
        self.val.resize(g.h * ow, T::ZERO);
        self.col.resize(g.h * ow, 0);
        // Outputs whose window lies inside the row: ox * s >= pad and ox * s - pad + k <= w.
        let lo = g.pad.div_ceil(s).min(ow);
        let hi = if w + g.pad >= g.k {
            ((w + g.pad - g.k) / s + 1).clamp(lo, ow)
        } else {
            lo
        };
        for (iy, row) in x.chunks_exact(w).enumerate() {
            match s {
                2 => {
                    let (even, odd) = self.phases.split_at_mut(plen);
                    split_pairs(row, even, odd, &read);
                }
                _ => {
                    for (r, phase) in self.phases.chunks_exact_mut(plen).enumerate() {
                        for (p, &v) in phase.iter_mut().zip(row.iter().skip(r).step_by(s)) {
                            *p = read(v);
                        }
                    }
                }
            }
            let val = &mut self.val[iy * ow..(iy + 1) * ow];
            let col = &mut self.col[iy * ow..(iy + 1) * ow];
            // Inside: window offset j reads phase (ox*s + j - pad) % s at ox + const, and the
            // scan's start is the window's first element (taken unless -inf, and then the
            // start index is its own), so offset 0 is copied.
            for j in 0..g.k {
                if lo == hi {
                    break;
                }
                let off = j as isize - g.pad as isize;
                let (r, d) = (off.rem_euclid(s as isize), off.div_euclid(s as isize));
                let start = (r as usize * plen) as isize + d + lo as isize;
                let ph = &self.phases[start as usize..][..hi - lo];
                let (vs, cs) = (&mut val[lo..hi], &mut col[lo..hi]);
                let c0 = ((lo * s) as isize + off) as u32;
                let step = s as u32;
                if j == 0 {
                    vs.copy_from_slice(ph);
                    for (t, i) in cs.iter_mut().enumerate() {
                        *i = c0 + t as u32 * step;
                    }
                    continue;
                }
                take_lanes(ph, vs, cs, |t| c0 + t as u32 * step);
            }
            // The clipped windows at both ends, scanned directly.
            for ox in (0..lo).chain(hi..ow) {
                let (xs, xe) = span(g, ox, w);
                let (mut b, mut i) = (T::from_f64(f64::NEG_INFINITY), xs);
                for (c, &v) in row.iter().enumerate().take(xe).skip(xs) {
                    let v = read(v);
                    if takes(v, b) {
                        b = v;
                        i = c;
                    }
                }
                val[ox] = b;
                col[ox] = i as u32;
            }
        }
    }

    /// Each output row's maximum over its window's row maxima (the scan's row order).
    fn pool_rows(&self, g: &PoolGeom, y: &mut [T], idx: &mut [u32]) {
        let ow = g.ow();
        for (oy, (yr, ir)) in y.chunks_mut(ow).zip(idx.chunks_mut(ow)).enumerate() {
            let (ys, ye) = span(g, oy, g.h);
            for iy in ys..ye {
                let val = &self.val[iy * ow..(iy + 1) * ow];
                let col = &self.col[iy * ow..(iy + 1) * ow];
                let at = (iy * g.w) as u32;
                if iy == ys {
                    // The scan's start, as along the rows.
                    yr.copy_from_slice(val);
                    for (i, &c) in ir.iter_mut().zip(col) {
                        *i = at + c;
                    }
                    continue;
                }
                take_lanes(val, yr, ir, |t| at + col[t]);
            }
        }
    }
}

/// [`maxpool_forward`] window by window, as PyTorch's loop runs: the definition, kept as the
/// reference the tests and the benchmark compare the separable pooling against.
pub fn maxpool_forward_direct<T: Scalar>(
    g: &PoolGeom,
    x: &[T],
    bn: Option<(&[T], &[T])>,
    y: &mut [T],
    idx: &mut [u32],
) {
    per_plane(g, x, bn, y, idx, Vec::new, |normed, xp, bn, yp, ip| {
        let plane = match bn {
            Some((sc, sh)) => {
                normed.clear();
                normed.extend(xp.iter().map(|&v| bn_relu(v, sc, sh)));
                &normed[..]
            }
            None => xp,
        };
        pool_plane(g, plane, yp, ip);
    });
}

/// Max pooling of one plane (`x`: `h x w`) into `y` and `idx` (`oh x ow`), window by window.
fn pool_plane<T: Scalar>(g: &PoolGeom, x: &[T], y: &mut [T], idx: &mut [u32]) {
    let ow = g.ow();
    for (oy, (yr, ir)) in y.chunks_mut(ow).zip(idx.chunks_mut(ow)).enumerate() {
        let (ys, ye) = span(g, oy, g.h);
        for (ox, (yv, iv)) in yr.iter_mut().zip(ir.iter_mut()).enumerate() {
            let (xs, xe) = span(g, ox, g.w);
            // PyTorch's rule: start at -inf with the window's first index; take a value when
            // it is greater or NaN.
            let mut b = T::from_f64(f64::NEG_INFINITY);
            let mut i = ys * g.w + xs;
            for iy in ys..ye {
                let row = &x[iy * g.w..(iy + 1) * g.w];
                for (ix, &v) in row.iter().enumerate().take(xe).skip(xs) {
                    if takes(v, b) {
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
