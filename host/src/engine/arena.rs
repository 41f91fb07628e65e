//! Named views into the flat arenas: every parameter (and its gradient, same layout) and
//! every running statistic is a [`Region`] of one buffer, named by its PyTorch state_dict key.

use std::collections::HashMap;

use crate::engine::backend::Region;

/// Which part of the model a tensor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modality {
    /// `audio_net.*`
    Audio,
    /// `visual_net.*`
    Visual,
    /// `fusion_module.*`
    Fusion,
}

/// What a tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// A convolution weight `[cout, cin, k, k]` (4-D: an OGM-GE modulation target).
    ConvWeight,
    /// A batch-norm scale.
    BnWeight,
    /// A batch-norm shift.
    BnBias,
    /// A linear weight `[out, in]`.
    LinearWeight,
    /// A linear bias.
    LinearBias,
    /// A batch-norm running mean (state, not trained).
    RunningMean,
    /// A batch-norm running variance (state, not trained).
    RunningVar,
}

/// One named tensor of an arena.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The PyTorch state_dict key, e.g. `audio_net.layer1.0.conv1.weight`.
    pub name: String,
    /// The PyTorch shape.
    pub shape: Vec<usize>,
    /// Where it lives in its arena.
    pub region: Region,
    /// What it is.
    pub kind: TensorKind,
    /// Which part of the model holds it.
    pub modality: Modality,
}

impl TensorInfo {
    /// Whether OGM-GE modulates this tensor's gradient: a 4-D weight of an encoder.
    pub fn is_modulation_target(&self) -> bool {
        self.shape.len() == 4 && self.modality != Modality::Fusion
    }
}

/// The table of named tensors of one arena, in PyTorch registration order.
#[derive(Debug, Clone, Default)]
pub struct TensorTable {
    entries: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    total: usize,
}

impl TensorTable {
    /// Appends a tensor at the end of the arena and returns its region.
    pub(crate) fn push(
        &mut self,
        name: String,
        shape: Vec<usize>,
        kind: TensorKind,
        modality: Modality,
    ) -> Region {
        let len = shape.iter().product();
        let region = Region {
            offset: self.total,
            len,
        };
        self.total += len;
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push(TensorInfo {
            name,
            shape,
            region,
            kind,
            modality,
        });
        region
    }

    /// Total number of elements of the arena.
    pub fn total_len(&self) -> usize {
        self.total
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    /// All tensors in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &TensorInfo> {
        self.entries.iter()
    }

    /// The OGM-GE targets: every 4-D weight of the audio and visual encoders, in order.
    pub fn modulation_targets(&self) -> impl Iterator<Item = &TensorInfo> {
        self.entries.iter().filter(|t| t.is_modulation_target())
    }

    /// Every tensor of one modality (e.g. all audio encoder weights).
    pub fn of_modality(&self, m: Modality) -> impl Iterator<Item = &TensorInfo> {
        self.entries.iter().filter(move |t| t.modality == m)
    }
}
