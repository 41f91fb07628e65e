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

// B-operand policies of gemm_tile. Each says which unit-stride direction coalesces the reads
// (n_contig), derives a per-column context once (column(n), Col) and reads B(k, n) from it
// (at(col, k, n)); gemm_tile checks the bounds (n < N, k in the slice) before calling at.

// B(k, n) = B[k * rs + n * cs]: a strided matrix. No column context: the address arithmetic
// is exactly the kernels' before the policies (a hoisted 64-bit n * cs per load, or even a
// stored n, costs eng_gemm 3 to 4 registers and a resident block on sm_80).
struct StridedB {
    const float* __restrict__ b;
    unsigned rs, cs;
    struct Col {};
    __device__ __forceinline__ bool n_contig() const { return cs == 1 || rs != 1; }
    __device__ __forceinline__ Col column(unsigned) const { return {}; }
    __device__ __forceinline__ float at(const Col&, unsigned k, unsigned n) const {
        return b[(unsigned long long)k * rs + (unsigned long long)n * cs];
    }
};

// Division by a divisor d fixed for the whole launch (a kernel size, an output width), without
// the ~20-instruction integer division: q = floor(n * mul / 2^shift) with l = ceil(log2 d),
// mul = ceil(2^(31 + l) / d) (below 2^32) and shift = 31 + l, exact for every n < 2^31
// (Granlund and Montgomery 1994, theorem 4.2 with N = 31: 0 <= mul d - 2^(31 + l) < d <= 2^l;
// the round-up method of CUTLASS's FastDivmod). d = 1 needs no case of its own (mul 2^31,
// shift 31). The host checks that the dividends (the GEMM's row and column indices) stay
// below 2^31; ops.rs's tests check the formula. The gather divides up to twice per loaded
// value, so this keeps its integer work small next to the tile's multiply-adds.
struct FastDiv {
    unsigned d, mul, shift;
    __device__ __forceinline__ static FastDiv of(unsigned d) {
        unsigned l = 0;
        while ((1ull << l) < d) ++l;
        return {d, (unsigned)(((1ull << (31 + l)) + d - 1) / d), 31 + l};
    }
    __device__ __forceinline__ unsigned div(unsigned n) const {
        return (unsigned)(((unsigned long long)n * mul) >> shift);
    }
    // q = n / d and the remainder n - q d.
    __device__ __forceinline__ unsigned divmod(unsigned n, unsigned& rem) const {
        const unsigned q = div(n);
        rem = n - q * d;
        return q;
    }
};

// A convolution's input x (CNHW) and geometry, and the entry of its lowered matrix: col[row][c]
// of engine_conv.cu's eng_im2col, with row = (ci * k + ky) * k + kx, c = (s * oh + oy) * ow + ox,
// zero outside the input. The two policies below (and ConvDgradB, over dy) split this into the part fixed per GEMM
// column and the part that varies along the shared dimension.
struct ConvSrc {
    const float* __restrict__ x;
    unsigned cin, n, h, w, k, stride, pad, oh, ow;
    FastDiv by_k, by_oh, by_ow;
    __device__ __forceinline__ ConvSrc(const float* x_, unsigned cin_, unsigned n_, unsigned h_,
                                       unsigned w_, unsigned k_, unsigned stride_,
                                       unsigned pad_, unsigned oh_, unsigned ow_)
        : x(x_), cin(cin_), n(n_), h(h_), w(w_), k(k_), stride(stride_), pad(pad_), oh(oh_),
          ow(ow_), by_k(FastDiv::of(k_)), by_oh(FastDiv::of(oh_)), by_ow(FastDiv::of(ow_)) {}
    // A tap index (ci * k + ky) * k + kx into its parts.
    __device__ __forceinline__ void tap_of(unsigned row, unsigned& ci, unsigned& ky,
                                           unsigned& kx) const {
        ci = by_k.divmod(by_k.divmod(row, kx), ky);
    }
    // A column index (s * oh + oy) * ow + ox into its parts.
    __device__ __forceinline__ void pixel_of(unsigned c, unsigned& s, unsigned& oy,
                                             unsigned& ox) const {
        s = by_oh.divmod(by_ow.divmod(c, ox), oy);
    }
    // x at plane cs = ci * n + s, row iy, column ix, or 0 in the padding. iy and ix are signed
    // (a tap left of or above the input is negative); the unsigned compare rejects those too.
    // 32-bit offsets: the host keeps the input below 2^31 elements (64-bit ones cost the large
    // tile the registers of a second resident block).
    __device__ __forceinline__ float tap(unsigned cs, int iy, int ix) const {
        return (unsigned)iy < h && (unsigned)ix < w
                   ? x[(cs * h + (unsigned)iy) * w + (unsigned)ix]
                   : 0.0f;
    }
};

// Forward, y = W col: B(k, n) = col[k][n]. The GEMM column n is an output pixel (s, oy, ox),
// fixed per thread; k is the tap (ci, ky, kx). Consecutive n are consecutive ox, so the loads
// follow n (stride-1 convolutions read consecutive x).
struct ConvFwdB {
    ConvSrc g;
    struct Col {
        unsigned s;
        int iy0, ix0;  // the window's top-left corner, padding included
    };
    __device__ __forceinline__ bool n_contig() const { return true; }
    __device__ __forceinline__ Col column(unsigned c) const {
        unsigned s, oy, ox;
        g.pixel_of(c, s, oy, ox);
        return {s, (int)(oy * g.stride) - (int)g.pad, (int)(ox * g.stride) - (int)g.pad};
    }
    __device__ __forceinline__ float at(const Col& c, unsigned row, unsigned) const {
        unsigned ci, ky, kx;
        g.tap_of(row, ci, ky, kx);
        return g.tap(ci * g.n + c.s, c.iy0 + (int)ky, c.ix0 + (int)kx);
    }
};

// Weight gradient, dW = dy col^T: B(k, n) = col[n][k]. The GEMM column n is a tap (ci, ky,
// kx), fixed per thread; k runs over the output pixels (s, oy, ox), so the loads follow k.
//
// The column context is the tap index alone: the large tile holds four columns per thread, and
// hoisting their decomposition (three words each) takes it to 144 registers on sm_90, which
// leaves room for one resident block instead of two (and spills when capped at 128). With the
// index alone it fits 128 without spilling (see eng_gemm_big_conv_wgrad's bound). Decomposing
// per load costs two FastDiv steps; the output pixel, the same for all of a thread's loads of
// a stage (the loads follow k), is decomposed once per stage.
struct ConvWgradB {
    ConvSrc g;
    struct Col {
        unsigned row;
    };
    __device__ __forceinline__ bool n_contig() const { return false; }
    __device__ __forceinline__ Col column(unsigned row) const { return {row}; }
    __device__ __forceinline__ float at(const Col& c, unsigned col, unsigned) const {
        unsigned ci, ky, kx, s, oy, ox;
        g.tap_of(c.row, ci, ky, kx);
        g.pixel_of(col, s, oy, ox);
        return g.tap(ci * g.n + s, (int)(oy * g.stride + ky) - (int)g.pad,
                     (int)(ox * g.stride + kx) - (int)g.pad);
    }
};

