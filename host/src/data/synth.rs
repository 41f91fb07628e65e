//! Synthetic audio-visual datasets in the CREMA-D layout (real WAV and JPEG files), with a
//! controllable imbalance between the modalities. `ogm synth` calls [`write_dataset`].
//!
//! Each clip of class `c` mixes a class pattern with class-free noise:
//!
//! - audio: `s_a * tone_c + (1 - s_a) * noise`, where `tone_c` is two harmonics at a
//!   class-specific pitch (jittered per clip) and `noise` is white noise plus two tones at random
//!   pitches, both scaled to the same loudness as the tone;
//! - frames: `s_v * pattern_c + (1 - s_v) * clutter`, where `pattern_c` is the class colour
//!   with stripes of a class-specific period and `clutter` is a random colour with random blobs,
//!   plus pixel noise; `clutter_colour` pulls the clutter's colours towards grey.
//!
//! `s_a = audio_signal` and `s_v = visual_signal` in [0, 1] set how informative each modality
//! is: 0 carries nothing about the class, 1 is a clean pattern. With colourful clutter
//! (`clutter_colour = 1`) a small `s_v` makes the frames noisy: the class colour drowns in
//! random colours and no training gets much out of them. With grey clutter (`clutter_colour =
//! 0`, the default) the class shows in the hue alone, faint but clean: the frames can be
//! learnt to a high accuracy, only slowly. That is the imbalance OGM-GE addresses, and the
//! default (`s_a = 0.8`, `s_v = 0.15`, grey clutter) reproduces it: the audio is learnt within
//! a few epochs and, under plain training, then starves the visual branch (see `ogm demo`).
//! Everything is a function of the seed, so a dataset can be regenerated bit for bit.

use std::f32::consts::TAU;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::dataset::sample_seed;
use super::error::DataError;
use super::split::LabelSet;

/// Settings of a synthetic dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// The classes (CREMA-D's six by default); at most 12.
    pub labels: LabelSet,
    /// Training clips per class.
    pub train_per_class: usize,
    /// Test clips per class.
    pub test_per_class: usize,
    /// How informative the audio is, in [0, 1].
    pub audio_signal: f32,
    /// How informative the frames are, in [0, 1].
    pub visual_signal: f32,
    /// How colourful the frames' clutter is, in [0, 1]: 1 draws random colours, which hide
    /// the class colour (a weak signal is then a noisy one); 0 keeps the clutter grey, so the
    /// class shows cleanly in the hue at strength `visual_signal` (a weak signal is then a
    /// faint one: learnable, but slowly).
    pub clutter_colour: f32,
    /// WAV sample rate (Hz).
    pub sample_rate: u32,
    /// Clip length in seconds.
    pub audio_seconds: f32,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// JPEG files per clip directory.
    pub frames_per_clip: usize,
    /// The `XX` of `Image-XX-FPS`.
    pub fps: usize,
    /// JPEG quality, 1..=100.
    pub jpeg_quality: u8,
    /// The seed.
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            labels: LabelSet::cremad(),
            train_per_class: 40,
            test_per_class: 10,
            audio_signal: 0.8,
            visual_signal: 0.15,
            clutter_colour: 0.0,
            sample_rate: 22050,
            audio_seconds: 1.0,
            width: 64,
            height: 64,
            frames_per_clip: 3,
            fps: 1,
            jpeg_quality: 90,
            seed: 0,
        }
    }
}

/// The most clips per class and split that [`SynthConfig::validate`] accepts.
pub const MAX_CLIPS_PER_CLASS: usize = 100_000;

impl SynthConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: &str| Err(DataError::Config(format!("synth: {m}")));
        if self.labels.len() > PALETTE.len() {
            return bad("at most 12 classes");
        }
        if self.train_per_class == 0 || self.test_per_class == 0 {
            return bad("both splits need at least one clip per class");
        }
        if self.train_per_class.max(self.test_per_class) > MAX_CLIPS_PER_CLASS {
            // 100 000 clips a class is already tens of GB of files; a typo beyond it used to
            // fill memory with the split's rows until the process was killed.
            return bad(&format!(
                "at most {MAX_CLIPS_PER_CLASS} clips per class and split (train_per_class, \
                 test_per_class)"
            ));
        }
        for (name, v) in [
            ("audio_signal", self.audio_signal),
            ("visual_signal", self.visual_signal),
            ("clutter_colour", self.clutter_colour),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(&format!("{name} must be in [0, 1]"));
            }
        }
        if self.sample_rate < 4000 {
            return bad("sample_rate must be at least 4000 Hz");
        }
        if !(self.audio_seconds > 0.0 && self.audio_seconds <= 60.0) {
            return bad("audio_seconds must be in (0, 60]");
        }
        if self.width < 8 || self.height < 8 || self.width > 4096 || self.height > 4096 {
            return bad("frames must be 8..=4096 pixels on each side");
        }
        if self.frames_per_clip == 0 || self.fps == 0 || self.fps > 99 {
            return bad("frames_per_clip must be positive and fps in 1..=99");
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad("jpeg_quality must be in 1..=100");
        }
        Ok(())
    }
}

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// The dataset root.
    pub root: PathBuf,
    /// Training clips.
    pub train: usize,
    /// Test clips.
    pub test: usize,
    /// Classes.
    pub classes: usize,
    /// Files written (WAVs, JPEGs, CSVs).
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Distinct class colours (RGB).
const PALETTE: [[f32; 3]; 12] = [
    [230.0, 60.0, 50.0],
    [40.0, 160.0, 70.0],
    [50.0, 90.0, 220.0],
    [240.0, 200.0, 40.0],
    [160.0, 60.0, 200.0],
    [40.0, 200.0, 210.0],
    [250.0, 140.0, 30.0],
    [120.0, 80.0, 40.0],
    [240.0, 120.0, 190.0],
    [110.0, 110.0, 110.0],
    [150.0, 220.0, 60.0],
    [20.0, 40.0, 90.0],
];

