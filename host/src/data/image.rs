//! JPEG frames and the official torchvision transforms:
//!
//! ```text
//! train: RandomResizedCrop(224) + RandomHorizontalFlip() + ToTensor() + Normalize(mean, std)
//! test:  Resize((224, 224)) + ToTensor() + Normalize(mean, std)
//! ```
//!
//! torchvision resizes PIL images with Pillow's bilinear filter, which widens its support when
//! it shrinks (antialiasing) and rounds to `u8` after each of its two passes.
//! `fast_image_resize`'s convolution resizer is a port of that same code (Pillow-SIMD), so the
//! resized pixels match Pillow's (the fixture test `data_image` checks how closely). The
//! crop-box sampler is torchvision's `RandomResizedCrop.get_params`, step for step, with this
//! crate's seeded RNG in place of torch's (so the crops are torchvision's distribution, not
//! torch's exact draws).
//!
//! Output is CHW f32: `(v / 255 - mean[c]) / std[c]`, computed in f32 as torch does.

use std::path::Path;

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand::Rng;

use super::error::{DataError, SampleError};

/// An 8-bit RGB image, row-major HWC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `height * width * 3` bytes.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// The pixels of `crop` as a new image.
    fn crop(&self, c: CropBox) -> RgbImage {
        let row = self.width as usize * 3;
        let mut data = Vec::with_capacity(c.width as usize * c.height as usize * 3);
        for y in c.top..c.top + c.height {
            let start = y as usize * row + c.left as usize * 3;
            data.extend_from_slice(&self.data[start..start + c.width as usize * 3]);
        }
        RgbImage {
            width: c.width,
            height: c.height,
            data,
        }
    }
}

/// Decodes a JPEG (or any format the `image` crate was built with) to RGB, as PIL's
/// `Image.open(p).convert('RGB')` (grey images get three equal channels).
///
/// A JPEG cut short is an error, as in PIL (which raises "image file is truncated"); the
/// `image` crate's decoder would fill the missing part with grey, so the end-of-image marker
/// is checked first.
pub fn decode_image(path: &Path) -> Result<RgbImage, SampleError> {
    let corrupt = |detail: String| SampleError::CorruptImage {
        path: path.to_path_buf(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| corrupt(e.to_string()))?;
    if bytes.starts_with(&[0xFF, 0xD8]) && !has_jpeg_end(&bytes) {
        return Err(corrupt("truncated JPEG (no end-of-image marker)".into()));
    }
    let rgb = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| corrupt(e.to_string()))?
        .decode()
        .map_err(|e| corrupt(e.to_string()))?
        .into_rgb8();
    let (width, height) = rgb.dimensions();
    if width == 0 || height == 0 {
        return Err(corrupt("image has no pixels".into()));
    }
    Ok(RgbImage {
        width,
        height,
        data: rgb.into_raw(),
    })
}

/// Whether a JPEG ends with its end-of-image marker `FF D9`. Only the tail is searched (some
/// writers pad after the marker), so an embedded thumbnail's marker does not count.
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// A crop rectangle in pixels (torchvision's `i, j, h, w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// First row (`i`).
    pub top: u32,
    /// First column (`j`).
    pub left: u32,
    /// Rows (`h`).
    pub height: u32,
    /// Columns (`w`).
    pub width: u32,
}

impl CropBox {
    /// The whole image.
    pub fn full(width: u32, height: u32) -> CropBox {
        CropBox {
            top: 0,
            left: 0,
            height,
            width,
        }
    }
}

/// Settings of the image transforms. [`ImageConfig::default`] is the official pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageConfig {
    /// Output height (224).
    pub height: u32,
    /// Output width (224).
    pub width: u32,
    /// Per-channel mean (ImageNet).
    pub mean: [f32; 3],
    /// Per-channel standard deviation (ImageNet).
    pub std: [f32; 3],
    /// RandomResizedCrop's area range, as fractions of the image (0.08, 1).
    pub scale: (f64, f64),
    /// RandomResizedCrop's aspect-ratio range (3/4, 4/3).
    pub ratio: (f64, f64),
    /// RandomHorizontalFlip's probability (0.5).
    pub flip_prob: f64,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            height: 224,
            width: 224,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_prob: 0.5,
        }
    }
}