// Data gradient of a stride-1 convolution, dx = W^T dy without the column buffer:
// dx[ci][s][y][x] = sum over (co, ky, kx) of W[co][ci][ky][kx] dy[co][s][y + pad - ky][x + pad - kx]
// (zero outside dy). As a GEMM: A (M = cin, K = cout k k) is W with its two outer dimensions
// swapped (row ci, column (co * k + ky) * k + kx), B(k, n) the entry of dy the tap reads for the
// input pixel n = (s * h + y) * w + x, and C is dx itself (CNHW is cin x (n h w)).
//
// The source is dy, so g is a ConvSrc with the roles of the two images exchanged: its planes
// are dy's (co * n + s, oh x ow: g.h, g.w bound the reads) and it decomposes GEMM columns by the
// input's sides (g.oh, g.ow hold h and w). The GEMM column n is an input pixel, fixed per
// thread; consecutive n are consecutive x, which read consecutive dy (coalesced loads).
//
// Stride 1 only: at stride s only one tap in s^2 meets an output pixel, so the gathered matrix
// would be mostly zeros (a strided convolution's data gradient stays GEMM + eng_col2im). One
// fmaf chain over (co, ky, kx), where the lowered path rounds each tap's sum over co and
// eng_col2im adds the taps: not the same bits, the same value within FP32 rounding.
struct ConvDgradB {
    ConvSrc g;
    struct Col {
        unsigned s;
        int y0, x0;  // the input pixel shifted by the padding: dy row y0 - ky, column x0 - kx
    };
    __device__ __forceinline__ bool n_contig() const { return true; }
    __device__ __forceinline__ Col column(unsigned c) const {
        unsigned s, y, x;
        g.pixel_of(c, s, y, x);
        return {s, (int)(y + g.pad), (int)(x + g.pad)};
    }
    __device__ __forceinline__ float at(const Col& c, unsigned row, unsigned) const {
        unsigned co, ky, kx;
        g.tap_of(row, co, ky, kx);
        return g.tap(co * g.n + c.s, c.y0 - (int)ky, c.x0 - (int)kx);
    }
};

// Row moments for batch norm (a convolution's output rows are its channels, CNHW): with
// `moments` non-null, a GEMM block also writes, for each row of its tile, three f64 values at
// moments[3 (row * gridDim.x + blockIdx.x)]: the tile's first value k of that row (column n0,
// as stored in C), then sum (c - k) and sum (c - k)^2 over the row's columns in the tile, each
// (c - k) of two f32 values exact in f64 (unless they differ by more than 2^29 in scale) and
// the sums in a fixed order. eng_bn_train (tile_w > 0) combines a
// channel's tiles into its statistics without reading the output again; the shift by one of
// the row's own values keeps the variance from cancelling (as bn_moments). Only for products
// without split-K (gridDim.z == 1: the host checks), where a block's tile is final.
__device__ __forceinline__ void put_tile_moments(double* __restrict__ moments, unsigned row,
                                                 float k, double s1, double s2) {
    double* p = moments + 3ull * ((unsigned long long)row * gridDim.x + blockIdx.x);
    p[0] = (double)k;
    p[1] = s1;
    p[2] = s2;
}

// One block's BM x BN tile of C, for both SIMT kernels below. Each of the GEMM_THREADS threads
// computes TM x TN outputs: rows (i / 4) * (BM / 2) + ty * 4 + i % 4 and columns
// (j / 4) * (BN / 2) + tx * 4 + j % 4 (ty = t / 16, tx = t % 16), so the inner loop reads runs
// of four consecutive values of each shared tile. Every output is the same fmaf chain over k in
// increasing order, whatever the tile shape.
//
// The shared-dimension loop is double-buffered: while the block multiplies stage s, each
// thread already holds the next stage's values in registers (their global loads were issued
// before the multiply-adds, so their latency is hidden behind them) and stores them into the
// other shared buffer afterwards: one __syncthreads per stage. The buffer written at stage i
// was last read at stage i - 1, before the barrier that ended it.
//
// Where B(k, n) comes from is the policy BL (StridedB: a strided matrix; ConvFwdB, ConvWgradB:
// gathered from a convolution's input, ConvDgradB from its output gradient: implicit GEMMs). The policy only supplies values:
// the tiles, the k order and the fmaf chains are the same for every policy, so a product with
// a gathered B equals, bit for bit, the same product over the materialised matrix.
template <int BM, int BN, int BK, int TM, int TN, class BL>
__device__ __forceinline__ void gemm_tile(unsigned int M, unsigned int N, unsigned int K,
                                          float alpha, const float* __restrict__ A,
                                          unsigned int rsa, unsigned int csa, const BL bl,
                                          float beta, float* __restrict__ C, unsigned int ldc,
                                          unsigned int k_split, unsigned long long split_stride,
                                          double* __restrict__ moments) {
    static_assert(BM * BK == 4 * GEMM_THREADS && BN * BK == 4 * GEMM_THREADS,
                  "each thread loads four values of each tile");
    static_assert(TM * 16 == BM && TN * 16 == BN, "16 x 16 threads cover the tile");
    // Stored k-major so that the inner loop reads a row of each tile; +4 keeps rows 16-byte
    // aligned while breaking the power-of-two bank pattern of the transposed stores.
    __shared__ float As[2][BK][BM + 4];
    __shared__ float Bs[2][BK][BN + 4];
    const unsigned t = threadIdx.x;
    const unsigned tx = t % 16, ty = t / 16;
    const unsigned m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const unsigned kbeg = blockIdx.z * k_split;
    const unsigned kend = kbeg + k_split < K ? kbeg + k_split : K;
    if (gridDim.z > 1) C += (unsigned long long)blockIdx.z * split_stride;

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

    // Which unit-stride direction the loads follow (coalesced global reads). Each thread loads
    // four values of each tile: (mm, kk) of A and (kk, nn) of B, r = 0..3.
    const bool a_k_contig = csa == 1;
    const bool b_n_contig = bl.n_contig();
    unsigned a_m[4], a_k[4], b_k[4], b_n[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        if (a_k_contig) {
            a_k[r] = t % BK;
            a_m[r] = t / BK + (GEMM_THREADS / BK) * r;
        } else {
            a_m[r] = t % BM;
            a_k[r] = t / BM + (GEMM_THREADS / BM) * r;
        }
        if (b_n_contig) {
            b_n[r] = t % BN;
            b_k[r] = t / BN + (GEMM_THREADS / BN) * r;
        } else {
            b_k[r] = t % BK;
            b_n[r] = t / BK + (GEMM_THREADS / BK) * r;
        }
    }
    // A thread's B columns are the same at every stage: what the policy derives from the
    // column alone (an offset; for a convolution the divisions that locate the pixel or tap)
    // is computed once, here.
    typename BL::Col b_col[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) b_col[r] = bl.column(n0 + b_n[r]);
    float ra[4], rb[4];
    auto load = [&](unsigned k0) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const unsigned gm = m0 + a_m[r], gka = k0 + a_k[r];
            ra[r] = gm < M && gka < kend
                        ? A[(unsigned long long)gm * rsa + (unsigned long long)gka * csa]
                        : 0.0f;
            const unsigned gn = n0 + b_n[r], gkb = k0 + b_k[r];
            rb[r] = gn < N && gkb < kend ? bl.at(b_col[r], gkb, gn) : 0.0f;
        }
    };
    auto store = [&](int s) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            As[s][a_k[r]][a_m[r]] = ra[r];
            Bs[s][b_k[r]][b_n[r]] = rb[r];
        }
    };

    int s = 0;
    if (kbeg < kend) {
        load(kbeg);
        store(0);
    }
    __syncthreads();
    for (unsigned k0 = kbeg; k0 < kend; k0 += BK) {
        const bool more = k0 + BK < kend;
        if (more) load(k0 + BK);
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; ++i) a[i] = As[s][kk][(i / 4) * (BM / 2) + ty * 4 + i % 4];
#pragma unroll
            for (int j = 0; j < TN; ++j) b[j] = Bs[s][kk][(j / 4) * (BN / 2) + tx * 4 + j % 4];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        if (more) store(s ^ 1);
        __syncthreads();
        s ^= 1;
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const unsigned gm = m0 + (i / 4) * (BM / 2) + ty * 4 + i % 4;
        if (gm >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const unsigned gn = n0 + (j / 4) * (BN / 2) + tx * 4 + j % 4;
            if (gn >= N) continue;
            float* c = C + (unsigned long long)gm * ldc + gn;
            // beta == 0 must not read C: it may hold anything (NaN included), as in BLAS.
            const float v = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *c;
            *c = v;
            acc[i][j] = v;  // what the row moments below sum
        }
    }
    if (moments == nullptr) return;
    // Row moments (put_tile_moments): the 16 threads of a row (tx = 0..15, one half-warp)
    // hold its columns; the tile's first column is the tx = 0 thread's j = 0 value.
    const unsigned half = threadIdx.x & 16u;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const float k = __shfl_sync(0xffffffffu, acc[i][0], (int)half);
        double a = 0.0, b = 0.0;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const unsigned gn = n0 + (j / 4) * (BN / 2) + tx * 4 + j % 4;
            if (gn >= N) continue;
            const double d = (double)acc[i][j] - (double)k;
            a += d;
            b += d * d;
        }
        for (int o = 8; o > 0; o >>= 1) {
            a += __shfl_xor_sync(0xffffffffu, a, o);
            b += __shfl_xor_sync(0xffffffffu, b, o);
        }
        const unsigned gm = m0 + (i / 4) * (BM / 2) + ty * 4 + i % 4;
        if (tx == 0 && gm < M) put_tile_moments(moments, gm, k, a, b);
    }
}

