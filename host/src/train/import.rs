//! `ogm import`: a checkpoint of the official PyTorch code made into a run folder that
//! `ogm eval` reads, so that models trained with the official `main.py` (or the authors'
//! released checkpoints) are evaluated by this implementation, on the CPU or a GPU.
//!
//! The official script saves `{'saved_epoch', 'modulation', 'alpha', 'fusion', 'acc',
//! 'model', 'optimizer', 'scheduler'}` with `torch.save`, its model wrapped in
//! `nn.DataParallel` (keys prefixed `module.`); a bare state_dict is read too. The model's
//! shape (fusion head, classes, width, blocks) is read from the tensors, the fusion method
//! checked against the saved `fusion`, the number of classes against the class list (CREMA-D's
//! by default; `--classes_file` for a model of another dataset), and the weights are loaded
//! into the engine's model (every key, shape and value checked, as for `ogm eval`) before
//! anything is written. What the file does not record (the dataset, its classes, its input
//! pipeline) comes from the caller. The optimiser's momentum is not carried over: the folder
//! is for evaluation.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::{Fusion, ModelSize, TrainConfig};
use crate::engine::pth::{Checkpoint, TensorData, Value};
use crate::engine::{checkpoint, AvModel, CpuBackend};

use super::{model_config, write_config, TrainError};

/// What [`import_official`] wrote.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The run folder's `config.toml` settings (paths: the official layout's defaults).
    pub config: TrainConfig,
    /// The model checkpoint, `<out>/checkpoints/<name>.safetensors`.
    pub checkpoint: PathBuf,
    /// The saved epoch and test accuracy of the official run, where the file records them.
    pub saved_epoch: Option<i64>,
    /// See `saved_epoch`.
    pub saved_acc: Option<f64>,
}

