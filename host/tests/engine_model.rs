//! The model's structure and contract: PyTorch state_dict names and shapes of the paper
//! model, OGM-GE targets, initialisation, determinism, StepLR, and typed errors on bad input.

mod engine_common;

use engine_common::read_fixture;
use ogm_host::engine::{
    softmax_cross_entropy, AvModel, CpuBackend, EngineError, FusionKind, Input, Modality, Mode,
    ModelConfig, Sgd, StepLr,
};

const FUSIONS: [FusionKind; 4] = [
    FusionKind::Sum,
    FusionKind::Concat,
    FusionKind::Film,
    FusionKind::Gated,
];

/// Every key and shape of the official paper model's state_dict (dumped by the fixture
/// script from PyTorch), in order, for every head.
#[test]
fn paper_model_has_pytorch_state_dict_keys() {
    let text =
        std::fs::read_to_string(engine_common::fixture_dir().join("paper_state_dict_keys.txt"))
            .unwrap();
    for fusion in FUSIONS {
        let want: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split(' ');
                (it.next()? == fusion.name())
                    .then(|| (it.next().unwrap().into(), it.next().unwrap().into()))
            })
            .collect();
        let m = AvModel::new(CpuBackend::<f32>::new(), ModelConfig::paper(6, fusion), 0).unwrap();
        let shape = |s: &[usize]| {
            if s.is_empty() {
                "scalar".to_string()
            } else {
                s.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x")
            }
        };
        // PyTorch's state_dict order: per module, parameters, then buffers.
        let mut got: Vec<(String, String)> = Vec::new();
        for t in m.params_table().iter() {
            got.push((t.name.clone(), shape(&t.shape)));
        }
        for t in m.state_table().iter() {
            got.push((t.name.clone(), shape(&t.shape)));
        }
        for (n, _) in m.batch_counters() {
            got.push((n.clone(), "scalar".into()));
        }
        let mut g = got.clone();
        let mut w = want.clone();
        g.sort();
        w.sort();
        assert_eq!(g, w, "{}", fusion.name());
        // Paper model sizes: 11.2 M parameters per ResNet-18 encoder (without fc).
        let audio: usize = m
            .params_table()
            .of_modality(Modality::Audio)
            .map(|t| t.region.len)
            .sum();
        assert_eq!(audio, 11_170_240);
    }
}

#[test]
fn modulation_targets_are_the_encoder_conv_weights() {
    let m = AvModel::new(
        CpuBackend::<f32>::new(),
        ModelConfig::paper(6, FusionKind::Concat),
        0,
    )
    .unwrap();
    let targets: Vec<_> = m.modulation_targets().collect();
    // Per ResNet-18: stem + 16 block convolutions + 3 downsample convolutions.
    assert_eq!(
        targets
            .iter()
            .filter(|t| t.modality == Modality::Audio)
            .count(),
        20
    );
    assert_eq!(
        targets
            .iter()
            .filter(|t| t.modality == Modality::Visual)
            .count(),
        20
    );
    assert!(targets
        .iter()
        .all(|t| t.shape.len() == 4 && t.name.ends_with(".weight")));
    assert!(targets.iter().all(|t| !t.name.starts_with("fusion_module")));
    let values: usize = targets.iter().map(|t| t.region.len).sum();
    // design.md: 22.3 M conv-gradient values in the two encoders.
    assert!((22_200_000..22_400_000).contains(&values), "{values}");
}

