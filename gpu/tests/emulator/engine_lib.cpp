// The engine's kernels (gpu/kernels/engine_*.cu, and part 1's sgd, scores, balance, stats and
// modulate kernels) compiled for the CPU as a shared library, with the CUDA stand-in of
// cuda_shim.h (force-included) and the fiber scheduler of fibers.h.
// ogm_gpu::engine::emu::EmuDevice loads it and calls emu_launch with the same kernel names and
// argument lists as a CUDA launch; device pointers are host addresses.
//
// emu_launch checks the argument count and each argument's kind against the C++ parameter
// types of the kernel (deduced from its definition below), so the Rust declarations in
// gpu/src/engine/kernels.rs are checked against the source here, as they are against the PTX
// by a test with the `cuda` feature.
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <utility>

emu::Warp* emu::warp;
unsigned emu::lane;
emu::Barrier* emu::block_bar;
uint3 threadIdx, blockIdx;
uint3 blockDim, gridDim;

#include "fibers.h"

// The kernels' source, one translation unit.
#include "engine_gemm.cu"
#include "engine_conv.cu"
#include "engine_norm.cu"
#include "engine_ew.cu"
#include "sgd.cu"
#include "scores.cu"
#include "balance.cu"
#include "stats.cu"
#include "modulate.cu"

namespace {
// Argument kinds, as ogm_gpu::engine::ParamTy: 0 pointer, 1 u32, 2 u64, 3 f32, 4 f64.
template <class T>
constexpr int kind_of() {
    if constexpr (std::is_pointer_v<T>) return 0;
    else if constexpr (std::is_same_v<T, unsigned int>) return 1;
    else if constexpr (std::is_same_v<T, unsigned long long>) return 2;
    else if constexpr (std::is_same_v<T, float>) return 3;
    else if constexpr (std::is_same_v<T, double>) return 4;
    else static_assert(sizeof(T) == 0, "unsupported kernel parameter type");
}

template <class T>
T from_bits(unsigned long long bits) {
    if constexpr (std::is_pointer_v<T>) {
        return reinterpret_cast<T>(static_cast<uintptr_t>(bits));
    } else if constexpr (std::is_same_v<T, float>) {
        uint32_t b = (uint32_t)bits;
        float f;
        memcpy(&f, &b, 4);
        return f;
    } else if constexpr (std::is_same_v<T, double>) {
        double d;
        memcpy(&d, &bits, 8);
        return d;
    } else {
        return (T)bits;
    }
}

struct Entry {
    std::vector<int> kinds;
    std::function<void(const unsigned long long*)> call;
};

template <class... A, size_t... I>
void invoke(void (*f)(A...), const unsigned long long* bits, std::index_sequence<I...>) {
    f(from_bits<A>(bits[I])...);
}

template <class... A>
Entry entry(void (*f)(A...)) {
    return Entry{{kind_of<A>()...}, [f](const unsigned long long* bits) {
                     invoke(f, bits, std::index_sequence_for<A...>{});
                 }};
}

const std::map<std::string, Entry>& table() {
    static const std::map<std::string, Entry> t = {
#define K(name) {#name, entry(&name)}
        K(eng_gemm),          K(eng_gemm_big),         K(eng_sum_slices),       K(eng_im2col),
        K(eng_col2im),        K(eng_bn_train),         K(eng_bn_eval),    K(eng_bn_eval_saved),
        K(eng_bn_backward),   K(eng_bn_train_partial), K(eng_bn_backward_partial),
        K(eng_fill),          K(eng_copy),
        K(eng_relu_backward), K(eng_add_assign),       K(eng_swap_outer),
        K(eng_maxpool_forward), K(eng_maxpool_backward), K(eng_avgpool_forward),
        K(eng_avgpool_backward), K(eng_bias_add),      K(eng_col_sum),
        K(eng_gate_forward),  K(eng_gate_backward),    K(eng_film_forward),
        K(eng_film_backward), K(eng_softmax_xent),     K(eng_sum_losses),
        K(eng_adam),          K(ogm_sgd),
        K(ogm_batch_scores),  K(ogm_balance),          K(ogm_tensor_stats),     K(ogm_modulate),
        K(ogm_step_losses),
        K(eng_gemm_tf32),     K(eng_gemm_bf16),
        K(eng_gemm_conv_fwd), K(eng_gemm_big_conv_fwd), K(eng_gemm_conv_wgrad),
        K(eng_gemm_big_conv_wgrad), K(eng_gemm_tf32_conv_fwd), K(eng_gemm_tf32_conv_wgrad),
        K(eng_gemm_bf16_conv_fwd), K(eng_gemm_bf16_conv_wgrad),
        K(eng_gemm_conv_dgrad), K(eng_gemm_big_conv_dgrad), K(eng_gemm_tf32_conv_dgrad),
        K(eng_gemm_bf16_conv_dgrad),
#undef K
    };
    return t;
}
}  // namespace

// Runs kernel `name` on a (grid[0], grid[1], grid[2]) grid of `threads`-thread blocks.
// Returns 0, or non-zero with a message in err (unknown kernel, argument mismatch).
// Sets the order of the following launches (fibers.h: 0 in order, 1 reversed, 2 shuffled, 3
// warps ahead; 2 and 3 drawn from `seed`) and restarts their count, so that a caller who passes its own launch count in `seed`
// gets the same orders whatever ran before; 1 for an unknown mode.
extern "C" int emu_set_schedule(unsigned mode, unsigned long long seed) {
    if (mode > 3) return 1;
    emu::schedule = {mode, seed};
    emu::launches = 0;
    return 0;
}

extern "C" int emu_launch(const char* name, const unsigned* grid, unsigned threads,
                          const unsigned long long* bits, const unsigned char* kinds,
                          unsigned nargs, char* err, unsigned errlen) {
    const auto& t = table();
    auto it = t.find(name);
    if (it == t.end()) {
        snprintf(err, errlen, "no kernel %s in the emulator", name);
        return 1;
    }
    const Entry& e = it->second;
    if (e.kinds.size() != nargs) {
        snprintf(err, errlen, "%s takes %zu parameters, got %u arguments", name, e.kinds.size(),
                 nargs);
        return 2;
    }
    for (unsigned i = 0; i < nargs; ++i) {
        if (e.kinds[i] != kinds[i]) {
            snprintf(err, errlen, "%s: parameter %u has kind %d, the argument %d", name, i,
                     e.kinds[i], (int)kinds[i]);
            return 3;
        }
    }
    if (threads == 0 || threads > 1024 || grid[0] == 0 || grid[1] == 0 || grid[2] == 0) {
        snprintf(err, errlen, "%s: invalid launch geometry", name);
        return 4;
    }
    launch3(grid[0], grid[1], grid[2], threads, [&] { e.call(bits); });
    return 0;
}
