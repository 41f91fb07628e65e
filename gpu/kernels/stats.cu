// Per-tensor statistics (count, mean, M2, max |g|) of every tensor of a flat gradient buffer, in
// one launch, for the unbiased standard deviation that sets OGM-GE's noise.
//
// Launch: blocks of STATS_BLOCK threads, one warp per chunk of OGM_CHUNK values (chunks
// numbered globally through TensorDesc::chunk_start), STATS_CHUNKS_PER_BLOCK chunks per block.
// A warp summarises its chunk with a two-pass f64 mean and M2, like
// ogm_core::GradStats::of_chunk, from values held in registers (the chunk is read once, 32
// coalesced loads per lane in flight), and stores the summary in `partials`. The last warp of a
// tensor to finish (a ticket counter per tensor) merges that tensor's chunk summaries with
// Chan's formula in a fixed order and writes the result: one launch, no host round trip, no
// block-wide barrier, and the same bits on every run. The merge order differs from the CPU's
// sequential chunk order, so results agree with ogm_core to rounding (relative ~1e-15 on the
// variance), not bit for bit.
//
// `counters` (one per tensor) must be zero before the first launch; the merging warp resets
// its tensor's counter, so back-to-back launches need no memset.
#include "common.cuh"

#define VALUES_PER_LANE (OGM_CHUNK / 32)

static_assert(STATS_BLOCK % 32 == 0, "whole warps");

// Reads a summary written by another warp: through L2 (ld.cg), never a stale L1 line.
__device__ __forceinline__ Stats load_stats_cg(const Stats* p) {
    Stats s;
    s.count = __ldcg(&p->count);
    s.mean = __ldcg(&p->mean);
    s.m2 = __ldcg(&p->m2);
    s.max_abs = __ldcg(&p->max_abs);
    return s;
}

__device__ __forceinline__ Stats shfl_down_stats(Stats s, int k) {
    Stats r;
    r.count = __shfl_down_sync(FULL_MASK, s.count, k);
    r.mean = __shfl_down_sync(FULL_MASK, s.mean, k);
    r.m2 = __shfl_down_sync(FULL_MASK, s.m2, k);
    r.max_abs = __shfl_down_sync(FULL_MASK, s.max_abs, k);
    return r;
}

// Warp sum in a fixed tree (the result is in lane 0), then broadcast.
__device__ __forceinline__ double warp_sum_bcast(double v) {
    for (int k = 16; k > 0; k >>= 1) v += __shfl_down_sync(FULL_MASK, v, k);
    return __shfl_sync(FULL_MASK, v, 0);
}

extern "C" __global__ void __launch_bounds__(STATS_BLOCK)
ogm_tensor_stats(const float* __restrict__ grads, const TensorDesc* __restrict__ tensors,
                 unsigned int num_tensors, unsigned long long total_chunks, Stats* partials,
                 unsigned int* counters, Stats* out, DeviceStatus* status) {
    const unsigned int lane = threadIdx.x & 31;
    const unsigned long long chunk =
        (unsigned long long)blockIdx.x * STATS_CHUNKS_PER_BLOCK + (threadIdx.x >> 5);
    if (chunk >= total_chunks) return;  // whole warps only: the rest of the warp leaves too
    const unsigned int t = tensor_of_chunk(tensors, num_tensors, chunk);
    const TensorDesc d = tensors[t];
    const unsigned long long c = chunk - d.chunk_start;
    const unsigned long long first = c * OGM_CHUNK;
    const unsigned int n = (unsigned int)min((unsigned long long)OGM_CHUNK, d.len - first);
    const float* x = grads + d.offset + first;

    float v[VALUES_PER_LANE];
#pragma unroll
    for (int k = 0; k < VALUES_PER_LANE; ++k) {
        const unsigned int i = lane + 32 * k;
        v[k] = i < n ? x[i] : 0.0f;
    }
    double sum = 0.0;
    float mx = 0.0f;
#pragma unroll
    for (int k = 0; k < VALUES_PER_LANE; ++k) {
        sum += (double)v[k];  // padding values are 0.0: they add nothing
        mx = fmaxf(mx, fabsf(v[k]));
    }
    const double mean = warp_sum_bcast(sum) / (double)n;
    double sq = 0.0;
#pragma unroll
    for (int k = 0; k < VALUES_PER_LANE; ++k) {
        if (lane + 32 * k < n) {
            const double dv = (double)v[k] - mean;
            sq += dv * dv;
        }
    }
    const double m2 = warp_sum_bcast(sq);
    for (int k = 16; k > 0; k >>= 1) mx = fmaxf(mx, __shfl_down_sync(FULL_MASK, mx, k));

    const unsigned long long chunks = (d.len + OGM_CHUNK - 1) / OGM_CHUNK;
    unsigned int last = 0;
    if (lane == 0) {
        Stats s;
        s.count = n;
        s.mean = mean;
        s.m2 = m2;
        s.max_abs = (double)mx;
        partials[chunk] = s;
        __threadfence();  // publish the summary before taking a ticket
        last = atomicAdd(&counters[t], 1u) == (unsigned int)(chunks - 1);
    }
    if (!__shfl_sync(FULL_MASK, last, 0)) return;

    // The last warp of tensor t merges its chunk summaries: lane i takes chunks i, i + 32, ...
    // in order, then a fixed shuffle tree.
    __threadfence();
    Stats acc = {0, 0.0, 0.0, 0.0};
    for (unsigned long long i = lane; i < chunks; i += 32)
        acc = merge_stats(acc, load_stats_cg(&partials[d.chunk_start + i]));
    for (int k = 16; k > 0; k >>= 1) acc = merge_stats(acc, shfl_down_stats(acc, k));
    if (lane == 0) {
        out[t] = acc;
        counters[t] = 0;
        // A NaN or infinity anywhere makes the mean non-finite (f32 values cannot overflow the
        // f64 sums), as in ogm_core::GradStats::of.
        if (!isfinite(acc.mean) || !isfinite(acc.m2)) {
            report_tensor(status, OGM_STATUS_NONFINITE_GRADIENT, t);
        }
    }
}
