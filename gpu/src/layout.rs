//! Where the modulated tensors sit inside a flat gradient buffer.
//!
//! The trainer keeps every gradient in one flat `f32` buffer (an arena with a table of named
//! views). A [`TensorList`] names the views OGM-GE modulates (the encoders' convolution
//! weights) with their modality and noise identity, validated once; the statistics and
//! modulation kernels then cover all of them in one launch each.
//!
//! # Noise keys
//!
//! The noise of tensor `t` in step `step` of a run seeded with `seed` is `ogm_core`'s default
//! stream under the key `NoiseKey::new(seed).derive(step).derive(noise_id[t])` ([`step_key`]
//! gives the first two derivations). [`TensorList::packed`] and [`TensorSpec::new`] use the
//! tensor's position in the list as `noise_id`; a CPU trainer that calls
//! `ogm_core::modulate_tensor` with the same keys draws exactly the same noise.

use ogm_core::{NoiseKey, CHUNK};

use crate::error::{GpuError, Result};

/// Which encoder a tensor belongs to (the index of its coefficient).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Modality {
    /// The audio encoder (`k_a`).
    Audio = 0,
    /// The visual encoder (`k_v`).
    Visual = 1,
}

impl Modality {
    /// 0 for audio, 1 for visual.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// One tensor of a flat buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSpec {
    /// First element in the flat buffer.
    pub offset: usize,
    /// Number of elements (at least 1).
    pub len: usize,
    /// The encoder it belongs to.
    pub modality: Modality,
    /// The word its noise key is derived with (see the module docs).
    pub noise_id: u64,
}

impl TensorSpec {
    /// A tensor whose noise identity is `noise_id`.
    pub const fn new(offset: usize, len: usize, modality: Modality, noise_id: u64) -> TensorSpec {
        TensorSpec {
            offset,
            len,
            modality,
            noise_id,
        }
    }
}

/// The device form of a [`TensorSpec`] (`TensorDesc` in `kernels/common.cuh`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TensorDesc {
    /// First element in the flat buffer.
    pub offset: u64,
    /// Number of elements.
    pub len: u64,
    /// Global index of the tensor's first chunk of [`CHUNK`] values.
    pub chunk_start: u64,
    /// The noise key word.
    pub noise_id: u64,
    /// 0 audio, 1 visual.
    pub modality: u32,
    /// Zero.
    pub reserved: u32,
}

const _: () = assert!(std::mem::size_of::<TensorDesc>() == 40);

#[cfg(feature = "cuda")]
// SAFETY: plain #[repr(C)] integers.
unsafe impl cust::memory::DeviceCopy for TensorDesc {}

/// Most tensors a list may hold: tensor indices travel as `u32`, `u32::MAX` meaning "none".
pub const MAX_TENSORS: usize = (u32::MAX - 1) as usize;
/// Most chunks a list may cover: one launch block per chunk (grid limit `2^31 - 1`).
pub const MAX_CHUNKS: u64 = i32::MAX as u64;

/// A validated list of non-overlapping tensors inside a flat buffer of `buffer_len` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorList {
    specs: Vec<TensorSpec>,
    descs: Vec<TensorDesc>,
    buffer_len: usize,
    total_chunks: u64,
}

impl TensorList {
    /// Validates `specs` against a buffer of `buffer_len` values.
    ///
    /// Errors: an empty list, more than [`MAX_TENSORS`] tensors or [`MAX_CHUNKS`] chunks, an
    /// empty tensor, a tensor past the end of the buffer, two tensors that overlap (they would
    /// be modulated twice).
    pub fn new(buffer_len: usize, specs: Vec<TensorSpec>) -> Result<TensorList> {
        if specs.is_empty() {
            return Err(GpuError::Empty {
                what: "tensor list",
            });
        }
        if specs.len() > MAX_TENSORS {
            return Err(GpuError::TooLarge {
                what: "tensors",
                value: specs.len() as u64,
                limit: MAX_TENSORS as u64,
            });
        }
        for (index, s) in specs.iter().enumerate() {
            if s.len == 0 {
                return Err(GpuError::InvalidTensor {
                    index,
                    reason: "it is empty",
                });
            }
            if s.offset
                .checked_add(s.len)
                .is_none_or(|end| end > buffer_len)
            {
                return Err(GpuError::InvalidTensor {
                    index,
                    reason: "it ends past the end of the buffer",
                });
            }
        }
        let mut by_offset: Vec<usize> = (0..specs.len()).collect();
        by_offset.sort_by_key(|&i| specs[i].offset);
        for w in by_offset.windows(2) {
            let (a, b) = (&specs[w[0]], &specs[w[1]]);
            if a.offset + a.len > b.offset {
                return Err(GpuError::InvalidTensor {
                    index: w[0].max(w[1]),
                    reason: "it overlaps another tensor",
                });
            }
        }
        let mut descs = Vec::with_capacity(specs.len());
        let mut total_chunks = 0u64;
        for s in &specs {
            descs.push(TensorDesc {
                offset: s.offset as u64,
                len: s.len as u64,
                chunk_start: total_chunks,
                noise_id: s.noise_id,
                modality: s.modality as u32,
                reserved: 0,
            });
            total_chunks += s.len.div_ceil(CHUNK) as u64;
        }
        if total_chunks > MAX_CHUNKS {
            return Err(GpuError::TooLarge {
                what: "chunks",
                value: total_chunks,
                limit: MAX_CHUNKS,
            });
        }
        Ok(TensorList {
            specs,
            descs,
            buffer_len,
            total_chunks,
        })
    }

