//! The parameter layout of the paper's model (two ResNet-18 encoders and a concat fusion
//! head), in PyTorch's `named_parameters()` order, laid out in one flat arena: the workload of
//! the benchmark and of the full-size tests, and a template for the trainer's own arena.
//!
//! Names follow the official code (`audio_net.layer1.0.conv1.weight`, ...). The modulated
//! tensors are, as in the official loop, the encoders' parameters whose gradient is 4-D (the
//! convolution weights); each gets its parameter index in the arena as its noise identity.

use crate::error::Result;
use crate::layout::{Modality, TensorList, TensorSpec};

/// One named parameter tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// PyTorch's name, e.g. `visual_net.layer2.0.downsample.0.weight`.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

impl Param {
    fn new(name: String, shape: &[usize]) -> Param {
        Param {
            name,
            shape: shape.to_vec(),
        }
    }

    /// Number of values.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The parameters of a ResNet-18 without its `fc` layer (BasicBlock `[2, 2, 2, 2]`, widths
/// 64-128-256-512, 7x7 stem), named under `prefix`.
pub fn resnet18_params(prefix: &str, in_channels: usize) -> Vec<Param> {
    let mut out = Vec::new();
    let bn = |out: &mut Vec<Param>, name: String, c: usize| {
        out.push(Param::new(format!("{name}.weight"), &[c]));
        out.push(Param::new(format!("{name}.bias"), &[c]));
    };
    out.push(Param::new(
        format!("{prefix}.conv1.weight"),
        &[64, in_channels, 7, 7],
    ));
    bn(&mut out, format!("{prefix}.bn1"), 64);
    let mut inplanes = 64;
    for (layer, planes) in [64usize, 128, 256, 512].into_iter().enumerate() {
        for block in 0..2 {
            let p = format!("{prefix}.layer{}.{block}", layer + 1);
            let cin = if block == 0 { inplanes } else { planes };
            out.push(Param::new(
                format!("{p}.conv1.weight"),
                &[planes, cin, 3, 3],
            ));
            bn(&mut out, format!("{p}.bn1"), planes);
            out.push(Param::new(
                format!("{p}.conv2.weight"),
                &[planes, planes, 3, 3],
            ));
            bn(&mut out, format!("{p}.bn2"), planes);
            if block == 0 && cin != planes {
                out.push(Param::new(
                    format!("{p}.downsample.0.weight"),
                    &[planes, cin, 1, 1],
                ));
                bn(&mut out, format!("{p}.downsample.1"), planes);
            }
        }
        inplanes = planes;
    }
    out
}

/// The official model's parameters: `audio_net` (1 input channel), `visual_net` (3), and the
/// concat head `fusion_module.fc_out` (`classes x 1024`, bias).
pub fn official_model_params(classes: usize) -> Vec<Param> {
    let mut p = resnet18_params("audio_net", 1);
    p.extend(resnet18_params("visual_net", 3));
    p.push(Param::new(
        "fusion_module.fc_out.weight".into(),
        &[classes, 1024],
    ));
    p.push(Param::new("fusion_module.fc_out.bias".into(), &[classes]));
    p
}

/// Parameters laid end to end in one flat buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arena {
    /// The parameters, in order.
    pub params: Vec<Param>,
    /// Offset of each parameter in the buffer.
    pub offsets: Vec<usize>,
    /// Total number of values.
    pub len: usize,
}

impl Arena {
    /// Lays `params` out contiguously in order.
    pub fn new(params: Vec<Param>) -> Arena {
        let mut offsets = Vec::with_capacity(params.len());
        let mut len = 0;
        for p in &params {
            offsets.push(len);
            len += p.numel();
        }
        Arena {
            params,
            offsets,
            len,
        }
    }

    /// The tensors the official loop modulates: parameters of `audio_net` / `visual_net` with
    /// a 4-D shape, each with its parameter index as `noise_id`.
    pub fn modulated(&self) -> Result<TensorList> {
        let specs = self
            .params
            .iter()
            .zip(&self.offsets)
            .enumerate()
            .filter(|(_, (p, _))| p.shape.len() == 4)
            .filter_map(|(i, (p, &offset))| {
                let modality = match p.name.split('.').next() {
                    Some("audio_net") => Modality::Audio,
                    Some("visual_net") => Modality::Visual,
                    _ => return None,
                };
                Some(TensorSpec::new(offset, p.numel(), modality, i as u64))
            })
            .collect();
        TensorList::new(self.len, specs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet18_has_the_known_size() {
        // torchvision's resnet18 has 11,689,512 parameters, 513,000 of them in fc.
        let n: usize = resnet18_params("m", 3).iter().map(Param::numel).sum();
        assert_eq!(n, 11_689_512 - 513_000);
        let a = Arena::new(official_model_params(309));
        let list = a.modulated().unwrap();
        assert_eq!(list.len(), 40);
        // Conv weights: everything but the 9,600 BatchNorm values, the audio stem 2 x 64 x 49
        // smaller (1 input channel instead of 3): the 22.3 M values design.md quotes.
        assert_eq!(list.total_values(), 2 * (11_176_512 - 9_600) - 2 * 64 * 49);
        assert_eq!(a.params.last().unwrap().name, "fusion_module.fc_out.bias");
    }
}
