//! Per-sample cost of the official pipeline (ignored by default: timings, not checks).
//!
//! `cargo test -p ogm-host --release --test data_timing -- --ignored --nocapture`

mod data_common;

use std::time::Instant;

use data_common::fixture;
use ogm_host::data::audio::load_audio;
use ogm_host::data::image::{decode_image, ImageConfig, ImageTransform};
use ogm_host::data::spectrogram::{SpectrogramConfig, Stft};
use rand::SeedableRng;

fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up: page cache, FFT plans
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e3 / n as f64
}

#[test]
#[ignore]
fn official_pipeline_cost_per_sample() {
    let mut stft = Stft::new(SpectrogramConfig::default()).unwrap();
    let wav16 = fixture("speech_16000_stereo16.wav");
    let wav22 = fixture("speech_22050_mono16.wav");
    let a16 = per_call(50, || {
        let x = load_audio(&wav16, 22050).unwrap();
        std::hint::black_box(stft.features(&x));
    });
    let a22 = per_call(50, || {
        let x = load_audio(&wav22, 22050).unwrap();
        std::hint::black_box(stft.features(&x));
    });
    let x = load_audio(&wav16, 22050).unwrap();
    let spec_only = per_call(50, || {
        std::hint::black_box(stft.features(&x));
    });

    // A CREMA-D-sized frame: 480 x 360.
    let dir = std::env::temp_dir().join(format!("ogm-timing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jpg = dir.join("frame.jpg");
    let img = image::RgbImage::from_fn(480, 360, |x, y| {
        image::Rgb([(x / 2) as u8, (y / 2) as u8, ((x * y) % 251) as u8])
    });
    img.save(&jpg).unwrap();
    let mut t = ImageTransform::new(ImageConfig::default()).unwrap();
    let mut out = vec![0.0; 3 * 224 * 224];
    let decoded = decode_image(&jpg).unwrap();
    let decode = per_call(50, || {
        std::hint::black_box(decode_image(&jpg).unwrap());
    });
    let test_tf = per_call(50, || t.test(&decoded, &mut out));
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
    let train_tf = per_call(50, || t.train(&decoded, &mut rng, &mut out));
    std::fs::remove_dir_all(&dir).unwrap();

    eprintln!(
        "audio 16 kHz stereo 1.5 s -> 257x188: {a16:.2} ms (spectrogram alone {spec_only:.2} ms)"
    );
    eprintln!("audio 22.05 kHz mono 1.2 s -> 257x188: {a22:.2} ms");
    eprintln!("JPEG 480x360 decode: {decode:.2} ms; test transform 224: {test_tf:.2} ms; train transform 224: {train_tf:.2} ms");
}
