//! The official CREMA-D audio features:
//!
//! ```text
//! resamples = np.tile(samples, 3)[:22050*3]; clip to [-1, 1]
//! spectrogram = np.log(np.abs(librosa.stft(resamples, n_fft=512, hop_length=353)) + 1e-7)
//! ```
//!
//! `librosa.stft` (0.10+) defaults: a periodic Hann window of length `n_fft`, `center=True` with
//! `n_fft / 2` zeros on both sides (older librosa reflected instead), no normalisation. The
//! result is `(1 + n_fft/2) x (1 + clip/hop)` = 257 x 188, stored row-major as librosa returns
//! it: `[freq][time]`.
//!
//! One deviation from the official code, where it would crash: the official code tiles exactly 3
//! times, so a clip shorter than 1 s gives fewer than 188 frames and the batch cannot be stacked.
//! Here the clip is tiled as often as needed to fill the window ([`fit_clip`]); for clips of
//! 1 s and more this is identical to tiling 3 times.
//!
//! The official VGGSound loader's features ([`SpectrogramConfig::vggsound`], `ogm train
//! --audio_frontend vggsound`) differ in rate, window and cut:
//!
//! ```text
//! sample = librosa.load(path, sr=16000); while len < 10 s: sample = np.tile(sample, 2)
//! new_sample = sample[start : start + 5 s], start = random.randint(0, 5 s); clip to [-1, 1]
//! spectrogram = np.log(np.abs(librosa.stft(new_sample, n_fft=256, hop_length=128)) + 1e-7)
//! ```
//!
//! giving 129 x 626 ([`ClipWindow::Crop`], [`crop_clip`]).

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use super::error::DataError;

/// How a waveform becomes the clip the STFT sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipWindow {
    /// The official CREMA-D rule: tile, keep the first `clip_samples` ([`fit_clip`]).
    Tile,
    /// The official VGGSound rule: double the waveform (`np.tile(x, 2)`) until it holds at
    /// least `min_len` samples, then keep `clip_samples` from an offset in `0..=max_start`
    /// ([`crop_clip`]): drawn at random in training, 0 in evaluation.
    Crop {
        /// Length the doubling must reach (10 s).
        min_len: usize,
        /// Largest offset (5 s; `random.randint(0, rate * 5)` includes it).
        max_start: usize,
    },
}

/// Settings of the audio features. [`SpectrogramConfig::default`] is the official pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpectrogramConfig {
    /// Rate the audio is resampled to (Hz).
    pub sample_rate: u32,
    /// Samples kept after tiling (66150 = 3 s at 22050 Hz).
    pub clip_samples: usize,
    /// How the clip is cut from the waveform.
    pub window: ClipWindow,
    /// FFT size (also the window length).
    pub n_fft: usize,
    /// Hop between frames.
    pub hop: usize,
    /// Added before the logarithm.
    pub log_eps: f32,
}

impl Default for SpectrogramConfig {
    fn default() -> Self {
        SpectrogramConfig {
            sample_rate: 22050,
            clip_samples: 22050 * 3,
            window: ClipWindow::Tile,
            n_fft: 512,
            hop: 353,
            log_eps: 1e-7,
        }
    }
}

impl SpectrogramConfig {
    /// The official VGGSound features of `seconds`-long crops: 16 kHz, doubled to at least
    /// twice the crop, offsets up to one crop length, STFT 256 / hop 128 (`seconds = 5`
    /// gives 129 x 626).
    pub fn vggsound(seconds: f64) -> SpectrogramConfig {
        let clip = (seconds * 16000.0).round() as usize;
        SpectrogramConfig {
            sample_rate: 16000,
            clip_samples: clip,
            window: ClipWindow::Crop {
                min_len: clip.saturating_mul(2),
                max_start: clip,
            },
            n_fft: 256,
            hop: 128,
            log_eps: 1e-7,
        }
    }

    /// Frequency bins: `n_fft / 2 + 1` (257 by default).
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Time frames: `1 + clip_samples / hop` with centring (188 by default).
    pub fn frames(&self) -> usize {
        1 + self.clip_samples / self.hop
    }

