//! Runtime CPU feature dispatch without `std`.
//!
//! The statistics and the scaling loops are written once as plain Rust that LLVM vectorises; on
//! x86-64 CPUs with AVX2 a copy compiled with AVX2 enabled runs twice as many lanes. (The noise
//! loop has its own AVX2 version written with intrinsics, `noise/avx2.rs`, dispatched with
//! `has_avx2`.) Only IEEE-rounded add, multiply, divide and square root are used (no FMA is
//! enabled, and Rust never contracts `a * b + c`), so every copy gives the same bits.

/// Whether the running CPU and OS support AVX2 (cached after the first call).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering};
    // 0: unknown, 1: no, 2: yes.
    static STATE: AtomicU8 = AtomicU8::new(0);
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let yes = detect_avx2();
            STATE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn detect_avx2() -> bool {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // CPUID exists on every x86-64 CPU (the intrinsic is safe).
    let leaf1 = __cpuid(1);
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    let avx = leaf1.ecx & (1 << 28) != 0;
    if !(osxsave && avx) {
        return false;
    }
    // SAFETY: OSXSAVE is set, so XGETBV is available.
    let xcr0 = unsafe { xgetbv0() };
    // The OS must save both SSE (bit 1) and AVX (bit 2) state.
    if xcr0 & 0b110 != 0b110 {
        return false;
    }
    // Leaf 7 exists on every CPU that reports AVX.
    let leaf7 = __cpuid_count(7, 0);
    leaf7.ebx & (1 << 5) != 0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    core::arch::x86_64::_xgetbv(0)
}

/// Defines `$name` that runs `$body_fn` through an AVX2-compiled copy when the CPU has AVX2.
/// `$body_fn` must be `#[inline(always)]` so that it is compiled inside each copy.
macro_rules! dispatch_avx2 {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty => $body_fn:ident) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn with_avx2($($arg: $ty),*) -> $ret {
                    $body_fn($($arg),*)
                }
                if $crate::simd::has_avx2() {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    return unsafe { with_avx2($($arg),*) };
                }
            }
            $body_fn($($arg),*)
        }
    };
}
pub(crate) use dispatch_avx2;
