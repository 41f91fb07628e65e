//! The visual half of a sample (`ogm_host::data::image`): a frame file decoded by its content
//! (JPEG or PNG) and put through the evaluation transform (resize, centre crop, normalise)
//! and the training one (RandomResizedCrop, flip), on arbitrary bytes and on valid PNGs of
//! fuzzed sizes (1 x 1 to 300 x 300, any aspect) and pixels, at fuzzed output sizes.
//!
//! Asserts: no panic, no hang, no allocation beyond libFuzzer's limit; a decoded frame has
//! `width * height * 3` bytes, and both transforms fill the whole output with finite values
//! within the normalised range of 8-bit pixels.
#![no_main]

use std::io::Cursor;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_core_fuzz::scratch;
use ogm_host::data::image::{decode_image, ImageTransform};
use ogm_host::data::ImageConfig;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

#[derive(Arbitrary, Debug)]
enum Source {
    /// Any bytes as the file.
    Raw(Vec<u8>),
    /// A PNG of `width x height` (each 1 + value % 300) RGB pixels, `pixels` repeated.
    Png {
        width: u16,
        height: u16,
        pixels: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    source: Source,
    /// The output size, each 1 + value % 64.
    out: (u8, u8),
    seed: u64,
}

fn png(width: u16, height: u16, pixels: &[u8]) -> Vec<u8> {
    let (w, h) = (1 + width as u32 % 300, 1 + height as u32 % 300);
    let n = (w * h * 3) as usize;
    let data: Vec<u8> = if pixels.is_empty() {
        vec![0; n]
    } else {
        pixels.iter().copied().cycle().take(n).collect()
    };
    let img = image::RgbImage::from_raw(w, h, data).expect("sized buffer");
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("in-memory PNG");
    out.into_inner()
}

fuzz_target!(|input: Input| {
    let bytes = match input.source {
        Source::Raw(b) => b,
        Source::Png {
            width,
            height,
            pixels,
        } => png(width, height, &pixels),
    };
    let path = scratch("frame.jpg");
    std::fs::write(&path, &bytes).expect("scratch file");
    let Ok(img) = decode_image(&path) else {
        return;
    };
    assert_eq!(img.data.len(), img.width as usize * img.height as usize * 3);
    let config = ImageConfig::with_size(1 + input.out.0 as u32 % 64, 1 + input.out.1 as u32 % 64);
    // Normalised 8-bit values lie within (0 - mean) / std and (1 - mean) / std.
    let (lo, hi) = (
        (0..3)
            .map(|c| -config.mean[c] / config.std[c])
            .fold(f32::MAX, f32::min)
            - 1e-3,
        (0..3)
            .map(|c| (1.0 - config.mean[c]) / config.std[c])
            .fold(f32::MIN, f32::max)
            + 1e-3,
    );
    let mut transform = ImageTransform::new(config).expect("a valid config");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(input.seed);
    for train in [false, true] {
        let mut out = vec![f32::NAN; config.frame_len()];
        if train {
            transform.train(&img, &mut rng, &mut out);
        } else {
            transform.test(&img, &mut out);
        }
        if let Some(i) = out.iter().position(|v| !(lo..=hi).contains(v)) {
            panic!(
                "{}x{} -> {}x{} (train {train}): value {i} is {}",
                img.width, img.height, config.width, config.height, out[i]
            );
        }
    }
});
