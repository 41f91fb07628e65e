//! Settings that no machine can honour, and run names that leave `--ckpt_path`, are refused
//! with an error that names the flag, before any media is decoded and before the run folder
//! is written (they used to abort the process on an allocation failure, stall in thread
//! creation, or write outside `--ckpt_path`).

mod train_common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ogm_host::config::TrainConfig;
use ogm_host::train::{train, TrainError};
use train_common::{config, dataset, opts};

/// A name, a change to the test configuration, and the flag its error must name.
type Case = (&'static str, fn(&mut TrainConfig), &'static str);

fn refused(c: &TrainConfig, run_name: &str) -> String {
    match train(
        c,
        &opts(run_name, false, 0),
        Arc::new(AtomicBool::new(false)),
    ) {
        Err(e @ TrainError::Config(_)) => e.to_string(),
        other => panic!("{run_name}: expected a configuration error, got {other:?}"),
    }
}

#[test]
fn absurd_sizes_are_refused_naming_the_flag_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    dataset(&root);
    let cases: [Case; 5] = [
        ("audio", |c| c.audio_seconds = 1e12, "--audio_seconds"),
        ("width", |c| c.model.width = 100_000, "--model_width"),
        ("image", |c| c.image_size = 1_000_000, "--image_size"),
        ("threads", |c| c.threads = 100_000, "--threads"),
        ("workers", |c| c.loader_workers = 100_000, "loader_workers"),
    ];
    for (name, set, flag) in cases {
        let mut c = config(&root, &runs);
        set(&mut c);
        let e = refused(&c, name);
        assert!(e.contains(flag), "{name}: {e}");
        assert!(
            !runs.join(name).exists(),
            "{name}: the run folder was written"
        );
    }
}

#[test]
fn a_run_name_must_be_one_folder_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    dataset(&root);
    let c = config(&root, &runs);
    for name in ["../escape", "..", ".", "", "a/b", "/abs", "a\\b"] {
        let e = refused(&c, name);
        assert!(e.contains("--run_name"), "{name:?}: {e}");
    }
    assert!(!tmp.path().join("escape").exists());
    assert!(!runs.exists());
}
