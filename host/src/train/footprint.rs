//! A lower bound on the host memory a run needs, checked before any media is decoded.
//!
//! A configuration such as `--audio_seconds 1e12` or `--model_width 100000` asks for more
//! memory than any machine has. Without this check the first large allocation aborts the
//! process ("memory allocation of ... bytes failed") after the run folder may already have
//! been written, with no word on which setting is at fault. The bound counts only what the
//! run certainly holds at once, so it never refuses a configuration that would have fitted:
//!
//! * the encoders' convolution weights and their gradients (batch norm, the head and the
//!   optimiser state come on top);
//! * one raw audio clip being turned into a spectrogram;
//! * for each sample of a batch, its two inputs (spectrogram and frames) and, on the CPU
//!   engine, the output of each encoder's stem convolution (kept for the backward pass; every
//!   later activation comes on top). On the GPU the activations live in device memory, whose
//!   allocations fail with an error of their own.
//!
//! Sizes are computed in `f64`, so absurd settings cannot overflow.

use crate::config::{ConfigError, Device, TrainConfig};
use crate::engine::model::{AUDIO_CHANNELS, VISUAL_CHANNELS};

use super::dataset_config;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// Bytes per stored value (the engine trains in f32).
const VALUE: f64 = 4.0;

/// The parts of the lower bound, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Footprint {
    /// Convolution weights of both encoders, with their gradients.
    pub parameters: f64,
    /// One raw audio clip.
    pub clip: f64,
    /// One sample's spectrogram and frames.
    pub inputs_per_sample: f64,
    /// One sample's stem-convolution outputs (CPU engine only; zero on the GPU).
    pub activations_per_sample: f64,
    /// Samples per batch (the batch size, or the split's size when that is smaller).
    pub batch: usize,
}

impl Footprint {
    /// The bound for `config` with batches of `batch` samples.
    pub fn of(config: &TrainConfig, batch: usize) -> Result<Footprint, ConfigError> {
        let spec = dataset_config(config)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?
            .spectrogram;
        // Widths as `model_config` sets them ([w, 2w, 4w, 8w], `blocks` each), but in f64:
        // its usize products overflow for absurd widths, which this check must refuse first.
        let w = config.model.width as f64;
        let blocks = config.model.blocks as f64;
        let widths = [w, 2.0 * w, 4.0 * w, 8.0 * w];
        // Per encoder beyond the stem: stage s's first block maps widths[s-1] (or w) to
        // widths[s] with a 3x3 conv, a 3x3 conv and (from stage 1 on) a 1x1 downsample; each
        // further block has two 3x3 convs.
        let mut body = 0.0;
        let mut prev = w;
        for (s, &ws) in widths.iter().enumerate() {
            body += 9.0 * prev * ws + 9.0 * ws * ws;
            if s > 0 {
                body += prev * ws;
            }
            body += (blocks - 1.0) * 18.0 * ws * ws;
            prev = ws;
        }
        let stems = 49.0 * w * (AUDIO_CHANNELS + VISUAL_CHANNELS) as f64;
        let conv_weights = 2.0 * body + stems;

        // The spectrogram's own sizes (its clip length saturates rather than overflows).
        let (bins, frames) = (spec.bins() as f64, spec.frames() as f64);
        let side = config.image_size as f64;
        let t = config.frames_per_clip() as f64;
        let audio_in = AUDIO_CHANNELS as f64 * bins * frames;
        let visual_in = VISUAL_CHANNELS as f64 * t * side * side;
        // The 7x7 stride-2 stem halves each side (rounding up).
        let half = |x: f64| (x / 2.0).ceil();
        let stems_out = w * (half(bins) * half(frames) + t * half(side) * half(side));
        Ok(Footprint {
            parameters: 2.0 * conv_weights * VALUE,
            clip: spec.clip_samples as f64 * VALUE,
            inputs_per_sample: (audio_in + visual_in) * VALUE,
            activations_per_sample: match config.device {
                Device::Cpu => stems_out * VALUE,
                Device::Cuda => 0.0,
            },
            batch,
        })
    }

