//! `ogm-suite`: the workspace's cross-crate tests (`tests/`) and criterion benchmarks
//! (`benches/`). It holds no code of its own; see the `ogm-core`, `ogm-gpu` and `ogm-host`
//! crates.
#![no_std]
