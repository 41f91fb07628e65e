// The cases shared by engine_gpu_emulated.rs (the kernel emulator) and engine_gpu_cuda.rs
// (a real GPU): each includes this file after defining `Dev` and `gpu()`, the backend under
// test or None (with the reason printed) to skip.

fn rand_vec(rng: &mut Xoshiro256PlusPlus, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

/// `max |a - b| <= tol * max(max |b|, 1e-6)`; NaN only where the CPU has NaN.
fn close(what: &str, a: &[f32], b: &[f32], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    let scale = b
        .iter()
        .filter(|v| v.is_finite())
        .fold(1e-6f64, |m, v| m.max(v.abs() as f64));
    let (mut worst, mut at, mut bad, mut first) = (0.0f64, 0, 0usize, None);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x.is_nan() && y.is_nan() {
            continue;
        }
        let d = (*x as f64 - *y as f64).abs();
        let d = if d.is_nan() { f64::INFINITY } else { d };
        if d > tol * scale {
            bad += 1;
            first.get_or_insert(i);
        }
        if d > worst {
            worst = d;
            at = i;
        }
    }
    assert!(
        bad == 0,
        "{what}: {bad} of {} elements off (first at {:?}); max difference {worst:e} at {at} \
         (gpu {}, cpu {}), scale {scale:e}, tolerance {tol:e}",
        a.len(),
        first,
        a[at],
        b[at]
    );
}

fn exact(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            x.to_bits() == y.to_bits(),
            "{what}: element {i}: gpu {x}, cpu {y}"
        );
    }
}

fn upload<B: Backend<Elem = f32>>(b: &B, v: &[f32]) -> B::Buf {
    let mut buf = b.zeros(v.len());
    b.write(&mut buf, 0, v);
    buf
}

fn all<B: Backend<Elem = f32>>(b: &B, buf: &B::Buf) -> Vec<f32> {
    b.read(buf, 0..b.len(buf))
}

/// Forward and backward of one convolution: (y, dw, dx). Also runs the backward pass adding its
/// data gradient to a buffer that holds other values (`dx_add`, how a residual block's
/// branches meet) and asserts it gives the bits of writing dx and adding those values after,
/// and the same weight gradient.
fn conv_run<B: Backend<Elem = f32>>(
    b: &B,
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (xb, dyb) = (upload(b, x), upload(b, dy));
    // The weight at an offset inside a larger arena, as in the model.
    let mut arena = vec![0.5f32; 3];
    arena.extend_from_slice(w);
    let params = upload(b, &arena);
    let region = Region {
        offset: 3,
        len: w.len(),
    };
    let mut y = b.zeros(g.out_len());
    b.conv2d_forward(g, &xb, &params, region, &mut y);
    let mut grads = b.zeros(arena.len());
    let mut dx = b.zeros(g.in_len());
    b.conv2d_backward(g, &xb, &params, region, &dyb, &mut grads, Some(&mut dx), false);
    let (dw, dx) = (b.read(&grads, region.range()), all(b, &dx));
    let base: Vec<f32> = (0..g.in_len())
        .map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0)
        .collect();
    let mut sum = upload(b, &base);
    let mut grads2 = b.zeros(arena.len());
    b.conv2d_backward(g, &xb, &params, region, &dyb, &mut grads2, Some(&mut sum), true);
    let want: Vec<u32> = dx.iter().zip(&base).map(|(d, o)| (d + o).to_bits()).collect();
    let got: Vec<u32> = all(b, &sum).iter().map(|v| v.to_bits()).collect();
    assert!(got == want, "{g:?}: dx added is not dx written plus the old values");
    assert!(b.read(&grads2, region.range()) == dw, "{g:?}: dw differs when dx is added");
    (all(b, &y), dw, dx)
}

/// Convolution shapes (cin, cout, k, stride, pad, n, h, w): the ResNet stem, 3x3 / 1 and / 2,
/// the 1x1 / 2 shortcut, a 1x1 / 1 (no lowering), odd sizes that leave partial GEMM tiles, and
/// one with the large GEMM tile.
const CONV_SHAPES: [ConvShape; 6] = [
    (3, 8, 7, 2, 3, 2, 13, 11),
    (5, 6, 3, 1, 1, 2, 7, 9),
    (4, 70, 3, 2, 1, 1, 9, 8),
    (6, 5, 1, 2, 0, 3, 7, 7),
    (7, 3, 1, 1, 0, 2, 5, 6),
    // Wide enough for the 128 x 128 GEMM tile in all three products.
    (16, 130, 3, 1, 1, 2, 9, 8),
];

/// (cin, cout, k, stride, pad, n, h, w).
type ConvShape = (usize, usize, usize, usize, usize, usize, usize, usize);

fn conv_geom(shape: ConvShape) -> ConvGeom {
    let (cin, cout, k, stride, pad, n, h, w) = shape;
    ConvGeom {
        cin,
        cout,
        k,
        stride,
        pad,
        n,
        h,
        w,
    }
}

#[test]
fn convolution_forward_and_gradients_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    for shape in CONV_SHAPES {
        let g = conv_geom(shape);
        let x = rand_vec(&mut rng, g.in_len());
        let wt = rand_vec(&mut rng, g.w_len());
        let dy = rand_vec(&mut rng, g.out_len());
        let (gy, gdw, gdx) = conv_run(&gpu, &g, &x, &wt, &dy);
        let (cy, cdw, cdx) = conv_run(&cpu, &g, &x, &wt, &dy);
        let what = format!("{g:?}");
        close(&format!("{what} y"), &gy, &cy, 1e-5);
        close(&format!("{what} dw"), &gdw, &cdw, 1e-5);
        close(&format!("{what} dx"), &gdx, &cdx, 1e-5);
        assert!(gpu.take_error().is_none());
    }
}

/// Whether ConvAlgo::Implicit computes this convolution's data gradient by gathering dy
/// (stride 1, a real lowering) rather than through the column buffer and col2im.
fn implicit_dgrad(g: &ConvGeom) -> bool {
    g.stride == 1 && !g.is_identity_lowering()
}

/// The data gradient of the implicit path against the lowered path's: the same bits where
/// both take the column buffer, else within FP32 rounding of each other (another summation
/// order over the same products; `tol` relative to the largest value).
fn same_dgrad(what: &str, g: &ConvGeom, implicit: &[f32], lowered: &[f32], tol: f64) {
    if implicit_dgrad(g) {
        close(what, implicit, lowered, tol);
    } else {
        exact(what, implicit, lowered);
    }
}

/// The implicit-GEMM convolution (ConvAlgo::Implicit: the lowered input gathered inside the
/// GEMM) computes what im2col + GEMM computes, bit for bit, in the forward pass and the weight
/// gradient: the same tiles, k order and fmaf chains over the same values, on the emulator and
/// on a device alike (nothing is reordered: the kernels write every multiply-add as an explicit
/// fmaf). The data gradient of a stride-1 convolution gathers dy instead (one sum over
/// (cout, ky, kx) where the lowered path sums per tap, then adds the taps): within 1e-5 of the
/// lowered path; a strided one takes the lowered path (the same bits). For every shape of
/// CONV_SHAPES, plus a 3x3 whose weight gradient is split-K, one whose data gradient takes the
/// large tile and one whose data gradient is split-K; and the launches show that the gathers
/// ran (both tile sizes, all three products, split-K sums) and nothing was lowered, except for
/// the 1x1 stride-1 shape, which reads its input directly either way.
#[test]
fn implicit_gemm_convolutions_match_im2col() {
    use ogm_gpu::engine::kernels as kn;
    use ogm_host::engine::gpu::ConvAlgo;
    let Some(gpu) = gpu() else { return };
    assert_eq!(gpu.conv_algo(), ConvAlgo::Im2col, "im2col is the default");
    let recorder = Arc::new(Recorder::new(gpu.device().clone()));
    let mut implicit = GpuBackend::new(recorder.clone());
    implicit.set_conv_algo(ConvAlgo::Implicit);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut shapes = CONV_SHAPES.to_vec();
    // n oh ow = 8192 columns for 18 taps and 3 output channels: a split-K weight gradient.
    shapes.push((2, 3, 3, 1, 1, 2, 64, 64));
    // 130 input channels x 144 input pixels: the data gradient on the 128 x 128 tile.
    shapes.push((130, 8, 3, 1, 1, 2, 9, 8));
    // 460 x 9 = 4140 taps for one 4 x 25 output tile: a split-K data gradient.
    shapes.push((4, 460, 3, 1, 1, 1, 5, 5));
    // Stride-1 data gradients whose dy is smaller than x (no padding: the border pixels meet
    // fewer taps) or read through a wide padding (5x5, pad 2, on a non-square input).
    shapes.push((3, 5, 3, 1, 0, 2, 7, 6));
    shapes.push((4, 6, 5, 1, 2, 1, 9, 7));
    let mut ran = std::collections::BTreeSet::new();
    for shape in shapes {
        let g = conv_geom(shape);
        let x = rand_vec(&mut rng, g.in_len());
        let wt = rand_vec(&mut rng, g.w_len());
        let dy = rand_vec(&mut rng, g.out_len());
        let (ly, ldw, ldx) = conv_run(&gpu, &g, &x, &wt, &dy);
        let (iy, idw, idx) = conv_run(&implicit, &g, &x, &wt, &dy);
        let what = format!("{g:?} implicit (\"gpu\") against im2col (\"cpu\")");
        exact(&format!("{what} y"), &iy, &ly);
        exact(&format!("{what} dw"), &idw, &ldw);
        same_dgrad(&format!("{what} dx"), &g, &idx, &ldx, 1e-5);
        assert!(gpu.take_error().is_none() && implicit.take_error().is_none());
        let launches = recorder.take();
        let gathers = launches.iter().filter(|k| k.contains("_conv_")).count();
        assert!(!launches.contains(&kn::IM2COL.name), "{g:?}: {launches:?}");
        assert_eq!(
            launches.contains(&kn::COL2IM.name),
            !g.is_identity_lowering() && !implicit_dgrad(&g),
            "{g:?}: {launches:?}"
        );
        // conv_run's forward and two backward passes (dx written, then added): a gathering
        // forward and weight gradient, and the data gradient where it is implicit.
        let want = match (g.is_identity_lowering(), implicit_dgrad(&g)) {
            (true, _) => 0,
            (false, true) => 5,
            (false, false) => 3,
        };
        assert_eq!(gathers, want, "{g:?}: {launches:?}");
        if shape.6 == 64 || shape.1 == 460 {
            assert!(launches.contains(&kn::SUM_SLICES.name), "{launches:?}");
        }
        ran.extend(launches);
    }
    for spec in [
        kn::GEMM_CONV_FWD,
        kn::GEMM_BIG_CONV_FWD,
        kn::GEMM_CONV_WGRAD,
        kn::GEMM_BIG_CONV_WGRAD,
        kn::GEMM_CONV_DGRAD,
        kn::GEMM_BIG_CONV_DGRAD,
    ] {
        assert!(ran.contains(spec.name), "{} never ran: {ran:?}", spec.name);
    }
}

