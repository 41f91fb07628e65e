//! Finite-difference gradient checks of every layer and of the whole small model, in `f64`.
//!
//! Tolerances: central differences with `eps = 1e-6` in `f64` have truncation error about
//! `eps^2 * f''' ~ 1e-12` and rounding error about `1e-16 / eps ~ 1e-10`, so an analytic
//! gradient that is right agrees to far better than the `1e-6` relative (plus `1e-9`
//! absolute) allowed here, and one with a wrong term misses by orders of magnitude.
//! Random inputs keep ReLU / max-pool kinks away from the probes with overwhelming
//! probability.

mod engine_common;

use engine_common::{check_grad, dot, Rng};
use ogm_host::engine::cpu::conv::{
    conv2d_backward, conv2d_backward_with, conv2d_forward, im2col_backward_with,
    im2col_forward_with, ConvGeom, ScratchPool,
};
use ogm_host::engine::cpu::elementwise::{
    film_backward, film_forward, gate_backward, gate_forward, relu_backward,
};
use ogm_host::engine::cpu::linear::{linear_backward, linear_forward, LinearSpec};
use ogm_host::engine::cpu::norm::{
    bn_backward, bn_forward_eval, bn_forward_train, bn_relu, BnAct, BN_SAVED,
};
use ogm_host::engine::cpu::pool::{
    avgpool_backward, avgpool_forward, maxpool_backward, maxpool_forward, maxpool_forward_direct,
    PoolGeom,
};
use ogm_host::engine::cpu::winograd;
use ogm_host::engine::{
    softmax_cross_entropy, AvModel, CpuBackend, FusionKind, Input, Mode, ModelConfig,
};

const EPS: f64 = 1e-6;
const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-9;

/// Direct convolution, the textbook loops, for checking the forward pass.
fn naive_conv(g: &ConvGeom, x: &[f64], w: &[f64]) -> Vec<f64> {
    let (oh, ow) = (g.oh(), g.ow());
    let mut y = vec![0.0; g.out_len()];
    for co in 0..g.cout {
        for n in 0..g.n {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0.0;
                    for ci in 0..g.cin {
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                s += x[((ci * g.n + n) * g.h + iy as usize) * g.w + ix as usize]
                                    * w[((co * g.cin + ci) * g.k + ky) * g.k + kx];
                            }
                        }
                    }
                    y[((co * g.n + n) * oh + oy) * ow + ox] = s;
                }
            }
        }
    }
    y
}

fn geoms() -> Vec<ConvGeom> {
    let g = |cin, cout, k, stride, pad, n, h, w| ConvGeom {
        cin,
        cout,
        k,
        stride,
        pad,
        n,
        h,
        w,
    };
    vec![
        g(2, 3, 3, 1, 1, 2, 5, 4),
        g(3, 2, 3, 2, 1, 3, 7, 6),
        g(1, 4, 7, 2, 3, 2, 9, 8),
        g(3, 2, 1, 2, 0, 2, 5, 5),
        g(2, 2, 3, 1, 0, 1, 4, 6),
        g(2, 3, 3, 2, 1, 2, 2, 1),
    ]
}

#[test]
fn conv_forward_matches_direct_loops() {
    let mut rng = Rng(1);
    for g in geoms() {
        let x = rng.vec(g.in_len());
        let w = rng.vec(g.w_len());
        let mut y = vec![0.0; g.out_len()];
        conv2d_forward(&g, &x, &w, &mut y);
        engine_common::assert_close(&format!("{g:?}"), &y, &naive_conv(&g, &x, &w), 1e-12, 1.0);
    }
}

#[test]
fn conv_gradients() {
    let mut rng = Rng(2);
    for g in geoms() {
        let mut x = rng.vec(g.in_len());
        let mut w = rng.vec(g.w_len());
        let r = rng.vec(g.out_len());
        let (mut dw, mut dx) = (vec![0.0; g.w_len()], vec![0.0; g.in_len()]);
        conv2d_backward(&g, &x, &w, &r, &mut dw, Some(&mut dx));
        let loss = |x: &[f64], w: &[f64]| {
            let mut y = vec![0.0; g.out_len()];
            conv2d_forward(&g, x, w, &mut y);
            dot(&r, &y)
        };
        let all_x: Vec<usize> = (0..x.len()).collect();
        let all_w: Vec<usize> = (0..w.len()).collect();
        let w0 = w.clone();
        check_grad("conv dx", &mut x, &dx, &all_x, EPS, RTOL, ATOL, |x| {
            loss(x, &w0)
        });
        let x0 = x.clone();
        check_grad("conv dw", &mut w, &dw, &all_w, EPS, RTOL, ATOL, |w| {
            loss(&x0, w)
        });
        // Without dx the weight gradient is the same.
        let mut dw2 = vec![0.0; g.w_len()];
        conv2d_backward(&g, &x, &w, &r, &mut dw2, None);
        assert_eq!(dw, dw2);
    }
}

