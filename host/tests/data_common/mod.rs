//! Shared helpers of the data tests: reading the committed fixtures of
//! `scripts/data_fixtures.py` (raw little-endian arrays described by `manifest.json`), and
//! writing small synthetic datasets (`data::synth`) into temporary directories.

#![allow(dead_code)] // each test crate uses a different subset

use std::path::PathBuf;

use ogm_host::data::synth::{write_dataset, SynthConfig};
use ogm_host::data::{DatasetConfig, ImageConfig, SpectrogramConfig};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// An empty directory named after `tag`, the process and a per-process counter.
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "ogm-data-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small synthetic dataset: 2 training and 1 test clip per class (12 and 6 clips), three
/// frames per clip, `audio_seconds` of audio and `width` x `height` frames.
pub fn small_synth(audio_seconds: f32, width: u32, height: u32) -> SynthConfig {
    SynthConfig {
        train_per_class: 2,
        test_per_class: 1,
        audio_seconds,
        width,
        height,
        frames_per_clip: 3,
        ..SynthConfig::default()
    }
}

/// A fresh temp directory (see [`TempDir::new`]) holding the dataset `synth` describes.
pub fn write_synth(tag: &str, synth: &SynthConfig) -> TempDir {
    let d = TempDir::new(tag);
    write_dataset(synth, &d.0).unwrap();
    d
}

/// A dataset configuration with small shapes: clips of `clip_samples` samples, an `n_fft`
/// window moved by `hop`, and `side` x `side` frames; the rest is the default.
pub fn small_config(clip_samples: usize, n_fft: usize, hop: usize, side: u32) -> DatasetConfig {
    DatasetConfig {
        spectrogram: SpectrogramConfig {
            clip_samples,
            n_fft,
            hop,
            ..SpectrogramConfig::default()
        },
        image: ImageConfig::with_size(side, side),
        ..DatasetConfig::default()
    }
}

/// The fixture directory.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

/// A path inside the fixture directory.
pub fn fixture(name: &str) -> PathBuf {
    fixture_dir().join(name)
}

/// The manifest entry of an array.
pub fn entry(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("manifest.json")).expect("manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    manifest["arrays"][name].clone()
}

/// The shape of an array.
pub fn shape(name: &str) -> Vec<usize> {
    entry(name)["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

/// An f32 array and its shape.
pub fn read_f32(name: &str) -> (Vec<f32>, Vec<usize>) {
    let e = entry(name);
    assert_eq!(e["dtype"], "f32", "{name}");
    let bytes = std::fs::read(fixture(e["file"].as_str().unwrap())).unwrap();
    let data: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let shape = shape(name);
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{name}");
    (data, shape)
}

/// A u8 array and its shape.
pub fn read_u8(name: &str) -> (Vec<u8>, Vec<usize>) {
    let e = entry(name);
    assert_eq!(e["dtype"], "u8", "{name}");
    let data = std::fs::read(fixture(e["file"].as_str().unwrap())).unwrap();
    let shape = shape(name);
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{name}");
    (data, shape)
}

/// Largest absolute difference and its index.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (x, y))| ((x - y).abs(), i))
        .fold((0.0, 0), |m, d| if d.0 > m.0 { d } else { m })
}
