// Batch normalisation over CNHW activations (one contiguous run of `len` values per channel),
// PyTorch semantics as the CPU engine (host/src/engine/cpu/norm.rs): biased variance to
// normalise, unbiased variance into the running estimate, running = (1 - m) running + m batch.
// Sums are accumulated in f64 (per thread, then a fixed tree). The forward's variance comes
// from one pass of shifted moments (bn_moments) where the CPU takes two passes over f32
// deviations: the same value within f32 rounding of the deviations, one read of x fewer. The
// per-channel arithmetic (scale, shift, running statistics) is the CPU's, in f64, rounded to
// f32 at the same points, and the per-element arithmetic is the CPU's f32 expression.
//
// `saved` (written by the training forward, read by the backward) holds four runs of c values
// (c = gridDim.x): the batch mean, 1 / sqrt(var + eps), and the scale and shift applied. A
// forward ReLU's mask is recomputed by the backward from x and that scale and shift, the
// forward's own f32 expression and so the same bits, instead of reading the output back.
#include "engine.cuh"

// The normalised value's activation: plus the residual when there is one (the end of a
// residual block), then the ReLU when asked for. The sum takes the rounding the separate add
// pass gave it.
__device__ __forceinline__ float bn_act(float x, float scale, float shift,
                                        const float* __restrict__ residual,
                                        unsigned long long i, unsigned relu) {
    float t = bn_normalised(x, scale, shift);
    if (residual) t = t + residual[i];
    return relu ? relu_f32(t) : t;
}

// dy, masked where the forward's ReLU gave zero (its input recomputed) when relu is set.
__device__ __forceinline__ float bn_masked(float dy, float x, float scale, float shift,
                                           unsigned relu) {
    return relu && !(bn_normalised(x, scale, shift) > 0.0f) ? 0.0f : dy;
}

// Channels are split into `slices` parts of the grid's y when they are long (ops.rs,
// bn_slices): one block per channel leaves most of a GPU idle in the first stages of the paper
// model (64 channels of 200 000 values each at batch 64, on 132 multiprocessors). A split
// channel's sums are first computed per slice into `part` (f64, 2 per slice, channel-major) by
// the *_partial kernel; every block of the main kernel then adds its channel's partials in one
// fixed tree, so all of them get the same statistics and the result does not depend on how
// the blocks were scheduled. With slices == 1 the main kernel sums its channel itself and
// `part` is not read.

// Slice s of `slices` over [0, len): [lo, hi).
__device__ __forceinline__ void bn_slice(unsigned len, unsigned slices, unsigned s,
                                         unsigned long long* lo, unsigned long long* hi) {
    const unsigned long long chunk = ((unsigned long long)len + slices - 1) / slices;
    *lo = min((unsigned long long)s * chunk, (unsigned long long)len);
    *hi = min(*lo + chunk, (unsigned long long)len);
}

// The channel's sums from its `slices` partials (pairs) in `part`, in a fixed tree.
__device__ __forceinline__ void bn_gather(const double* __restrict__ part, unsigned ch,
                                          unsigned slices, double* scratch, double* s1,
                                          double* s2) {
    const double* pc = part + 2ull * ((unsigned long long)ch * slices);
    double a = 0.0, b = 0.0;
    for (unsigned i = threadIdx.x; i < slices; i += blockDim.x) {
        a += pc[2 * i];
        b += pc[2 * i + 1];
    }
    *s1 = block_sum_f64(a, scratch);
    *s2 = block_sum_f64(b, scratch);
}

// Slice sl's two sums of channel ch into part (channel-major pairs).
__device__ __forceinline__ void bn_put_part(double* __restrict__ part, unsigned ch,
                                            unsigned slices, unsigned sl, double s1,
                                            double s2) {
    double* p = part + 2ull * ((unsigned long long)ch * slices + sl);
    p[0] = s1;
    p[1] = s2;
}

// The forward statistics' sums over [lo, hi) of channel xc: sum (x - k) and sum (x - k)^2 in
// f64, k = xc[0]. One pass (the variance is s2 / len - (s1 / len)^2); the shift by one of the
// channel's own values keeps that difference from cancelling when the mean is large against
// the deviation (each (x - k) and its square are exact or nearly so in f64).
__device__ __forceinline__ void bn_moments(const float* __restrict__ xc, unsigned long long lo,
                                           unsigned long long hi, double* scratch, double* s1,
                                           double* s2) {
    const double k = (double)xc[0];
    double a = 0.0, b = 0.0;
    for (unsigned long long i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        const double d = (double)xc[i] - k;
        a += d;
        b += d * d;
    }
    *s1 = block_sum_f64(a, scratch);
    *s2 = block_sum_f64(b, scratch);
}