/// Writes a dataset under `dir` (created if needed): `train.csv`, `test.csv`,
/// `AudioWAV/<clip>.wav` and `Image-XX-FPS/<clip>/frame_NNN.jpg`.
pub fn write_dataset(config: &SynthConfig, dir: &Path) -> Result<SynthSummary, DataError> {
    config.validate()?;
    let audio_dir = dir.join("AudioWAV");
    let frame_root = dir.join(format!("Image-{:02}-FPS", config.fps));
    create_dir(&audio_dir)?;
    create_dir(&frame_root)?;
    let mut summary = SynthSummary {
        root: dir.to_path_buf(),
        train: 0,
        test: 0,
        classes: config.labels.len(),
        files: 0,
        bytes: 0,
    };
    for (split_no, (name, per_class)) in [
        ("train", config.train_per_class),
        ("test", config.test_per_class),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rows: Vec<(String, u32)> = Vec::new();
        for class in 0..config.labels.len() as u32 {
            for k in 0..per_class {
                let label = config.labels.name(class).expect("class in range");
                rows.push((format!("{name}_{class:02}_{k:05}_{label}"), class));
            }
        }
        // Mixed class order in the CSV, as a real split file.
        let mut rng =
            Xoshiro256PlusPlus::seed_from_u64(sample_seed(config.seed, split_no as u64, u64::MAX));
        rows.shuffle(&mut rng);
        let mut csv = String::new();
        for (i, (clip, class)) in rows.iter().enumerate() {
            let seed = sample_seed(config.seed ^ 0x005E_ED0F_5A17, split_no as u64, i as u64);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let wav = audio_dir.join(format!("{clip}.wav"));
            summary.bytes += write_wav(
                &wav,
                &synth_audio(config, *class, &mut rng),
                config.sample_rate,
            )?;
            let clip_dir = frame_root.join(clip);
            create_dir(&clip_dir)?;
            let pattern = synth_pattern(config, *class, &mut rng);
            for f in 0..config.frames_per_clip {
                let img = synth_frame(config, &pattern, &mut rng);
                let p = clip_dir.join(format!("frame_{f:03}.jpg"));
                summary.bytes += write_jpeg(&p, &img, config)?;
            }
            summary.files += 1 + config.frames_per_clip;
            csv.push_str(&format!(
                "{clip},{}\n",
                config.labels.name(*class).expect("class")
            ));
        }
        let csv_path = dir.join(format!("{name}.csv"));
        std::fs::write(&csv_path, &csv).map_err(|e| write_error(&csv_path, e))?;
        summary.files += 1;
        summary.bytes += csv.len() as u64;
        if split_no == 0 {
            summary.train = rows.len();
        } else {
            summary.test = rows.len();
        }
    }
    Ok(summary)
}

