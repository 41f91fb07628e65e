//! What model to build: widths, depth, fusion head, classes, frames.

use crate::engine::error::{EngineError, Result};

/// The fusion head of the official code (`--fusion_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FusionKind {
    /// `out = fc_x(a) + fc_y(v)`.
    Sum,
    /// `out = fc_out([a; v])`.
    Concat,
    /// `gamma, beta = fc(a)`; `out = fc_out(gamma * v + beta)` (the official `x_film=True`).
    Film,
    /// `out = fc_out(sigmoid(fc_x(a)) * fc_y(v))` (the official `x_gate=True`).
    Gated,
}

impl FusionKind {
    /// Parses the official names `sum`, `concat`, `film`, `gated`.
    pub fn parse(s: &str) -> Option<FusionKind> {
        match s {
            "sum" => Some(FusionKind::Sum),
            "concat" => Some(FusionKind::Concat),
            "film" => Some(FusionKind::Film),
            "gated" => Some(FusionKind::Gated),
            _ => None,
        }
    }
    /// The official name.
    pub fn name(self) -> &'static str {
        match self {
            FusionKind::Sum => "sum",
            FusionKind::Concat => "concat",
            FusionKind::Film => "film",
            FusionKind::Gated => "gated",
        }
    }
}

/// Input channels of the audio encoder (a spectrogram).
pub const AUDIO_CHANNELS: usize = 1;
/// Input channels of the visual encoder (RGB frames).
pub const VISUAL_CHANNELS: usize = 3;

/// The model to build. [`ModelConfig::paper`] is the paper's model; smaller widths and
/// fewer blocks give quick variants with the same structure and the same tensor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelConfig {
    /// Number of classes.
    pub classes: usize,
    /// The fusion head.
    pub fusion: FusionKind,
    /// Channel widths of the four stages (the stem has `widths[0]`); the feature size of each
    /// encoder is `widths[3]`.
    pub widths: [usize; 4],
    /// Basic blocks per stage (ResNet-18: `[2, 2, 2, 2]`).
    pub blocks: [usize; 4],
    /// Frames per clip `T` of the visual input `(B, 3, T, H, W)`.
    pub frames: usize,
}

impl ModelConfig {
    /// The paper's model: two ResNet-18s (widths 64-128-256-512), one frame.
    pub fn paper(classes: usize, fusion: FusionKind) -> ModelConfig {
        ModelConfig {
            classes,
            fusion,
            widths: [64, 128, 256, 512],
            blocks: [2, 2, 2, 2],
            frames: 1,
        }
    }

    /// A tiny variant for tests and smoke runs (widths 4-8-8-16, blocks 2-1-1-1): every kind
    /// of layer of the paper model, including a stage without a downsample and stages with.
    pub fn small(classes: usize, fusion: FusionKind) -> ModelConfig {
        ModelConfig {
            classes,
            fusion,
            widths: [4, 8, 8, 16],
            blocks: [2, 1, 1, 1],
            frames: 1,
        }
    }

    /// The same configuration with `frames` frames per clip.
    pub fn with_frames(self, frames: usize) -> ModelConfig {
        ModelConfig { frames, ..self }
    }

    /// The feature size `D` of each encoder.
    pub fn feature_dim(&self) -> usize {
        self.widths[3]
    }

    /// Checks that every size is non-zero.
    pub fn validate(&self) -> Result<()> {
        if self.classes == 0 {
            return Err(EngineError::Config("classes must be at least 1".into()));
        }
        if self.frames == 0 {
            return Err(EngineError::Config("frames must be at least 1".into()));
        }
        if self.widths.contains(&0) {
            return Err(EngineError::Config(format!(
                "stage widths must be non-zero, got {:?}",
                self.widths
            )));
        }
        if self.blocks.contains(&0) {
            return Err(EngineError::Config(format!(
                "blocks per stage must be non-zero, got {:?}",
                self.blocks
            )));
        }
        Ok(())
    }
}
