//! `ogm-host`: the library behind the `ogm` binary: data loading, the audio-visual model,
//! the CPU engine, the training loop.
