//! `--init_weights`: a new run starts from a model file's weights (a run's checkpoint, or one
//! `ogm import` wrote) instead of the seeded initialisation. The file is loaded with every key,
//! shape and value checked, before any media is decoded, so a model of another shape stops the
//! run with the file named and nothing written; a resumed run takes its weights from its own
//! checkpoint and needs neither the file nor the flag.

mod train_common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ogm_core::Mode;
use ogm_host::config::TrainConfig;
use ogm_host::train::{train, TrainError};
use safetensors::SafeTensors;
use train_common::{config, dataset, final_model, opts};

fn tensor(model: &[u8], name: &str) -> Vec<u8> {
    let st = SafeTensors::deserialize(model).unwrap();
    st.tensor(name).unwrap().data().to_vec()
}

fn run(c: &TrainConfig, name: &str) -> Result<(), String> {
    train(c, &opts(name, false, 0), Arc::new(AtomicBool::new(false)))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

const CONV: &str = "audio_net.layer1.0.conv1.weight";

#[test]
fn a_run_starts_from_the_given_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    dataset(&root);
    let base = TrainConfig {
        epochs: 1,
        modulation: Mode::Normal,
        ..config(&root, &runs)
    };
    run(&base, "source").unwrap();
    let source_file = runs.join("source/checkpoints/best.safetensors");
    let source = std::fs::read(&source_file).unwrap();

    // A learning rate far below any weight's rounding step: the run's weights stay those it
    // started from, bit for bit, so they show where it started.
    let tiny = TrainConfig {
        learning_rate: 1e-30,
        random_seed: 3,
        modulation: Mode::OgmGe,
        ..base.clone()
    };
    run(&tiny, "fresh").unwrap();
    let from = TrainConfig {
        init_weights: Some(source_file.clone()),
        ..tiny.clone()
    };
    run(&from, "from").unwrap();
    let (fresh, started) = (final_model(&runs, "fresh"), final_model(&runs, "from"));
    assert_eq!(tensor(&started, CONV), tensor(&source, CONV));
    assert_ne!(tensor(&fresh, CONV), tensor(&source, CONV));
    let saved = TrainConfig::from_file(&runs.join("from/config.toml")).unwrap();
    assert_eq!(saved.init_weights.as_deref(), Some(source_file.as_path()));

    // Resuming takes the run's own checkpoint: the starting file may be gone ...
    let longer = TrainConfig {
        init_weights: Some(source_file.clone()),
        ..base.clone()
    };
    let stopped = train(
        &longer,
        &opts("resumed", false, 1),
        Arc::new(AtomicBool::new(false)),
    );
    assert!(
        matches!(stopped, Err(TrainError::Interrupted { step: 1 })),
        "{stopped:?}"
    );
    let moved = tmp.path().join("moved.safetensors");
    std::fs::rename(&source_file, &moved).unwrap();
    // ... and the flag may be left out: the saved config keeps the file the run started from.
    train(
        &base,
        &opts("resumed", true, 0),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let saved = TrainConfig::from_file(&runs.join("resumed/config.toml")).unwrap();
    assert_eq!(saved.init_weights.as_deref(), Some(source_file.as_path()));

    // A missing file, or a model of another shape (three classes, not six; another
    // fusion head), stops a new run before anything is written.
    let e = run(&from, "missing").unwrap_err();
    assert!(
        e.contains("best.safetensors") && e.contains("no such file"),
        "{e}"
    );
    assert_not_written(&runs.join("missing"));
    let other_fusion = TrainConfig {
        init_weights: Some(moved.clone()),
        fusion_method: ogm_host::config::Fusion::Sum,
        ..base.clone()
    };
    let e = run(&other_fusion, "sum").unwrap_err();
    assert!(e.contains("moved.safetensors"), "{e}");
    assert_not_written(&runs.join("sum"));
    let other_classes = TrainConfig {
        init_weights: Some(moved.clone()),
        dataset: "Three".into(),
        classes: vec!["NEU".into(), "HAP".into(), "SAD".into()],
        ..base.clone()
    };
    let e = run(&other_classes, "three").unwrap_err();
    assert!(e.contains("moved.safetensors"), "{e}");
    assert_not_written(&runs.join("three"));
}

fn assert_not_written(run_dir: &Path) {
    assert!(
        !run_dir.join("config.toml").exists() && !run_dir.join("checkpoints").exists(),
        "{} was written",
        run_dir.display()
    );
}
