//! The default stream's modulation loop written with AVX2 intrinsics.
//!
//! The portable code in the parent module vectorises, but LLVM leaves two costs in it: the
//! four Xoshiro lanes stay in scalar registers (a 64-bit rotate is three vector instructions,
//! so its cost model keeps them scalar), and each 8-wide normal is one long chain of dependent
//! operations (a division, two polynomials), so the out-of-order core overlaps only about two
//! of them and waits on latency. Here the four lanes live in one 256-bit register, a step's
//! words are put in stream order with one permute, and every operation is issued for
//! [`GROUP`] independent vectors side by side.
//!
//! Only IEEE-rounded add, subtract, multiply, divide and square root are used, each in the
//! order of the scalar definition (no FMA is enabled), so the bits equal the portable code's;
//! `tests::avx2_equals_portable` checks it.

use core::arch::x86_64::*;

use super::{LaneRng, CENTRAL, LN_C, SQRT_HALF_BITS, STEP, TAIL, TAIL_W, UNIFORM_SCALE};

/// Steps (vectors of eight values) converted side by side: enough independent chains to keep
/// the floating-point pipes busy, few enough that their temporaries fit in 16 registers.
const GROUP: usize = 4;

/// Values per iteration of the main loop.
const GROUP_VALUES: usize = GROUP * STEP;

/// One Xoshiro256++ step of the four lanes held in `s` (`s[k]` is word `k` of every lane).
#[inline]
#[target_feature(enable = "avx2")]
fn xoshiro_step(s: &mut [__m256i; 4]) -> __m256i {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn rotl<const L: i32, const R: i32>(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_slli_epi64::<L>(x), _mm256_srli_epi64::<R>(x))
    }
    let out = _mm256_add_epi64(rotl::<23, 41>(_mm256_add_epi64(s[0], s[3])), s[0]);
    let t = _mm256_slli_epi64::<17>(s[1]);
    s[2] = _mm256_xor_si256(s[2], s[0]);
    s[3] = _mm256_xor_si256(s[3], s[1]);
    s[1] = _mm256_xor_si256(s[1], s[2]);
    s[0] = _mm256_xor_si256(s[0], s[3]);
    s[2] = _mm256_xor_si256(s[2], t);
    s[3] = rotl::<45, 19>(s[3]);
    out
}

/// Broadcast of an `f32` constant.
#[inline]
#[target_feature(enable = "avx2")]
fn splat(x: f32) -> __m256 {
    _mm256_set1_ps(x)
}

/// `op(a[j], b[j])` for every vector of a group.
#[inline]
#[target_feature(enable = "avx2")]
fn map2(
    a: [__m256; GROUP],
    b: [__m256; GROUP],
    op: impl Fn(__m256, __m256) -> __m256,
) -> [__m256; GROUP] {
    let mut out = a;
    for j in 0..GROUP {
        out[j] = op(a[j], b[j]);
    }
    out
}

/// `op(a[j])` for every vector of a group.
#[inline]
#[target_feature(enable = "avx2")]
fn map1(a: [__m256; GROUP], op: impl Fn(__m256) -> __m256) -> [__m256; GROUP] {
    a.map(op)
}

/// Horner's rule in the parent's order, `p <- c + p * t`, for a group.
#[inline]
#[target_feature(enable = "avx2")]
fn horner(coeffs: &[f32; 9], t: [__m256; GROUP]) -> [__m256; GROUP] {
    let mut p = [splat(coeffs[0]); GROUP];
    for &c in &coeffs[1..] {
        p = map2(p, t, |p, t| _mm256_add_ps(splat(c), _mm256_mul_ps(p, t)));
    }
    p
}

/// The symmetric uniforms of a group of words (`uniform_symmetric`).
#[inline]
#[target_feature(enable = "avx2")]
fn uniforms(words: [__m256i; GROUP]) -> [__m256; GROUP] {
    words.map(|x| {
        // 2k + 1 - 2^24 with k = x >> 8: (x >> 7) | 1 is 2k + 1.
        let odd = _mm256_or_si256(_mm256_srli_epi32::<7>(x), _mm256_set1_epi32(1));
        let centred = _mm256_sub_epi32(odd, _mm256_set1_epi32(1 << 24));
        _mm256_mul_ps(_mm256_cvtepi32_ps(centred), splat(UNIFORM_SCALE))
    })
}

