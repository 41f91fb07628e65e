//! The audio half of a sample (`ogm_host::data::audio` and `spectrogram`): a WAV file decoded,
//! mixed down, resampled (`load_audio`) to the pipeline's rate and turned into the CREMA-D and
//! the VGGSound log spectrograms, on arbitrary bytes and on well-formed files with fuzzed
//! header fields (format, channels, rate, bits) and fuzzed samples (any float bits: NaN,
//! infinities).
//!
//! Asserts: no panic, no hang, no allocation beyond libFuzzer's limit; `decode_wav` gives the
//! samples of hound's own iterator (mixed down), bit for bit, wherever that reads the file
//! (and refuses the file where it does not), whichever of its paths decodes the data; a clip
//! is refused with an error or gives a spectrogram of the configured shape whose every value
//! is finite (a non-finite feature would stop training on a whole batch with no file named).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_core_fuzz::{scratch, F32};
use ogm_host::data::audio::{decode_wav, load_audio, to_mono, SAMPLE_RATES};
use ogm_host::data::spectrogram::Stft;
use ogm_host::data::SpectrogramConfig;

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any bytes as the file.
    Raw(Vec<u8>),
    /// A RIFF/WAVE file with a 16-byte `fmt ` chunk and a `data` chunk.
    Wav {
        format: Format,
        channels: u8,
        rate: Rate,
        samples: Samples,
    },
}

#[derive(Arbitrary, Debug)]
enum Format {
    Pcm,
    Float,
    Tag(u16, u16),
}

#[derive(Arbitrary, Debug)]
enum Rate {
    Common(u8),
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum Samples {
    Floats(Vec<F32>),
    Bytes(Vec<u8>),
}

const RATES: [u32; 10] = [
    8000, 11025, 16000, 22050, 22051, 32000, 44100, 48000, 96000, 1,
];

fn wav(format: Format, channels: u8, rate: Rate, samples: Samples) -> Vec<u8> {
    let (tag, bits) = match format {
        Format::Pcm => (1u16, 16u16),
        Format::Float => (3, 32),
        Format::Tag(t, b) => (t, b),
    };
    let channels = channels as u16;
    let rate = match rate {
        Rate::Common(i) => RATES[i as usize % RATES.len()],
        Rate::Any(r) => r,
    };
    let data: Vec<u8> = match samples {
        Samples::Floats(v) => v.iter().flat_map(|x| x.get().to_le_bytes()).collect(),
        Samples::Bytes(b) => b,
    };
    let block = channels.wrapping_mul(bits.div_ceil(8));
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&rate.wrapping_mul(block as u32).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// The rate and mixed-down samples as hound's sample iterator reads them (the host's
/// decoding before its one-pass path, and still its path for other encodings), or `None`
/// where hound refuses the file.
fn reference(bytes: &[u8]) -> Option<(u32, Vec<f32>)> {
    let reader = hound::WavReader::new(bytes).ok()?;
    let spec = reader.spec();
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .ok()?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .ok()?
        }
    };
    if spec.channels == 0 {
        return None;
    }
    Some((
        spec.sample_rate,
        to_mono(&interleaved, spec.channels as usize),
    ))
}

fuzz_target!(|input: Input| {
    let bytes = match input {
        Input::Raw(b) => b,
        Input::Wav {
            format,
            channels,
            rate,
            samples,
        } => wav(format, channels, rate, samples),
    };
    let path = scratch("clip.wav");
    std::fs::write(&path, &bytes).expect("scratch file");
    let decoded = decode_wav(&path);
    match (reference(&bytes), &decoded) {
        (Some((rate, want)), Ok(wave)) => {
            assert_eq!(wave.sample_rate, rate);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&wave.samples),
                bits(&want),
                "samples differ from hound's"
            );
        }
        (None, Err(_)) => {}
        (Some((rate, want)), Err(e)) => {
            // Refusals of files hound reads: a rate outside the accepted range, no samples,
            // a NaN sample.
            assert!(
                !SAMPLE_RATES.contains(&rate) || want.is_empty() || want.iter().any(|v| v.is_nan()),
                "refused a file hound reads ({rate} Hz, {} samples): {e}",
                want.len()
            );
        }
        (None, Ok(_)) => panic!("decoded a file hound's iterator refuses"),
    }
    let Ok(wave) = decoded else {
        return;
    };
    assert!(wave.sample_rate > 0 && !wave.samples.is_empty());
    // Clips of 0.2 s and 0.05 s: the arithmetic of 3 s and 5 s ones at a fraction of the time
    // (the FFTs dominate each run).
    let cremad = SpectrogramConfig {
        clip_samples: 4410,
        ..SpectrogramConfig::default()
    };
    for config in [cremad, SpectrogramConfig::vggsound(0.05)] {
        // What a sample's loading does: `load_audio` (decode, mix down, resample), then the
        // features.
        let Ok(samples) = load_audio(&path, config.sample_rate) else {
            continue;
        };
        let want = (wave.samples.len() as u64 * config.sample_rate as u64)
            .div_ceil(wave.sample_rate as u64);
        assert_eq!(samples.len() as u64, want, "resampled length");
        let mut stft = Stft::new(config).expect("a valid config");
        let features = stft.features(&samples);
        assert_eq!(features.len(), config.bins() * config.frames());
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            panic!(
                "feature {i} is {} ({} Hz, {} samples, first non-finite sample {:?})",
                features[i],
                wave.sample_rate,
                wave.samples.len(),
                wave.samples.iter().position(|v| !v.is_finite())
            );
        }
    }
});
