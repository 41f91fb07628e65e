//! Gaussian noise for OGM-GE: reproducible from a seed, splittable, and vectorised (see
//! [Speed](#speed)).
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
//!
//! # Speed
//!
//! The definition above is the only one; two loops evaluate it and give the same bits:
//!
//! * a portable loop: [`BLOCK`] words drawn first ([`LaneRng::next_words`]), then converted in
//!   a branch-free loop that LLVM vectorises. A block whose words all lie below the tail
//!   threshold (decided on the integers, exactly) evaluates only Giles' central piece; the
//!   others evaluate both pieces and select per value;
//! * on x86-64 CPUs with AVX2 (detected at run time), a loop written with intrinsics
//!   (`noise/avx2.rs`): LLVM keeps the four 64-bit lanes in scalar registers and overlaps too
//!   few of the long dependency chains of the conversion, so there the lanes step in one
//!   256-bit register and four vectors of eight normals are converted side by side.
//!
//! Tests check the AVX2 conversion against [`normal_from_bits`] on all 2^24 inputs and both
//! loops against the step-by-step definition. What remains is about 70 vector operations per
//! eight values (the generator, the division, two polynomials): on one core of the
//! development machine OGM_GE's statistics, scaling and noise together cost 2.3 to 2.9
//! copies of the gradient (README, `scripts/bench-core.sh`).

use rand_core::RngCore;

#[cfg(target_arch = "x86_64")]
mod avx2;

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

    /// The next [`BLOCK`] random words, in stream order (per step: the low halves of lanes
    /// 0..3, then their high halves).
    ///
    /// Separating the generator from the conversion is what lets both vectorise: the four
    /// lanes step together in one 256-bit register, and the conversion becomes a plain loop
    /// over 32-bit words that LLVM runs eight at a time.
    #[inline(always)]
    pub fn next_words(&mut self) -> [u32; BLOCK] {
        let mut words = [0u32; BLOCK];
        for step in words.chunks_exact_mut(STEP) {
            split_words(self.next_u64s(), step);
        }
        words
    }

    /// The next [`BLOCK`] standard normals: `BLOCK / STEP` calls of
    /// [`next_normals`](Self::next_normals), bit for bit, but vectorised.
    #[inline(always)]
    pub fn next_block(&mut self) -> [f32; BLOCK] {
        let words = self.next_words();
        let mut z = [0.0f32; BLOCK];
        normals_from_words(&words, &mut z);
        z
    }
}

/// Normals produced by [`LaneRng::next_block`]: 4 steps.
///
/// Measured on the portable path (x86-64 without AVX2): at 32 LLVM unrolls the four steps and
/// keeps the lanes in vector registers, and only about 1 - (1 - 0.0034)^32 = 10% of blocks
/// need the tail piece (those evaluate both pieces); 128 was a third slower.
pub const BLOCK: usize = 32;

/// Writes one step's four words as eight 32-bit words in stream order.
#[inline(always)]
fn split_words(r: [u64; LANES], out: &mut [u32]) {
    for l in 0..LANES {
        out[l] = r[l] as u32;
        out[LANES + l] = (r[l] >> 32) as u32;
    }
}

/// Turns four `u64` words into eight normals: low halves first, then high halves.
///
/// Bit-identical to calling [`normal_from_bits`] on each half.
#[inline(always)]
pub fn normals_from_u64s(r: [u64; LANES]) -> [f32; STEP] {
    let mut words = [0u32; STEP];
    split_words(r, &mut words);
    words.map(normal_from_bits)
}

/// `|2k + 1 - 2^24|` for `k = x >> 8`: the magnitude of the symmetric uniform in units of
/// `2^-24` (an odd integer in `[1, 2^24 - 1]`).
#[inline(always)]
fn uniform_magnitude(x: u32) -> u32 {
    let k = (x >> 8) as i32;
    (2 * k + 1 - (1 << 24)).unsigned_abs()
}

/// Every word whose [`uniform_magnitude`] is below this has `w < 5`, i.e. takes Giles'
/// central piece (checked against all 2^24 inputs by a test). Deciding on the integer before
/// any float work lets a block pick its loop up front, so the common loop has no select.
const TAIL_MAGNITUDE: u32 = 16_720_599;

/// Whether any word of `words` may need Giles' tail piece (conservative: a `true` only costs
/// time, since the tail loop selects per value).
#[inline(always)]
fn needs_tail(words: &[u32]) -> bool {
    let mut any = 0u32;
    for &x in words {
        any |= (uniform_magnitude(x) >= TAIL_MAGNITUDE) as u32;
    }
    any != 0
}

/// A normal from one word when its `w` is known to be below 5 (the central piece only).
#[inline(always)]
fn normal_central(x: u32) -> f32 {
    let v = uniform_symmetric(x);
    core::f32::consts::SQRT_2 * (erfinv_central(erfinv_w(v)) * v)
}

