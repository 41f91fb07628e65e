//! Batch normalisation over CNHW activations (one contiguous run per channel), PyTorch
//! semantics: biased variance to normalise, unbiased variance into the running estimate,
//! `running = (1 - momentum) * running + momentum * batch`.
//!
//! Per-channel sums are accumulated in `f64` so that `f32` statistics over 200 000 values
//! per channel stay accurate to the last bits PyTorch reports.

use rayon::prelude::*;

use crate::engine::scalar::Scalar;

/// Values per channel that the training forward saves for the backward pass, one run of
/// `c` values each: the batch mean, `1/sqrt(var + eps)`, and the scale and shift it applied
/// (`y = x * scale + shift`). The backward pass recomputes a fused ReLU's mask from the last
/// two and `x` (the forward's own expression, so the same bits), instead of reading the
/// output back.
pub const BN_SAVED: usize = 4;

/// What batch norm applies to its normalised output `t = x * scale + shift`, in the same pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BnAct<R> {
    /// `y = t`.
    Identity,
    /// `y = relu(t)`.
    Relu,
    /// `y = relu(t + residual)`: the end of a residual block, whose sum and ReLU then take no
    /// pass of their own. The ReLU's mask is not recomputed by the backward pass: the caller
    /// masks the output gradient by `y > 0` (it is the residual's gradient too).
    AddRelu(R),
}

impl<R> BnAct<R> {
    /// The same activation over another residual type.
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> BnAct<S> {
        match self {
            BnAct::Identity => BnAct::Identity,
            BnAct::Relu => BnAct::Relu,
            BnAct::AddRelu(r) => BnAct::AddRelu(f(r)),
        }
    }
}

/// Training-mode forward over `c` channels of `len` values each. Writes `y` (with `act`
/// applied; `None`: the statistics alone, for a consumer that applies them as it reads `x`:
/// [`bn_relu`]), the [`BN_SAVED`] values per channel into `saved` (for backward), and updates
/// the running statistics. `len` must be at least 2.
#[allow(clippy::too_many_arguments)]
pub fn bn_forward_train<T: Scalar>(
    len: usize,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    act: BnAct<&[T]>,
    y: Option<&mut [T]>,
    saved: &mut [T],
    running_mean: &mut [T],
    running_var: &mut [T],
    momentum: f64,
    eps: f64,
) {
    let c = gamma.len();
    assert!(len >= 2);
    assert_eq!(x.len(), c * len);
    assert_eq!(saved.len(), BN_SAVED * c);
    check_residual(act, c * len);
    // (mean, var, invstd, scale, shift) of channel ch.
    let stats_of = |ch: usize, xc: &[T]| {
        let mean = block_sum(xc, |v| v) / len as f64;
        let mt = T::from_f64(mean);
        let ss = block_sum(xc, |v| (v - mt) * (v - mt));
        let var = ss / len as f64;
        let invstd = 1.0 / (var + eps).sqrt();
        let scale = T::from_f64(gamma[ch].to_f64() * invstd);
        let shift = T::from_f64(beta[ch].to_f64() - mean * gamma[ch].to_f64() * invstd);
        (mean, var, invstd, scale, shift)
    };
    let stats: Vec<(f64, f64, f64, T, T)> = match y {
        Some(y) => {
            assert_eq!(y.len(), c * len);
            x.par_chunks(len)
                .zip(y.par_chunks_mut(len))
                .enumerate()
                .map(|(ch, (xc, yc))| {
                    let st = stats_of(ch, xc);
                    affine(xc, yc, st.3, st.4, channel(act, ch, len));
                    st
                })
                .collect()
        }
        None => x
            .par_chunks(len)
            .enumerate()
            .map(|(ch, xc)| stats_of(ch, xc))
            .collect(),
    };
    let (mean_out, rest) = saved.split_at_mut(c);
    let (invstd_out, rest) = rest.split_at_mut(c);
    let (scale_out, shift_out) = rest.split_at_mut(c);
    for (ch, (mean, var, invstd, scale, shift)) in stats.into_iter().enumerate() {
        let unbiased = var * len as f64 / (len - 1) as f64;
        mean_out[ch] = T::from_f64(mean);
        invstd_out[ch] = T::from_f64(invstd);
        scale_out[ch] = scale;
        shift_out[ch] = shift;
        running_mean[ch] =
            T::from_f64((1.0 - momentum) * running_mean[ch].to_f64() + momentum * mean);
        running_var[ch] =
            T::from_f64((1.0 - momentum) * running_var[ch].to_f64() + momentum * unbiased);
    }
}

/// Evaluation-mode forward: normalise with the running statistics, then apply `act`.
#[allow(clippy::too_many_arguments)]
pub fn bn_forward_eval<T: Scalar>(
    len: usize,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    running_mean: &[T],
    running_var: &[T],
    act: BnAct<&[T]>,
    y: &mut [T],
    eps: f64,
) {
    let c = gamma.len();
    assert_eq!(x.len(), c * len);
    assert_eq!(y.len(), c * len);
    check_residual(act, c * len);
    x.par_chunks(len)
        .zip(y.par_chunks_mut(len))
        .enumerate()
        .for_each(|(ch, (xc, yc))| {
            let (_, scale, shift) = eval_affine(gamma, beta, running_mean, running_var, ch, eps);
            affine(xc, yc, scale, shift, channel(act, ch, len));
        });
}