/// `f` run in a rayon pool of `threads` threads.
fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// Convolutions wide enough that spare threads cut each product into row blocks (few samples,
/// 32 or more output channels and lowered rows): in pools of 1, 3 and 8 threads the forward
/// pass matches the direct loops, and the gradients satisfy the adjoint identities
/// `<dx, u> = <dy, conv(u, w)>` and `<dw, v> = <dy, conv(x, v)>` (exact for a bilinear map, up
/// to rounding) for random directions `u`, `v`.
#[test]
fn conv_row_blocks_on_spare_threads_match_direct_loops() {
    let g = |cin, cout, k, stride, pad, n, h, w| ConvGeom {
        cin,
        cout,
        k,
        stride,
        pad,
        n,
        h,
        w,
    };
    let mut rng = Rng(21);
    for geom in [
        g(64, 48, 3, 1, 1, 2, 6, 5),
        g(32, 64, 1, 2, 0, 1, 7, 7),
        g(16, 40, 3, 2, 1, 3, 9, 9),
    ] {
        let (x, w, dy) = (
            rng.vec(geom.in_len()),
            rng.vec(geom.w_len()),
            rng.vec(geom.out_len()),
        );
        let (u, v) = (rng.vec(geom.in_len()), rng.vec(geom.w_len()));
        let want = naive_conv(&geom, &x, &w);
        let (dx_u, dw_v) = (
            dot(&dy, &naive_conv(&geom, &u, &w)),
            dot(&dy, &naive_conv(&geom, &x, &v)),
        );
        for threads in [1, 3, 8] {
            let what = format!("{geom:?}, {threads} threads");
            let (y, dx, dw) = in_pool(threads, || {
                let mut y = vec![0.0; geom.out_len()];
                conv2d_forward(&geom, &x, &w, &mut y);
                let (mut dw, mut dx) = (vec![0.0; geom.w_len()], vec![0.0; geom.in_len()]);
                conv2d_backward(&geom, &x, &w, &dy, &mut dw, Some(&mut dx));
                (y, dx, dw)
            });
            engine_common::assert_close(&what, &y, &want, 1e-12, 1.0);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-10 * (1.0 + b.abs());
            assert!(close(dot(&dx, &u), dx_u), "{what}: dx");
            assert!(close(dot(&dw, &v), dw_v), "{what}: dw");
        }
    }
}

/// A 3x3, stride-1, pad-1 convolution (the geometry Winograd takes).
fn same3(cin: usize, cout: usize, n: usize, h: usize, w: usize) -> ConvGeom {
    ConvGeom {
        cin,
        cout,
        k: 3,
        stride: 1,
        pad: 1,
        n,
        h,
        w,
    }
}

/// Winograd F(2x2, 3x3) in `f64` on planes of every parity, down to 1x1 (tiles that hang
/// over the edge on one or both axes): the forward pass matches the direct loops, and both
/// gradients match im2col + GEMM (itself checked by finite differences above), all to
/// 1e-12 of the tensor's scale. Each call is checked against its own pass too: `dw` alone
/// equals `dw` with `dx`.
#[test]
fn winograd_matches_direct_convolution_on_odd_planes() {
    let mut rng = Rng(31);
    let pool = ScratchPool::default();
    for (cin, cout, n, h, w) in [
        (1, 1, 1, 1, 1),
        (2, 3, 2, 1, 2),
        (3, 2, 1, 2, 1),
        (2, 2, 3, 3, 3),
        (4, 3, 2, 5, 4),
        (3, 5, 2, 7, 7),
        (5, 4, 1, 9, 6),
        (2, 3, 2, 4, 8),
        (3, 3, 1, 2, 9),
    ] {
        let g = same3(cin, cout, n, h, w);
        assert!(winograd::applies(&g));
        let what = format!("{g:?}");
        let (x, wt, dy) = (
            rng.vec(g.in_len()),
            rng.vec(g.w_len()),
            rng.vec(g.out_len()),
        );
        let mut y = vec![f64::NAN; g.out_len()];
        winograd::forward_with(&pool, &g, &x, &wt, &mut y);
        engine_common::assert_close(&what, &y, &naive_conv(&g, &x, &wt), 1e-12, 1.0);

        let (mut dw, mut dx) = (vec![f64::NAN; g.w_len()], vec![f64::NAN; g.in_len()]);
        winograd::backward_with(&pool, &g, &x, &wt, &dy, &mut dw, Some(&mut dx));
        let (mut dw_ref, mut dx_ref) = (vec![0.0; g.w_len()], vec![0.0; g.in_len()]);
        im2col_backward_with(&pool, &g, &x, &wt, &dy, &mut dw_ref, Some(&mut dx_ref));
        engine_common::assert_close(&format!("{what} dx"), &dx, &dx_ref, 1e-12, 1.0);
        engine_common::assert_close(&format!("{what} dw"), &dw, &dw_ref, 1e-12, 1.0);
        let mut dw_only = vec![f64::NAN; g.w_len()];
        winograd::backward_with(&pool, &g, &x, &wt, &dy, &mut dw_only, None);
        assert_eq!(dw, dw_only, "{what}: dw without dx");
    }
}