// GEMM_BM x GEMM_BN tiles, 4 x 4 outputs per thread (any shape).
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
eng_gemm(unsigned int M, unsigned int N, unsigned int K, float alpha,
         const float* __restrict__ A, unsigned int rsa, unsigned int csa,
         const float* __restrict__ B, unsigned int rsb, unsigned int csb, float beta,
         float* __restrict__ C, unsigned int ldc, unsigned int k_split,
         unsigned long long split_stride, double* __restrict__ moments) {
    gemm_tile<GEMM_BM, GEMM_BN, GEMM_BK, 4, 4>(M, N, K, alpha, A, rsa, csa,
                                               StridedB{B, rsb, csb}, beta, C, ldc, k_split,
                                               split_stride, moments);
}

// The same product with BIG_BM x BIG_BN tiles and 8 x 8 outputs per thread (a four times
// higher ratio of multiply-adds to shared-memory reads). Same parameters, same split-K
// convention. Launch: grid (ceil(N / BIG_BN), ceil(M / BIG_BM), splits), block GEMM_THREADS.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
eng_gemm_big(unsigned int M, unsigned int N, unsigned int K, float alpha,
             const float* __restrict__ A, unsigned int rsa, unsigned int csa,
             const float* __restrict__ B, unsigned int rsb, unsigned int csb, float beta,
             float* __restrict__ C, unsigned int ldc, unsigned int k_split,
             unsigned long long split_stride, double* __restrict__ moments) {
    gemm_tile<BIG_BM, BIG_BN, BIG_BK, 8, 8>(M, N, K, alpha, A, rsa, csa, StridedB{B, rsb, csb},
                                            beta, C, ldc, k_split, split_stride, moments);
}

// ---------------------------------------------------------------------------------------------
// Implicit-GEMM convolutions: eng_gemm / eng_gemm_big with B gathered from the convolution's
// input x (CNHW, geometry as eng_im2col) instead of read from the lowered matrix, so the
// cin k k x n oh ow column buffer is neither written nor read. Same tiles, k order and fmaf
// chains as the strided kernels, hence the same bits as eng_im2col + eng_gemm(_big); same
// alpha / beta, ldc and split-K convention (the slices summed by eng_sum_slices). The input,
// and the lowered matrix's rows and columns, must each stay below 2^31 elements (32-bit offsets,
// FastDiv): ogm_gpu::engine::ops checks it (Conv::fits_implicit).
//
//  - *_conv_fwd: C (M = cout, N = n oh ow) = alpha A (M x K = cin k k, the weights) col + beta C.
//  - *_conv_wgrad: C (M = cout, N = cin k k) = alpha A (M x K = n oh ow, dy) col^T + beta C.
//
// Launch: as eng_gemm (64 x 64 tiles) or eng_gemm_big (128 x 128).
//
// The parameter lists: the product's A operand and scalars (ENG_CONV_HEAD), the B operand's
// source with its geometry (ENG_CONV_X_SRC for the input, ENG_CONV_DY_SRC for the output
// gradient), then C and split-K (ENG_CONV_TAIL); ops.rs passes them in this order.
#define ENG_CONV_HEAD                                                                         \
    unsigned int M, unsigned int N, unsigned int K, float alpha, const float *__restrict__ A,  \
        unsigned int rsa, unsigned int csa
#define ENG_CONV_X_SRC                                                                        \
    const float *__restrict__ x, unsigned int cin, unsigned int batch, unsigned int h,         \
        unsigned int w, unsigned int ksize, unsigned int stride, unsigned int pad,             \
        unsigned int oh, unsigned int ow
#define ENG_CONV_DY_SRC                                                                       \
    const float *__restrict__ dy, unsigned int cout, unsigned int batch, unsigned int oh,      \
        unsigned int ow, unsigned int ksize, unsigned int pad, unsigned int h, unsigned int w
#define ENG_CONV_TAIL                                                                         \
    float beta, float *__restrict__ C, unsigned int ldc, unsigned int k_split,                 \
        unsigned long long split_stride
