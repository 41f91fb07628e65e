//! Fully connected layers `y = x W^T + s * b` over row-major `[rows][features]` batches.
//!
//! The weight may be a column block of a wider matrix (the concat head's `W[:, :D]`), so it
//! is described by [`LinearSpec`] with its own leading dimension.

use super::{gemm, Mat};
use crate::engine::scalar::Scalar;

/// A weight block `W[out][in]` inside a row-major matrix with leading dimension `ld`
/// starting at element `off` of its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearSpec {
    /// Output features.
    pub out: usize,
    /// Input features.
    pub inp: usize,
    /// Leading dimension (row length) of the full weight matrix.
    pub ld: usize,
    /// Offset of `W[0][0]` in the weight buffer.
    pub off: usize,
}

/// Forward: `y = x W^T + bias_scale * b` (`accumulate`: add to `y` instead of overwriting).
#[allow(clippy::too_many_arguments)]
pub fn linear_forward<T: Scalar>(
    s: &LinearSpec,
    rows: usize,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    bias_scale: T,
    y: &mut [T],
    accumulate: bool,
) {
    assert_eq!(x.len(), rows * s.inp);
    assert_eq!(y.len(), rows * s.out);
    let beta = if accumulate { T::ONE } else { T::ZERO };
    gemm(
        rows,
        s.inp,
        s.out,
        T::ONE,
        Mat::rm(x, s.inp),
        Mat::tr(w, s.ld).at(s.off),
        beta,
        y,
        0,
        s.out,
    );
    if let Some(b) = bias {
        assert_eq!(b.len(), s.out);
        for r in 0..rows {
            for (o, &bv) in y[r * s.out..(r + 1) * s.out].iter_mut().zip(b) {
                *o += bias_scale * bv;
            }
        }
    }
}

/// Backward: `dw` block (overwritten, same layout as the weight), `db` (overwritten), `dx`
/// (overwritten, or added to with `accumulate_dx`).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<T: Scalar>(
    s: &LinearSpec,
    rows: usize,
    x: &[T],
    w: &[T],
    dy: &[T],
    dw: &mut [T],
    db: Option<&mut [T]>,
    dx: Option<&mut [T]>,
) {
    assert_eq!(x.len(), rows * s.inp);
    assert_eq!(dy.len(), rows * s.out);
    // dW[out][in] = dy^T x
    gemm(
        s.out,
        rows,
        s.inp,
        T::ONE,
        Mat::tr(dy, s.out),
        Mat::rm(x, s.inp),
        T::ZERO,
        dw,
        s.off,
        s.ld,
    );
    if let Some(db) = db {
        assert_eq!(db.len(), s.out);
        for (o, d) in db.iter_mut().enumerate() {
            *d = (0..rows).map(|r| dy[r * s.out + o]).sum();
        }
    }
    if let Some(dx) = dx {
        assert_eq!(dx.len(), rows * s.inp);
        // dx = dy W
        gemm(
            rows,
            s.out,
            s.inp,
            T::ONE,
            Mat::rm(dy, s.out),
            Mat::rm(w, s.ld).at(s.off),
            T::ZERO,
            dx,
            0,
            s.inp,
        );
    }
}
