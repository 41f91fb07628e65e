//! `ogm demo`: writes a small synthetic audio-visual dataset whose audio is learnt much faster
//! than its frames, trains `Normal` and `OGM_GE` on it on the CPU with the same seed, and
//! compares them (table and plots). The effect to look for: under `Normal` the audio is learnt
//! within a few epochs, the fused loss vanishes and the visual branch stops learning; OGM-GE
//! slows the dominant audio encoder, so the visual branch keeps learning (higher `acc_v`) and
//! the ratio `r_v = s_v / s_a` moves towards 1. The frames are faint but clean (grey clutter,
//! see `data::synth`): trained alone, the visual branch reaches a high accuracy, so what
//! `Normal` leaves unlearnt is starvation, not missing information.
//! `host/tests/train_effect.rs` checks this configuration on three seeds.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ogm_core::Mode;

use crate::cli::DemoArgs;
use crate::config::{ModelSize, TrainConfig};
use crate::data::{write_dataset, SynthConfig};
use crate::run::metrics::{read_records, Record};
use crate::run::plots::{line_chart, Series};

use super::{train, RunOptions, Summary, TrainError};

/// One row of the demo's comparison.
#[derive(Debug, Clone)]
pub struct DemoRow {
    /// The modulation mode.
    pub mode: Mode,
    /// The run's summary.
    pub summary: Summary,
    /// Mean `r_v` over the last epoch's steps (`None` if never defined).
    pub last_epoch_ratio: Option<f64>,
    /// The run folder.
    pub run_dir: PathBuf,
}

/// Epochs of the demo (`ogm demo --epochs` defaults to it), also those of the effect test.
pub const DEMO_EPOCHS: u32 = 10;

/// The demo's dataset: audio informative (0.8), frames faint but clean (0.15, grey clutter);
/// 40 training and 30 test clips per class (8 and 4 with `quick`).
pub fn demo_data(quick: bool, seed: u64) -> SynthConfig {
    SynthConfig {
        train_per_class: if quick { 8 } else { 40 },
        test_per_class: if quick { 4 } else { 30 },
        audio_signal: 0.8,
        visual_signal: 0.15,
        clutter_colour: 0.0,
        audio_seconds: 1.0,
        width: 40,
        height: 40,
        seed,
        ..SynthConfig::default()
    }
}

/// The demo's training configuration for `mode` (everything else equal between modes): data
/// in the single-folder layout under `data`, run folders under `runs`.
pub fn demo_config(data: &Path, runs: &Path, mode: Mode, epochs: u32, seed: u64) -> TrainConfig {
    TrainConfig {
        modulation: mode,
        alpha: 1.0,
        modulation_starts: 0,
        modulation_ends: epochs,
        batch_size: 16,
        epochs,
        learning_rate: 1e-2,
        lr_decay_step: 70,
        train_csv: data.join("train.csv"),
        test_csv: data.join("test.csv"),
        audio_path: data.join("AudioWAV"),
        visual_path: data.to_path_buf(),
        ckpt_path: runs.to_path_buf(),
        random_seed: seed,
        model: ModelSize {
            width: 8,
            blocks: 1,
        },
        image_size: 32,
        audio_seconds: 1.0,
        ..TrainConfig::default()
    }
}