// The B policies built from those parameters. The data gradient's source is dy read as a
// stride-1 convolution's input of oh x ow (roles swapped: its "output" is the input's h x w).
#define ENG_CONV_FWD_B ConvFwdB{ConvSrc{x, cin, batch, h, w, ksize, stride, pad, oh, ow}}
#define ENG_CONV_WGRAD_B ConvWgradB{ConvSrc{x, cin, batch, h, w, ksize, stride, pad, oh, ow}}
#define ENG_CONV_DGRAD_B ConvDgradB{ConvSrc{dy, cout, batch, oh, ow, ksize, 1, pad, h, w}}

// The forward kernels take the row moments' destination last (null: none), as eng_gemm; the
// gradients (never followed by a batch norm's statistics) have no such parameter (MOM empty,
// and nullptr passed, so their epilogue has no moments code).
#define ENG_CONV_MOMENTS , double *__restrict__ moments
#define ENG_CONV_GEMM(name, BMv, BNv, BKv, T, bounds, SRC, B, MOM, mom)                       \
    extern "C" __global__ void __launch_bounds__ bounds                                       \
    name(ENG_CONV_HEAD, SRC, ENG_CONV_TAIL MOM) {                                             \
        gemm_tile<BMv, BNv, BKv, T, T>(M, N, K, alpha, A, rsa, csa, B, beta, C, ldc, k_split, \
                                       split_stride, mom);                                    \
    }
ENG_CONV_GEMM(eng_gemm_conv_fwd, GEMM_BM, GEMM_BN, GEMM_BK, 4, (GEMM_THREADS), ENG_CONV_X_SRC,
              ENG_CONV_FWD_B, ENG_CONV_MOMENTS, moments)
ENG_CONV_GEMM(eng_gemm_big_conv_fwd, BIG_BM, BIG_BN, BIG_BK, 8, (GEMM_THREADS), ENG_CONV_X_SRC,
              ENG_CONV_FWD_B, ENG_CONV_MOMENTS, moments)
ENG_CONV_GEMM(eng_gemm_conv_wgrad, GEMM_BM, GEMM_BN, GEMM_BK, 4, (GEMM_THREADS),
              ENG_CONV_X_SRC, ENG_CONV_WGRAD_B, , nullptr)
// Two resident blocks asked for explicitly: left alone, ptxas gives this one 130 registers
// (sm_80 and sm_90), which leaves room for one 256-thread block per multiprocessor; capped
// at 128 it does not spill.
ENG_CONV_GEMM(eng_gemm_big_conv_wgrad, BIG_BM, BIG_BN, BIG_BK, 8, (GEMM_THREADS, 2),
              ENG_CONV_X_SRC, ENG_CONV_WGRAD_B, , nullptr)

// Implicit-GEMM data gradients of stride-1 convolutions (ConvDgradB): C (M = cin, N = n h w,
// the input's CNHW layout) = alpha A (M x K = cout k k: the weights, outer dimensions swapped)
// B + beta C, B gathered from dy (cout x n x oh x ow). Same tiles and split-K convention as
// eng_gemm / eng_gemm_big; dy, K and N each below 2^31 (ops.rs checks).
ENG_CONV_GEMM(eng_gemm_conv_dgrad, GEMM_BM, GEMM_BN, GEMM_BK, 4, (GEMM_THREADS),
              ENG_CONV_DY_SRC, ENG_CONV_DGRAD_B, , nullptr)
ENG_CONV_GEMM(eng_gemm_big_conv_dgrad, BIG_BM, BIG_BN, BIG_BK, 8, (GEMM_THREADS),
              ENG_CONV_DY_SRC, ENG_CONV_DGRAD_B, , nullptr)
#undef ENG_CONV_GEMM

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

// ---------------------------------------------------------------------------------------------
// Tensor cores: TF32 and BF16.
//
// eng_gemm_tf32 and eng_gemm_bf16 compute what eng_gemm computes (same parameters, same strided
// operands, alpha / beta, ldc, split-K convention) on the tensor cores, in mixed precision: A
// and B stay f32 in memory, each operand is rounded to the narrower format as it is staged in
// shared memory, the products are accumulated in f32, and C is read and written in f32.
//
//  - TF32, mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32: operands rounded by
//    cvt.rna.tf32.f32 (10 explicit mantissa bits, round to nearest with ties away from zero,
//    the f32 exponent range), a relative error of at most 2^-11 each, so each product one of
//    at most about 2^-10.
//  - BF16, mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: operands rounded by
//    cvt.rn.bf16.f32 (7 explicit mantissa bits, round to nearest with ties to even, the f32
//    exponent range), a relative error of at most 2^-8 each, so each product one of at most
//    about 2^-7. A product of two BF16 values (8 significant bits each) is exact in f32.
//
// Either result is a reduced-precision GEMM, not the FP32 reference (Precision::Tf32 and
// Precision::Bf16 in ogm_gpu::engine::ops select them, and only for products large enough to
// pay). Both kernels are one template, tc_gemm, over the operand format (Tf32Op, Bf16Op): the
// tile loader, the double buffering and the epilogue are shared; the format decides the
// rounding, the shared-memory layout and the fragment reads.
//
// On the CPU emulator (no __CUDA_ARCH__) the conversions and the warp-level mma are emulated:
// the same roundings in integer arithmetic, and the mma from __shfl_sync over the PTX ISA's
// fragment layouts (groupID g = lane >> 2, threadID_in_group t = lane & 3):
//   m16n8k8 .tf32 (one value per register):
//     A (16 x 8, row): a0 (g, t)  a1 (g + 8, t)  a2 (g, t + 4)  a3 (g + 8, t + 4)
//     B (8 x 8, col):  b0 (k = t, n = g)  b1 (k = t + 4, n = g)
//   m16n8k16 .bf16 (two values per register, the lower index in the low 16 bits):
//     A (16 x 16, row): a0 (g, 2t | 2t + 1)  a1 (g + 8, 2t | 2t + 1)
//                       a2 (g, 2t + 8 | 2t + 9)  a3 (g + 8, 2t + 8 | 2t + 9)
//     B (16 x 8, col):  b0 (k = 2t | 2t + 1, n = g)  b1 (k = 2t + 8 | 2t + 9, n = g)
//   C, D (16 x 8, f32, both shapes): c0 (g, 2t)  c1 (g, 2t + 1)  c2 (g + 8, 2t)  c3 (g + 8, 2t + 1)
// so a kernel that put a value in the wrong register (or half of one) computes a wrong product
// on the emulator too. The hardware's order and rounding of the accumulation inside one mma is
// not documented; the emulation adds the products in k order with fmaf (exact products, one
// rounding each), and the tests bound the difference rather than assume an order.