/// Batches of several tile blocks, split over pools of 1, 2, 3 and 8 threads, and channel
/// counts wide enough for the GEMMs' row blocks: every thread count gives the direct
/// convolution's results (forward to 1e-12, gradients through the adjoint identities
/// `<dx, u> = <dy, conv(u, w)>`, `<dw, v> = <dy, conv(x, v)>`), and the same thread count
/// gives the same bits twice.
#[test]
fn winograd_blocks_and_threads_match_direct_loops() {
    let mut rng = Rng(32);
    let pool = ScratchPool::default();
    for g in [
        same3(3, 2, 5, 25, 23),
        same3(40, 48, 1, 7, 7),
        same3(33, 17, 3, 6, 5),
    ] {
        let (x, wt, dy) = (
            rng.vec(g.in_len()),
            rng.vec(g.w_len()),
            rng.vec(g.out_len()),
        );
        let (u, v) = (rng.vec(g.in_len()), rng.vec(g.w_len()));
        let want = naive_conv(&g, &x, &wt);
        let (dx_u, dw_v) = (
            dot(&dy, &naive_conv(&g, &u, &wt)),
            dot(&dy, &naive_conv(&g, &x, &v)),
        );
        for threads in [1, 2, 3, 8] {
            let what = format!("{g:?}, {threads} threads");
            let run = || {
                in_pool(threads, || {
                    let mut y = vec![0.0; g.out_len()];
                    winograd::forward_with(&pool, &g, &x, &wt, &mut y);
                    let (mut dw, mut dx) = (vec![0.0; g.w_len()], vec![0.0; g.in_len()]);
                    winograd::backward_with(&pool, &g, &x, &wt, &dy, &mut dw, Some(&mut dx));
                    (y, dx, dw)
                })
            };
            let (y, dx, dw) = run();
            engine_common::assert_close(&what, &y, &want, 1e-12, 1.0);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-10 * (1.0 + b.abs());
            assert!(close(dot(&dx, &u), dx_u), "{what}: dx");
            assert!(close(dot(&dw, &v), dw_v), "{what}: dw");
            assert!(run() == (y, dx, dw), "{what}: a second run differs");
        }
    }
}

/// In `f32`, on a layer of the model's size (64 channels, 14x14, 4 samples), Winograd stays
/// within 1e-5 of each tensor's scale of the `f64` direct convolution, as im2col + GEMM
/// does: the transforms' additions and halvings cost no more than rounding.
#[test]
fn winograd_f32_error_is_rounding() {
    let mut rng = Rng(33);
    let g = same3(64, 64, 4, 14, 14);
    let (x, wt, dy) = (
        rng.vec(g.in_len()),
        rng.vec(g.w_len()),
        rng.vec(g.out_len()),
    );
    let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let back = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let (xf, wf, dyf) = (f(&x), f(&wt), f(&dy));
    // The f64 reference from the rounded inputs, so that only the arithmetic differs.
    let (x64, w64, dy64) = (back(&xf), back(&wf), back(&dyf));
    let (p32, p64) = (ScratchPool::<f32>::default(), ScratchPool::<f64>::default());
    let mut y_ref = vec![0.0; g.out_len()];
    im2col_forward_with(&p64, &g, &x64, &w64, &mut y_ref);
    let (mut dw_ref, mut dx_ref) = (vec![0.0; g.w_len()], vec![0.0; g.in_len()]);
    im2col_backward_with(&p64, &g, &x64, &w64, &dy64, &mut dw_ref, Some(&mut dx_ref));
    let mut y = vec![0.0f32; g.out_len()];
    winograd::forward_with(&p32, &g, &xf, &wf, &mut y);
    let (mut dw, mut dx) = (vec![0.0f32; g.w_len()], vec![0.0f32; g.in_len()]);
    winograd::backward_with(&p32, &g, &xf, &wf, &dyf, &mut dw, Some(&mut dx));
    engine_common::assert_close("f32 y", &back(&y), &y_ref, 1e-5, 0.0);
    engine_common::assert_close("f32 dx", &back(&dx), &dx_ref, 1e-5, 0.0);
    engine_common::assert_close("f32 dw", &back(&dw), &dw_ref, 1e-5, 0.0);
}