/// Channel `ch`'s evaluation inverse deviation and the scale and shift applied (f64
/// expressions rounded once): one function for [`bn_forward_eval`] and [`bn_eval_saved`], so
/// that a consumer applying the latter has the former's bits.
fn eval_affine<T: Scalar>(
    gamma: &[T],
    beta: &[T],
    running_mean: &[T],
    running_var: &[T],
    ch: usize,
    eps: f64,
) -> (f64, T, T) {
    let invstd = 1.0 / (running_var[ch].to_f64() + eps).sqrt();
    let g = gamma[ch].to_f64();
    let scale = T::from_f64(g * invstd);
    let shift = T::from_f64(beta[ch].to_f64() - running_mean[ch].to_f64() * g * invstd);
    (invstd, scale, shift)
}

/// The evaluation batch norm's values in the training forward's `saved` layout ([`BN_SAVED`]
/// runs of `c`: the running mean, the inverse deviation, the scale and the shift), for a
/// consumer that applies them as it reads ([`bn_relu`]) instead of reading a written output.
pub fn bn_eval_saved<T: Scalar>(
    gamma: &[T],
    beta: &[T],
    running_mean: &[T],
    running_var: &[T],
    eps: f64,
    saved: &mut [T],
) {
    let c = gamma.len();
    assert_eq!(saved.len(), BN_SAVED * c);
    for ch in 0..c {
        let (invstd, scale, shift) = eval_affine(gamma, beta, running_mean, running_var, ch, eps);
        saved[ch] = running_mean[ch];
        saved[c + ch] = T::from_f64(invstd);
        saved[2 * c + ch] = scale;
        saved[3 * c + ch] = shift;
    }
}

/// Channel `ch`'s part of `act` (its run of the residual).
fn channel<T>(act: BnAct<&[T]>, ch: usize, len: usize) -> BnAct<&[T]> {
    act.map(|r| &r[ch * len..(ch + 1) * len])
}

/// Panics unless a residual has the output's length `n`.
fn check_residual<T>(act: BnAct<&[T]>, n: usize) {
    if let BnAct::AddRelu(r) = act {
        assert_eq!(r.len(), n, "batch norm residual length");
    }
}

#[inline]
fn relu<T: Scalar>(t: T) -> T {
    if t > T::ZERO {
        t
    } else {
        T::ZERO
    }
}

/// The normalised value `v * scale + shift`: one expression for the forward pass and the
/// backward's recomputed ReLU mask, so that the mask has the forward's bits.
#[inline]
fn normalised<T: Scalar>(v: T, scale: T, shift: T) -> T {
    v * scale + shift
}

/// `relu(v * scale + shift)`, the bits [`BnAct::Relu`] writes: for a consumer that applies a
/// batch norm with its ReLU as it reads the input (the max pooling after the stem), instead of
/// reading a stored output.
#[inline]
pub fn bn_relu<T: Scalar>(v: T, scale: T, shift: T) -> T {
    relu(normalised(v, scale, shift))
}

/// `y = act(normalised(x))`.
fn affine<T: Scalar>(x: &[T], y: &mut [T], scale: T, shift: T, act: BnAct<&[T]>) {
    match act {
        BnAct::Identity => {
            for (o, &v) in y.iter_mut().zip(x) {
                *o = normalised(v, scale, shift);
            }
        }
        BnAct::Relu => {
            for (o, &v) in y.iter_mut().zip(x) {
                *o = bn_relu(v, scale, shift);
            }
        }
        BnAct::AddRelu(r) => {
            for ((o, &v), &rv) in y.iter_mut().zip(x).zip(r) {
                *o = relu(normalised(v, scale, shift) + rv);
            }
        }
    }
}

/// Training-mode backward. `x` is the forward input, `saved` what the forward saved
/// ([`BN_SAVED`] per channel). With `relu` (the forward ran with [`BnAct::Relu`]), `dy` is
/// first masked where that ReLU's output was not positive, recomputed from `x` and the saved
/// scale and shift. Writes `dx` and the parameter gradients `dgamma`, `dbeta` (overwritten).
#[allow(clippy::too_many_arguments)]
pub fn bn_backward<T: Scalar>(
    len: usize,
    x: &[T],
    gamma: &[T],
    saved: &[T],
    dy: &[T],
    relu: bool,
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    let c = gamma.len();
    assert_eq!(x.len(), c * len);
    assert_eq!(dy.len(), c * len);
    assert_eq!(dx.len(), c * len);
    assert_eq!(saved.len(), BN_SAVED * c);
    let (mean, invstd) = (&saved[..c], &saved[c..2 * c]);
    let (scale, shift) = (&saved[2 * c..3 * c], &saved[3 * c..]);
    let sums: Vec<(f64, f64)> = dx
        .par_chunks_mut(len)
        .enumerate()
        .map(|(ch, dxc)| {
            let r = ch * len..(ch + 1) * len;
            let (xc, dyc) = (&x[r.clone()], &dy[r]);
            let m = mean[ch];
            let is = invstd[ch];
            // The masked output gradient, written into dx first (dx is overwritten below).
            if relu {
                let (sc, sh) = (scale[ch], shift[ch]);
                for ((d, &g), &v) in dxc.iter_mut().zip(dyc).zip(xc) {
                    *d = if normalised(v, sc, sh) > T::ZERO {
                        g
                    } else {
                        T::ZERO
                    };
                }
            } else {
                dxc.copy_from_slice(dyc);
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
