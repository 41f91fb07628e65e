//! Winograd F(2x2, 3x3) for the 3x3, stride-1, pad-1 convolutions (13 of the 20 in each of
//! the model's ResNet-18s, and about three quarters of its multiply-adds).
//!
//! Each 2x2 output tile is computed from the 4x4 input patch around it as
//! `Y = A^T [U ⊙ V] A` with `U = G g G^T` (the kernel, transformed once per call) and
//! `V = B^T d B` (the patch), so a tile costs 16 multiplies per channel pair where the direct
//! convolution costs 36. Over a batch that is 16 GEMMs: `M[e] = U[e] V[e]`, `U[e]` of
//! `cout x cin`, `V[e]` of `cin x tiles`, one for each of the 16 positions `e` of the 4x4
//! transform domain.
//!
//! All three passes use the same transforms:
//! - forward: as above;
//! - data gradient: the same convolution of `dy` with the kernel rotated by 180 degrees and
//!   its channel axes swapped. Rotating `g` swaps rows 0 and 3 of `G g` (`G J = P G`), so
//!   the rotated kernel's transform is `U` with positions 0 and 3 swapped on both axes, read
//!   transposed: no second kernel transform;
//! - weight gradient: `dL/dU[e] = sum over tiles of (A dY A^T)[e] V[e]^T` (16 GEMMs whose
//!   inner dimension is the number of tiles, the best shape a GEMM can get), then
//!   `dL/dg = G^T dL/dU G`.
//!
//! The transforms use only additions and halvings, so the result differs from the direct
//! convolution by rounding alone (about 1e-6 of the output's scale in `f32`, 1e-15 in
//! `f64`; the tests hold it to that). A non-finite input value reaches every output of the
//! tiles whose patch holds it (the direct convolution spreads it to its 3x3 neighbourhood):
//! the loss is non-finite either way, which the trainer reports.
//!
//! Work is cut as in [`super::conv`]: blocks of consecutive tiles, up to two parts per
//! thread, the GEMMs' rows cut further when parts are fewer than threads, the weight
//! gradient's partial sums added in part order. Results depend only on sizes and the thread
//! count.

use std::ops::Range;

use rayon::prelude::*;

use super::conv::{check_backward, check_forward, sum_in_part_order, ConvGeom, ScratchPool};
use super::{gemm_rows, partition, row_splits, split_pairs, threads, Mat, SendPtr};
use crate::engine::scalar::Scalar;

/// Positions of the 4x4 transform domain.
const E: usize = 16;

/// Whether a convolution is one this module computes: 3x3, stride 1, padding 1 (so the
/// output plane is the input plane).
pub fn applies(g: &ConvGeom) -> bool {
    g.k == 3 && g.stride == 1 && g.pad == 1
}

/// Tiles along each axis of a `h x w` plane.
fn tiles_of(h: usize, w: usize) -> (usize, usize) {
    (h.div_ceil(2), w.div_ceil(2))
}

/// Tiles transformed and multiplied at once, for `total` tiles in the batch. Every GEMM
/// packs its whole `U[e]` (one element a multiply-add per tile of the block) and then does
/// `tb` multiply-adds per packed element, so blocks under about 256 tiles lose a large share
/// to packing; above that, smaller is better (the block's 16 matrices stay in cache between
/// the transforms and the GEMMs). The block count is rounded to a multiple of the thread
/// count so that parts come out even.
fn block_tiles(total: usize) -> usize {
    const MIN: usize = 256;
    let t = threads();
    let mut blocks = (total / MIN).max(1);
    if blocks > t {
        blocks = blocks.div_ceil(t) * t;
    }
    total.div_ceil(blocks).max(1)
}

/// Elements between two positions' matrices in a transformed block of `c` channels and `tb`
/// tiles. The 16 matrices are read and written together, one element of each per tile: 16
/// streams that, a power of two apart, would share a handful of L1 sets and evict each
/// other; one cache line more moves each stream to sets of its own. The layouts written
/// `[16][c][tb]` below (and `U`'s `[16][cout][cin]`) are at this stride.
fn e_stride(c: usize, tb: usize) -> usize {
    c * tb + 16
}

