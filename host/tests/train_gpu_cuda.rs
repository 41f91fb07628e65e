//! The trainer's device step on a real GPU (feature `cuda`): the cases of
//! train_gpu_emulated.rs (train_gpu_common/cases.rs: queued OGM-GE steps against the CPU
//! steps, the log ring's order, a bad label's report, the whole loop with an exact resume),
//! with the same tolerances. Without a device each test prints why it skips;
//! `OGM_GPU_REQUIRED=1` turns that into a failure (the device check sets it).
#![cfg(feature = "cuda")]

mod train_common;

include!("gpu_backend/cuda.rs");
include!("gpu_backend/recorder.rs");

include!("train_gpu_common/cases.rs");
