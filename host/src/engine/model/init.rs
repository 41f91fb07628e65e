//! The official initialisation (`utils.weight_init`, applied with `model.apply`):
//! convolutions kaiming-normal (fan-out, ReLU gain), linears xavier-normal with zero bias,
//! batch norm weight 1 and bias 0, running mean 0 and variance 1.
//!
//! Each tensor draws from its own stream, `Xoshiro256++` seeded with
//! `NoiseKey::new(seed).derive(index)` (index in registration order), so a tensor's values
//! do not depend on the tensors before it.

use ogm_core::noise::{fill_normals, NoiseKey};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::engine::arena::{TensorKind, TensorTable};
use crate::engine::scalar::Scalar;

/// The initial parameter arena.
pub(crate) fn initial_params<T: Scalar>(table: &TensorTable, seed: u64) -> Vec<T> {
    let mut out = vec![T::ZERO; table.total_len()];
    for (i, t) in table.iter().enumerate() {
        let dst = &mut out[t.region.range()];
        let std = match t.kind {
            TensorKind::ConvWeight => {
                // fan_out = cout * k * k; gain sqrt(2).
                let fan_out = t.shape[0] * t.shape[2] * t.shape[3];
                Some((2.0 / fan_out as f64).sqrt())
            }
            TensorKind::LinearWeight => {
                let (fan_out, fan_in) = (t.shape[0], t.shape[1]);
                Some((2.0 / (fan_in + fan_out) as f64).sqrt())
            }
            TensorKind::BnWeight => {
                dst.fill(T::ONE);
                None
            }
            _ => None,
        };
        if let Some(std) = std {
            let key = NoiseKey::new(seed).derive(i as u64);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(key.0);
            let mut z = vec![0f32; dst.len()];
            fill_normals(&mut rng, &mut z);
            for (d, v) in dst.iter_mut().zip(z) {
                *d = T::from_f64(v as f64 * std);
            }
        }
    }
    out
}

/// The initial running statistics: mean 0, variance 1.
pub(crate) fn initial_state<T: Scalar>(table: &TensorTable) -> Vec<T> {
    let mut out = vec![T::ZERO; table.total_len()];
    for t in table.iter() {
        if t.kind == TensorKind::RunningVar {
            out[t.region.range()].fill(T::ONE);
        }
    }
    out
}