/// The tile blocks of a convolution and their split into parallel parts (ranges of block
/// indices). Depends only on the sizes and the thread count.
struct Plan {
    tiles: usize,
    tb: usize,
    parts: Vec<std::ops::Range<usize>>,
}

impl Plan {
    fn new(g: &ConvGeom) -> Plan {
        let (th, tw) = tiles_of(g.h, g.w);
        let tiles = g.n * th * tw;
        let tb = block_tiles(tiles);
        let blocks = tiles.div_ceil(tb);
        Plan {
            tiles,
            tb,
            parts: partition(blocks, blocks.min(2 * threads())),
        }
    }

    /// The tile range of block `b`.
    fn block(&self, b: usize) -> (usize, usize) {
        (b * self.tb, ((b + 1) * self.tb).min(self.tiles))
    }
}

/// `G k G^T` of one 3x3 kernel `k` (row-major), its 16 values in position order.
#[inline]
fn transform_kernel<T: Scalar>(k: &[T]) -> [T; E] {
    let half = T::from_f64(0.5);
    // Rows of G g: g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2 (each a row of three).
    let mut gg = [[T::ZERO; 3]; 4];
    for c in 0..3 {
        let (a, b, d) = (k[c], k[3 + c], k[6 + c]);
        gg[0][c] = a;
        gg[1][c] = (a + b + d) * half;
        gg[2][c] = (a - b + d) * half;
        gg[3][c] = d;
    }
    let mut u = [T::ZERO; E];
    for (r, row) in gg.iter().enumerate() {
        let [a, b, d] = *row;
        u[r * 4..r * 4 + 4].copy_from_slice(&[a, (a + b + d) * half, (a - b + d) * half, d]);
    }
    u
}

/// `U = G g G^T` for every kernel, laid out `[16][cout][cin]`, in parallel over ranges of
/// output channels (a 512-channel layer has 262144 kernels: serial, this was ~4% of the
/// layer's forward pass while the other threads waited).
fn kernel_transform<T: Scalar>(g: &ConvGeom, w: &[T], u: &mut [T]) {
    let us = e_stride(g.cout, g.cin);
    assert!(u.len() >= E * us && w.len() == g.w_len());
    let up = SendPtr(u.as_mut_ptr());
    partition(g.cout, threads())
        .into_par_iter()
        .for_each(|cos| {
            // Kernels are [cout][cin][3][3]: pair p = co*cin + ci, the layout of each U[e].
            let pairs = cos.start * g.cin..cos.end * g.cin;
            let mut dst: [&mut [T]; E] = std::array::from_fn(|e| {
                // SAFETY: pairs of this task's output channels in U[e] (inside u, checked
                // above); the tasks' channel ranges are disjoint.
                unsafe {
                    std::slice::from_raw_parts_mut(up.get().add(e * us + pairs.start), pairs.len())
                }
            });
            for (i, k) in w[pairs.start * 9..pairs.end * 9]
                .chunks_exact(9)
                .enumerate()
            {
                for (d, v) in dst.iter_mut().zip(transform_kernel(k)) {
                    d[i] = v;
                }
            }
        });
}

/// `dL/dg = G^T dL/dU G` for every kernel, `du` laid out `[16][cout][cin]`, `dw` as the
/// kernels `[cout][cin][3][3]` (overwritten).
fn kernel_gradient<T: Scalar>(g: &ConvGeom, du: &[T], dw: &mut [T]) {
    let half = T::from_f64(0.5);
    let us = e_stride(g.cout, g.cin);
    // G^T maps four values (a, b, c, d) to (a + (b+c)/2, (b-c)/2, (b+c)/2 + d).
    let gt = |[a, b, c, d]: [T; 4]| [a + (b + c) * half, (b - c) * half, (b + c) * half + d];
    // In parallel over runs of kernels (each written by one task, from its own values).
    let run = 9 * g.cin.max(64);
    dw.par_chunks_mut(run).enumerate().for_each(|(q, outs)| {
        for (i, out) in outs.chunks_exact_mut(9).enumerate() {
            let p = q * run / 9 + i;
            let at = |r: usize, s: usize| du[(r * 4 + s) * us + p];
            // Columns first: for each column s, G^T over the four rows.
            let mut cols = [[T::ZERO; 3]; 4];
            for (s, col) in cols.iter_mut().enumerate() {
                *col = gt([at(0, s), at(1, s), at(2, s), at(3, s)]);
            }
            for r in 0..3 {
                let row = gt([cols[0][r], cols[1][r], cols[2][r], cols[3][r]]);
                out[r * 3..r * 3 + 3].copy_from_slice(&row);
            }
        }
    });
}

