// General matrix multiply for the engine: C = alpha * A B + beta * C in f32, SIMT, tiled
// through shared memory. A is M x K and B is K x N, each addressed by a row and a column
// stride (element (i, j) of A at A[i * rsa + j * csa]), so transposed operands and column
// blocks of wider matrices need no copy (the CPU engine's `Mat`). C is row-major with leading
// dimension ldc.
//
// Split-K: block z of a grid with gridDim.z > 1 multiplies only the shared-dimension slice
// [z * k_split, (z + 1) * k_split) and writes its result to C + z * split_stride (the caller
// passes alpha 1, beta 0 and a scratch buffer, then sums the slices with eng_sum_slices in a
// fixed order). This keeps weight gradients, whose shared dimension is the batch's pixels
// (up to 800 000) but whose output is small, spread over the whole device.
//
// The multiply-adds use fmaf explicitly: build.rs compiles with --fmad=false so that the
// OGM-GE kernels stay bit-exact, and a GEMM without fused multiply-adds would do twice the
// instructions for a less accurate result.
//
// Launch: grid (ceil(N / GEMM_BN), ceil(M / GEMM_BM), splits), block GEMM_THREADS.
#include "engine.cuh"

extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
eng_gemm(unsigned int M, unsigned int N, unsigned int K, float alpha,
         const float* __restrict__ A, unsigned int rsa, unsigned int csa,
         const float* __restrict__ B, unsigned int rsb, unsigned int csb, float beta,
         float* __restrict__ C, unsigned int ldc, unsigned int k_split,
         unsigned long long split_stride) {
    // Stored k-major so that the inner loop reads a row of each tile; +4 keeps rows 16-byte
    // aligned while breaking the power-of-two bank pattern of the transposed stores.
    __shared__ float As[GEMM_BK][GEMM_BM + 4];
    __shared__ float Bs[GEMM_BK][GEMM_BN + 4];
    const unsigned t = threadIdx.x;
    const unsigned tx = t % 16, ty = t / 16;  // this thread's outputs: rows ty + 16 i, cols tx + 16 j
    const unsigned m0 = blockIdx.y * GEMM_BM, n0 = blockIdx.x * GEMM_BN;
    const unsigned kbeg = blockIdx.z * k_split;
    const unsigned kend = kbeg + k_split < K ? kbeg + k_split : K;
    if (gridDim.z > 1) C += (unsigned long long)blockIdx.z * split_stride;

    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    // Which unit-stride direction the loads follow (coalesced global reads).
    const bool a_k_contig = csa == 1;
    const bool b_n_contig = csb == 1 || rsb != 1;
    for (unsigned k0 = kbeg; k0 < kend; k0 += GEMM_BK) {
        // A tile: GEMM_BM x GEMM_BK = 1024 values, 4 per thread.
        for (int r = 0; r < 4; ++r) {
            unsigned mm, kk;
            if (a_k_contig) {
                kk = t % GEMM_BK;
                mm = t / GEMM_BK + 16 * r;
            } else {
                mm = t % GEMM_BM;
                kk = t / GEMM_BM + 4 * r;
            }
            const unsigned gm = m0 + mm, gk = k0 + kk;
            As[kk][mm] = gm < M && gk < kend
                             ? A[(unsigned long long)gm * rsa + (unsigned long long)gk * csa]
                             : 0.0f;
        }
        // B tile: GEMM_BK x GEMM_BN = 1024 values, 4 per thread.
        for (int r = 0; r < 4; ++r) {
            unsigned nn, kk;
            if (b_n_contig) {
                nn = t % GEMM_BN;
                kk = t / GEMM_BN + 4 * r;
            } else {
                kk = t % GEMM_BK;
                nn = t / GEMM_BK + 16 * r;
            }
            const unsigned gn = n0 + nn, gk = k0 + kk;
            Bs[kk][nn] = gn < N && gk < kend
                             ? B[(unsigned long long)gk * rsb + (unsigned long long)gn * csb]
                             : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < GEMM_BK; ++kk) {
            float a[4], b[4];
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
            for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        const unsigned gm = m0 + ty + 16 * i;
        if (gm >= M) continue;
        for (int j = 0; j < 4; ++j) {
            const unsigned gn = n0 + tx + 16 * j;
            if (gn >= N) continue;
            float* c = C + (unsigned long long)gm * ldc + gn;
            // beta == 0 must not read C: it may hold anything (NaN included), as in BLAS.
            *c = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *c;
        }
    }
}

// The same product with BIG_BM x BIG_BN tiles and 8 x 8 outputs per thread: rows
// ty * 4 + i and 64 + ty * 4 + i, columns tx * 4 + j and 64 + tx * 4 + j (i, j < 4), so the
// inner loop reads two runs of four consecutive values of each tile. Same parameters, same
// split-K convention. Launch: grid (ceil(N / BIG_BN), ceil(M / BIG_BM), splits), block
// GEMM_THREADS.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
eng_gemm_big(unsigned int M, unsigned int N, unsigned int K, float alpha,
             const float* __restrict__ A, unsigned int rsa, unsigned int csa,
             const float* __restrict__ B, unsigned int rsb, unsigned int csb, float beta,
             float* __restrict__ C, unsigned int ldc, unsigned int k_split,
             unsigned long long split_stride) {
    __shared__ float As[BIG_BK][BIG_BM + 4];
    __shared__ float Bs[BIG_BK][BIG_BN + 4];
    const unsigned t = threadIdx.x;
    const unsigned tx = t % 16, ty = t / 16;
    const unsigned m0 = blockIdx.y * BIG_BM, n0 = blockIdx.x * BIG_BN;
    const unsigned kbeg = blockIdx.z * k_split;
    const unsigned kend = kbeg + k_split < K ? kbeg + k_split : K;
    if (gridDim.z > 1) C += (unsigned long long)blockIdx.z * split_stride;

    float acc[8][8];
    for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

    const bool a_k_contig = csa == 1;
    const bool b_n_contig = csb == 1 || rsb != 1;
    for (unsigned k0 = kbeg; k0 < kend; k0 += BIG_BK) {
        // Each tile is 1024 values, 4 per thread.
        for (int r = 0; r < 4; ++r) {
            unsigned mm, kk;
            if (a_k_contig) {
                kk = t % BIG_BK;
                mm = t / BIG_BK + 32 * r;
            } else {
                mm = t % BIG_BM;
                kk = t / BIG_BM + 2 * r;
            }
            const unsigned gm = m0 + mm, gk = k0 + kk;
            As[kk][mm] = gm < M && gk < kend
                             ? A[(unsigned long long)gm * rsa + (unsigned long long)gk * csa]
                             : 0.0f;
        }
        for (int r = 0; r < 4; ++r) {
            unsigned nn, kk;
            if (b_n_contig) {
                nn = t % BIG_BN;
                kk = t / BIG_BN + 2 * r;
            } else {
                kk = t % BIG_BK;
                nn = t / BIG_BK + 32 * r;
            }
            const unsigned gn = n0 + nn, gk = k0 + kk;
            Bs[kk][nn] = gn < N && gk < kend
                             ? B[(unsigned long long)gk * rsb + (unsigned long long)gn * csb]
                             : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BIG_BK; ++kk) {
            float a[8], b[8];
            for (int i = 0; i < 4; ++i) {
                a[i] = As[kk][ty * 4 + i];
                a[4 + i] = As[kk][64 + ty * 4 + i];
                b[i] = Bs[kk][tx * 4 + i];
                b[4 + i] = Bs[kk][64 + tx * 4 + i];
            }
            for (int i = 0; i < 8; ++i)
                for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 8; ++i) {
        const unsigned gm = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
        if (gm >= M) continue;
        for (int j = 0; j < 8; ++j) {
            const unsigned gn = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
            if (gn >= N) continue;
            float* c = C + (unsigned long long)gm * ldc + gn;
            *c = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *c;
        }
    }
}

// C (rows x cols, leading dimension ldc) = alpha * sum_z P_z + beta * C, where the slices P_z
// are rows x cols row-major (leading dimension cols), split_stride elements apart; summed in
// z order, so the result does not depend on the schedule.
// Launch: grid-stride, block ENG_BLOCK.
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_sum_slices(const float* __restrict__ P, unsigned int splits,
               unsigned long long split_stride, unsigned int rows, unsigned int cols,
               float alpha, float beta, float* __restrict__ C, unsigned int ldc) {
    const unsigned long long n = (unsigned long long)rows * cols;
    ENG_FOR(i, n) {
        float s = 0.0f;
        for (unsigned z = 0; z < splits; ++z) s += P[z * split_stride + i];
        float* c = C + (i / cols) * ldc + i % cols;
        *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
    }
}
