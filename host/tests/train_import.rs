//! `ogm import` on checkpoints written by PyTorch itself (`scripts/torch_engine_fixtures.py
//! --official-pth`, torch 2.15): the official `main.py`'s saved_dict with its model in
//! `nn.DataParallel` after one SGD step, and a bare state_dict. Every imported tensor must
//! equal the one `safetensors.torch` wrote from the same model (values and dtypes), the run
//! folder must evaluate exactly as that state_dict does, and damaged files must give errors
//! naming the file, never a panic, and write nothing.

// Only the synthetic dataset of the shared helpers is used here.
#[allow(dead_code)]
mod train_common;

use std::path::{Path, PathBuf};

use clap::Parser;
use ogm_core::Mode;
use ogm_host::cli::{Cli, Command};
use ogm_host::config::{AudioFrontend, TrainConfig};
use ogm_host::config::{Device, Fusion};
use ogm_host::engine::CpuBackend;
use ogm_host::train::eval::{
    evaluate_checkpoint, evaluate_checkpoint_on, request_config, EvalRequest,
};
use ogm_host::train::import::{import_official, Imported};
use ogm_host::train::TrainError;
use safetensors::SafeTensors;

/// A CREMA-D model, as `ogm import --pth <pth> --out <out>` reads it.
fn import(pth: &Path, out: &Path) -> Result<Imported, TrainError> {
    import_official(pth, out, &TrainConfig::default())
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/engine")
        .join(name)
}

/// Every tensor of `got` equals the one of the same name in `want`, bytes and dtype, and
/// neither has a tensor the other lacks.
fn assert_same_tensors(got: &Path, want: &Path) {
    let (g, w) = (std::fs::read(got).unwrap(), std::fs::read(want).unwrap());
    let (g, w) = (
        SafeTensors::deserialize(&g).unwrap(),
        SafeTensors::deserialize(&w).unwrap(),
    );
    let mut names = w.names();
    names.sort();
    let mut got_names = g.names();
    got_names.sort();
    assert_eq!(got_names, names, "tensor names");
    for n in names {
        let (a, b) = (g.tensor(n).unwrap(), w.tensor(n).unwrap());
        assert_eq!(a.dtype(), b.dtype(), "{n}: dtype");
        assert_eq!(a.shape(), b.shape(), "{n}: shape");
        assert!(a.data() == b.data(), "{n}: values differ");
    }
}

#[test]
fn official_checkpoint_imports_with_its_settings_and_exact_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let i = import(&fixture("official_concat.pth"), &out).unwrap();
    let c = &i.config;
    assert_eq!(c.fusion_method, Fusion::Concat);
    assert_eq!((c.model.width, c.model.blocks), (2, 1));
    assert_eq!((c.modulation, c.alpha), (Mode::OgmGe, 0.8));
    assert_eq!((i.saved_epoch, i.saved_acc), (Some(3), Some(0.5)));
    assert_eq!(
        i.checkpoint,
        out.join("checkpoints/official_concat.safetensors")
    );
    assert!(out.join("config.toml").is_file());
    assert_same_tensors(
        &i.checkpoint,
        &fixture("official_concat_expected.safetensors"),
    );
}

#[test]
fn bare_state_dict_imports_without_a_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let i = import(&fixture("official_gated_state_dict.pth"), &out).unwrap();
    assert_eq!(i.config.fusion_method, Fusion::Gated);
    assert_eq!(
        i.config.modulation,
        Mode::OgmGe,
        "the default, nothing recorded"
    );
    assert_eq!((i.saved_epoch, i.saved_acc), (None, None));
    assert_same_tensors(
        &i.checkpoint,
        &fixture("official_gated_state_dict_expected.safetensors"),
    );
}

/// `ogm eval` of the imported folder gives the figures of the PyTorch-written state_dict
/// evaluated under the same settings, bit for bit.
#[test]
fn imported_run_folder_evaluates_as_the_state_dict() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    train_common::dataset(&data);
    let out = tmp.path().join("run");
    let i = import(&fixture("official_concat.pth"), &out).unwrap();
    let req = |checkpoint: PathBuf| EvalRequest {
        checkpoint,
        test_csv: Some(data.join("test.csv")),
        audio_path: Some(data.join("AudioWAV")),
        visual_path: Some(data.clone()),
        frame_dir_suffix: None,
        batch_size: 5,
        device: Device::Cpu,
    };
    let imported = evaluate_checkpoint(&req(i.checkpoint.clone())).unwrap();
    let config = request_config(&req(i.checkpoint.clone())).unwrap();
    let direct = evaluate_checkpoint_on(
        &req(fixture("official_concat_expected.safetensors")),
        &config,
        CpuBackend::<f32>::new(),
    )
    .unwrap();
    assert_eq!(imported, direct);
    assert_eq!(imported.result.samples, 12);
    assert!(imported.result.loss.is_finite());
}

