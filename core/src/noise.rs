//! Gaussian noise for OGM-GE: reproducible from a seed, splittable, and fast enough to cost
//! about one pass over memory.
//!
//! # The default stream, defined exactly
//!
//! Other implementations (the CUDA kernels of `ogm-gpu`, a user's own trainer) can reproduce
//! the noise bit for bit from this definition:
//!
//! * [`fmix64`] is SplitMix64's output finaliser. A [`NoiseKey`] is a `u64`;
//!   `key.derive(w) = fmix64(key ^ fmix64(w + 0x9E3779B97F4A7C15))` (wrapping add). A trainer
//!   derives one key per step and tensor, e.g. `NoiseKey::new(seed).derive(step).derive(t)`.
//! * A tensor is cut into chunks of [`crate::CHUNK`] values. Chunk `c` uses four Xoshiro256++
//!   generators ("lanes"); lane `l` is seeded exactly as `rand_xoshiro`'s
//!   `Xoshiro256PlusPlus::seed_from_u64(key.derive(c).derive(l))` (SplitMix64 fills the state).
//! * Each step draws one `u64` `r_l` from every lane and yields 8 normals, in order: the low 32
//!   bits of `r_0..r_3`, then the high 32 bits of `r_0..r_3`. A chunk's last step may yield
//!   more normals than the chunk has values; the extra ones are dropped.
//! * A 32-bit word `x` becomes a normal by [`normal_from_bits`]: `k = x >> 8`,
//!   `v = (2k + 1 - 2^24) / 2^24` (exact in `f32`, symmetric in `(-1, 1)`), and
//!   `z = sqrt(2) * erfinv(v)` with Giles' single-precision `erfinv` (absolute error below
//!   `1e-6` for `|z| < 4`; `|z|` is at most about 5.42, so tails beyond `5.4` sigma are cut).
//!   Every operation is an IEEE-rounded `f32` add, multiply, divide or square root (our own
//!   logarithm, no libm call, no fused multiply-add), so every target gives the same bits.
//!
//! Because the noise of a value depends only on (key, chunk, position), chunks can be processed
//! on any number of threads with the same result as serially.

use rand_core::RngCore;

/// Values produced per step of a [`LaneRng`]: two 32-bit halves of each lane's `u64`.
pub const STEP: usize = 8;
/// Number of interleaved Xoshiro256++ generators in a [`LaneRng`].
pub const LANES: usize = 4;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output finaliser (a bijective 64-bit mix).
#[inline]
pub const fn fmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed from which noise streams are derived by hashing (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoiseKey(pub u64);

impl NoiseKey {
    /// A key from a run's seed.
    pub const fn new(seed: u64) -> NoiseKey {
        NoiseKey(seed)
    }

    /// A child key for `word` (a step number, a tensor index, a chunk index, ...).
    pub const fn derive(self, word: u64) -> NoiseKey {
        NoiseKey(fmix64(self.0 ^ fmix64(word.wrapping_add(GOLDEN))))
    }

    /// The four-lane generator of chunk `chunk` of the tensor this key belongs to.
    pub fn chunk_stream(self, chunk: u64) -> LaneRng {
        let c = self.derive(chunk);
        LaneRng::from_lane_seeds([c.derive(0).0, c.derive(1).0, c.derive(2).0, c.derive(3).0])
    }
}

/// Four Xoshiro256++ generators stepped together, state stored lane-minor so the update
/// vectorises (`s[k][l]` is word `k` of lane `l`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneRng {
    s: [[u64; LANES]; 4],
}

impl LaneRng {
    /// Seeds each lane as `Xoshiro256PlusPlus::seed_from_u64(seeds[l])` does: four successive
    /// SplitMix64 outputs.
    pub fn from_lane_seeds(seeds: [u64; LANES]) -> LaneRng {
        let mut s = [[0u64; LANES]; 4];
        for (l, &seed) in seeds.iter().enumerate() {
            let mut state = seed;
            for word in s.iter_mut() {
                state = state.wrapping_add(GOLDEN);
                word[l] = fmix64(state);
            }
        }
        // Xoshiro's all-zero state is a fixed point; SplitMix64 never yields four zeros in a
        // row, so it cannot arise here.
        LaneRng { s }
    }

    /// One Xoshiro256++ step of every lane.
    #[inline(always)]
    pub fn next_u64s(&mut self) -> [u64; LANES] {
        let [s0, s1, s2, s3] = &mut self.s;
        let mut out = [0u64; LANES];
        for l in 0..LANES {
            out[l] = s0[l]
                .wrapping_add(s3[l])
                .rotate_left(23)
                .wrapping_add(s0[l]);
            let t = s1[l] << 17;
            s2[l] ^= s0[l];
            s3[l] ^= s1[l];
            s1[l] ^= s2[l];
            s0[l] ^= s3[l];
            s2[l] ^= t;
            s3[l] = s3[l].rotate_left(45);
        }
        out
    }

