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
            let mean = xc.iter().map(|v| v.to_f64()).sum::<f64>() / len as f64;
            let ss = xc
                .iter()
                .map(|v| {
                    let d = v.to_f64() - mean;
                    d * d
                })
                .sum::<f64>();
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
            let mask = relu_out.map(|o| &o[r]);
            let m = mean[ch].to_f64();
            let is = invstd[ch].to_f64();
            let g = |i: usize| -> f64 {
                match mask {
                    Some(o) if o[i] <= T::ZERO => 0.0,
                    _ => dyc[i].to_f64(),
                }
            };
            let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
            for i in 0..len {
                let d = g(i);
                sdy += d;
                sdyx += d * (xc[i].to_f64() - m) * is;
            }
            // dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy*xhat))
            let k = gamma[ch].to_f64() * is;
            let a = sdy / len as f64;
            let b = sdyx / len as f64;
            for i in 0..len {
                let xhat = (xc[i].to_f64() - m) * is;
                dxc[i] = T::from_f64(k * (g(i) - a - xhat * b));
            }
            (sdyx, sdy)
        })
        .collect();
    for (ch, (dg, db)) in sums.into_iter().enumerate() {
        dgamma[ch] = T::from_f64(dg);
        dbeta[ch] = T::from_f64(db);
    }
}
