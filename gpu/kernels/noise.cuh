// The default noise stream of ogm_core::noise, reproduced bit for bit (see core/src/noise.rs for
// the definition). Every f32 operation goes through an explicitly rounded intrinsic
// (__fadd_rn, __fmul_rn, __fdiv_rn, __fsqrt_rn), so no compiler flag can contract it into a
// fused multiply-add or replace it by an approximation: the bits equal Rust's on any device.
// The constants are the exact f32 values of the Rust literals, written as bit patterns.
#pragma once

#define OGM_GOLDEN 0x9E3779B97F4A7C15ull

__device__ __forceinline__ unsigned long long fmix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// NoiseKey::derive.
__device__ __forceinline__ unsigned long long derive_key(unsigned long long key,
                                                         unsigned long long word) {
    return fmix64(key ^ fmix64(word + OGM_GOLDEN));
}

__device__ __forceinline__ unsigned long long rotl64(unsigned long long x, int k) {
    return (x << k) | (x >> (64 - k));
}

// One Xoshiro256++ generator (one lane of ogm_core::noise::LaneRng).
struct Xoshiro {
    unsigned long long s0, s1, s2, s3;

    // Seeded as rand_xoshiro's Xoshiro256PlusPlus::seed_from_u64: four SplitMix64 outputs.
    __device__ __forceinline__ explicit Xoshiro(unsigned long long seed) {
        seed += OGM_GOLDEN; s0 = fmix64(seed);
        seed += OGM_GOLDEN; s1 = fmix64(seed);
        seed += OGM_GOLDEN; s2 = fmix64(seed);
        seed += OGM_GOLDEN; s3 = fmix64(seed);
    }

    __device__ __forceinline__ unsigned long long next() {
        unsigned long long out = rotl64(s0 + s3, 23) + s0;
        unsigned long long t = s1 << 17;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = rotl64(s3, 45);
        return out;
    }
};

#define OGM_F32(bits) __uint_as_float(bits##u)
#define OGM_THIRD OGM_F32(0x3eaaaaab)    // 1.0f32 / 3.0
#define OGM_FIFTH OGM_F32(0x3e4ccccd)    // 1.0f32 / 5.0
#define OGM_SEVENTH OGM_F32(0x3e124925)  // 1.0f32 / 7.0
#define OGM_NINTH OGM_F32(0x3de38e39)    // 1.0f32 / 9.0
#define OGM_LN2 OGM_F32(0x3f317218)      // core::f32::consts::LN_2
#define OGM_SQRT2 OGM_F32(0x3fb504f3)    // core::f32::consts::SQRT_2
#define OGM_2POW_M24 OGM_F32(0x33800000) // 2^-24

// ln of a positive normal f32 (ogm_core::noise::ln_positive).
__device__ __forceinline__ float ln_positive(float y) {
    const unsigned int SQRT_HALF_BITS = 0x3F3504F3u;
    unsigned int bits = __float_as_uint(y);
    int e = ((int)(bits - SQRT_HALF_BITS)) >> 23;  // arithmetic shift, as Rust's i32 >>
    float m = __uint_as_float(bits - ((unsigned int)e << 23));
    float s = __fdiv_rn(__fadd_rn(m, -1.0f), __fadd_rn(m, 1.0f));
    float s2 = __fmul_rn(s, s);
    float p = __fadd_rn(OGM_SEVENTH, __fmul_rn(s2, OGM_NINTH));
    p = __fadd_rn(OGM_FIFTH, __fmul_rn(s2, p));
    p = __fadd_rn(OGM_THIRD, __fmul_rn(s2, p));
    p = __fmul_rn(s2, p);
    float two_s = __fmul_rn(2.0f, s);
    float ln_m = __fadd_rn(two_s, __fmul_rn(two_s, p));
    return __fadd_rn(__fmul_rn((float)e, OGM_LN2), ln_m);
}

// Giles' single-precision erfinv (ogm_core::noise::erfinv). The CPU evaluates both polynomial
// pieces and selects one (so that it vectorises); here only the selected piece is evaluated,
// which gives the same bits and saves a square root and 16 operations for the ~99.7% of values
// with w < 5 (a warp diverges into the tail piece for ~10% of its steps).
__device__ __forceinline__ float erfinv_giles(float x) {
    float w = -ln_positive(__fmul_rn(__fadd_rn(1.0f, -x), __fadd_rn(1.0f, x)));
    if (w < 5.0f) {
        float a = __fadd_rn(w, -2.5f);
        float p = OGM_F32(0x32f16588);
        p = __fadd_rn(OGM_F32(0x34b84b36), __fmul_rn(p, a));
        p = __fadd_rn(OGM_F32(0xb66c7357), __fmul_rn(p, a));
        p = __fadd_rn(OGM_F32(0xb6935ac1), __fmul_rn(p, a));
        p = __fadd_rn(OGM_F32(0x396532db), __fmul_rn(p, a));
        p = __fadd_rn(OGM_F32(0xbaa45408), __fmul_rn(p, a));
        p = __fadd_rn(OGM_F32(0xbb88e4ef), __fmul_rn(p, a));
        p = __fadd_rn(OGM_F32(0x3e7c8f63), __fmul_rn(p, a));
        p = __fadd_rn(OGM_F32(0x3fc02e2f), __fmul_rn(p, a));
        return __fmul_rn(p, x);
    }
    float b = __fadd_rn(__fsqrt_rn(w), -3.0f);
    float q = OGM_F32(0xb951f09b);
    q = __fadd_rn(OGM_F32(0x38d3b56b), __fmul_rn(q, b));
    q = __fadd_rn(OGM_F32(0x3ab0dc72), __fmul_rn(q, b));
    q = __fadd_rn(OGM_F32(0xbb70bde7), __fmul_rn(q, b));
    q = __fadd_rn(OGM_F32(0x3bbc127b), __fmul_rn(q, b));
    q = __fadd_rn(OGM_F32(0xbbf9c5d6), __fmul_rn(q, b));
    q = __fadd_rn(OGM_F32(0x3c1aa57e), __fmul_rn(q, b));
    q = __fadd_rn(OGM_F32(0x3f8036db), __fmul_rn(q, b));
    q = __fadd_rn(OGM_F32(0x40354f7e), __fmul_rn(q, b));
    return __fmul_rn(q, x);
}

// A standard normal from 32 random bits (ogm_core::noise::normal_from_bits).
__device__ __forceinline__ float normal_from_bits(unsigned int x) {
    int k = (int)(x >> 8);
    float v = __fmul_rn((float)(2 * k + 1 - (1 << 24)), OGM_2POW_M24);
    return __fmul_rn(OGM_SQRT2, erfinv_giles(v));
}