    /// The next [`STEP`] standard normals (see the module docs for the order).
    #[inline(always)]
    pub fn next_normals(&mut self) -> [f32; STEP] {
        normals_from_u64s(self.next_u64s())
    }
}

/// Turns four `u64` words into eight normals: low halves first, then high halves.
///
/// Bit-identical to calling [`normal_from_bits`] on each half. When none of the eight values
/// needs the tail polynomial (about 97% of steps) the tail is not evaluated at all, which
/// nearly halves the work of the vectorised loop.
#[inline(always)]
pub fn normals_from_u64s(r: [u64; LANES]) -> [f32; STEP] {
    let mut v = [0.0f32; STEP];
    for l in 0..LANES {
        v[l] = uniform_symmetric(r[l] as u32);
        v[LANES + l] = uniform_symmetric((r[l] >> 32) as u32);
    }
    let mut w = [0.0f32; STEP];
    for i in 0..STEP {
        w[i] = erfinv_w(v[i]);
    }
    let mut z = [0.0f32; STEP];
    if w.iter().fold(0.0f32, |m, &x| if x > m { x } else { m }) < TAIL_W {
        for i in 0..STEP {
            z[i] = core::f32::consts::SQRT_2 * (erfinv_central(w[i]) * v[i]);
        }
    } else {
        for i in 0..STEP {
            z[i] = core::f32::consts::SQRT_2 * (erfinv_select(w[i]) * v[i]);
        }
    }
    z
}

/// Natural logarithm of a positive normal `f32`, from its bits and an odd series in
/// `s = (m - 1) / (m + 1)`; relative error about 1e-7, no table, no branch.
#[inline(always)]
fn ln_positive(y: f32) -> f32 {
    const SQRT_HALF_BITS: u32 = 0x3F35_04F3;
    let bits = y.to_bits();
    // Exponent chosen so that the mantissa m lands in [sqrt(1/2), sqrt(2)).
    let e = (bits.wrapping_sub(SQRT_HALF_BITS) as i32) >> 23;
    let m = f32::from_bits(bits.wrapping_sub((e as u32) << 23));
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0))));
    let ln_m = 2.0 * s + 2.0 * s * p;
    e as f32 * core::f32::consts::LN_2 + ln_m
}

/// IEEE (correctly rounded) square root. `core` has no `f32::sqrt` on stable; libm's is an
/// out-of-line call that stops the noise loop from vectorising, so on x86-64 use the SSE
/// intrinsic, which LLVM lowers to a plain (vectorisable) square root.
#[inline(always)]
fn sqrt(x: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_cvtss_f32, _mm_set_ss, _mm_sqrt_ss};
        // SAFETY: SSE is part of the x86-64 baseline.
        unsafe { _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x))) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        libm::sqrtf(x)
    }
}

/// Where Giles' approximation switches from the central to the tail polynomial.
const TAIL_W: f32 = 5.0;

/// `w = -ln(1 - x^2)`, the variable of Giles' polynomials.
#[inline(always)]
fn erfinv_w(x: f32) -> f32 {
    -ln_positive((1.0 - x) * (1.0 + x))
}

/// Giles' central polynomial (for `w < 5`), to be multiplied by `x`.
#[inline(always)]
fn erfinv_central(w: f32) -> f32 {
    let a = w - 2.5;
    let mut p = 2.810_226_4e-8f32;
    p = 3.432_739_4e-7 + p * a;
    p = -3.523_387_7e-6 + p * a;
    p = -4.391_506_5e-6 + p * a;
    p = 0.000_218_580_87 + p * a;
    p = -0.001_253_725 + p * a;
    p = -0.004_177_681_6 + p * a;
    p = 0.246_640_73 + p * a;
    1.501_409_4 + p * a
}

/// Giles' tail polynomial (for `w >= 5`), to be multiplied by `x`.
#[inline(always)]
fn erfinv_tail(w: f32) -> f32 {
    let b = sqrt(w) - 3.0;
    let mut q = -0.000_200_214_26f32;
    q = 0.000_100_950_56 + q * b;
    q = 0.001_349_343_2 + q * b;
    q = -0.003_673_428_4 + q * b;
    q = 0.005_739_507_7 + q * b;
    q = -0.007_622_461 + q * b;
    q = 0.009_438_870_5 + q * b;
    q = 1.001_674 + q * b;
    2.832_976_8 + q * b
}

