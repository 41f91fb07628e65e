//! Plain-data structs shared with the kernels (`kernels/common.cuh`), `#[repr(C)]` field for
//! field; the size assertions below and the `static_assert`s there keep the two in step.

use std::fmt;

use ogm_core::GradStats;

/// Count, mean, sum of squared deviations and largest magnitude of a tensor (the device form
/// of [`ogm_core::GradStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C)]
pub struct Stats {
    /// Number of values.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    /// Largest absolute value.
    pub max_abs: f64,
}

impl From<Stats> for GradStats {
    fn from(s: Stats) -> GradStats {
        GradStats {
            count: s.count,
            mean: s.mean,
            m2: s.m2,
            max_abs: s.max_abs,
        }
    }
}

impl From<GradStats> for Stats {
    fn from(s: GradStats) -> Stats {
        Stats {
            count: s.count,
            mean: s.mean,
            m2: s.m2,
            max_abs: s.max_abs,
        }
    }
}

/// Scores, ratios and coefficients of one step as the device computes them (index 0 is
/// audio, 1 visual).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C)]
pub struct BalanceState {
    /// `s_u = sum_i softmax(out_u)[i, y_i]`.
    pub score: [f64; 2],
    /// `[r_a, r_v]`; NaN when there is no ratio (`has_ratio == 0`).
    pub ratio: [f64; 2],
    /// `[k_a, k_v]` by the official rule (1 where there is no ratio).
    pub coeff: [f64; 2],
    /// The coefficients the step applies: `coeff` when active, else 1.
    pub applied: [f64; 2],
    /// 1 where that modality's logits and labels were valid.
    pub score_ok: [u32; 2],
    /// 1 when `ratio` holds the ratios.
    pub has_ratio: u32,
    /// 1 when the step modulates.
    pub active: u32,
}

/// Sticky error report of the kernels, read and cleared by the host when it chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct DeviceStatus {
    /// [`StatusFlags`] bits.
    pub flags: u32,
    /// Smallest index of a tensor left unmodulated; `u32::MAX` when none.
    pub first_bad_tensor: u32,
}

impl DeviceStatus {
    /// The cleared status.
    pub const CLEAR: DeviceStatus = DeviceStatus {
        flags: 0,
        first_bad_tensor: u32::MAX,
    };

    /// `Ok` when no kernel reported anything, else [`crate::GpuError::DeviceReported`].
    pub fn check(self) -> crate::Result<()> {
        if self.flags == 0 {
            return Ok(());
        }
        Err(crate::GpuError::DeviceReported {
            flags: StatusFlags(self.flags),
            first_bad_tensor: (self.first_bad_tensor != u32::MAX).then_some(self.first_bad_tensor),
        })
    }
}

impl Default for DeviceStatus {
    fn default() -> DeviceStatus {
        DeviceStatus::CLEAR
    }
}

/// The bits of [`DeviceStatus::flags`] (`OGM_STATUS_*` in `kernels/common.cuh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusFlags(pub u32);

impl StatusFlags {
    /// A label was `>= classes` (that modality's score is not used; no modulation).
    pub const BAD_LABEL: u32 = 1;
    /// A logit was NaN or infinite (as above).
    pub const NONFINITE_LOGIT: u32 = 2;
    /// A modulated tensor held a NaN or infinity (it was left untouched).
    pub const NONFINITE_GRADIENT: u32 = 4;
    /// Modulating a tensor could overflow `f32` (it was left untouched).
    pub const OVERFLOW: u32 = 8;

    const NAMES: [(u32, &'static str); 4] = [
        (Self::BAD_LABEL, "a label out of range"),
        (Self::NONFINITE_LOGIT, "a non-finite logit"),
        (Self::NONFINITE_GRADIENT, "a non-finite gradient"),
        (Self::OVERFLOW, "an overflowing modulation"),
    ];

    /// Whether all bits of `bits` are set.
    pub fn contains(self, bits: u32) -> bool {
        self.0 & bits == bits
    }
}

impl fmt::Display for StatusFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (bit, name) in Self::NAMES {
            if self.0 & bit != 0 {
                write!(f, "{}{name}", if first { "" } else { ", " })?;
                first = false;
            }
        }
        let unknown = self.0 & !Self::NAMES.iter().fold(0, |a, (b, _)| a | b);
        if unknown != 0 {
            write!(
                f,
                "{}unknown bits {unknown:#x}",
                if first { "" } else { ", " }
            )?;
        }
        Ok(())
    }
}

#[cfg(feature = "cuda")]
mod device_copy {
    // SAFETY: plain #[repr(C)] data without pointers or padding-dependent invariants; any bit
    // pattern the kernels write is a valid value.
    unsafe impl cust::memory::DeviceCopy for super::Stats {}
    unsafe impl cust::memory::DeviceCopy for super::BalanceState {}
    unsafe impl cust::memory::DeviceCopy for super::DeviceStatus {}
}

// The sizes the kernels' static_asserts check.
const _: () = assert!(std::mem::size_of::<Stats>() == 32);
const _: () = assert!(std::mem::size_of::<BalanceState>() == 80);
const _: () = assert!(std::mem::size_of::<DeviceStatus>() == 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reports_what_is_set() {
        assert!(DeviceStatus::CLEAR.check().is_ok());
        let err = DeviceStatus {
            flags: StatusFlags::BAD_LABEL | StatusFlags::OVERFLOW,
            first_bad_tensor: 3,
        }
        .check()
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("a label out of range, an overflowing modulation"),
            "{text}"
        );
        assert!(text.contains("Some(3)"), "{text}");
        assert_eq!(StatusFlags(64).to_string(), "unknown bits 0x40");
    }
}