/// Converts words to normals, `out[i] = normal_from_bits(words[i])` bit for bit. Written as
/// two branch-free loops (one with the central piece only, one that evaluates both pieces and
/// selects) so that LLVM's loop vectoriser runs them at full width.
#[inline(always)]
fn normals_from_words(words: &[u32], out: &mut [f32]) {
    if needs_tail(words) {
        for (z, &x) in out.iter_mut().zip(words) {
            *z = normal_from_bits(x);
        }
    } else {
        for (z, &x) in out.iter_mut().zip(words) {
            *z = normal_central(x);
        }
    }
}

/// `g <- coeff * g + sigma * z` over one block with `z` converted from `words` on the fly
/// (the normals never touch memory). Bit-identical to `normals_from_words` followed by the
/// update, since each value's operations are the same.
#[inline(always)]
fn modulate_with_words(g: &mut [f32], words: &[u32], coeff: f32, sigma: f32) {
    if needs_tail(words) {
        for (g, &x) in g.iter_mut().zip(words) {
            *g = coeff * *g + sigma * normal_from_bits(x);
        }
    } else {
        for (g, &x) in g.iter_mut().zip(words) {
            *g = coeff * *g + sigma * normal_central(x);
        }
    }
}

/// `g <- coeff * g + sigma * z` with `z` the next `g.len()` normals of `rng`, in stream order
/// (the noise path of [`crate::modulate_chunk`]). Runs the AVX2 loop where the CPU has AVX2,
/// the portable one otherwise; both give the same bits.
pub(crate) fn modulate_stream(rng: &mut LaneRng, g: &mut [f32], coeff: f32, sigma: f32) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { avx2::modulate(rng, g, coeff, sigma) };
        return;
    }
    modulate_stream_portable(rng, g, coeff, sigma);
}

/// The portable loop of [`modulate_stream`]: blocks of [`BLOCK`] words, then the conversion.
/// A short last block draws a whole block of words and drops the surplus, as the definition
/// drops a chunk's surplus normals: the values written are the same.
#[inline(always)]
fn modulate_stream_portable(rng: &mut LaneRng, g: &mut [f32], coeff: f32, sigma: f32) {
    for block in g.chunks_mut(BLOCK) {
        let words = rng.next_words();
        modulate_with_words(block, &words[..block.len()], coeff, sigma);
    }
}

/// Bits of `sqrt(1/2)` in `f32`: [`ln_positive`] splits `y = 2^e m` with `m` in
/// `[sqrt(1/2), sqrt(2))`.
const SQRT_HALF_BITS: u32 = 0x3F35_04F3;

/// The odd series of `ln((1 + s) / (1 - s)) / (2 s) - 1` in `s^2`: `1/3, 1/5, 1/7, 1/9`.
const LN_C: [f32; 4] = [1.0 / 3.0, 1.0 / 5.0, 1.0 / 7.0, 1.0 / 9.0];

