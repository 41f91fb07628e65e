//! `ogm_host::engine::pth::Checkpoint` (what `ogm import` opens): `torch.save` files read
//! without Python, on arbitrary bytes, on well-formed zip containers around a fuzzed pickle
//! and fuzzed storages (so that the pickle machine is reached past the zip's CRCs), and on
//! the official code's checkpoints that PyTorch wrote (the test fixtures) with their pickle
//! edited and cut, storages kept.
//!
//! Asserts: no panic, no hang, no allocation beyond libFuzzer's limit; an error is a
//! non-empty message; every tensor the saved object refers to decodes to an error or to
//! exactly as many values as its shape holds.
#![no_main]

use std::io::{Cursor, Read, Write};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_host::engine::pth::{Checkpoint, TensorData, TensorRef, Value};

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any bytes as the file.
    Raw(Vec<u8>),
    /// A zip container as `torch.save` writes it: `archive/data.pkl`, `archive/byteorder`
    /// and `archive/data/<key>` storages, every entry stored uncompressed.
    Container {
        pickle: Vec<u8>,
        byteorder: Option<String>,
        storages: Vec<(u8, Vec<u8>)>,
    },
    /// An official checkpoint (a training dict, or a bare state_dict) with bytes of its
    /// pickle overwritten, runs of bytes inserted, and the pickle cut.
    Official {
        bare: bool,
        edits: Vec<(u16, u8)>,
        inserts: Vec<(u16, Vec<u8>)>,
        cut: Option<u16>,
    },
}

/// The entries of a fixture written by PyTorch, in order.
type Entries = Vec<(String, Vec<u8>)>;

fn official(bare: bool) -> &'static Entries {
    static FILES: OnceLock<[Entries; 2]> = OnceLock::new();
    let read = |bytes: &[u8]| {
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).expect("a fixture");
        (0..zip.len())
            .map(|i| {
                let mut f = zip.by_index(i).expect("an entry");
                let mut b = Vec::new();
                f.read_to_end(&mut b).expect("entry bytes");
                (f.name().expect("a UTF-8 name").to_string(), b)
            })
            .collect()
    };
    &FILES.get_or_init(|| {
        [
            read(include_bytes!(
                "../../host/tests/fixtures/engine/official_concat.pth"
            )),
            read(include_bytes!(
                "../../host/tests/fixtures/engine/official_gated_state_dict.pth"
            )),
        ]
    })[bare as usize]
}

/// A zip of `entries`, each stored uncompressed as `torch.save` writes them; a repeated name
/// (a fuzzed storage key twice) is a duplicate entry, which the writer refuses: kept once.
fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        if zip.start_file(name.as_str(), stored).is_ok() {
            zip.write_all(bytes).expect("in-memory write");
        }
    }
    zip.finish().expect("in-memory zip").into_inner()
}

fn container(pickle: &[u8], byteorder: Option<&str>, storages: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut entries = vec![("archive/data.pkl".to_string(), pickle.to_vec())];
    if let Some(order) = byteorder {
        entries.push(("archive/byteorder".into(), order.as_bytes().to_vec()));
    }
    for (key, bytes) in storages {
        entries.push((format!("archive/data/{key}"), bytes.clone()));
    }
    rezip(&entries)
}

/// Every tensor under `v` (the reader bounds the nesting, so recursion is bounded too).
fn tensors<'a>(v: &'a Value, out: &mut Vec<&'a TensorRef>) {
    match v {
        Value::Tensor(t) => out.push(t),
        Value::Tuple(items) | Value::List(items) => items.iter().for_each(|i| tensors(i, out)),
        Value::Dict(items) => items.iter().for_each(|(k, i)| {
            tensors(k, out);
            tensors(i, out);
        }),
        _ => {}
    }
}

fuzz_target!(|input: Input| {
    let bytes = match input {
        Input::Raw(bytes) => bytes,
        Input::Container {
            pickle,
            byteorder,
            storages,
        } => container(&pickle, byteorder.as_deref(), &storages),
        Input::Official {
            bare,
            edits,
            inserts,
            cut,
        } => {
            let mut entries = official(bare).clone();
            let pkl = &mut entries
                .iter_mut()
                .find(|(n, _)| n.ends_with("/data.pkl"))
                .expect("a pickle")
                .1;
            for (at, v) in edits {
                let n = pkl.len();
                pkl[at as usize % n] = v;
            }
            for (at, run) in inserts {
                let at = at as usize % (pkl.len() + 1);
                pkl.splice(at..at, run);
            }
            if let Some(cut) = cut {
                pkl.truncate(cut as usize % (pkl.len() + 1));
            }
            rezip(&entries)
        }
    };
    let mut ckpt = match Checkpoint::from_bytes(bytes) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.is_empty(), "an empty error message");
            return;
        }
    };
    let root = ckpt.root().clone();
    let mut found = Vec::new();
    tensors(&root, &mut found);
    for t in found {
        match ckpt.tensor(t) {
            Ok(data) => {
                let want: usize = t.shape.iter().product();
                let got = match &data {
                    TensorData::Float(v) => v.len(),
                    TensorData::Int(v) => v.len(),
                };
                assert_eq!(got, want, "{t:?} decoded to {got} values");
            }
            Err(e) => assert!(!e.is_empty(), "an empty error message for {t:?}"),
        }
    }
});