/// An empty batch gives a zero weight gradient on both paths, also from a pool whose
/// buffers hold an earlier convolution's values.
#[test]
fn empty_batch_gives_zero_weight_gradient() {
    let mut rng = Rng(34);
    let pool = ScratchPool::default();
    for (k, stride, pad) in [(3, 1, 1), (3, 2, 1)] {
        let geom = |n| ConvGeom {
            cin: 3,
            cout: 4,
            k,
            stride,
            pad,
            n,
            h: 6,
            w: 5,
        };
        // Leave used buffers in the pool first.
        let g = geom(2);
        let (x, wt, dy) = (
            rng.vec(g.in_len()),
            rng.vec(g.w_len()),
            rng.vec(g.out_len()),
        );
        let (mut dw, mut dx) = (vec![0.0; g.w_len()], vec![0.0; g.in_len()]);
        conv2d_backward_with(&pool, &g, &x, &wt, &dy, &mut dw, Some(&mut dx));
        let e = geom(0);
        let mut dw = vec![f64::NAN; e.w_len()];
        conv2d_backward_with(&pool, &e, &[], &wt, &[], &mut dw, Some(&mut []));
        assert!(dw.iter().all(|v| *v == 0.0), "{e:?}: {dw:?}");
    }
}

/// The dispatch: the 3x3 stride-1 pad-1 convolutions go to Winograd, everything else (the
/// stem's 7x7, strided 3x3s, 1x1 shortcuts, unpadded 3x3s) to im2col + GEMM.
#[test]
fn winograd_takes_exactly_the_same_padded_3x3s() {
    let g = |k, stride, pad| ConvGeom {
        cin: 2,
        cout: 2,
        k,
        stride,
        pad,
        n: 1,
        h: 8,
        w: 8,
    };
    assert!(winograd::applies(&g(3, 1, 1)));
    for (k, stride, pad) in [
        (7, 2, 3),
        (3, 2, 1),
        (1, 2, 0),
        (1, 1, 0),
        (3, 1, 0),
        (5, 1, 2),
    ] {
        assert!(!winograd::applies(&g(k, stride, pad)), "{k} {stride} {pad}");
    }
}

/// A batch-norm case's activation: [`BnAct`] without its residual.
type Act = BnAct<()>;

fn bn_case(act: Act) {
    let mut rng = Rng(match act {
        BnAct::Identity => 3,
        BnAct::Relu => 4,
        BnAct::AddRelu(()) => 5,
    });
    let (c, len) = (3, 10);
    let mut x = rng.vec(c * len);
    let mut gamma: Vec<f64> = rng.vec(c).iter().map(|v| 1.0 + 0.5 * v).collect();
    let mut beta = rng.vec(c);
    let mut res = rng.vec(c * len);
    let r = rng.vec(c * len);
    let fwd = |x: &[f64], gamma: &[f64], beta: &[f64], res: &[f64]| {
        let (mut y, mut saved) = (vec![0.0; c * len], vec![0.0; BN_SAVED * c]);
        let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
        let a = act.map(|()| res);
        bn_forward_train(
            len,
            x,
            gamma,
            beta,
            a,
            Some(&mut y),
            &mut saved,
            &mut rm,
            &mut rv,
            0.1,
            1e-5,
        );
        (y, saved, rm, rv)
    };
    let (y, saved, rm, rv) = fwd(&x, &gamma, &beta, &res);
    // Running statistics: PyTorch's momentum rule with the unbiased batch variance.
    for ch in 0..c {
        let xs = &x[ch * len..(ch + 1) * len];
        let mean = xs.iter().sum::<f64>() / len as f64;
        let var_u = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (len - 1) as f64;
        assert!((rm[ch] - 0.1 * mean).abs() < 1e-14);
        assert!((rv[ch] - (0.9 + 0.1 * var_u)).abs() < 1e-14);
        // The saved scale and shift are what was applied: y = x scale + shift.
        let (scale, shift) = (saved[2 * c + ch], saved[3 * c + ch]);
        if act == Act::Identity {
            for i in ch * len..(ch + 1) * len {
                assert_eq!(y[i], x[i] * scale + shift);
            }
        }
    }
    // The backward pass as the model runs it: a fused ReLU's mask recomputed inside; after a
    // residual, the output gradient masked by y > 0 first (and that is the residual's).
    let mut dy = r.clone();
    if act == Act::AddRelu(()) {
        relu_backward(&y, &mut dy);
    }
    let (mut dx, mut dg, mut db) = (vec![0.0; c * len], vec![0.0; c], vec![0.0; c]);
    bn_backward(
        len,
        &x,
        &gamma,
        &saved,
        &dy,
        act == Act::Relu,
        &mut dx,
        &mut dg,
        &mut db,
    );
    let all = |n: usize| (0..n).collect::<Vec<_>>();
    let (g0, b0, r0) = (gamma.clone(), beta.clone(), res.clone());
    check_grad("bn dx", &mut x, &dx, &all(c * len), EPS, RTOL, ATOL, |x| {
        dot(&r, &fwd(x, &g0, &b0, &r0).0)
    });
    let x0 = x.clone();
    check_grad(
        "bn dgamma",
        &mut gamma,
        &dg,
        &all(c),
        EPS,
        RTOL,
        ATOL,
        |g| dot(&r, &fwd(&x0, g, &b0, &r0).0),
    );
    let g1 = gamma.clone();
    check_grad("bn dbeta", &mut beta, &db, &all(c), EPS, RTOL, ATOL, |b| {
        dot(&r, &fwd(&x0, &g1, b, &r0).0)
    });
    if act == Act::AddRelu(()) {
        let b1 = beta.clone();
        check_grad(
            "bn dresidual",
            &mut res,
            &dy,
            &all(c * len),
            EPS,
            RTOL,
            ATOL,
            |res| dot(&r, &fwd(&x0, &g1, &b1, res).0),
        );
    }
}

