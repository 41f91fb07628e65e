//! The modulation schedule: mode, strength and the inclusive epoch window.

use crate::balance::{balance, validate_alpha, Balance};
use crate::error::{OgmError, Result};
use crate::modulate::Mode;

/// When and how strongly OGM-GE modulates (the official `--modulation`, `--alpha`,
/// `--modulation_starts`, `--modulation_ends`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    mode: Mode,
    alpha: f64,
    starts: u32,
    ends: u32,
}

/// What to do in one training step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPlan {
    /// Scores, ratio and the coefficients the official rule gives (computed every step, for
    /// logging, also outside the window).
    pub balance: Balance,
    /// Whether the step modulates at all (mode is not `Normal` and the epoch is in the window).
    pub active: bool,
    /// Coefficient to apply to the audio encoder's gradients (1 when inactive).
    pub coeff_audio: f64,
    /// Coefficient to apply to the visual encoder's gradients (1 when inactive).
    pub coeff_visual: f64,
    /// Whether to add Gaussian noise to both encoders' gradients (`OGM_GE`, active).
    pub noise: bool,
}

impl Schedule {
    /// A schedule; epochs are 0-based and the window `starts..=ends` is inclusive.
    ///
    /// Errors: a non-finite or negative `alpha`, or `ends < starts`.
    pub fn new(mode: Mode, alpha: f64, starts: u32, ends: u32) -> Result<Schedule> {
        validate_alpha(alpha)?;
        if ends < starts {
            return Err(OgmError::InvalidWindow { starts, ends });
        }
        Ok(Schedule {
            mode,
            alpha,
            starts,
            ends,
        })
    }

    /// The official defaults (`main.py`): window 0..=50, with the given mode and alpha.
    pub fn official(mode: Mode, alpha: f64) -> Result<Schedule> {
        Schedule::new(mode, alpha, 0, 50)
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The modulation strength alpha.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The inclusive epoch window.
    pub fn window(&self) -> (u32, u32) {
        (self.starts, self.ends)
    }

    /// Whether `epoch` modulates: the mode is not `Normal` and `starts <= epoch <= ends`.
    pub fn is_active(&self, epoch: u32) -> bool {
        self.mode != Mode::Normal && (self.starts..=self.ends).contains(&epoch)
    }

    /// The plan of one step of `epoch` from the batch's two scores.
    ///
    /// Errors: a non-finite or negative score.
    pub fn plan(&self, epoch: u32, score_audio: f64, score_visual: f64) -> Result<StepPlan> {
        let b = balance(score_audio, score_visual, self.alpha)?;
        let active = self.is_active(epoch);
        Ok(StepPlan {
            balance: b,
            active,
            coeff_audio: if active { b.coeff_audio } else { 1.0 },
            coeff_visual: if active { b.coeff_visual } else { 1.0 },
            noise: active && self.mode == Mode::OgmGe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_inclusive() {
        let s = Schedule::new(Mode::OgmGe, 0.8, 2, 4).unwrap();
        let active: std::vec::Vec<bool> = (0..7).map(|e| s.is_active(e)).collect();
        assert_eq!(active, [false, false, true, true, true, false, false]);
        let p = s.plan(3, 1.0, 3.0).unwrap();
        assert!(p.active && p.noise && p.coeff_visual < 1.0);
        let p = s.plan(5, 1.0, 3.0).unwrap();
        assert!(!p.active && !p.noise && p.coeff_visual == 1.0);
        assert!(p.balance.coeff_visual < 1.0);
        let n = Schedule::new(Mode::Normal, 0.8, 0, 50).unwrap();
        assert!(!n.is_active(0));
    }

    #[test]
    fn bad_schedules() {
        assert_eq!(
            Schedule::new(Mode::Ogm, 0.1, 5, 4),
            Err(OgmError::InvalidWindow { starts: 5, ends: 4 })
        );
        assert!(Schedule::new(Mode::Ogm, f64::INFINITY, 0, 4).is_err());
        assert!(Schedule::new(Mode::Ogm, -1.0, 0, 4).is_err());
    }
}
