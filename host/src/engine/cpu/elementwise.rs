//! Element-wise kernels: ReLU backward, add, sigmoid gate, FiLM, layout transposes (a residual
//! block's add and ReLU run inside batch norm: [`super::norm::BnAct`]).

use rayon::prelude::*;

use crate::engine::scalar::Scalar;

/// Chunk length for parallel element-wise passes (fixed, so splitting never depends on the
/// scheduler; element-wise results do not depend on it anyway).
const CHUNK: usize = 1 << 15;

/// ReLU backward in place: `dy[i] = 0` where the ReLU output `out[i]` is not positive.
pub fn relu_backward<T: Scalar>(out: &[T], dy: &mut [T]) {
    assert_eq!(out.len(), dy.len());
    dy.par_chunks_mut(CHUNK)
        .zip(out.par_chunks(CHUNK))
        .for_each(|(dc, oc)| {
            for (d, &o) in dc.iter_mut().zip(oc) {
                if o <= T::ZERO {
                    *d = T::ZERO;
                }
            }
        });
}

/// `y += x`.
pub fn add_assign<T: Scalar>(y: &mut [T], x: &[T]) {
    assert_eq!(y.len(), x.len());
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(yc, xc)| {
            for (a, &b) in yc.iter_mut().zip(xc) {
                *a += b;
            }
        });
}

/// The logistic sigmoid, computed without overflow for large `|v|`.
#[inline]
pub fn sigmoid<T: Scalar>(v: T) -> T {
    if v >= T::ZERO {
        T::ONE / (T::ONE + (-v).exp())
    } else {
        let e = v.exp();
        e / (T::ONE + e)
    }
}

/// Gated fusion: `gate = sigmoid(gx)`, `z = gate * y` (all `[rows][d]`).
pub fn gate_forward<T: Scalar>(gx: &[T], y: &[T], gate: &mut [T], z: &mut [T]) {
    assert!(gx.len() == y.len() && y.len() == gate.len() && gate.len() == z.len());
    for i in 0..gx.len() {
        gate[i] = sigmoid(gx[i]);
        z[i] = gate[i] * y[i];
    }
}

/// Backward of [`gate_forward`]: `dgx = dz * y * gate * (1 - gate)`, `dy = dz * gate`.
pub fn gate_backward<T: Scalar>(gate: &[T], y: &[T], dz: &[T], dgx: &mut [T], dy: &mut [T]) {
    assert!(gate.len() == y.len() && y.len() == dz.len());
    for i in 0..gate.len() {
        let s = gate[i];
        dgx[i] = dz[i] * y[i] * s * (T::ONE - s);
        dy[i] = dz[i] * s;
    }
}

/// FiLM: `h` is `[rows][2d]` holding `gamma` then `beta`; `z = gamma * x + beta`.
pub fn film_forward<T: Scalar>(d: usize, h: &[T], x: &[T], z: &mut [T]) {
    let rows = x.len() / d;
    assert!(h.len() == rows * 2 * d && z.len() == rows * d);
    for r in 0..rows {
        for i in 0..d {
            z[r * d + i] = h[r * 2 * d + i] * x[r * d + i] + h[r * 2 * d + d + i];
        }
    }
}

/// Backward of [`film_forward`]: `dh = [dz * x, dz]`, `dx = dz * gamma`.
pub fn film_backward<T: Scalar>(d: usize, h: &[T], x: &[T], dz: &[T], dh: &mut [T], dx: &mut [T]) {
    let rows = x.len() / d;
    assert!(h.len() == rows * 2 * d && dz.len() == rows * d && dh.len() == h.len());
    for r in 0..rows {
        for i in 0..d {
            let g = dz[r * d + i];
            dh[r * 2 * d + i] = g * x[r * d + i];
            dh[r * 2 * d + d + i] = g;
            dx[r * d + i] = g * h[r * 2 * d + i];
        }
    }
}

/// Swaps the two outer axes: `x` is `[a][b][inner]`, `y` becomes `[b][a][inner]`. Turns an
/// NCHW (or N,C,T,H,W) input into the engine's CNHW layout.
pub fn swap_outer<T: Scalar>(a: usize, b: usize, inner: usize, x: &[T], y: &mut [T]) {
    assert_eq!(x.len(), a * b * inner);
    assert_eq!(y.len(), a * b * inner);
    y.par_chunks_mut(inner).enumerate().for_each(|(i, dst)| {
        let (bi, ai) = (i / a, i % a);
        dst.copy_from_slice(&x[(ai * b + bi) * inner..(ai * b + bi + 1) * inner]);
    });
}