// The TF32 value nearest to x (ties away from zero), as the bits of an f32 whose low 13
// mantissa bits are zero. Infinities and NaNs pass unchanged.
__device__ __forceinline__ unsigned tf32_round_bits(float x) {
#ifdef __CUDA_ARCH__
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#else
    unsigned u = __float_as_uint(x);
    // Adding half a TF32 unit to the magnitude bits and truncating rounds the magnitude to
    // nearest with ties up, i.e. away from zero; a carry into the exponent is the right result
    // (up to infinity past the largest finite TF32 value).
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
    return u;
#endif
}

// The BF16 value nearest to x (ties to even), as its 16 bits (the high half of the f32 it
// stands for) in the low half of the result. Infinities keep their sign; a NaN stays a NaN.
__device__ __forceinline__ unsigned bf16_round_bits(float x) {
#ifdef __CUDA_ARCH__
    unsigned short r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x));
    return r;
#else
    const unsigned u = __float_as_uint(x);
    // A NaN whose payload lies in the low 16 bits alone would truncate to an infinity: keep
    // the sign and return the canonical quiet NaN instead (the payload is not modelled).
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x7fc0u;
    // Adding 0x7fff plus the last kept bit and truncating rounds to nearest with ties to even;
    // a carry into the exponent is the right result (up to infinity past the largest finite
    // BF16 value). Infinities have no low bits to round and pass unchanged.
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
#endif
}

#ifndef __CUDA_ARCH__
// The emulation's halves of one mma: each lane gathers, with __shfl_sync, the rows of A and
// the columns of B its four outputs need, then adds the products of each output in k order.

// TF32: ra[h][k] = A(g + 8h, k) of the m16n8k8 tile in fragments a. The tensor cores read only
// the TF32 bits of each operand register.
__device__ __forceinline__ void emu_gather_a_tf32(const unsigned (&a)[4], float (&ra)[2][8]) {
    const unsigned lane = threadIdx.x & 31u, g = lane >> 2;
    const unsigned long long keep = 0xffffe000u;
    const unsigned long long a01 = (a[0] & keep) | (unsigned long long)(a[1] & keep) << 32;
    const unsigned long long a23 = (a[2] & keep) | (unsigned long long)(a[3] & keep) << 32;
    for (unsigned q = 0; q < 4; ++q) {
        // Lane 4g + q holds A(g, q), A(g + 8, q) in a0, a1 and A(g, q + 4), A(g + 8, q + 4)
        // in a2, a3.
        const unsigned long long x = __shfl_sync(0xffffffffu, a01, (int)(4 * g + q));
        const unsigned long long y = __shfl_sync(0xffffffffu, a23, (int)(4 * g + q));
        ra[0][q] = __uint_as_float((unsigned)x);
        ra[1][q] = __uint_as_float((unsigned)(x >> 32));
        ra[0][q + 4] = __uint_as_float((unsigned)y);
        ra[1][q + 4] = __uint_as_float((unsigned)(y >> 32));
    }
}

// TF32: rb[e][k] = B(k, 2t + e) of the m16n8k8 tile in fragments b.
__device__ __forceinline__ void emu_gather_b_tf32(const unsigned (&b)[2], float (&rb)[2][8]) {
    const unsigned lane = threadIdx.x & 31u, t = lane & 3u;
    const unsigned long long keep = 0xffffe000u;
    const unsigned long long b01 = (b[0] & keep) | (unsigned long long)(b[1] & keep) << 32;
    for (unsigned q = 0; q < 4; ++q) {
        // Lane 4n + q holds B(q, n) in b0 and B(q + 4, n) in b1.
        for (unsigned e = 0; e < 2; ++e) {
            const unsigned long long z =
                __shfl_sync(0xffffffffu, b01, (int)(4 * (2 * t + e) + q));
            rb[e][q] = __uint_as_float((unsigned)z);
            rb[e][q + 4] = __uint_as_float((unsigned)(z >> 32));
        }
    }
}

// The f32 a BF16 value (16 bits, low or high half of a register) stands for.
__device__ __forceinline__ float emu_bf16_lo(unsigned long long r) {
    return __uint_as_float((unsigned)(r & 0xffffu) << 16);
}
__device__ __forceinline__ float emu_bf16_hi(unsigned long long r) {
    return __uint_as_float((unsigned)(r & 0xffff0000u));
}

// BF16: ra[h][k] = A(g + 8h, k) of the m16n8k16 tile in fragments a.
__device__ __forceinline__ void emu_gather_a_bf16(const unsigned (&a)[4], float (&ra)[2][16]) {
    const unsigned lane = threadIdx.x & 31u, g = lane >> 2;
    const unsigned long long a01 = a[0] | (unsigned long long)a[1] << 32;
    const unsigned long long a23 = a[2] | (unsigned long long)a[3] << 32;
    for (unsigned q = 0; q < 4; ++q) {
        // Lane 4g + q holds A(g, 2q | 2q + 1) in a0, A(g + 8, 2q | 2q + 1) in a1, and the same
        // rows at columns 2q + 8 | 2q + 9 in a2, a3.
        const unsigned long long x = __shfl_sync(0xffffffffu, a01, (int)(4 * g + q));
        const unsigned long long y = __shfl_sync(0xffffffffu, a23, (int)(4 * g + q));
        for (unsigned h = 0; h < 2; ++h) {
            const unsigned long long xh = x >> (32 * h), yh = y >> (32 * h);
            ra[h][2 * q] = emu_bf16_lo(xh);
            ra[h][2 * q + 1] = emu_bf16_hi(xh);
            ra[h][2 * q + 8] = emu_bf16_lo(yh);
            ra[h][2 * q + 9] = emu_bf16_hi(yh);
        }
    }
}

// BF16: rb[e][k] = B(k, 2t + e) of the m16n8k16 tile in fragments b.
__device__ __forceinline__ void emu_gather_b_bf16(const unsigned (&b)[2], float (&rb)[2][16]) {
    const unsigned lane = threadIdx.x & 31u, t = lane & 3u;
    const unsigned long long b01 = b[0] | (unsigned long long)b[1] << 32;
    for (unsigned q = 0; q < 4; ++q) {
        // Lane 4n + q holds B(2q | 2q + 1, n) in b0 and B(2q + 8 | 2q + 9, n) in b1.
        for (unsigned e = 0; e < 2; ++e) {
            const unsigned long long z =
                __shfl_sync(0xffffffffu, b01, (int)(4 * (2 * t + e) + q));
            rb[e][2 * q] = emu_bf16_lo(z);
            rb[e][2 * q + 1] = emu_bf16_hi(z);
            rb[e][2 * q + 8] = emu_bf16_lo(z >> 32);
            rb[e][2 * q + 9] = emu_bf16_hi(z >> 32);
        }
    }
}

// d (c0..c3: (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1)) += the gathered product
// over K values of the shared dimension.
template <int K>
__device__ __forceinline__ void emu_mma(float (&d)[4], const float (&ra)[2][K],
                                        const float (&rb)[2][K]) {
    for (unsigned h = 0; h < 2; ++h)
        for (unsigned e = 0; e < 2; ++e)
            for (unsigned k = 0; k < K; ++k) d[2 * h + e] = fmaf(ra[h][k], rb[e][k], d[2 * h + e]);
}

