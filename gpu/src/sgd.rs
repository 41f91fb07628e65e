//! The optimiser step the official code runs after modulation: `torch.optim.SGD` with momentum
//! and weight decay (dampening 0, no Nesterov), over flat buffers.

use crate::error::{GpuError, Result};

/// SGD hyper-parameters (the official defaults: lr 1e-3, momentum 0.9, weight decay 1e-4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (the caller applies its schedule, e.g. StepLR, between steps).
    pub lr: f32,
    /// Momentum factor; 0 disables the momentum buffer.
    pub momentum: f32,
    /// L2 penalty added to the gradient: `d = g + weight_decay * p`.
    pub weight_decay: f32,
}

impl SgdConfig {
    /// The official `main.py` settings.
    pub const OFFICIAL: SgdConfig = SgdConfig {
        lr: 1e-3,
        momentum: 0.9,
        weight_decay: 1e-4,
    };

    /// Checks that every field is finite and not negative (PyTorch's own checks).
    pub fn validate(&self) -> Result<()> {
        for (what, v) in [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(GpuError::InvalidParameter {
                    what,
                    value: v as f64,
                    reason: "must be finite and not negative",
                });
            }
        }
        Ok(())
    }
}

/// One value's update, operation for operation as `kernels/sgd.cu` (IEEE `f32`, no fused
/// multiply-add): `d = g + wd p` (if `wd != 0`); `buf = d` on the first step, else
/// `buf = m buf + d`, and `d = buf` (if `m != 0`); `p = p - lr d`.
#[inline]
pub fn sgd_value(p: &mut f32, g: f32, buf: &mut f32, c: &SgdConfig, first: bool) {
    let mut d = if c.weight_decay != 0.0 {
        g + c.weight_decay * *p
    } else {
        g
    };
    if c.momentum != 0.0 {
        *buf = if first { d } else { c.momentum * *buf + d };
        d = *buf;
    }
    *p += -(c.lr * d);
}

/// The CPU reference of the fused SGD kernel over flat buffers of equal length. `first` marks
/// the first step, where PyTorch initialises the momentum buffer with `d`.
///
/// Errors (nothing is written): invalid hyper-parameters, lengths that differ.
pub fn sgd_step(
    params: &mut [f32],
    grads: &[f32],
    momentum_buf: &mut [f32],
    config: &SgdConfig,
    first: bool,
) -> Result<()> {
    config.validate()?;
    for (what, got) in [("grads", grads.len()), ("momentum_buf", momentum_buf.len())] {
        if got != params.len() {
            return Err(GpuError::LengthMismatch {
                what,
                expected: params.len(),
                got,
            });
        }
    }
    for ((p, &g), b) in params.iter_mut().zip(grads).zip(momentum_buf.iter_mut()) {
        sgd_value(p, g, b, config, first);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_semantics() {
        let c = SgdConfig {
            lr: 0.5,
            momentum: 0.5,
            weight_decay: 0.25,
        };
        let (mut p, g, mut b) = ([2.0f32], [1.0f32], [100.0f32]);
        sgd_step(&mut p, &g, &mut b, &c, true).unwrap();
        // d = 1 + 0.25 * 2 = 1.5; buf = 1.5 (first step ignores the old buffer); p = 2 - 0.75.
        assert_eq!((p[0], b[0]), (1.25, 1.5));
        sgd_step(&mut p, &g, &mut b, &c, false).unwrap();
        // d = 1 + 0.3125 = 1.3125; buf = 0.75 + 1.3125 = 2.0625; p = 1.25 - 1.03125.
        assert_eq!((p[0], b[0]), (0.21875, 2.0625));
        let plain = SgdConfig {
            lr: 0.5,
            momentum: 0.0,
            weight_decay: 0.0,
        };
        sgd_step(&mut p, &g, &mut b, &plain, false).unwrap();
        assert_eq!((p[0], b[0]), (-0.28125, 2.0625));
    }

    #[test]
    fn bad_input_is_rejected() {
        let mut p = [0.0f32; 2];
        let mut b = [0.0f32; 2];
        assert!(matches!(
            sgd_step(&mut p, &[0.0], &mut b, &SgdConfig::OFFICIAL, true),
            Err(GpuError::LengthMismatch { what: "grads", .. })
        ));
        let bad = SgdConfig {
            lr: f32::NAN,
            ..SgdConfig::OFFICIAL
        };
        assert!(matches!(
            sgd_step(&mut p, &[0.0; 2], &mut b, &bad, true),
            Err(GpuError::InvalidParameter { what: "lr", .. })
        ));
    }
}
