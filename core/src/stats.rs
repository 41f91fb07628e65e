//! Gradient statistics: the unbiased per-tensor standard deviation that sets OGM-GE's noise.
//!
//! Values are processed in chunks of [`crate::CHUNK`]: each chunk is summarised exactly
//! enough with a two-pass mean and sum of squared deviations in `f64`, and chunk summaries are
//! merged with Chan et al.'s pairwise formula. A chunk (4 KiB) stays in L1 between its two
//! passes, so memory is read once: the first pass sums and takes the largest magnitude, the
//! second sums the squared deviations from L1, and the chunks a few ahead are prefetched. This stays accurate for 10^8 values and more
//! (no catastrophic cancellation, unlike `E[x^2] - E[x]^2`), and it is what makes the
//! statistics splittable: merging the same chunk summaries in chunk order gives the same bits
//! whether they were computed serially or on many threads.

use crate::error::{OgmError, Result};
use crate::CHUNK;

/// The standard deviation floor OGM-GE adds: `sigma = std + 1e-8`.
pub const SIGMA_EPS: f64 = 1e-8;

/// Count, mean and sum of squared deviations of a set of values (a mergeable summary).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradStats {
    /// Number of values.
    pub count: u64,
    /// Their mean (0 when empty).
    pub mean: f64,
    /// Sum of squared deviations from the mean (`M2`).
    pub m2: f64,
    /// Largest absolute value (0 when empty); bounds the modulated output.
    pub max_abs: f64,
}

/// Sum of `values` in `f64` and their largest absolute value, in one sweep with eight
/// accumulators each so the loop vectorises (one read of the chunk instead of two; the sum's
/// rounding is the same as summing alone). NaN-free inputs assumed for the maximum; NaN is
/// caught by the mean check.
#[inline(always)]
fn sum_and_max_abs(values: &[f32]) -> (f64, f32) {
    let mut acc = [0.0f64; 8];
    let mut top = [0.0f32; 8];
    let mut it = values.chunks_exact(8);
    for c in &mut it {
        for l in 0..8 {
            acc[l] += c[l] as f64;
            let a = c[l].abs();
            top[l] = if a > top[l] { a } else { top[l] };
        }
    }
    let mut s: f64 = acc.iter().sum();
    let mut m = top.iter().copied().fold(0.0f32, f32::max);
    for &v in it.remainder() {
        s += v as f64;
        m = m.max(v.abs());
    }
    (s, m)
}

/// Sum of squared deviations of `values` from `mean`, in `f64`.
#[inline(always)]
fn sum_sq_dev(values: &[f32], mean: f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut it = values.chunks_exact(8);
    for c in &mut it {
        for l in 0..8 {
            let d = c[l] as f64 - mean;
            acc[l] += d * d;
        }
    }
    let mut s: f64 = acc.iter().sum();
    for &v in it.remainder() {
        let d = v as f64 - mean;
        s += d * d;
    }
    s
}

/// Chunks ahead of the current one whose cache lines [`prefetch_ahead`] requests.
const PREFETCH_CHUNKS: usize = 4;

