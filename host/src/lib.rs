//! `ogm-host`: the library behind the `ogm` binary: data loading, the audio-visual model,
//! the CPU engine, the training loop.

pub mod cli;
pub mod config;
pub mod data;
pub mod engine;
pub mod run;
pub mod train;
