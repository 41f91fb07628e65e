//! The fused SGD step on the device.

use cust::memory::{CopyDestination, DeviceBuffer, DeviceSlice};

use super::{launch, Gpu};
use crate::error::{GpuError, Result};
use crate::sgd::SgdConfig;

/// SGD with momentum and weight decay over one flat parameter buffer (PyTorch semantics, see
/// [`crate::sgd`]); owns the momentum buffer.
pub struct Sgd {
    config: SgdConfig,
    momentum_buf: DeviceBuffer<f32>,
    first: bool,
    blocks: u32,
}

impl Sgd {
    /// An optimiser for `len` parameters.
    ///
    /// Errors: invalid hyper-parameters, `len == 0`.
    pub fn new(gpu: &Gpu, len: usize, config: SgdConfig) -> Result<Sgd> {
        config.validate()?;
        if len == 0 {
            return Err(GpuError::Empty { what: "parameters" });
        }
        Ok(Sgd {
            config,
            momentum_buf: DeviceBuffer::zeroed(len)?,
            first: true,
            blocks: launch::sgd_blocks(len as u64, gpu.multiprocessors()?),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    /// Sets the learning rate (a schedule such as StepLR, between steps).
    ///
    /// Errors: a negative or non-finite rate (the old one is kept).
    pub fn set_lr(&mut self, lr: f32) -> Result<()> {
        let next = SgdConfig { lr, ..self.config };
        next.validate()?;
        self.config = next;
        Ok(())
    }

    /// The momentum buffer (for checkpoints and tests).
    pub fn momentum_buffer(&self) -> &DeviceSlice<f32> {
        &self.momentum_buf
    }

    /// Waits for the queued work, then restores the momentum buffer (from a checkpoint); the
    /// next step is then not a first step.
    ///
    /// Errors: a buffer whose length is not the optimiser's.
    pub fn load_momentum(&mut self, gpu: &Gpu, momentum: &[f32]) -> Result<()> {
        if momentum.len() != self.momentum_buf.len() {
            return Err(GpuError::LengthMismatch {
                what: "momentum",
                expected: self.momentum_buf.len(),
                got: momentum.len(),
            });
        }
        gpu.synchronize()?;
        self.momentum_buf.copy_from(&momentum.to_vec())?;
        self.first = false;
        Ok(())
    }

    /// Queues one update `params <- params - lr * buf(grads + wd * params)`.
    ///
    /// Errors (nothing is queued): buffers whose length is not the optimiser's.
    pub fn step(
        &mut self,
        gpu: &Gpu,
        params: &mut DeviceSlice<f32>,
        grads: &DeviceSlice<f32>,
    ) -> Result<()> {
        let n = self.momentum_buf.len();
        for (what, got) in [("params", params.len()), ("grads", grads.len())] {
            if got != n {
                return Err(GpuError::LengthMismatch {
                    what,
                    expected: n,
                    got,
                });
            }
        }
        let c = self.config;
        // SAFETY: params, grads and the momentum buffer all hold n values (checked above).
        unsafe {
            launch::sgd(
                gpu,
                self.blocks,
                params.as_device_ptr(),
                grads.as_device_ptr(),
                self.momentum_buf.as_device_ptr(),
                n as u64,
                c.lr,
                c.momentum,
                c.weight_decay,
                self.first as u32,
            )?;
        }
        self.first = false;
        Ok(())
    }
}