fn mean_last_epoch_ratio(records: &[Record]) -> Option<f64> {
    let last_epoch = records.iter().rev().find_map(|r| match r {
        Record::Step(s) => Some(s.epoch),
        Record::Epoch(_) => None,
    })?;
    let v: Vec<f64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Step(s) if s.epoch == last_epoch => s.ratio_v,
            _ => None,
        })
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Runs the demo; prints the comparison and returns its rows (Normal first).
pub fn run(args: &DemoArgs, stop: Arc<AtomicBool>) -> Result<Vec<DemoRow>, TrainError> {
    let out = match &args.out {
        Some(p) => p.clone(),
        None => std::env::temp_dir().join(format!("ogm-demo-{}", std::process::id())),
    };
    let epochs = if args.quick { 2 } else { args.epochs };
    // An absolute, simplified folder, so that the paths printed at the end can be pasted.
    std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
    let out = std::fs::canonicalize(&out).map_err(|e| TrainError::io(&out, e))?;
    let root = out.join("data");
    if !root.join("train.csv").exists() {
        let s = write_dataset(&demo_data(args.quick, args.seed), &root)?;
        eprintln!(
            "demo: wrote a synthetic dataset to {} ({} train / {} test clips; audio learnt fast, frames faint but clean)",
            s.root.display(),
            s.train,
            s.test
        );
    }
    let mut rows = Vec::new();
    for mode in [Mode::Normal, Mode::OgmGe] {
        let config = demo_config(&root, &out.join("runs"), mode, epochs, args.seed);
        let run_name = format!("{}_seed{}", mode.as_str(), args.seed);
        let run_dir = config.ckpt_path.join(&run_name);
        if run_dir.exists() {
            std::fs::remove_dir_all(&run_dir).map_err(|e| TrainError::io(&run_dir, e))?;
        }
        eprintln!("demo: training {} for {epochs} epochs", mode.as_str());
        let summary = train(
            &config,
            &RunOptions {
                run_name: Some(run_name),
                resume: false,
                quiet: true,
                stop_after_steps: 0,
            },
            stop.clone(),
        )?;
        let metrics = run_dir.join("metrics.jsonl");
        let records = read_records(&metrics).map_err(|e| TrainError::io(&metrics, e))?;
        rows.push(DemoRow {
            mode,
            summary,
            last_epoch_ratio: mean_last_epoch_ratio(&records),
            run_dir,
        });
    }
    compare_plots(&out, &rows)?;
    println!("\n{}", table(&rows));
    println!("run folders (metrics.jsonl, summary.json, checkpoints, plots/):");
    for r in &rows {
        println!("  {}", r.run_dir.display());
    }
    println!(
        "comparison plots: {}",
        out.join("compare_acc_v.png").display()
    );
    Ok(rows)
}

/// The comparison table (markdown).
pub fn table(rows: &[DemoRow]) -> String {
    let mut s = String::from(
        "| mode | acc | acc_a | acc_v | mean r_v, last epoch | time (s) |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let e = r.summary.final_eval;
        let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
        s += &format!(
            "| {} | {} | {} | {} | {} | {:.1} |\n",
            r.mode.as_str(),
            f(e.map(|e| e.acc)),
            f(e.map(|e| e.acc_a)),
            f(e.map(|e| e.acc_v)),
            f(r.last_epoch_ratio),
            r.summary.wall_s
        );
    }
    s
}

fn compare_plots(out: &Path, rows: &[DemoRow]) -> Result<(), TrainError> {
    let mut acc_v: Vec<Series> = vec![];
    let mut ratio: Vec<Series> = vec![];
    for r in rows {
        let metrics = r.run_dir.join("metrics.jsonl");
        let records = read_records(&metrics).map_err(|e| TrainError::io(&metrics, e))?;
        let mut av = vec![];
        let mut rv = vec![];
        for rec in &records {
            match rec {
                Record::Epoch(e) => av.push((e.epoch as f64, e.acc_v)),
                Record::Step(s) => {
                    if let Some(x) = s.ratio_v {
                        rv.push((s.step as f64, x));
                    }
                }
            }
        }
        acc_v.push((r.mode.as_str().to_string(), av));
        ratio.push((r.mode.as_str().to_string(), rv));
    }
    line_chart(
        &out.join("compare_acc_v.png"),
        "Visual-only test accuracy (acc_v)",
        "epoch",
        "acc_v",
        &acc_v,
    )?;
    line_chart(
        &out.join("compare_ratio.png"),
        "Ratio r_v = s_v / s_a (1 = balanced)",
        "step",
        "r_v",
        &ratio,
    )?;
    Ok(())
}
