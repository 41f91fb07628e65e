//! The image transforms against torchvision / PIL outputs (`scripts/data_fixtures.py`).
//!
//! Two layers are checked separately: the transform on PIL's own decoded pixels (resize +
//! crop + flip + normalise, where the implementations agree to the last `u8` step) and the
//! JPEG decoder against PIL's libjpeg (different IDCTs and chroma upsampling round
//! differently, so a few grey levels apart on a few pixels).

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

/// Levels of difference (in u8 steps) at the worst element, and how many elements differ.
fn compare(got: &[f32], want: &[f32]) -> (f32, usize) {
    let (d, _) = max_abs_diff(got, want);
    let differing = got
        .iter()
        .zip(want)
        .filter(|(a, b)| (*a - *b).abs() > 1e-6)
        .count();
    (d / ONE_LEVEL, differing)
}

#[test]
fn test_transform_matches_torchvision_on_pil_pixels() {
    let img = pil_frame();
    for size in [224u32, 64] {
        let (want, shape) = read_f32(&format!("test_{size}"));
        assert_eq!(shape, [3, size as usize, size as usize]);
        let mut got = vec![0.0; want.len()];
        transform(size).test(&img, &mut got);
        let (levels, differing) = compare(&got, &want);
        // Pillow's fixed-point convolution reproduced: at most one grey level on rare pixels.
        assert!(levels <= 1.01, "size {size}: {levels} levels");
        assert!(
            differing * 1000 <= want.len(),
            "size {size}: {differing} differ"
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
        let (levels, differing) = compare(&got, &want);
        assert!(levels <= 1.01, "{name}: {levels} levels");
        assert!(differing * 1000 <= want.len(), "{name}: {differing} differ");
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
