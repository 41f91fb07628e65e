// Element-wise, pooling, head and loss kernels of the engine, each the device twin of a CPU
// function in host/src/engine/cpu (named in each comment) with the same f32 expression, so
// that most results agree bit for bit (the exceptions, exp-based ones, are noted).
// Launch: grid-stride loops with block ENG_BLOCK unless stated otherwise.
#include "engine.cuh"

// buf[0..n) = value (Backend::fill).
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_fill(float* __restrict__ buf, unsigned long long n, float value) {
    ENG_FOR(i, n) buf[i] = value;
}

// dst[0..n) = src[0..n) (a buffer that grows keeps its contents, as a CPU Vec does).
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_copy(float* __restrict__ dst, const float* __restrict__ src, unsigned long long n) {
    ENG_FOR(i, n) dst[i] = src[i];
}

// dy = 0 where out <= 0 (elementwise::relu_backward).
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_relu_backward(const float* __restrict__ out, float* __restrict__ dy, unsigned long long n) {
    ENG_FOR(i, n) if (out[i] <= 0.0f) dy[i] = 0.0f;
}

// y += x (elementwise::add_assign).
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_add_assign(float* __restrict__ y, const float* __restrict__ x, unsigned long long n) {
    ENG_FOR(i, n) y[i] += x[i];
}

// y[bi][ai][inner] = x[ai][bi][inner] (elementwise::swap_outer: NCHW input to CNHW).
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_swap_outer(const float* __restrict__ x, float* __restrict__ y, unsigned int a,
               unsigned int b, unsigned int inner) {
    const unsigned long long n = (unsigned long long)a * b * inner;
    ENG_FOR(i, n) {
        const unsigned long long run = i / inner, j = i % inner;
        const unsigned long long bi = run / a, ai = run % a;
        y[i] = x[(ai * b + bi) * inner + j];
    }
}

// Max pooling forward (pool::maxpool_forward): PyTorch's rule, start at -inf with the
// window's first in-range index, take a value when it is greater or NaN. idx is the index
// inside the input plane. With bn_saved non-null, x is the input of a training batch norm
// over bn_c channels (engine_norm.cu's `saved`: mean, inverse deviation, scale, shift) whose
// output was not written: each value read is bn_relu(x, scale, shift) of its plane's channel
// (plane p = channel * planes / bn_c + sample), the bits of pooling that ReLU'd output.
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_maxpool_forward(const float* __restrict__ x, float* __restrict__ y,
                    unsigned int* __restrict__ idx, unsigned int planes, unsigned int h,
                    unsigned int w, unsigned int k, unsigned int stride, unsigned int pad,
                    unsigned int oh, unsigned int ow, const float* __restrict__ bn_saved,
                    unsigned int bn_c) {
    const unsigned long long n = (unsigned long long)planes * oh * ow;
    ENG_FOR(i, n) {
        const unsigned ox = i % ow, oy = (i / ow) % oh;
        const unsigned long long p = i / ((unsigned long long)ow * oh);
        const float* xp = x + p * h * w;
        float scale = 1.0f, shift = 0.0f;
        if (bn_saved) {
            const unsigned ch = (unsigned)(p / (planes / bn_c));
            scale = bn_saved[2 * bn_c + ch];
            shift = bn_saved[3 * bn_c + ch];
        }
        const int y0 = (int)(oy * stride) - (int)pad, x0 = (int)(ox * stride) - (int)pad;
        const int ys = y0 > 0 ? y0 : 0, xs = x0 > 0 ? x0 : 0;
        const int ye = y0 + (int)k < (int)h ? y0 + (int)k : (int)h;
        const int xe = x0 + (int)k < (int)w ? x0 + (int)k : (int)w;
        float best = -INFINITY;
        unsigned bi = ys * w + xs;
        for (int iy = ys; iy < ye; ++iy)
            for (int ix = xs; ix < xe; ++ix) {
                const float raw = xp[iy * w + ix];
                const float v = bn_saved ? bn_relu(raw, scale, shift) : raw;
                if (v > best || v != v) {
                    best = v;
                    bi = iy * w + ix;
                }
            }
        y[i] = best;
        idx[i] = bi;
    }
}

