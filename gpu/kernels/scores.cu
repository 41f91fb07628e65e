// Per-modality true-class scores s_u = sum_i softmax(out_u)[i, y_i] (ogm_core::batch_score),
// summed over the batch on the device into BalanceState::score.
//
// Launch: grid 2 (block 0 audio, block 1 visual), block SCORES_BLOCK threads. Warp w takes rows
// w, w + 8, ...: lanes stride over the classes, so any class count works (309 included). The
// arithmetic is f64 after subtracting the row maximum, as on the CPU; the sum runs in a fixed
// order (rows of a warp in order, then warps in order), so the result is reproducible.
//
// Invalid input (a label >= classes, a non-finite logit) cannot be returned as an error without
// a host round trip: the block marks its score as not ok (the balance kernel then applies no
// modulation) and sets a sticky status bit that the host reads when it chooses.
#include "common.cuh"


__device__ __forceinline__ float warp_max(float v) {
    for (int k = 16; k > 0; k >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, k));
    return v;
}

// Butterfly sum: every lane ends with the same bits (a + b == b + a in IEEE arithmetic).
__device__ __forceinline__ double warp_sum(double v) {
    for (int k = 16; k > 0; k >>= 1) v += __shfl_xor_sync(FULL_MASK, v, k);
    return v;
}

extern "C" __global__ void __launch_bounds__(SCORES_BLOCK)
ogm_batch_scores(const float* __restrict__ logits_audio, const float* __restrict__ logits_visual,
                 const unsigned int* __restrict__ labels, unsigned int batch,
                 unsigned int classes, BalanceState* state, DeviceStatus* status) {
    __shared__ double warp_total[SCORES_BLOCK / 32];
    __shared__ unsigned int bad;
    const unsigned int m = blockIdx.x;
    const float* logits = m == 0 ? logits_audio : logits_visual;
    const unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const unsigned int warps = blockDim.x >> 5;
    if (threadIdx.x == 0) bad = 0;
    __syncthreads();

    double total = 0.0;  // meaningful in lane 0
    unsigned int my_bad = 0;
    for (unsigned int row = warp; row < batch; row += warps) {
        const float* x = logits + (size_t)row * classes;
        float mx = -INFINITY;
        for (unsigned int c = lane; c < classes; c += 32) {
            float v = x[c];
            if (!isfinite(v)) my_bad |= OGM_STATUS_NONFINITE_LOGIT;
            mx = fmaxf(mx, v);
        }
        mx = warp_max(mx);
        const double dmx = (double)mx;
        double sum = 0.0;
        for (unsigned int c = lane; c < classes; c += 32) sum += exp((double)x[c] - dmx);
        sum = warp_sum(sum);
        if (lane == 0) {
            unsigned int y = labels[row];
            if (y >= classes) {
                my_bad |= OGM_STATUS_BAD_LABEL;
            } else {
                // The maximum contributes exactly 1, so sum >= 1; clamp keeps the documented range.
                double p = exp((double)x[y] - dmx) / sum;
                total += fmin(fmax(p, 0.0), 1.0);
            }
        }
    }
    if (my_bad) atomicOr(&bad, my_bad);
    if (lane == 0) warp_total[warp] = total;
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (unsigned int w = 0; w < warps; ++w) s += warp_total[w];
        state->score[m] = s;
        state->score_ok[m] = bad == 0;
        if (bad) report(status, bad);
    }
}
