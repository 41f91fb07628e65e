// Shared definitions of the training engine's kernels (engine_*.cu). Every engine kernel runs
// on one-dimensional blocks (the CPU emulator supports 3-D grids but only 1-D blocks) and takes
// sizes as `unsigned int` (u32 in the Rust wrappers) and element counts as `unsigned long long`.
// Layouts are the CPU engine's (host/src/engine): activations CNHW, weights row-major.
#pragma once

// Threads per block of the element-wise kernels (grid-stride loops).
#define ENG_BLOCK 256
// Threads per block of the per-channel reductions (batch norm, pooling runs).
#define ENG_REDUCE_BLOCK 256

// GEMM tile: BM x BN outputs per block of GEMM_THREADS threads, GEMM_TM x GEMM_TN per thread,
// BK values of the shared dimension per shared-memory stage.
#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16
#define GEMM_THREADS 256

// The large-tile GEMM (eng_gemm_big): BIG_BM x BIG_BN outputs per block of GEMM_THREADS
// threads, 8 x 8 per thread, BIG_BK values of the shared dimension per stage. Used when both
// output dimensions are at least a tile (the convolutions of the paper model), where its
// four times higher ratio of multiply-adds to shared-memory reads pays.
#define BIG_BM 128
#define BIG_BN 128
#define BIG_BK 8

// The tensor-core GEMMs (eng_gemm_tf32, eng_gemm_bf16): TC_BM x TC_BN outputs per block of
// TC_THREADS threads (8 warps as 2 x 4, each computing 64 x 32 with 4 x 4 mma tiles: m16n8k8
// for TF32, m16n8k16 for BF16), TC_BK values of the shared dimension per shared-memory stage
// (two stages in flight; a whole number of k16 steps). Split-K slices are whole GEMM_BK
// stages, so TC_BK must divide GEMM_BK.
#define TC_BM 128
#define TC_BN 128
#define TC_BK 16
#define TC_THREADS 256

// Grid-stride loop over n elements.
#define ENG_FOR(i, n)                                                                    \
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; \
         i < (n); i += (unsigned long long)gridDim.x * blockDim.x)

// A batch norm's normalised value x * scale + shift (the CPU's f32 expression, no
// contraction): one expression for the forward pass, the backward's recomputed ReLU mask and
// the consumers that apply a batch norm as they read its input (engine_ew.cu's max pooling),
// so that all of them have the forward's bits.
__device__ __forceinline__ float bn_normalised(float x, float scale, float shift) {
    return x * scale + shift;
}

// max(t, 0) as the CPU engine's relu (a NaN gives 0): the one ReLU of a batch norm's output,
// fused or applied by a consumer.
__device__ __forceinline__ float relu_f32(float t) { return t > 0.0f ? t : 0.0f; }

// relu(bn_normalised(x, scale, shift)): the bits a batch norm with its ReLU writes.
__device__ __forceinline__ float bn_relu(float x, float scale, float shift) {
    return relu_f32(bn_normalised(x, scale, shift));
}

// Sum of a double over the block (blockDim.x a multiple of 32, at most 1024); every thread
// gets the total. `scratch` holds 32 doubles. The tree is fixed, so the result is reproducible.
__device__ __forceinline__ double block_sum_f64(double v, double* scratch) {
    for (int k = 16; k > 0; k >>= 1) v += __shfl_xor_sync(0xffffffffu, v, k);
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double t = 0.0;
    const unsigned warps = blockDim.x >> 5;
    for (unsigned w = 0; w < warps; ++w) t += scratch[w];
    return t;
}
