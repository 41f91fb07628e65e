//! CPU kernels: plain functions over slices, generic over [`Scalar`], parallel with rayon.
//!
//! Activations live in the "CNHW" layout: channel-major, then sample, then the plane. A
//! convolution is then one GEMM `W[Cout, Cin*k*k] x col[Cin*k*k, N*Ho*Wo]` whose result is
//! already CNHW (the 3x3 stride-1 ones: 16 GEMMs over Winograd tiles, [`winograd`]), and
//! batch normalisation reads each channel as one contiguous run.
//!
//! Determinism: work is split into a number of parts that depends only on the sizes and on
//! the thread count, never on scheduling; every reduction runs in a fixed order.

pub mod conv;
pub mod elementwise;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod pool;
pub mod winograd;

use std::ops::Range;

use super::scalar::Scalar;

/// Splits `0..n` into `parts` contiguous ranges whose lengths differ by at most one.
pub(crate) fn partition(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    let base = n / parts;
    let extra = n % parts;
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts {
        let len = base + usize::from(p < extra);
        out.push(start..start + len);
        start += len;
    }
    out
}

/// The number of parallel parts to cut work into: the rayon pool's thread count.
pub(crate) fn threads() -> usize {
    rayon::current_num_threads()
}

/// A raw pointer that may cross threads; each user writes a disjoint region through it.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
// SAFETY: users only write disjoint regions from different threads (checked at each use).
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    #[inline]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Row-major matrix operand for [`gemm`]: `rows x cols` at `data[off + r*rs + c*cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A dense row-major matrix with leading dimension `ld`.
    pub(crate) fn rm(data: &'a [T], ld: usize) -> Self {
        Mat {
            data,
            off: 0,
            rs: ld,
            cs: 1,
        }
    }
    /// The transpose of a dense row-major matrix with leading dimension `ld`.
    pub(crate) fn tr(data: &'a [T], ld: usize) -> Self {
        Mat {
            data,
            off: 0,
            rs: 1,
            cs: ld,
        }
    }
    /// The same operand starting `off` elements further.
    pub(crate) fn at(self, off: usize) -> Self {
        Mat {
            off: self.off + off,
            ..self
        }
    }
    fn last(&self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            return self.off;
        }
        self.off + (rows - 1) * self.rs + (cols - 1) * self.cs
    }
}

/// `C = alpha A B + beta C` for `A` m x k, `B` k x n, `C` m x n at `c[coff + r*rsc + col]`.
///
/// Bounds are checked (a panic here is a bug in the engine, not bad user input: callers
/// validate shapes first).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: Scalar>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    beta: T,
    c: &mut [T],
    coff: usize,
    rsc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(coff + (m - 1) * rsc + n <= c.len(), "gemm: C out of bounds");
    // SAFETY: C's block checked above, borrowed mutably so no other access overlaps it;
    // gemm_raw checks A and B.
    unsafe { gemm_raw(m, k, n, alpha, a, b, beta, c.as_mut_ptr().add(coff), rsc) }
}

/// `C = alpha A B + beta C` where `C` is reached through a raw pointer because several
/// threads write disjoint column blocks of it.
///
/// # Safety
/// `c` must be valid for the `m x n` block with row stride `rsc`, and no other thread may
/// access that block during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_raw<T: Scalar>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    beta: T,
    c: *mut T,
    rsc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k > 0 {
        assert!(a.last(m, k) < a.data.len(), "gemm: A out of bounds");
        assert!(b.last(k, n) < b.data.len(), "gemm: B out of bounds");
    }
    // SAFETY: A and B bounds checked above; C is the caller's contract.
    unsafe {
        T::gemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr().add(a.off),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr().add(b.off),
            b.rs as isize,
            b.cs as isize,
            beta,
            c,
            rsc as isize,
            1,
        )
    }
}

/// Splits `row` by column parity, each value read as `read(v)`: column `2k` into `even[k]`,
/// column `2k + 1` into `odd[k]` (the last column of an odd-length row goes to `even` alone;
/// nothing else of either half is written). One pass over pairs of columns, which vectorises
/// (interleaved loads) where a stepped read of each half runs scalar; stride-2 windows and
/// the 2x2 Winograd tiles then read each half contiguously.
pub(crate) fn split_pairs<T: Copy>(
    row: &[T],
    even: &mut [T],
    odd: &mut [T],
    read: impl Fn(T) -> T,
) {
    let pairs = row.chunks_exact(2);
    if let [last] = pairs.remainder() {
        even[row.len() / 2] = read(*last);
    }
    for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
        *e = read(pair[0]);
        *o = read(pair[1]);
    }
}

/// Row blocks to cut one GEMM of `m` rows into when only `parts` parallel parts exist: the
/// threads the parts leave idle, but no block under 16 rows (a narrower one loses more in the
/// micro-kernel than the extra thread brings). Depends only on sizes and the thread count.
pub(crate) fn row_splits(m: usize, parts: usize) -> usize {
    (threads() / parts.max(1)).min(m / 16).max(1)
}

/// [`gemm_raw`] with `A`'s and `C`'s rows cut into `splits` blocks run in parallel (one call
/// when `splits` is 1). Each output element is computed by exactly one block, by the same
/// GEMM over the same `k` range.
///
/// # Safety
/// As [`gemm_raw`]: `c` valid for the `m x n` block with row stride `rsc`, and no other
/// thread accessing it during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_rows<T: Scalar>(
    splits: usize,
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    beta: T,
    c: *mut T,
    rsc: usize,
) {
    use rayon::prelude::*;
    if splits <= 1 {
        // SAFETY: the caller's contract.
        return unsafe { gemm_raw(m, k, n, alpha, a, b, beta, c, rsc) };
    }
    let cp = SendPtr(c);
    partition(m, splits).into_par_iter().for_each(|rows| {
        // SAFETY: row blocks are disjoint parts of the caller's block.
        unsafe {
            gemm_raw(
                rows.len(),
                k,
                n,
                alpha,
                a.at(rows.start * a.rs),
                b,
                beta,
                cp.get().add(rows.start * rsc),
                rsc,
            )
        }
    });
}
