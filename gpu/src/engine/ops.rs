//! Launch geometry and argument lists of the engine kernels: one function per operation,
//! taking sizes as `usize` and converting them (checked) to the kernels' `unsigned int`.
//!
//! # Safety
//!
//! Every function here is `unsafe` for the reason [`Device::launch`] is: the caller
//! guarantees that each pointer addresses live device memory of the length the sizes imply.
//! The host crate's GPU backend checks those lengths.

use super::kernels as k;
use super::{Arg, DevPtr, Device, Grid};
use crate::error::{GpuError, Result};

/// Threads per block of the grid-stride kernels (`ENG_BLOCK` in `kernels/engine.cuh`).
pub const ENG_BLOCK: u32 = 256;
/// Threads per block of the per-channel reductions (`ENG_REDUCE_BLOCK`).
pub const ENG_REDUCE_BLOCK: u32 = 256;
/// GEMM tile rows (`GEMM_BM`).
pub const GEMM_BM: u32 = 64;
/// GEMM tile columns (`GEMM_BN`).
pub const GEMM_BN: u32 = 64;
/// GEMM shared-dimension stage (`GEMM_BK`).
pub const GEMM_BK: u32 = 16;
/// GEMM threads per block (`GEMM_THREADS`).
pub const GEMM_THREADS: u32 = 256;
/// Large-tile GEMM rows (`BIG_BM`).
pub const BIG_BM: u32 = 128;
/// Large-tile GEMM columns (`BIG_BN`).
pub const BIG_BN: u32 = 128;

/// The GEMM kernel for an `m x n` output and its tile: the large tile when both dimensions
/// fill one, the 64 x 64 tile otherwise.
fn gemm_kernel(m: usize, n: usize) -> (&'static super::KernelSpec, usize, usize) {
    if m >= BIG_BM as usize && n >= BIG_BN as usize {
        (&k::GEMM_BIG, BIG_BM as usize, BIG_BN as usize)
    } else {
        (&k::GEMM, GEMM_BM as usize, GEMM_BN as usize)
    }
}

/// Converts a size to a kernel's `unsigned int`.
pub fn u32_of(what: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| GpuError::TooLarge {
        what,
        value: v as u64,
        limit: u64::from(u32::MAX),
    })
}

/// The address of element `offset` of an `f32` (or `u32`) buffer at `base`.
pub fn at(base: DevPtr, offset: usize) -> DevPtr {
    base + 4 * offset as u64
}

/// Blocks for a grid-stride loop over `n` elements: enough to fill the device a few times
/// over, never more than the elements need.
fn stride_blocks<D: Device + ?Sized>(dev: &D, n: u64) -> u32 {
    let wanted = n.div_ceil(u64::from(ENG_BLOCK)).max(1);
    wanted.min(u64::from(dev.multiprocessors()) * 16) as u32
}

unsafe fn stride_launch<D: Device + ?Sized>(
    dev: &D,
    spec: &super::KernelSpec,
    n: u64,
    args: &[Arg],
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    dev.launch(spec, Grid::linear(stride_blocks(dev, n), ENG_BLOCK), args)
}

/// A matrix operand: element `(i, j)` at `ptr + 4 (i rs + j cs)`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef {
    /// First element.
    pub ptr: DevPtr,
    /// Row stride (elements).
    pub rs: usize,
    /// Column stride (elements).
    pub cs: usize,
}

impl MatRef {
    /// Row-major with leading dimension `ld`.
    pub fn rm(ptr: DevPtr, ld: usize) -> MatRef {
        MatRef { ptr, rs: ld, cs: 1 }
    }
    /// The transpose of a row-major matrix with leading dimension `ld`.
    pub fn tr(ptr: DevPtr, ld: usize) -> MatRef {
        MatRef { ptr, rs: 1, cs: ld }
    }
}

