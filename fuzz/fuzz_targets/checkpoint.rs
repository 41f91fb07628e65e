//! `ogm_host::engine::checkpoint::load_bytes` (what `ogm eval`, `--resume` and
//! `--init_weights` load): safetensors bytes into a small model, as arbitrary bytes and as a
//! valid checkpoint of that model with fuzzed byte edits and a fuzzed cut.
//!
//! Asserts: no panic; a refused file leaves the model exactly as it was (its serialised bytes
//! unchanged); an accepted file is what the model then holds (it serialises back to a file
//! that loads into a fresh model with the same bytes).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_host::engine::checkpoint::{load_bytes, to_bytes};
use ogm_host::engine::{AvModel, CpuBackend, FusionKind, ModelConfig};

type Model = AvModel<CpuBackend<f32>>;

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any bytes as the file.
    Raw(Vec<u8>),
    /// The valid checkpoint with bytes overwritten at fuzzed places, then cut.
    Edited {
        edits: Vec<(u32, u8)>,
        cut: Option<u32>,
    },
}

fn model() -> Model {
    let config = ModelConfig::small(3, FusionKind::Concat).with_frames(2);
    AvModel::new(CpuBackend::new(), config, 7).expect("the small model")
}

/// The valid checkpoint: another seed's weights, so that loading it changes the model.
fn valid() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let config = ModelConfig::small(3, FusionKind::Concat).with_frames(2);
        let other =
            AvModel::<CpuBackend<f32>>::new(CpuBackend::new(), config, 8).expect("the small model");
        to_bytes(&other).expect("serialise")
    })
}

fuzz_target!(|input: Input| {
    let bytes = match input {
        Input::Raw(bytes) => bytes,
        Input::Edited { edits, cut } => {
            let mut b = valid().to_vec();
            for (at, v) in edits {
                let n = b.len();
                b[at as usize % n] = v;
            }
            if let Some(cut) = cut {
                b.truncate(cut as usize % (b.len() + 1));
            }
            b
        }
    };
    let mut m = model();
    let before = to_bytes(&m).expect("serialise");
    match load_bytes(&mut m, &bytes, Path::new("fuzz.safetensors")) {
        Ok(()) => {
            let after = to_bytes(&m).expect("serialise");
            let mut fresh = model();
            load_bytes(&mut fresh, &after, Path::new("again.safetensors"))
                .expect("a loaded model's own file loads");
            assert!(
                to_bytes(&fresh).expect("serialise") == after,
                "round trip differs"
            );
        }
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty error message");
            assert!(
                to_bytes(&m).expect("serialise") == before,
                "a refused file changed the model: {e}"
            );
        }
    }
});