// The forward statistics' sums of channel ch from the row moments a forward GEMM wrote
// (put_tile_moments, engine_gemm.cu): ceil(len / tile_w) tiles of tile_w columns (the last one
// shorter), three f64 values each (shift k_t, sum (x - k_t), sum (x - k_t)^2). Each tile's
// sums are moved to the shift k of tile 0, which is x[0] of the channel (the value bn_moments
// shifts by): with d = k_t - k, sum (x - k) = s1 + n d and sum (x - k)^2 = s2 + 2 d s1 + n d^2;
// then added in a fixed tree.
__device__ __forceinline__ void bn_gather_moments(const double* __restrict__ part, unsigned ch,
                                                  unsigned len, unsigned tile_w,
                                                  double* scratch, double* s1, double* s2) {
    const unsigned tiles = (len + tile_w - 1) / tile_w;
    const double* pc = part + 3ull * ((unsigned long long)ch * tiles);
    const double k = pc[0];
    double a = 0.0, b = 0.0;
    for (unsigned i = threadIdx.x; i < tiles; i += blockDim.x) {
        const double n = (double)min(tile_w, len - i * tile_w);
        const double d = pc[3 * i] - k, t1 = pc[3 * i + 1], t2 = pc[3 * i + 2];
        a += t1 + n * d;
        b += t2 + d * (2.0 * t1 + n * d);
    }
    *s1 = block_sum_f64(a, scratch);
    *s2 = block_sum_f64(b, scratch);
}

// Forward sums of one slice of a split channel into part. Launch: grid (c, slices), block
// ENG_REDUCE_BLOCK.
extern "C" __global__ void __launch_bounds__(ENG_REDUCE_BLOCK)
eng_bn_train_partial(const float* __restrict__ x, double* __restrict__ part, unsigned int len,
                     unsigned int slices) {
    __shared__ double scratch[32];
    const unsigned ch = blockIdx.x, sl = blockIdx.y;
    unsigned long long lo, hi;
    bn_slice(len, slices, sl, &lo, &hi);
    double s1, s2;
    bn_moments(x + (unsigned long long)ch * len, lo, hi, scratch, &s1, &s2);
    if (threadIdx.x == 0) bn_put_part(part, ch, slices, sl, s1, s2);
}

// Training forward. Writes y over the block's slice: the normalised value, plus residual
// (null: none), ReLU'd when relu is set (y null: nothing, the statistics alone, and only the
// slice-0 blocks work); the slice-0 block writes `saved` for backward and updates the running
// statistics. Launch: grid (c, slices), block ENG_REDUCE_BLOCK. The sums
// come from `part`: with tile_w > 0, the row moments of the GEMM that wrote x, in tiles of
// tile_w (bn_gather_moments; no partial pass, x read once); otherwise with slices > 1 after
// eng_bn_train_partial into part, and with one slice from x itself.
extern "C" __global__ void __launch_bounds__(ENG_REDUCE_BLOCK)
eng_bn_train(const float* __restrict__ x, float* __restrict__ y,
             const float* __restrict__ gamma, const float* __restrict__ beta,
             float* __restrict__ running_mean, float* __restrict__ running_var,
             float* __restrict__ saved, const float* __restrict__ residual, unsigned int len,
             double momentum, double eps, unsigned int relu, const double* __restrict__ part,
             unsigned int slices, unsigned int tile_w) {
    __shared__ double scratch[32];
    __shared__ float sh_scale, sh_shift;
    const unsigned ch = blockIdx.x, sl = blockIdx.y, c = gridDim.x;
    if (y == nullptr && sl != 0) return;  // the whole block: no output to write
    const unsigned long long base = (unsigned long long)ch * len;
    const float* xc = x + base;
    double s1, s2;
    if (tile_w > 0) {
        bn_gather_moments(part, ch, len, tile_w, scratch, &s1, &s2);
    } else if (slices == 1) {
        bn_moments(xc, 0, len, scratch, &s1, &s2);
    } else {
        bn_gather(part, ch, slices, scratch, &s1, &s2);
    }
    if (threadIdx.x == 0) {
        const double off = s1 / (double)len;
        const double mean = (double)xc[0] + off;
        const double var = fmax(s2 / (double)len - off * off, 0.0);
        const double invstd = 1.0 / sqrt(var + eps);
        const double g = (double)gamma[ch];
        sh_scale = (float)(g * invstd);
        sh_shift = (float)((double)beta[ch] - mean * g * invstd);
        if (sl == 0) {
            const double unbiased = var * (double)len / (double)(len - 1);
            saved[ch] = (float)mean;
            saved[c + ch] = (float)invstd;
            saved[2 * c + ch] = sh_scale;
            saved[3 * c + ch] = sh_shift;
            running_mean[ch] =
                (float)((1.0 - momentum) * (double)running_mean[ch] + momentum * mean);
            running_var[ch] =
                (float)((1.0 - momentum) * (double)running_var[ch] + momentum * unbiased);
        }
    }
    if (y == nullptr) return;
    __syncthreads();
    const float scale = sh_scale, shift = sh_shift;
    unsigned long long lo, hi;
    bn_slice(len, slices, sl, &lo, &hi);
    for (unsigned long long i = base + lo + threadIdx.x; i < base + hi; i += blockDim.x)
        y[i] = bn_act(x[i], scale, shift, residual, i, relu);
}

