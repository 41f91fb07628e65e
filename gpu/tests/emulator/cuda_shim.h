// A CPU stand-in for the parts of CUDA that gpu/kernels/*.cu use, so that the kernels' own
// source can be compiled with g++ and run on a machine without a GPU (tests/emulated.rs).
//
// Every CUDA thread of a block is a fiber on one OS thread; blocks of a launch run one after
// another, in an order of the caller's choice (fibers.h: in order, reversed, shuffled, or one
// warp ahead of the others, to expose races). __syncthreads and __syncwarp are barriers (a fiber yields
// until the last one arrives), warp shuffles and votes exchange values through a per-warp table
// between two barriers, and atomics need no lock since only one fiber runs at a time. Shared
// memory is a function-local `static`, which is right because only one block runs at a time.
//
// What this checks: indexing, chunk and tensor mapping, reduction trees, the last-block merge,
// key derivation and the noise arithmetic (f32 operations are IEEE on x86-64 SSE and g++ is run
// with -ffp-contract=off, so __fadd_rn and friends round exactly as on the device). What it
// cannot check: the device memory model, performance, the real intrinsics' code generation.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <atomic>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static

struct uint3 {
    unsigned int x, y, z;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

namespace emu {
// Switches back to the scheduler; it resumes this fiber on its next round.
void yield();

struct Barrier;
// What the fiber that last yielded waits for: `waiting_on` to pass generation `waiting_gen`
// (null when it did not yield at a barrier). The scheduler reads it after each switch, so that
// it resumes no fiber whose barrier is still closed and can tell a deadlock from progress.
inline Barrier* waiting_on = nullptr;
inline uint64_t waiting_gen = 0;

// A barrier of `expected` fibers: each arrival yields until the last one arrives.
struct Barrier {
    unsigned expected = 0, arrived = 0;
    uint64_t generation = 0;
    void arrive_and_wait() {
        const uint64_t g = generation;
        if (++arrived == expected) {
            arrived = 0;
            ++generation;
            return;
        }
        while (generation == g) {
            waiting_on = this;
            waiting_gen = g;
            yield();
        }
    }
};

struct Warp {
    Barrier bar;
    unsigned size;
    uint64_t slots[32];
};
// The running fiber's warp, lane and block barrier (set by the scheduler before each resume).
extern Warp* warp;
extern unsigned lane;
extern Barrier* block_bar;

// Every lane publishes `bits`; returns the table (valid until the caller's second barrier).
inline const uint64_t* exchange(uint64_t bits) {
    warp->slots[lane] = bits;
    warp->bar.arrive_and_wait();
    return warp->slots;
}
inline void done() { warp->bar.arrive_and_wait(); }

template <class T>
inline T shuffle_from(T v, unsigned src) {
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 64 bits");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    const uint64_t* t = exchange(bits);
    uint64_t r = t[src < warp->size ? src : lane];
    done();
    T out;
    memcpy(&out, &r, sizeof(T));
    return out;
}
}  // namespace emu

extern uint3 threadIdx, blockIdx;
extern uint3 blockDim, gridDim;

inline void __syncthreads() { emu::block_bar->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp->bar.arrive_and_wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <class T>
inline T __shfl_sync(unsigned, T v, int src) {
    return emu::shuffle_from(v, (unsigned)src);
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int k) {
    return emu::shuffle_from(v, emu::lane ^ (unsigned)k);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, int k) {
    return emu::shuffle_from(v, emu::lane + (unsigned)k);  // out of range: own value
}
inline unsigned __reduce_max_sync(unsigned, unsigned v) {
    const uint64_t* t = emu::exchange(v);
    unsigned m = 0;
    for (unsigned i = 0; i < emu::warp->size; ++i) m = t[i] > m ? (unsigned)t[i] : m;
    emu::done();
    return m;
}
inline int __any_sync(unsigned, int pred) {
    const uint64_t* t = emu::exchange(pred != 0);
    int any = 0;
    for (unsigned i = 0; i < emu::warp->size; ++i) any |= (int)t[i];
    emu::done();
    return any;
}

inline unsigned atomicAdd(unsigned* p, unsigned v) {
    unsigned old = *p;
    *p = old + v;
    return old;
}
inline unsigned atomicOr(unsigned* p, unsigned v) {
    unsigned old = *p;
    *p = old | v;
    return old;
}
inline unsigned atomicMin(unsigned* p, unsigned v) {
    unsigned old = *p;
    *p = v < old ? v : old;
    return old;
}

template <class T>
inline T __ldcg(const T* p) {
    return *p;
}

inline float __uint_as_float(unsigned x) {
    float f;
    memcpy(&f, &x, 4);
    return f;
}
inline unsigned __float_as_uint(float f) {
    unsigned x;
    memcpy(&x, &f, 4);
    return x;
}
inline double __longlong_as_double(long long x) {
    double d;
    memcpy(&d, &x, 8);
    return d;
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
