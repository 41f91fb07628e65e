//! In-place gradient modulation: `OGM` scales, `OGM_GE` scales and adds Gaussian noise.
//!
//! `OGM`:    `g <- k * g`.
//! `OGM_GE`: `g <- k * g + sigma * z`, `sigma = std(g) + 1e-8` with the unbiased standard
//! deviation of the gradient *before* scaling, `z` standard normal (official `main.py`).
//!
//! Every function validates before it writes: on an error the gradient is untouched.

use rand_core::RngCore;

use crate::error::{check_finite, OgmError, Result};
use crate::noise::{max_normal_magnitude, modulate_stream, normals_from_u64s, NoiseKey, STEP};
use crate::stats::GradStats;
use crate::CHUNK;

/// What OGM-GE does to a gradient (the official `--modulation` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// No modulation (the baseline).
    Normal,
    /// Scale the dominant modality's encoder gradients.
    Ogm,
    /// Scale, then add Gaussian noise to both encoders' gradients (generalisation enhancement).
    OgmGe,
}

impl Mode {
    /// The official flag spelling: `Normal`, `OGM`, `OGM_GE`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Normal => "Normal",
            Mode::Ogm => "OGM",
            Mode::OgmGe => "OGM_GE",
        }
    }

    /// Parses the official flag spelling.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "Normal" => Some(Mode::Normal),
            "OGM" => Some(Mode::Ogm),
            "OGM_GE" => Some(Mode::OgmGe),
            _ => None,
        }
    }
}

/// Validated scalars of one tensor's modulation, ready for [`modulate_chunk`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseParams {
    /// The coefficient `k`.
    pub coeff: f32,
    /// The noise scale `sigma` (0 for `OGM`).
    pub sigma: f32,
}

impl NoiseParams {
    /// Checks `coeff` and the tensor's statistics and derives `sigma` for `mode`.
    ///
    /// Errors: a non-finite `coeff`, statistics of a non-finite tensor, or a tensor so close to
    /// the `f32` range that `|k| * max|g| + sigma * max|z|` could overflow (nothing is written).
    pub fn new(stats: &GradStats, coeff: f64, mode: Mode) -> Result<NoiseParams> {
        check_finite("coeff", coeff)?;
        // A coefficient beyond the f32 range would become inf in the f32 arithmetic.
        if !(coeff as f32).is_finite() {
            return Err(OgmError::Overflow { what: "coeff" });
        }
        if !(stats.mean.is_finite() && stats.m2.is_finite() && stats.max_abs.is_finite()) {
            return Err(OgmError::NonFinite {
                what: "gradient",
                index: 0,
            });
        }
        let sigma = match mode {
            Mode::OgmGe => stats.noise_sigma(),
            Mode::Ogm | Mode::Normal => 0.0,
        };
        let bound = coeff.abs() * stats.max_abs + sigma * max_normal_magnitude() as f64;
        // 0.999 leaves room for the f32 rounding of each product and of the sum.
        // Written so that a NaN bound (impossible after the checks above) also refuses.
        if bound.partial_cmp(&(f32::MAX as f64 * 0.999)) != Some(core::cmp::Ordering::Less) {
            return Err(OgmError::Overflow { what: "gradient" });
        }
        Ok(NoiseParams {
            coeff: coeff as f32,
            sigma: sigma as f32,
        })
    }
}

crate::simd::dispatch_avx2! {
    /// Modulates chunk `chunk_index` of a tensor whose key is `key`: `g <- k g + sigma z` with the
    /// default noise stream (or `g <- k g` when `sigma == 0`, drawing nothing).
    ///
    /// This is the unit of parallel work: call it on `grad.chunks_mut(CHUNK).enumerate()` in any
    /// order, on any threads, and the result equals [`modulate_tensor`]'s bit for bit. `chunk`
    /// holds at most [`CHUNK`] values (only the last chunk of a tensor may be shorter).
    pub fn modulate_chunk(chunk: &mut [f32], chunk_index: u64, p: NoiseParams, key: NoiseKey) -> () => modulate_chunk_body
}

#[inline(always)]
fn modulate_chunk_body(chunk: &mut [f32], chunk_index: u64, p: NoiseParams, key: NoiseKey) {
    debug_assert!(chunk.len() <= CHUNK);
    let NoiseParams { coeff, sigma } = p;
    if sigma == 0.0 {
        for g in chunk.iter_mut() {
            *g *= coeff;
        }
        return;
    }
    modulate_stream(&mut key.chunk_stream(chunk_index), chunk, coeff, sigma);
}

