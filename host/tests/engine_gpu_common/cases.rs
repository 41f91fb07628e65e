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

/// Forward and backward of one convolution: (y, dw, dx).
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
    b.conv2d_backward(g, &xb, &params, region, &dyb, &mut grads, Some(&mut dx));
    (all(b, &y), b.read(&grads, region.range()), all(b, &dx))
}

#[test]
fn convolution_forward_and_gradients_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    // (cin, cout, k, stride, pad, n, h, w): the ResNet stem, 3x3 / 1 and / 2, the 1x1 / 2
    // shortcut, a 1x1 / 1 (no lowering), odd sizes that leave partial GEMM tiles, and one with
    // the large GEMM tile.
    let shapes = [
        (3, 8, 7, 2, 3, 2, 13, 11),
        (5, 6, 3, 1, 1, 2, 7, 9),
        (4, 70, 3, 2, 1, 1, 9, 8),
        (6, 5, 1, 2, 0, 3, 7, 7),
        (7, 3, 1, 1, 0, 2, 5, 6),
        // Wide enough for the 128 x 128 GEMM tile in all three products.
        (16, 130, 3, 1, 1, 2, 9, 8),
    ];
    for (cin, cout, k, stride, pad, n, h, w) in shapes {
        let g = ConvGeom {
            cin,
            cout,
            k,
            stride,
            pad,
            n,
            h,
            w,
        };
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

/// BN train forward (with and without ReLU), backward, eval: outputs, saved statistics,
/// running statistics, parameter gradients.
fn bn_run<B: Backend<Elem = f32>>(
    b: &B,
    c: usize,
    len: usize,
    relu: bool,
    data: &[Vec<f32>],
) -> Vec<Vec<f32>> {
    let (x, gb, dy) = (&data[0], &data[1], &data[2]);
    let xb = upload(b, x);
    let params = upload(b, gb);
    let gbr = Region {
        offset: 0,
        len: 2 * c,
    };
    let mut state = upload(b, &[vec![0.1f32; c], vec![0.9f32; c]].concat());
    let mut y = b.zeros(c * len);
    let mut saved = b.zeros(2 * c);
    b.bn_forward_train(
        len, &xb, &params, gbr, &mut state, gbr, 0.1, 1e-5, relu, &mut y, &mut saved,
    );
    let dyb = upload(b, dy);
    let mut grads = b.zeros(2 * c);
    let mut dx = b.zeros(c * len);
    b.bn_backward(
        len,
        &xb,
        &params,
        gbr,
        &saved,
        &dyb,
        relu.then_some(&y),
        &mut grads,
        &mut dx,
    );
    let mut ye = b.zeros(c * len);
    b.bn_forward_eval(len, &xb, &params, gbr, &state, gbr, 1e-5, relu, &mut ye);
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
    for (c, len, relu) in [(3, 700, false), (5, 37, true), (2, 2, true)] {
        let mut x = rand_vec(&mut rng, c * len);
        // An offset mean, as after a convolution: the centred second pass matters.
        x.iter_mut().for_each(|v| *v = 3.0 + 2.0 * *v);
        let gb: Vec<f32> = (0..2 * c).map(|i| 0.5 + 0.1 * i as f32).collect();
        let data = vec![x, gb, rand_vec(&mut rng, c * len)];
        let g = bn_run(&gpu, c, len, relu, &data);
        let r = bn_run(&cpu, c, len, relu, &data);
        for (i, name) in ["y", "saved", "running", "dgamma/dbeta", "dx", "eval y"]
            .iter()
            .enumerate()
        {
            close(
                &format!("bn c={c} len={len} relu={relu} {name}"),
                &g[i],
                &r[i],
                1e-5,
            );
        }
    }
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
        b.maxpool_forward(&g, &xb, &mut y, &mut idx);
        let dyb = upload(b, &dy[..no]);
        let mut dx = b.zeros(x.len());
        b.maxpool_backward(&g, &dyb, &idx, &mut dx);
        // Average pooling: c = 3, b = 7, run = 9 over the same 189 values.
        let mut feat = b.zeros(21);
        b.avgpool_forward(3, 7, 9, &xb, &mut feat);
        let mut dxa = b.zeros(189);
        b.avgpool_backward(3, 7, 9, &dyb, &mut dxa);
        let mut r = upload(b, x);
        let ib = upload(b, ident);
        b.add_relu(189, &mut r, &ib);
        let mut d = upload(b, dy);
        b.relu_backward(189, &r, &mut d);
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
            all(b, &r),
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
        "add_relu",
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
    let cfg = ModelConfig::small(6, fusion).with_frames(2);
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
