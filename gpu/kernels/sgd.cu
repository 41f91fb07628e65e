// SGD with momentum and weight decay over flat buffers, fused into one pass, with PyTorch's
// semantics (torch.optim.SGD, dampening 0, no Nesterov):
//   d = g + wd * p                 (wd != 0; else d = g)
//   buf = d (first step) or m * buf + d,  d = buf   (m != 0; else no buffer)
//   p = p - lr * d
// Every operation is an IEEE-rounded f32 multiply or add (no fused multiply-add), so the result
// equals the CPU reference ogm_gpu::reference::sgd_step bit for bit.
//
// Launch: any grid (grid-stride loop), block SGD_BLOCK. Vectorised float4 when every pointer is
// 16-byte aligned, scalar otherwise and for the tail.

#include "common.cuh"

__device__ __forceinline__ float sgd_one(float& p, float g, float& buf, float lr, float m,
                                         float wd, bool first) {
    float d = wd != 0.0f ? __fadd_rn(g, __fmul_rn(wd, p)) : g;
    if (m != 0.0f) {
        buf = first ? d : __fadd_rn(__fmul_rn(m, buf), d);
        d = buf;
    }
    p = __fadd_rn(p, -__fmul_rn(lr, d));
    return p;
}

extern "C" __global__ void __launch_bounds__(SGD_BLOCK)
ogm_sgd(float* __restrict__ params, const float* __restrict__ grads,
        float* __restrict__ momentum_buf, unsigned long long n, float lr, float momentum,
        float weight_decay, unsigned int first_step) {
    const bool first = first_step != 0;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    const unsigned long long tid = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    const bool aligned = ((((unsigned long long)params) | ((unsigned long long)grads) |
                           ((unsigned long long)momentum_buf)) & 15) == 0;
    unsigned long long done = 0;
    if (aligned) {
        const unsigned long long n4 = n / 4;
        float4* p4 = reinterpret_cast<float4*>(params);
        const float4* g4 = reinterpret_cast<const float4*>(grads);
        float4* b4 = reinterpret_cast<float4*>(momentum_buf);
        for (unsigned long long i = tid; i < n4; i += stride) {
            float4 p = p4[i];
            const float4 g = g4[i];
            float4 b = momentum != 0.0f && !first ? b4[i] : make_float4(0.f, 0.f, 0.f, 0.f);
            sgd_one(p.x, g.x, b.x, lr, momentum, weight_decay, first);
            sgd_one(p.y, g.y, b.y, lr, momentum, weight_decay, first);
            sgd_one(p.z, g.z, b.z, lr, momentum, weight_decay, first);
            sgd_one(p.w, g.w, b.w, lr, momentum, weight_decay, first);
            p4[i] = p;
            if (momentum != 0.0f) b4[i] = b;
        }
        done = n4 * 4;
    }
    for (unsigned long long i = done + tid; i < n; i += stride) {
        float b = momentum != 0.0f && !first ? momentum_buf[i] : 0.0f;
        sgd_one(params[i], grads[i], b, lr, momentum, weight_decay, first);
        if (momentum != 0.0f) momentum_buf[i] = b;
    }
}