/// The tensor-core twins of the implicit GEMMs (TF32 and BF16): the gathered operand is
/// rounded as the lowered matrix's values would be, so forward products and weight gradients
/// equal the im2col path's at the same precision bit for bit, on shapes whose products reach
/// the tensor cores (stride 1 and 2, a split-K weight gradient) and on one that stays FP32.
/// The stride-1 data gradients gather dy: where both paths' products take the tensor cores
/// (or both stay FP32), the same rounded operands, their exact products summed in another
/// order, so within 1e-4 of the lowered path (FP32 rounding, with room for a tensor core's
/// accumulation order). Where only one does (16 input channels: too few for the implicit
/// product's tensor-core tile, while the lowered one has 144 rows), the other rounding shows,
/// so the implicit one is held to the CPU engine within 8 operand roundings instead.
#[test]
fn implicit_tensor_core_convolutions_match_im2col() {
    use ogm_gpu::engine::kernels as kn;
    use ogm_gpu::engine::ops::Precision;
    use ogm_host::engine::gpu::ConvAlgo;
    let Some(gpu) = gpu() else { return };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(17);
    let shapes: [ConvShape; 5] = [
        (16, 130, 3, 1, 1, 2, 9, 8),
        (32, 40, 3, 2, 1, 2, 17, 15),
        // A 1x1 / 2 shortcut with n oh ow = 4096 columns for 64 taps: one output tile, so a
        // split-K weight gradient on the tensor cores.
        (64, 33, 1, 2, 0, 1, 128, 128),
        // Three output channels: every product stays FP32.
        (5, 3, 3, 1, 1, 2, 7, 9),
        // 40 input channels: the stride-1 data gradient on the tensor cores too.
        (40, 32, 3, 1, 1, 2, 8, 8),
    ];
    for (precision, fwd, wgrad, dgrad) in [
        (
            Precision::Tf32,
            kn::GEMM_TF32_CONV_FWD,
            kn::GEMM_TF32_CONV_WGRAD,
            kn::GEMM_TF32_CONV_DGRAD,
        ),
        (
            Precision::Bf16,
            kn::GEMM_BF16_CONV_FWD,
            kn::GEMM_BF16_CONV_WGRAD,
            kn::GEMM_BF16_CONV_DGRAD,
        ),
    ] {
        let recorder = Arc::new(Recorder::new(gpu.device().clone()));
        let mut lowered = GpuBackend::new(gpu.device().clone());
        lowered.set_precision(precision);
        let mut implicit = GpuBackend::new(recorder.clone());
        implicit.set_precision(precision);
        implicit.set_conv_algo(ConvAlgo::Implicit);
        for shape in shapes {
            let g = conv_geom(shape);
            let x = rand_vec(&mut rng, g.in_len());
            let wt = rand_vec(&mut rng, g.w_len());
            let dy = rand_vec(&mut rng, g.out_len());
            let (ly, ldw, ldx) = conv_run(&lowered, &g, &x, &wt, &dy);
            let (iy, idw, idx) = conv_run(&implicit, &g, &x, &wt, &dy);
            let what = format!("{precision} {g:?} implicit (\"gpu\") against im2col (\"cpu\")");
            exact(&format!("{what} y"), &iy, &ly);
            exact(&format!("{what} dw"), &idw, &ldw);
            let tc = |m, n, kk| ogm_gpu::engine::ops::gemm_uses_tensor_cores(precision, m, n, kk);
            let lowered_tc = tc(g.kdim(), g.cols(), g.cout);
            let implicit_tc = tc(g.cin, g.n * g.h * g.w, g.cout * g.k * g.k);
            if !implicit_dgrad(&g) || lowered_tc == implicit_tc {
                same_dgrad(&format!("{what} dx"), &g, &idx, &ldx, 1e-4);
            } else {
                let cpu = CpuBackend::<f32>::new();
                let (_, _, cdx) = conv_run(&cpu, &g, &x, &wt, &dy);
                let tol = 8.0 * operand_unit(precision);
                close(&format!("{precision} {g:?} implicit dx"), &idx, &cdx, tol);
            }
            assert!(lowered.take_error().is_none() && implicit.take_error().is_none());
            let launches = recorder.take();
            assert!(!launches.contains(&kn::IM2COL.name), "{g:?}: {launches:?}");
            let on_tensor_cores = shape.1 >= 32;
            for spec in [fwd, wgrad] {
                assert_eq!(
                    launches.contains(&spec.name),
                    on_tensor_cores,
                    "{precision} {g:?}: {launches:?}"
                );
            }
            assert_eq!(
                launches.contains(&dgrad.name),
                implicit_dgrad(&g) && shape.0 >= 32,
                "{precision} {g:?}: {launches:?}"
            );
            if shape.6 == 128 {
                assert!(launches.contains(&kn::SUM_SLICES.name), "{launches:?}");
            }
        }
    }
}

/// A whole training step (as a_whole_training_step_matches_the_cpu_for_every_head, concat
/// head) with implicit-GEMM convolutions: within the FP32 tolerances of the CPU engine; the
/// first forward pass bit for bit the im2col step's, and everything the data gradients reach
/// (gradients, the updated parameters and what they compute) within the same tolerances of
/// it.
#[test]
fn a_whole_training_step_with_implicit_convolutions_matches_the_cpu() {
    use ogm_host::engine::gpu::ConvAlgo;
    let Some(gpu) = gpu() else { return };
    let dev = gpu.device().clone();
    let mut implicit = GpuBackend::new(dev.clone());
    implicit.set_conv_algo(ConvAlgo::Implicit);
    let g = model_step(implicit, FusionKind::Concat);
    let c = model_step(CpuBackend::<f32>::new(), FusionKind::Concat);
    let l = model_step(GpuBackend::new(dev), FusionKind::Concat);
    assert_eq!(g.len(), c.len());
    for (((name, a), (_, b)), (_, im2col)) in g.iter().zip(&c).zip(&l) {
        let tol = if name.starts_with("grad") || name.starts_with("param") {
            2e-3
        } else {
            1e-3
        };
        close(&format!("implicit {name}"), a, b, tol);
        let what = format!("implicit (\"gpu\") against im2col (\"cpu\") {name}");
        if ["logits", "out_a", "out_v"].contains(&name.as_str()) {
            exact(&what, a, im2col);
        } else {
            close(&what, a, im2col, tol);
        }
    }
    assert!(gpu.take_error().is_none());
}

#[test]
fn split_k_weight_gradient_matches_the_cpu() {
    // A long shared dimension (n * oh * ow = 8192 columns) and a small output: the backend
    // splits it into slices summed in a fixed order.
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let g = ConvGeom {
        cin: 2,
        cout: 3,
        k: 1,
        stride: 1,
        pad: 0,
        n: 2,
        h: 64,
        w: 64,
    };
    assert!(
        ogm_gpu::engine::ops::split_plan(1, 3, 2, 8192).0 > 1,
        "the case must split"
    );
    let x = rand_vec(&mut rng, g.in_len());
    let wt = rand_vec(&mut rng, g.w_len());
    let dy = rand_vec(&mut rng, g.out_len());
    let (_, gdw, _) = conv_run(&gpu, &g, &x, &wt, &dy);
    let (_, cdw, _) = conv_run(&cpu, &g, &x, &wt, &dy);
    close("split-K dw", &gdw, &cdw, 1e-5);
}

/// A batch-norm case's activation: [`BnAct`] without its residual.
type Act = BnAct<()>;

/// BN train forward (plain, with ReLU, or with a residual then ReLU), backward as the model
/// runs it, eval: outputs, saved values, running statistics, parameter gradients.
fn bn_run<B: Backend<Elem = f32>>(
    b: &B,
    c: usize,
    len: usize,
    act: Act,
    data: &[Vec<f32>],
) -> Vec<Vec<f32>> {
    let (x, gb, dy, res) = (&data[0], &data[1], &data[2], &data[3]);
    let xb = upload(b, x);
    let params = upload(b, gb);
    let rb = upload(b, res);
    let bn_act = act.map(|()| &rb);
    let gbr = Region {
        offset: 0,
        len: 2 * c,
    };
    let mut state = upload(b, &[vec![0.1f32; c], vec![0.9f32; c]].concat());
    let mut y = b.zeros(c * len);
    let mut saved = b.zeros(BN_SAVED * c);
    b.bn_forward_train(
        len, &xb, &params, gbr, &mut state, gbr, 0.1, 1e-5, bn_act, Some(&mut y), &mut saved,
    );
    let mut dyb = upload(b, dy);
    if act == Act::AddRelu(()) {
        // The block's output gradient, masked by its output first (the encoder's order).
        b.relu_backward(c * len, &y, &mut dyb);
    }
    let mut grads = b.zeros(2 * c);
    let mut dx = b.zeros(c * len);
    b.bn_backward(
        len,
        &xb,
        &params,
        gbr,
        &saved,
        &dyb,
        act == Act::Relu,
        &mut grads,
        &mut dx,
    );
    let mut ye = b.zeros(c * len);
    b.bn_forward_eval(len, &xb, &params, gbr, &state, gbr, 1e-5, bn_act, &mut ye);
    vec![
        all(b, &y),
        all(b, &saved),
        all(b, &state),
        all(b, &grads),
        all(b, &dx),
        all(b, &ye),
    ]
}

