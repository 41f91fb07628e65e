//! Checkpoints: a safetensors round trip, the Rust-written checkpoint that PyTorch loads
//! (`scripts/torch_engine_fixtures.py --verify-rust-checkpoint`), and clear errors for
//! truncated, incomplete or malformed files (which leave the model untouched).

mod engine_common;

use std::collections::HashMap;
use std::path::PathBuf;

use engine_common::fixture_dir;
use ogm_host::engine::checkpoint::{load, load_bytes, save, to_bytes};
use ogm_host::engine::{AvModel, CpuBackend, EngineError, FusionKind, Input, Mode, ModelConfig};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

type Model = AvModel<CpuBackend<f32>>;

fn model(seed: u64, fusion: FusionKind) -> Model {
    AvModel::new(
        CpuBackend::new(),
        ModelConfig::small(3, fusion).with_frames(2),
        seed,
    )
    .unwrap()
}

/// Deterministic inputs of the fixture shapes: batch 2, audio 33x25, visual 2 frames 32x32.
fn inputs() -> (Vec<f32>, Vec<f32>) {
    let mut r = engine_common::Rng(99);
    let a = r.vec(2 * 33 * 25).iter().map(|&v| v as f32).collect();
    let v = r
        .vec(2 * 3 * 2 * 32 * 32)
        .iter()
        .map(|&v| v as f32)
        .collect();
    (a, v)
}

fn input<'a>(a: &'a [f32], v: &'a [f32]) -> Input<'a, f32> {
    Input {
        batch: 2,
        audio: a,
        audio_hw: (33, 25),
        visual: v,
        visual_hw: (32, 32),
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ogm-engine-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A trained-looking model: one training forward moves the running statistics and counters.
fn warmed(seed: u64, fusion: FusionKind) -> Model {
    let mut m = model(seed, fusion);
    let (a, v) = inputs();
    m.forward(&input(&a, &v), Mode::Train).unwrap();
    m
}

#[test]
fn round_trip_restores_everything() {
    for fusion in [
        FusionKind::Sum,
        FusionKind::Concat,
        FusionKind::Film,
        FusionKind::Gated,
    ] {
        let a_model = warmed(1, fusion);
        let path = tmp(&format!("rt_{}.safetensors", fusion.name()));
        save(&a_model, &path).unwrap();
        let mut b_model = model(2, fusion);
        assert_ne!(to_bytes(&a_model).unwrap(), to_bytes(&b_model).unwrap());
        load(&mut b_model, &path).unwrap();
        assert_eq!(to_bytes(&a_model).unwrap(), to_bytes(&b_model).unwrap());
        assert_eq!(a_model.batch_counters(), b_model.batch_counters());
        let (a, v) = inputs();
        let mut a_model = a_model;
        let oa = a_model.forward(&input(&a, &v), Mode::Eval).unwrap();
        let ob = b_model.forward(&input(&a, &v), Mode::Eval).unwrap();
        assert_eq!(oa, ob);
    }
}

/// The checkpoint PyTorch loaded: regenerate with `OGM_ENGINE_REGEN=1` and verify with
/// `scripts/torch_engine_fixtures.py --verify-rust-checkpoint`. The test fails if the writer
/// no longer produces the verified bytes (a change of kernel rounding moves the running
/// statistics of the warm-up pass too: regenerate and verify again then).
#[test]
fn rust_checkpoint_matches_the_one_pytorch_verified() {
    let mut m = warmed(3, FusionKind::Gated);
    let bytes = to_bytes(&m).unwrap();
    let (a, v) = inputs();
    let out = m.forward(&input(&a, &v), Mode::Eval).unwrap();
    let ck = fixture_dir().join("rust_checkpoint.safetensors");
    let io = fixture_dir().join("rust_checkpoint_io.safetensors");
    if std::env::var_os("OGM_ENGINE_REGEN").is_some() {
        std::fs::write(&ck, &bytes).unwrap();
        let f32s = |x: &[f32]| x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        let (ab, vb, lb) = (f32s(&a), f32s(&v), f32s(&out.logits));
        let fusion = 3i64.to_le_bytes();
        let views = vec![
            (
                "audio",
                TensorView::new(Dtype::F32, vec![2, 1, 33, 25], &ab).unwrap(),
            ),
            (
                "visual",
                TensorView::new(Dtype::F32, vec![2, 3, 2, 32, 32], &vb).unwrap(),
            ),
            (
                "logits",
                TensorView::new(Dtype::F32, vec![2, 3], &lb).unwrap(),
            ),
            (
                "fusion",
                TensorView::new(Dtype::I64, vec![], &fusion).unwrap(),
            ),
        ];
        std::fs::write(&io, safetensors::serialize(views, &None).unwrap()).unwrap();
    }
    let committed = std::fs::read(&ck).expect("committed rust_checkpoint.safetensors");
    assert!(committed == bytes, "the checkpoint writer's output changed");
    let rec = std::fs::read(&io).unwrap();
    let st = SafeTensors::deserialize(&rec).unwrap();
    let logits: Vec<f32> = st
        .tensor("logits")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(logits, out.logits);
}

/// Name to (dtype, shape, bytes): an editable copy of a safetensors file.
type Entries = HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// Re-serialises the tensors of `bytes` after `edit` (which may drop or change entries).
fn rewrite(bytes: &[u8], edit: impl Fn(&mut Entries)) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut map: Entries = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut map);
    let views: Vec<(String, TensorView<'_>)> = map
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, &None).unwrap()
}

