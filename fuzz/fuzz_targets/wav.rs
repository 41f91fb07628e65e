//! The audio half of a sample (`ogm_host::data::audio` and `spectrogram`): a WAV file decoded,
//! mixed down, resampled (`load_audio`) to the pipeline's rate and turned into the CREMA-D and the VGGSound
//! log spectrograms, on arbitrary bytes and on well-formed files with fuzzed header fields
//! (format, channels, rate, bits) and fuzzed samples (any float bits: NaN, infinities).
//!
//! Asserts: no panic, no hang, no allocation beyond libFuzzer's limit; a clip is refused
//! with an error or gives a spectrogram of the configured shape whose every value is finite
//! (a non-finite feature would stop training on a whole batch with no file named).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_core_fuzz::{scratch, F32};
use ogm_host::data::audio::{decode_wav, load_audio};
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
    let Ok(wave) = decode_wav(&path) else {
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