#[test]
fn batchnorm_train_gradients_and_running_stats() {
    bn_case(Act::Identity);
}

#[test]
fn batchnorm_relu_train_gradients() {
    bn_case(Act::Relu);
}

/// The end of a residual block: relu(bn(x) + residual), then the gradient as the model takes
/// it (relu_backward on the output, that gradient into batch norm and to the residual).
#[test]
fn batchnorm_residual_relu_train_gradients() {
    bn_case(BnAct::AddRelu(()));
}

#[test]
fn batchnorm_eval_uses_running_stats() {
    let mut rng = Rng(5);
    let (c, len) = (2, 7);
    let x = rng.vec(c * len);
    let (gamma, beta) = (vec![1.5, 0.5], vec![0.1, -0.2]);
    let (rm, rv) = (vec![0.3, -0.1], vec![2.0, 0.5]);
    let res = rng.vec(c * len);
    for act in [BnAct::Identity, BnAct::Relu, BnAct::AddRelu(&res[..])] {
        let mut y = vec![0.0; c * len];
        bn_forward_eval(len, &x, &gamma, &beta, &rm, &rv, act, &mut y, 1e-5);
        for ch in 0..c {
            for i in 0..len {
                let j = ch * len + i;
                let t = (x[j] - rm[ch]) / (rv[ch] + 1e-5).sqrt() * gamma[ch] + beta[ch];
                let want = match act {
                    BnAct::Identity => t,
                    BnAct::Relu => t.max(0.0),
                    BnAct::AddRelu(r) => (t + r[j]).max(0.0),
                };
                assert!((y[j] - want).abs() < 1e-14, "{j}: {} vs {want}", y[j]);
            }
        }
    }
}

#[test]
fn maxpool_forward_and_gradient() {
    let mut rng = Rng(6);
    for (h, w) in [(7, 6), (4, 4), (1, 3), (9, 5)] {
        let g = PoolGeom {
            planes: 3,
            h,
            w,
            k: 3,
            stride: 2,
            pad: 1,
        };
        let no = g.planes * g.oh() * g.ow();
        let mut x = rng.vec(g.planes * h * w);
        let (mut y, mut idx) = (vec![0.0; no], vec![0u32; no]);
        maxpool_forward(&g, &x, None, &mut y, &mut idx);
        // Forward: the maximum of each clipped window.
        for p in 0..g.planes {
            for oy in 0..g.oh() {
                for ox in 0..g.ow() {
                    let mut m = f64::NEG_INFINITY;
                    for iy in (oy * 2).saturating_sub(1)..(oy * 2 + 2).min(h) {
                        for ix in (ox * 2).saturating_sub(1)..(ox * 2 + 2).min(w) {
                            m = m.max(x[p * h * w + iy * w + ix]);
                        }
                    }
                    assert_eq!(y[(p * g.oh() + oy) * g.ow() + ox], m);
                }
            }
        }
        let r = rng.vec(no);
        let mut dx = vec![0.0; x.len()];
        maxpool_backward(&g, &r, &idx, &mut dx);
        let all: Vec<usize> = (0..x.len()).collect();
        check_grad("maxpool dx", &mut x, &dx, &all, EPS, RTOL, ATOL, |x| {
            let (mut y, mut idx) = (vec![0.0; no], vec![0u32; no]);
            maxpool_forward(&g, x, None, &mut y, &mut idx);
            dot(&r, &y)
        });
    }
}