// Channel ch's evaluation inverse deviation (returned) and the scale and shift applied (the
// CPU's f64 expressions, rounded to f32 once): one function for eng_bn_eval and
// eng_bn_eval_saved, so that a consumer applying the latter has eng_bn_eval's bits.
__device__ __forceinline__ double bn_eval_affine(const float* __restrict__ gamma,
                                                 const float* __restrict__ beta,
                                                 const float* __restrict__ running_mean,
                                                 const float* __restrict__ running_var,
                                                 unsigned ch, double eps, float* scale,
                                                 float* shift) {
    const double invstd = 1.0 / sqrt((double)running_var[ch] + eps);
    const double g = (double)gamma[ch];
    *scale = (float)(g * invstd);
    *shift = (float)((double)beta[ch] - (double)running_mean[ch] * g * invstd);
    return invstd;
}

// The evaluation batch norm's values in eng_bn_train's `saved` layout (four runs of c: the
// running mean, the inverse deviation, the scale and the shift), for a consumer that applies
// them as it reads (eng_maxpool_forward's bn_saved) instead of reading a written output.
// Launch: grid-stride over the c channels, block ENG_BLOCK.
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_bn_eval_saved(const float* __restrict__ gamma, const float* __restrict__ beta,
                  const float* __restrict__ running_mean,
                  const float* __restrict__ running_var, float* __restrict__ saved,
                  unsigned int c, double eps) {
    ENG_FOR(i, c) {
        const unsigned ch = (unsigned)i;
        float scale, shift;
        const double invstd =
            bn_eval_affine(gamma, beta, running_mean, running_var, ch, eps, &scale, &shift);
        saved[ch] = running_mean[ch];
        saved[c + ch] = (float)invstd;
        saved[2 * c + ch] = scale;
        saved[3 * c + ch] = shift;
    }
}

// Evaluation forward with the running statistics. Thread 0 of each block computes its
// channel's scale and shift once (the CPU's f64 expressions); the block normalises its slice,
// adds residual (null: none) and applies the ReLU as eng_bn_train. Launch: grid (c, slices),
// block ENG_REDUCE_BLOCK (slices as for training, ops.rs bn_slices).
extern "C" __global__ void __launch_bounds__(ENG_REDUCE_BLOCK)
eng_bn_eval(const float* __restrict__ x, float* __restrict__ y, const float* __restrict__ gamma,
            const float* __restrict__ beta, const float* __restrict__ running_mean,
            const float* __restrict__ running_var, const float* __restrict__ residual,
            unsigned int len, double eps, unsigned int relu, unsigned int slices) {
    __shared__ float sh_scale, sh_shift;
    const unsigned ch = blockIdx.x;
    if (threadIdx.x == 0) {
        bn_eval_affine(gamma, beta, running_mean, running_var, ch, eps, &sh_scale, &sh_shift);
    }
    __syncthreads();
    const float scale = sh_scale, shift = sh_shift;
    const unsigned long long base = (unsigned long long)ch * len;
    unsigned long long lo, hi;
    bn_slice(len, slices, blockIdx.y, &lo, &hi);
    for (unsigned long long i = base + lo + threadIdx.x; i < base + hi; i += blockDim.x)
        y[i] = bn_act(x[i], scale, shift, residual, i, relu);
}