/// `w = -ln((1 - v)(1 + v))` for a group (`erfinv_w` with `ln_positive` inlined).
#[inline]
#[target_feature(enable = "avx2")]
fn erfinv_w(v: [__m256; GROUP]) -> [__m256; GROUP] {
    let one = splat(1.0);
    let y = map1(v, |v| {
        _mm256_mul_ps(_mm256_sub_ps(one, v), _mm256_add_ps(one, v))
    });
    let bits = y.map(|y| _mm256_castps_si256(y));
    let e = bits.map(|b| {
        _mm256_srai_epi32::<23>(_mm256_sub_epi32(
            b,
            _mm256_set1_epi32(SQRT_HALF_BITS as i32),
        ))
    });
    let mut m = y;
    for j in 0..GROUP {
        m[j] = _mm256_castsi256_ps(_mm256_sub_epi32(bits[j], _mm256_slli_epi32::<23>(e[j])));
    }
    let s = map1(m, |m| {
        _mm256_div_ps(_mm256_sub_ps(m, one), _mm256_add_ps(m, one))
    });
    let s2 = map1(s, |s| _mm256_mul_ps(s, s));
    let mut p = map1(s2, |s2| _mm256_mul_ps(s2, splat(LN_C[3])));
    p = map2(p, s2, |p, s2| {
        _mm256_mul_ps(s2, _mm256_add_ps(splat(LN_C[2]), p))
    });
    p = map2(p, s2, |p, s2| {
        _mm256_mul_ps(s2, _mm256_add_ps(splat(LN_C[1]), p))
    });
    p = map2(p, s2, |p, s2| {
        _mm256_mul_ps(s2, _mm256_add_ps(splat(LN_C[0]), p))
    });
    let two_s = map1(s, |s| _mm256_mul_ps(splat(2.0), s));
    let ln_m = map2(two_s, p, |t, p| _mm256_add_ps(t, _mm256_mul_ps(t, p)));
    let mut w = ln_m;
    for j in 0..GROUP {
        let ln = _mm256_add_ps(
            _mm256_mul_ps(_mm256_cvtepi32_ps(e[j]), splat(core::f32::consts::LN_2)),
            ln_m[j],
        );
        // Negation flips the sign bit, as Rust's unary minus does.
        w[j] = _mm256_xor_ps(ln, splat(-0.0));
    }
    w
}

/// Giles' polynomial factor for a group: the central piece, and where some lane has
/// `w >= 5` (about one group in ten), the tail piece selected in those lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn erfinv_factor(w: [__m256; GROUP]) -> [__m256; GROUP] {
    let mut p = horner(&CENTRAL, map1(w, |w| _mm256_sub_ps(w, splat(2.5))));
    let tail = w.map(|w| _mm256_cmp_ps::<_CMP_GE_OQ>(w, splat(TAIL_W)));
    let any = tail
        .iter()
        .fold(_mm256_setzero_ps(), |acc, &t| _mm256_or_ps(acc, t));
    if _mm256_movemask_ps(any) != 0 {
        let b = map1(w, |w| _mm256_sub_ps(_mm256_sqrt_ps(w), splat(3.0)));
        let q = horner(&TAIL, b);
        for j in 0..GROUP {
            p[j] = _mm256_blendv_ps(p[j], q[j], tail[j]);
        }
    }
    p
}

/// `g <- coeff * g + sigma * z` for one group of `GROUP_VALUES` values at `g`.
///
/// # Safety
/// `g` must be valid for reading and writing `GROUP_VALUES` `f32`s.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn modulate_group(g: *mut f32, s: &mut [__m256i; 4], coeff: __m256, sigma: __m256) {
    // Stream order inside a step: the low halves of lanes 0..3, then their high halves.
    let order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    let mut words = [_mm256_setzero_si256(); GROUP];
    for w in words.iter_mut() {
        *w = _mm256_permutevar8x32_epi32(xoshiro_step(s), order);
    }
    let v = uniforms(words);
    let p = erfinv_factor(erfinv_w(v));
    for j in 0..GROUP {
        let z = _mm256_mul_ps(splat(core::f32::consts::SQRT_2), _mm256_mul_ps(p[j], v[j]));
        // SAFETY: the caller guarantees GROUP_VALUES values at g.
        let at = unsafe { g.add(j * STEP) };
        let x = unsafe { _mm256_loadu_ps(at) };
        let r = _mm256_add_ps(_mm256_mul_ps(coeff, x), _mm256_mul_ps(sigma, z));
        unsafe { _mm256_storeu_ps(at, r) };
    }
}