#[test]
fn maxpool_ties_take_the_first_maximum() {
    let g = PoolGeom {
        planes: 1,
        h: 2,
        w: 2,
        k: 3,
        stride: 2,
        pad: 1,
    };
    let (mut y, mut idx) = (vec![0.0; 1], vec![0u32; 1]);
    maxpool_forward(&g, &[1.0, 1.0, 1.0, 1.0], None, &mut y, &mut idx);
    assert_eq!(idx[0], 0);
}

/// PyTorch's NaN rule (a NaN is taken whenever it is met, so the last NaN of a window wins
/// its index) with and without a batch norm applied on read, against the plain pooling of
/// the normalised values.
#[test]
fn maxpool_nan_wins_and_the_batch_norm_on_read_is_the_stored_pooling() {
    let g = PoolGeom {
        planes: 4,
        h: 5,
        w: 4,
        k: 3,
        stride: 2,
        pad: 1,
    };
    let (pi, no) = (g.h * g.w, g.planes * g.oh() * g.ow());
    let mut rng = Rng(9);
    let mut x: Vec<f32> = rng.vec(g.planes * pi).iter().map(|&v| v as f32).collect();
    // Plane 1: two NaNs in the first window (rows 0..2, columns 0..2), a large value after.
    x[pi] = f32::NAN;
    x[pi + 1] = 5.0;
    x[pi + g.w] = f32::NAN;
    x[pi + g.w + 1] = 7.0;
    let (mut y, mut idx) = (vec![0f32; no], vec![0u32; no]);
    maxpool_forward(&g, &x, None, &mut y, &mut idx);
    let first = g.oh() * g.ow();
    assert!(y[first].is_nan());
    assert_eq!(idx[first], g.w as u32, "the last NaN in scan order");
    // Two channels of two planes each; the second channel's shift makes every value negative
    // before the ReLU, so its windows are all zeros (the first index wins).
    let (scale, shift) = ([1.5f32, 0.5], [0.25f32, -10.0]);
    let normed: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i / pi / 2;
            bn_relu(v, scale[c], shift[c])
        })
        .collect();
    let (mut yb, mut ib) = (vec![0f32; no], vec![0u32; no]);
    maxpool_forward(&g, &x, Some((&scale, &shift)), &mut yb, &mut ib);
    maxpool_forward(&g, &normed, None, &mut y, &mut idx);
    assert_eq!(ib, idx);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&yb), bits(&y));
    assert!(yb[2 * first..].iter().all(|&v| v == 0.0));
}