// acc[i][j] += A_i B_j for MI x NI tiles of K values, gathering each A_i and B_j once rather
// than once per mma (the same values, four times fewer shuffles for 4 x 4 tiles), which keeps
// the emulated tests fast.
template <int K, int MI, int NI, class GatherA, class GatherB>
__device__ __forceinline__ void emu_mma_tiles(float (&acc)[MI][NI][4], const unsigned (&a)[MI][4],
                                              const unsigned (&b)[NI][2], GatherA gather_a,
                                              GatherB gather_b) {
    float ra[MI][2][K], rb[NI][2][K];
    for (int i = 0; i < MI; ++i) gather_a(a[i], ra[i]);
    for (int j = 0; j < NI; ++j) gather_b(b[j], rb[j]);
    for (int i = 0; i < MI; ++i)
        for (int j = 0; j < NI; ++j) emu_mma<K>(acc[i][j], ra[i], rb[j]);
}
#endif

// acc[i][j] += A_i B_j for MI x NI m16n8k8 TF32 tiles held in the fragment registers above
// (a and b: TF32 bits): one mma each.
template <int MI, int NI>
__device__ __forceinline__ void mma_tf32_tiles(float (&acc)[MI][NI][4],
                                               const unsigned (&a)[MI][4],
                                               const unsigned (&b)[NI][2]) {
#ifdef __CUDA_ARCH__
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
            asm volatile(
                "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, "
                "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]),
                  "+f"(acc[i][j][3])
                : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]),
                  "r"(b[j][1]));
#else
    emu_mma_tiles<8>(acc, a, b, emu_gather_a_tf32, emu_gather_b_tf32);
#endif
}

// acc[i][j] += A_i B_j for MI x NI m16n8k16 BF16 tiles held in the fragment registers above
// (a and b: two BF16 values per register): one mma each.
template <int MI, int NI>
__device__ __forceinline__ void mma_bf16_tiles(float (&acc)[MI][NI][4],
                                               const unsigned (&a)[MI][4],
                                               const unsigned (&b)[NI][2]) {
#ifdef __CUDA_ARCH__
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
            asm volatile(
                "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]),
                  "+f"(acc[i][j][3])
                : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]),
                  "r"(b[j][1]));
#else
    emu_mma_tiles<16>(acc, a, b, emu_gather_a_bf16, emu_gather_b_bf16);
#endif
}

// TF32 operands: one 32-bit word per value in shared memory, already rounded (one conversion
// per element rather than one per fragment read), two m16n8k8 steps per stage.
//
// Padding makes the fragment reads conflict-free: a is [m][k] with a row of TC_BK + 4 = 20
// words (lane (g, t) reads bank 20 g + t mod 32: 32 distinct banks), b is [k][n] with a row of
// TC_BN + 8 = 136 words (bank 8 t + g: 32 distinct). The stores of a transposed A or B operand
// (unit stride along m, or along k for B) still meet 4-way conflicts; they are one store per
// element and stage against four fragment reads.
struct Tf32Op {
    struct alignas(16) Tiles {
        unsigned a[2][TC_BM][TC_BK + 4];
        unsigned b[2][TC_BK][TC_BN + 8];
    };
    static __device__ __forceinline__ unsigned round(float x) { return tf32_round_bits(x); }
    static __device__ __forceinline__ void put(Tiles& s, unsigned buf, unsigned mm, unsigned ka,
                                               unsigned va, unsigned kb, unsigned nn,
                                               unsigned vb) {
        s.a[buf][mm][ka] = va;
        s.b[buf][kb][nn] = vb;
    }
    // acc += this warp's 64 x 32 share of stage buf's product.
    static __device__ __forceinline__ void multiply(float (&acc)[4][4][4], const Tiles& s,
                                                    unsigned buf, unsigned wm, unsigned wn,
                                                    unsigned g, unsigned q) {
#pragma unroll
        for (unsigned ks = 0; ks < TC_BK; ks += 8) {
            unsigned af[4][4], bf[4][2];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const unsigned r = wm + 16u * i + g;
                af[i][0] = s.a[buf][r][ks + q];
                af[i][1] = s.a[buf][r + 8][ks + q];
                af[i][2] = s.a[buf][r][ks + q + 4];
                af[i][3] = s.a[buf][r + 8][ks + q + 4];
            }
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const unsigned c = wn + 8u * j + g;
                bf[j][0] = s.b[buf][ks + q][c];
                bf[j][1] = s.b[buf][ks + q + 4][c];
            }
            mma_tf32_tiles(acc, af, bf);
        }
    }
};

// The two BF16 values at p[0] (low half) and p[1] (high half) as one fragment register.
__device__ __forceinline__ unsigned bf16_pair(const unsigned short* p) {
#ifdef __CUDA_ARCH__
    // One 32-bit shared load: p is 4-byte aligned (an even column of a 4-byte aligned row).
    return *reinterpret_cast<const unsigned*>(p);
#else
    return p[0] | (unsigned)p[1] << 16;
#endif
}

// BF16 operands: 16 bits per value in shared memory, already rounded, one m16n8k16 step per
// stage. A fragment register holds two values adjacent in k, so both tiles are stored k-minor
// (a as [m][k], b transposed as [n][k]) and each register is one 32-bit read of a k pair.
// The loader's threads hold values of one k and several m (or n), never a k pair, hence one
// cvt.rn.bf16.f32 and one 16-bit store per value rather than cvt.rn.bf16x2.f32.
//
// A row of TC_BK + 8 = 24 values is 12 words: lane (g, t) reads word 12 g + t (+ 4) of its
// rows, bank 12 g + t mod 32, which is 32 distinct banks (12 g mod 32 = 0, 12, 24, 4, 16, 28,
// 8, 20). The stores along m (a transposed A) or along n (a row-major B, the common case) hit
// 8 distinct banks, a 4-way conflict for one store per element and stage; the stores along k
// are conflict-free.
struct Bf16Op {
    struct alignas(16) Tiles {
        unsigned short a[2][TC_BM][TC_BK + 8];
        unsigned short b[2][TC_BN][TC_BK + 8];
    };
    static __device__ __forceinline__ unsigned round(float x) { return bf16_round_bits(x); }
    static __device__ __forceinline__ void put(Tiles& s, unsigned buf, unsigned mm, unsigned ka,
                                               unsigned va, unsigned kb, unsigned nn,
                                               unsigned vb) {
        s.a[buf][mm][ka] = (unsigned short)va;
        s.b[buf][nn][kb] = (unsigned short)vb;
    }
    static __device__ __forceinline__ void multiply(float (&acc)[4][4][4], const Tiles& s,
                                                    unsigned buf, unsigned wm, unsigned wn,
                                                    unsigned g, unsigned q) {
#pragma unroll
        for (unsigned ks = 0; ks < TC_BK; ks += 16) {
            unsigned af[4][4], bf[4][2];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const unsigned r = wm + 16u * i + g;
                af[i][0] = bf16_pair(&s.a[buf][r][ks + 2 * q]);
                af[i][1] = bf16_pair(&s.a[buf][r + 8][ks + 2 * q]);
                af[i][2] = bf16_pair(&s.a[buf][r][ks + 2 * q + 8]);
                af[i][3] = bf16_pair(&s.a[buf][r + 8][ks + 2 * q + 8]);
            }
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const unsigned c = wn + 8u * j + g;
                bf[j][0] = bf16_pair(&s.b[buf][c][ks + 2 * q]);
                bf[j][1] = bf16_pair(&s.b[buf][c][ks + 2 * q + 8]);
            }
            mma_bf16_tiles(acc, af, bf);
        }
    }
};
static_assert(TC_BK % 16 == 0, "a stage is whole m16n8k16 steps");