    /// One batch's part of the bound in bytes.
    pub fn batch_bytes(&self) -> f64 {
        self.batch as f64 * (self.inputs_per_sample + self.activations_per_sample)
    }

    /// The whole bound in bytes.
    pub fn total(&self) -> f64 {
        self.parameters + self.clip + self.batch_bytes()
    }

    /// Refuses the run when the bound exceeds `available` bytes, naming the part that is too
    /// large and the settings that size it.
    pub fn check(&self, available: u64) -> Result<(), ConfigError> {
        let total = self.total();
        if total <= available as f64 {
            return Ok(());
        }
        let batch_bytes = self.batch_bytes();
        let culprit = if self.parameters >= batch_bytes.max(self.clip) {
            "the model: lower --model_width or --model_blocks"
        } else if self.clip >= batch_bytes {
            "the audio clip: lower --audio_seconds"
        } else {
            "one batch: lower --batch_size, --image_size, --fps or --audio_seconds"
        };
        Err(ConfigError::Invalid(format!(
            "this run needs at least {:.1} GiB of memory (model weights and gradients {:.1} GiB, \
             one audio clip {:.1} GiB, a batch of {} samples {:.1} GiB) but {:.1} GiB is \
             available; the largest part is {culprit}",
            total / GIB,
            self.parameters / GIB,
            self.clip / GIB,
            self.batch,
            batch_bytes / GIB,
            available as f64 / GIB,
        )))
    }
}

/// Memory this process can still get: `MemAvailable` plus free swap from `/proc/meminfo`, in
/// bytes; `None` where that file cannot be read (then no check is made).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some(field("MemAvailable:")? + field("SwapFree:").unwrap_or(0))
}

/// [`Footprint::check`] against this machine's available memory, for batches of `batch`
/// samples (the batch size, or the split's size when that is smaller).
pub fn check_memory(config: &TrainConfig, batch: usize) -> Result<(), ConfigError> {
    let Some(available) = available_memory() else {
        return Ok(());
    };
    Footprint::of(config, batch.max(1))?.check(available)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name, a change to the paper configuration, and the flag its error must name.
    type Case = (&'static str, fn(&mut TrainConfig), &'static str);

    fn paper() -> TrainConfig {
        TrainConfig::default()
    }

    #[test]
    fn the_paper_model_at_batch_64_fits_in_two_gib() {
        let f = Footprint::of(&paper(), 64).unwrap();
        // Conv weights of two ResNet-18s: about 2 x 11.2 M values, times two for gradients.
        let weights = f.parameters / VALUE / 2.0;
        assert!((21.0e6..23.0e6).contains(&weights), "{weights}");
        assert!(f.total() < 2.0 * GIB, "{}", f.total() / GIB);
        f.check(2 * (1 << 30)).unwrap();
    }

    #[test]
    fn absurd_settings_are_refused_with_the_setting_named() {
        let cases: [Case; 4] = [
            ("audio", |c| c.audio_seconds = 1e12, "--audio_seconds"),
            ("width", |c| c.model.width = 100_000, "--model_width"),
            ("image", |c| c.image_size = 1_000_000, "--image_size"),
            ("frames", |c| c.fps = 1_000_000_000, "--fps"),
        ];
        for (what, set, flag) in cases {
            let mut c = paper();
            set(&mut c);
            let err = Footprint::of(&c, 64).unwrap().check(64 << 30).unwrap_err();
            assert!(err.to_string().contains(flag), "{what}: {err}");
        }
    }

    #[test]
    fn the_gpu_bound_leaves_activations_to_the_device() {
        let mut c = paper();
        let cpu = Footprint::of(&c, 64).unwrap();
        c.device = Device::Cuda;
        let gpu = Footprint::of(&c, 64).unwrap();
        assert!(cpu.activations_per_sample > 0.0);
        assert_eq!(gpu.activations_per_sample, 0.0);
        assert_eq!(cpu.inputs_per_sample, gpu.inputs_per_sample);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn meminfo_reads_as_a_positive_number_on_linux() {
        assert!(available_memory().expect("/proc/meminfo") > 0);
    }
}