/// The tiles `t0..t1` of a batch, one run per tile row: `(sample, tile row, first tile
/// column, end tile column, index of the run's first tile within the block)`.
fn tile_runs(
    t0: usize,
    t1: usize,
    th: usize,
    tw: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize, usize)> {
    let mut t = t0;
    std::iter::from_fn(move || {
        if t >= t1 {
            return None;
        }
        let (row, tx0) = (t / tw, t % tw);
        let tx1 = tw.min(tx0 + (t1 - t));
        let run = (row / th, row % th, tx0, tx1, t - t0);
        t += tx1 - tx0;
        Some(run)
    })
}

/// `V = B^T d B` for the 4x4 patches around tiles `t0..t1` of the CNHW tensor `src` (`c`
/// channels, `nb` samples, `h x w` planes, zero outside), channels `chans`, into `v` laid out
/// `[16][c][tb]` (`tb = t1 - t0`). `rows` is scratch for four padded rows.
///
/// # Safety
/// As [`matrices`] for the stretches of channels `chans`.
#[allow(clippy::too_many_arguments)]
unsafe fn input_transform<T: Scalar>(
    src: &[T],
    (c, nb, h, w): (usize, usize, usize, usize),
    chans: Range<usize>,
    t0: usize,
    t1: usize,
    v: Block<T>,
    rows: &mut Vec<T>,
) {
    let (th, tw) = tiles_of(h, w);
    let tb = t1 - t0;
    let es = e_stride(c, tb);
    // Each padded row (index p holds input column p - 1, zero outside) is stored split by
    // parity: its even indices, then its odd ones, tw + 1 of each. Tile tx then reads
    // indices tx and tx + 1 of both halves, so that every loop below runs over contiguous
    // values and vectorises.
    let hw = tw + 1;
    let pw = 2 * hw;
    rows.clear();
    rows.resize(4 * pw, T::ZERO);
    let plane = h * w;
    for ci in chans {
        for (n, ty, tx0, tx1, j0) in tile_runs(t0, t1, th, tw) {
            let base = (ci * nb + n) * plane;
            for r in 0..4 {
                let (even, odd) = rows[r * pw..(r + 1) * pw].split_at_mut(hw);
                even.fill(T::ZERO);
                odd.fill(T::ZERO);
                let iy = (2 * ty + r) as isize - 1;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let srow = &src[base + iy as usize * w..base + (iy as usize + 1) * w];
                // Input column 2k is padded index 2k + 1 (odd k), column 2k + 1 is padded
                // index 2k + 2 (even k + 1).
                split_pairs(srow, odd, &mut even[1..], |v| v);
            }
            // B^T down the columns: (p0 - p2, p1 + p2, p2 - p1, p1 - p3), in place.
            let (r0, rest) = rows.split_at_mut(pw);
            let (r1, rest) = rest.split_at_mut(pw);
            let (r2, r3) = rest.split_at_mut(pw);
            for j in 0..pw {
                let (p0, p1, p2, p3) = (r0[j], r1[j], r2[j], r3[j]);
                r0[j] = p0 - p2;
                r1[j] = p1 + p2;
                r2[j] = p2 - p1;
                r3[j] = p1 - p3;
            }
            // B along each row of every tile (padded columns 2tx .. 2tx+3: even tx, odd tx,
            // even tx+1, odd tx+1), into the run's stretch of the row's four matrices.
            let (cnt, off) = (tx1 - tx0, ci * tb + j0);
            for (r, q) in [&*r0, &*r1, &*r2, &*r3].into_iter().enumerate() {
                let (even, odd) = q.split_at(hw);
                let (e, o) = (&even[tx0..tx1 + 1], &odd[tx0..tx1 + 1]);
                // SAFETY: channel ci's stretches (the caller's contract).
                let [m0, m1, m2, m3] = unsafe { matrices(v, r * 4, es, off, cnt) };
                for i in 0..cnt {
                    m0[i] = e[i] - e[i + 1];
                    m1[i] = o[i] + e[i + 1];
                    m2[i] = e[i + 1] - o[i];
                    m3[i] = o[i] - o[i + 1];
                }
            }
        }
    }
}