fn write_error(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Write {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

fn create_dir(p: &Path) -> Result<(), DataError> {
    std::fs::create_dir_all(p).map_err(|e| write_error(p, e))
}

/// Standard normal by Box-Muller (two uniforms, one normal: simple, and fast enough here).
fn normal<R: Rng>(rng: &mut R) -> f32 {
    let u1 = 1.0 - rng.gen::<f32>();
    let u2 = rng.gen::<f32>();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

/// One clip's waveform.
fn synth_audio<R: Rng>(c: &SynthConfig, class: u32, rng: &mut R) -> Vec<f32> {
    let sr = c.sample_rate as f32;
    let n = (c.audio_seconds * sr).round().max(1.0) as usize;
    let tone = |f: f32, phase: f32, i: usize| (TAU * f * i as f32 / sr + phase).sin();
    // Class pitches 300, 450, ... Hz, jittered by ±2% per clip, with a second harmonic.
    let f0 = (300.0 + 150.0 * class as f32) * (1.0 + 0.04 * (rng.gen::<f32>() - 0.5));
    let (p1, p2) = (TAU * rng.gen::<f32>(), TAU * rng.gen::<f32>());
    let mut signal: Vec<f32> = (0..n)
        .map(|i| tone(f0, p1, i) + 0.5 * tone(2.0 * f0, p2, i))
        .collect();
    // Distractor pitches anywhere in 200..2500 Hz (class-free), plus white noise.
    let (d1, d2) = (
        200.0 + 2300.0 * rng.gen::<f32>(),
        200.0 + 2300.0 * rng.gen::<f32>(),
    );
    let (q1, q2) = (TAU * rng.gen::<f32>(), TAU * rng.gen::<f32>());
    let mut noise: Vec<f32> = (0..n)
        .map(|i| 0.6 * tone(d1, q1, i) + 0.6 * tone(d2, q2, i) + normal(rng))
        .collect();
    let (rs, rn) = (rms(&signal), rms(&noise));
    signal.iter_mut().for_each(|v| *v /= rs);
    noise.iter_mut().for_each(|v| *v /= rn);
    let s = c.audio_signal;
    // A soft attack and decay, as a spoken clip.
    let env = |i: usize| {
        let t = i as f32 / n as f32;
        (t / 0.05).min(1.0) * ((1.0 - t) / 0.1).min(1.0)
    };
    (0..n)
        .map(|i| (0.25 * env(i) * (s * signal[i] + (1.0 - s) * noise[i])).clamp(-1.0, 1.0))
        .collect()
}

/// A clip's visual content, shared by its frames: the class colour and stripe period, the
/// clutter colour and blobs.
struct Pattern {
    class_rgb: [f32; 3],
    period: f32,
    clutter_rgb: [f32; 3],
    blobs: Vec<(f32, f32, f32, [f32; 3])>,
}

fn synth_pattern<R: Rng>(c: &SynthConfig, class: u32, rng: &mut R) -> Pattern {
    let (w, h) = (c.width as f32, c.height as f32);
    // A random colour, pulled towards its grey by `clutter_colour`.
    let colour = |rng: &mut R| {
        let rgb = [0; 3].map(|_: i32| 255.0 * rng.gen::<f32>());
        let grey = (rgb[0] + rgb[1] + rgb[2]) / 3.0;
        rgb.map(|v| grey + c.clutter_colour * (v - grey))
    };
    let blobs = (0..4)
        .map(|_| {
            let rgb = colour(rng);
            (
                w * rng.gen::<f32>(),
                h * rng.gen::<f32>(),
                0.1 + 0.25 * rng.gen::<f32>(),
                rgb,
            )
        })
        .collect();
    Pattern {
        class_rgb: PALETTE[class as usize],
        // Stripe periods 4, 6, 8, ... pixels at 64 px, scaled with the frame width.
        period: (4.0 + 2.0 * class as f32) * w / 64.0,
        clutter_rgb: colour(rng),
        blobs,
    }
}

/// One frame: the clip's pattern, drifting slightly between frames, plus pixel noise.
fn synth_frame<R: Rng>(c: &SynthConfig, p: &Pattern, rng: &mut R) -> Vec<u8> {
    let (w, h) = (c.width as usize, c.height as usize);
    let s = c.visual_signal;
    let shift = 3.0 * rng.gen::<f32>();
    let mut out = Vec::with_capacity(w * h * 3);
    let diag = (w * w + h * h) as f32;
    for y in 0..h {
        for x in 0..w {
            let stripe = if ((x as f32 + y as f32 + shift) / p.period).floor() as i64 % 2 == 0 {
                1.0
            } else {
                0.55
            };
            let mut clutter = p.clutter_rgb;
            for &(bx, by, r, rgb) in &p.blobs {
                let d2 = ((x as f32 - bx).powi(2) + (y as f32 - by).powi(2)) / diag;
                if d2 < r * r {
                    clutter = rgb;
                }
            }
            for (class_v, clutter_v) in p.class_rgb.iter().zip(clutter) {
                let v = s * class_v * stripe + (1.0 - s) * clutter_v + 12.0 * normal(rng);
                out.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

fn write_wav(path: &Path, samples: &[f32], rate: u32) -> Result<u64, DataError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let err = |e: hound::Error| write_error(path, e);
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for &v in samples {
        w.write_sample((v * 32767.0).round() as i16).map_err(err)?;
    }
    w.finalize().map_err(err)?;
    Ok(44 + 2 * samples.len() as u64)
}

fn write_jpeg(path: &Path, rgb: &[u8], c: &SynthConfig) -> Result<u64, DataError> {
    let file = std::fs::File::create(path).map_err(|e| write_error(path, e))?;
    let mut enc = JpegEncoder::new_with_quality(BufWriter::new(file), c.jpeg_quality);
    enc.encode(rgb, c.width, c.height, image::ExtendedColorType::Rgb8)
        .map_err(|e| write_error(path, e))?;
    drop(enc);
    Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_counts_beyond_the_cap_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("synth");
        for (train, test) in [(MAX_CLIPS_PER_CLASS + 1, 1), (1, 100_000_000)] {
            let c = SynthConfig {
                train_per_class: train,
                test_per_class: test,
                ..Default::default()
            };
            let e = write_dataset(&c, &out).unwrap_err().to_string();
            assert!(e.contains("clips per class"), "{e}");
            assert!(!out.exists());
        }
        let at_cap = SynthConfig {
            train_per_class: MAX_CLIPS_PER_CLASS,
            ..Default::default()
        };
        at_cap.validate().unwrap();
    }
}