/// The separable max pooling against the window-by-window scan (PyTorch's loop): the same
/// bits and indices over window shapes, strides, paddings and plane sizes, on values drawn
/// from a few levels (ties in every window), with NaNs, infinities and a batch norm on read.
#[test]
fn maxpool_separable_is_the_direct_scan() {
    let mut rng = Rng(21);
    let levels = [
        -1.0f32,
        0.0,
        0.5,
        2.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    let mut cases = 0;
    for (k, stride, pad) in [
        (3, 2, 1),
        (2, 2, 0),
        (3, 1, 1),
        (3, 3, 0),
        (5, 2, 2),
        (1, 1, 0),
    ] {
        for (h, w) in [(1, 1), (2, 3), (5, 4), (7, 7), (9, 12), (16, 5)] {
            if h + 2 * pad < k || w + 2 * pad < k {
                continue;
            }
            let g = PoolGeom {
                planes: 4,
                h,
                w,
                k,
                stride,
                pad,
            };
            let (pi, no) = (h * w, g.planes * g.oh() * g.ow());
            // Mostly finite levels; a NaN or an infinity one value in about ten.
            let x: Vec<f32> = (0..g.planes * pi)
                .map(|_| {
                    let r = rng.next_u64();
                    if r.is_multiple_of(10) {
                        levels[4 + (r / 10 % 3) as usize]
                    } else {
                        levels[(r / 10 % 4) as usize]
                    }
                })
                .collect();
            let (scale, shift) = ([1.5f32, -0.75], [0.25f32, 0.5]);
            for bn in [None, Some((&scale[..], &shift[..]))] {
                let (mut y, mut idx) = (vec![0f32; no], vec![0u32; no]);
                let (mut yd, mut id) = (vec![0f32; no], vec![0u32; no]);
                maxpool_forward(&g, &x, bn, &mut y, &mut idx);
                maxpool_forward_direct(&g, &x, bn, &mut yd, &mut id);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(id, idx, "indices, {g:?}, bn {}", bn.is_some());
                assert_eq!(bits(&yd), bits(&y), "values, {g:?}, bn {}", bn.is_some());
                cases += 1;
            }
        }
    }
    assert!(cases > 50, "{cases} cases");
}

#[test]
fn avgpool_forward_and_gradient() {
    let mut rng = Rng(7);
    let (c, b, run) = (3, 2, 10);
    let mut x = rng.vec(c * b * run);
    let mut f = vec![0.0; b * c];
    avgpool_forward(c, b, run, &x, &mut f);
    for ch in 0..c {
        for s in 0..b {
            let want = x[(ch * b + s) * run..(ch * b + s + 1) * run]
                .iter()
                .sum::<f64>()
                / run as f64;
            assert!((f[s * c + ch] - want).abs() < 1e-15);
        }
    }
    let r = rng.vec(b * c);
    let mut dx = vec![0.0; x.len()];
    avgpool_backward(c, b, run, &r, &mut dx);
    let all: Vec<usize> = (0..x.len()).collect();
    check_grad("avgpool dx", &mut x, &dx, &all, EPS, RTOL, ATOL, |x| {
        let mut f = vec![0.0; b * c];
        avgpool_forward(c, b, run, x, &mut f);
        dot(&r, &f)
    });
}

#[test]
fn linear_block_gradients() {
    // The right half of a 4 x 10 matrix: the concat head's W[:, D:].
    let mut rng = Rng(8);
    let s = LinearSpec {
        out: 4,
        inp: 5,
        ld: 10,
        off: 5,
    };
    let rows = 3;
    let mut x = rng.vec(rows * s.inp);
    let mut w = rng.vec(s.out * s.ld);
    let mut b = rng.vec(s.out);
    let r = rng.vec(rows * s.out);
    let fwd = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut y = vec![0.0; rows * s.out];
        linear_forward(&s, rows, x, w, Some(b), 0.5, &mut y, false);
        y
    };
    let y = fwd(&x, &w, &b);
    for i in 0..rows {
        for o in 0..s.out {
            let want: f64 = (0..s.inp)
                .map(|k| x[i * s.inp + k] * w[o * s.ld + 5 + k])
                .sum::<f64>()
                + 0.5 * b[o];
            assert!((y[i * s.out + o] - want).abs() < 1e-14);
        }
    }
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; s.out];
    let mut dx = vec![0.0; x.len()];
    linear_backward(&s, rows, &x, &w, &r, &mut dw, Some(&mut db), Some(&mut dx));
    // The left half of dW is not this block's: untouched.
    for o in 0..s.out {
        assert!(dw[o * s.ld..o * s.ld + 5].iter().all(|&v| v == 0.0));
    }
    let (w0, b0) = (w.clone(), b.clone());
    let all = |n: usize| (0..n).collect::<Vec<_>>();
    let nx = x.len();
    check_grad("linear dx", &mut x, &dx, &all(nx), EPS, RTOL, ATOL, |x| {
        dot(&r, &fwd(x, &w0, &b0))
    });
    let x0 = x.clone();
    let wi: Vec<usize> = (0..s.out)
        .flat_map(|o| (5..10).map(move |k| o * 10 + k))
        .collect();
    check_grad("linear dw", &mut w, &dw, &wi, EPS, RTOL, ATOL, |w| {
        dot(&r, &fwd(&x0, w, &b0))
    });
    // db is for bias_scale 1 (the fused head's use), so probe with scale 1.
    let w1 = w.clone();
    check_grad(
        "linear db",
        &mut b,
        &db,
        &all(s.out),
        EPS,
        RTOL,
        ATOL,
        |b| {
            let mut y = vec![0.0; rows * s.out];
            linear_forward(&s, rows, &x0, &w1, Some(b), 1.0, &mut y, false);
            dot(&r, &y)
        },
    );
}

#[test]
fn gate_and_film_gradients() {
    let mut rng = Rng(10);
    let (rows, d) = (2, 3);
    let mut gx = rng.vec(rows * d);
    let mut y = rng.vec(rows * d);
    let r = rng.vec(rows * d);
    let gfwd = |gx: &[f64], y: &[f64]| {
        let (mut g, mut z) = (vec![0.0; rows * d], vec![0.0; rows * d]);
        gate_forward(gx, y, &mut g, &mut z);
        (g, z)
    };
    let (g, _) = gfwd(&gx, &y);
    let (mut dgx, mut dy) = (vec![0.0; rows * d], vec![0.0; rows * d]);
    gate_backward(&g, &y, &r, &mut dgx, &mut dy);
    let all: Vec<usize> = (0..rows * d).collect();
    let y0 = y.clone();
    check_grad("gate dgx", &mut gx, &dgx, &all, EPS, RTOL, ATOL, |gx| {
        dot(&r, &gfwd(gx, &y0).1)
    });
    let gx0 = gx.clone();
    check_grad("gate dy", &mut y, &dy, &all, EPS, RTOL, ATOL, |y| {
        dot(&r, &gfwd(&gx0, y).1)
    });

    let mut h = rng.vec(rows * 2 * d);
    let mut x = rng.vec(rows * d);
    let ffwd = |h: &[f64], x: &[f64]| {
        let mut z = vec![0.0; rows * d];
        film_forward(d, h, x, &mut z);
        z
    };
    let (mut dh, mut dx) = (vec![0.0; rows * 2 * d], vec![0.0; rows * d]);
    film_backward(d, &h, &x, &r, &mut dh, &mut dx);
    let x0 = x.clone();
    let allh: Vec<usize> = (0..rows * 2 * d).collect();
    check_grad("film dh", &mut h, &dh, &allh, EPS, RTOL, ATOL, |h| {
        dot(&r, &ffwd(h, &x0))
    });
    let h0 = h.clone();
    check_grad("film dx", &mut x, &dx, &all, EPS, RTOL, ATOL, |x| {
        dot(&r, &ffwd(&h0, x))
    });
}