    /// Checks that the settings describe a computable spectrogram.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: &str| Err(DataError::Config(format!("spectrogram: {m}")));
        if self.sample_rate == 0 {
            return bad("sample_rate must be positive");
        }
        if self.n_fft < 2 || !self.n_fft.is_multiple_of(2) {
            return bad("n_fft must be even and at least 2");
        }
        if self.hop == 0 {
            return bad("hop must be positive");
        }
        if self.clip_samples == 0 {
            return bad("clip_samples must be positive");
        }
        if let ClipWindow::Crop { min_len, max_start } = self.window {
            // Every offset's crop must lie inside the doubled waveform, as in the official
            // code (10 s doubled, crops of 5 s from offsets up to 5 s).
            if max_start
                .checked_add(self.clip_samples)
                .is_none_or(|e| e > min_len)
            {
                return bad("a crop from the largest offset must end within min_len");
            }
        }
        if self.log_eps.is_nan() || self.log_eps <= 0.0 {
            return bad("log_eps must be positive");
        }
        Ok(())
    }
}

/// Tiles `samples` until it holds `len` samples, truncates to `len` and clips to [-1, 1]
/// (`np.tile(samples, 3)[:len]` for clips of at least `len / 3` samples). Empty input gives
/// silence. The VGGSound crop from offset 0: the tiled waveform is the same periodic one.
pub fn fit_clip(samples: &[f32], len: usize) -> Vec<f32> {
    crop_clip(samples, 0, len)
}

/// The official VGGSound crop: `x` doubled until it holds at least `min_len` samples, then
/// `len` samples from `start`, clipped to [-1, 1]. Doubling keeps the waveform periodic, so
/// sample `i` of the crop is `x[(start + i) % x.len()]` whenever `start + len <= min_len`
/// ([`SpectrogramConfig::validate`] checks it). Empty input gives silence.
pub fn crop_clip(x: &[f32], start: usize, len: usize) -> Vec<f32> {
    if x.is_empty() {
        return vec![0.0; len];
    }
    (start..start + len)
        .map(|i| x[i % x.len()].clamp(-1.0, 1.0))
        .collect()
}

/// A reusable STFT: the FFT plan, the window and the scratch buffers. One per worker thread.
pub struct Stft {
    config: SpectrogramConfig,
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
    frame: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    padded: Vec<f32>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("config", &self.config)
            .finish()
    }
}