// The backward sums over [lo, hi) of one channel (offset base): sum dy and sum dy (x - m),
// dy masked (bn_masked) when relu is set.
__device__ __forceinline__ void bn_grad_sums(const float* __restrict__ x,
                                             const float* __restrict__ dy, unsigned relu,
                                             float scale, float shift, unsigned long long base,
                                             unsigned long long lo, unsigned long long hi,
                                             float m, double* scratch, double* sdy,
                                             double* sdyx) {
    double a = 0.0, b = 0.0;
    for (unsigned long long i = base + lo + threadIdx.x; i < base + hi; i += blockDim.x) {
        const float v = x[i];
        const float g = bn_masked(dy[i], v, scale, shift, relu);
        a += (double)g;
        b += (double)(g * (v - m));
    }
    *sdy = block_sum_f64(a, scratch);
    *sdyx = block_sum_f64(b, scratch);
}

// Backward sums of one slice of a split channel into part. Launch: grid (c, slices), block
// ENG_REDUCE_BLOCK.
extern "C" __global__ void __launch_bounds__(ENG_REDUCE_BLOCK)
eng_bn_backward_partial(const float* __restrict__ x, const float* __restrict__ saved,
                        const float* __restrict__ dy, unsigned int relu,
                        double* __restrict__ part, unsigned int len, unsigned int slices) {
    __shared__ double scratch[32];
    const unsigned ch = blockIdx.x, sl = blockIdx.y, c = gridDim.x;
    unsigned long long lo, hi;
    bn_slice(len, slices, sl, &lo, &hi);
    double sdy, sdyx;
    bn_grad_sums(x, dy, relu, saved[2 * c + ch], saved[3 * c + ch],
                 (unsigned long long)ch * len, lo, hi, saved[ch], scratch, &sdy, &sdyx);
    if (threadIdx.x == 0) bn_put_part(part, ch, slices, sl, sdy, sdyx);
}

// Training backward. relu: the forward ran with its ReLU (and no residual), so dy is first
// masked where that output was zero (bn_masked). Writes dx over the block's slice; the
// slice-0 block writes dgamma and dbeta (overwritten). Launch: grid (c, slices), block
// ENG_REDUCE_BLOCK; with slices > 1 after eng_bn_backward_partial into part.
extern "C" __global__ void __launch_bounds__(ENG_REDUCE_BLOCK)
eng_bn_backward(const float* __restrict__ x, const float* __restrict__ gamma,
                const float* __restrict__ saved, const float* __restrict__ dy,
                unsigned int relu, float* __restrict__ dx, float* __restrict__ dgamma,
                float* __restrict__ dbeta, unsigned int len, const double* __restrict__ part,
                unsigned int slices) {
    __shared__ double scratch[32];
    const unsigned ch = blockIdx.x, sl = blockIdx.y, c = gridDim.x;
    const unsigned long long base = (unsigned long long)ch * len;
    const float m = saved[ch], is = saved[c + ch];
    const float scale = saved[2 * c + ch], shift = saved[3 * c + ch];
    double sdy, sdyx;
    if (slices == 1) {
        bn_grad_sums(x, dy, relu, scale, shift, base, 0, len, m, scratch, &sdy, &sdyx);
    } else {
        bn_gather(part, ch, slices, scratch, &sdy, &sdyx);
    }
    sdyx *= (double)is;
    if (threadIdx.x == 0 && sl == 0) {
        dgamma[ch] = (float)sdyx;
        dbeta[ch] = (float)sdy;
    }
    const float k = gamma[ch] * is;
    const float a = (float)(sdy / (double)len);
    const float bq = (float)(sdyx / (double)len) * is;
    unsigned long long lo, hi;
    bn_slice(len, slices, sl, &lo, &hi);
    for (unsigned long long i = base + lo + threadIdx.x; i < base + hi; i += blockDim.x) {
        const float v = x[i];
        const float g = bn_masked(dy[i], v, scale, shift, relu);
        dx[i] = k * (g - a - (v - m) * bq);
    }
}