/// Both pieces evaluated and one selected, without a branch (so that it vectorises).
#[inline(always)]
fn erfinv_select(w: f32) -> f32 {
    let (p, q) = (erfinv_central(w), erfinv_tail(w));
    if w < TAIL_W {
        p
    } else {
        q
    }
}

/// Inverse error function for `|x| < 1` (Giles 2010, single precision).
#[inline(always)]
pub fn erfinv(x: f32) -> f32 {
    erfinv_select(erfinv_w(x)) * x
}

/// The symmetric uniform of the module docs: `(2 (x >> 8) + 1 - 2^24) / 2^24`, exact in f32.
#[inline(always)]
fn uniform_symmetric(x: u32) -> f32 {
    const SCALE: f32 = 1.0 / 16_777_216.0; // 2^-24
    let k = (x >> 8) as i32;
    (2 * k + 1 - (1 << 24)) as f32 * SCALE
}

/// A standard normal from 32 random bits (see the module docs).
#[inline(always)]
pub fn normal_from_bits(x: u32) -> f32 {
    let v = uniform_symmetric(x);
    core::f32::consts::SQRT_2 * (erfinv_select(erfinv_w(v)) * v)
}

/// The largest magnitude [`normal_from_bits`] can return (at `x = 0` and `x = u32::MAX`).
pub fn max_normal_magnitude() -> f32 {
    normal_from_bits(0)
        .abs()
        .max(normal_from_bits(u32::MAX).abs())
}

/// Fills `out` with standard normals drawn from any `RngCore` (one `next_u64` per two values,
/// four words per [`STEP`], same mapping as the default stream).
pub fn fill_normals<R: RngCore + ?Sized>(rng: &mut R, out: &mut [f32]) {
    for c in out.chunks_mut(STEP) {
        let z = normals_from_u64s([
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
        ]);
        c.copy_from_slice(&z[..c.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn lanes_match_rand_xoshiro() {
        let seeds = [1u64, 2, 0xDEAD_BEEF, u64::MAX];
        let mut lanes = LaneRng::from_lane_seeds(seeds);
        let mut refs: std::vec::Vec<_> = seeds
            .iter()
            .map(|&s| Xoshiro256PlusPlus::seed_from_u64(s))
            .collect();
        for _ in 0..100 {
            let got = lanes.next_u64s();
            for l in 0..LANES {
                assert_eq!(got[l], refs[l].next_u64());
            }
        }
    }

    #[test]
    fn erfinv_inverts_erf() {
        // Reference: Newton on f64 erf from the approximation's own starting point.
        for i in 1..2000 {
            let v = -1.0 + i as f64 / 1000.0;
            let z = erfinv(v as f32) as f64;
            let mut r = z;
            for _ in 0..50 {
                let f = libm::erf(r) - v;
                r -= f / (2.0 / core::f64::consts::PI.sqrt() * libm::exp(-r * r));
            }
            assert!(
                (z - r).abs() <= 2e-6 * r.abs().max(1.0),
                "v {v}: {z} vs {r}"
            );
        }
    }

    #[test]
    fn batched_normals_equal_single_ones() {
        let mut rng = LaneRng::from_lane_seeds([9, 8, 7, 6]);
        // Include the extreme words so that the tail branch is taken too.
        let mut words = [[0u64, u64::MAX, 1 << 40, 12345]; 1].to_vec();
        for _ in 0..5000 {
            words.push(rng.next_u64s());
        }
        for r in words {
            let z = normals_from_u64s(r);
            for l in 0..LANES {
                assert_eq!(z[l].to_bits(), normal_from_bits(r[l] as u32).to_bits());
                assert_eq!(
                    z[LANES + l].to_bits(),
                    normal_from_bits((r[l] >> 32) as u32).to_bits()
                );
            }
        }
    }

    #[test]
    fn tails_are_symmetric_and_bounded() {
        let m = max_normal_magnitude();
        assert!(m > 5.3 && m < 5.5, "{m}");
        assert_eq!(normal_from_bits(0), -normal_from_bits(u32::MAX));
        for x in [0u32, 255, 256, 1 << 31, u32::MAX] {
            assert!(normal_from_bits(x).is_finite());
        }
    }

    #[test]
    fn ln_matches_libm() {
        let mut y = 1.2e-7f32;
        while y <= 1.0 {
            let got = ln_positive(y);
            let want = libm::logf(y);
            assert!((got - want).abs() <= 2e-7 * want.abs().max(1.0), "{y}");
            y *= 1.013;
        }
    }
}
