//! `Schedule::new`, `Schedule::official`, `is_active`, `plan` and `Mode::parse` / `as_str` on
//! arbitrary modes, strengths, windows, epochs, scores and flag strings.
//!
//! Valid input: the window is inclusive, an inactive step keeps both coefficients at 1, noise
//! only for an active `OGM_GE` step, coefficients in `[0, 1]` with at most one below 1, and
//! the balance is `balance()`'s. Invalid input: an error.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_core::{balance, Mode, OgmError, Schedule};
use ogm_core_fuzz::{mode, F64};

#[derive(Arbitrary, Debug)]
struct Input {
    mode: u8,
    flag: String,
    alpha: F64,
    starts: Epoch,
    ends: Epoch,
    steps: Vec<(Epoch, F64, F64)>,
}

/// Epochs near the window's edges most of the time, anything sometimes.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Epoch {
    Small(u8),
    Any(u32),
}

impl Epoch {
    fn get(self) -> u32 {
        match self {
            Epoch::Small(e) => e as u32,
            Epoch::Any(e) => e,
        }
    }
}

fuzz_target!(|input: Input| {
    let mode = mode(input.mode);
    // The official flag spellings round-trip; anything else parses to None without panicking.
    assert_eq!(Mode::parse(mode.as_str()), Some(mode));
    if let Some(m) = Mode::parse(&input.flag) {
        assert_eq!(m.as_str(), input.flag);
    }
    let alpha = input.alpha.get();
    let (starts, ends) = (input.starts.get(), input.ends.get());
    let alpha_ok = alpha.is_finite() && alpha >= 0.0;

    let s = match Schedule::new(mode, alpha, starts, ends) {
        Err(e) => {
            assert!(!alpha_ok || ends < starts, "{e:?} for a valid schedule");
            if alpha_ok {
                assert_eq!(e, OgmError::InvalidWindow { starts, ends });
            }
            return;
        }
        Ok(s) => s,
    };
    assert!(alpha_ok && starts <= ends);
    assert_eq!(s.mode(), mode);
    assert_eq!(s.alpha().to_bits(), alpha.to_bits());
    assert_eq!(s.window(), (starts, ends));
    assert_eq!(
        Schedule::official(mode, alpha),
        Schedule::new(mode, alpha, 0, 50)
    );

    for &(epoch, sa, sv) in &input.steps {
        let (epoch, sa, sv) = (epoch.get(), sa.get(), sv.get());
        let active = mode != Mode::Normal && starts <= epoch && epoch <= ends;
        assert_eq!(
            s.is_active(epoch),
            active,
            "epoch {epoch} in {starts}..={ends}"
        );
        let scores_ok = [sa, sv].iter().all(|x| x.is_finite() && *x >= 0.0);
        match s.plan(epoch, sa, sv) {
            Err(e) => assert!(!scores_ok, "{e:?} for valid scores {sa}, {sv}"),
            Ok(p) => {
                assert!(scores_ok, "Ok for invalid scores {sa}, {sv}");
                assert_eq!(p.balance, balance(sa, sv, alpha).unwrap());
                assert_eq!(p.active, active);
                assert_eq!(p.noise, active && mode == Mode::OgmGe);
                let (ka, kv) = (p.coeff_audio, p.coeff_visual);
                assert!(
                    (0.0..=1.0).contains(&ka) && (0.0..=1.0).contains(&kv),
                    "{p:?}"
                );
                assert!(ka == 1.0 || kv == 1.0, "both slowed: {p:?}");
                if active {
                    assert_eq!(ka.to_bits(), p.balance.coeff_audio.to_bits());
                    assert_eq!(kv.to_bits(), p.balance.coeff_visual.to_bits());
                } else {
                    assert!(ka == 1.0 && kv == 1.0, "inactive step modulates: {p:?}");
                }
            }
        }
    }
});
