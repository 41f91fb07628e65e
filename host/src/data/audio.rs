//! WAV decoding, mono mixdown and resampling: the `librosa.load(path, sr=22050)` step of the
//! official pipeline.
//!
//! librosa reads through libsndfile, which scales integer PCM by `1 / 2^(bits-1)` (16-bit:
//! `/32768`), averages the channels (`to_mono`), then resamples with soxr's HQ mode to
//! `ceil(n * to / from)` samples. Here `hound` reads the header and decodes (8/16/24/32-bit
//! integer and 32-bit float PCM, any rate and channel count, WAVE_FORMAT_EXTENSIBLE included;
//! the data of the two common encodings, 16-bit integer and 32-bit float, is converted in one
//! pass over the file's bytes) and `rubato`'s synchronous FFT resampler converts the rate.
//! The resamplers differ, so non-22050 Hz input agrees with librosa closely but not bit for
//! bit (see the fixture test `data_audio`); 22050 Hz input is passed through untouched,
//! exactly as librosa does.

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

/// The sample rates a WAV file may declare: 1 kHz to 768 kHz, beyond every rate audio is
/// recorded at. A header outside it is corrupt, and would make [`resample`]'s FFT blocks as
/// long as the rate (a 33 MHz header took minutes and gigabytes for one sample).
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1_000..=768_000;

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
    let bytes = std::fs::read(path).map_err(|e| corrupt(hound::Error::IoError(e)))?;
    let mut cursor = std::io::Cursor::new(bytes.as_slice());
    let (spec, values) = hound::WavReader::new(&mut cursor)
        .map(|r| (r.spec(), r.len() as usize))
        .map_err(corrupt)?;
    let channels = spec.channels as usize;
    if channels == 0 || !SAMPLE_RATES.contains(&spec.sample_rate) {
        return Err(SampleError::CorruptAudio {
            path: path.to_path_buf(),
            detail: format!(
                "header declares {} channels at {} Hz (read: at least one channel, {} to {} Hz)",
                spec.channels,
                spec.sample_rate,
                SAMPLE_RATES.start(),
                SAMPLE_RATES.end()
            ),
        });
    }
    let interleaved: Vec<f32> = match bulk_samples(&bytes, cursor.position() as usize, values, spec)
    {
        Some(Ok(v)) => v,
        Some(Err(detail)) => {
            return Err(SampleError::CorruptAudio {
                path: path.to_path_buf(),
                detail,
            })
        }
        None => hound_samples(&bytes, spec).map_err(corrupt)?,
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

/// The samples of the two PCM encodings that hold nearly every WAV (16-bit integer, 32-bit
/// float), converted from the data chunk's bytes in one pass: the chunk starts at byte `start`
/// of `bytes` (where hound's header reader stopped, just after the chunk's length) and holds
/// `values` samples.
/// hound's sample iterator costs about 15 ns a sample, a fifth of a clip's audio time.
/// `None` for every other encoding; `Some(Err)` for a data chunk cut short by the file's end,
/// which hound's iterator also refuses.
fn bulk_samples(
    bytes: &[u8],
    start: usize,
    values: usize,
    spec: hound::WavSpec,
) -> Option<Result<Vec<f32>, String>> {
    // hound checked that the chunk's length is `values` times the container's width.
    let declared = u32::from_le_bytes(bytes.get(start.checked_sub(4)?..start)?.try_into().ok()?);
    let width = (declared as usize).checked_div(values)?;
    let format = (spec.sample_format, spec.bits_per_sample, width);
    if !matches!(
        format,
        (hound::SampleFormat::Int, 16, 2) | (hound::SampleFormat::Float, 32, 4)
    ) {
        return None;
    }
    let data = &bytes[start..];
    let len = values * width;
    if data.len() < len {
        return Some(Err(format!(
            "the data chunk is cut short: {} of its {len} bytes are in the file",
            data.len()
        )));
    }
    let data = &data[..len];
    Some(Ok(if width == 2 {
        // libsndfile's scale, as for every integer width below.
        data.chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) * (1.0 / 32768.0))
            .collect()
    } else {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }))
}