// Row moments (put_tile_moments) of tc_gemm's tile, whose values (as stored in C) each thread
// holds in acc: rows wm + 16 i + g + 8 h, columns wn + 8 j + 2 q + e. A row's 128 columns lie
// in the four lanes q = 0..3 of a group of each of the four warps with its wm; the tile's
// first column is the (wn = 0, q = 0) thread's j = 0, e = 0 value. The operand tiles' shared
// memory is free once the product is done (the last stage ended with a barrier) and holds the
// shifts and the per-warp sums: 128 floats, then 4 x 128 pairs of doubles.
template <class Tiles>
__device__ __forceinline__ void tc_tile_moments(const float (&acc)[4][4][4], Tiles& tiles,
                                                unsigned M, unsigned N, unsigned m0,
                                                unsigned n0, unsigned wm, unsigned wn,
                                                unsigned g, unsigned q,
                                                double* __restrict__ moments) {
    static_assert(sizeof(Tiles) >= TC_BM * sizeof(float) + 8 * TC_BM * sizeof(double),
                  "the operand tiles hold the moments' scratch");
    double* sums = reinterpret_cast<double*>(&tiles);        // [TC_BN / 32][TC_BM][2]
    float* shift = reinterpret_cast<float*>(sums + 8 * TC_BM);  // [TC_BM]
    const unsigned wcol = wn / 32u;
    if (wn == 0 && q == 0) {
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (unsigned h = 0; h < 2; ++h) shift[wm + 16u * i + g + 8u * h] = acc[i][0][2 * h];
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (unsigned h = 0; h < 2; ++h) {
            const unsigned r = wm + 16u * i + g + 8u * h;
            const double k = (double)shift[r];
            double a = 0.0, b = 0.0;
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (unsigned e = 0; e < 2; ++e) {
                    if (n0 + wn + 8u * j + 2u * q + e >= N) continue;
                    const double d = (double)acc[i][j][2 * h + e] - k;
                    a += d;
                    b += d * d;
                }
            for (int o = 1; o < 4; o <<= 1) {
                a += __shfl_xor_sync(0xffffffffu, a, o);
                b += __shfl_xor_sync(0xffffffffu, b, o);
            }
            if (q == 0) {
                sums[2 * (wcol * TC_BM + r)] = a;
                sums[2 * (wcol * TC_BM + r) + 1] = b;
            }
        }
    }
    __syncthreads();
    const unsigned r = threadIdx.x;
    if (r < TC_BM && m0 + r < M) {
        double a = 0.0, b = 0.0;
        for (unsigned w = 0; w < TC_BN / 32u; ++w) {
            a += sums[2 * (w * TC_BM + r)];
            b += sums[2 * (w * TC_BM + r) + 1];
        }
        put_tile_moments(moments, m0 + r, shift[r], a, b);
    }
}

// C = alpha A B + beta C on the tensor cores with operands of format Op; parameters and
// split-K as eng_gemm.
//
// Tiling: a block computes TC_BM x TC_BN outputs; warp w covers rows 64 (w & 1) .. + 64 and
// columns 32 (w >> 1) .. + 32 as 4 x 4 mma tiles (64 f32 accumulators per thread). Each stage
// stages TC_BK values of the shared dimension in shared memory, rounded by Op as they are
// stored. Two stages are in flight: while the warps multiply stage s, each thread holds stage
// s + 1's rounded values in registers and stores them into the other buffer afterwards, so one
// barrier per stage suffices.
//
// Where B(k, n) comes from is the policy BL, as in gemm_tile (StridedB; ConvFwdB, ConvWgradB,
// ConvDgradB for the implicit-GEMM convolutions): the values, hence their roundings, the tiles and the k
// order are the same for every policy, so a product with a gathered B equals, bit for bit, the
// same product over the materialised matrix.
template <class Op, class BL>
__device__ __forceinline__ void tc_gemm(unsigned int M, unsigned int N, unsigned int K,
                                        float alpha, const float* __restrict__ A,
                                        unsigned int rsa, unsigned int csa, const BL bl,
                                        float beta, float* __restrict__ C, unsigned int ldc,
                                        unsigned int k_split, unsigned long long split_stride,
                                        double* __restrict__ moments) {
    __shared__ typename Op::Tiles tiles;
    const unsigned t = threadIdx.x, lane = t & 31u, warp = t >> 5;
    const unsigned wm = (warp & 1u) * 64u, wn = (warp >> 1) * 32u;
    const unsigned g = lane >> 2, q = lane & 3u;
    const unsigned m0 = blockIdx.y * TC_BM, n0 = blockIdx.x * TC_BN;
    const unsigned kbeg = blockIdx.z * k_split;
    const unsigned kend = kbeg + k_split < K ? kbeg + k_split : K;
    if (gridDim.z > 1) C += (unsigned long long)blockIdx.z * split_stride;

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

    // Which unit-stride direction the loads follow (coalesced global reads), as in eng_gemm.
    const bool a_k_contig = csa == 1;
    const bool b_n_contig = bl.n_contig();
    // Each tile is 2048 values, 8 per thread: element r of this thread's share.
    auto a_at = [&](int r, unsigned& mm, unsigned& kk) {
        if (a_k_contig) {
            kk = t % TC_BK;
            mm = t / TC_BK + 16u * r;
        } else {
            mm = t % TC_BM;
            kk = t / TC_BM + 2u * r;
        }
    };
    auto b_at = [&](int r, unsigned& kk, unsigned& nn) {
        if (b_n_contig) {
            nn = t % TC_BN;
            kk = t / TC_BN + 2u * r;
        } else {
            kk = t % TC_BK;
            nn = t / TC_BK + 16u * r;
        }
    };
    // A thread's B columns are the same at every stage (one column when the loads follow n,
    // eight when they follow k): what the policy derives from the column alone is computed
    // once, here.
    typename BL::Col b_col[8];
#pragma unroll
    for (int r = 0; r < 8; ++r) {
        unsigned kk, nn;
        b_at(r, kk, nn);
        b_col[r] = bl.column(n0 + nn);
    }
    unsigned ra[8], rb[8];  // the next stage, rounded (Op's bits)
    auto fetch = [&](unsigned k0) {
#pragma unroll
        for (int r = 0; r < 8; ++r) {
            unsigned mm, kk;
            a_at(r, mm, kk);
            const unsigned gm = m0 + mm, gk = k0 + kk;
            ra[r] = Op::round(gm < M && gk < kend
                                  ? A[(unsigned long long)gm * rsa + (unsigned long long)gk * csa]
                                  : 0.0f);
            unsigned nn;
            b_at(r, kk, nn);
            const unsigned gn = n0 + nn, gk2 = k0 + kk;
            rb[r] = Op::round(gn < N && gk2 < kend ? bl.at(b_col[r], gk2, gn) : 0.0f);
        }
    };
    auto stash = [&](unsigned buf) {
#pragma unroll
        for (int r = 0; r < 8; ++r) {
            unsigned mm, ka, kb, nn;
            a_at(r, mm, ka);
            b_at(r, kb, nn);
            Op::put(tiles, buf, mm, ka, ra[r], kb, nn, rb[r]);
        }
    };

    unsigned buf = 0;
    if (kbeg < kend) {
        fetch(kbeg);
        stash(0);
    }
    __syncthreads();
    for (unsigned k0 = kbeg; k0 < kend; k0 += TC_BK) {
        const bool more = k0 + TC_BK < kend;
        if (more) fetch(k0 + TC_BK);
        Op::multiply(acc, tiles, buf, wm, wn, g, q);
        // The other buffer was last read in the previous stage, before its barrier.
        if (more) stash(buf ^ 1u);
        __syncthreads();
        buf ^= 1u;
    }

    // Fully unrolled, so that acc stays in registers (indexed by constants only).
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (unsigned h = 0; h < 2; ++h) {
            const unsigned gm = m0 + wm + 16u * i + g + 8u * h;
            if (gm >= M) continue;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
#pragma unroll
                for (unsigned e = 0; e < 2; ++e) {
                    const unsigned gn = n0 + wn + 8u * j + 2u * q + e;
                    if (gn >= N) continue;
                    const float v = acc[i][j][2 * h + e];
                    float* c = C + (unsigned long long)gm * ldc + gn;
                    // beta == 0 must not read C (it may hold anything), as in eng_gemm.
                    const float out = beta == 0.0f ? alpha * v : alpha * v + beta * *c;
                    *c = out;
                    acc[i][j][2 * h + e] = out;  // what the row moments below sum
                }
            }
        }
    }
    if (moments != nullptr) tc_tile_moments(acc, tiles, M, N, m0, n0, wm, wn, g, q, moments);
}

