// The fiber scheduler of the kernel emulator (see cuda_shim.h), shared by harness.cpp (part 1's
// kernels, driven through files) and engine_lib.cpp (the engine's kernels, loaded as a shared
// library). The including file defines the shim's globals (threadIdx, emu::warp, ...).
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

// Fibers: a minimal x86-64 (System V) context switch. It saves only the callee-saved
// registers and the stack pointer, so a switch costs a few nanoseconds (ucontext's swapcontext
// makes two system calls per switch, which made the emulation twenty times slower).
#if !defined(__x86_64__)
#error "the kernel emulator's fibers are written for x86-64"
#endif
extern "C" void emu_switch(void** save_sp, void* next_sp);
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");

// Under AddressSanitizer (OGM_EMU_SANITIZE=address) every switch is announced to it, so that
// it knows which stack is live, and a stack is unpoisoned before it is reused: a fiber's frames
// leave their guard zones behind when the next launch starts over on the same memory.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

namespace {
constexpr size_t kStack = 64 * 1024;
struct Fiber {
    void* sp = nullptr;
    // Left uninitialised: only the pages a fiber touches are ever mapped.
    std::unique_ptr<char[]> stack{new char[kStack]};
    bool done = false;
    // The barrier it yielded at and the generation it waits to pass (null: runnable).
    emu::Barrier* wait = nullptr;
    uint64_t wait_gen = 0;
    // Whether resuming it now would only yield again.
    bool blocked() const { return wait != nullptr && wait->generation == wait_gen; }
};
void* scheduler_sp;
Fiber* current;
const std::function<void()>* kernel_body;
// The scheduler's stack, as AddressSanitizer reports it when a fiber first starts.
[[maybe_unused]] const void* scheduler_stack = nullptr;
[[maybe_unused]] size_t scheduler_stack_size = 0;

// Around a switch from a fiber back to the scheduler (`finished`: the fiber never resumes).
inline void to_scheduler_begin([[maybe_unused]] void** fake, [[maybe_unused]] bool finished) {
#if EMU_ASAN
    __sanitizer_start_switch_fiber(finished ? nullptr : fake, scheduler_stack,
                                   scheduler_stack_size);
#endif
}
// In a fiber, once it runs again (or for the first time).
inline void in_fiber([[maybe_unused]] void* fake) {
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, &scheduler_stack, &scheduler_stack_size);
#endif
}

[[noreturn]] void fiber_entry() {
    in_fiber(nullptr);
    (*kernel_body)();
    current->done = true;
    to_scheduler_begin(nullptr, true);
    void* dead;
    emu_switch(&dead, scheduler_sp);
    __builtin_unreachable();
}

// A fresh stack whose first switch "returns" into fiber_entry with the ABI's alignment
// (rsp = 8 mod 16 at function entry).
void prepare(Fiber& f) {
#if EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(f.stack.get(), kStack);
#endif
    uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack.get()) + kStack) & ~uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                                   // fiber_entry's (unused) return address
    *--sp = reinterpret_cast<void*>(&fiber_entry);     // emu_switch's ret target
    for (int i = 0; i < 6; ++i) *--sp = nullptr;       // rbp rbx r12 r13 r14 r15
    f.sp = sp;
    f.done = false;
    f.wait = nullptr;
}

// Runs fiber f until it yields or finishes.
inline void switch_to(Fiber& f) {
#if EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f.stack.get(), kStack);
    emu_switch(&scheduler_sp, f.sp);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    emu_switch(&scheduler_sp, f.sp);
#endif
}
}  // namespace

void emu::yield() {
    void* fake = nullptr;
    to_scheduler_begin(&fake, false);
    emu_switch(&current->sp, scheduler_sp);
    in_fiber(fake);
}