/// `A dY A^T` for the 2x2 output-gradient tiles `t0..t1` of the CNHW tensor `dy` (`c`
/// channels, zero outside the plane), channels `chans`, into `d` laid out `[16][c][tb]`.
///
/// # Safety
/// As [`matrices`] for the stretches of channels `chans`.
#[allow(clippy::too_many_arguments)]
unsafe fn gradient_transform<T: Scalar>(
    dy: &[T],
    (c, nb, h, w): (usize, usize, usize, usize),
    chans: Range<usize>,
    t0: usize,
    t1: usize,
    d: Block<T>,
    rows: &mut Vec<T>,
) {
    let (th, tw) = tiles_of(h, w);
    let tb = t1 - t0;
    let es = e_stride(c, tb);
    let plane = h * w;
    // The tiles' two rows, each split by parity as in `input_transform` (column 2tx of the
    // row at index tx of its first half, 2tx + 1 of its second), zero past the plane's edge:
    // tile tx reads index tx of all four halves, and the loops below run over contiguous
    // values.
    rows.clear();
    rows.resize(4 * tw, T::ZERO);
    for ci in chans {
        for (n, ty, tx0, tx1, j0) in tile_runs(t0, t1, th, tw) {
            let base = (ci * nb + n) * plane;
            for r in 0..2 {
                let (even, odd) = rows[2 * r * tw..2 * (r + 1) * tw].split_at_mut(tw);
                let y = 2 * ty + r;
                if y >= h {
                    even.fill(T::ZERO);
                    odd.fill(T::ZERO);
                    continue;
                }
                split_pairs(&dy[base + y * w..base + (y + 1) * w], even, odd, |v| v);
                if w % 2 == 1 {
                    // Column w, past the plane's edge.
                    odd[w / 2] = T::ZERO;
                }
            }
            // Tile (a b; c d): A maps (u, v) to (u, u + v, u - v, -v), down the tile's two
            // columns (rows r of the result: u from a and c, v from b and d), then along
            // each row.
            let q: [&[T]; 4] = std::array::from_fn(|k| &rows[k * tw + tx0..k * tw + tx1]);
            let off = ci * tb + j0;
            let cnt = tx1 - tx0;
            // SAFETY: channel ci's stretches (the caller's contract).
            unsafe {
                a_rows(q, matrices(d, 0, es, off, cnt), |a, _| a);
                a_rows(q, matrices(d, 4, es, off, cnt), |a, c| a + c);
                a_rows(q, matrices(d, 8, es, off, cnt), |a, c| a - c);
                a_rows(q, matrices(d, 12, es, off, cnt), |_, c| -c);
            }
        }
    }
}

/// A transformed block being written (`[16][c][tb]` at some stride): its buffer, shared by
/// the tasks that fill disjoint ranges of its channels.
#[derive(Clone, Copy)]
struct Block<T> {
    ptr: SendPtr<T>,
    len: usize,
}

impl<T> Block<T> {
    /// The whole of `buf`.
    fn of(buf: &mut [T]) -> Block<T> {
        Block {
            ptr: SendPtr(buf.as_mut_ptr()),
            len: buf.len(),
        }
    }
}

/// The stretches `off..off + cnt` of the matrices of positions `e0..e0 + 4` (`es` apart) of
/// a transformed block, as four disjoint slices (bounds checked against the buffer).
///
/// # Safety
/// While the slices live, nothing else may access these stretches: the buffer of `d` is
/// alive and unborrowed, and other tasks write only other channels' stretches.
unsafe fn matrices<'a, T>(
    d: Block<T>,
    e0: usize,
    es: usize,
    off: usize,
    cnt: usize,
) -> [&'a mut [T]; 4] {
    assert!(
        cnt <= es && (e0 + 3) * es + off + cnt <= d.len,
        "winograd: a stretch past the block"
    );
    // SAFETY: inside the buffer (checked above); disjoint (cnt <= es); exclusive (the
    // caller's contract).
    let base = d.ptr.get();
    let at =
        |i: usize| unsafe { std::slice::from_raw_parts_mut(base.add((e0 + i) * es + off), cnt) };
    [at(0), at(1), at(2), at(3)]
}