/// The refusals: each names the file and leaves no run folder behind.
#[test]
fn damaged_or_foreign_files_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("official_concat.pth")).unwrap();
    let check = |label: &str, bytes: &[u8], expect: &str| {
        let pth = tmp.path().join(format!("{label}.pth"));
        std::fs::write(&pth, bytes).unwrap();
        let out = tmp.path().join(format!("out-{label}"));
        let err = import(&pth, &out).expect_err(label).to_string();
        assert!(err.contains(&pth.display().to_string()), "{label}: {err}");
        assert!(err.contains(expect), "{label}: `{err}` lacks `{expect}`");
        assert!(!out.join("config.toml").exists(), "{label}: wrote a config");
    };
    check("empty", b"", "zip");
    check("text", b"not a checkpoint at all", "zip");
    check("legacy", &[0x80, 0x02, 0x8a, 0x0a], "legacy format");
    // Cut anywhere: the zip's directory is at the end, so every cut loses it.
    for cut in [10, 1000, good.len() / 2, good.len() - 30] {
        check(&format!("cut{cut}"), &good[..cut], "zip");
    }
    // A byte of the pickle flipped in place (same length in the directory): the zip's CRC
    // check must catch it.
    let (name, pkl) = (
        "official_concat/data.pkl",
        find(&good, b"official_concat/data.pkl"),
    );
    assert!(pkl.is_some(), "{name} in the fixture");
    let mut flipped = good.clone();
    let at = pkl.unwrap() + name.len() + 200;
    flipped[at] ^= 0xff;
    let pth = tmp.path().join("flipped.pth");
    std::fs::write(&pth, &flipped).unwrap();
    let err = import(&pth, &tmp.path().join("out-flipped")).expect_err("flipped");
    assert!(matches!(err, TrainError::Checkpoint { .. }), "{err}");

    // A missing file and an existing run.
    let err = import(&tmp.path().join("nope.pth"), &tmp.path().join("o"));
    assert!(err.unwrap_err().to_string().contains("nope.pth"));
    let out = tmp.path().join("twice");
    import(&fixture("official_concat.pth"), &out).unwrap();
    let again = import(&fixture("official_concat.pth"), &out).unwrap_err();
    assert!(matches!(again, TrainError::RunExists { .. }), "{again}");
}

/// A class list names the model's outputs: recorded in the run's config when its length is
/// the model's, refused (naming both counts, writing nothing) when not; a dataset without
/// built-in classes asks for the list.
#[test]
fn class_lists_name_the_model_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let pth = fixture("official_concat.pth");
    let names: Vec<String> = ["calm", "happy", "sad", "fearful", "disgust", "angry"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let base = |dataset: &str, classes: &[String]| TrainConfig {
        dataset: dataset.into(),
        classes: classes.to_vec(),
        ..TrainConfig::default()
    };
    let out = tmp.path().join("named");
    let i = import_official(&pth, &out, &base("MyCremad", &names)).unwrap();
    let saved = TrainConfig::from_file(&out.join("config.toml")).unwrap();
    assert_eq!(saved.dataset, "MyCremad");
    assert_eq!(saved.class_names().unwrap(), names);
    assert_eq!(saved, i.config);

    let out = tmp.path().join("three");
    let err = import_official(&pth, &out, &base("MyCremad", &names[..3]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("6 classes, but 3 are named"), "{err}");
    assert!(!out.exists(), "wrote {}", out.display());

    let err = import_official(&pth, &out, &base("VGGSound", &[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--classes_file"), "{err}");
    let twice = vec!["a".to_string(), "a".to_string()];
    let err = import_official(&pth, &out, &base("X", &twice))
        .unwrap_err()
        .to_string();
    assert!(err.contains("listed twice"), "{err}");
    assert!(!out.exists(), "wrote {}", out.display());
}

/// What a `.pth` does not record comes from the flags: `ogm import --audio_frontend vggsound
/// --use_video_frames 3 --frame_dir_suffix .mp4` writes a run folder that `ogm eval` reads with VGGSound's pipeline.
#[test]
fn unrecorded_settings_come_from_the_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let pth = fixture("official_concat.pth");
    let out = tmp.path().join("vgg");
    let args = [
        "ogm",
        "import",
        "--pth",
        pth.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let parse = |extra: &[&str]| {
        let argv: Vec<&str> = args.iter().chain(extra).copied().collect();
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Import(i) => i.base_config().unwrap(),
            _ => unreachable!("an import command"),
        }
    };
    assert_eq!(parse(&[]), TrainConfig::default());
    let base = parse(&[
        "--audio_frontend",
        "vggsound",
        "--use_video_frames",
        "3",
        "--frame_dir_suffix",
        ".mp4",
    ]);
    assert_eq!(base.audio_seconds, 5.0);
    import_official(&pth, &out, &base).unwrap();
    let saved = TrainConfig::from_file(&out.join("config.toml")).unwrap();
    assert_eq!(
        (
            saved.audio_frontend,
            saved.audio_seconds,
            saved.frames_per_clip(),
            saved.frame_dir_suffix.as_str()
        ),
        (AudioFrontend::Vggsound, 5.0, 3, ".mp4")
    );
    assert_eq!((saved.fusion_method, saved.alpha), (Fusion::Concat, 0.8));
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