fn expect_err(bytes: &[u8]) -> EngineError {
    let mut m = model(5, FusionKind::Concat);
    let before = to_bytes(&m).unwrap();
    let err = load_bytes(&mut m, bytes, &PathBuf::from("bad.safetensors")).unwrap_err();
    assert_eq!(
        before,
        to_bytes(&m).unwrap(),
        "a failed load changed the model"
    );
    err
}

#[test]
fn bad_checkpoints_give_typed_errors() {
    let good = to_bytes(&warmed(4, FusionKind::Concat)).unwrap();
    let key = "audio_net.layer1.0.conv1.weight";

    let e = expect_err(&good[..good.len() / 2]);
    assert!(matches!(e, EngineError::Safetensors { .. }), "{e}");
    let e = expect_err(&good[..5]);
    assert!(matches!(e, EngineError::Safetensors { .. }), "{e}");

    let e = expect_err(&rewrite(&good, |m| {
        m.remove(key);
    }));
    assert!(
        matches!(&e, EngineError::MissingTensor { name, .. } if name == key),
        "{e}"
    );

    let e = expect_err(&rewrite(&good, |m| {
        let t = m.get_mut(key).unwrap();
        t.1 = vec![t.1.iter().product()];
    }));
    assert!(
        matches!(&e, EngineError::BadTensor { name, .. } if name == key),
        "{e}"
    );

    let e = expect_err(&rewrite(&good, |m| {
        let t = m.get_mut(key).unwrap();
        t.2[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    }));
    assert!(
        matches!(&e, EngineError::BadTensor { name, .. } if name == key),
        "{e}"
    );

    let e = expect_err(&rewrite(&good, |m| {
        let t = m.get_mut(key).unwrap();
        t.0 = Dtype::I32;
    }));
    assert!(
        matches!(&e, EngineError::BadTensor { name, .. } if name == key),
        "{e}"
    );

    let e = expect_err(&rewrite(&good, |m| {
        m.insert("extra.weight".into(), (Dtype::F32, vec![1], vec![0; 4]));
    }));
    assert!(
        matches!(&e, EngineError::BadTensor { name, .. } if name == "extra.weight"),
        "{e}"
    );

    let counter = "visual_net.bn1.num_batches_tracked";
    let e = expect_err(&rewrite(&good, |m| {
        m.get_mut(counter).unwrap().0 = Dtype::F64;
    }));
    assert!(
        matches!(&e, EngineError::BadTensor { name, .. } if name == counter),
        "{e}"
    );

    // A checkpoint of another head does not load.
    let sum = to_bytes(&model(6, FusionKind::Sum)).unwrap();
    let e = expect_err(&sum);
    assert!(matches!(e, EngineError::MissingTensor { .. }), "{e}");

    let mut m = model(7, FusionKind::Concat);
    let e = load(&mut m, &tmp("does-not-exist.safetensors")).unwrap_err();
    assert!(matches!(e, EngineError::Io { .. }), "{e}");
}