#[test]
fn batch_norm_matches_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    // Channels of 20 000 and 8193 values are split over blocks (3 and 2 slices, the last
    // one 4096 values); the others are summed by one block each.
    assert_eq!(ogm_gpu::engine::ops::bn_slices(20_000), 3);
    assert_eq!(ogm_gpu::engine::ops::bn_slices(8193), 2);
    assert_eq!(ogm_gpu::engine::ops::bn_slices(8192), 1);
    let cases = [
        (3, 700, Act::Identity, 3.0, 2.0),
        (5, 37, Act::Relu, 3.0, 2.0),
        (2, 2, Act::Relu, 3.0, 2.0),
        (2, 20_000, Act::Relu, 3.0, 2.0),
        (1, 8193, Act::Identity, 3.0, 2.0),
        (4, 300, Act::AddRelu(()), 3.0, 2.0),
        (2, 20_000, Act::AddRelu(()), 3.0, 2.0),
        // A mean 10 000 spreads away (about 17 000 deviations): the statistics still agree to
        // 1e-5 (the GPU's one-pass moments are shifted by a value of the channel, so they do
        // not cancel). What is computed per value from them does not, in either engine: y =
        // x scale + shift subtracts two f32 values near 17 000 whose ulp is 2e-3, and dgamma
        // sums dy (x - mean) with x - mean 1e-3 of a deviation off when the f32 mean is one
        // ulp off (the CPU sums in f32 lanes first, so its mean often is). A last-bit
        // difference moves them by that much, so they are held to that conditioning,
        // 2e-7 offset / spread of their scale (2e-3). Without the ReLU: its mask, taken from
        // those y, would differ wherever y is within that of zero.
        (3, 700, Act::Identity, 1000.0, 0.1),
        (2, 20_000, Act::Identity, 1000.0, 0.1),
    ];
    for (c, len, act, offset, spread) in cases {
        let mut x = rand_vec(&mut rng, c * len);
        // An offset mean, as after a convolution: the centred second pass matters.
        x.iter_mut().for_each(|v| *v = offset + spread * *v);
        let gb: Vec<f32> = (0..2 * c).map(|i| 0.5 + 0.1 * i as f32).collect();
        let (dy, res) = (rand_vec(&mut rng, c * len), rand_vec(&mut rng, c * len));
        let data = vec![x, gb, dy, res];
        let g = bn_run(&gpu, c, len, act, &data);
        let r = bn_run(&cpu, c, len, act, &data);
        let values_tol = f64::max(1e-5, 2e-7 * f64::from(offset / spread));
        // dx = k (dy - mean dy - xhat mean(dy xhat)), k = gamma invstd: a difference of terms
        // of the size k |dy|, so it is held to 1e-5 of that where it cancels far below it (a
        // channel of 2 values: its dx is zero in exact arithmetic, and both engines give
        // rounding residue of those terms).
        let max_abs = |v: &[f32]| v.iter().fold(1e-6f64, |m, x| m.max(f64::from(x.abs())));
        let k_max = (0..c)
            .map(|ch| f64::from((data[1][ch] * r[1][c + ch]).abs()))
            .fold(0.0, f64::max);
        let dx_tol = f64::max(values_tol, 1e-5 * k_max * max_abs(&data[2]) / max_abs(&r[4]));
        for (i, name, tol) in [
            (0, "y", values_tol),
            (1, "saved", 1e-5),
            (2, "running", 1e-5),
            (3, "dgamma/dbeta", values_tol),
            (4, "dx", dx_tol),
            (5, "eval y", values_tol),
        ] {
            close(
                &format!("bn c={c} len={len} {act:?} offset={offset} {name}"),
                &g[i],
                &r[i],
                tol,
            );
        }
    }
}

/// Batch norm's fused activations give the bits of the separate passes they replace, on each
/// engine: relu(bn(x)) and relu(bn(x) + residual) in f32 after the plain output, and the
/// backward's recomputed ReLU mask the gradient masked by the ReLU output beforehand.
fn bn_fusions_exact<B: Backend<Elem = f32>>(b: &B, what: &str, c: usize, len: usize, seed: u64) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let x: Vec<f32> = rand_vec(&mut rng, c * len).iter().map(|v| 3.0 + 2.0 * v).collect();
    let (dy, res) = (rand_vec(&mut rng, c * len), rand_vec(&mut rng, c * len));
    let gb: Vec<f32> = (0..2 * c).map(|i| 0.5 + 0.1 * i as f32).collect();
    let (xb, params, rb, dyb) = (upload(b, &x), upload(b, &gb), upload(b, &res), upload(b, &dy));
    let gbr = Region {
        offset: 0,
        len: 2 * c,
    };
    let forward = |act: BnAct<&B::Buf>| {
        let mut state = upload(b, &[vec![0.1f32; c], vec![0.9f32; c]].concat());
        let (mut y, mut saved) = (b.zeros(c * len), b.zeros(BN_SAVED * c));
        b.bn_forward_train(
            len, &xb, &params, gbr, &mut state, gbr, 0.1, 1e-5, act, Some(&mut y), &mut saved,
        );
        let mut ye = b.zeros(c * len);
        b.bn_forward_eval(len, &xb, &params, gbr, &state, gbr, 1e-5, act, &mut ye);
        (y, saved, all(b, &ye))
    };
    let backward = |saved: &B::Buf, dy: &B::Buf, relu: bool| {
        let (mut grads, mut dx) = (b.zeros(2 * c), b.zeros(c * len));
        b.bn_backward(len, &xb, &params, gbr, saved, dy, relu, &mut grads, &mut dx);
        (all(b, &grads), all(b, &dx))
    };
    let relu = |v: f32| if v > 0.0 { v } else { 0.0 };
    let (y0, saved0, ye0) = forward(BnAct::Identity);
    let (y0, s0) = (all(b, &y0), all(b, &saved0));
    let (y1, saved1, ye1) = forward(BnAct::Relu);
    let (y2, _, ye2) = forward(BnAct::AddRelu(&rb));
    let plus = |y: &[f32]| -> Vec<f32> { y.iter().zip(&res).map(|(v, r)| relu(v + r)).collect() };
    exact(&format!("{what} relu"), &all(b, &y1), &y0.iter().map(|&v| relu(v)).collect::<Vec<_>>());
    exact(&format!("{what} relu eval"), &ye1, &ye0.iter().map(|&v| relu(v)).collect::<Vec<_>>());
    exact(&format!("{what} residual relu"), &all(b, &y2), &plus(&y0));
    exact(&format!("{what} residual relu eval"), &ye2, &plus(&ye0));
    // The saved scale and shift are what the forward applied.
    for ch in 0..c {
        let (scale, shift) = (s0[2 * c + ch], s0[3 * c + ch]);
        let want: Vec<f32> = x[ch * len..(ch + 1) * len].iter().map(|v| v * scale + shift).collect();
        exact(&format!("{what} scale and shift, channel {ch}"), &y0[ch * len..(ch + 1) * len], &want);
    }
    exact(&format!("{what} saved"), &all(b, &saved1), &s0);
    // Backward: the mask recomputed from x equals the mask read from the output.
    let y1h = all(b, &y1);
    let masked: Vec<f32> = dy.iter().zip(&y1h).map(|(&g, &o)| if o > 0.0 { g } else { 0.0 }).collect();
    let (g_fused, dx_fused) = backward(&saved1, &dyb, true);
    let (g_sep, dx_sep) = backward(&saved1, &upload(b, &masked), false);
    exact(&format!("{what} relu backward: dgamma, dbeta"), &g_fused, &g_sep);
    exact(&format!("{what} relu backward: dx"), &dx_fused, &dx_sep);
    assert!(masked.iter().filter(|&&g| g == 0.0).count() > c * len / 20, "{what}: the ReLU masks some");
}

#[test]
fn batch_norm_fusions_give_the_separate_passes_bits() {
    let cpu = CpuBackend::<f32>::new();
    // One block per channel, and channels split over three slices on the GPU.
    for (c, len) in [(3, 700), (2, 20_000)] {
        bn_fusions_exact(&cpu, &format!("cpu c={c} len={len}"), c, len, 11);
        if let Some(gpu) = gpu() {
            bn_fusions_exact(&gpu, &format!("gpu c={c} len={len}"), c, len, 11);
        }
    }
}

