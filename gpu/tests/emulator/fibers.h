// The fiber scheduler of the kernel emulator (see cuda_shim.h), shared by harness.cpp (part 1's
// kernels, driven through files) and engine_lib.cpp (the engine's kernels, loaded as a shared
// library). The including file defines the shim's globals (threadIdx, emu::warp, ...).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
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

namespace {
constexpr size_t kStack = 64 * 1024;
struct Fiber {
    void* sp = nullptr;
    // Left uninitialised: only the pages a fiber touches are ever mapped.
    std::unique_ptr<char[]> stack{new char[kStack]};
    bool done = false;
};
void* scheduler_sp;
Fiber* current;
const std::function<void()>* kernel_body;

[[noreturn]] void fiber_entry() {
    (*kernel_body)();
    current->done = true;
    void* dead;
    emu_switch(&dead, scheduler_sp);
    __builtin_unreachable();
}

// A fresh stack whose first switch "returns" into fiber_entry with the ABI's alignment
// (rsp = 8 mod 16 at function entry).
void prepare(Fiber& f) {
    uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack.get()) + kStack) & ~uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                                   // fiber_entry's (unused) return address
    *--sp = reinterpret_cast<void*>(&fiber_entry);     // emu_switch's ret target
    for (int i = 0; i < 6; ++i) *--sp = nullptr;       // rbp rbx r12 r13 r14 r15
    f.sp = sp;
    f.done = false;
}
}  // namespace

void emu::yield() { emu_switch(&current->sp, scheduler_sp); }

// Runs `body` as a (gx, gy, gz) x block launch: blocks in order (x fastest), each block's
// threads as fibers run round-robin until all have finished.
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
    for (unsigned long long b = 0; b < (unsigned long long)gx * gy * gz; ++b) {
        blockIdx = {unsigned(b % gx), unsigned(b / gx % gy), unsigned(b / gx / gy)};
        for (auto& f : fibers) prepare(f);
        for (unsigned live = block; live > 0;) {
            live = 0;
            for (unsigned t = 0; t < block; ++t) {
                Fiber& f = fibers[t];
                if (f.done) continue;
                current = &f;
                threadIdx = {t, 0, 0};
                emu::lane = t % 32;
                emu::warp = &warps[t / 32];
                emu::block_bar = &block_bar;
                emu_switch(&scheduler_sp, f.sp);
                live += !f.done;
            }
        }
    }
}

// A one-dimensional grid.
static void launch(unsigned grid, unsigned block, const std::function<void()>& body) {
    launch3(grid, 1, 1, block, body);
}