/// Modulates a whole gradient tensor in place with the default, splittable noise stream.
///
/// `key` identifies this tensor in this step (e.g. `NoiseKey::new(seed).derive(step)
/// .derive(tensor_index)`). Returns the statistics of the unscaled gradient (`None` for
/// [`Mode::Normal`], which touches nothing).
///
/// Errors (the gradient is untouched): an empty or non-finite gradient, a non-finite
/// coefficient, an overflowing result (see [`NoiseParams::new`]).
pub fn modulate_tensor(
    grad: &mut [f32],
    mode: Mode,
    coeff: f64,
    key: NoiseKey,
) -> Result<Option<GradStats>> {
    if mode == Mode::Normal {
        return Ok(None);
    }
    let stats = GradStats::of(grad)?;
    let p = NoiseParams::new(&stats, coeff, mode)?;
    for (c, chunk) in grad.chunks_mut(CHUNK).enumerate() {
        modulate_chunk(chunk, c as u64, p, key);
    }
    Ok(Some(stats))
}

/// Like [`modulate_tensor`], but draws the noise sequentially from any `RngCore` (four
/// `next_u64` per eight values, the default mapping from bits to normals). Not splittable:
/// the result depends on the generator's position.
pub fn modulate_tensor_with_rng<R: RngCore + ?Sized>(
    grad: &mut [f32],
    mode: Mode,
    coeff: f64,
    rng: &mut R,
) -> Result<Option<GradStats>> {
    if mode == Mode::Normal {
        return Ok(None);
    }
    let stats = GradStats::of(grad)?;
    let NoiseParams { coeff, sigma } = NoiseParams::new(&stats, coeff, mode)?;
    if sigma == 0.0 {
        grad.iter_mut().for_each(|g| *g *= coeff);
        return Ok(Some(stats));
    }
    for c in grad.chunks_mut(STEP) {
        let z = normals_from_u64s([
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
        ]);
        for (g, z) in c.iter_mut().zip(z) {
            *g = coeff * *g + sigma * z;
        }
    }
    Ok(Some(stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ogm_scales_exactly() {
        let mut g = [1.0f32, -2.0, 4.0];
        modulate_tensor(&mut g, Mode::Ogm, 0.5, NoiseKey::new(1)).unwrap();
        assert_eq!(g, [0.5, -1.0, 2.0]);
    }

    #[test]
    fn normal_touches_nothing() {
        let mut g = [1.0f32, f32::NAN];
        assert_eq!(
            modulate_tensor(&mut g, Mode::Normal, 0.5, NoiseKey::new(1)),
            Ok(None)
        );
        assert_eq!(g[0], 1.0);
    }

    #[test]
    fn errors_leave_the_gradient_untouched() {
        let mut g = [1.0f32, 2.0, f32::INFINITY, 3.0];
        let before = g;
        assert!(modulate_tensor(&mut g, Mode::OgmGe, 0.5, NoiseKey::new(1)).is_err());
        assert_eq!(g[..2], before[..2]);
        let mut g = [-3.0e38f32, 3.0e38];
        assert_eq!(
            modulate_tensor(&mut g, Mode::OgmGe, 1.0, NoiseKey::new(1)),
            Err(OgmError::Overflow { what: "gradient" })
        );
        assert_eq!(g, [-3.0e38, 3.0e38]);
        let mut g = [1.0f32];
        assert!(matches!(
            modulate_tensor(&mut g, Mode::Ogm, f64::NAN, NoiseKey::new(1)),
            Err(OgmError::NonFinite { what: "coeff", .. })
        ));
    }

    #[test]
    fn coefficients_beyond_f32_are_refused() {
        // Found by the modulate fuzz target: a zero gradient kept the bound small and
        // 1e39 as f32 = inf turned it into NaN.
        let mut g = [0.0f32; 4];
        assert_eq!(
            modulate_tensor(&mut g, Mode::Ogm, 1e39, NoiseKey::new(0)),
            Err(OgmError::Overflow { what: "coeff" })
        );
        assert_eq!(g, [0.0; 4]);
        assert!(NoiseParams::new(&GradStats::EMPTY, -5e300, Mode::Normal).is_err());
    }

    #[test]
    fn single_value_gets_floor_sigma() {
        let mut g = [2.0f32];
        let s = modulate_tensor(&mut g, Mode::OgmGe, 1.0, NoiseKey::new(3))
            .unwrap()
            .unwrap();
        assert_eq!(s.std_unbiased(), None);
        assert!((g[0] - 2.0).abs() < 1e-7);
    }
}