/// A convolution into a training batch norm (`conv2d_bn_forward_train` when `fused`, else
/// `conv2d_forward` then `bn_forward_train`): the convolution's output, the batch norm's
/// output, saved values and running statistics.
#[allow(clippy::too_many_arguments)]
fn conv_bn_run<B: Backend<Elem = f32>>(
    b: &B,
    g: &ConvGeom,
    x: &[f32],
    wt: &[f32],
    gb: &[f32],
    res: &[f32],
    act: Act,
    fused: bool,
) -> Vec<Vec<f32>> {
    let c = g.cout;
    let xb = upload(b, x);
    let params = upload(b, &[wt, gb].concat());
    let rb = upload(b, res);
    let bn_act = act.map(|()| &rb);
    let w = Region {
        offset: 0,
        len: wt.len(),
    };
    let bn = BnTrain {
        gb: Region {
            offset: wt.len(),
            len: 2 * c,
        },
        rs: Region {
            offset: 0,
            len: 2 * c,
        },
        momentum: 0.1,
        eps: 1e-5,
    };
    let mut state = upload(b, &[vec![0.1f32; c], vec![0.9f32; c]].concat());
    let (mut out, mut y) = (b.zeros(g.out_len()), b.zeros(g.out_len()));
    let mut saved = b.zeros(BN_SAVED * c);
    if fused {
        let (st, sv) = (&mut state, &mut saved);
        let y = Some(&mut y);
        b.conv2d_bn_forward_train(g, &xb, &params, w, &mut out, &bn, st, bn_act, y, sv);
    } else {
        b.conv2d_forward(g, &xb, &params, w, &mut out);
        let (len, st, sv) = (g.cols(), &mut state, &mut saved);
        let (m, e) = (bn.momentum, bn.eps);
        let y = Some(&mut y);
        b.bn_forward_train(len, &out, &params, bn.gb, st, bn.rs, m, e, bn_act, y, sv);
    }
    vec![all(b, &out), all(b, &y), all(b, &saved), all(b, &state)]
}

/// `conv2d_bn_forward_train` on the GPU backend takes the batch norm's sums from the row
/// moments its GEMM writes per column tile, wherever the product does not split (FP32 64- and
/// 128-wide tiles, TF32 and BF16, im2col and implicit, a 1x1 convolution reading its input
/// directly, partial tiles in both directions): the convolution's bits, and the separate
/// passes' statistics and outputs within f64 rounding of another summation order (asserted to
/// 1e-6 of the largest value; the sums are f64, so in practice the same f32 bits), including
/// channels whose mean is 50 times their deviation (the per-tile shift keeps the variance from
/// cancelling). Against the CPU engine as batch_norm_matches_the_cpu. A product that splits
/// (a 4608-long shared dimension for 2 x 16 outputs) runs the separate passes. A channel over
/// ops::BN_SLICE values shows the saving: the separate path's partial-sum pass is gone.
#[test]
fn convolution_into_batch_norm_takes_its_statistics_from_the_gemm() {
    use ogm_gpu::engine::kernels as kn;
    use ogm_gpu::engine::ops::Precision;
    use ogm_host::engine::gpu::ConvAlgo;
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::<f32>::new();
    let recorder = Arc::new(Recorder::new(gpu.device().clone()));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(31);
    let fp32 = [
        (Precision::Fp32, ConvAlgo::Im2col),
        (Precision::Fp32, ConvAlgo::Implicit),
    ];
    let all_precisions = [
        (Precision::Fp32, ConvAlgo::Implicit),
        (Precision::Tf32, ConvAlgo::Implicit),
        (Precision::Tf32, ConvAlgo::Im2col),
        (Precision::Bf16, ConvAlgo::Implicit),
        (Precision::Bf16, ConvAlgo::Im2col),
    ];
    // (shape, configurations, whether the product splits)
    type Case<'a> = (ConvShape, &'a [(Precision, ConvAlgo)], bool);
    let cases: Vec<Case> = vec![
        // 5 rows of a 64-row tile, 126 columns: two 64-wide tiles, the last one partial.
        ((3, 5, 3, 1, 1, 2, 9, 7), &fp32, false),
        // The 128 x 128 FP32 tile: 130 rows (two row tiles), 132 columns (two column tiles).
        ((2, 130, 3, 2, 1, 1, 24, 22), &fp32, false),
        // 1x1 stride 1: the GEMM reads the input itself.
        ((4, 6, 1, 1, 0, 2, 6, 6), &fp32, false),
        // The tensor cores (every dimension at least 32): 40 rows, 180 columns, 36 taps.
        ((4, 40, 3, 1, 1, 2, 10, 9), &all_precisions, false),
        // 8448 values a channel: more than one batch-norm slice.
        ((1, 3, 3, 1, 1, 2, 64, 66), &fp32, false),
        // Split-K: 4608 taps for 2 x 16 outputs.
        ((512, 2, 3, 1, 1, 1, 4, 4), &fp32, true),
    ];
    let mut ran = std::collections::BTreeSet::new();
    for (i, (shape, configs, splits)) in cases.into_iter().enumerate() {
        let g = conv_geom(shape);
        let c = g.cout;
        // Every other shape: inputs around 50, so the outputs' channel means dwarf their spread.
        let offset = if i % 2 == 1 { 50.0 } else { 0.0 };
        let x: Vec<f32> = rand_vec(&mut rng, g.in_len())
            .into_iter()
            .map(|v| v + offset)
            .collect();
        let wt: Vec<f32> = rand_vec(&mut rng, g.w_len()).iter().map(|v| v * 0.3).collect();
        let gb = [rand_vec(&mut rng, c), rand_vec(&mut rng, c)].concat();
        let res = rand_vec(&mut rng, g.out_len());
        let act = [Act::Identity, Act::Relu, Act::AddRelu(())][i % 3];
        for &(precision, algo) in configs {
            let mut b = GpuBackend::new(recorder.clone());
            b.set_precision(precision);
            b.set_conv_algo(algo);
            let what = format!("{g:?} {precision:?} {algo:?} {act:?}");
            let sep = conv_bn_run(&b, &g, &x, &wt, &gb, &res, act, false);
            let sep_launches = recorder.take();
            assert!(recorder.take_moments().is_empty(), "{what}: moments unasked");
            let fus = conv_bn_run(&b, &g, &x, &wt, &gb, &res, act, true);
            let fus_launches = recorder.take();
            let moments = recorder.take_moments();
            assert!(b.take_error().is_none(), "{what}");
            exact(&format!("{what}: convolution"), &fus[0], &sep[0]);
            for (j, name) in ["y", "saved", "running statistics"].iter().enumerate() {
                close(&format!("{what}: {name}"), &fus[j + 1], &sep[j + 1], 1e-6);
            }
            if splits {
                assert!(moments.is_empty(), "{what}: {moments:?}");
                let kernels = |l: &[&'static str]| -> Vec<&'static str> {
                    l.iter().copied().filter(|k| k.starts_with("eng_")).collect()
                };
                assert_eq!(kernels(&fus_launches), kernels(&sep_launches), "{what}");
            } else {
                // One GEMM wrote the moments, the batch norm read them.
                assert_eq!(moments.len(), 2, "{what}: {moments:?}");
                assert!(moments[0].starts_with("eng_gemm"), "{what}: {moments:?}");
                assert_eq!(moments[1], kn::BN_TRAIN.name, "{what}");
                assert!(!fus_launches.contains(&kn::BN_TRAIN_PARTIAL.name), "{what}");
                ran.insert(moments[0]);
            }
            if g.cols() > ogm_gpu::engine::ops::BN_SLICE {
                assert!(sep_launches.contains(&kn::BN_TRAIN_PARTIAL.name), "{what}");
            }
        }
        let cpu_out = conv_bn_run(&cpu, &g, &x, &wt, &gb, &res, act, false);
        let gpu_out = conv_bn_run(&gpu, &g, &x, &wt, &gb, &res, act, true);
        let what = format!("{g:?} {act:?} against the cpu");
        for (j, name) in ["convolution", "y", "saved", "running statistics"].iter().enumerate() {
            close(&format!("{what}: {name}"), &gpu_out[j], &cpu_out[j], 1e-5);
        }
    }
    for spec in [
        kn::GEMM,
        kn::GEMM_BIG,
        kn::GEMM_CONV_FWD,
        kn::GEMM_BIG_CONV_FWD,
        kn::GEMM_TF32,
        kn::GEMM_TF32_CONV_FWD,
        kn::GEMM_BF16,
        kn::GEMM_BF16_CONV_FWD,
    ] {
        assert!(ran.contains(spec.name), "{} never wrote moments: {ran:?}", spec.name);
    }
}

