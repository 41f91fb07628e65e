//! Checkpoints as safetensors with PyTorch's state_dict keys, so that
//! `model.load_state_dict(safetensors.torch.load_file(path))` works on the official model,
//! and a state_dict saved from PyTorch loads here.
//!
//! Parameters and running statistics are stored in the model's element type (`F32` for
//! training); `num_batches_tracked` as a 0-d `I64`, as PyTorch keeps it. Loading accepts
//! `F32` or `F64` for floating tensors, checks every key, shape and value before touching
//! the model (a failed load leaves the model as it was), and rejects unknown keys like
//! PyTorch's strict loading.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::engine::backend::Backend;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::AvModel;
use crate::engine::scalar::Scalar;

/// The metadata key under which the model configuration is recorded (informational).
pub const CONFIG_KEY: &str = "ogm.config";

/// Serialises the model's state_dict to safetensors bytes.
pub fn to_bytes<B: Backend>(model: &AvModel<B>) -> Result<Vec<u8>> {
    let mut blobs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let b = model.backend();
    for (table, buf) in [
        (model.params_table(), model.params()),
        (model.state_table(), model.state()),
    ] {
        for t in table.iter() {
            let vals = b.read(buf, t.region.range());
            let mut bytes = Vec::with_capacity(vals.len() * B::Elem::BYTES);
            for v in vals {
                v.write_le(&mut bytes);
            }
            blobs.push((t.name.clone(), B::Elem::DTYPE, t.shape.clone(), bytes));
        }
    }
    for (name, count) in model.batch_counters() {
        blobs.push((
            name.clone(),
            Dtype::I64,
            vec![],
            (*count as i64).to_le_bytes().to_vec(),
        ));
    }
    let views: Vec<(String, TensorView<'_>)> = blobs
        .iter()
        .map(|(n, d, s, bytes)| {
            let v = TensorView::new(*d, s.clone(), bytes).expect("shape matches byte length");
            (n.clone(), v)
        })
        .collect();
    let c = model.config();
    let meta = HashMap::from([(
        CONFIG_KEY.to_string(),
        format!(
            "fusion={} classes={} widths={:?} blocks={:?} frames={}",
            c.fusion.name(),
            c.classes,
            c.widths,
            c.blocks,
            c.frames
        ),
    )]);
    safetensors::serialize(views, &Some(meta)).map_err(|e| EngineError::Safetensors {
        path: "<memory>".into(),
        reason: e.to_string(),
    })
}

/// Writes the model's state_dict to `path`.
pub fn save<B: Backend>(model: &AvModel<B>, path: &Path) -> Result<()> {
    let bytes = to_bytes(model)?;
    std::fs::write(path, bytes).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads a state_dict from `path` into the model (all or nothing).
pub fn load<B: Backend>(model: &mut AvModel<B>, path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_bytes(model, &bytes, path)
}

fn floats<T: Scalar>(view: &TensorView<'_>, path: &Path, name: &str) -> Result<Vec<T>> {
    let data = view.data();
    let vals: Vec<T> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| T::from_f64(f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| T::from_f64(f64::from_le_bytes(c.try_into().expect("8 bytes"))))
            .collect(),
        other => {
            return Err(EngineError::BadTensor {
                path: path.to_path_buf(),
                name: name.to_string(),
                problem: format!("dtype {other:?}, expected F32 or F64"),
            })
        }
    };
    if let Some(i) = vals.iter().position(|v| !v.is_finite()) {
        return Err(EngineError::BadTensor {
            path: path.to_path_buf(),
            name: name.to_string(),
            problem: format!("non-finite value at index {i}"),
        });
    }
    Ok(vals)
}

/// Loads a state_dict from safetensors bytes (`path` names the source in errors).
pub fn load_bytes<B: Backend>(model: &mut AvModel<B>, bytes: &[u8], path: &Path) -> Result<()> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| EngineError::Safetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let get = |name: &str| {
        st.tensor(name).map_err(|_| EngineError::MissingTensor {
            path: path.to_path_buf(),
            name: name.to_string(),
        })
    };
    let mut known = HashSet::new();
    let mut floats_in: Vec<(String, Vec<B::Elem>)> = Vec::new();
    for table in [model.params_table(), model.state_table()] {
        for t in table.iter() {
            let view = get(&t.name)?;
            if view.shape() != t.shape.as_slice() {
                return Err(EngineError::BadTensor {
                    path: path.to_path_buf(),
                    name: t.name.clone(),
                    problem: format!("shape {:?}, expected {:?}", view.shape(), t.shape),
                });
            }
            floats_in.push((t.name.clone(), floats(&view, path, &t.name)?));
            known.insert(t.name.clone());
        }
    }
    let mut counters_in = Vec::new();
    for (name, _) in model.batch_counters() {
        let view = get(name)?;
        let ok = view.dtype() == Dtype::I64 && view.shape().iter().product::<usize>() == 1;
        if !ok {
            return Err(EngineError::BadTensor {
                path: path.to_path_buf(),
                name: name.clone(),
                problem: format!(
                    "dtype {:?} shape {:?}, expected a single I64",
                    view.dtype(),
                    view.shape()
                ),
            });
        }
        let v = i64::from_le_bytes(view.data().try_into().expect("8 bytes"));
        if v < 0 {
            return Err(EngineError::BadTensor {
                path: path.to_path_buf(),
                name: name.clone(),
                problem: format!("negative count {v}"),
            });
        }
        counters_in.push((name.clone(), v as u64));
        known.insert(name.clone());
    }
    if let Some(extra) = st.names().into_iter().find(|n| !known.contains(*n)) {
        return Err(EngineError::BadTensor {
            path: path.to_path_buf(),
            name: extra.clone(),
            problem: "not a tensor of this model".into(),
        });
    }
    for (name, vals) in floats_in {
        model.write_tensor(&name, &vals)?;
    }
    for (name, v) in counters_in {
        model.set_batch_counter(&name, v)?;
    }
    Ok(())
}