/// Split-K plan for an `m x n x kk` product: how many slices and how long each is. Splits
/// only when the output tiles alone leave most of the device idle and the shared dimension is
/// long; the slices are summed afterwards in a fixed order.
pub fn split_plan(multiprocessors: u32, m: usize, n: usize, kk: usize) -> (usize, usize) {
    let (_, bm, bn) = gemm_kernel(m, n);
    let tiles = m.div_ceil(bm) * n.div_ceil(bn);
    let target = 2 * multiprocessors as usize;
    if tiles >= target || kk < 4096 {
        return (1, kk);
    }
    let splits = (target / tiles).clamp(1, 64).min(kk / 1024).max(1);
    let len = kk.div_ceil(splits).div_ceil(GEMM_BK as usize) * GEMM_BK as usize;
    (kk.div_ceil(len), len)
}

/// Scratch elements [`gemm`] needs for a split-K product of this shape (0: none).
pub fn gemm_scratch_len(multiprocessors: u32, m: usize, n: usize, kk: usize) -> usize {
    let (splits, _) = split_plan(multiprocessors, m, n, kk);
    if splits > 1 {
        splits * m * n
    } else {
        0
    }
}

/// `C = alpha A B + beta C` with `A` `m x kk`, `B` `kk x n`, `C` row-major (`ldc`). `scratch`
/// must hold [`gemm_scratch_len`] elements when that is non-zero.
///
/// # Safety
/// See the module documentation.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm<D: Device + ?Sized>(
    dev: &D,
    m: usize,
    n: usize,
    kk: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: DevPtr,
    ldc: usize,
    scratch: DevPtr,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let (splits, len) = split_plan(dev.multiprocessors(), m, n, kk);
    let (spec, bm, bn) = gemm_kernel(m, n);
    let grid = |z: usize| -> Result<Grid> {
        Ok(Grid {
            blocks: [
                u32_of("gemm column tiles", n.div_ceil(bn))?,
                u32_of("gemm row tiles", m.div_ceil(bm))?,
                u32_of("gemm splits", z)?,
            ],
            threads: GEMM_THREADS,
        })
    };
    // Grid y and z are limited to 65535 blocks.
    if m.div_ceil(bm) > 65535 || splits > 65535 {
        return Err(GpuError::TooLarge {
            what: "gemm row tiles",
            value: m.div_ceil(bm) as u64,
            limit: 65535,
        });
    }
    let common = |alpha: f32, beta: f32, c: DevPtr, ldc: usize, k_split: usize, stride: u64| {
        Ok::<_, GpuError>([
            Arg::U32(u32_of("gemm m", m)?),
            Arg::U32(u32_of("gemm n", n)?),
            Arg::U32(u32_of("gemm k", kk)?),
            Arg::F32(alpha),
            Arg::Ptr(a.ptr),
            Arg::U32(u32_of("gemm A row stride", a.rs)?),
            Arg::U32(u32_of("gemm A column stride", a.cs)?),
            Arg::Ptr(b.ptr),
            Arg::U32(u32_of("gemm B row stride", b.rs)?),
            Arg::U32(u32_of("gemm B column stride", b.cs)?),
            Arg::F32(beta),
            Arg::Ptr(c),
            Arg::U32(u32_of("gemm ldc", ldc)?),
            Arg::U32(u32_of("gemm k split", k_split)?),
            Arg::U64(stride),
        ])
    };
    if splits == 1 {
        return dev.launch(spec, grid(1)?, &common(alpha, beta, c, ldc, kk.max(1), 0)?);
    }
    let stride = (m * n) as u64;
    dev.launch(
        spec,
        grid(splits)?,
        &common(1.0, 0.0, scratch, n, len, stride)?,
    )?;
    stride_launch(
        dev,
        &k::SUM_SLICES,
        stride,
        &[
            Arg::Ptr(scratch),
            Arg::U32(u32_of("gemm splits", splits)?),
            Arg::U64(stride),
            Arg::U32(u32_of("gemm m", m)?),
            Arg::U32(u32_of("gemm n", n)?),
            Arg::F32(alpha),
            Arg::F32(beta),
            Arg::Ptr(c),
            Arg::U32(u32_of("gemm ldc", ldc)?),
        ],
    )
}

