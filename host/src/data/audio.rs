//! WAV decoding, mono mixdown and resampling: the `librosa.load(path, sr=22050)` step of the
//! official pipeline.
//!
//! librosa reads through libsndfile, which scales integer PCM by `1 / 2^(bits-1)` (16-bit:
//! `/32768`), averages the channels (`to_mono`), then resamples with soxr's HQ mode to
//! `ceil(n * to / from)` samples. Here `hound` decodes (8/16/24/32-bit integer and 32-bit float
//! PCM, any rate and channel count, WAVE_FORMAT_EXTENSIBLE included) and `rubato`'s synchronous
//! FFT resampler converts the rate. The resamplers differ, so non-22050 Hz input agrees with
//! librosa closely but not bit for bit (see the fixture test `data_audio`); 22050 Hz input is
//! passed through untouched, exactly as librosa does.

use std::path::Path;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use super::error::SampleError;

/// A decoded mono waveform.
#[derive(Debug, Clone, PartialEq)]
pub struct Waveform {
    /// Samples in [-1, 1] for integer PCM (float PCM is passed through unclipped).
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
}

/// Decodes a WAV file and averages its channels.
pub fn decode_wav(path: &Path) -> Result<Waveform, SampleError> {
    let corrupt = |e: hound::Error| match e {
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::NotFound => {
            SampleError::MissingAudio {
                path: path.to_path_buf(),
            }
        }
        e => SampleError::CorruptAudio {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
    };
    let reader = hound::WavReader::open(path).map_err(corrupt)?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 || spec.sample_rate == 0 {
        return Err(SampleError::CorruptAudio {
            path: path.to_path_buf(),
            detail: format!(
                "header declares {} channels at {} Hz",
                spec.channels, spec.sample_rate
            ),
        });
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(corrupt)?,
        hound::SampleFormat::Int => {
            // libsndfile's integer-to-float scale: full scale is 2^(bits-1).
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(corrupt)?
        }
    };
    if interleaved.is_empty() {
        return Err(SampleError::EmptyAudio {
            path: path.to_path_buf(),
        });
    }
    // A float WAV can hold NaN, which the official pipeline carries into a NaN spectrogram
    // and the model then refuses as a whole batch with no file named: the clip is refused
    // here (skipped, or named under --strict). Infinities are kept: the pipeline clips
    // samples to [-1, 1] as the official `np.clip` does, which maps them to +-1.
    if let Some(i) = interleaved.iter().position(|v| v.is_nan()) {
        return Err(SampleError::CorruptAudio {
            path: path.to_path_buf(),
            detail: format!("sample {i} is NaN"),
        });
    }
    Ok(Waveform {
        samples: to_mono(&interleaved, channels),
        sample_rate: spec.sample_rate,
    })
}

/// Averages interleaved channels into one, as `librosa.to_mono` (a trailing partial frame is
/// dropped, as libsndfile does).
pub fn to_mono(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    let inv = 1.0 / channels as f32;
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() * inv)
        .collect()
}

/// Resamples mono audio from `from` Hz to `to` Hz, returning `ceil(n * to / from)` samples with
/// the resampler's delay removed (librosa's length rule). Equal rates return the input.
///
/// # Panics
/// If a rate is zero (decoded files are checked before they get here).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    assert!(from > 0 && to > 0, "sample rates must be positive");
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    // rubato's FFT resampler maps blocks of `m * from/g` input frames to `m * to/g` output
    // frames (g = gcd) and reports a delay of half the output block, rounded down. With an odd
    // output block that rounding leaves a half-sample shift, so `m` is even; blocks of about
    // 1024 input frames keep the anti-aliasing filter sharp.
    let g = gcd(from as usize, to as usize);
    let min_in = from as usize / g;
    let m = 1024usize.div_ceil(min_in).next_multiple_of(2);
    let mut resampler = Fft::<f32>::new_custom(
        from as usize,
        to as usize,
        m * min_in,
        1,
        1,
        WindowFunction::BlackmanHarris2,
        FixedSync::Input,
    )
    .expect("positive rates give a valid FFT resampler");
    let input = InterleavedSlice::new(samples, 1, samples.len()).expect("one channel");
    let out = resampler
        .process_all(&input, samples.len(), None)
        .expect("buffers are sized by rubato itself");
    let mut data = out.take_data();
    let want = (samples.len() as u64 * to as u64).div_ceil(from as u64) as usize;
    data.resize(want, 0.0);
    data
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `librosa.load(path, sr=rate)`: decode, mix down to mono, resample.
pub fn load_audio(path: &Path, rate: u32) -> Result<Vec<f32>, SampleError> {
    let wave = decode_wav(path)?;
    Ok(resample(&wave.samples, wave.sample_rate, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_is_channel_mean() {
        assert_eq!(to_mono(&[1.0, 0.0, 0.5, -0.5, 0.25], 2), vec![0.5, 0.0]);
        assert_eq!(to_mono(&[0.1, 0.2], 1), vec![0.1, 0.2]);
    }

    #[test]
    fn resample_length_follows_librosa() {
        let x = vec![0.0f32; 16001];
        // ceil(16001 * 22050 / 16000) = 22052
        assert_eq!(resample(&x, 16000, 22050).len(), 22052);
        assert_eq!(resample(&x, 44100, 22050).len(), 8001);
        assert_eq!(resample(&x, 22050, 22050), x);
    }

    #[test]
    fn resampled_tone_keeps_frequency_and_level() {
        // A 440 Hz tone at 16 kHz resampled to 22050 Hz must match the analytic tone at
        // 22050 Hz away from the edges.
        let n = 16000;
        let x: Vec<f32> = (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 16000.0).sin() as f32 * 0.5)
            .collect();
        let y = resample(&x, 16000, 22050);
        let mut worst = 0.0f64;
        for (i, &v) in y.iter().enumerate().skip(2000).take(18000) {
            let want = (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 22050.0).sin() * 0.5;
            worst = worst.max((v as f64 - want).abs());
        }
        assert!(worst < 1e-3, "max deviation {worst}");
    }
}
