//! Batch normalisation over CNHW activations (one contiguous run per channel), PyTorch
//! semantics: biased variance to normalise, unbiased variance into the running estimate,
//! `running = (1 - momentum) * running + momentum * batch`.
//!
//! Per-channel sums are accumulated in `f64` so that `f32` statistics over 200 000 values
//! per channel stay accurate to the last bits PyTorch reports.

use rayon::prelude::*;

use crate::engine::scalar::Scalar;

/// Training-mode forward over `c` channels of `len` values each. Writes `y`, the batch mean
/// and `1/sqrt(var + eps)` per channel (for backward), and updates the running statistics.
/// `relu` applies a ReLU to `y` in the same pass. `len` must be at least 2.
#[allow(clippy::too_many_arguments)]
pub fn bn_forward_train<T: Scalar>(
    len: usize,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    y: &mut [T],
    mean_out: &mut [T],
    invstd_out: &mut [T],
    running_mean: &mut [T],
    running_var: &mut [T],
    momentum: f64,
    eps: f64,
    relu: bool,
) {
    let c = gamma.len();
    assert!(len >= 2);
    assert_eq!(x.len(), c * len);
    assert_eq!(y.len(), c * len);
    let stats: Vec<(f64, f64)> = x
        .par_chunks(len)
        .zip(y.par_chunks_mut(len))
        .enumerate()
        .map(|(ch, (xc, yc))| {
            let mean = block_sum(xc, |v| v) / len as f64;
            let mt = T::from_f64(mean);
            let ss = block_sum(xc, |v| (v - mt) * (v - mt));
            let var = ss / len as f64;
            let invstd = 1.0 / (var + eps).sqrt();
            let scale = T::from_f64(gamma[ch].to_f64() * invstd);
            let shift = T::from_f64(beta[ch].to_f64() - mean * gamma[ch].to_f64() * invstd);
            affine(xc, yc, scale, shift, relu);
            (mean, var)
        })
        .collect();
    for (ch, (mean, var)) in stats.into_iter().enumerate() {
        let unbiased = var * len as f64 / (len - 1) as f64;
        mean_out[ch] = T::from_f64(mean);
        invstd_out[ch] = T::from_f64(1.0 / (var + eps).sqrt());
        running_mean[ch] =
            T::from_f64((1.0 - momentum) * running_mean[ch].to_f64() + momentum * mean);
        running_var[ch] =
            T::from_f64((1.0 - momentum) * running_var[ch].to_f64() + momentum * unbiased);
    }
}

/// Evaluation-mode forward: normalise with the running statistics.
#[allow(clippy::too_many_arguments)]
pub fn bn_forward_eval<T: Scalar>(
    len: usize,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    running_mean: &[T],
    running_var: &[T],
    y: &mut [T],
    eps: f64,
    relu: bool,
) {
    let c = gamma.len();
    assert_eq!(x.len(), c * len);
    assert_eq!(y.len(), c * len);
    x.par_chunks(len)
        .zip(y.par_chunks_mut(len))
        .enumerate()
        .for_each(|(ch, (xc, yc))| {
            let invstd = 1.0 / (running_var[ch].to_f64() + eps).sqrt();
            let g = gamma[ch].to_f64();
            let scale = T::from_f64(g * invstd);
            let shift = T::from_f64(beta[ch].to_f64() - running_mean[ch].to_f64() * g * invstd);
            affine(xc, yc, scale, shift, relu);
        });
}

fn affine<T: Scalar>(x: &[T], y: &mut [T], scale: T, shift: T, relu: bool) {
    if relu {
        for (o, &v) in y.iter_mut().zip(x) {
            let t = v * scale + shift;
            *o = if t > T::ZERO { t } else { T::ZERO };
        }
    } else {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = v * scale + shift;
        }
    }
}

/// Training-mode backward. `x` is the forward input, `mean`/`invstd` the saved statistics.
/// Where `relu_out` is given (the forward ran with `relu`), `dy` is first masked by
/// `relu_out > 0`. Writes `dx` and the parameter gradients `dgamma`, `dbeta` (overwritten).
#[allow(clippy::too_many_arguments)]
pub fn bn_backward<T: Scalar>(
    len: usize,
    x: &[T],
    gamma: &[T],
    mean: &[T],
    invstd: &[T],
    dy: &[T],
    relu_out: Option<&[T]>,
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    let c = gamma.len();
    assert_eq!(x.len(), c * len);
    assert_eq!(dy.len(), c * len);
    assert_eq!(dx.len(), c * len);
    let sums: Vec<(f64, f64)> = dx
        .par_chunks_mut(len)
        .enumerate()
        .map(|(ch, dxc)| {
            let r = ch * len..(ch + 1) * len;
            let (xc, dyc) = (&x[r.clone()], &dy[r.clone()]);
            let m = mean[ch];
            let is = invstd[ch];
            // The masked output gradient, written into dx first (dx is overwritten below).
            match relu_out {
                Some(o) => {
                    for ((d, &g), &ov) in dxc.iter_mut().zip(dyc).zip(&o[r]) {
                        *d = if ov > T::ZERO { g } else { T::ZERO };
                    }
                }
                None => dxc.copy_from_slice(dyc),
            }
            let sdy = block_sum(dxc, |g| g);
            let sdyx = block_sum2(dxc, xc, |g, v| g * (v - m)) * is.to_f64();
            // dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy*xhat))
            let k = gamma[ch] * is;
            let a = T::from_f64(sdy / len as f64);
            let bq = T::from_f64(sdyx / len as f64) * is;
            for (d, &v) in dxc.iter_mut().zip(xc) {
                *d = k * (*d - a - (v - m) * bq);
            }
            (sdyx, sdy)
        })
        .collect();
    for (ch, (dg, db)) in sums.into_iter().enumerate() {
        dgamma[ch] = T::from_f64(dg);
        dbeta[ch] = T::from_f64(db);
    }
}

/// Block size of [`block_sum`]: short enough that eight `f32` lanes stay accurate (each lane
/// adds 64 values), long enough to vectorise.
const BLOCK: usize = 512;

/// `sum f(x_i)` with eight accumulators in `T` inside each block and `f64` across blocks.
#[inline]
fn block_sum<T: Scalar>(x: &[T], f: impl Fn(T) -> T) -> f64 {
    let mut total = 0.0f64;
    for c in x.chunks(BLOCK) {
        let mut acc = [T::ZERO; 8];
        let mut it = c.chunks_exact(8);
        for ch in &mut it {
            for l in 0..8 {
                acc[l] += f(ch[l]);
            }
        }
        for a in acc {
            total += a.to_f64();
        }
        for &v in it.remainder() {
            total += f(v).to_f64();
        }
    }
    total
}

/// `sum f(a_i, b_i)`, blocked as [`block_sum`].
#[inline]
fn block_sum2<T: Scalar>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> f64 {
    let mut total = 0.0f64;
    for (ca, cb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut acc = [T::ZERO; 8];
        let mut ia = ca.chunks_exact(8);
        let mut ib = cb.chunks_exact(8);
        for (xa, xb) in (&mut ia).zip(&mut ib) {
            for l in 0..8 {
                acc[l] += f(xa[l], xb[l]);
            }
        }
        for v in acc {
            total += v.to_f64();
        }
        for (&x, &y) in ia.remainder().iter().zip(ib.remainder()) {
            total += f(x, y).to_f64();
        }
    }
    total
}