/// The stem's fusion: a training batch norm that writes its statistics alone (`y` `None`)
/// saves and updates exactly what the full one does, and max pooling its input with those
/// statistics (`maxpool_forward(.., Some(saved), ..)`) gives the bits and arg-maxima of
/// pooling its ReLU'd output; in evaluation likewise with `bn_eval_saved`'s values against
/// `bn_forward_eval`: on both engines, and the GPU's fused pooling and evaluation values equal
/// the CPU's from the same statistics. The ReLU zeroes a good share of the values (asserted between a
/// fifth and nine tenths), so the windows hold ties (the first index wins) and whole windows
/// of zeros.
#[test]
fn max_pooling_applies_the_batch_norm_it_follows_bit_for_bit() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
    // 2 channels of 3 samples of 9 x 7 (planes channel-major, CNHW), the stem's 3 / 2 / 1.
    let (c, n, h, w) = (2, 3, 9, 7);
    let g = PoolGeom {
        planes: c * n,
        h,
        w,
        k: 3,
        stride: 2,
        pad: 1,
    };
    let len = n * h * w;
    let x = rand_vec(&mut rng, c * len);
    let gb = [rand_vec(&mut rng, c), rand_vec(&mut rng, c)].concat();
    // Checks the fused pooling against the stored output's (training and evaluation) and
    // returns (saved, running statistics, the fused pooling, the evaluation values).
    // Indices are compared as the gradients the backward pass routes by them.
    fn run<B: Backend<Elem = f32>>(
        b: &B,
        g: &PoolGeom,
        len: usize,
        x: &[f32],
        gb: &[f32],
    ) -> [Vec<f32>; 4] {
        let c = gb.len() / 2;
        let (xb, params) = (upload(b, x), upload(b, gb));
        let r = Region {
            offset: 0,
            len: 2 * c,
        };
        let train = |y: Option<&mut B::Buf>| {
            let mut state = upload(b, &[vec![0.1f32; c], vec![0.9f32; c]].concat());
            let mut saved = b.zeros(BN_SAVED * c);
            let act = BnAct::Relu;
            b.bn_forward_train(len, &xb, &params, r, &mut state, r, 0.1, 1e-5, act, y, &mut saved);
            (saved, state)
        };
        let mut y = b.zeros(c * len);
        let (saved, state) = train(Some(&mut y));
        let (saved_alone, state_alone) = train(None);
        exact("statistics alone: saved", &all(b, &saved_alone), &all(b, &saved));
        exact("statistics alone: running", &all(b, &state_alone), &all(b, &state));
        let no = g.planes * g.oh() * g.ow();
        let pool = |src: &B::Buf, bn: Option<&B::Buf>| {
            let mut out = b.zeros(no);
            let mut idx = b.idx_empty();
            b.idx_resize(&mut idx, no);
            b.maxpool_forward(g, src, bn, &mut out, &mut idx);
            // The indices as the backward pass routes distinct gradients (1, 2, ...) by them.
            let dy: Vec<f32> = (1..=no).map(|i| i as f32).collect();
            let mut dx = b.zeros(g.planes * g.h * g.w);
            b.maxpool_backward(g, &upload(b, &dy), &idx, &mut dx);
            (all(b, &out), all(b, &dx))
        };
        let (stored, stored_idx) = pool(&y, None);
        let (fused, fused_idx) = pool(&xb, Some(&saved));
        exact("fused pooling", &fused, &stored);
        exact("fused pooling's indices", &fused_idx, &stored_idx);
        let zeros = all(b, &y).iter().filter(|v| **v == 0.0).count();
        let total = c * len;
        assert!(zeros > total / 5 && zeros < total * 9 / 10, "{zeros} zeros of {total}");
        // Evaluation (the running statistics just updated): the values bn_eval_saved gives,
        // applied as the pooling reads, are the bits of pooling bn_forward_eval's output.
        let mut ye = b.zeros(c * len);
        b.bn_forward_eval(len, &xb, &params, r, &state, r, 1e-5, BnAct::Relu, &mut ye);
        let mut eval_saved = b.zeros(BN_SAVED * c);
        b.bn_eval_saved(&params, r, &state, r, 1e-5, &mut eval_saved);
        let (eval_stored, eval_stored_idx) = pool(&ye, None);
        let (eval_fused, eval_fused_idx) = pool(&xb, Some(&eval_saved));
        exact("evaluation: fused pooling", &eval_fused, &eval_stored);
        exact("evaluation: its indices", &eval_fused_idx, &eval_stored_idx);
        [all(b, &saved), all(b, &state), fused, all(b, &eval_saved)]
    }
    let on_gpu = run(&gpu, &g, len, &x, &gb);
    let on_cpu = run(&cpu, &g, len, &x, &gb);
    close("saved against the cpu", &on_gpu[0], &on_cpu[0], 1e-5);
    close("running statistics against the cpu", &on_gpu[1], &on_cpu[1], 1e-5);
    close("evaluation values against the cpu", &on_gpu[3], &on_cpu[3], 1e-5);
    // The GPU's fused pooling from the CPU's statistics: the CPU's bits.
    let saved = upload(&gpu, &on_cpu[0]);
    let xb = upload(&gpu, &x);
    let no = g.planes * g.oh() * g.ow();
    let mut out = gpu.zeros(no);
    let mut idx = gpu.idx_empty();
    gpu.idx_resize(&mut idx, no);
    gpu.maxpool_forward(&g, &xb, Some(&saved), &mut out, &mut idx);
    exact("gpu pooling with the cpu's statistics", &all(&gpu, &out), &on_cpu[2]);
    // The evaluation values from the same running statistics: the same f64 expressions.
    let gbb = upload(&gpu, &gb);
    let state = upload(&gpu, &on_cpu[1]);
    let r = Region {
        offset: 0,
        len: 2 * c,
    };
    let mut eval_saved = gpu.zeros(BN_SAVED * c);
    gpu.bn_eval_saved(&gbb, r, &state, r, 1e-5, &mut eval_saved);
    exact("gpu evaluation values from the cpu's statistics", &all(&gpu, &eval_saved), &on_cpu[3]);
    assert!(gpu.take_error().is_none());
}

#[test]
fn pooling_and_elementwise_match_the_cpu_bit_for_bit() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
    fn run<B: Backend<Elem = f32>>(b: &B, x: &[f32], dy: &[f32], ident: &[f32]) -> Vec<Vec<f32>> {
        let g = PoolGeom {
            planes: 3,
            h: 9,
            w: 7,
            k: 3,
            stride: 2,
            pad: 1,
        };
        let no = g.planes * g.oh() * g.ow();
        let xb = upload(b, x);
        let mut y = b.zeros(no);
        let mut idx = b.idx_empty();
        b.idx_resize(&mut idx, no);
        b.maxpool_forward(&g, &xb, None, &mut y, &mut idx);
        let dyb = upload(b, &dy[..no]);
        let mut dx = b.zeros(x.len());
        b.maxpool_backward(&g, &dyb, &idx, &mut dx);
        // Average pooling: c = 3, b = 7, run = 9 over the same 189 values.
        let mut feat = b.zeros(21);
        b.avgpool_forward(3, 7, 9, &xb, &mut feat);
        let mut dxa = b.zeros(189);
        b.avgpool_backward(3, 7, 9, &dyb, &mut dxa);
        let ib = upload(b, ident);
        let mut d = upload(b, dy);
        b.relu_backward(189, &xb, &mut d);
        b.add_assign(100, &mut d, &ib);
        let mut s = b.zeros(189);
        b.swap_outer(7, 3, 9, &xb, &mut s);
        let mut f = upload(b, ident);
        b.fill(&mut f, 5..50, 0.25);
        vec![
            all(b, &y),
            all(b, &dx),
            all(b, &feat),
            all(b, &dxa),
            all(b, &d),
            all(b, &s),
            all(b, &f),
        ]
    }
    let mut x = rand_vec(&mut rng, 189);
    // Ties and a NaN exercise PyTorch's max-pool rule.
    x[10] = x[11];
    x[40] = f32::NAN;
    let (dy, ident) = (rand_vec(&mut rng, 189), rand_vec(&mut rng, 189));
    let g = run(&gpu, &x, &dy, &ident);
    let c = run(&cpu, &x, &dy, &ident);
    for (i, name) in [
        "maxpool y",
        "maxpool dx",
        "avgpool",
        "avgpool dx",
        "relu_backward+add",
        "swap_outer",
        "fill",
    ]
    .iter()
    .enumerate()
    {
        if *name == "avgpool" {
            close(name, &g[i], &c[i], 1e-6);
        } else {
            exact(name, &g[i], &c[i]);
        }
    }
}

#[test]
fn linear_and_head_operations_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    fn run<B: Backend<Elem = f32>>(b: &B, data: &[Vec<f32>]) -> Vec<Vec<f32>> {
        // A column block W[:, 5..12] of a 6 x 20 matrix at offset 7 of the arena (the concat
        // head's layout), with a bias, accumulated onto y.
        let spec = LinearSpec {
            out: 6,
            inp: 7,
            ld: 20,
            off: 7 + 5,
        };
        let rows = 5;
        let params = upload(b, &data[0]);
        let bias = Some(Region {
            offset: 130,
            len: 6,
        });
        let x = upload(b, &data[1][..rows * 7]);
        let mut y = upload(b, &data[2][..rows * 6]);
        b.linear_forward(&spec, rows, &x, &params, bias, 0.5, &mut y, true);
        let dy = upload(b, &data[3][..rows * 6]);
        let mut grads = b.zeros(140);
        let mut dx = b.zeros(rows * 7);
        b.linear_backward(
            &spec,
            rows,
            &x,
            &params,
            bias,
            &dy,
            &mut grads,
            Some(&mut dx),
        );
        // Gate and FiLM over 3 rows of d = 4.
        let gx = upload(b, &data[1][..12]);
        let yy = upload(b, &data[2][..12]);
        let (mut gate, mut z) = (b.zeros(12), b.zeros(12));
        b.gate_forward(&gx, &yy, &mut gate, &mut z);
        let dz = upload(b, &data[3][..12]);
        let (mut dgx, mut dyy) = (b.zeros(12), b.zeros(12));
        b.gate_backward(&gate, &yy, &dz, &mut dgx, &mut dyy);
        let h = upload(b, &data[1][..24]);
        let mut zf = b.zeros(12);
        b.film_forward(4, &h, &yy, &mut zf);
        let (mut dh, mut dxf) = (b.zeros(24), b.zeros(12));
        b.film_backward(4, &h, &yy, &dz, &mut dh, &mut dxf);
        vec![
            all(b, &y),
            all(b, &grads),
            all(b, &dx),
            all(b, &gate),
            all(b, &z),
            all(b, &dgx),
            all(b, &dyy),
            all(b, &zf),
            all(b, &dh),
            all(b, &dxf),
        ]
    }
    let data: Vec<Vec<f32>> = (0..4).map(|_| rand_vec(&mut rng, 140)).collect();
    let g = run(&gpu, &data);
    let c = run(&cpu, &data);
    let names = [
        "linear y",
        "linear grads",
        "linear dx",
        "gate",
        "gated z",
        "gate dgx",
        "gate dy",
        "film z",
        "film dh",
        "film dx",
    ];
    for (i, name) in names.iter().enumerate() {
        // exp differs in the last bit between the device library and Rust: 1e-6.
        close(name, &g[i], &c[i], if i < 3 { 1e-5 } else { 1e-6 });
    }
}

