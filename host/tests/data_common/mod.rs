//! Shared helpers of the data tests: reading the committed fixtures of
//! `scripts/data_fixtures.py` (raw little-endian arrays described by `manifest.json`).

#![allow(dead_code)] // each test crate uses a different subset

use std::path::PathBuf;

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
