//! Shared setup of the trainer tests: a tiny synthetic dataset and a small, fast configuration.

use std::path::{Path, PathBuf};

use ogm_core::Mode;
use ogm_host::config::{ModelSize, TrainConfig};
use ogm_host::data::{write_dataset, SynthConfig};
use ogm_host::train::RunOptions;

pub fn dataset(dir: &Path) {
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

pub fn config(root: &Path, runs: &Path) -> TrainConfig {
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

#[allow(dead_code)] // not every test binary that includes this module runs the trainer in-process
pub fn opts(name: &str, resume: bool, stop_after: u64) -> RunOptions {
    RunOptions {
        run_name: Some(name.into()),
        resume,
        quiet: true,
        stop_after_steps: stop_after,
    }
}

/// The model file of run `name`'s last checkpoint, as bytes.
#[allow(dead_code)] // not every test binary that includes this module compares models
pub fn final_model(runs: &Path, name: &str) -> Vec<u8> {
    let dir = runs.join(name).join("checkpoints");
    let s = ogm_host::train::checkpoint::read_sidecar(&dir)
        .unwrap()
        .expect("a checkpoint");
    std::fs::read(dir.join(s.model_file)).unwrap()
}

/// Every file under `dir`, in any order (none when `dir` does not exist).
#[allow(dead_code)] // not every test binary that includes this module walks run folders
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
