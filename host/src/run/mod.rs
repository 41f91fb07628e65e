//! A training run's folder: metrics, summary, checkpoints, plots, progress display.
//!
//! Layout of `<ckpt_path>/<run name>/`:
//! `config.toml`, `metrics.jsonl`, `summary.json`, `checkpoints/last.safetensors` (+ `.json`
//! sidecar), `checkpoints/best.safetensors` (+ sidecar), `plots/*.png`.

pub mod fsio;
pub mod metrics;
pub mod plots;
pub mod progress;
