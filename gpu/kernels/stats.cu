// Per-tensor statistics (count, mean, M2, max |g|) of every tensor of a flat gradient buffer, in
// one launch, for the unbiased standard deviation that sets OGM-GE's noise.
//
// Launch: one block of STATS_BLOCK threads per chunk of OGM_CHUNK values (chunks numbered
// globally through TensorDesc::chunk_start). A block summarises its chunk with a two-pass f64
// mean and M2, like ogm_core::GradStats::of_chunk, and stores it in `partials`. The last block
// of a tensor to finish (a ticket counter per tensor) merges that tensor's chunk summaries with
// Chan's formula in a fixed tree order and writes the result: one launch, no host round trip,
// and the same bits on every run. The merge order differs from the CPU's sequential chunk
// order, so results agree with ogm_core to rounding (relative ~1e-12 on the variance), not
// bit for bit.
//
// `counters` (one per tensor) must be zero before the launch; the merging block resets its
// tensor's counter, so back-to-back launches need no memset (the host clears them anyway).
#include "common.cuh"

#define STATS_PER_THREAD (OGM_CHUNK / STATS_BLOCK)

static_assert(OGM_CHUNK % STATS_BLOCK == 0, "a chunk divides evenly among the threads");

// Block-wide sum in a fixed order (shuffle tree within warps, warps in order); every thread
// gets the result.
__device__ __forceinline__ double block_sum(double v, double* scratch) {
    for (int k = 16; k > 0; k >>= 1) v += __shfl_down_sync(FULL_MASK, v, k);
    const unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // scratch may still be read from a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double s = 0.0;
    for (unsigned int w = 0; w < STATS_BLOCK / 32; ++w) s += scratch[w];
    return s;
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
    for (int k = 16; k > 0; k >>= 1) v = fmaxf(v, __shfl_down_sync(FULL_MASK, v, k));
    const unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float m = 0.0f;
    for (unsigned int w = 0; w < STATS_BLOCK / 32; ++w) m = fmaxf(m, scratch[w]);
    return m;
}

// Reads a summary written by another block: through L2 (ld.cg), never a stale L1 line.
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

extern "C" __global__ void __launch_bounds__(STATS_BLOCK)
ogm_tensor_stats(const float* __restrict__ grads, const TensorDesc* __restrict__ tensors,
                 unsigned int num_tensors, Stats* partials, unsigned int* counters,
                 Stats* out, DeviceStatus* status) {
    __shared__ double dscratch[STATS_BLOCK / 32];
    __shared__ float fscratch[STATS_BLOCK / 32];
    __shared__ Stats warp_stats[STATS_BLOCK / 32];
    __shared__ bool last;

    const unsigned long long chunk = blockIdx.x;
    const unsigned int t = tensor_of_chunk(tensors, num_tensors, chunk);
    const TensorDesc d = tensors[t];
    const unsigned long long c = chunk - d.chunk_start;
    const unsigned long long first = c * OGM_CHUNK;
    const unsigned int n = (unsigned int)min((unsigned long long)OGM_CHUNK, d.len - first);
    const float* x = grads + d.offset + first;

    // Pass 1 and 2 over values held in registers: the chunk is read from memory once.
    float v[STATS_PER_THREAD];
    double sum = 0.0;
    float mx = 0.0f;
#pragma unroll
    for (int k = 0; k < STATS_PER_THREAD; ++k) {
        const unsigned int i = threadIdx.x + k * STATS_BLOCK;
        v[k] = i < n ? x[i] : 0.0f;
        if (i < n) {
            sum += (double)v[k];
            mx = fmaxf(mx, fabsf(v[k]));
        }
    }
    const double mean = block_sum(sum, dscratch) / (double)n;
    double sq = 0.0;
#pragma unroll
    for (int k = 0; k < STATS_PER_THREAD; ++k) {
        const unsigned int i = threadIdx.x + k * STATS_BLOCK;
        if (i < n) {
            const double dv = (double)v[k] - mean;
            sq += dv * dv;
        }
    }
    const double m2 = block_sum(sq, dscratch);
    const float max_abs = block_max(mx, fscratch);

    if (threadIdx.x == 0) {
        Stats s;
        s.count = n;
        s.mean = mean;
        s.m2 = m2;
        s.max_abs = (double)max_abs;
        partials[chunk] = s;
        __threadfence();  // publish the summary before taking a ticket
        const unsigned long long chunks = (d.len + OGM_CHUNK - 1) / OGM_CHUNK;
        last = atomicAdd(&counters[t], 1u) == (unsigned int)(chunks - 1);
    }
    __syncthreads();
    if (!last) return;

    // The last block of tensor t merges its chunk summaries: thread i takes chunks i, i + 256,
    // ... in order, then a fixed shuffle tree, then the warps in order.
    __threadfence();
    const unsigned long long chunks = (d.len + OGM_CHUNK - 1) / OGM_CHUNK;
    Stats acc = {0, 0.0, 0.0, 0.0};
    for (unsigned long long i = threadIdx.x; i < chunks; i += STATS_BLOCK)
        acc = merge_stats(acc, load_stats_cg(&partials[d.chunk_start + i]));
    for (int k = 16; k > 0; k >>= 1) acc = merge_stats(acc, shfl_down_stats(acc, k));
    const unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_stats[warp] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        Stats total = warp_stats[0];
        for (unsigned int w = 1; w < STATS_BLOCK / 32; ++w) total = merge_stats(total, warp_stats[w]);
        out[t] = total;
        counters[t] = 0;
        // A NaN or infinity anywhere makes the mean non-finite (f32 values cannot overflow the
        // f64 sums), as in ogm_core::GradStats::of.
        if (!isfinite(total.mean) || !isfinite(total.m2)) {
            report_tensor(status, OGM_STATUS_NONFINITE_GRADIENT, t);
        }
    }
}