// The order in which a launch runs its blocks and its threads. Real hardware promises no
// order, and every kernel here must give the same bits under any: its results may depend only
// on barriers, warp exchanges and fixed-order reductions. In-order emulation hides races that
// other orders expose:
//   mode 0 (in order): blocks x fastest; in each round, every runnable fiber once, 0, 1, ...
//   mode 1 (reverse): the last block first; rounds from the highest fiber down. A thread that
//          reads shared memory a lower thread writes in the same barrier interval, with no
//          barrier between, now reads it before the write.
//   mode 2 (shuffled): a permutation of the blocks per launch and of the fibers per round.
//   mode 3 (warps ahead): blocks shuffled; each warp in turn (a new random order of warps each
//          pass, lanes shuffled) runs as far as it can, until all its lanes wait at
//          __syncthreads or have finished. One warp then runs whole warp-level phases (its
//          shuffles, its next call of a block reduction) while the others have not started:
//          a write to shared memory that another warp may still be reading, with no
//          __syncthreads between, is seen early. The round-robin modes cannot show this: every
//          thread passes each warp exchange in step with the others.
// The shuffled orders are drawn from `seed` and the launch's count (emu_set_schedule resets
// the count). A launch whose unfinished fibers all wait at barriers that cannot open (a
// __syncthreads or shuffle not reached by every thread) stops the process with a message,
// where a GPU may hang (CUDA leaves a barrier that not every thread reaches undefined).
namespace emu {
struct Schedule {
    unsigned mode = 0;
    uint64_t seed = 0;
};
inline Schedule schedule;
inline uint64_t launches = 0;

// SplitMix64: a small, well-mixed generator for the shuffled orders.
inline uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Fisher-Yates over v[begin, end) with the generator state `s`.
template <class T>
inline void shuffle(std::vector<T>& v, uint64_t& s, size_t begin = 0, size_t end = SIZE_MAX) {
    if (end > v.size()) end = v.size();
    for (size_t i = end - begin; i > 1; --i) {
        const size_t j = splitmix(s) % i;
        T tmp = v[begin + i - 1];
        v[begin + i - 1] = v[begin + j];
        v[begin + j] = tmp;
    }
}

// The schedule named by `spec`: "in-order", "reverse", "shuffle[:SEED]" or
// "warps-ahead[:SEED]"; false (and the schedule unchanged) for anything else.
inline bool parse_schedule(const char* spec) {
    if (spec == nullptr) return false;
    const std::string s(spec);
    auto seeded = [&](const std::string& name, unsigned mode) {
        if (s == name) {
            schedule = {mode, 0};
            return true;
        }
        const std::string prefix = name + ":";
        if (s.rfind(prefix, 0) != 0 || s.size() == prefix.size() ||
            s.find_first_not_of("0123456789", prefix.size()) != std::string::npos)
            return false;
        errno = 0;
        const unsigned long long seed = strtoull(s.c_str() + prefix.size(), nullptr, 10);
        if (errno == ERANGE) return false;  // beyond 2^64 - 1
        schedule = {mode, seed};
        return true;
    };
    if (s == "in-order") {
        schedule = {0, 0};
        return true;
    }
    if (s == "reverse") {
        schedule = {1, 0};
        return true;
    }
    return seeded("shuffle", 2) || seeded("warps-ahead", 3);
}

[[noreturn]] inline void deadlock(unsigned long long b, unsigned block) {
    fprintf(stderr,
            "emulator: deadlock in block %llu of a launch of %u threads per block: every "
            "unfinished thread waits at a barrier (__syncthreads, __syncwarp or a shuffle) that "
            "not every thread reaches\n",
            b, block);
    abort();
}
}  // namespace emu

// Runs `body` as a (gx, gy, gz) x block launch: each block's threads as fibers, blocks one
// after another, in the order of emu::schedule.
static void launch3(unsigned gx, unsigned gy, unsigned gz, unsigned block,
                    const std::function<void()>& body) {
    blockDim = {block, 1, 1};
    gridDim = {gx, gy, gz};
    kernel_body = &body;
    const unsigned nwarps = (block + 31) / 32;
    std::vector<emu::Warp> warps(nwarps);
    for (unsigned w = 0; w < nwarps; ++w) {
        warps[w].size = block - 32 * w < 32 ? block - 32 * w : 32;
        warps[w].bar.expected = warps[w].size;
    }
    emu::Barrier block_bar;
    block_bar.expected = block;
    std::vector<Fiber> fibers(block);
    const unsigned mode = emu::schedule.mode;
    uint64_t rng = emu::schedule.seed ^ (0x632be59bd9b4e019ull * ++emu::launches);
    const unsigned long long blocks = (unsigned long long)gx * gy * gz;
    std::vector<unsigned long long> block_order;
    if (mode >= 2) {
        block_order.resize(blocks);
        for (unsigned long long b = 0; b < blocks; ++b) block_order[b] = b;
        emu::shuffle(block_order, rng);
    }
    std::vector<unsigned> order(block), warp_order(nwarps);
    // Resumes fiber t once, if it can run; true if it did.
    auto resume = [&](unsigned t) {
        Fiber& f = fibers[t];
        if (f.done || f.blocked()) return false;
        current = &f;
        threadIdx = {t, 0, 0};
        emu::lane = t % 32;
        emu::warp = &warps[t / 32];
        emu::block_bar = &block_bar;
        emu::waiting_on = nullptr;
        switch_to(f);
        f.wait = f.done ? nullptr : emu::waiting_on;
        f.wait_gen = emu::waiting_gen;
        return true;
    };
    for (unsigned long long i = 0; i < blocks; ++i) {
        const unsigned long long b = mode == 0 ? i : mode == 1 ? blocks - 1 - i : block_order[i];
        blockIdx = {unsigned(b % gx), unsigned(b / gx % gy), unsigned(b / gx / gy)};
        for (auto& f : fibers) prepare(f);
        for (unsigned t = 0; t < block; ++t) order[t] = mode == 1 ? block - 1 - t : t;
        for (unsigned w = 0; w < nwarps; ++w) warp_order[w] = w;
        for (unsigned live = block; live > 0;) {
            bool progress = false;
            if (mode == 3) {
                emu::shuffle(warp_order, rng);
                for (unsigned w : warp_order) {
                    const unsigned first = 32 * w, end = first + warps[w].size;
                    for (bool ran = true; ran;) {
                        ran = false;
                        emu::shuffle(order, rng, first, end);
                        for (unsigned k = first; k < end; ++k) ran |= resume(order[k]);
                        progress |= ran;
                    }
                }
            } else {
                if (mode == 2) emu::shuffle(order, rng);
                for (unsigned t : order) progress |= resume(t);
            }
            live = 0;
            for (auto& f : fibers) live += !f.done;
            if (live > 0 && !progress) emu::deadlock(b, block);
        }
    }
}

// A one-dimensional grid.
static void launch(unsigned grid, unsigned block, const std::function<void()>& body) {
    launch3(grid, 1, 1, block, body);
}

