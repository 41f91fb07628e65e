//! The benchmark's inputs: the official model's flat gradient and parameter buffers, logits and
//! labels, on the host (for the CPU reference) and on the device.

use cust::memory::DeviceBuffer;
use ogm_core::NoiseKey;
use ogm_gpu::cuda::{Gpu, OgmStep};
use ogm_gpu::workload::{official_model_params, Arena};
use ogm_gpu::{step_key, TensorList};

/// SplitMix64 stream of uniforms in [-1, 1).
struct Uniform(u64);

impl Uniform {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let r = ogm_core::noise::fmix64(self.0);
        (r >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Everything one class count needs.
pub struct Workload {
    /// The official model's flat parameter layout.
    pub arena: Arena,
    /// Its modulated tensors (the encoders' convolution weights).
    pub list: TensorList,
    /// Number of classes.
    pub classes: usize,
    /// Audio logits, `batch x classes`.
    pub logits_a: Vec<f32>,
    /// Visual logits, `batch x classes`.
    pub logits_v: Vec<f32>,
    /// Labels, one per row.
    pub labels: Vec<u32>,
    /// Gradients of every parameter (the flat buffer).
    pub grads: Vec<f32>,
    /// Parameters (the flat buffer).
    pub params: Vec<f32>,
    /// `logits_a` on the device.
    pub d_logits_a: DeviceBuffer<f32>,
    /// `logits_v` on the device.
    pub d_logits_v: DeviceBuffer<f32>,
    /// `labels` on the device.
    pub d_labels: DeviceBuffer<u32>,
    /// The pristine gradients, copied into `d_work` before every timed step.
    pub d_grads: DeviceBuffer<f32>,
    /// The gradients the timed steps modulate.
    pub d_work: DeviceBuffer<f32>,
    /// The step's device state for `list`.
    pub step: OgmStep,
    /// The noise key of the benchmark's step.
    pub key: NoiseKey,
}

impl Workload {
    /// Random but plausible inputs for `classes` classes and `batch` rows, from `seed`.
    pub fn new(
        gpu: &Gpu,
        classes: usize,
        batch: usize,
        seed: u64,
    ) -> Result<Workload, Box<dyn std::error::Error>> {
        let arena = Arena::new(official_model_params(classes));
        let list = arena.modulated()?;
        let mut u = Uniform(seed);
        // Gradients of a plausible size, each tensor with its own scale (std() differs).
        let mut grads = vec![0.0f32; arena.len];
        for (i, (p, &off)) in arena.params.iter().zip(&arena.offsets).enumerate() {
            let scale = 1e-3 * (1 + i % 7) as f32;
            for g in &mut grads[off..off + p.numel()] {
                *g = u.next() * scale;
            }
        }
        let params: Vec<f32> = (0..arena.len).map(|_| u.next() * 0.05).collect();
        // Audio confident, visual less so: the audio encoder gets slowed (k_a < 1).
        let logits_a: Vec<f32> = (0..batch * classes).map(|_| u.next() * 4.0).collect();
        let logits_v: Vec<f32> = (0..batch * classes).map(|_| u.next()).collect();
        let labels: Vec<u32> = (0..batch)
            .map(|_| ((u.next() + 1.0) * 0.5 * classes as f32) as u32 % classes as u32)
            .collect();
        Ok(Workload {
            d_logits_a: DeviceBuffer::from_slice(&logits_a)?,
            d_logits_v: DeviceBuffer::from_slice(&logits_v)?,
            d_labels: DeviceBuffer::from_slice(&labels)?,
            d_grads: DeviceBuffer::from_slice(&grads)?,
            d_work: DeviceBuffer::from_slice(&grads)?,
            step: OgmStep::new(gpu, list.clone())?,
            key: step_key(seed, 1),
            arena,
            list,
            classes,
            logits_a,
            logits_v,
            labels,
            grads,
            params,
        })
    }
}