/// A convolution's shape (the host engine's `ConvGeom`, in the kernels' terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding.
    pub pad: usize,
    /// Samples.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
}

impl Conv {
    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// `cin * k * k`.
    pub fn kdim(&self) -> usize {
        self.cin * self.k * self.k
    }
    /// `n * oh * ow`.
    pub fn cols(&self) -> usize {
        self.n * self.oh() * self.ow()
    }
    /// Whether the lowered matrix is the input itself (1x1, stride 1, no padding: CNHW is
    /// already `cin x (n h w)`), so no lowering is needed.
    pub fn is_identity_lowering(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    /// Elements of the lowered matrix (0 when the lowering is the identity).
    pub fn col_len(&self) -> usize {
        if self.is_identity_lowering() {
            0
        } else {
            self.kdim() * self.cols()
        }
    }
    fn args(&self, a: DevPtr, b: DevPtr) -> Result<[Arg; 11]> {
        Ok([
            Arg::Ptr(a),
            Arg::Ptr(b),
            Arg::U32(u32_of("conv cin", self.cin)?),
            Arg::U32(u32_of("conv n", self.n)?),
            Arg::U32(u32_of("conv h", self.h)?),
            Arg::U32(u32_of("conv w", self.w)?),
            Arg::U32(u32_of("conv k", self.k)?),
            Arg::U32(u32_of("conv stride", self.stride)?),
            Arg::U32(u32_of("conv pad", self.pad)?),
            Arg::U32(u32_of("conv oh", self.oh())?),
            Arg::U32(u32_of("conv ow", self.ow())?),
        ])
    }
}

/// Lowers `x` into `col` ([`Conv::col_len`] elements).
///
/// # Safety
/// See the module documentation.
pub unsafe fn im2col<D: Device + ?Sized>(dev: &D, g: &Conv, x: DevPtr, col: DevPtr) -> Result<()> {
    stride_launch(
        dev,
        &k::IM2COL,
        (g.kdim() * g.cols()) as u64,
        &g.args(x, col)?,
    )
}

/// `dx` (overwritten) from the lowered gradient `col`.
///
/// # Safety
/// See the module documentation.
pub unsafe fn col2im<D: Device + ?Sized>(dev: &D, g: &Conv, col: DevPtr, dx: DevPtr) -> Result<()> {
    stride_launch(
        dev,
        &k::COL2IM,
        (g.cin * g.n * g.h * g.w) as u64,
        &g.args(col, dx)?,
    )
}

/// `buf[..n] = value`.
///
/// # Safety
/// See the module documentation.
pub unsafe fn fill<D: Device + ?Sized>(dev: &D, buf: DevPtr, n: usize, value: f32) -> Result<()> {
    stride_launch(
        dev,
        &k::FILL,
        n as u64,
        &[Arg::Ptr(buf), Arg::U64(n as u64), Arg::F32(value)],
    )
}

/// A two-pointer element-wise kernel over `n` values (`ADD_RELU`, `RELU_BACKWARD`,
/// `ADD_ASSIGN`).
///
/// # Safety
/// See the module documentation.
pub unsafe fn binary<D: Device + ?Sized>(
    dev: &D,
    spec: &super::KernelSpec,
    a: DevPtr,
    b: DevPtr,
    n: usize,
) -> Result<()> {
    stride_launch(
        dev,
        spec,
        n as u64,
        &[Arg::Ptr(a), Arg::Ptr(b), Arg::U64(n as u64)],
    )
}

/// A grid-stride kernel over `n` elements with the given arguments.
///
/// # Safety
/// See the module documentation.
pub unsafe fn elementwise<D: Device + ?Sized>(
    dev: &D,
    spec: &super::KernelSpec,
    n: usize,
    args: &[Arg],
) -> Result<()> {
    stride_launch(dev, spec, n as u64, args)
}

/// A kernel with one block of [`ENG_REDUCE_BLOCK`] threads per item (`BN_TRAIN`,
/// `BN_BACKWARD`, `AVGPOOL_FORWARD`).
///
/// # Safety
/// See the module documentation.
pub unsafe fn per_block<D: Device + ?Sized>(
    dev: &D,
    spec: &super::KernelSpec,
    blocks: usize,
    args: &[Arg],
) -> Result<()> {
    if blocks == 0 {
        return Ok(());
    }
    let b = u32_of("blocks", blocks)?;
    dev.launch(spec, Grid::linear(b, ENG_REDUCE_BLOCK), args)
}

/// Softmax cross-entropy over `rows x classes` logits: per-row losses (f64) and, when
/// `dlogits` is non-zero, the gradient; then the mean into `*out` (an f64 slot).
///
/// # Safety
/// See the module documentation; `losses` holds `rows` f64, `status` one u32.
#[allow(clippy::too_many_arguments)]
pub unsafe fn softmax_xent<D: Device + ?Sized>(
    dev: &D,
    logits: DevPtr,
    labels: DevPtr,
    rows: usize,
    classes: usize,
    dlogits: DevPtr,
    losses: DevPtr,
    status: DevPtr,
    out: DevPtr,
) -> Result<()> {
    let r = u32_of("loss rows", rows)?;
    dev.launch(
        &k::SOFTMAX_XENT,
        Grid::linear(r.div_ceil(8).max(1), 256),
        &[
            Arg::Ptr(logits),
            Arg::Ptr(labels),
            Arg::U32(r),
            Arg::U32(u32_of("classes", classes)?),
            Arg::Ptr(dlogits),
            Arg::Ptr(losses),
            Arg::Ptr(status),
        ],
    )?;
    dev.launch(
        &k::SUM_LOSSES,
        Grid::linear(1, 1),
        &[Arg::Ptr(losses), Arg::U32(r), Arg::Ptr(out)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of `#define NAME <integer>` in kernels/engine.cuh.
    fn define(name: &str) -> u32 {
        let src = include_str!("../../kernels/engine.cuh");
        src.lines()
            .find_map(|l| {
                let rest = l.strip_prefix("#define ")?.strip_prefix(name)?;
                rest.strip_prefix(' ')?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no #define {name} in engine.cuh"))
    }

    #[test]
    fn geometry_matches_the_kernels() {
        assert_eq!(define("ENG_BLOCK"), ENG_BLOCK);
        assert_eq!(define("ENG_REDUCE_BLOCK"), ENG_REDUCE_BLOCK);
        assert_eq!(define("GEMM_BM"), GEMM_BM);
        assert_eq!(define("GEMM_BN"), GEMM_BN);
        assert_eq!(define("GEMM_BK"), GEMM_BK);
        assert_eq!(define("GEMM_THREADS"), GEMM_THREADS);
        assert_eq!(define("BIG_BM"), BIG_BM);
        assert_eq!(define("BIG_BN"), BIG_BN);
        assert_eq!(
            GEMM_BK % define("BIG_BK"),
            0,
            "split-K slices must be whole stages of both kernels"
        );
    }

    #[test]
    fn split_plan_covers_the_shared_dimension() {
        for &(m, n, kk) in &[
            (64, 147, 802_816),
            (512, 4608, 1568),
            (64, 576, 200_704),
            (3, 5, 10_000),
            (1, 1, 1),
        ] {
            let (splits, len) = split_plan(132, m, n, kk);
            assert!(splits >= 1 && len % GEMM_BK as usize == 0 || splits == 1);
            assert!(splits * len >= kk, "{m}x{n}x{kk}: {splits} x {len}");
            assert!(
                (splits - 1) * len < kk.max(1),
                "{m}x{n}x{kk}: an empty slice"
            );
        }
        // Big outputs are never split.
        assert_eq!(split_plan(132, 512, 100_000, 4608).0, 1);
    }
}
