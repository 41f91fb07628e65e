//! 2-D convolution (square kernel, stride, zero padding, no bias) as im2col + GEMM, and the
//! dispatch that sends the 3x3 stride-1 ones to [`winograd`].
//!
//! Samples are split into one part per thread; each part lowers a few samples at a time into
//! a private column buffer and multiplies. Parts write disjoint columns of the output, and
//! the weight gradient is summed over parts in part order, so results depend only on the
//! thread count.

use rayon::prelude::*;

use super::{gemm_rows, partition, row_splits, threads, winograd, Mat, SendPtr};
use crate::engine::scalar::Scalar;

/// The shape of one convolution over a CNHW batch (the GPU kernels' type, shared by both
/// backends).
pub use ogm_gpu::engine::ops::Conv as ConvGeom;

/// Samples lowered at once: enough for a few hundred columns, so that small late-stage planes
/// still give the GEMM a wide right-hand side.
fn samples_per_chunk(g: &ConvGeom) -> usize {
    let plane = g.oh() * g.ow();
    512usize.div_ceil(plane).max(1)
}

/// Lowers samples `n0..n1` of the CNHW input `x` into `col` (`kdim x cols`, row-major).
/// Every element of `col` is written (padding as zeros), so the buffer needs no clearing.
fn im2col<T: Scalar>(g: &ConvGeom, x: &[T], n0: usize, n1: usize, col: &mut [T]) {
    let (oh, ow) = (g.oh(), g.ow());
    let cols = (n1 - n0) * oh * ow;
    let plane = g.h * g.w;
    for ci in 0..g.cin {
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = (ci * g.k + ky) * g.k + kx;
                let dst = &mut col[row * cols..(row + 1) * cols];
                let (lo, hi) = valid_range(kx, g.pad, g.stride, g.w, ow);
                for n in n0..n1 {
                    let src = &x[(ci * g.n + n) * plane..(ci * g.n + n + 1) * plane];
                    for oy in 0..oh {
                        let d = &mut dst[((n - n0) * oh + oy) * ow..((n - n0) * oh + oy + 1) * ow];
                        let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                        if iy < 0 || iy >= g.h as isize {
                            d.fill(T::ZERO);
                            continue;
                        }
                        d[..lo].fill(T::ZERO);
                        d[hi..].fill(T::ZERO);
                        let srow = &src[iy as usize * g.w..(iy as usize + 1) * g.w];
                        if hi > lo {
                            let ix0 = lo * g.stride + kx - g.pad;
                            if g.stride == 1 {
                                d[lo..hi].copy_from_slice(&srow[ix0..ix0 + (hi - lo)]);
                            } else {
                                for (j, dv) in d[lo..hi].iter_mut().enumerate() {
                                    *dv = srow[ix0 + j * g.stride];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds the lowered gradient `col` back onto samples `n0..n1` of `dx` (which this part owns).
///
/// # Safety
/// `dx` must be valid for the whole CNHW input and this part must own samples `n0..n1`.
unsafe fn col2im<T: Scalar>(g: &ConvGeom, col: &[T], n0: usize, n1: usize, dx: SendPtr<T>) {
    let (oh, ow) = (g.oh(), g.ow());
    let cols = (n1 - n0) * oh * ow;
    let plane = g.h * g.w;
    for ci in 0..g.cin {
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = (ci * g.k + ky) * g.k + kx;
                let src = &col[row * cols..(row + 1) * cols];
                let (lo, hi) = valid_range(kx, g.pad, g.stride, g.w, ow);
                for n in n0..n1 {
                    // SAFETY: the plane (ci, n) belongs to this part's samples.
                    let dplane = unsafe {
                        std::slice::from_raw_parts_mut(dx.get().add((ci * g.n + n) * plane), plane)
                    };
                    for oy in 0..oh {
                        let s = &src[((n - n0) * oh + oy) * ow..((n - n0) * oh + oy + 1) * ow];
                        let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                        if iy < 0 || iy >= g.h as isize {
                            continue;
                        }
                        if hi <= lo {
                            continue;
                        }
                        let drow = &mut dplane[iy as usize * g.w..(iy as usize + 1) * g.w];
                        let ix0 = lo * g.stride + kx - g.pad;
                        for (j, sv) in s[lo..hi].iter().enumerate() {
                            drow[ix0 + j * g.stride] += *sv;
                        }
                    }
                }
            }
        }
    }
}

/// Output columns `lo..hi` whose input column `ox*stride + kx - pad` lies inside `0..w`.
fn valid_range(kx: usize, pad: usize, stride: usize, w: usize, ow: usize) -> (usize, usize) {
    // ox*stride + kx >= pad  <=>  ox >= ceil((pad - kx) / stride)
    let lo = if kx >= pad {
        0
    } else {
        (pad - kx).div_ceil(stride)
    };
    // ox*stride + kx - pad <= w - 1  <=>  ox <= (w - 1 + pad - kx) / stride
    let hi = if w + pad > kx {
        ((w - 1 + pad - kx) / stride + 1).min(ow)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// How a convolution's samples are cut into parallel parts, and each part into chunks of
/// `per` samples lowered at once. Depends only on the sizes and the thread count.
fn plan(g: &ConvGeom) -> (Vec<std::ops::Range<usize>>, usize) {
    let per = samples_per_chunk(g);
    let chunks = g.n.div_ceil(per);
    // Up to two parts per thread: some slack for the scheduler without many small GEMMs.
    (partition(g.n, chunks.min(2 * threads())), per)
}

/// Forward: `y = conv(x, w)`, `x` CNHW `[cin][n][h][w]`, `w` `[cout][cin][k][k]`, `y` CNHW.
pub fn conv2d_forward<T: Scalar>(g: &ConvGeom, x: &[T], w: &[T], y: &mut [T]) {
    conv2d_forward_with(&ScratchPool::default(), g, x, w, y)
}

/// [`conv2d_forward`] drawing its buffers from `pool`: Winograd F(2x2, 3x3) where it
/// [applies](winograd::applies), im2col + GEMM elsewhere.
pub fn conv2d_forward_with<T: Scalar>(
    pool: &ScratchPool<T>,
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    y: &mut [T],
) {
    if winograd::applies(g) {
        winograd::forward_with(pool, g, x, w, y)
    } else {
        im2col_forward_with(pool, g, x, w, y)
    }
}

/// The forward pass as im2col + GEMM, for every geometry.
pub fn im2col_forward_with<T: Scalar>(
    pool: &ScratchPool<T>,
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    y: &mut [T],
) {
    check_forward(g, x, w, y);
    let plane_out = g.oh() * g.ow();
    let ntot = g.n * plane_out;
    let kdim = g.kdim();
    let (parts, per) = plan(g);
    // Fewer sample parts than threads (late layers, small batches): each product is also cut
    // into row blocks, so that the idle threads take a share.
    let splits = row_splits(g.cout, parts.len());
    let yp = SendPtr(y.as_mut_ptr());
    parts.into_par_iter().for_each(|part| {
        let mut col = pool.take(kdim * per.min(part.len()) * plane_out);
        let mut n0 = part.start;
        while n0 < part.end {
            let n1 = (n0 + per).min(part.end);
            let cols = (n1 - n0) * plane_out;
            im2col(g, x, n0, n1, &mut col[..kdim * cols]);
            // SAFETY: this part alone writes columns n0*plane_out..n1*plane_out of every row.
            unsafe {
                gemm_rows(
                    splits,
                    g.cout,
                    kdim,
                    cols,
                    T::ONE,
                    Mat::rm(w, kdim),
                    Mat::rm(&col, cols),
                    T::ZERO,
                    yp.get().add(n0 * plane_out),
                    ntot,
                )
            };
            n0 = n1;
        }
        pool.give(col);
    });
}

/// Backward: the weight gradient `dw` (overwritten) and, when asked, the input gradient
/// `dx` (overwritten), from the output gradient `dy`.
pub fn conv2d_backward<T: Scalar>(
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    dy: &[T],
    dw: &mut [T],
    dx: Option<&mut [T]>,
) {
    conv2d_backward_with(&ScratchPool::default(), g, x, w, dy, dw, dx)
}

/// [`conv2d_backward`] drawing its buffers from `pool`: Winograd F(2x2, 3x3) where it
/// [applies](winograd::applies), im2col + GEMM elsewhere.
pub fn conv2d_backward_with<T: Scalar>(
    pool: &ScratchPool<T>,
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    dy: &[T],
    dw: &mut [T],
    dx: Option<&mut [T]>,
) {
    if winograd::applies(g) {
        winograd::backward_with(pool, g, x, w, dy, dw, dx)
    } else {
        im2col_backward_with(pool, g, x, w, dy, dw, dx)
    }
}

/// The backward pass as im2col + GEMM, for every geometry.
pub fn im2col_backward_with<T: Scalar>(
    pool: &ScratchPool<T>,
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    dy: &[T],
    dw: &mut [T],
    dx: Option<&mut [T]>,
) {
    check_backward(g, x, w, dy, dw);
    if g.n == 0 {
        // An empty batch: no gradient (the one part below would return its pooled buffer
        // unwritten), and dx has no elements.
        dw.fill(T::ZERO);
        return;
    }
    let plane_out = g.oh() * g.ow();
    let ntot = g.n * plane_out;
    let kdim = g.kdim();
    let (parts, per) = plan(g);
    // As in the forward pass: spare threads take row blocks of each product.
    let (dw_splits, dcol_splits) = (
        row_splits(g.cout, parts.len()),
        row_splits(kdim, parts.len()),
    );
    let dxp = dx.map(|d| {
        assert_eq!(d.len(), g.in_len());
        SendPtr(d.as_mut_ptr())
    });
    let partials: Vec<Vec<T>> = parts
        .into_par_iter()
        .map(|part| {
            let mut pdw = pool.take(g.w_len());
            let chunk_len = kdim * per.min(part.len()) * plane_out;
            let mut col = pool.take(chunk_len);
            let mut dcol = if dxp.is_some() {
                pool.take(chunk_len)
            } else {
                Vec::new()
            };
            let plane_in = g.h * g.w;
            if let Some(dxp) = dxp {
                // Zero this part's samples of dx before accumulating into them.
                for ci in 0..g.cin {
                    // SAFETY: samples part.start..part.end of channel ci belong to this part.
                    unsafe {
                        let p = dxp.get().add((ci * g.n + part.start) * plane_in);
                        std::slice::from_raw_parts_mut(p, part.len() * plane_in).fill(T::ZERO);
                    }
                }
            }
            let mut n0 = part.start;
            while n0 < part.end {
                let n1 = (n0 + per).min(part.end);
                let cols = (n1 - n0) * plane_out;
                im2col(g, x, n0, n1, &mut col[..kdim * cols]);
                let dyc = Mat::rm(dy, ntot).at(n0 * plane_out);
                // dW (+)= dy[:, cols] col^T; the first chunk overwrites the pooled buffer.
                let beta = if n0 == part.start { T::ZERO } else { T::ONE };
                // SAFETY: pdw is this part's own buffer of w_len = cout x kdim values.
                unsafe {
                    gemm_rows(
                        dw_splits,
                        g.cout,
                        cols,
                        kdim,
                        T::ONE,
                        dyc,
                        Mat::tr(&col, cols),
                        beta,
                        pdw.as_mut_ptr(),
                        kdim,
                    )
                };
                if let Some(dxp) = dxp {
                    // dcol = W^T dy[:, cols]
                    // SAFETY: dcol is this part's own buffer of at least kdim x cols values.
                    unsafe {
                        gemm_rows(
                            dcol_splits,
                            kdim,
                            g.cout,
                            cols,
                            T::ONE,
                            Mat::tr(w, kdim),
                            dyc,
                            T::ZERO,
                            dcol.as_mut_ptr(),
                            cols,
                        )
                    };
                    // SAFETY: samples n0..n1 belong to this part.
                    unsafe { col2im(g, &dcol, n0, n1, dxp) };
                }
                n0 = n1;
            }
            pool.give(col);
            if !dcol.is_empty() {
                pool.give(dcol);
            }
            pdw
        })
        .collect();
    let sum = sum_in_part_order(pool, partials, g.w_len());
    dw.copy_from_slice(&sum[..g.w_len()]);
    pool.give(sum);
}

/// The shapes a forward pass needs (a mismatch is a bug in the engine: callers validate
/// user input first).
pub(super) fn check_forward<T>(g: &ConvGeom, x: &[T], w: &[T], y: &[T]) {
    assert_eq!(x.len(), g.in_len());
    assert_eq!(w.len(), g.w_len());
    assert_eq!(y.len(), g.out_len());
}

/// The shapes a backward pass needs (`dx`, optional, is checked where it is unwrapped).
pub(super) fn check_backward<T>(g: &ConvGeom, x: &[T], w: &[T], dy: &[T], dw: &[T]) {
    assert_eq!(x.len(), g.in_len());
    assert_eq!(w.len(), g.w_len());
    assert_eq!(dy.len(), g.out_len());
    assert_eq!(dw.len(), g.w_len());
}

/// The first `len` values of the parts' partial sums added in part order (the first part's
/// buffer, returned; the others go back to `pool`), so that the result depends only on how
/// the work was cut, never on which thread finished first.
pub(super) fn sum_in_part_order<T: Scalar>(
    pool: &ScratchPool<T>,
    partials: Vec<Vec<T>>,
    len: usize,
) -> Vec<T> {
    let mut parts = partials.into_iter();
    let mut sum = parts.next().expect("at least one part");
    for p in parts {
        for (s, v) in sum[..len].iter_mut().zip(&p) {
            *s += *v;
        }
        pool.give(p);
    }
    sum
}

/// Reusable scratch buffers, so that repeated steps do not allocate (and fault in) fresh
/// memory for every convolution. Which buffer a part gets never affects results: every
/// element used is written before it is read.
#[derive(Default)]
pub struct ScratchPool<T> {
    free: std::sync::Mutex<Vec<Vec<T>>>,
}

impl<T> std::fmt::Debug for ScratchPool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScratchPool")
    }
}

impl<T: Scalar> ScratchPool<T> {
    /// A buffer of at least `len` elements (contents unspecified).
    pub fn take(&self, len: usize) -> Vec<T> {
        let mut v = self
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        if v.len() < len {
            v.resize(len, T::ZERO);
        }
        v
    }

    /// Returns a buffer to the pool.
    pub fn give(&self, v: Vec<T>) {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(v);
    }
}