/// One row of the gradient transform for a run of tiles: `col` combines the tile's two rows
/// down a column (`col(a, c)` for the first column, `col(b, d)` for the second), giving
/// `(u, v)`, and the row is `(u, u + v, u - v, -v)`. `q` holds the tiles' `a`, `b`, `c`, `d`.
#[inline(always)]
fn a_rows<T: Scalar>(q: [&[T]; 4], m: [&mut [T]; 4], col: impl Fn(T, T) -> T) {
    let [a, b, c, d] = q;
    let [m0, m1, m2, m3] = m;
    for i in 0..m0.len().min(a.len()) {
        let (u, v) = (col(a[i], c[i]), col(b[i], d[i]));
        m0[i] = u;
        m1[i] = u + v;
        m2[i] = u - v;
        m3[i] = -v;
    }
}

/// `Y = A^T M A` for tiles `t0..t1`, `m` laid out `[16][c][tb]`, written into the CNHW
/// tensor at `dst` (`c` channels, `nb` samples, `h x w` planes; positions past the plane's
/// edge dropped), channels `chans`. `stage` is scratch for two rows.
///
/// # Safety
/// `dst` must be valid for the whole tensor, and no other thread may access the output
/// positions of tiles `t0..t1` in channels `chans` during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform<T: Scalar>(
    m: &[T],
    (c, nb, h, w): (usize, usize, usize, usize),
    chans: Range<usize>,
    t0: usize,
    t1: usize,
    dst: SendPtr<T>,
    stage: &mut Vec<T>,
) {
    let (th, tw) = tiles_of(h, w);
    let tb = t1 - t0;
    let es = e_stride(c, tb);
    let plane = h * w;
    stage.clear();
    stage.resize(4 * tw, T::ZERO);
    for ci in chans {
        for (n, ty, tx0, tx1, j0) in tile_runs(t0, t1, th, tw) {
            let (x0, x1) = (2 * tx0, (2 * tx1).min(w));
            let row_at = |y: usize| {
                // SAFETY: row y of plane (ci, n) lies in the tensor; columns x0..x1 belong
                // to this run's tiles, which the caller gives this call alone.
                unsafe {
                    std::slice::from_raw_parts_mut(
                        dst.get().add((ci * nb + n) * plane + y * w + x0),
                        x1 - x0,
                    )
                }
            };
            let out0 = row_at(2 * ty);
            let out1 = (2 * ty + 1 < h).then(|| row_at(2 * ty + 1));
            let cnt = tx1 - tx0;
            let off = ci * tb + j0;
            // The run's stretch of each of the 16 matrices, and its two output rows staged
            // whole (2 * cnt columns; the last tile may hang over the plane's edge).
            let ms: [&[T]; E] = std::array::from_fn(|e| &m[e * es + off..e * es + off + cnt]);
            let (st0, st1) = stage.split_at_mut(2 * tw);
            let pairs = st0[..2 * cnt]
                .chunks_exact_mut(2)
                .zip(st1[..2 * cnt].chunks_exact_mut(2));
            for (i, (o0, o1)) in pairs.enumerate() {
                let mv = |e: usize| ms[e][i];
                // A^T down the columns: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3.
                let mut s0 = [T::ZERO; 4];
                let mut s1 = [T::ZERO; 4];
                for col in 0..4 {
                    let (a, b, cc, d) = (mv(col), mv(4 + col), mv(8 + col), mv(12 + col));
                    s0[col] = a + b + cc;
                    s1[col] = b - cc - d;
                }
                o0[0] = s0[0] + s0[1] + s0[2];
                o0[1] = s0[1] - s0[2] - s0[3];
                o1[0] = s1[0] + s1[1] + s1[2];
                o1[1] = s1[1] - s1[2] - s1[3];
            }
            out0.copy_from_slice(&st0[..x1 - x0]);
            if let Some(o) = out1 {
                o.copy_from_slice(&st1[..x1 - x0]);
            }
        }
    }
}

