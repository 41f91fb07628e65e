//! `ogm-gpu`: the OGM-GE training hot path as CUDA kernels, compiled to PTX and launched
//! through `cust`. Everything that touches CUDA sits behind the `cuda` feature, so the
//! workspace builds and tests on machines without it.

/// Whether this build of the crate was compiled with CUDA support (the `cuda` feature).
pub const CUDA_ENABLED: bool = cfg!(feature = "cuda");
