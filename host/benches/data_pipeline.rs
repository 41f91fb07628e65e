//! The data pipeline, one clip at a time on one thread: what a loader worker does for each
//! training sample (WAV decode, resampling to 22050 Hz, tiling, STFT 512/353, log magnitude;
//! one of the clip's JPEG frames decoded, random resized crop to 224, flip, normalisation).
//!
//! `scripts/bench-data.sh` runs this beside `scripts/bench_torch_data.py`, the official
//! `CramedDataset.__getitem__` (librosa, PIL, torchvision), on the same files, and prints the
//! ratio. Arguments: `--data DIR` (written first, unless it holds `train.csv`: CREMA-D's
//! media shapes, 16 kHz 16-bit mono WAVs of 2.5 s and 480x360 JPEG frames, three a clip),
//! `--clips N` (training clips timed, default 120), `--rounds R` (passes over them, default 3;
//! the first is discarded as a warm-up of the page cache).
//!
//! Prints one `RESULT` line: per-clip medians (ms) over all timed passes of the whole sample
//! and of each stage (WAV decoding, resampling, spectrogram, JPEG decoding, transform; audio
//! and visual are the sums of their stages' medians).

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use ogm_host::data::audio::{decode_wav, resample};
use ogm_host::data::dataset::sample_seed;
use ogm_host::data::image::{decode_image, ImageTransform};
use ogm_host::data::spectrogram::Stft;
use ogm_host::data::{
    write_dataset, DataPaths, Dataset, DatasetConfig, Pipeline, Split, SynthConfig,
};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use common::{arg, number};

/// CREMA-D's media: 16 kHz 16-bit mono WAVs (the corpus's clips last 1 to 5 s, 2.5 s on
/// average) and frames of the 480x360 videos at one frame a second.
fn write_cremad_like(dir: &Path, clips: usize) {
    let per_class = clips.div_ceil(6);
    let config = SynthConfig {
        train_per_class: per_class,
        test_per_class: 1,
        sample_rate: 16_000,
        audio_seconds: 2.5,
        width: 480,
        height: 360,
        frames_per_clip: 3,
        fps: 1,
        jpeg_quality: 95,
        ..SynthConfig::default()
    };
    write_dataset(&config, dir).expect("writing the benchmark's clips");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let data = PathBuf::from(arg("--data").expect("--data DIR"));
    let clips = number("--clips", 120).max(1);
    let rounds = number("--rounds", 3).max(2);
    if !data.join("train.csv").is_file() {
        write_cremad_like(&data, clips);
    }
    let config = DatasetConfig::default();
    let ds = Dataset::open(&DataPaths::under(&data), Split::Train, config.clone())
        .expect("the benchmark's dataset");
    let n = clips.min(ds.len());
    let mut pipe = Pipeline::new(&config).expect("pipeline");
    let mut stft = Stft::new(config.spectrogram).expect("stft");
    let mut transform = ImageTransform::new(config.image).expect("image transform");
    let mut frame = vec![0.0f32; config.image.frame_len()];

    // Per clip: the whole sample, then its stages one by one (ms).
    let stages = [
        "whole",
        "wav",
        "resample",
        "spectrogram",
        "jpeg",
        "transform",
    ];
    let mut times: Vec<Vec<f64>> = vec![vec![]; stages.len()];
    let rate = config.spectrogram.sample_rate;
    for round in 0..rounds {
        for i in 0..n {
            let clip = &ds.clips()[i];
            let seed = sample_seed(0, round as u64, i as u64);
            let mut lap = Lap::new();
            std::hint::black_box(ds.load(i, seed, &mut pipe).expect("sample"));
            let mut t = vec![lap.next()];
            let wave = decode_wav(&clip.audio).expect("wav");
            t.push(lap.next());
            let samples = resample(&wave.samples, wave.sample_rate, rate);
            t.push(lap.next());
            std::hint::black_box(stft.features(&samples));
            t.push(lap.next());
            let img = decode_image(&clip.frames[i % clip.frames.len()]).expect("frame");
            t.push(lap.next());
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            transform.train(&img, &mut rng, &mut frame);
            std::hint::black_box(&frame);
            t.push(lap.next());
            if round > 0 {
                for (v, x) in times.iter_mut().zip(t) {
                    v.push(x);
                }
            }
        }
    }
    let m: Vec<f64> = times.iter_mut().map(|v| median(v)).collect();
    let parts: Vec<String> = stages[1..]
        .iter()
        .zip(&m[1..])
        .map(|(s, v)| format!("{s}_ms={v:.3}"))
        .collect();
    println!(
        "RESULT impl=ogm-rs clips={n} timed={} ms_per_clip={:.3} audio_ms={:.3} visual_ms={:.3} clips_per_s={:.1} {}",
        times[0].len(),
        m[0],
        m[1] + m[2] + m[3],
        m[4] + m[5],
        1e3 / m[0],
        parts.join(" ")
    );
}

/// Milliseconds since the last lap.
struct Lap(Instant);

impl Lap {
    fn new() -> Lap {
        Lap(Instant::now())
    }

    fn next(&mut self) -> f64 {
        let now = Instant::now();
        let ms = (now - self.0).as_secs_f64() * 1e3;
        self.0 = now;
        ms
    }
}