/// Every other encoding, through hound's sample iterator.
fn hound_samples(bytes: &[u8], spec: hound::WavSpec) -> Result<Vec<f32>, hound::Error> {
    let reader = hound::WavReader::new(bytes)?;
    match spec.sample_format {
        hound::SampleFormat::Float => reader.into_samples::<f32>().collect(),
        hound::SampleFormat::Int => {
            // libsndfile's integer-to-float scale: full scale is 2^(bits-1).
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect()
        }
    }
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
/// If a rate is zero (decoded files are checked before they get here), and inside rubato if
/// a sum overflows to a NaN ([`load_audio`] refuses samples beyond
/// [`MAX_RESAMPLED_MAGNITUDE`] before they get here).
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
    let input = InterleavedSlice::new(samples, 1, samples.len()).expect("one channel");
    // process_all resets the resampler first: no state carries over between clips.
    let out = with_resampler(from, to, m * min_in, |r| {
        r.process_all(&input, samples.len(), None)
            .expect("buffers are sized by rubato itself")
    });
    let mut data = out.take_data();
    let want = (samples.len() as u64 * to as u64).div_ceil(from as u64) as usize;
    data.resize(want, 0.0);
    data
}

/// Resamplers with input blocks up to this long are kept for the next clip: every common rate
/// (8 to 48 kHz and 44.1 kHz to 22050 Hz: blocks of 1024 to 1280 frames). Rates coprime with
/// the target make blocks as long as the rate, whose buffers are not worth holding.
const CACHED_BLOCK: usize = 8192;

/// A resampler and the `(from, to)` rates it converts.
type KeptResampler = ((u32, u32), Fft<f32>);

