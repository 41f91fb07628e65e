//! The GPU backend against the CPU engine on a real GPU (feature `cuda`): the same cases as
//! engine_gpu_emulated.rs (engine_gpu_common/cases.rs: every operation, the split-K weight gradient,
//! a whole training step for every head), with the same tolerances. Without a device each test
//! prints why it skips; `OGM_GPU_REQUIRED=1` turns that into a failure (the device check sets
//! it).
#![cfg(feature = "cuda")]

use std::sync::Arc;

use ogm_host::engine::backend::{
    AdamStep, BnAct, BnTrain, ConvGeom, LinearSpec, PoolGeom, Region, SgdStep, BN_SAVED,
};
use ogm_host::engine::gpu::GpuBackend;
use ogm_host::engine::{
    softmax_cross_entropy, AvModel, Backend, CpuBackend, FusionKind, Input, Mode, ModelConfig, Sgd,
};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

include!("gpu_backend/cuda.rs");
include!("gpu_backend/recorder.rs");

include!("engine_gpu_common/cases.rs");

/// A configuration whose data paths (under `dir`) do not exist: reading them would be a data
/// error, so a test that gets another error knows nothing was read.
fn config_without_data(dir: &std::path::Path) -> ogm_host::config::TrainConfig {
    let missing = dir.join("no-such-dataset");
    ogm_host::config::TrainConfig {
        train_csv: missing.join("train.csv"),
        test_csv: missing.join("test.csv"),
        audio_path: missing.join("AudioWAV"),
        visual_path: missing.clone(),
        ckpt_path: dir.join("ckpt"),
        ..Default::default()
    }
}

/// `ogm train --device cuda` on a machine without a GPU stops with the GPU error before it
/// reads any data (the data paths here do not exist: reading them would be a data error).
#[test]
fn training_without_a_gpu_stops_before_reading_data() {
    use std::sync::atomic::AtomicBool;

    use ogm_host::config::{Device, TrainConfig};
    use ogm_host::train::{train, RunOptions, TrainError};

    if gpu().is_some() {
        eprintln!("skipping: this machine has a GPU");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        device: Device::Cuda,
        ..config_without_data(dir.path())
    };
    let err = train(
        &config,
        &RunOptions::default(),
        Arc::new(AtomicBool::new(false)),
    )
    .expect_err("no GPU: training must stop");
    match err {
        TrainError::Device(msg) => assert!(msg.contains("no GPU"), "{msg}"),
        other => panic!("expected the GPU error first, got: {other}"),
    }
}

/// `ogm eval --device cuda` on a machine without a GPU stops with the GPU error before it
/// reads the checkpoint or any data (an empty checkpoint file, data paths that do not exist).
#[test]
fn evaluation_without_a_gpu_stops_before_reading_data() {
    use ogm_host::config::Device;
    use ogm_host::train::eval::{evaluate_checkpoint, EvalRequest};
    use ogm_host::train::TrainError;

    if gpu().is_some() {
        eprintln!("skipping: this machine has a GPU");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = config_without_data(dir.path());
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    std::fs::write(run.join("config.toml"), toml::to_string(&config).unwrap()).unwrap();
    let checkpoint = run.join("checkpoints/best.safetensors");
    std::fs::write(&checkpoint, b"").unwrap();
    let req = EvalRequest {
        checkpoint,
        test_csv: None,
        audio_path: None,
        visual_path: None,
        frame_dir_suffix: None,
        batch_size: 4,
        device: Device::Cuda,
    };
    match evaluate_checkpoint(&req).expect_err("no GPU: evaluation must stop") {
        TrainError::Device(msg) => assert!(msg.contains("no GPU"), "{msg}"),
        other => panic!("expected the GPU error first, got: {other}"),
    }
}