/// Runs `f` over the channels `0..c`: whole, with the part's scratch `rows`, when `splits`
/// is 1 (the part has a thread to itself), else over `splits` ranges in parallel, each with
/// scratch of its own. A layer of a single tile block (the 512-channel layers at batch 16)
/// runs as one part, whose transforms would otherwise take one thread while the others wait:
/// ~10% of such a layer's forward pass.
fn over_channels<T: Send>(
    c: usize,
    splits: usize,
    rows: &mut Vec<T>,
    f: impl Fn(Range<usize>, &mut Vec<T>) + Sync,
) {
    if splits <= 1 {
        f(0..c, rows);
    } else {
        partition(c, splits)
            .into_par_iter()
            .for_each(|chans| f(chans, &mut Vec::new()));
    }
}

/// Forward: `y = conv(x, w)` (overwritten) for a convolution that [`applies`].
pub fn forward_with<T: Scalar>(pool: &ScratchPool<T>, g: &ConvGeom, x: &[T], w: &[T], y: &mut [T]) {
    assert!(
        applies(g),
        "winograd: not a 3x3 stride-1 pad-1 convolution: {g:?}"
    );
    check_forward(g, x, w, y);
    let us = e_stride(g.cout, g.cin);
    let mut u = pool.take(E * us);
    kernel_transform(g, w, &mut u);
    let plan = Plan::new(g);
    let splits = row_splits(g.cout, plan.parts.len());
    let in_splits = row_splits(g.cin, plan.parts.len());
    let yp = SendPtr(y.as_mut_ptr());
    let u_all = &u[..E * us];
    plan.parts.par_iter().for_each(|part| {
        let mut v = pool.take(E * e_stride(g.cin, plan.tb));
        let mut m = pool.take(E * e_stride(g.cout, plan.tb));
        let mut rows = Vec::new();
        for b in part.clone() {
            let (t0, t1) = plan.block(b);
            let tb = t1 - t0;
            let vb = Block::of(&mut v);
            over_channels(g.cin, in_splits, &mut rows, |chans, rows| {
                // SAFETY: v is this part's own buffer, not otherwise borrowed until the
                // transform is done; the channel ranges are disjoint.
                unsafe { input_transform(x, (g.cin, g.n, g.h, g.w), chans, t0, t1, vb, rows) }
            });
            for e in 0..E {
                // SAFETY: m is this part's own buffer of 16 x cout x tb (or more) values.
                unsafe {
                    gemm_rows(
                        splits,
                        g.cout,
                        g.cin,
                        tb,
                        T::ONE,
                        Mat::rm(u_all, g.cin).at(e * us),
                        Mat::rm(&v, tb).at(e * e_stride(g.cin, tb)),
                        T::ZERO,
                        m.as_mut_ptr().add(e * e_stride(g.cout, tb)),
                        tb,
                    )
                };
            }
            over_channels(g.cout, splits, &mut rows, |chans, rows| {
                // SAFETY: y holds the whole output; tiles t0..t1 belong to this part alone,
                // and each of their channels to one task.
                unsafe { output_transform(&m, (g.cout, g.n, g.h, g.w), chans, t0, t1, yp, rows) }
            });
        }
        pool.give(v);
        pool.give(m);
    });
    pool.give(u);
}