#[test]
fn optimisers_match_the_cpu_bit_for_bit() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
    fn run<B: Backend<Elem = f32>>(b: &B, data: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let (mut p, g, mut m) = (upload(b, &data[0]), upload(b, &data[1]), b.zeros(1037));
        for first in [true, false] {
            let s = SgdStep {
                lr: 0.01,
                momentum: 0.9,
                weight_decay: 1e-4,
                first,
            };
            b.sgd_step(&s, &mut p, &g, &mut m);
        }
        let (mut pa, mut ma, mut va) = (upload(b, &data[0]), b.zeros(1037), b.zeros(1037));
        for (step, decoupled) in [(1, false), (2, true)] {
            let s = AdamStep {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 1e-2,
                decoupled,
                step,
            };
            b.adam_step(&s, &mut pa, &g, &mut ma, &mut va);
        }
        vec![
            all(b, &p),
            all(b, &m),
            all(b, &pa),
            all(b, &ma),
            all(b, &va),
        ]
    }
    let data: Vec<Vec<f32>> = (0..2).map(|_| rand_vec(&mut rng, 1037)).collect();
    let g = run(&gpu, &data);
    let c = run(&cpu, &data);
    for (i, name) in [
        "sgd params",
        "sgd momentum",
        "adam params",
        "adam m",
        "adam v",
    ]
    .iter()
    .enumerate()
    {
        exact(name, &g[i], &c[i]);
    }
}

fn input_data(batch: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let audio = rand_vec(&mut rng, batch * 24 * 20);
    let visual = rand_vec(&mut rng, batch * 3 * 2 * 20 * 20);
    let labels = (0..batch).map(|i| (i * 5 % 6) as u32).collect();
    (audio, visual, labels)
}

/// One training step (forward, cross-entropy, backward, two SGD steps' worth of updates)
/// and an evaluation forward; returns everything to compare.
fn model_step<B: Backend<Elem = f32>>(b: B, fusion: FusionKind) -> Vec<(String, Vec<f32>)> {
    model_step_with(b, ModelConfig::small(6, fusion).with_frames(2))
}

/// [`model_step`] for any model configuration.
fn model_step_with<B: Backend<Elem = f32>>(b: B, cfg: ModelConfig) -> Vec<(String, Vec<f32>)> {
    let mut model = AvModel::new(b, cfg, 7).unwrap();
    let batch = 3;
    let (audio, visual, labels) = input_data(batch, 11);
    let input = Input {
        batch,
        audio: &audio,
        audio_hw: (24, 20),
        visual: &visual,
        visual_hw: (20, 20),
    };
    let mut sgd = Sgd::official();
    let mut out = Vec::new();
    for step in 0..2 {
        let o = model.forward(&input, Mode::Train).unwrap();
        let (_, dlogits) = softmax_cross_entropy(&o.logits, &labels, 6).unwrap();
        model.backward(&dlogits).unwrap();
        if step == 0 {
            out.push(("logits".into(), o.logits.clone()));
            out.push(("out_a".into(), o.out_a.clone()));
            out.push(("out_v".into(), o.out_v.clone()));
            for t in model.params_table().iter() {
                out.push((
                    format!("grad {}", t.name),
                    model.read_grad(&t.name).unwrap(),
                ));
            }
        }
        sgd.step(&mut model);
    }
    for t in model.params_table().iter() {
        out.push((
            format!("param {}", t.name),
            model.read_tensor(&t.name).unwrap(),
        ));
    }
    for t in model.state_table().iter() {
        out.push((
            format!("state {}", t.name),
            model.read_tensor(&t.name).unwrap(),
        ));
    }
    let e = model.forward(&input, Mode::Eval).unwrap();
    out.push(("eval logits".into(), e.logits));
    out
}

#[test]
fn a_whole_training_step_matches_the_cpu_for_every_head() {
    let Some(gpu) = gpu() else { return };
    let dev = gpu.device().clone();
    for fusion in [
        FusionKind::Concat,
        FusionKind::Sum,
        FusionKind::Film,
        FusionKind::Gated,
    ] {
        let g = model_step(GpuBackend::new(dev.clone()), fusion);
        let c = model_step(CpuBackend::<f32>::new(), fusion);
        assert_eq!(g.len(), c.len());
        for ((name, a), (_, b)) in g.iter().zip(&c) {
            let tol = if name.starts_with("grad") || name.starts_with("param") {
                2e-3
            } else {
                1e-3
            };
            close(&format!("{fusion:?} {name}"), a, b, tol);
        }
    }
    assert!(gpu.take_error().is_none());
}

#[test]
fn softmax_cross_entropy_kernel_matches_the_cpu() {
    // The fused kernel (loss and logit gradient in one pass, then the mean into an f64 slot),
    // driven through ogm_gpu::engine::ops on the backend's device; large logits check the
    // shift by the row maximum. A bad label is reported in the status word, not read.
    let Some(gpu) = gpu() else { return };
    let (rows, classes) = (5, 7);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
    let mut logits = rand_vec(&mut rng, rows * classes);
    logits[3] = 80.0;
    logits[10] = -90.0;
    let labels: Vec<u32> = vec![0, 6, 3, 1, 2];
    let (want_loss, want_grad) = softmax_cross_entropy(&logits, &labels, classes).unwrap();
    let as_f32 = |v: &[u32]| v.iter().map(|&u| f32::from_bits(u)).collect::<Vec<f32>>();
    let run = |labels: &[u32]| {
        let lb = upload(&gpu, &logits);
        let yb = upload(&gpu, &as_f32(labels));
        let db = gpu.zeros(rows * classes);
        // f64 losses and the mean, and the u32 status word, in f32-sized slots.
        let losses = gpu.zeros(2 * rows);
        let status = gpu.zeros(1);
        let out = gpu.zeros(2);
        // SAFETY: every buffer has the length the kernel reads or writes.
        unsafe {
            ogm_gpu::engine::ops::softmax_xent(
                &**gpu.device(),
                lb.ptr(),
                yb.ptr(),
                rows,
                classes,
                db.ptr(),
                losses.ptr(),
                status.ptr(),
                out.ptr(),
            )
            .unwrap()
        };
        let o = all(&gpu, &out);
        let loss = f64::from_bits(u64::from(o[0].to_bits()) | (u64::from(o[1].to_bits()) << 32));
        (loss, all(&gpu, &db), all(&gpu, &status)[0].to_bits())
    };
    let (loss, grad, status) = run(&labels);
    assert_eq!(status, 0);
    assert!(
        (loss - want_loss).abs() <= 1e-12 * want_loss.abs(),
        "loss {loss} vs {want_loss}"
    );
    close("dlogits", &grad, &want_grad, 1e-6);
    let (loss, _, status) = run(&[0, 6, 7, 1, 2]);
    assert_eq!(status, 1, "a label out of range is reported");
    assert!(loss.is_nan(), "and the loss is NaN, which stops training");
    assert!(gpu.take_error().is_none());
}

// ---------------------------------------------------------------------------------------------
// Tensor-core GEMMs (ogm_gpu::engine::ops::Precision::Tf32 and Precision::Bf16). Each property
// is one helper run for both formats, so the TF32 and BF16 tests are the same checks with the
// format's own rounding and bounds.

/// `alpha A B + beta C` through `ogm_gpu::engine::ops::gemm` on the backend's device, with
/// `A` (`m x kk`) and `B` (`kk x n`) given row-major and stored transposed when asked (so the
/// kernel reads them with unit stride along m, or along k); `C` has leading dimension
/// `n + 3`. Returns the `m x (n + 3)` result.
#[allow(clippy::too_many_arguments)]
fn ops_gemm<D: ogm_gpu::engine::Device + 'static>(
    gpu: &GpuBackend<D>,
    precision: ogm_gpu::engine::ops::Precision,
    (m, n, kk): (usize, usize, usize),
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    (alpha, beta): (f32, f32),
    c: &[f32],
) -> Vec<f32> {
    use ogm_gpu::engine::ops::{self, MatRef};
    let transpose = |v: &[f32], rows: usize, cols: usize| -> Vec<f32> {
        (0..rows * cols)
            .map(|i| v[(i % rows) * cols + i / rows])
            .collect()
    };
    let (a_store, b_store) = (
        if a_transposed {
            transpose(a, m, kk)
        } else {
            a.to_vec()
        },
        if b_transposed {
            transpose(b, kk, n)
        } else {
            b.to_vec()
        },
    );
    let (ab, bb, cb) = (upload(gpu, &a_store), upload(gpu, &b_store), upload(gpu, c));
    let am = if a_transposed {
        MatRef::tr(ab.ptr(), m)
    } else {
        MatRef::rm(ab.ptr(), kk)
    };
    let bm = if b_transposed {
        MatRef::tr(bb.ptr(), kk)
    } else {
        MatRef::rm(bb.ptr(), n)
    };
    let dev = gpu.device();
    let scratch =
        gpu.zeros(ops::gemm_scratch_len(precision, dev.multiprocessors(), m, n, kk).max(1));
    // SAFETY: A holds m kk values, B kk n, C m (n + 3), the scratch what gemm_scratch_len
    // asks for.
    unsafe {
        ops::gemm(
            &**dev,
            precision,
            m,
            n,
            kk,
            alpha,
            am,
            bm,
            beta,
            cb.ptr(),
            n + 3,
            scratch.ptr(),
        )
        .unwrap()
    };
    all(gpu, &cb)
}

