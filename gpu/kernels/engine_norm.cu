// Batch normalisation over CNHW activations (one contiguous run of `len` values per channel),
// PyTorch semantics as the CPU engine (host/src/engine/cpu/norm.rs): biased variance to
// normalise, unbiased variance into the running estimate, running = (1 - m) running + m batch.
// Sums are accumulated in f64 (per thread, then a fixed tree); the per-channel arithmetic
// (scale, shift, running statistics) is the CPU's, in f64, rounded to f32 at the same points,
// and the per-element arithmetic is the CPU's f32 expression.
#include "engine.cuh"

// Training forward. One block per channel. Writes y (optionally ReLU'd), saved_mean and
// saved_invstd (1 / sqrt(var + eps)) for backward, and updates the running statistics.
// Launch: grid c, block ENG_REDUCE_BLOCK.
extern "C" __global__ void __launch_bounds__(ENG_REDUCE_BLOCK)
eng_bn_train(const float* __restrict__ x, float* __restrict__ y,
             const float* __restrict__ gamma, const float* __restrict__ beta,
             float* __restrict__ running_mean, float* __restrict__ running_var,
             float* __restrict__ saved_mean, float* __restrict__ saved_invstd,
             unsigned int len, double momentum, double eps, unsigned int relu) {
    __shared__ double scratch[32];
    __shared__ float sh_scale, sh_shift;
    const unsigned ch = blockIdx.x;
    const float* xc = x + (unsigned long long)ch * len;
    float* yc = y + (unsigned long long)ch * len;
    double s = 0.0;
    for (unsigned i = threadIdx.x; i < len; i += blockDim.x) s += (double)xc[i];
    const double mean = block_sum_f64(s, scratch) / (double)len;
    const float mt = (float)mean;
    double ss = 0.0;
    for (unsigned i = threadIdx.x; i < len; i += blockDim.x) {
        const float d = xc[i] - mt;
        ss += (double)(d * d);
    }
    const double var = block_sum_f64(ss, scratch) / (double)len;
    if (threadIdx.x == 0) {
        const double invstd = 1.0 / sqrt(var + eps);
        const double g = (double)gamma[ch];
        sh_scale = (float)(g * invstd);
        sh_shift = (float)((double)beta[ch] - mean * g * invstd);
        const double unbiased = var * (double)len / (double)(len - 1);
        saved_mean[ch] = (float)mean;
        saved_invstd[ch] = (float)invstd;
        running_mean[ch] = (float)((1.0 - momentum) * (double)running_mean[ch] + momentum * mean);
        running_var[ch] =
            (float)((1.0 - momentum) * (double)running_var[ch] + momentum * unbiased);
    }
    __syncthreads();
    const float scale = sh_scale, shift = sh_shift;
    for (unsigned i = threadIdx.x; i < len; i += blockDim.x) {
        const float t = xc[i] * scale + shift;
        yc[i] = relu && !(t > 0.0f) ? 0.0f : t;
    }
}

// Evaluation forward with the running statistics. Launch: grid-stride over c * len values,
// block ENG_BLOCK.
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_bn_eval(const float* __restrict__ x, float* __restrict__ y, const float* __restrict__ gamma,
            const float* __restrict__ beta, const float* __restrict__ running_mean,
            const float* __restrict__ running_var, unsigned int c, unsigned int len, double eps,
            unsigned int relu) {
    const unsigned long long n = (unsigned long long)c * len;
    ENG_FOR(i, n) {
        const unsigned ch = i / len;
        const double invstd = 1.0 / sqrt((double)running_var[ch] + eps);
        const double g = (double)gamma[ch];
        const float scale = (float)(g * invstd);
        const float shift = (float)((double)beta[ch] - (double)running_mean[ch] * g * invstd);
        const float t = x[i] * scale + shift;
        y[i] = relu && !(t > 0.0f) ? 0.0f : t;
    }
}

// Training backward. One block per channel. relu_out (may be null): dy is first masked where
// relu_out <= 0 (the forward ran with its ReLU). Writes dx, dgamma, dbeta (overwritten).
// Launch: grid c, block ENG_REDUCE_BLOCK.
extern "C" __global__ void __launch_bounds__(ENG_REDUCE_BLOCK)
eng_bn_backward(const float* __restrict__ x, const float* __restrict__ gamma,
                const float* __restrict__ saved_mean, const float* __restrict__ saved_invstd,
                const float* __restrict__ dy, const float* __restrict__ relu_out,
                float* __restrict__ dx, float* __restrict__ dgamma, float* __restrict__ dbeta,
                unsigned int len) {
    __shared__ double scratch[32];
    const unsigned ch = blockIdx.x;
    const unsigned long long base = (unsigned long long)ch * len;
    const float m = saved_mean[ch], is = saved_invstd[ch];
    double sdy = 0.0, sdyx = 0.0;
    for (unsigned i = threadIdx.x; i < len; i += blockDim.x) {
        float g = dy[base + i];
        if (relu_out && !(relu_out[base + i] > 0.0f)) g = 0.0f;
        sdy += (double)g;
        sdyx += (double)(g * (x[base + i] - m));
    }
    sdy = block_sum_f64(sdy, scratch);
    sdyx = block_sum_f64(sdyx, scratch) * (double)is;
    if (threadIdx.x == 0) {
        dgamma[ch] = (float)sdyx;
        dbeta[ch] = (float)sdy;
    }
    const float k = gamma[ch] * is;
    const float a = (float)(sdy / (double)len);
    const float bq = (float)(sdyx / (double)len) * is;
    for (unsigned i = threadIdx.x; i < len; i += blockDim.x) {
        float g = dy[base + i];
        if (relu_out && !(relu_out[base + i] > 0.0f)) g = 0.0f;
        dx[base + i] = k * (g - a - (x[base + i] - m) * bq);
    }
}