/// Asks for chunk `c + PREFETCH_CHUNKS` of `values` to be brought into the cache.
///
/// The statistics pass does little arithmetic per byte, so it runs at the speed at which one
/// core can stream memory; the hardware prefetcher alone keeps too few lines in flight.
#[inline(always)]
fn prefetch_ahead(values: &[f32], c: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = (c + PREFETCH_CHUNKS) * CHUNK;
        if let Some(ahead) = values.get(start..(start + CHUNK).min(values.len())) {
            // 16 f32 per 64-byte line.
            for line in ahead.chunks(16) {
                // SAFETY: a prefetch is only a hint; the pointer is in bounds anyway.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr() as *const i8) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (values, c);
}

crate::simd::dispatch_avx2! {
    fn chunk_stats(values: &[f32]) -> GradStats => chunk_stats_body
}

#[inline(always)]
fn chunk_stats_body(values: &[f32]) -> GradStats {
    if values.is_empty() {
        return GradStats::EMPTY;
    }
    let n = values.len();
    let (sum, max_abs) = sum_and_max_abs(values);
    let mean = sum / n as f64;
    GradStats {
        count: n as u64,
        mean,
        m2: sum_sq_dev(values, mean),
        max_abs: max_abs as f64,
    }
}

impl GradStats {
    /// The summary of no values.
    pub const EMPTY: GradStats = GradStats {
        count: 0,
        mean: 0.0,
        m2: 0.0,
        max_abs: 0.0,
    };

    /// Summarises one chunk with a two-pass computation. Does not check finiteness: a
    /// non-finite input gives a non-finite `mean` (f32 values cannot overflow the `f64` sums).
    pub fn of_chunk(values: &[f32]) -> GradStats {
        chunk_stats(values)
    }

    /// Combines two summaries (Chan, Golub and LeVeque's pairwise update). Merging is exact in
    /// exact arithmetic; in floating point the result depends on the merge order, so merge in
    /// a fixed (chunk) order for reproducibility.
    pub fn merge(self, other: GradStats) -> GradStats {
        if self.count == 0 {
            return other;
        }
        if other.count == 0 {
            return self;
        }
        let n = self.count + other.count;
        let (na, nb, nf) = (self.count as f64, other.count as f64, n as f64);
        let delta = other.mean - self.mean;
        GradStats {
            count: n,
            mean: self.mean + delta * (nb / nf),
            m2: self.m2 + other.m2 + delta * delta * (na * (nb / nf)),
            max_abs: self.max_abs.max(other.max_abs),
        }
    }

    /// Summarises a whole gradient tensor, chunk by chunk in order.
    ///
    /// Errors: an empty slice, or a non-finite value (the error names its index).
    pub fn of(values: &[f32]) -> Result<GradStats> {
        if values.is_empty() {
            return Err(OgmError::Empty { what: "gradient" });
        }
        let mut total = GradStats::EMPTY;
        for (c, chunk) in values.chunks(CHUNK).enumerate() {
            prefetch_ahead(values, c);
            let s = GradStats::of_chunk(chunk);
            if !s.mean.is_finite() {
                let at = crate::error::first_non_finite(chunk).unwrap_or(0);
                return Err(OgmError::NonFinite {
                    what: "gradient",
                    index: c * CHUNK + at,
                });
            }
            total = total.merge(s);
        }
        Ok(total)
    }

    /// The unbiased (n - 1) variance, as `torch.Tensor.var()`; `None` for fewer than 2 values.
    pub fn variance_unbiased(&self) -> Option<f64> {
        (self.count >= 2).then(|| self.m2 / (self.count - 1) as f64)
    }

    /// The unbiased standard deviation, as `torch.Tensor.std()`; `None` for fewer than 2
    /// values (where PyTorch returns NaN).
    pub fn std_unbiased(&self) -> Option<f64> {
        self.variance_unbiased().map(libm::sqrt)
    }

    /// OGM-GE's noise scale `std + 1e-8`; a tensor of fewer than 2 values, whose unbiased
    /// standard deviation is undefined, gets `0 + 1e-8` (the project rule, never NaN).
    pub fn noise_sigma(&self) -> f64 {
        self.std_unbiased().unwrap_or(0.0) + SIGMA_EPS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_exact_case() {
        let s = GradStats::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(s.mean, 2.5);
        assert_eq!(s.variance_unbiased(), Some(5.0 / 3.0));
        assert_eq!(GradStats::of(&[7.0]).unwrap().std_unbiased(), None);
        assert_eq!(GradStats::of(&[7.0]).unwrap().noise_sigma(), SIGMA_EPS);
    }

    #[test]
    fn errors_name_the_index() {
        assert_eq!(
            GradStats::of(&[]),
            Err(OgmError::Empty { what: "gradient" })
        );
        let mut v = [0.5f32; 3000];
        v[2500] = f32::INFINITY;
        assert_eq!(
            GradStats::of(&v),
            Err(OgmError::NonFinite {
                what: "gradient",
                index: 2500
            })
        );
    }

    #[test]
    fn large_offset_is_accurate() {
        // 10^6 values 1e4 + (i mod 2) * 1e-3 (exact in f32 only approximately: compute the
        // reference in f64 from the actual f32 values).
        let n = 1_000_000usize;
        let vals: std::vec::Vec<f32> = (0..n)
            .map(|i| 1.0e4f32 + if i % 2 == 0 { 0.0 } else { 1.0e-3 })
            .collect();
        let mean: f64 = vals.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let m2: f64 = vals.iter().map(|&v| (v as f64 - mean).powi(2)).sum();
        let s = GradStats::of(&vals).unwrap();
        assert!((s.mean - mean).abs() <= 1e-12 * mean);
        assert!((s.m2 - m2).abs() <= 1e-9 * m2);
    }
}
