// Convolution lowering for the engine (square kernel, stride, zero padding, CNHW): a
// convolution is eng_im2col + one GEMM, its data gradient one GEMM + eng_col2im, its weight
// gradient one (split-K) GEMM against the lowered input, as on the CPU
// (host/src/engine/cpu/conv.rs).
//
// col is (cin * k * k) x (n * oh * ow), row-major: row (ci * k + ky) * k + kx, column
// (s * oh + oy) * ow + ox holds x[ci][s][oy * stride + ky - pad][ox * stride + kx - pad]
// (zero outside the input).
#include "engine.cuh"

// Launch: grid-stride over every element of col, block ENG_BLOCK.
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_im2col(const float* __restrict__ x, float* __restrict__ col, unsigned int cin,
           unsigned int n, unsigned int h, unsigned int w, unsigned int k, unsigned int stride,
           unsigned int pad, unsigned int oh, unsigned int ow) {
    const unsigned long long cols = (unsigned long long)n * oh * ow;
    const unsigned long long total = (unsigned long long)cin * k * k * cols;
    ENG_FOR(i, total) {
        const unsigned long long row = i / cols, c = i % cols;
        const unsigned kx = row % k, ky = (row / k) % k, ci = row / (k * k);
        const unsigned ox = c % ow, oy = (c / ow) % oh, s = c / ((unsigned long long)ow * oh);
        const int iy = (int)(oy * stride + ky) - (int)pad;
        const int ix = (int)(ox * stride + kx) - (int)pad;
        float v = 0.0f;
        if (iy >= 0 && iy < (int)h && ix >= 0 && ix < (int)w)
            v = x[(((unsigned long long)ci * n + s) * h + iy) * w + ix];
        col[i] = v;
    }
}

// The adjoint of eng_im2col: dx[ci][s][iy][ix] = sum of the col entries that read it, in
// (ky, kx) order. A gather (one thread per input element) rather than a scatter: no atomics,
// and the sum's order is fixed. dx is overwritten, or with `accumulate` the sum is added to it
// (one add: the bits of writing it, then adding dx's old value).
// Launch: grid-stride over every element of dx, block ENG_BLOCK.
extern "C" __global__ void __launch_bounds__(ENG_BLOCK)
eng_col2im(const float* __restrict__ col, float* __restrict__ dx, unsigned int cin,
           unsigned int n, unsigned int h, unsigned int w, unsigned int k, unsigned int stride,
           unsigned int pad, unsigned int oh, unsigned int ow, unsigned int accumulate) {
    const unsigned long long cols = (unsigned long long)n * oh * ow;
    const unsigned long long total = (unsigned long long)cin * n * h * w;
    ENG_FOR(i, total) {
        const unsigned ix = i % w, iy = (i / w) % h;
        const unsigned long long cs = i / ((unsigned long long)w * h);  // ci * n + s
        const unsigned s = cs % n, ci = cs / n;
        float acc = 0.0f;
        for (unsigned ky = 0; ky < k; ++ky) {
            const int ty = (int)(iy + pad) - (int)ky;
            if (ty < 0 || ty % (int)stride != 0) continue;
            const unsigned oy = ty / stride;
            if (oy >= oh) continue;
            for (unsigned kx = 0; kx < k; ++kx) {
                const int tx = (int)(ix + pad) - (int)kx;
                if (tx < 0 || tx % (int)stride != 0) continue;
                const unsigned ox = tx / stride;
                if (ox >= ow) continue;
                const unsigned long long row = ((unsigned long long)ci * k + ky) * k + kx;
                acc += col[row * cols + ((unsigned long long)s * oh + oy) * ow + ox];
            }
        }
        dx[i] = accumulate ? acc + dx[i] : acc;
    }
}
