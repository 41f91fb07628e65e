//! Calls every part of ogm-core from a `no_std` crate (see Cargo.toml for why).
#![no_std]

use ogm_core::{balance_multi, batch_score, modulate_tensor, Mode, NoiseKey, Schedule};

/// One OGM-GE step over caller buffers, exported so nothing is optimised away.
#[no_mangle]
pub extern "C" fn ogm_step(logits: *const f32, labels: *const u32, grad: *mut f32) -> f64 {
    // SAFETY: the check is only linked, never run.
    let (logits, labels, grad) = unsafe {
        (
            core::slice::from_raw_parts(logits, 12),
            core::slice::from_raw_parts(labels, 2),
            core::slice::from_raw_parts_mut(grad, 64),
        )
    };
    let s = batch_score(logits, labels, 6).unwrap_or(0.0);
    let plan = Schedule::official(Mode::OgmGe, 0.8)
        .and_then(|sch| sch.plan(0, s, 1.0))
        .map(|p| p.coeff_audio)
        .unwrap_or(1.0);
    let _ = balance_multi(&[s, 1.0, 2.0], 0.1);
    let _ = modulate_tensor(grad, Mode::OgmGe, plan, NoiseKey::new(0));
    s
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