/// Backward for a convolution that [`applies`]: the weight gradient `dw` (overwritten) and,
/// when asked, the input gradient `dx` (overwritten), from the output gradient `dy`.
pub fn backward_with<T: Scalar>(
    pool: &ScratchPool<T>,
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    dy: &[T],
    dw: &mut [T],
    dx: Option<&mut [T]>,
) {
    assert!(
        applies(g),
        "winograd: not a 3x3 stride-1 pad-1 convolution: {g:?}"
    );
    check_backward(g, x, w, dy, dw);
    let us = e_stride(g.cout, g.cin);
    let dxp = dx.map(|d| {
        assert_eq!(d.len(), g.in_len());
        SendPtr(d.as_mut_ptr())
    });
    let plan = Plan::new(g);
    if plan.tiles == 0 {
        // An empty batch: no gradient, and dx has no elements.
        dw.fill(T::ZERO);
        return;
    }
    let mut u_buf = Vec::new();
    if dxp.is_some() {
        u_buf = pool.take(E * us);
        kernel_transform(g, w, &mut u_buf);
    }
    let u = &u_buf[..];
    let (du_splits, dx_splits) = (
        row_splits(g.cout, plan.parts.len()),
        row_splits(g.cin, plan.parts.len()),
    );
    let cmax = g.cin.max(g.cout);
    let partials: Vec<Vec<T>> = plan
        .parts
        .par_iter()
        .map(|part| {
            let mut pdu = pool.take(E * us);
            // v: the input's patches, then (for dx) dy's; d: dy's tiles for the weight
            // gradient; m: dx's transform-domain products.
            let mut v = pool.take(E * e_stride(cmax, plan.tb));
            let mut d = pool.take(E * e_stride(g.cout, plan.tb));
            let mut m = if dxp.is_some() {
                pool.take(E * e_stride(g.cin, plan.tb))
            } else {
                Vec::new()
            };
            let mut rows = Vec::new();
            for b in part.clone() {
                let (t0, t1) = plan.block(b);
                let tb = t1 - t0;
                let (vb, db) = (Block::of(&mut v), Block::of(&mut d));
                // SAFETY (both transforms): v and d are this part's own buffers, not otherwise
                // borrowed until the transforms are done; the channel ranges are disjoint.
                over_channels(g.cin, dx_splits, &mut rows, |chans, rows| unsafe {
                    input_transform(x, (g.cin, g.n, g.h, g.w), chans, t0, t1, vb, rows)
                });
                over_channels(g.cout, du_splits, &mut rows, |chans, rows| unsafe {
                    gradient_transform(dy, (g.cout, g.n, g.h, g.w), chans, t0, t1, db, rows)
                });
                // dU[e] (+)= D[e] V[e]^T; the part's first block overwrites the buffer.
                let beta = if b == part.start { T::ZERO } else { T::ONE };
                for e in 0..E {
                    // SAFETY: pdu is this part's own buffer of 16 x cout x cin values.
                    unsafe {
                        gemm_rows(
                            du_splits,
                            g.cout,
                            tb,
                            g.cin,
                            T::ONE,
                            Mat::rm(&d, tb).at(e * e_stride(g.cout, tb)),
                            Mat::tr(&v, tb).at(e * e_stride(g.cin, tb)),
                            beta,
                            pdu.as_mut_ptr().add(e * us),
                            g.cin,
                        )
                    };
                }
                let Some(dxp) = dxp else { continue };
                // dx is the convolution of dy with the rotated, transposed kernels, whose
                // transform at (r, s) is U at (p(r), p(s)) read transposed, p swapping 0, 3.
                let vb = Block::of(&mut v);
                over_channels(g.cout, du_splits, &mut rows, |chans, rows| {
                    // SAFETY: as for the transforms above.
                    unsafe { input_transform(dy, (g.cout, g.n, g.h, g.w), chans, t0, t1, vb, rows) }
                });
                let p = |i: usize| [3, 1, 2, 0][i];
                for e in 0..E {
                    let ue = p(e / 4) * 4 + p(e % 4);
                    // SAFETY: m is this part's own buffer of 16 x cin x tb (or more) values.
                    unsafe {
                        gemm_rows(
                            dx_splits,
                            g.cin,
                            g.cout,
                            tb,
                            T::ONE,
                            Mat::tr(u, g.cin).at(ue * us),
                            Mat::rm(&v, tb).at(e * e_stride(g.cout, tb)),
                            T::ZERO,
                            m.as_mut_ptr().add(e * e_stride(g.cin, tb)),
                            tb,
                        )
                    };
                }
                over_channels(g.cin, dx_splits, &mut rows, |chans, rows| {
                    // SAFETY: dx holds the whole input; tiles t0..t1 belong to this part
                    // alone, and each of their channels to one task.
                    unsafe {
                        output_transform(&m, (g.cin, g.n, g.h, g.w), chans, t0, t1, dxp, rows)
                    }
                });
            }
            pool.give(v);
            pool.give(d);
            if !m.is_empty() {
                pool.give(m);
            }
            pdu
        })
        .collect();
    let sum = sum_in_part_order(pool, partials, E * us);
    kernel_gradient(g, &sum[..E * us], dw);
    pool.give(sum);
    if !u_buf.is_empty() {
        pool.give(u_buf);
    }
}