/// `g <- coeff * g + sigma * z` with `z` the next `g.len()` normals of `rng` (the stream of
/// one chunk), as the portable `modulate_with_words` loop computes it.
#[target_feature(enable = "avx2")]
pub(super) fn modulate(rng: &mut LaneRng, g: &mut [f32], coeff: f32, sigma: f32) {
    // SAFETY (loads): each row of the state is four u64, 32 bytes.
    let mut s = rng
        .s
        .map(|row| unsafe { _mm256_loadu_si256(row.as_ptr() as *const __m256i) });
    let (k, sg) = (_mm256_set1_ps(coeff), _mm256_set1_ps(sigma));
    // A short last group runs on a copy and keeps its first values; the surplus normals are
    // dropped, as the definition drops a chunk's surplus. (LLVM keeps `modulate_group` out of
    // line; writing it into this loop by hand measured no faster: the 16 registers are
    // already full with the four chains.)
    let mut buf = [0.0f32; GROUP_VALUES];
    for group in g.chunks_mut(GROUP_VALUES) {
        let short = group.len() < GROUP_VALUES;
        let at = if short {
            buf[..group.len()].copy_from_slice(group);
            buf.as_mut_ptr()
        } else {
            group.as_mut_ptr()
        };
        // SAFETY: `at` points to GROUP_VALUES values: a whole group or `buf`.
        unsafe { modulate_group(at, &mut s, k, sg) };
        if short {
            group.copy_from_slice(&buf[..group.len()]);
        }
    }
    for (row, v) in rng.s.iter_mut().zip(s) {
        // SAFETY (stores): as for the loads.
        unsafe { _mm256_storeu_si256(row.as_mut_ptr() as *mut __m256i, v) };
    }
}

/// The normals of `GROUP_VALUES` words (in any order), for the exhaustive test.
#[cfg(test)]
#[target_feature(enable = "avx2")]
fn normals(words: &[u32; GROUP_VALUES]) -> [f32; GROUP_VALUES] {
    let mut w = [_mm256_setzero_si256(); GROUP];
    for (j, w) in w.iter_mut().enumerate() {
        // SAFETY: eight u32 at offset 8j of a GROUP_VALUES array.
        *w = unsafe { _mm256_loadu_si256(words.as_ptr().add(j * STEP) as *const __m256i) };
    }
    let v = uniforms(w);
    let p = erfinv_factor(erfinv_w(v));
    let mut out = [0.0f32; GROUP_VALUES];
    for j in 0..GROUP {
        let z = _mm256_mul_ps(splat(core::f32::consts::SQRT_2), _mm256_mul_ps(p[j], v[j]));
        // SAFETY: eight f32 at offset 8j of a GROUP_VALUES array.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(j * STEP), z) };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{modulate_stream_portable, normal_from_bits, NoiseKey};
    use super::*;

    #[test]
    fn avx2_normals_equal_portable_on_every_input() {
        if !crate::simd::has_avx2() {
            return;
        }
        // Only x >> 8 matters: all 2^24 values of it, in groups, with varied low bytes.
        let mut words = [0u32; GROUP_VALUES];
        for base in (0..1u32 << 24).step_by(GROUP_VALUES) {
            for (i, w) in words.iter_mut().enumerate() {
                *w = ((base + i as u32) << 8) | ((i as u32 * 37) & 0xFF);
            }
            // SAFETY: AVX2 is present (checked above).
            let z = unsafe { normals(&words) };
            for (&x, z) in words.iter().zip(z) {
                assert_eq!(z.to_bits(), normal_from_bits(x).to_bits(), "{x:#x}");
            }
        }
    }

    #[test]
    fn avx2_modulation_equals_portable() {
        if !crate::simd::has_avx2() {
            return;
        }
        let key = NoiseKey::new(0xA5A5);
        for len in [1usize, 7, 8, 31, 32, 33, 100, 128, 129, 1000, 1024] {
            for c in 0..40u64 {
                let g0: std::vec::Vec<f32> = (0..len).map(|i| (i as f32 - 17.0) * 0.01).collect();
                let (mut a, mut b) = (g0.clone(), g0);
                let (mut ra, mut rb) = (key.chunk_stream(c), key.chunk_stream(c));
                // SAFETY: AVX2 is present (checked above).
                unsafe { modulate(&mut ra, &mut a, 0.75, 0.3) };
                modulate_stream_portable(&mut rb, &mut b, 0.75, 0.3);
                let (a, b): (std::vec::Vec<u32>, std::vec::Vec<u32>) = (
                    a.iter().map(|v| v.to_bits()).collect(),
                    b.iter().map(|v| v.to_bits()).collect(),
                );
                assert_eq!(a, b, "len {len}, chunk {c}");
            }
        }
    }
}
