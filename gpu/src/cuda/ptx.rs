//! The kernels' PTX, compiled from `kernels/*.cu` by `build.rs` and embedded in the crate
//! (ISA 9.0 from nvcc 13.0, target `compute_80`; the driver JIT-compiles it for the device).

include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