// C = alpha A B + beta C with TF32 tensor cores; parameters and split-K as eng_gemm.
// Launch: grid (ceil(N / TC_BN), ceil(M / TC_BM), splits), block TC_THREADS.
extern "C" __global__ void __launch_bounds__(TC_THREADS, 2)
eng_gemm_tf32(unsigned int M, unsigned int N, unsigned int K, float alpha,
              const float* __restrict__ A, unsigned int rsa, unsigned int csa,
              const float* __restrict__ B, unsigned int rsb, unsigned int csb, float beta,
              float* __restrict__ C, unsigned int ldc, unsigned int k_split,
              unsigned long long split_stride, double* __restrict__ moments) {
    tc_gemm<Tf32Op>(M, N, K, alpha, A, rsa, csa, StridedB{B, rsb, csb}, beta, C, ldc, k_split,
                    split_stride, moments);
}

// C = alpha A B + beta C with BF16 tensor cores; parameters, split-K and launch as
// eng_gemm_tf32.
extern "C" __global__ void __launch_bounds__(TC_THREADS, 2)
eng_gemm_bf16(unsigned int M, unsigned int N, unsigned int K, float alpha,
              const float* __restrict__ A, unsigned int rsa, unsigned int csa,
              const float* __restrict__ B, unsigned int rsb, unsigned int csb, float beta,
              float* __restrict__ C, unsigned int ldc, unsigned int k_split,
              unsigned long long split_stride, double* __restrict__ moments) {
    tc_gemm<Bf16Op>(M, N, K, alpha, A, rsa, csa, StridedB{B, rsb, csb}, beta, C, ldc, k_split,
                    split_stride, moments);
}

// Implicit-GEMM convolutions on the tensor cores: eng_gemm_tf32 / eng_gemm_bf16 with B
// gathered from the convolution's input, as the FP32 *_conv_fwd / *_conv_wgrad kernels above
// (same parameters, same 2^31 limits): the bits of eng_im2col + eng_gemm_tf32 (bf16).
// Launch: as eng_gemm_tf32.
#define ENG_TC_CONV_GEMM(name, Op, SRC, B, MOM, mom)                                          \
    extern "C" __global__ void __launch_bounds__(TC_THREADS, 2)                               \
    name(ENG_CONV_HEAD, SRC, ENG_CONV_TAIL MOM) {                                             \
        tc_gemm<Op>(M, N, K, alpha, A, rsa, csa, B, beta, C, ldc, k_split, split_stride, mom); \
    }
ENG_TC_CONV_GEMM(eng_gemm_tf32_conv_fwd, Tf32Op, ENG_CONV_X_SRC, ENG_CONV_FWD_B,
                 ENG_CONV_MOMENTS, moments)
ENG_TC_CONV_GEMM(eng_gemm_tf32_conv_wgrad, Tf32Op, ENG_CONV_X_SRC, ENG_CONV_WGRAD_B, , nullptr)
ENG_TC_CONV_GEMM(eng_gemm_bf16_conv_fwd, Bf16Op, ENG_CONV_X_SRC, ENG_CONV_FWD_B,
                 ENG_CONV_MOMENTS, moments)
ENG_TC_CONV_GEMM(eng_gemm_bf16_conv_wgrad, Bf16Op, ENG_CONV_X_SRC, ENG_CONV_WGRAD_B, , nullptr)
// The stride-1 implicit data gradients (eng_gemm_conv_dgrad) on the tensor cores.
ENG_TC_CONV_GEMM(eng_gemm_tf32_conv_dgrad, Tf32Op, ENG_CONV_DY_SRC, ENG_CONV_DGRAD_B, , nullptr)
ENG_TC_CONV_GEMM(eng_gemm_bf16_conv_dgrad, Bf16Op, ENG_CONV_DY_SRC, ENG_CONV_DGRAD_B, , nullptr)
#undef ENG_TC_CONV_GEMM
#undef ENG_CONV_MOMENTS
#undef ENG_CONV_HEAD
#undef ENG_CONV_X_SRC
#undef ENG_CONV_DY_SRC
#undef ENG_CONV_TAIL
#undef ENG_CONV_FWD_B
#undef ENG_CONV_WGRAD_B
#undef ENG_CONV_DGRAD_B
