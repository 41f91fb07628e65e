//! A crash while a checkpoint is being written leaves the previous checkpoint usable. (Its own
//! test binary: the crash is simulated through an environment variable, which is process-wide.)

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ogm_core::Mode;
use ogm_host::config::{ModelSize, TrainConfig};
use ogm_host::data::{write_dataset, SynthConfig};
use ogm_host::train::{checkpoint, train, RunOptions};

fn dataset(dir: &Path) {
    let c = SynthConfig {
        train_per_class: 5,
        test_per_class: 2,
        audio_seconds: 0.5,
        width: 32,
        height: 32,
        ..SynthConfig::default()
    };
    write_dataset(&c, dir).unwrap();
}

fn config(root: &Path, runs: &Path) -> TrainConfig {
    TrainConfig {
        modulation: Mode::OgmGe,
        batch_size: 8,
        epochs: 2,
        learning_rate: 1e-2,
        train_csv: root.join("train.csv"),
        test_csv: root.join("test.csv"),
        audio_path: root.join("AudioWAV"),
        visual_path: root.to_path_buf(),
        ckpt_path: runs.to_path_buf(),
        model: ModelSize {
            width: 4,
            blocks: 1,
        },
        image_size: 32,
        audio_seconds: 0.5,
        loader_workers: 2,
        ..TrainConfig::default()
    }
}

fn opts(name: &str, resume: bool, stop_after: u64) -> RunOptions {
    RunOptions {
        run_name: Some(name.into()),
        resume,
        quiet: true,
        stop_after_steps: stop_after,
    }
}

#[test]
fn crash_while_checkpointing_keeps_the_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    dataset(&root);
    let mut c = config(&root, &runs);
    c.checkpoint_every_steps = 2;
    let stop = Arc::new(AtomicBool::new(false));
    // Steps 1-2 checkpoint normally; the run is stopped at step 3 and its checkpoint's
    // sidecar write "crashes" between the temporary file and the rename.
    train(&c, &opts("crash", false, 2), stop.clone()).unwrap_err();
    let dir = runs.join("crash/checkpoints");
    let before = checkpoint::read_sidecar(&dir).unwrap().unwrap();
    assert_eq!(before.step, 2);
    std::env::set_var("OGM_FAIL_WRITE", "last.json");
    let e = train(&c, &opts("crash", true, 3), stop.clone()).unwrap_err();
    std::env::remove_var("OGM_FAIL_WRITE");
    assert!(e.to_string().contains("last.json"), "{e}");
    // The sidecar still names the step-2 files, which are complete and load.
    let after = checkpoint::read_sidecar(&dir).unwrap().unwrap();
    assert_eq!(after, before);
    assert!(dir.join(&after.model_file).exists());
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    // And the run resumes from it to the end.
    let s = train(&c, &opts("crash", true, 0), stop).unwrap();
    assert_eq!(s.epochs, 2);
}
