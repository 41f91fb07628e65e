// OGM / OGM-GE modulation in place over the flat gradient buffer:
//   g <- k_u * g                (sigma == 0: OGM, draws nothing)
//   g <- k_u * g + sigma * z    (OGM_GE, sigma = std(g) + 1e-8 from the stats kernel)
// with z from ogm_core's default noise stream, bit for bit: tensor t uses the key
// derive(step_key, noise_id[t]); chunk c of it uses four Xoshiro256++ lanes seeded from
// derive(derive(key, c), lane), eight normals per step (low halves of lanes 0..3, then high
// halves). The noise of a value depends only on (key, chunk, position), never on the launch.
//
// Work split: a warp owns 8 consecutive global chunks. Its 32 lanes are the 8 x 4 generators;
// they produce 16 steps (128 values per chunk) into shared memory, then all lanes load the 8
// chunks' next 128 values (coalesced, into shared memory), convert the words and store, 8
// times per chunk.
//
// Per-tensor parameters follow ogm_core::NoiseParams::new exactly: coeff = applied coefficient
// of the tensor's modality (f64 -> f32), sigma = (sqrt(M2 / (n - 1)) or 0 for n < 2) + 1e-8
// (f64 -> f32). A tensor whose statistics are non-finite, or whose result could overflow f32
// (|k| max|g| + sigma max|z| >= 0.999 FLT_MAX), is left untouched and reported, as the CPU
// code refuses it with an error.
#include "common.cuh"
#include "noise.cuh"

#define SLAB_STEPS 16                         // generator steps per slab
#define SLAB_VALUES (SLAB_STEPS * 8)          // values per chunk per slab (128)
// Row stride of the per-warp word table [step][chunk * 4 + lane], padded from 32 to 36 words
// so that the conversion reads (4 steps x 4 lanes per chunk) hit 16 distinct banks.
#define ROW_WORDS 36
#define SIGMA_EPS 1e-8

struct ChunkJob {
    unsigned long long base;  // flat index of the chunk's first value
    unsigned int n;           // values in the chunk (0: nothing to do)
    float coeff;
    float sigma;
};

extern "C" __global__ void __launch_bounds__(MOD_BLOCK)
ogm_modulate(float* grads, const TensorDesc* __restrict__ tensors, unsigned int num_tensors,
             const Stats* __restrict__ stats, const BalanceState* __restrict__ state,
             unsigned long long step_key, unsigned long long total_chunks, unsigned int noise,
             float max_z, DeviceStatus* status) {
    __shared__ unsigned long long words[MOD_WARPS][SLAB_STEPS][ROW_WORDS];
    __shared__ ChunkJob jobs[MOD_WARPS][CHUNKS_PER_WARP];
    __shared__ float vals[MOD_WARPS][CHUNKS_PER_WARP][SLAB_VALUES];

    const unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const unsigned int slot = lane >> 2, rl = lane & 3;  // generator: chunk slot, rng lane
    const unsigned long long chunk =
        ((unsigned long long)blockIdx.x * MOD_WARPS + warp) * CHUNKS_PER_WARP + slot;

    // Every lane resolves its chunk; lane rl == 0 publishes the job.
    ChunkJob job = {0, 0, 0.0f, 0.0f};
    unsigned long long seed = 0;
    if (chunk < total_chunks) {
        const unsigned int t = tensor_of_chunk(tensors, num_tensors, chunk);
        const TensorDesc d = tensors[t];
        const Stats s = stats[t];
        const unsigned long long c = chunk - d.chunk_start;
        const double coeff = state->applied[d.modality];
        double sigma = 0.0;
        if (noise) {
            const double std = s.count >= 2 ? sqrt(s.m2 / (double)(s.count - 1)) : 0.0;
            sigma = std + SIGMA_EPS;
        }
        const bool finite = isfinite(s.mean) && isfinite(s.m2) && isfinite(s.max_abs) &&
                            isfinite(coeff);
        const double bound = fabs(coeff) * s.max_abs + sigma * (double)max_z;
        const bool fits = bound < (double)3.40282346638528859812e+38f * 0.999;
        if (finite && fits) {
            job.base = d.offset + c * OGM_CHUNK;
            job.n = (unsigned int)min((unsigned long long)OGM_CHUNK, d.len - c * OGM_CHUNK);
            job.coeff = (float)coeff;
            job.sigma = (float)sigma;
        } else if (finite && c == 0 && rl == 0) {
            // Non-finite statistics were reported by the stats kernel already.
            report_tensor(status, OGM_STATUS_OVERFLOW, t);
        }
        seed = derive_key(derive_key(derive_key(step_key, d.noise_id), c), rl);
    }
    if (rl == 0) jobs[warp][slot] = job;

    // Slabs needed by the longest chunk of the warp; noise only if some chunk draws it.
    const unsigned int my_slabs = (job.n + SLAB_VALUES - 1) / SLAB_VALUES;
    const unsigned int slabs = __reduce_max_sync(FULL_MASK, my_slabs);
    const bool draw = __any_sync(FULL_MASK, job.n > 0 && job.sigma != 0.0f);
    Xoshiro rng(seed);
    __syncwarp();

    for (unsigned int slab = 0; slab < slabs; ++slab) {
        if (draw) {
#pragma unroll
            for (int s = 0; s < SLAB_STEPS; ++s) words[warp][s][lane] = rng.next();
            __syncwarp();
        }
        // Load the slab of all 8 chunks first (32 coalesced loads per lane in flight: enough
        // memory-level parallelism with ~20 warps per multiprocessor) into shared memory, then
        // convert and store chunk by chunk in a loop that is not unrolled: the normal
        // conversion is ~100 instructions, and 32 inlined copies would overflow the
        // instruction cache.
        const unsigned int start = slab * SLAB_VALUES;
#pragma unroll
        for (int cs = 0; cs < CHUNKS_PER_WARP; ++cs) {
            const ChunkJob j = jobs[warp][cs];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const unsigned int pos = start + lane + 32 * k;
                vals[warp][cs][lane + 32 * k] = pos < j.n ? grads[j.base + pos] : 0.0f;
            }
        }
        __syncwarp();
#pragma unroll 1
        for (int cs = 0; cs < CHUNKS_PER_WARP; ++cs) {
            const ChunkJob j = jobs[warp][cs];  // the same for every lane
            if (start >= j.n) continue;          // warp-uniform
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const unsigned int p = lane + 32 * k;  // position inside the slab
                if (start + p >= j.n) continue;
                const float g = vals[warp][cs][p];
                float r;
                if (j.sigma == 0.0f) {
                    r = __fmul_rn(j.coeff, g);
                } else {
                    const unsigned long long w = words[warp][p >> 3][cs * 4 + (p & 3)];
                    const unsigned int bits = (p & 4) ? (unsigned int)(w >> 32) : (unsigned int)w;
                    const float z = normal_from_bits(bits);
                    r = __fadd_rn(__fmul_rn(j.coeff, g), __fmul_rn(j.sigma, z));
                }
                grads[j.base + start + p] = r;
            }
        }
        __syncwarp();  // the next slab overwrites the word table
    }
}
