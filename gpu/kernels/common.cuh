// Types and constants shared by every OGM-GE kernel. The Rust mirrors live in gpu/src/state.rs
// and gpu/src/layout.rs; the static_asserts below and the Rust size tests keep them in step.
#pragma once

// Values per chunk: the unit of splittable statistics and noise (ogm_core::CHUNK).
#define OGM_CHUNK 1024

// Launch geometry. gpu/src/cuda/launch.rs launches with these sizes (its unit test reads them
// from this file) and so does the CPU emulator (tests/emulator/harness.cpp includes this file).
#define SCORES_BLOCK 256                 // threads of ogm_batch_scores (8 warps)
#define STATS_BLOCK 256                  // threads of ogm_tensor_stats (one chunk per warp)
#define STATS_CHUNKS_PER_BLOCK (STATS_BLOCK / 32)
#define MOD_WARPS 2                      // warps of ogm_modulate: small blocks, fine waves
#define CHUNKS_PER_WARP 8                // 32 lanes = 8 chunks x 4 generator lanes
#define MOD_BLOCK (MOD_WARPS * 32)
#define MOD_CHUNKS_PER_BLOCK (MOD_WARPS * CHUNKS_PER_WARP)
#define SGD_BLOCK 256                    // threads of ogm_sgd (grid-stride loop)

#define FULL_MASK 0xffffffffu            // every lane of a warp

// Sticky status bits (DeviceStatus::flags), set by kernels that meet input the CPU code would
// reject with an error. The step then leaves the affected values untouched (see each kernel).
#define OGM_STATUS_BAD_LABEL 1u
#define OGM_STATUS_NONFINITE_LOGIT 2u
#define OGM_STATUS_NONFINITE_GRADIENT 4u
#define OGM_STATUS_OVERFLOW 8u

// One tensor of the flat gradient buffer that the step modulates.
struct TensorDesc {
    unsigned long long offset;       // first element in the flat buffer
    unsigned long long len;          // number of elements (> 0)
    unsigned long long chunk_start;  // global index of the tensor's first chunk
    unsigned long long noise_id;     // key word: key = derive(step_key, noise_id)
    unsigned int modality;           // 0 audio, 1 visual
    unsigned int reserved;
};
static_assert(sizeof(TensorDesc) == 40, "TensorDesc layout");

// Count, mean, sum of squared deviations and largest magnitude of a set of values
// (ogm_core::GradStats).
struct Stats {
    unsigned long long count;
    double mean;
    double m2;
    double max_abs;
};
static_assert(sizeof(Stats) == 32, "Stats layout");

// Scores, ratios and coefficients of one step (index 0 audio, 1 visual).
struct BalanceState {
    double score[2];         // s_u = sum_i softmax(out_u)[i, y_i]
    double ratio[2];         // r_a, r_v; NaN when there is no ratio
    double coeff[2];         // k_a, k_v by the official rule (1 when there is no ratio)
    double applied[2];       // what the step applies: coeff inside the window, else 1
    unsigned int score_ok[2];// 1 when that modality's logits and labels were valid
    unsigned int has_ratio;  // 1 when ratio[] holds the ratios
    unsigned int active;     // 1 when the step modulates
};
static_assert(sizeof(BalanceState) == 80, "BalanceState layout");

// Sticky error report of the device side; read (and cleared) by the host when it chooses.
struct DeviceStatus {
    unsigned int flags;             // OGM_STATUS_* bits
    unsigned int first_bad_tensor;  // smallest tensor index with a non-finite or overflowing
                                    // gradient (0xFFFFFFFF when none)
};
static_assert(sizeof(DeviceStatus) == 8, "DeviceStatus layout");

__device__ __forceinline__ void report(DeviceStatus* status, unsigned int bits) {
    atomicOr(&status->flags, bits);
}

__device__ __forceinline__ void report_tensor(DeviceStatus* status, unsigned int bits,
                                              unsigned int tensor) {
    atomicOr(&status->flags, bits);
    atomicMin(&status->first_bad_tensor, tensor);
}

// The tensor that owns global chunk `chunk`: the last t with chunk_start <= chunk (tensors are
// listed in chunk order, the first starts at 0).
__device__ __forceinline__ unsigned int tensor_of_chunk(const TensorDesc* tensors,
                                                        unsigned int num_tensors,
                                                        unsigned long long chunk) {
    unsigned int lo = 0, hi = num_tensors - 1;
    while (lo < hi) {
        unsigned int mid = (lo + hi + 1) >> 1;
        if (tensors[mid].chunk_start <= chunk) lo = mid; else hi = mid - 1;
    }
    return lo;
}

// Chan, Golub and LeVeque's pairwise merge, operation for operation as ogm_core::GradStats::merge.
__device__ __forceinline__ Stats merge_stats(Stats a, Stats b) {
    if (a.count == 0) return b;
    if (b.count == 0) return a;
    unsigned long long n = a.count + b.count;
    double na = (double)a.count, nb = (double)b.count, nf = (double)n;
    double delta = b.mean - a.mean;
    Stats r;
    r.count = n;
    r.mean = a.mean + delta * (nb / nf);
    r.m2 = a.m2 + b.m2 + delta * delta * (na * (nb / nf));
    r.max_abs = fmax(a.max_abs, b.max_abs);
    return r;
}