#[test]
fn initialisation_follows_weight_init() {
    let m = AvModel::new(
        CpuBackend::<f32>::new(),
        ModelConfig::paper(6, FusionKind::Gated),
        0,
    )
    .unwrap();
    let std = |v: &[f32]| {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    // kaiming_normal fan_out relu: std = sqrt(2 / (cout * k * k)).
    let w = m.read_tensor("visual_net.layer3.0.conv2.weight").unwrap();
    let want = (2.0f64 / (256.0 * 9.0)).sqrt();
    assert!((std(&w) / want - 1.0).abs() < 0.01, "{} vs {want}", std(&w));
    // xavier_normal: std = sqrt(2 / (fan_in + fan_out)).
    let w = m.read_tensor("fusion_module.fc_x.weight").unwrap();
    let want = (2.0f64 / 1024.0).sqrt();
    assert!((std(&w) / want - 1.0).abs() < 0.01);
    assert!(m
        .read_tensor("fusion_module.fc_out.bias")
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    assert!(m
        .read_tensor("audio_net.bn1.weight")
        .unwrap()
        .iter()
        .all(|&v| v == 1.0));
    assert!(m
        .read_tensor("audio_net.bn1.bias")
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    assert!(m
        .read_tensor("audio_net.bn1.running_var")
        .unwrap()
        .iter()
        .all(|&v| v == 1.0));
    // Deterministic from the seed, different across seeds.
    let m2 = AvModel::new(
        CpuBackend::<f32>::new(),
        ModelConfig::paper(6, FusionKind::Gated),
        0,
    )
    .unwrap();
    let m3 = AvModel::new(
        CpuBackend::<f32>::new(),
        ModelConfig::paper(6, FusionKind::Gated),
        1,
    )
    .unwrap();
    assert!(m.params() == m2.params());
    assert!(m.params() != m3.params());
}

fn small_step(seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let cfg = ModelConfig::small(4, FusionKind::Film).with_frames(3);
    let mut m = AvModel::new(CpuBackend::<f32>::new(), cfg, seed).unwrap();
    let mut r = engine_common::Rng(4);
    let a: Vec<f32> = r.vec(3 * 40 * 30).iter().map(|&v| v as f32).collect();
    let v: Vec<f32> = r
        .vec(3 * 3 * 3 * 36 * 36)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let input = Input {
        batch: 3,
        audio: &a,
        audio_hw: (40, 30),
        visual: &v,
        visual_hw: (36, 36),
    };
    let mut sgd = Sgd::official();
    let mut logits = Vec::new();
    for _ in 0..2 {
        let o = m.forward(&input, Mode::Train).unwrap();
        let (_, dl) = softmax_cross_entropy(&o.logits, &[0, 3, 1], 4).unwrap();
        m.backward(&dl).unwrap();
        sgd.step(&mut m);
        logits = o.logits;
    }
    (logits, m.grads().clone(), m.params().clone())
}

#[test]
fn training_steps_are_deterministic() {
    let a = small_step(11);
    let b = small_step(11);
    assert!(a == b, "two runs with the same seed and threads differ");
    // Different thread counts run the same code with a different split; the results agree
    // closely (bit-identity is promised only for the same thread count).
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let c = one.install(|| small_step(11));
    let d = one.install(|| small_step(11));
    assert!(c == d);
    for (x, y) in a.1.iter().zip(&c.1) {
        assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

#[test]
fn step_lr_matches_pytorch() {
    let fx = read_fixture("steplr.safetensors");
    let want = &fx["lr"].data;
    let s = StepLr::official(1e-3);
    for (epoch, w) in want.iter().enumerate() {
        assert_eq!(s.lr_at(epoch as u32), *w, "epoch {epoch}");
    }
}

#[test]
fn bad_input_gives_typed_errors() {
    let cfg = ModelConfig::small(3, FusionKind::Concat);
    let mut m = AvModel::new(CpuBackend::<f32>::new(), cfg, 0).unwrap();
    let a = vec![0.5f32; 2 * 20 * 20];
    let v = vec![0.5f32; 2 * 3 * 24 * 24];
    let ok = Input {
        batch: 2,
        audio: &a,
        audio_hw: (20, 20),
        visual: &v,
        visual_hw: (24, 24),
    };
    assert!(matches!(m.backward(&[0.0; 6]), Err(EngineError::NoForward)));
    let short = Input {
        audio: &a[1..],
        ..ok
    };
    assert!(matches!(
        m.forward(&short, Mode::Train),
        Err(EngineError::Length { .. })
    ));
    let wrong_hw = Input {
        visual_hw: (24, 23),
        ..ok
    };
    assert!(matches!(
        m.forward(&wrong_hw, Mode::Train),
        Err(EngineError::Length { .. })
    ));
    let mut nan = a.clone();
    nan[7] = f32::NAN;
    let bad = Input { audio: &nan, ..ok };
    assert!(matches!(
        m.forward(&bad, Mode::Eval),
        Err(EngineError::NonFinite { index: 7, .. })
    ));
    let empty = Input {
        batch: 0,
        audio: &[],
        visual: &[],
        ..ok
    };
    assert!(matches!(
        m.forward(&empty, Mode::Train),
        Err(EngineError::Config(_))
    ));
    // One sample whose last stage is 1x1: batch norm cannot train on one value.
    let (a1, v1) = (vec![0.5f32; 20 * 20], vec![0.5f32; 3 * 24 * 24]);
    let one = Input {
        batch: 1,
        audio: &a1,
        visual: &v1,
        ..ok
    };
    assert!(matches!(
        m.forward(&one, Mode::Train),
        Err(EngineError::TooFewValues { .. })
    ));
    // ...but evaluates.
    m.forward(&one, Mode::Eval).unwrap();
    // Backward after an evaluation pass has nothing to differentiate.
    assert!(matches!(m.backward(&[0.0; 3]), Err(EngineError::NoForward)));
    let o = m.forward(&ok, Mode::Train).unwrap();
    assert!(matches!(
        m.backward(&o.logits[1..]),
        Err(EngineError::Length { .. })
    ));
    assert!(matches!(
        softmax_cross_entropy(&o.logits, &[0, 3], 3),
        Err(EngineError::Label {
            row: 1,
            label: 3,
            ..
        })
    ));
    assert!(matches!(
        m.backward(&[f32::INFINITY; 6]),
        Err(EngineError::NonFinite { .. })
    ));
    assert!(matches!(
        m.write_tensor("audio_net.conv1.weight", &[0.0; 3]),
        Err(EngineError::Length { .. })
    ));
    assert!(matches!(
        m.read_tensor("nope"),
        Err(EngineError::UnknownName(_))
    ));
    let zero = ModelConfig { classes: 0, ..cfg };
    assert!(matches!(
        AvModel::new(CpuBackend::<f32>::new(), zero, 0),
        Err(EngineError::Config(_))
    ));
}
