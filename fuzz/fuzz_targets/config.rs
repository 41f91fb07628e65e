//! `ogm_host::config::TrainConfig` (the `--config` file and every run's `config.toml`):
//! arbitrary TOML text, and the default config with fuzzed values under its keys (numbers at
//! the edges of their types, strings, the enum names, nested tables), then validation, the
//! memory bound and the settings derived for the engine and the data pipeline.
//!
//! Asserts: no panic (integer overflow included: the targets build with overflow checks);
//! a config that validates and fits in memory derives a valid data pipeline, and serialises
//! to TOML that reads back as the same config (a run folder's `config.toml` reopens).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_core_fuzz::F64;
use ogm_host::config::TrainConfig;
use ogm_host::data::dataset::Pipeline;
use ogm_host::train::footprint::Footprint;
use ogm_host::train::{dataset_config, model_config};
use serde::Deserialize;

/// Every key of the file, `model.*` as a nested table.
const KEYS: [&str; 38] = [
    "dataset",
    "classes",
    "modulation",
    "fusion_method",
    "alpha",
    "modulation_starts",
    "modulation_ends",
    "batch_size",
    "epochs",
    "optimizer",
    "learning_rate",
    "lr_decay_step",
    "lr_decay_ratio",
    "fps",
    "use_video_frames",
    "audio_frontend",
    "audio_path",
    "visual_path",
    "test_audio_path",
    "test_visual_path",
    "frame_dir_suffix",
    "train_csv",
    "test_csv",
    "random_seed",
    "ckpt_path",
    "device",
    "precision",
    "conv",
    "threads",
    "strict",
    "modulate_all_encoder_weights",
    "model.width",
    "model.blocks",
    "image_size",
    "audio_seconds",
    "loader_workers",
    "checkpoint_every_steps",
    "init_weights",
];

/// Values the enums and strings take, besides arbitrary strings.
const WORDS: [&str; 22] = [
    "Normal", "OGM", "OGM_GE", "sum", "concat", "film", "gated", "SGD", "Adam", "cremad",
    "vggsound", "cpu", "cuda", "fp32", "tf32", "bf16", "im2col", "implicit", "CREMAD", "VGGSound",
    ".mp4", "",
];

#[derive(Arbitrary, Debug)]
enum Val {
    Int(i64),
    Small(u8),
    Float(F64),
    Bool(bool),
    Word(u8),
    Str(String),
    Strs(Vec<String>),
}

impl Val {
    fn toml(&self) -> toml::Value {
        match self {
            Val::Int(i) => toml::Value::Integer(*i),
            Val::Small(i) => toml::Value::Integer(*i as i64),
            Val::Float(f) => toml::Value::Float(f.get()),
            Val::Bool(b) => toml::Value::Boolean(*b),
            Val::Word(i) => toml::Value::String(WORDS[*i as usize % WORDS.len()].into()),
            Val::Str(s) => toml::Value::String(s.clone()),
            Val::Strs(v) => {
                toml::Value::Array(v.iter().cloned().map(toml::Value::String).collect())
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any text as the file.
    Text(String),
    /// The default config with values replaced.
    Edits(Vec<(u8, Val)>),
}

fn parse(input: Input) -> Option<TrainConfig> {
    match input {
        Input::Text(text) => toml::from_str(&text).ok(),
        Input::Edits(edits) => {
            let mut table = toml::Table::try_from(TrainConfig::default()).expect("the default");
            for (key, val) in edits {
                let key = KEYS[key as usize % KEYS.len()];
                match key.split_once('.') {
                    Some((outer, inner)) => {
                        let t = table
                            .entry(outer)
                            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                        if let toml::Value::Table(t) = t {
                            t.insert(inner.into(), val.toml());
                        }
                    }
                    None => {
                        table.insert(key.into(), val.toml());
                    }
                }
            }
            TrainConfig::deserialize(table).ok()
        }
    }
}

fuzz_target!(|input: Input| {
    let Some(config) = parse(input) else {
        return;
    };
    // The schedule and the loader threads are computed for any config that parses.
    let _ = config.schedule();
    let _ = config.loader_threads_with(16);
    if config.validate().is_err() {
        return;
    }
    let Ok(footprint) = Footprint::of(&config, config.batch_size) else {
        return;
    };
    if footprint.check(24 << 30).is_err() {
        return;
    }
    let classes = config.class_names().expect("validated").len();
    let _ = model_config(&config, classes);
    let data = dataset_config(&config).expect("a validated config derives its data settings");
    data.validate()
        .expect("a validated config derives valid data settings");
    Pipeline::new(&data).expect("a validated config plans its pipeline");
    let text = toml::to_string(&config).expect("a config serialises");
    let back: TrainConfig = toml::from_str(&text).expect("config.toml reads back");
    assert!(
        back == config,
        "config.toml reads back differently:\n{text}"
    );
});