/// The unit roundoff of an operand at `precision`: the largest relative error of rounding to
/// nearest with `p` explicit mantissa bits, 2^-(p + 1): 2^-11 for TF32 (10 bits), 2^-8 for BF16
/// (7 bits), 0 for FP32 (no rounding).
fn operand_unit(precision: ogm_gpu::engine::ops::Precision) -> f64 {
    use ogm_gpu::engine::ops::Precision;
    match precision {
        Precision::Fp32 => 0.0,
        Precision::Tf32 => 2f64.powi(-11),
        Precision::Bf16 => 2f64.powi(-8),
    }
}

/// The tensor-core GEMM at `precision` against the exact product, element by element, within
/// the bound of its operand rounding; and the rounding must be visible (an FP32 result, checked
/// alongside, must not show it).
///
/// Bound: with S = sum_k |a_ik b_kj| and u the operand unit roundoff, the tensor cores compute
/// sum_k a~ b~ where a~ = a (1 + d), |d| <= u (rounding to nearest), so each product is off by
/// at most (2u + u^2) |a b| (TF32: 2^-10 + 2^-22, BF16: 2^-7 + 2^-16); the f32 accumulation of
/// k terms adds at most k 2^-23 S (one rounding or truncation per addition, the split-K sum
/// included), and alpha and beta one rounding each:
///   |gpu - exact| <= |alpha| S (2u + u^2 + (k + 4) 2^-23) + 2^-22 |beta c|.
/// A worst-case bound, linear in k through S; the typical error grows like u sqrt(k).
/// Shapes: odd sizes (partial tiles), two row tiles, more than one column tile, A and B
/// transposed, beta != 0 with alpha != 1, and split-K (k >= 4096 with one output tile).
fn tensor_core_gemm_within_rounding(precision: ogm_gpu::engine::ops::Precision) {
    use ogm_gpu::engine::ops::{gemm_uses_tensor_cores, split_plan_at, Precision};
    let Some(gpu) = gpu() else { return };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(21);
    let cases = [
        ((37, 45, 33), false, false, (1.0f32, 0.0f32)),
        ((130, 70, 50), true, false, (1.5, 0.5)),
        ((40, 150, 40), false, true, (1.0, -1.0)),
        ((33, 36, 4100), true, true, (0.5, 0.25)),
    ];
    let multiprocessors = ogm_gpu::engine::Device::multiprocessors(&**gpu.device());
    assert!(
        split_plan_at(precision, multiprocessors, 33, 36, 4100).0 > 1,
        "the last case must split"
    );
    let u = operand_unit(precision);
    // The operands really were rounded. Measured against P = sqrt(sum_k (a_ik b_kj)^2), the
    // rounded GEMM's error is a sum of k product errors of up to 2u |a b| with random signs,
    // about u P, and its largest over the matrix above u P / 2; an FP32 GEMM's error is the
    // accumulation's, about 2^-24 sqrt(k) times the partial sums (~P), below 2^-17 P here
    // (k <= 4100). u / 8 (TF32 2^-14, BF16 2^-11) separates the two.
    let visible = u / 8.0;
    for ((m, n, kk), at, bt, (alpha, beta)) in cases {
        assert!(gemm_uses_tensor_cores(precision, m, n, kk));
        let a = rand_vec(&mut rng, m * kk);
        let b = rand_vec(&mut rng, kk * n);
        let c = rand_vec(&mut rng, m * (n + 3));
        let what = format!("{precision} {m}x{n}x{kk} A^T {at} B^T {bt} alpha {alpha} beta {beta}");
        // (largest error / bound, largest error / P) of the product at `p`.
        let measure = |p: Precision| -> (f64, f64) {
            let got = ops_gemm(&gpu, p, (m, n, kk), &a, at, &b, bt, (alpha, beta), &c);
            let (mut worst, mut rounded) = (0.0f64, 0.0f64);
            for i in 0..m {
                for j in 0..n + 3 {
                    let at_ij = i * (n + 3) + j;
                    if j >= n {
                        assert_eq!(
                            got[at_ij], c[at_ij],
                            "{what}: ({i}, {j}) past n was written"
                        );
                        continue;
                    }
                    let (mut exact, mut s, mut l2) = (0.0f64, 0.0f64, 0.0f64);
                    for k in 0..kk {
                        let p = f64::from(a[i * kk + k]) * f64::from(b[k * n + j]);
                        exact += p;
                        s += p.abs();
                        l2 += p * p;
                    }
                    let l2 = l2.sqrt();
                    let want = f64::from(alpha) * exact + f64::from(beta) * f64::from(c[at_ij]);
                    let tol = f64::from(alpha.abs())
                        * s
                        * (2.0 * u + u * u + (kk as f64 + 4.0) * 2f64.powi(-23))
                        + 2f64.powi(-22) * f64::from((beta * c[at_ij]).abs());
                    let err = (f64::from(got[at_ij]) - want).abs();
                    assert!(
                        err <= tol,
                        "{what}: ({i}, {j}): gpu {} exact {want} error {err:e} > {tol:e}",
                        got[at_ij]
                    );
                    worst = worst.max(err / tol);
                    rounded = rounded.max(err / (f64::from(alpha.abs()) * l2));
                }
            }
            (worst, rounded)
        };
        let (worst, rounded) = measure(precision);
        assert!(
            rounded > visible,
            "{what}: largest error {rounded:e} P <= {visible:e} P: no operand rounding visible"
        );
        // The check above can fail: the FP32 kernels' result on the same data does not pass it.
        let (_, fp32) = measure(Precision::Fp32);
        assert!(
            fp32 <= visible,
            "{what}: the FP32 reference's largest error {fp32:e} P looks rounded"
        );
        eprintln!("{what}: largest error {worst:.3} of the bound, {rounded:e} P (FP32 {fp32:e} P)");
    }
    assert!(gpu.take_error().is_none());
}

#[test]
fn tf32_gemm_matches_the_fp32_reference_within_tf32_rounding() {
    tensor_core_gemm_within_rounding(ogm_gpu::engine::ops::Precision::Tf32);
}

#[test]
fn bf16_gemm_matches_the_fp32_reference_within_bf16_rounding() {
    tensor_core_gemm_within_rounding(ogm_gpu::engine::ops::Precision::Bf16);
}

/// The roundings a tensor-core kernel might do instead of its own: by truncation, to nearest
/// with ties away from zero, or to nearest with ties to even. The tests use them to show that
/// their data tells them apart.
#[derive(Debug, Clone, Copy)]
enum Rounding {
    Truncate,
    TiesAway,
    TiesEven,
}

/// A named rounding of an f32 operand.
type NamedRounding<'a> = (&'a str, fn(f32) -> f32);

/// `x` (finite) rounded to `keep` explicit mantissa bits the `how` way, as an f32.
fn round_to(x: f32, keep: u32, how: Rounding) -> f32 {
    let drop = 23 - keep;
    let (u, mask, half) = (x.to_bits(), (1u32 << drop) - 1, 1u32 << (drop - 1));
    let add = match how {
        Rounding::Truncate => 0,
        Rounding::TiesAway => half,
        Rounding::TiesEven => half - 1 + ((u >> drop) & 1),
    };
    f32::from_bits(u.wrapping_add(add) & !mask)
}

/// The tensor-core GEMM at `precision` rounds its operands exactly as `round` does.
///
/// 32 x 32 x 32 (the smallest product the tensor cores run) with constant rows of A and
/// constant columns of B, one operand chosen to need rounding and the other exactly
/// representable with a few bits: every partial sum of the rounded products (at most 11 + 2 + 5
/// significant bits for TF32, 8 + 2 + 5 for BF16) is then exact in f32, whatever the order, and
/// the result is exactly 32 round(x) y. The values `to_round` must tell `round` apart from each
/// of `wrong` (asserted: otherwise a kernel rounding that way would pass), and the FP32 path
/// must give yet other results (32 fmaf steps of x y, in k order, as eng_gemm adds them).
fn tensor_core_gemm_rounds_operands(
    precision: ogm_gpu::engine::ops::Precision,
    round: fn(f32) -> f32,
    to_round: &[f32],
    wrong: &[NamedRounding],
) {
    use ogm_gpu::engine::ops::Precision;
    for (name, other) in wrong {
        assert!(
            to_round.iter().any(|&x| other(x) != round(x)),
            "test data: no value tells {precision}'s rounding from {name}"
        );
    }
    let Some(gpu) = gpu() else { return };
    let simple = [1.0f32, 0.5, -2.0, 0.75];
    let (m, n, kk) = (32, 32, 32);
    // Run 0 rounds A (row i: to_round[i % len]), run 1 rounds B (column j: to_round[j % len]).
    for run in 0..2 {
        // (the value to round, the simple one) of output (i, j).
        let xy = |i: usize, j: usize| -> (f32, f32) {
            if run == 0 {
                (to_round[i % to_round.len()], simple[j % simple.len()])
            } else {
                (to_round[j % to_round.len()], simple[i % simple.len()])
            }
        };
        // A's row i and B's column j are constant: A(i, k) x B(k, j) = x y for every k.
        let a: Vec<f32> = (0..m * kk)
            .map(|e| {
                let (x, y) = xy(e / kk, 0);
                if run == 0 {
                    x
                } else {
                    y
                }
            })
            .collect();
        let b: Vec<f32> = (0..kk * n)
            .map(|e| {
                let (x, y) = xy(0, e % n);
                if run == 0 {
                    y
                } else {
                    x
                }
            })
            .collect();
        let c = vec![f32::NAN; m * (n + 3)];
        for p in [precision, Precision::Fp32] {
            let got = ops_gemm(&gpu, p, (m, n, kk), &a, false, &b, false, (1.0, 0.0), &c);
            for i in 0..m {
                for j in 0..n {
                    let (x, y) = xy(i, j);
                    let rounded = 32.0 * round(x) * y;
                    // The FP32 kernel adds the products in k order with fmaf.
                    let fp32 = (0..kk).fold(0.0f32, |acc, _| x.mul_add(y, acc));
                    assert_ne!(rounded, fp32, "test data: {x:e} needs rounding");
                    let want = if p == precision { rounded } else { fp32 };
                    assert_eq!(
                        got[i * (n + 3) + j],
                        want,
                        "run {run} {p}: ({i}, {j}) = 32 x {x:e} x {y}: \
                         {precision} {rounded}, fp32 {fp32}"
                    );
                }
            }
        }
    }
    assert!(gpu.take_error().is_none());
}