thread_local! {
    /// The resampler of the last pair of rates, with its FFT plans and filter: a loader thread
    /// meets one pair per dataset, and building it cost a third of resampling a 2.5 s clip.
    static RESAMPLER: std::cell::RefCell<Option<KeptResampler>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` on rubato's FFT resampler from `from` to `to` Hz with input blocks of `block`
/// frames: this thread's cached one where the rates match and the block is short.
fn with_resampler<R>(from: u32, to: u32, block: usize, f: impl FnOnce(&mut Fft<f32>) -> R) -> R {
    let build = || {
        Fft::<f32>::new_custom(
            from as usize,
            to as usize,
            block,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .expect("positive rates give a valid FFT resampler")
    };
    if block > CACHED_BLOCK {
        return f(&mut build());
    }
    RESAMPLER.with_borrow_mut(|cached| match cached {
        Some((rates, r)) if *rates == (from, to) => f(r),
        _ => f(&mut cached.insert(((from, to), build())).1),
    })
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The largest sample magnitude that is resampled: far beyond any audio (float PCM is about
/// [-1, 1]), far enough below `f32::MAX` that the resampler's FFT sums cannot overflow.
/// rubato panics on the NaN an overflow makes, so larger samples are refused before it runs.
pub const MAX_RESAMPLED_MAGNITUDE: f32 = 1e20;

/// `librosa.load(path, sr=rate)`: decode, mix down to mono, resample.
///
/// A float WAV may hold samples far beyond [-1, 1], infinities included; the pipeline clips
/// them to [-1, 1] after this step, as the official code does. At the pipeline's own rate
/// they pass through to that clip. Resampling sums them, and sums that overflow come out
/// infinite or NaN, which no clip repairs (the official pipeline trains on the NaN): a clip
/// to be resampled with a sample beyond [`MAX_RESAMPLED_MAGNITUDE`], or whose resampled
/// values are not all finite, is refused, naming the file.
pub fn load_audio(path: &Path, rate: u32) -> Result<Vec<f32>, SampleError> {
    let wave = decode_wav(path)?;
    if wave.sample_rate == rate {
        return Ok(wave.samples);
    }
    let overflow = |detail: String| SampleError::CorruptAudio {
        path: path.to_path_buf(),
        detail: format!(
            "resampling {} Hz to {rate} Hz: {detail} (float audio is expected in about [-1, 1])",
            wave.sample_rate
        ),
    };
    let too_large = |v: &f32| v.is_nan() || v.abs() > MAX_RESAMPLED_MAGNITUDE;
    if let Some(i) = wave.samples.iter().position(too_large) {
        return Err(overflow(format!(
            "sample {i} is {:e}, beyond {MAX_RESAMPLED_MAGNITUDE:e}",
            wave.samples[i]
        )));
    }
    let out = resample(&wave.samples, wave.sample_rate, rate);
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        return Err(overflow(format!("resampled sample {i} overflows")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_is_channel_mean() {
        assert_eq!(to_mono(&[1.0, 0.0, 0.5, -0.5, 0.25], 2), vec![0.5, 0.0]);
        assert_eq!(to_mono(&[0.1, 0.2], 1), vec![0.1, 0.2]);
    }

    /// A mono WAV at `path` declaring `rate`: 32-bit float samples `v`, or with `pcm16` the
    /// samples scaled to 16-bit integers.
    fn wav(path: std::path::PathBuf, rate: u32, pcm16: bool, v: &[f32]) -> std::path::PathBuf {
        let (bits_per_sample, sample_format) = if pcm16 {
            (16, hound::SampleFormat::Int)
        } else {
            (32, hound::SampleFormat::Float)
        };
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample,
            sample_format,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for &x in v {
            if pcm16 {
                w.write_sample((x * 32768.0) as i16).unwrap();
            } else {
                w.write_sample(x).unwrap();
            }
        }
        w.finalize().unwrap();
        path
    }

    /// A one-sample 16-bit WAV declaring `rate`.
    fn wav_at(dir: &Path, rate: u32) -> std::path::PathBuf {
        wav(dir.join(format!("{rate}.wav")), rate, true, &[0.03])
    }

    #[test]
    fn bulk_decoding_gives_the_sample_iterators_values() {
        // Every encoding, container width and channel count through decode_wav against hound's
        // own iterator (the path every encoding took before the bulk one), with a chunk after
        // the data that must not be read as samples.
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (hound::SampleFormat::Int, 16, 2, 2),
            (hound::SampleFormat::Int, 24, 3, 1), // declared 16 valid bits below
            (hound::SampleFormat::Int, 24, 3, 2),
            (hound::SampleFormat::Int, 8, 1, 1),
            (hound::SampleFormat::Float, 32, 4, 3),
        ];
        for (i, (format, bits, width, channels)) in cases.into_iter().enumerate() {
            let spec = hound::WavSpec {
                channels,
                sample_rate: 16_000,
                bits_per_sample: bits,
                sample_format: format,
            };
            let ex = hound::WavSpecEx {
                spec,
                bytes_per_sample: width,
            };
            let mut bytes = std::io::Cursor::new(Vec::new());
            let mut w = hound::WavWriter::new_with_spec_ex(&mut bytes, ex).unwrap();
            let full = (1i64 << (bits - 1)) as f64;
            for k in 0..1002i64 {
                let x = ((k * 7919) % 2001 - 1000) as f64 / 1000.0;
                match format {
                    hound::SampleFormat::Float => w.write_sample(x as f32 * 3.0).unwrap(),
                    _ => w.write_sample((x * (full - 1.0)) as i32).unwrap(),
                }
            }
            w.finalize().unwrap();
            let mut bytes = bytes.into_inner();
            let mut spec = spec;
            if i == 1 {
                // 16 valid bits in a 24-bit container (hound writes no such file): the
                // extensible format's wValidBitsPerSample, at byte 38.
                assert_eq!(
                    bytes[20..22],
                    [0xFE, 0xFF],
                    "a WAVE_FORMAT_EXTENSIBLE header"
                );
                bytes[38..40].copy_from_slice(&16u16.to_le_bytes());
                spec.bits_per_sample = 16;
            }
            // A trailing LIST chunk, as many tools write after the data.
            bytes.extend_from_slice(b"LIST\x04\0\0\0abcd");
            let path = dir.path().join(format!("{i}.wav"));
            std::fs::write(&path, &bytes).unwrap();
            let what = format!(
                "case {i}: {format:?} {} bits in {width} bytes",
                spec.bits_per_sample
            );
            match hound_samples(&bytes, spec) {
                Ok(want) => {
                    let got = decode_wav(&path).unwrap();
                    assert_eq!(got.samples, to_mono(&want, channels as usize), "{what}");
                    assert_eq!(got.samples.len(), 1002 / channels as usize);
                }
                // hound reads no 16-bit samples from 3-byte containers: neither may we.
                Err(e) => match decode_wav(&path) {
                    Err(SampleError::CorruptAudio { detail, .. }) => {
                        assert_eq!(detail, e.to_string(), "{what}")
                    }
                    other => panic!("{what}: hound says {e}, decode_wav {other:?}"),
                },
            }
            // Cut inside the data chunk: refused, naming the file.
            let cut = dir.path().join(format!("{i}-cut.wav"));
            std::fs::write(&cut, &bytes[..bytes.len() - 12 - 5]).unwrap();
            match decode_wav(&cut) {
                Err(SampleError::CorruptAudio { path, .. }) => assert_eq!(path, cut),
                other => panic!("case {i} cut: {other:?}"),
            }
        }
    }

    #[test]
    fn a_kept_resampler_carries_nothing_between_clips() {
        // The thread's resampler is reused for the same rates: every clip must come out as
        // from a fresh one, after a longer or shorter clip and after other rates.
        let clip =
            |n: usize, f: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * f).sin() * 0.5).collect() };
        let (a, b) = (clip(40_000, 0.05), clip(3_000, 0.31));
        // Each test runs on a thread of its own: this first call builds the resampler.
        let first = resample(&a, 16_000, 22_050);
        for (from, x) in [(16_000, &b), (44_100, &a), (22_051, &b), (16_000, &a)] {
            let _ = resample(x, from, 22_050);
        }
        assert_eq!(resample(&a, 16_000, 22_050), first);
        let short = resample(&b, 16_000, 22_050);
        assert_eq!(resample(&a, 16_000, 22_050), first);
        assert_eq!(resample(&b, 16_000, 22_050), short);
        assert_eq!(first.len(), 55_125);
    }

    #[test]
    fn absurd_sample_rates_are_corrupt_headers() {
        // Found by the `wav` fuzz target: a header of 33545215 Hz made one sample's resampling
        // take minutes; 1 Hz would make FFT blocks of 22 million samples.
        let dir = tempfile::tempdir().unwrap();
        for rate in [1, 999, 768_001, 33_545_215, 1_000_000_000] {
            let path = wav_at(dir.path(), rate);
            match decode_wav(&path) {
                Err(SampleError::CorruptAudio { path: p, detail }) => {
                    assert_eq!(p, path);
                    assert!(detail.contains(&format!("at {rate} Hz")), "{detail}");
                }
                other => panic!("{rate} Hz: {other:?}"),
            }
        }
        for rate in [1000, 8000, 768_000] {
            let wave = decode_wav(&wav_at(dir.path(), rate)).unwrap();
            assert_eq!((wave.sample_rate, wave.samples.len()), (rate, 1));
            assert_eq!(
                load_audio(&wav_at(dir.path(), rate), 22050).unwrap().len(),
                { 22050u32.div_ceil(rate) as usize }
            );
        }
    }

    #[test]
    fn overflowing_float_samples_are_refused_when_resampled() {
        // Found by the `wav` fuzz target: a 22051 Hz float WAV holding -2^127 resampled to
        // NaN, which went on into a NaN spectrogram.
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, rate: u32, v: &[f32]| wav(dir.path().join(name), rate, false, v);
        for big in [f32::from_bits(0xff00_0000), f32::MAX, f32::INFINITY] {
            let path = write("big.wav", 22051, &[big, -1.0, 0.0, -1.0]);
            match load_audio(&path, 22050) {
                Err(SampleError::CorruptAudio { detail, .. }) => {
                    assert!(
                        detail.contains("22051 Hz to 22050 Hz: sample 0 is"),
                        "{detail}"
                    )
                }
                other => panic!("{big}: {other:?}"),
            }
            // At the pipeline's rate nothing is summed: the value goes on to the clip.
            let same = load_audio(&write("same.wav", 22050, &[big, 0.5]), 22050).unwrap();
            assert_eq!(same, vec![big, 0.5]);
        }
        // Loud float audio is resampled and kept, as librosa keeps it, up to the bound.
        for loud in [3.0, MAX_RESAMPLED_MAGNITUDE] {
            let got = load_audio(&write("loud.wav", 16000, &[loud; 400]), 22050).unwrap();
            assert!(got.iter().all(|v| v.is_finite()) && got.iter().any(|&v| v > loud / 2.0));
        }
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