fn bad(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads the official checkpoint `pth` and writes the run folder `out` (which must not hold
/// a run already): `config.toml` and `checkpoints/<pth's stem>.safetensors`. The run's
/// settings are `base` (the dataset, its class list, its input pipeline and paths) with the
/// model's shape and the recorded modulation and alpha; the model's number of classes must be
/// that of `base`'s class list.
pub fn import_official(pth: &Path, out: &Path, base: &TrainConfig) -> Result<Imported, TrainError> {
    let bytes = std::fs::read(pth).map_err(|e| TrainError::io(pth, e))?;
    let mut ck = Checkpoint::from_bytes(bytes).map_err(|m| bad(pth, m))?;
    let root = ck.root().clone();
    let (sd, meta) = match root.get("model") {
        Some(sd @ Value::Dict(_)) => (sd.clone(), Some(&root)),
        _ => (root.clone(), None),
    };
    let Value::Dict(items) = sd else {
        return Err(bad(
            pth,
            "holds neither a state_dict nor a dict with one under 'model'",
        ));
    };
    // DataParallel's prefix, on every key or on none.
    let prefixed = items
        .iter()
        .any(|(k, _)| matches!(k, Value::Str(s) if s.starts_with("module.")));
    let mut tensors = Vec::new();
    for (k, v) in items {
        let Value::Str(name) = k else {
            return Err(bad(pth, "a state_dict key that is not a str"));
        };
        let name = match (prefixed, name.strip_prefix("module.")) {
            (true, Some(n)) => n.to_string(),
            (true, None) => {
                return Err(bad(
                    pth,
                    format!("key `{name}` lacks the `module.` prefix of the others"),
                ))
            }
            (false, _) => name,
        };
        let Value::Tensor(t) = v else {
            return Err(bad(
                pth,
                format!("state_dict entry `{name}` is not a tensor"),
            ));
        };
        let data = ck
            .tensor(&t)
            .map_err(|m| bad(pth, format!("tensor `{name}`: {m}")))?;
        tensors.push((name, t.shape, data));
    }
    let shape_of = |name: &str| {
        tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, _)| s.clone())
            .ok_or_else(|| {
                bad(
                    pth,
                    format!("no tensor `{name}`: not the official AVClassifier"),
                )
            })
    };
    let has = |name: &str| tensors.iter().any(|(n, _, _)| n == name);

    // The fusion head by its parameters (fusion_modules.py), checked against the record.
    let fusion = match (
        has("fusion_module.fc_x.weight"),
        has("fusion_module.fc_out.weight"),
    ) {
        (true, false) => Fusion::Sum,
        (true, true) => Fusion::Gated,
        (false, true) if has("fusion_module.fc.weight") => Fusion::Film,
        (false, true) => Fusion::Concat,
        (false, false) => return Err(bad(pth, "no fusion_module weights")),
    };
    if let Some(Value::Str(f)) = meta.and_then(|m| m.get("fusion")) {
        let named = match f.as_str() {
            "sum" => Fusion::Sum,
            "concat" => Fusion::Concat,
            "film" => Fusion::Film,
            "gated" => Fusion::Gated,
            other => return Err(bad(pth, format!("fusion `{other}` is not one ogm trains"))),
        };
        if named != fusion {
            return Err(bad(
                pth,
                format!("recorded fusion `{f}`, but the weights are those of {fusion:?}"),
            ));
        }
    }
    let head = if fusion == Fusion::Sum {
        "fusion_module.fc_x.weight"
    } else {
        "fusion_module.fc_out.weight"
    };
    let outputs = shape_of(head)?[0];
    let names = base.class_names()?;
    if outputs != names.len() {
        return Err(bad(
            pth,
            format!(
                "a model of {outputs} classes, but {} are named ({}); give the model's \
                 classes with --classes_file",
                names.len(),
                if base.classes.is_empty() {
                    format!("dataset {}", base.dataset)
                } else {
                    "--classes_file".into()
                }
            ),
        ));
    }
    let width = shape_of("audio_net.conv1.weight")?[0];
    let blocks: BTreeSet<&str> = tensors
        .iter()
        .filter_map(|(n, _, _)| n.strip_prefix("audio_net.layer1.")?.split('.').next())
        .collect();

    if blocks.is_empty() {
        return Err(bad(
            pth,
            "no audio_net.layer1 blocks: not the official AVClassifier",
        ));
    }
    let mut config = TrainConfig {
        fusion_method: fusion,
        model: ModelSize {
            width,
            blocks: blocks.len(),
        },
        ..base.clone()
    };
    if let Some(m) = meta {
        if let Some(Value::Str(s)) = m.get("modulation") {
            config.modulation = ogm_core::Mode::parse(s).ok_or_else(|| {
                bad(
                    pth,
                    format!("modulation `{s}` is not Normal, OGM or OGM_GE"),
                )
            })?;
        }
        match m.get("alpha") {
            Some(Value::Float(a)) => config.alpha = *a,
            Some(Value::Int(a)) => config.alpha = *a as f64,
            _ => {}
        }
    }
    config.validate()?;

    // The weights through the engine's own loader: every key and shape of the model this
    // configuration builds, finite values, nothing extra; then written in its format.
    let mut model = AvModel::new(
        CpuBackend::<f32>::new(),
        model_config(&config, outputs),
        config.random_seed,
    )?;
    let st = to_safetensors(&tensors).map_err(|m| bad(pth, m))?;
    checkpoint::load_bytes(&mut model, &st, pth).map_err(|e| {
        bad(
            pth,
            format!(
                "{e} (read as a {fusion:?} model of width {width} with {} blocks a stage)",
                config.model.blocks
            ),
        )
    })?;
    let bytes = checkpoint::to_bytes(&model)?;

    if out.join("config.toml").exists() {
        return Err(TrainError::RunExists {
            path: out.to_path_buf(),
        });
    }
    let ckpt_dir = out.join("checkpoints");
    std::fs::create_dir_all(&ckpt_dir).map_err(|e| TrainError::io(&ckpt_dir, e))?;
    let stem = pth
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "imported".into());
    let ckpt = ckpt_dir.join(format!("{stem}.safetensors"));
    super::write_file(&ckpt, &bytes)?;
    write_config(&out.join("config.toml"), &config)?;
    let num = |k: &str| meta.and_then(|m| m.get(k)).cloned();
    Ok(Imported {
        config,
        checkpoint: ckpt,
        saved_epoch: match num("saved_epoch") {
            Some(Value::Int(e)) => Some(e),
            _ => None,
        },
        saved_acc: match num("acc") {
            Some(Value::Float(a)) => Some(a),
            _ => None,
        },
    })
}

/// The decoded tensors as safetensors bytes: floats as `F32`, integers as `I64`.
fn to_safetensors(tensors: &[(String, Vec<usize>, TensorData)]) -> Result<Vec<u8>, String> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let blobs: Vec<(&str, Dtype, &[usize], Vec<u8>)> = tensors
        .iter()
        .map(|(n, shape, data)| match data {
            TensorData::Float(v) => (
                n.as_str(),
                Dtype::F32,
                shape.as_slice(),
                v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
            ),
            TensorData::Int(v) => (
                n.as_str(),
                Dtype::I64,
                shape.as_slice(),
                v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let views = blobs
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(*d, s.to_vec(), b)
                .map(|v| (n.to_string(), v))
                .map_err(|e| format!("tensor `{n}`: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    safetensors::serialize(views, &None).map_err(|e| e.to_string())
}