#[test]
fn tf32_gemm_rounds_operands_to_nearest_ties_away() {
    // Below, at and above half a TF32 unit, at ties with an even and an odd last bit, and a
    // carry into the exponent: truncation or ties-to-even would give other results.
    use ogm_gpu::engine::ops::{round_tf32, Precision};
    let p = |e: i32| 2f32.powi(e);
    tensor_core_gemm_rounds_operands(
        Precision::Tf32,
        round_tf32,
        &[
            1.0 + p(-11),
            -(1.0 + p(-11)),
            1.0 + p(-10) + p(-11),
            1.0 + p(-12),
            3.0 - p(-22),
            0.1,
            -1.0 - p(-11) - p(-13),
        ],
        &[
            ("truncation", |x| round_to(x, 10, Rounding::Truncate)),
            ("ties to even", |x| round_to(x, 10, Rounding::TiesEven)),
        ],
    );
}

#[test]
fn bf16_gemm_rounds_operands_to_nearest_ties_to_even() {
    // Below, at and above half a BF16 unit (2^-8 at 1), ties with an even last bit (which stay)
    // and an odd one (which go up), negative ties, and a carry into the exponent: truncation,
    // ties away from zero (TF32's rule) and TF32 itself would give other results.
    use ogm_gpu::engine::ops::{round_bf16, round_tf32, Precision};
    let p = |e: i32| 2f32.powi(e);
    tensor_core_gemm_rounds_operands(
        Precision::Bf16,
        round_bf16,
        &[
            1.0 + p(-8),
            -(1.0 + p(-8)),
            1.0 + p(-7) + p(-8),
            1.0 + p(-9),
            2.0 - p(-9),
            0.1,
            -1.0 - p(-8) - p(-10),
        ],
        &[
            ("truncation", |x| round_to(x, 7, Rounding::Truncate)),
            ("ties away from zero", |x| {
                round_to(x, 7, Rounding::TiesAway)
            }),
            ("TF32", round_tf32),
        ],
    );
}

/// Tolerances of a whole reduced-precision step against the CPU engine, as relative L2
/// differences: the first step's outputs, the evaluation logits after the two updates, running
/// statistics, every gradient, every parameter, and the median gradient and parameter.
struct StepTolerance {
    output: f64,
    eval: f64,
    state: f64,
    grad: f64,
    param: f64,
    grad_median: f64,
    param_median: f64,
}

/// The training step of a_whole_training_step_matches_the_cpu_for_every_head (two SGD steps,
/// then an evaluation forward) at `precision`, on a model wide enough (32 channels in every
/// stage) for most convolution products to reach TENSOR_CORE_MIN_DIM and run on the tensor
/// cores (counted); the classifier head and the products of the smallest feature maps stay
/// FP32. Measure: each tensor's relative L2 difference |gpu - cpu| / |cpu|, within `tol`.
fn tensor_core_step_matches_the_cpu_loosely(
    precision: ogm_gpu::engine::ops::Precision,
    tol: StepTolerance,
) {
    use ogm_gpu::engine::kernels::{GEMM_BF16, GEMM_TF32};
    use ogm_gpu::engine::ops::Precision;
    let Some(gpu) = gpu() else { return };
    let cfg = ModelConfig {
        widths: [32, 32, 32, 32],
        blocks: [1, 1, 1, 1],
        ..ModelConfig::small(6, FusionKind::Concat).with_frames(2)
    };
    let recorder = Arc::new(Recorder::new(gpu.device().clone()));
    let mut backend = GpuBackend::new(recorder.clone());
    assert_eq!(backend.precision(), Precision::Fp32, "FP32 is the default");
    backend.set_precision(precision);
    let g = model_step_with(backend, cfg);
    let launches = recorder.take();
    let (tc_name, other_name) = match precision {
        Precision::Bf16 => (GEMM_BF16.name, GEMM_TF32.name),
        _ => (GEMM_TF32.name, GEMM_BF16.name),
    };
    let tc = launches.iter().filter(|&&k| k == tc_name).count();
    let fp32 = launches
        .iter()
        .filter(|&&k| k != tc_name && k.starts_with("eng_gemm"))
        .count();
    assert!(
        tc > 0 && fp32 > 0,
        "expected both {precision} and FP32 products: {tc} {precision}, {fp32} FP32 GEMM launches"
    );
    assert!(
        !launches.contains(&other_name),
        "{precision} ran {other_name}"
    );
    let c = model_step_with(CpuBackend::<f32>::new(), cfg);
    assert_eq!(g.len(), c.len());
    let mut by_kind: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for ((name, a), (cname, b)) in g.iter().zip(&c) {
        assert_eq!(name, cname);
        assert_eq!(a.len(), b.len(), "{name}: length");
        let norm = b.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum::<f64>()
            .sqrt();
        let rel = diff / norm.max(1e-30);
        let kind = name.split(' ').next().unwrap_or("");
        let (kind, limit) = match kind {
            "grad" => ("grad", tol.grad),
            "param" => ("param", tol.param),
            "state" => ("state", tol.state),
            "eval" => ("eval", tol.eval),
            _ => ("output", tol.output),
        };
        assert!(
            rel <= limit,
            "{precision} {name}: relative L2 difference {rel:e} > {limit:e}"
        );
        by_kind.entry(kind).or_default().push(rel);
    }
    for (kind, limit) in [("grad", tol.grad_median), ("param", tol.param_median)] {
        let v = by_kind
            .get_mut(kind)
            .expect("the step has gradients and parameters");
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        assert!(
            median <= limit,
            "{precision} {kind}: median relative L2 difference {median:e} > {limit:e}"
        );
    }
    for (kind, v) in &by_kind {
        let worst = v.iter().copied().fold(0.0f64, f64::max);
        eprintln!(
            "{precision} step, {kind}: {} tensors, largest relative L2 difference {worst:e}, \
             median {:e}",
            v.len(),
            v[v.len() / 2]
        );
    }
    eprintln!("{precision} step: {tc} {precision} and {fp32} FP32 GEMM launches");
    assert!(gpu.take_error().is_none());
}

#[test]
fn a_whole_training_step_in_tf32_matches_the_cpu_loosely() {
    // One TF32 product is off by about 2^-11 relatively (random operand roundings of up to
    // 2^-11 each, averaging over k terms); that compounds through the layers, forward and
    // backward, and batch norm amplifies it where its statistics come from a handful of values
    // (the audio encoder's last stage sees 1 x 1 maps of 3 samples). Measured on the emulator:
    // outputs up to 1.1e-2 (the evaluation logits; the first step's 4e-3), running statistics
    // 3e-3, gradients 4.2e-2 (median 1.1e-2), parameters 0.12 (batch-norm biases, which start
    // at zero, so they hold nothing but two gradient steps; median 4e-5). Tolerances, about 2.5
    // times those: outputs 3e-2, running statistics 1e-2, every gradient 1e-1 and their median
    // 3e-2, every parameter 0.25 and their median 1e-3. A wrong TF32 product (a misplaced
    // operand, a lost split-K slice, a wrong beta) gives differences of order 1, and so does
    // BF16's coarser rounding on the first step's audio output (3.7e-2, see below).
    tensor_core_step_matches_the_cpu_loosely(
        ogm_gpu::engine::ops::Precision::Tf32,
        StepTolerance {
            output: 3e-2,
            eval: 3e-2,
            state: 1e-2,
            grad: 1e-1,
            param: 0.25,
            grad_median: 3e-2,
            param_median: 1e-3,
        },
    );
}

#[test]
fn a_whole_training_step_in_bf16_matches_the_cpu_loosely() {
    // The TF32 step's model and measure with BF16 operands: 2^-8 relative rounding each, eight
    // times TF32's. Measured on the emulator: the first step's outputs up to 3.7e-2 (about 8
    // times TF32's, the forward pass is still linear in the rounding), running statistics
    // 0.12, the evaluation logits after the two updates 0.16, gradients up to 1.14 (median
    // 0.27, about 40 times TF32's: under the larger perturbation ReLU and max-pool decisions
    // and the 3-sample batch-norm statistics of the audio encoder's last stages flip, so the
    // backward pass is no longer linear in it; the largest are the audio encoder's deepest
    // weight gradients and its batch-norm gradients), parameters up to 1.06 (batch-norm biases
    // again; median 7.9e-4). That these are BF16 rounding and not a kernel fault was checked
    // on the emulator: the TF32 kernel with its operand rounding changed to BF16's gives the
    // same difference on every tensor. Tolerances, about 2.5 times the measurements: first
    // step outputs 0.1, evaluation logits 0.4, running statistics 0.3, gradient median 0.7,
    // parameter median 2e-3; every gradient and parameter 3 (that much only catches garbage:
    // the medians and the outputs are the discriminating checks here). A wrong BF16 product
    // (B's second k half read in place of its first, tried on the emulator) fails at once: the
    // first step's logits differ by 1.36.
    tensor_core_step_matches_the_cpu_loosely(
        ogm_gpu::engine::ops::Precision::Bf16,
        StepTolerance {
            output: 0.1,
            eval: 0.4,
            state: 0.3,
            grad: 3.0,
            param: 3.0,
            grad_median: 0.7,
            param_median: 2e-3,
        },
    );
}
