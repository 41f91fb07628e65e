// Per-modality true-class scores s_u = sum_i softmax(out_u)[i, y_i] (ogm_core::batch_score),
// summed over the batch on the device into BalanceState::score: ogm_batch_scores alone, and
// ogm_step_losses (below), which also gives the step's three losses, the fused logits' gradient
// and the balance in the same pass over the logits.
//
// ogm_batch_scores' launch: grid 2 (block 0 audio, block 1 visual), block SCORES_BLOCK threads. Warp w takes rows
// w, w + 8, ...: lanes stride over the classes, so any class count works (309 included). The
// arithmetic is f64 after subtracting the row maximum, as on the CPU; the sum runs in a fixed
// order (rows of a warp in order, then warps in order), so the result is reproducible.
//
// Invalid input (a label >= classes, a non-finite logit) cannot be returned as an error without
// a host round trip: the block marks its score as not ok (the balance kernel then applies no
// modulation) and sets a sticky status bit that the host reads when it chooses.
#include "balance.cuh"
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

__device__ __forceinline__ unsigned int warp_or(unsigned int v) {
    for (int k = 16; k > 0; k >>= 1) v |= __shfl_xor_sync(FULL_MASK, v, k);
    return v;
}

// One row's softmax normaliser, computed by a warp: the row maximum (as a double) and
// sum_c exp(x[c] - max), lanes striding over the classes; every lane ends with the same bits.
// A non-finite value sets OGM_STATUS_NONFINITE_LOGIT in the calling lane's `bad`.
struct RowSoftmax {
    double mx;
    double sum;
};

__device__ __forceinline__ RowSoftmax row_softmax(const float* x, unsigned int classes,
                                                  unsigned int lane, unsigned int& bad) {
    float mx = -INFINITY;
    for (unsigned int c = lane; c < classes; c += 32) {
        float v = x[c];
        if (!isfinite(v)) bad |= OGM_STATUS_NONFINITE_LOGIT;
        mx = fmaxf(mx, v);
    }
    const double dmx = (double)warp_max(mx);
    double sum = 0.0;
    for (unsigned int c = lane; c < classes; c += 32) sum += exp((double)x[c] - dmx);
    return RowSoftmax{dmx, warp_sum(sum)};
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
        const RowSoftmax s = row_softmax(x, classes, lane, my_bad);
        if (lane == 0) {
            unsigned int y = labels[row];
            if (y >= classes) {
                my_bad |= OGM_STATUS_BAD_LABEL;
            } else {
                // The maximum contributes exactly 1, so sum >= 1; clamp keeps the documented range.
                double p = exp((double)x[y] - s.mx) / s.sum;
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

// A training step's whole loss stage in one launch, reading each logit row once:
//   losses[0..3) = the mean softmax cross-entropy of the fused, audio-only and visual-only
//                  logits (what eng_softmax_xent + eng_sum_losses give, bit for bit);
//   dlogits      = (softmax(logits) - onehot) / batch, the fused logits' gradient;
//   state        = the audio and visual true-class scores (ogm_batch_scores, bit for bit), then
//                  the ratios and coefficients (ogm_balance's rule, balance.cuh).
// row_losses is scratch for 3 x batch per-row losses, summed in row order by thread 0 so that
// the means do not depend on the launch geometry. Status: a label >= classes or a non-finite
// logit sets its bit in *status, makes the losses NaN, and (audio or visual logits, or labels)
// marks that modality's score not ok, so the balance applies no modulation.
// Launch: grid 1, block SCORES_BLOCK (warp w takes rows w, w + 8, ...). One block is plenty:
// the work is a few rows of a few classes per warp at the paper's sizes, and a single block
// lets the balance follow without another launch.
extern "C" __global__ void __launch_bounds__(SCORES_BLOCK)
ogm_step_losses(const float* __restrict__ logits, const float* __restrict__ logits_audio,
                const float* __restrict__ logits_visual, const unsigned int* __restrict__ labels,
                unsigned int batch, unsigned int classes, float* __restrict__ dlogits,
                double* row_losses, BalanceState* state, DeviceStatus* status,
                double* __restrict__ losses, double alpha, unsigned int active) {
    __shared__ double warp_total[2][SCORES_BLOCK / 32];
    __shared__ unsigned int bad_of[3];  // fused, audio, visual
    const unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const unsigned int warps = blockDim.x >> 5;
    if (threadIdx.x < 3) bad_of[threadIdx.x] = 0;
    __syncthreads();

    const double inv_rows = 1.0 / (double)batch;
    double total[2] = {0.0, 0.0};  // meaningful in lane 0
    unsigned int my_bad[3] = {0, 0, 0};
    for (unsigned int row = warp; row < batch; row += warps) {
        const unsigned int y = labels[row];
        const unsigned int label_bad = y >= classes ? OGM_STATUS_BAD_LABEL : 0u;
        for (unsigned int m = 0; m < 3; ++m) {
            const float* x =
                (m == 0 ? logits : m == 1 ? logits_audio : logits_visual) + (size_t)row * classes;
            unsigned int bad = 0;
            const RowSoftmax s = row_softmax(x, classes, lane, bad);
            bad = warp_or(bad) | label_bad;
            my_bad[m] |= bad;
            const double lse = s.mx + log(s.sum);
            if (lane == 0) row_losses[(size_t)m * batch + row] = bad ? NAN : lse - (double)x[y];
            if (m == 0) {
                for (unsigned int c = lane; c < classes; c += 32) {
                    const double p = exp((double)x[c] - lse);
                    const double t = c == y ? 1.0 : 0.0;
                    dlogits[(size_t)row * classes + c] = (float)((p - t) * inv_rows);
                }
            } else if (lane == 0 && !label_bad) {
                const double p = exp((double)x[y] - s.mx) / s.sum;
                total[m - 1] += fmin(fmax(p, 0.0), 1.0);
            }
        }
    }
    if (lane == 0) {
        for (unsigned int m = 0; m < 3; ++m)
            if (my_bad[m]) atomicOr(&bad_of[m], my_bad[m]);
        warp_total[0][warp] = total[0];
        warp_total[1][warp] = total[1];
    }
    // The barrier also makes every warp's row_losses (global memory) visible to thread 0.
    __syncthreads();
    if (threadIdx.x == 0) {
        for (unsigned int m = 0; m < 3; ++m) {
            double s = 0.0;
            for (unsigned int r = 0; r < batch; ++r) s += row_losses[(size_t)m * batch + r];
            losses[m] = s / (double)batch;
        }
        for (unsigned int u = 0; u < 2; ++u) {
            double s = 0.0;
            for (unsigned int w = 0; w < warps; ++w) s += warp_total[u][w];
            state->score[u] = s;
            state->score_ok[u] = bad_of[u + 1] == 0;
        }
        const unsigned int flags = bad_of[0] | bad_of[1] | bad_of[2];
        if (flags) report(status, flags);
        balance_state(state, alpha, active);
    }
}