#[test]
fn softmax_cross_entropy_gradient_and_large_logits() {
    let mut rng = Rng(11);
    let (rows, classes) = (3, 4);
    let labels = [0u32, 3, 1];
    let mut z: Vec<f64> = rng.vec(rows * classes).iter().map(|v| 3.0 * v).collect();
    let (loss, g) = softmax_cross_entropy(&z, &labels, classes).unwrap();
    let direct: f64 = (0..rows)
        .map(|r| {
            let row = &z[r * classes..(r + 1) * classes];
            row.iter().map(|v| v.exp()).sum::<f64>().ln() - row[labels[r] as usize]
        })
        .sum::<f64>()
        / rows as f64;
    assert!((loss - direct).abs() < 1e-14);
    let all: Vec<usize> = (0..z.len()).collect();
    check_grad("xent", &mut z, &g, &all, EPS, RTOL, ATOL, |z| {
        softmax_cross_entropy(z, &labels, classes).unwrap().0
    });
    // Logits that overflow exp() in f32 still give a finite loss and gradient.
    let big = [1e4f32, -1e4, 0.0, 5e3];
    let (l, g) = softmax_cross_entropy(&big, &[1], 4).unwrap();
    assert!((l - 2e4).abs() < 1e-3, "loss {l}");
    assert!(g.iter().all(|v| v.is_finite()));
}

/// The whole small model in f64: the loss gradient of a sample of every parameter tensor.
fn model_case(fusion: FusionKind) {
    let cfg = ModelConfig::small(3, fusion).with_frames(2);
    let mut model = AvModel::new(CpuBackend::<f64>::new(), cfg, 7).unwrap();
    let mut rng = Rng(12);
    // Non-zero biases and BN shifts so that every term is exercised.
    let names: Vec<(String, usize)> = model
        .params_table()
        .iter()
        .map(|t| (t.name.clone(), t.region.len))
        .collect();
    for (name, len) in &names {
        if name.ends_with(".bias") {
            let v: Vec<f64> = rng.vec(*len).iter().map(|v| 0.2 * v).collect();
            model.write_tensor(name, &v).unwrap();
        }
    }
    let batch = 2;
    let (ah, aw, vh, vw) = (21, 17, 18, 20);
    let audio = rng.vec(batch * ah * aw);
    let visual = rng.vec(batch * 3 * 2 * vh * vw);
    let labels = [1u32, 2];
    let input = Input {
        batch,
        audio: &audio,
        audio_hw: (ah, aw),
        visual: &visual,
        visual_hw: (vh, vw),
    };
    let out = model.forward(&input, Mode::Train).unwrap();
    let (_, dl) = softmax_cross_entropy(&out.logits, &labels, 3).unwrap();
    model.backward(&dl).unwrap();
    let grads = model.grads().clone();
    let mut params = model.params().clone();
    let table: Vec<_> = model.params_table().iter().cloned().collect();
    for t in &table {
        let idx: Vec<usize> = rng
            .indices(t.region.len, 4)
            .into_iter()
            .map(|i| i + t.region.offset)
            .collect();
        check_grad(
            &format!("{} {}", fusion.name(), t.name),
            &mut params,
            &grads,
            &idx,
            EPS,
            1e-5,
            1e-8,
            |p| {
                model.params_mut().copy_from_slice(p);
                let o = model.forward(&input, Mode::Train).unwrap();
                softmax_cross_entropy(&o.logits, &labels, 3).unwrap().0
            },
        );
    }
}

#[test]
fn model_gradients_sum() {
    model_case(FusionKind::Sum);
}

#[test]
fn model_gradients_concat() {
    model_case(FusionKind::Concat);
}

#[test]
fn model_gradients_film() {
    model_case(FusionKind::Film);
}

#[test]
fn model_gradients_gated() {
    model_case(FusionKind::Gated);
}