// Max pooling backward (pool::maxpool_backward) as a gather: each input element sums, in
// output scan order (the CPU's order), the gradients of the outputs whose recorded maximum it
// is. dx is overwritten.
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_maxpool_backward(const float* __restrict__ dy, const unsigned int* __restrict__ idx,
                     float* __restrict__ dx, unsigned int planes, unsigned int h,
                     unsigned int w, unsigned int k, unsigned int stride, unsigned int pad,
                     unsigned int oh, unsigned int ow) {
    const unsigned long long n = (unsigned long long)planes * h * w;
    ENG_FOR(i, n) {
        const unsigned ix = i % w, iy = (i / w) % h;
        const unsigned long long p = i / ((unsigned long long)w * h);
        const unsigned local = iy * w + ix;
        // Outputs whose window holds (iy, ix): oy * stride - pad <= iy < oy * stride - pad + k.
        const int oy_lo_num = (int)iy + (int)pad - (int)k + 1;
        const int ox_lo_num = (int)ix + (int)pad - (int)k + 1;
        const unsigned oy_lo = oy_lo_num > 0 ? (oy_lo_num + stride - 1) / stride : 0;
        const unsigned ox_lo = ox_lo_num > 0 ? (ox_lo_num + stride - 1) / stride : 0;
        const unsigned oy_hi = (iy + pad) / stride, ox_hi = (ix + pad) / stride;
        float acc = 0.0f;
        for (unsigned oy = oy_lo; oy <= oy_hi && oy < oh; ++oy)
            for (unsigned ox = ox_lo; ox <= ox_hi && ox < ow; ++ox) {
                const unsigned long long o = (p * oh + oy) * ow + ox;
                if (idx[o] == local) acc += dy[o];
            }
        dx[i] = acc;
    }
}

// Average over runs (pool::avgpool_forward): x is [c][b][run], feat[s][ch] is the mean of
// run (ch, s), summed in f64. One block per run. Launch: grid c * b, block ENG_REDUCE_BLOCK.
extern "C" __global__ void __launch_bounds__(ENG_REDUCE_BLOCK)
eng_avgpool_forward(const float* __restrict__ x, float* __restrict__ feat, unsigned int c,
                    unsigned int b, unsigned int run) {
    __shared__ double scratch[32];
    const unsigned r = blockIdx.x;  // ch * b + s
    const float* xr = x + (unsigned long long)r * run;
    double s = 0.0;
    for (unsigned i = threadIdx.x; i < run; i += blockDim.x) s += (double)xr[i];
    s = block_sum_f64(s, scratch);
    if (threadIdx.x == 0) feat[(r % b) * c + r / b] = (float)(s / (double)run);
}

// Backward of eng_avgpool_forward (pool::avgpool_backward): dx = dfeat * (1 / run).
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_avgpool_backward(const float* __restrict__ dfeat, float* __restrict__ dx, unsigned int c,
                     unsigned int b, unsigned int run) {
    const unsigned long long n = (unsigned long long)c * b * run;
    const float inv = (float)(1.0 / (double)run);
    ENG_FOR(i, n) {
        const unsigned long long r = i / run;
        dx[i] = dfeat[(r % b) * c + r / b] * inv;
    }
}

// y[r][o] += scale * bias[o] (the bias of linear::linear_forward).
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_bias_add(float* __restrict__ y, const float* __restrict__ bias, unsigned int rows,
             unsigned int out, float scale) {
    const unsigned long long n = (unsigned long long)rows * out;
    ENG_FOR(i, n) y[i] += scale * bias[i % out];
}

// db[o] = sum over rows of dy[r][o], in row order in f32 (linear::linear_backward's bias).
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_col_sum(const float* __restrict__ dy, float* __restrict__ db, unsigned int rows,
            unsigned int out) {
    ENG_FOR(o, (unsigned long long)out) {
        float s = 0.0f;
        for (unsigned r = 0; r < rows; ++r) s += dy[(unsigned long long)r * out + o];
        db[o] = s;
    }
}

// The sigmoid of elementwise::sigmoid (no overflow for large |v|). expf may differ from
// Rust's exp in the last bit.
__device__ __forceinline__ float eng_sigmoid(float v) {
    if (v >= 0.0f) return 1.0f / (1.0f + expf(-v));
    const float e = expf(v);
    return e / (1.0f + e);
}

// Gated fusion (elementwise::gate_forward): gate = sigmoid(gx), z = gate * y.
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_gate_forward(const float* __restrict__ gx, const float* __restrict__ y,
                 float* __restrict__ gate, float* __restrict__ z, unsigned long long n) {
    ENG_FOR(i, n) {
        const float s = eng_sigmoid(gx[i]);
        gate[i] = s;
        z[i] = s * y[i];
    }
}

// elementwise::gate_backward: dgx = dz * y * gate * (1 - gate), dy = dz * gate.
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_gate_backward(const float* __restrict__ gate, const float* __restrict__ y,
                  const float* __restrict__ dz, float* __restrict__ dgx, float* __restrict__ dy,
                  unsigned long long n) {
    ENG_FOR(i, n) {
        const float s = gate[i];
        dgx[i] = dz[i] * y[i] * s * (1.0f - s);
        dy[i] = dz[i] * s;
    }
}