/// Natural logarithm of a positive normal `f32`, from its bits and an odd series in
/// `s = (m - 1) / (m + 1)`; relative error about 1e-7, no table, no branch.
#[inline(always)]
fn ln_positive(y: f32) -> f32 {
    let bits = y.to_bits();
    // Exponent chosen so that the mantissa m lands in [sqrt(1/2), sqrt(2)).
    let e = (bits.wrapping_sub(SQRT_HALF_BITS) as i32) >> 23;
    let m = f32::from_bits(bits.wrapping_sub((e as u32) << 23));
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = s2 * (LN_C[0] + s2 * (LN_C[1] + s2 * (LN_C[2] + s2 * LN_C[3])));
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

/// Coefficients of Giles' central polynomial in `a = w - 2.5`, highest degree first.
const CENTRAL: [f32; 9] = [
    2.810_226_4e-8,
    3.432_739_4e-7,
    -3.523_387_7e-6,
    -4.391_506_5e-6,
    0.000_218_580_87,
    -0.001_253_725,
    -0.004_177_681_6,
    0.246_640_73,
    1.501_409_4,
];

/// Coefficients of Giles' tail polynomial in `b = sqrt(w) - 3`, highest degree first.
const TAIL: [f32; 9] = [
    -0.000_200_214_26,
    0.000_100_950_56,
    0.001_349_343_2,
    -0.003_673_428_4,
    0.005_739_507_7,
    -0.007_622_461,
    0.009_438_870_5,
    1.001_674,
    2.832_976_8,
];

/// Horner's rule, `p <- c + p * t` from the highest coefficient down (the exact order of the
/// definition; the CUDA code spells out the same steps).
#[inline(always)]
fn horner(coeffs: &[f32; 9], t: f32) -> f32 {
    let mut p = coeffs[0];
    for &c in &coeffs[1..] {
        p = c + p * t;
    }
    p
}

/// Giles' central polynomial (for `w < 5`), to be multiplied by `x`.
#[inline(always)]
fn erfinv_central(w: f32) -> f32 {
    horner(&CENTRAL, w - 2.5)
}

/// Giles' tail polynomial (for `w >= 5`), to be multiplied by `x`.
#[inline(always)]
fn erfinv_tail(w: f32) -> f32 {
    horner(&TAIL, sqrt(w) - 3.0)
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

/// `2^-24`, the spacing of the symmetric uniforms.
const UNIFORM_SCALE: f32 = 1.0 / 16_777_216.0;

/// The symmetric uniform of the module docs: `(2 (x >> 8) + 1 - 2^24) / 2^24`, exact in f32.
#[inline(always)]
fn uniform_symmetric(x: u32) -> f32 {
    let k = (x >> 8) as i32;
    (2 * k + 1 - (1 << 24)) as f32 * UNIFORM_SCALE
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
    let mut words = [0u32; BLOCK];
    for block in out.chunks_mut(BLOCK) {
        // Exactly four draws per started step, as documented: a short last block must not
        // advance the generator further than the step-by-step definition does.
        let steps = block.len().div_ceil(STEP);
        for step in words[..steps * STEP].chunks_exact_mut(STEP) {
            split_words(
                [
                    rng.next_u64(),
                    rng.next_u64(),
                    rng.next_u64(),
                    rng.next_u64(),
                ],
                step,
            );
        }
        let n = block.len();
        normals_from_words(&words[..n], block);
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
    fn stream_loop_follows_the_definition() {
        // The block loop against the step-by-step definition: next_u64s, halves in order,
        // normal_from_bits, `k g + sigma z`; lengths that end inside a step and a block.
        let key = NoiseKey::new(77);
        for len in [1usize, 5, 8, 127, 128, 129, 1024] {
            for c in 0..50u64 {
                let g0: std::vec::Vec<f32> = (0..len).map(|i| i as f32 * 0.125 - 3.0).collect();
                let mut got = g0.clone();
                modulate_stream(&mut key.chunk_stream(c), &mut got, 0.5, 1.5);
                let mut rng = key.chunk_stream(c);
                let mut want = g0;
                for step in want.chunks_mut(STEP) {
                    let r = rng.next_u64s();
                    for (i, g) in step.iter_mut().enumerate() {
                        let x = if i < LANES {
                            r[i] as u32
                        } else {
                            (r[i - LANES] >> 32) as u32
                        };
                        *g = 0.5 * *g + 1.5 * normal_from_bits(x);
                    }
                }
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "len {len}, chunk {c}"
                );
            }
        }
    }

    #[test]
    fn fill_normals_draws_four_words_per_started_step() {
        // Blocks must not change what the documented step-by-step loop draws or yields.
        struct Counting(Xoshiro256PlusPlus, usize);
        impl RngCore for Counting {
            fn next_u32(&mut self) -> u32 {
                self.next_u64() as u32
            }
            fn next_u64(&mut self) -> u64 {
                self.1 += 1;
                self.0.next_u64()
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                self.0.fill_bytes(dest)
            }
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
                self.0.try_fill_bytes(dest)
            }
        }
        for n in [0usize, 1, 7, 8, 9, 31, 32, 33, 100, 257] {
            let mut rng = Counting(Xoshiro256PlusPlus::seed_from_u64(n as u64), 0);
            let mut out = std::vec![f32::NAN; n];
            fill_normals(&mut rng, &mut out);
            assert_eq!(rng.1, 4 * n.div_ceil(STEP), "{n}");
            let mut reference = Xoshiro256PlusPlus::seed_from_u64(n as u64);
            for c in out.chunks(STEP) {
                let r = [0; LANES].map(|_| reference.next_u64());
                let z = normals_from_u64s(r);
                assert!(
                    c.iter().zip(&z).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{n}"
                );
            }
        }
    }

    #[test]
    fn blocks_equal_steps() {
        let mut a = LaneRng::from_lane_seeds([3, 1, 4, 1]);
        let mut b = a.clone();
        for _ in 0..20 {
            let block = a.next_block();
            for step in block.chunks_exact(STEP) {
                let want = b.next_normals();
                assert!(step
                    .iter()
                    .zip(want)
                    .all(|(x, y)| x.to_bits() == y.to_bits()));
            }
        }
        assert_eq!(a, b);
    }

    #[test]
    fn tail_magnitude_is_exact() {
        // The smallest uniform magnitude whose w reaches the tail: every smaller one takes the
        // central piece, which is what lets `needs_tail` decide on the integer.
        let mut smallest = u32::MAX;
        for k in 0..1u32 << 24 {
            let x = k << 8;
            if erfinv_w(uniform_symmetric(x)) >= TAIL_W {
                smallest = smallest.min(uniform_magnitude(x));
            }
        }
        assert_eq!(smallest, TAIL_MAGNITUDE);
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