impl ImageConfig {
    /// The official transform at another output size (for small demo models).
    pub fn with_size(height: u32, width: u32) -> ImageConfig {
        ImageConfig {
            height,
            width,
            ..ImageConfig::default()
        }
    }

    /// Floats per transformed frame: `3 * height * width`.
    pub fn frame_len(&self) -> usize {
        3 * self.height as usize * self.width as usize
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: &str| Err(DataError::Config(format!("image: {m}")));
        if self.height == 0 || self.width == 0 {
            return bad("output size must be positive");
        }
        if self.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
            return bad("std must be positive");
        }
        let (s0, s1) = self.scale;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return bad("scale must satisfy 0 < min <= max <= 1");
        }
        let (r0, r1) = self.ratio;
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return bad("ratio must satisfy 0 < min <= max");
        }
        if !(0.0..=1.0).contains(&self.flip_prob) {
            return bad("flip_prob must be in [0, 1]");
        }
        Ok(())
    }
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a random area and log-uniform
/// aspect ratio, then the central crop clamped to the ratio range. Python's `round` rounds
/// half to even, hence `round_ties_even`.
pub fn random_resized_crop<R: Rng + ?Sized>(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut R,
) -> CropBox {
    let area = width as f64 * height as f64;
    let (log_r0, log_r1) = (ratio.0.ln(), ratio.1.ln());
    let uniform = |rng: &mut R, a: f64, b: f64| a + (b - a) * rng.gen::<f64>();
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, log_r0, log_r1).exp();
        let w = (target_area * aspect).sqrt().round_ties_even();
        let h = (target_area / aspect).sqrt().round_ties_even();
        if w > 0.0 && w <= width as f64 && h > 0.0 && h <= height as f64 {
            let (w, h) = (w as u32, h as u32);
            let top = rng.gen_range(0..=height - h);
            let left = rng.gen_range(0..=width - w);
            return CropBox {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0 {
        (
            width,
            ((width as f64 / ratio.0).round_ties_even() as u32).min(height),
        )
    } else if in_ratio > ratio.1 {
        (
            ((height as f64 * ratio.1).round_ties_even() as u32).min(width),
            height,
        )
    } else {
        (width, height)
    };
    CropBox {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// The image transforms with their reusable resizer. One per worker thread.
pub struct ImageTransform {
    config: ImageConfig,
    resizer: Resizer,
    options: ResizeOptions,
}

impl std::fmt::Debug for ImageTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageTransform")
            .field("config", &self.config)
            .finish()
    }
}

impl ImageTransform {
    /// A transform for `config`.
    pub fn new(config: ImageConfig) -> Result<ImageTransform, DataError> {
        config.validate()?;
        Ok(ImageTransform {
            config,
            resizer: Resizer::new(),
            options: ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// Crops, resizes (Pillow bilinear), optionally mirrors, and writes normalised CHW floats
    /// into `out` (`3 * height * width`). The crop must lie inside the image.
    pub fn apply(&mut self, img: &RgbImage, crop: CropBox, flip: bool, out: &mut [f32]) {
        let (oh, ow) = (self.config.height as usize, self.config.width as usize);
        assert_eq!(out.len(), 3 * oh * ow, "output buffer size");
        // Crop first, as PIL's crop + resize: the filter must not reach outside the box.
        let cropped = img.crop(crop);
        let src = Image::from_vec_u8(cropped.width, cropped.height, cropped.data, PixelType::U8x3)
            .expect("buffer size matches the crop");
        let mut dst = Image::new(ow as u32, oh as u32, PixelType::U8x3);
        self.resizer
            .resize(&src, &mut dst, &self.options)
            .expect("same pixel type on both sides");
        let px = dst.buffer();
        let plane = oh * ow;
        // A division, not a multiplication by 1/std: that is what torch's `div_` computes.
        for y in 0..oh {
            for x in 0..ow {
                let sx = if flip { ow - 1 - x } else { x };
                let p = &px[(y * ow + sx) * 3..(y * ow + sx) * 3 + 3];
                for c in 0..3 {
                    out[c * plane + y * ow + x] =
                        (p[c] as f32 / 255.0 - self.config.mean[c]) / self.config.std[c];
                }
            }
        }
    }

    /// The test transform: resize the whole image to `height x width`, normalise.
    pub fn test(&mut self, img: &RgbImage, out: &mut [f32]) {
        self.apply(img, CropBox::full(img.width, img.height), false, out);
    }

    /// The train transform: RandomResizedCrop, RandomHorizontalFlip, normalise.
    pub fn train<R: Rng + ?Sized>(&mut self, img: &RgbImage, rng: &mut R, out: &mut [f32]) {
        let c = self.config;
        let crop = random_resized_crop(img.width, img.height, c.scale, c.ratio, rng);
        let flip = rng.gen::<f64>() < c.flip_prob;
        self.apply(img, crop, flip, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn crops_stay_inside_and_follow_the_ranges() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let (w, h) = (480u32, 360u32);
        let mut fallbacks = 0;
        for _ in 0..2000 {
            let c = random_resized_crop(w, h, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(c.width > 0 && c.height > 0);
            assert!(c.left + c.width <= w && c.top + c.height <= h, "{c:?}");
            let area = (c.width * c.height) as f64 / (w * h) as f64;
            // Rounding to whole pixels moves area and ratio slightly past the ranges.
            assert!((0.075..=1.0).contains(&area), "{area}");
            let r = c.width as f64 / c.height as f64;
            if c == CropBox::full(w, h) {
                fallbacks += 1;
            } else {
                assert!((0.74..=1.35).contains(&r), "{r}");
            }
        }
        assert!(fallbacks < 200, "{fallbacks}");
    }

    #[test]
    fn central_fallback_clamps_the_ratio() {
        // A scale range no crop can satisfy forces the fallback: a very wide image gets its
        // height and the widest allowed ratio, centred.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let c = random_resized_crop(1000, 100, (1.0, 1.0), (0.75, 4.0 / 3.0), &mut rng);
        assert_eq!(
            c,
            CropBox {
                top: 0,
                left: 433,
                height: 100,
                width: 133
            }
        );
        let c = random_resized_crop(100, 1000, (1.0, 1.0), (0.75, 4.0 / 3.0), &mut rng);
        assert_eq!(
            c,
            CropBox {
                top: 433,
                left: 0,
                height: 133,
                width: 100
            }
        );
    }

    #[test]
    fn constant_image_normalises_exactly() {
        let img = RgbImage {
            width: 7,
            height: 5,
            data: [10u8, 128, 250].repeat(35),
        };
        let cfg = ImageConfig::with_size(4, 3);
        let mut t = ImageTransform::new(cfg).unwrap();
        let mut out = vec![0.0; cfg.frame_len()];
        t.test(&img, &mut out);
        for (c, v) in [10u8, 128, 250].iter().enumerate() {
            let want = (*v as f32 / 255.0 - cfg.mean[c]) / cfg.std[c];
            assert!(out[c * 12..(c + 1) * 12].iter().all(|&o| o == want));
        }
    }

    #[test]
    fn flip_mirrors_columns() {
        let data: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
        let img = RgbImage {
            width: 4,
            height: 3,
            data,
        };
        let mut t = ImageTransform::new(ImageConfig::with_size(3, 4)).unwrap();
        let (mut a, mut b) = (vec![0.0; 36], vec![0.0; 36]);
        t.apply(&img, CropBox::full(4, 3), false, &mut a);
        t.apply(&img, CropBox::full(4, 3), true, &mut b);
        for c in 0..3 {
            for y in 0..3 {
                for x in 0..4 {
                    assert_eq!(a[c * 12 + y * 4 + x], b[c * 12 + y * 4 + 3 - x]);
                }
            }
        }
    }
}