// FiLM (elementwise::film_forward): h rows [gamma (d), beta (d)]; z = gamma * x + beta.
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_film_forward(const float* __restrict__ h, const float* __restrict__ x,
                 float* __restrict__ z, unsigned int rows, unsigned int d) {
    const unsigned long long n = (unsigned long long)rows * d;
    ENG_FOR(i, n) {
        const unsigned long long r = i / d, j = i % d;
        z[i] = h[r * 2 * d + j] * x[i] + h[r * 2 * d + d + j];
    }
}

// elementwise::film_backward: dh = [dz * x, dz], dx = dz * gamma.
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_film_backward(const float* __restrict__ h, const float* __restrict__ x,
                  const float* __restrict__ dz, float* __restrict__ dh, float* __restrict__ dx,
                  unsigned int rows, unsigned int d) {
    const unsigned long long n = (unsigned long long)rows * d;
    ENG_FOR(i, n) {
        const unsigned long long r = i / d, j = i % d;
        const float g = dz[i];
        dh[r * 2 * d + j] = g * x[i];
        dh[r * 2 * d + d + j] = g;
        dx[i] = g * h[r * 2 * d + j];
    }
}

// Softmax cross-entropy with mean reduction (loss::softmax_cross_entropy), forward and
// gradient in one pass: one warp per row, f64 arithmetic after subtracting the row maximum.
// losses[r] = lse - logit[label] (the caller sums them with eng_sum_losses); dlogits (may be
// null: loss only) = (softmax - onehot) / rows. A label >= classes or a non-finite logit sets
// bit 1 / 2 of *status and leaves the row's loss NaN (the trainer stops on a NaN loss).
// Launch: grid ceil(rows / 8), block 256 (8 warps).
extern "C" __global__ void __launch_bounds__(256)
eng_softmax_xent(const float* __restrict__ logits, const unsigned int* __restrict__ labels,
                 unsigned int rows, unsigned int classes, float* __restrict__ dlogits,
                 double* __restrict__ losses, unsigned int* __restrict__ status) {
    const unsigned lane = threadIdx.x & 31;
    const unsigned r = blockIdx.x * 8 + (threadIdx.x >> 5);
    if (r >= rows) return;
    const float* x = logits + (unsigned long long)r * classes;
    double mx = -INFINITY;
    unsigned bad = 0;
    for (unsigned c = lane; c < classes; c += 32) {
        const double v = (double)x[c];
        if (!isfinite(v)) bad = 2;
        mx = fmax(mx, v);
    }
    for (int k = 16; k > 0; k >>= 1) {
        mx = fmax(mx, __shfl_xor_sync(0xffffffffu, mx, k));
        bad |= __shfl_xor_sync(0xffffffffu, bad, k);
    }
    double sum = 0.0;
    for (unsigned c = lane; c < classes; c += 32) sum += exp((double)x[c] - mx);
    for (int k = 16; k > 0; k >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, k);
    const unsigned y = labels[r];
    if (y >= classes) bad |= 1;
    const double lse = mx + log(sum);
    if (lane == 0) {
        losses[r] = bad ? NAN : lse - (double)x[y];
        if (bad) atomicOr(status, bad);
    }
    if (dlogits) {
        const double inv_rows = 1.0 / (double)rows;
        for (unsigned c = lane; c < classes; c += 32) {
            const double p = exp((double)x[c] - lse);
            const double t = c == y ? 1.0 : 0.0;
            dlogits[(unsigned long long)r * classes + c] = (float)((p - t) * inv_rows);
        }
    }
}

// out[slot] = (sum of losses[0..rows) in row order) / rows: the batch's mean loss, written
// into a slot of the step's log. Launch: grid 1, block 1.
extern "C" __global__ void eng_sum_losses(const double* __restrict__ losses, unsigned int rows,
                                          double* __restrict__ out) {
    double s = 0.0;
    for (unsigned r = 0; r < rows; ++r) s += losses[r];
    *out = s / (double)rows;
}

// Adam / AdamW over flat buffers (the CPU backend's adam_step, PyTorch semantics), f32:
// decoupled: p *= decay, else g += wd * p; m += (g - m) (1 - b1); v = v b2 + g g (1 - b2);
// p -= step_size (m / (sqrt(v) / bc2_sqrt + eps)).
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_adam(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
         float* __restrict__ v, unsigned long long n, float step_size, float bc2_sqrt, float b1,
         float b2, float eps, float wd, float decay, unsigned int decoupled) {
    ENG_FOR(i, n) {
        float gi = g[i];
        float pi = p[i];
        if (decoupled) pi *= decay; else gi += wd * pi;
        float mi = m[i], vi = v[i];
        mi += (gi - mi) * (1.0f - b1);
        vi = vi * b2 + gi * gi * (1.0f - b2);
        const float denom = sqrtf(vi) / bc2_sqrt + eps;
        pi -= step_size * (mi / denom);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}