    /// Tensors of the given modalities and lengths laid end to end from offset 0, each with
    /// its position as `noise_id`; the buffer is exactly as long as their sum.
    pub fn packed(tensors: &[(Modality, usize)]) -> Result<TensorList> {
        let mut offset = 0usize;
        let mut specs = Vec::with_capacity(tensors.len());
        for (i, &(modality, len)) in tensors.iter().enumerate() {
            specs.push(TensorSpec::new(offset, len, modality, i as u64));
            offset = offset.checked_add(len).ok_or(GpuError::TooLarge {
                what: "buffer length",
                value: u64::MAX,
                limit: usize::MAX as u64,
            })?;
        }
        TensorList::new(offset, specs)
    }

    /// The tensors, in list order.
    pub fn specs(&self) -> &[TensorSpec] {
        &self.specs
    }

    /// The device table, in list order.
    pub fn descs(&self) -> &[TensorDesc] {
        &self.descs
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Always false: a list holds at least one tensor.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Length of the flat buffer the list lives in.
    pub fn buffer_len(&self) -> usize {
        self.buffer_len
    }

    /// Chunks of [`CHUNK`] values over all tensors (a tensor's last chunk may be short).
    pub fn total_chunks(&self) -> u64 {
        self.total_chunks
    }

    /// Values over all tensors.
    pub fn total_values(&self) -> usize {
        self.specs.iter().map(|s| s.len).sum()
    }
}

/// The key of step `step` in a run seeded with `seed`: `NoiseKey::new(seed).derive(step)`.
/// Tensor `t`'s key is `step_key(seed, step).derive(noise_id[t])`.
pub fn step_key(seed: u64, step: u64) -> NoiseKey {
    NoiseKey::new(seed).derive(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_lists_number_chunks() {
        let l = TensorList::packed(&[(Modality::Audio, 1), (Modality::Visual, 2049)]).unwrap();
        assert_eq!(l.buffer_len(), 2050);
        assert_eq!(l.total_chunks(), 4);
        assert_eq!(l.descs()[1].chunk_start, 1);
        assert_eq!(l.descs()[1].offset, 1);
        assert_eq!(l.descs()[1].modality, 1);
        assert_eq!(l.descs()[1].noise_id, 1);
        assert_eq!(l.total_values(), 2050);
    }

    #[test]
    fn bad_lists_are_named() {
        assert!(matches!(
            TensorList::new(10, vec![]),
            Err(GpuError::Empty { .. })
        ));
        let t = |o, l| TensorSpec::new(o, l, Modality::Audio, 0);
        assert!(matches!(
            TensorList::new(10, vec![t(0, 0)]),
            Err(GpuError::InvalidTensor { index: 0, .. })
        ));
        assert!(matches!(
            TensorList::new(10, vec![t(0, 5), t(6, 5)]),
            Err(GpuError::InvalidTensor { index: 1, .. })
        ));
        assert!(matches!(
            TensorList::new(10, vec![t(usize::MAX, 2)]),
            Err(GpuError::InvalidTensor { index: 0, .. })
        ));
        assert!(matches!(
            TensorList::new(10, vec![t(5, 3), t(0, 6)]),
            Err(GpuError::InvalidTensor { index: 1, .. })
        ));
        // Gaps and any order are fine.
        let l = TensorList::new(10, vec![t(6, 4), t(0, 2)]).unwrap();
        assert_eq!(l.descs()[1].chunk_start, 1);
    }
}