impl Stft {
    /// Plans the FFT for `config`.
    pub fn new(config: SpectrogramConfig) -> Result<Stft, DataError> {
        config.validate()?;
        let n = config.n_fft;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
        // Periodic Hann, scipy.signal.get_window('hann', n, fftbins=True). librosa multiplies
        // the f32 frames by this f64 window and transforms in f64 (rounding only the result to
        // complex64), so the transform runs in f64 here too.
        let window = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .collect();
        Ok(Stft {
            frame: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            fft,
            window,
            padded: Vec::new(),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &SpectrogramConfig {
        &self.config
    }

    /// `log(|STFT(x)| + eps)` of a signal of any length, centred with zero padding; returns
    /// `bins x frames` row-major (`[freq][time]`), `frames = 1 + len / hop`.
    pub fn log_magnitude(&mut self, x: &[f32]) -> Vec<f32> {
        let n = self.config.n_fft;
        let hop = self.config.hop;
        let bins = n / 2 + 1;
        let frames = 1 + x.len() / hop;
        let pad = n / 2;
        self.padded.clear();
        self.padded.resize(x.len() + 2 * pad, 0.0);
        self.padded[pad..pad + x.len()].copy_from_slice(x);
        let mut out = vec![0.0f32; bins * frames];
        for t in 0..frames {
            let start = t * hop;
            let src = &self.padded[start..start + n];
            for ((d, &s), &w) in self.frame.iter_mut().zip(src).zip(&self.window) {
                *d = s as f64 * w;
            }
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
                .expect("buffers come from the plan");
            // librosa's roundings: the spectrum to complex64, np.abs in f32 (the f64 root of
            // the f32 parts' squares, rounded once: no overflow or cancellation at these
            // magnitudes), eps added in f32, np.log in f32. f64's hypot and ln, used before,
            // took a third of a clip's audio time.
            let eps = self.config.log_eps;
            for (f, c) in self.spectrum.iter().enumerate() {
                let (re, im) = (c.re as f32 as f64, c.im as f32 as f64);
                let mag = (re * re + im * im).sqrt() as f32;
                out[f * frames + t] = (mag + eps).ln();
            }
        }
        out
    }

    /// The full official feature of a waveform already at `config.sample_rate`: cut the clip
    /// by the config's [`ClipWindow`] (a crop from offset 0), then [`Stft::log_magnitude`].
    /// Returns `bins x frames`.
    pub fn features(&mut self, samples: &[f32]) -> Vec<f32> {
        self.features_at(samples, 0)
    }

    /// [`Stft::features`] with the crop from offset `start` (at most the config's
    /// `max_start`; ignored by [`ClipWindow::Tile`]).
    pub fn features_at(&mut self, samples: &[f32], start: usize) -> Vec<f32> {
        let clip = match self.config.window {
            ClipWindow::Tile => fit_clip(samples, self.config.clip_samples),
            ClipWindow::Crop { max_start, .. } => {
                crop_clip(samples, start.min(max_start), self.config.clip_samples)
            }
        };
        self.log_magnitude(&clip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_shape() {
        let c = SpectrogramConfig::default();
        assert_eq!((c.bins(), c.frames()), (257, 188));
        let mut s = Stft::new(c).unwrap();
        assert_eq!(s.features(&[0.1; 30000]).len(), 257 * 188);
    }

    #[test]
    fn fit_clip_tiles_truncates_and_clips() {
        assert_eq!(
            fit_clip(&[0.5, 2.0, -3.0], 7),
            vec![0.5, 1.0, -1.0, 0.5, 1.0, -1.0, 0.5]
        );
        assert_eq!(fit_clip(&[], 3), vec![0.0; 3]);
    }

    #[test]
    fn dft_of_a_bin_centred_cosine() {
        // A cosine on bin k with a periodic Hann window: the centre frame's magnitude is
        // n/4 at bin k and n/8 at k±1, and (numerically) nothing elsewhere.
        let n = 64;
        let k = 5;
        let c = SpectrogramConfig {
            sample_rate: 8000,
            clip_samples: 256,
            window: ClipWindow::Tile,
            n_fft: n,
            hop: 16,
            log_eps: 1e-7,
        };
        let x: Vec<f32> = (0..256)
            .map(|i| (2.0 * std::f64::consts::PI * k as f64 * i as f64 / n as f64).cos() as f32)
            .collect();
        let mut s = Stft::new(c).unwrap();
        let out = s.log_magnitude(&x);
        let frames = c.frames();
        let t = frames / 2;
        let mag = |f: usize| (out[f * frames + t] as f64).exp() - 1e-7;
        assert!((mag(k) - n as f64 / 4.0).abs() < 1e-3, "{}", mag(k));
        assert!((mag(k + 1) - n as f64 / 8.0).abs() < 1e-3);
        assert!(mag(k + 3) < 1e-3);
    }

    /// The crop equals the official code's steps done literally: `np.tile(x, 2)` until 10 s,
    /// slice, clip; for clips shorter and longer than the target, at the first, a middle and
    /// the last offset.
    #[test]
    fn crop_is_the_doubled_waveform_sliced() {
        let (min_len, len) = (100, 50);
        for n in [1, 7, 30, 64, 100, 130] {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1.5).collect();
            let mut tiled = x.clone();
            while tiled.len() < min_len {
                tiled = [tiled.as_slice(), tiled.as_slice()].concat();
            }
            for start in [0, 23, 50] {
                let want: Vec<f32> = tiled[start..start + len]
                    .iter()
                    .map(|v| v.clamp(-1.0, 1.0))
                    .collect();
                assert_eq!(crop_clip(&x, start, len), want, "n {n} start {start}");
            }
        }
        let c = SpectrogramConfig::vggsound(5.0);
        assert_eq!((c.bins(), c.frames()), (129, 626));
        c.validate().unwrap();
        let reach = SpectrogramConfig {
            window: ClipWindow::Crop {
                min_len: 100,
                max_start: 51,
            },
            clip_samples: 50,
            ..c
        };
        assert!(reach.validate().is_err());
    }

    #[test]
    fn rejects_bad_settings() {
        let bad = SpectrogramConfig {
            n_fft: 511,
            ..Default::default()
        };
        assert!(Stft::new(bad).is_err());
        let bad = SpectrogramConfig {
            hop: 0,
            ..Default::default()
        };
        assert!(Stft::new(bad).is_err());
    }
}
