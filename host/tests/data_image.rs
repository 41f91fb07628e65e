//! The image transforms against torchvision / PIL outputs (`scripts/data_fixtures.py`).
//!
//! Two layers are checked separately: the transform on PIL's own decoded pixels (crop,
//! resize, flip, normalise) and the JPEG decoder against PIL's libjpeg.
//!
//! Stated tolerance of the transform: at most one `u8` grey level per element (0.0175 after
//! normalisation) and at most 0.3 levels on average. fast_image_resize ports Pillow-SIMD's
//! convolution, whose fixed-point rounding differs from Pillow's by one level on some pixels
//! (measured: about a fifth of the elements at 224 x 224); the others are exact.

mod data_common;

use data_common::{entry, fixture, max_abs_diff, read_f32, read_u8};
use ogm_host::data::image::{decode_image, CropBox, ImageConfig, ImageTransform, RgbImage};
use ogm_host::data::SampleError;

/// One `u8` grey level after normalisation, at the smallest std (0.224): the largest step.
const ONE_LEVEL: f32 = 1.0 / 255.0 / 0.224;

fn pil_frame() -> RgbImage {
    let (data, shape) = read_u8("frame_rgb");
    assert_eq!(shape[2], 3);
    RgbImage {
        width: shape[1] as u32,
        height: shape[0] as u32,
        data,
    }
}

fn transform(size: u32) -> ImageTransform {
    ImageTransform::new(ImageConfig::with_size(size, size)).unwrap()
}

/// The worst and the mean difference, in u8 grey levels.
fn compare(got: &[f32], want: &[f32]) -> (f32, f32) {
    let (d, _) = max_abs_diff(got, want);
    let sum: f32 = got.iter().zip(want).map(|(a, b)| (a - b).abs()).sum();
    (d / ONE_LEVEL, sum / got.len() as f32 / ONE_LEVEL)
}

#[test]
fn test_transform_matches_torchvision_on_pil_pixels() {
    let img = pil_frame();
    for size in [224u32, 64] {
        let (want, shape) = read_f32(&format!("test_{size}"));
        assert_eq!(shape, [3, size as usize, size as usize]);
        let mut got = vec![0.0; want.len()];
        transform(size).test(&img, &mut got);
        let (worst, mean) = compare(&got, &want);
        eprintln!("test transform {size}: worst {worst:.2} levels, mean {mean:.3}");
        assert!(
            worst <= 1.01 && mean <= 0.3,
            "{size}: worst {worst}, mean {mean}"
        );
    }
}

#[test]
fn crop_resize_flip_matches_torchvision() {
    let img = pil_frame();
    for name in ["crop_down", "crop_up"] {
        let e = entry(name);
        let g = |k: &str| e[k].as_u64().unwrap() as u32;
        let crop = CropBox {
            top: g("top"),
            left: g("left"),
            height: g("height"),
            width: g("width"),
        };
        let flip = e["flip"].as_bool().unwrap();
        let (want, _) = read_f32(name);
        let mut got = vec![0.0; want.len()];
        transform(g("size")).apply(&img, crop, flip, &mut got);
        let (worst, mean) = compare(&got, &want);
        eprintln!("{name}: worst {worst:.2} levels, mean {mean:.3}");
        assert!(
            worst <= 1.01 && mean <= 0.3,
            "{name}: worst {worst}, mean {mean}"
        );
    }
}

#[test]
fn jpeg_decoding_is_close_to_pil() {
    let pil = pil_frame();
    let ours = decode_image(&fixture("frame_300x200.jpg")).unwrap();
    assert_eq!((ours.width, ours.height), (pil.width, pil.height));
    let diffs: Vec<i32> = ours
        .data
        .iter()
        .zip(&pil.data)
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .collect();
    let worst = *diffs.iter().max().unwrap();
    let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
    assert!(worst <= 8 && mean < 1.0, "worst {worst}, mean {mean}");

    // The whole test pipeline from the file: within the decoder's difference.
    let (want, _) = read_f32("test_224");
    let mut got = vec![0.0; want.len()];
    transform(224).test(&ours, &mut got);
    let (levels, _) = compare(&got, &want);
    eprintln!("decoder vs PIL: worst {worst}, mean {mean:.3} levels; pipeline worst {levels:.2}");
    assert!(levels <= worst as f32 + 1.01, "{levels} levels");
}

#[test]
fn corrupt_and_missing_jpeg_name_the_file() {
    let dir = std::env::temp_dir().join(format!("ogm-data-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(fixture("frame_300x200.jpg")).unwrap();
    let cases = [
        ("garbage.jpg", b"not a jpeg".to_vec()),
        ("truncated.jpg", bytes[..bytes.len() / 3].to_vec()),
        ("empty.jpg", Vec::new()),
    ];
    for (name, content) in cases {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        match decode_image(&p) {
            Err(e @ SampleError::CorruptImage { .. }) => {
                assert_eq!(e.path(), p);
                assert!(e.to_string().contains(name), "{e}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(matches!(
        decode_image(&dir.join("absent.jpg")),
        Err(SampleError::CorruptImage { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A frame that is a PNG under a `.jpg` name (frames exported by another tool): PIL's
/// `Image.open` reads files by their content, and so does the pipeline; the pixels are the
/// PNG's exactly (lossless).
#[test]
fn a_png_named_jpg_decodes_by_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (7u32, 5u32);
    let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
    let p = dir.path().join("frame_000.jpg");
    image::RgbImage::from_raw(w, h, pixels.clone())
        .unwrap()
        .save_with_format(&p, image::ImageFormat::Png)
        .unwrap();
    let got = decode_image(&p).unwrap();
    assert_eq!((got.width, got.height), (w, h));
    assert_eq!(got.data, pixels);
}
