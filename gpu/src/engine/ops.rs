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

/// Tensor-core (TF32 and BF16) GEMM tile rows (`TC_BM`).
pub const TC_BM: u32 = 128;
/// Tensor-core GEMM tile columns (`TC_BN`).
pub const TC_BN: u32 = 128;
/// Tensor-core GEMM shared-dimension stage (`TC_BK`).
pub const TC_BK: u32 = 16;
/// Tensor-core GEMM threads per block (`TC_THREADS`).
pub const TC_THREADS: u32 = 256;

/// The smallest `m`, `n` and `k` a product must all reach for [`Precision::Tf32`] or
/// [`Precision::Bf16`] to run it on the tensor cores. Below it the product is a sliver (a
/// classifier head's handful of classes, a batch of a few rows): the 128 x 128 tensor-core
/// tile would be mostly padding, the work is bound by memory and launch latency rather than by
/// multiply-adds, and the FP32 kernels (the reference) are as fast. One threshold for both
/// formats since they share the tile; a guess from the tile shapes, not yet measured on a
/// device.
pub const TENSOR_CORE_MIN_DIM: usize = 32;

/// The arithmetic of the engine's matrix products (convolutions and linear layers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// FP32 SIMT kernels: every multiply-add an IEEE f32 `fmaf`. The reference, and the
    /// default.
    #[default]
    Fp32,
    /// TF32 tensor cores (`mma.sync` m16n8k8) where every dimension of the product is at least
    /// [`TENSOR_CORE_MIN_DIM`], FP32 elsewhere: operands rounded to TF32 (10 explicit mantissa
    /// bits, ties away from zero, a relative error of at most 2^-11 each), products
    /// accumulated in f32.
    Tf32,
    /// BF16 tensor cores (`mma.sync` m16n8k16) where every dimension of the product is at least
    /// [`TENSOR_CORE_MIN_DIM`], FP32 elsewhere: operands rounded to BF16 ([`round_bf16`]: 7
    /// explicit mantissa bits, ties to even, a relative error of at most 2^-8 each), products
    /// (exact in f32) accumulated in f32. Inputs and outputs stay f32 in memory.
    Bf16,
}

impl Precision {
    /// The name on the command line and in reports: `fp32`, `tf32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The precision named `s` (`fp32`, `tf32` or `bf16`, any case).
    pub fn parse(s: &str) -> Option<Precision> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" => Some(Precision::Fp32),
            "tf32" => Some(Precision::Tf32),
            "bf16" => Some(Precision::Bf16),
            _ => None,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether [`gemm`] runs an `m x n x kk` product at `precision` on the tensor cores.
pub fn gemm_uses_tensor_cores(precision: Precision, m: usize, n: usize, kk: usize) -> bool {
    precision != Precision::Fp32 && m.min(n).min(kk) >= TENSOR_CORE_MIN_DIM
}

/// The TF32 value nearest to `x`, ties away from zero (`cvt.rna.tf32.f32`, which rounds the
/// tensor-core GEMM's operands): `x` with its 23-bit mantissa rounded to 10 bits, as an `f32`.
/// Infinities and NaNs are returned unchanged; a value past the largest finite TF32 becomes an
/// infinity.
pub fn round_tf32(x: f32) -> f32 {
    let u = x.to_bits();
    if u & 0x7f80_0000 == 0x7f80_0000 {
        return x;
    }
    // Half a TF32 unit added to the magnitude, then truncated: nearest, ties away from zero.
    f32::from_bits(u.wrapping_add(0x1000) & 0xffff_e000)
}

/// The BF16 value nearest to `x`, ties to even (`cvt.rn.bf16.f32`, which rounds the BF16
/// tensor-core GEMM's operands): `x` with its 23-bit mantissa rounded to 7 bits, as an `f32`
/// (whose low 16 bits are zero). Infinities and NaNs are returned unchanged; a value past the
/// largest finite BF16 (by half a unit or more) becomes an infinity.
pub fn round_bf16(x: f32) -> f32 {
    let u = x.to_bits();
    if u & 0x7f80_0000 == 0x7f80_0000 {
        return x;
    }
    // Just under half a BF16 unit, plus the last kept bit, added to the magnitude, then
    // truncated: below half rounds down, above half up, and a tie up only from an odd last bit
    // (to even). A carry into the exponent is the right result.
    f32::from_bits(u.wrapping_add(0x7fff + ((u >> 16) & 1)) & 0xffff_0000)
}

/// The GEMM kernel for an `m x n x kk` product at `precision`, and its tile: the tensor-core
/// kernel where [`gemm_uses_tensor_cores`], else the large FP32 tile when both output
/// dimensions fill one, the 64 x 64 tile otherwise.
fn gemm_kernel(
    precision: Precision,
    m: usize,
    n: usize,
    kk: usize,
) -> (&'static super::KernelSpec, usize, usize) {
    if gemm_uses_tensor_cores(precision, m, n, kk) {
        let spec = match precision {
            Precision::Bf16 => &k::GEMM_BF16,
            _ => &k::GEMM_TF32,
        };
        (spec, TC_BM as usize, TC_BN as usize)
    } else if m >= BIG_BM as usize && n >= BIG_BN as usize {
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

/// Split-K plan for an FP32 `m x n x kk` product: how many slices and how long each is.
/// Splits only when the output tiles alone leave most of the device idle and the shared
/// dimension is long; the slices are summed afterwards in a fixed order.
pub fn split_plan(multiprocessors: u32, m: usize, n: usize, kk: usize) -> (usize, usize) {
    split_plan_at(Precision::Fp32, multiprocessors, m, n, kk)
}

/// [`split_plan`] for a product at `precision` (the tensor-core kernel's tiles are larger).
pub fn split_plan_at(
    precision: Precision,
    multiprocessors: u32,
    m: usize,
    n: usize,
    kk: usize,
) -> (usize, usize) {
    let (_, bm, bn) = gemm_kernel(precision, m, n, kk);
    let tiles = m.div_ceil(bm) * n.div_ceil(bn);
    let target = 2 * multiprocessors as usize;
    if tiles >= target || kk < 4096 {
        return (1, kk);
    }
    let splits = (target / tiles).clamp(1, 64).min(kk / 1024).max(1);
    let len = kk.div_ceil(splits).div_ceil(GEMM_BK as usize) * GEMM_BK as usize;
    (kk.div_ceil(len), len)
}

/// Scratch elements [`gemm`] needs for a split-K product of this shape at `precision` (0:
/// none).
pub fn gemm_scratch_len(
    precision: Precision,
    multiprocessors: u32,
    m: usize,
    n: usize,
    kk: usize,
) -> usize {
    let (splits, _) = split_plan_at(precision, multiprocessors, m, n, kk);
    if splits > 1 {
        splits * m * n
    } else {
        0
    }
}

/// `C = alpha A B + beta C` with `A` `m x kk`, `B` `kk x n`, `C` row-major (`ldc`), at
/// `precision` (the tensor cores only where [`gemm_uses_tensor_cores`]). `scratch` must hold
/// [`gemm_scratch_len`] elements (for the same precision) when that is non-zero.
///
/// # Safety
/// See the module documentation.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm<D: Device + ?Sized>(
    dev: &D,
    precision: Precision,
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
    let (spec, _, _) = gemm_kernel(precision, m, n, kk);
    let b_args = strided_b_args(b)?;
    gemm_launch(
        dev, precision, spec, m, n, kk, alpha, a, &b_args, beta, c, ldc, scratch, 0,
    )
}

/// A strided B operand as the `GEMM*` kernels take it: pointer, row stride, column stride.
fn strided_b_args(b: MatRef) -> Result<[Arg; 3]> {
    Ok([
        Arg::Ptr(b.ptr),
        Arg::U32(u32_of("gemm B row stride", b.rs)?),
        Arg::U32(u32_of("gemm B column stride", b.cs)?),
    ])
}

/// Where a GEMM's row moments go ([`gemm_with_moments`], [`conv_forward_implicit`]): the
/// column tile width of the kernel an `m x n x kk` product at `precision` runs on, when that
/// product runs without split-K (a block's tile is then final); `None` when it splits. The
/// moments take `3 m n.div_ceil(tile)` f64 values.
pub fn moments_tile(
    precision: Precision,
    multiprocessors: u32,
    m: usize,
    n: usize,
    kk: usize,
) -> Option<usize> {
    let (splits, _) = split_plan_at(precision, multiprocessors, m, n, kk);
    (splits == 1).then(|| gemm_kernel(precision, m, n, kk).2)
}

/// [`gemm`] (no split-K: [`moments_tile`] must be `Some`) that also writes each row's moments
/// into `moments`, per column tile: the tile's first value `k`, `sum (c - k)` and
/// `sum (c - k)^2` in f64 (three values per row and tile, row-major), for a batch norm over
/// the rows ([`bn_train_from_moments`]).
///
/// # Safety
/// See the module documentation; `moments` holds `3 m n.div_ceil(tile)` f64 values.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_with_moments<D: Device + ?Sized>(
    dev: &D,
    precision: Precision,
    m: usize,
    n: usize,
    kk: usize,
    a: MatRef,
    b: MatRef,
    c: DevPtr,
    moments: DevPtr,
) -> Result<()> {
    let (spec, _, _) = gemm_kernel(precision, m, n, kk);
    let b_args = strided_b_args(b)?;
    gemm_launch(
        dev, precision, spec, m, n, kk, 1.0, a, &b_args, 0.0, c, n, 0, moments,
    )
}

/// Launches GEMM kernel `spec` (one of the `gemm_kernel` family at `precision`, or an
/// implicit-convolution twin with the same tile) for an `m x n x kk` product whose B operand
/// is described by `b_args` (the kernel's parameters between `csa` and `beta`), with the
/// split-K plan of `precision` and the slices summed by `SUM_SLICES`. `moments` (0: none) is
/// passed to kernels that take it (the row moments: an error when the product splits).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_launch<D: Device + ?Sized>(
    dev: &D,
    precision: Precision,
    spec: &super::KernelSpec,
    m: usize,
    n: usize,
    kk: usize,
    alpha: f32,
    a: MatRef,
    b_args: &[Arg],
    beta: f32,
    c: DevPtr,
    ldc: usize,
    scratch: DevPtr,
    moments: DevPtr,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let (splits, len) = split_plan_at(precision, dev.multiprocessors(), m, n, kk);
    let takes_moments = spec.params.last().is_some_and(|p| p.0 == "moments");
    if moments != 0 && (splits > 1 || !takes_moments) {
        return Err(GpuError::InvalidParameter {
            what: "gemm row moments",
            value: splits as f64,
            reason: "only from a kernel that takes them, on a product without split-K",
        });
    }
    let (_, bm, bn) = gemm_kernel(precision, m, n, kk);
    // Both kernel families run GEMM_THREADS-thread blocks (TC_THREADS is the same).
    const _: () = assert!(TC_THREADS == GEMM_THREADS);
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
        let mut args = vec![
            Arg::U32(u32_of("gemm m", m)?),
            Arg::U32(u32_of("gemm n", n)?),
            Arg::U32(u32_of("gemm k", kk)?),
            Arg::F32(alpha),
            Arg::Ptr(a.ptr),
            Arg::U32(u32_of("gemm A row stride", a.rs)?),
            Arg::U32(u32_of("gemm A column stride", a.cs)?),
        ];
        args.extend_from_slice(b_args);
        args.extend_from_slice(&[
            Arg::F32(beta),
            Arg::Ptr(c),
            Arg::U32(u32_of("gemm ldc", ldc)?),
            Arg::U32(u32_of("gemm k split", k_split)?),
            Arg::U64(stride),
        ]);
        if takes_moments {
            args.push(Arg::Ptr(moments));
        }
        Ok::<_, GpuError>(args)
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

/// How a convolution's products meet its lowered input (`cin k k x n oh ow`, [`im2col`]'s
/// layout). A 1x1 stride-1 convolution, whose lowered matrix is its input, uses the input
/// directly either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ConvAlgo {
    /// Materialise the lowered matrix with [`im2col`] (`kdim x cols` floats: 462 MB for a
    /// layer-1 3x3 convolution of the paper model) and run the GEMM over it. The default until
    /// a device has measured the other.
    #[default]
    Im2col,
    /// Implicit GEMM ([`conv_forward_implicit`], [`conv_wgrad_implicit`]): the GEMM gathers
    /// its B operand from the input, so the column buffer is neither written nor read. The
    /// same tiles, roundings and arithmetic, hence bit for bit the [`ConvAlgo::Im2col`]
    /// forward output and weight gradient, in FP32 and on the TF32 and BF16 tensor cores
    /// alike. The data gradient of a stride-1 convolution gathers `dy` the same way
    /// ([`conv_dgrad_implicit`]: neither the column gradient nor [`col2im`]), equal to the
    /// lowered path's within FP32 rounding (another summation order); a strided
    /// convolution's data gradient takes the lowered path.
    Implicit,
}

impl ConvAlgo {
    /// The name on the command line and in reports: `im2col` or `implicit`.
    pub fn name(self) -> &'static str {
        match self {
            ConvAlgo::Im2col => "im2col",
            ConvAlgo::Implicit => "implicit",
        }
    }

    /// The algorithm named `s` (`im2col` or `implicit`, any case).
    pub fn parse(s: &str) -> Option<ConvAlgo> {
        match s.to_ascii_lowercase().as_str() {
            "im2col" => Some(ConvAlgo::Im2col),
            "implicit" => Some(ConvAlgo::Implicit),
            _ => None,
        }
    }
}

impl std::fmt::Display for ConvAlgo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The bound (exclusive) on a convolution's input length, lowered rows and lowered columns
/// for the implicit-GEMM kernels ([`Conv::fits_implicit`]): 2^31.
pub const IMPLICIT_LIMIT: usize = 1 << 31;

/// Which product of a convolution an implicit-GEMM kernel computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConvPass {
    /// `y = W col` (B gathered from the input).
    Forward,
    /// `dW = dy col^T` (B gathered from the input).
    WeightGrad,
    /// `dx = W^T dy`, stride 1 (B gathered from the output gradient).
    DataGrad,
}

/// The implicit-convolution twin of the kernel [`gemm`] would choose at `precision` for an
/// `m x n x kk` product (the same tile, hence the same split-K plan) in `pass`.
fn conv_gemm_kernel(
    precision: Precision,
    pass: ConvPass,
    m: usize,
    n: usize,
    kk: usize,
) -> &'static super::KernelSpec {
    use ConvPass::{DataGrad, Forward, WeightGrad};
    let [fwd, wgrad, dgrad] = match gemm_kernel(precision, m, n, kk).0.name {
        n if n == k::GEMM_TF32.name => [
            &k::GEMM_TF32_CONV_FWD,
            &k::GEMM_TF32_CONV_WGRAD,
            &k::GEMM_TF32_CONV_DGRAD,
        ],
        n if n == k::GEMM_BF16.name => [
            &k::GEMM_BF16_CONV_FWD,
            &k::GEMM_BF16_CONV_WGRAD,
            &k::GEMM_BF16_CONV_DGRAD,
        ],
        n if n == k::GEMM_BIG.name => [
            &k::GEMM_BIG_CONV_FWD,
            &k::GEMM_BIG_CONV_WGRAD,
            &k::GEMM_BIG_CONV_DGRAD,
        ],
        _ => [&k::GEMM_CONV_FWD, &k::GEMM_CONV_WGRAD, &k::GEMM_CONV_DGRAD],
    };
    match pass {
        Forward => fwd,
        WeightGrad => wgrad,
        DataGrad => dgrad,
    }
}

/// `y[cout][n oh ow] = w[cout][cin k k] col`, `col` the lowering of `x` gathered on the fly
/// (implicit GEMM at `precision`): the bits of [`im2col`] then a [`gemm`] of the same product
/// at that precision. An error unless [`Conv::fits_implicit`]. `w` is row-major; `scratch`
/// must hold `gemm_scratch_len(precision, .., cout, cols, kdim)` elements when that is
/// non-zero. `moments` (0: none) receives the output channels' row moments as
/// [`gemm_with_moments`] (the product must not split: [`moments_tile`]).
///
/// # Safety
/// See the module documentation; `moments`, when not 0, holds `3 cout cols.div_ceil(tile)`
/// f64 values.
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv_forward_implicit<D: Device + ?Sized>(
    dev: &D,
    precision: Precision,
    g: &Conv,
    w: DevPtr,
    x: DevPtr,
    y: DevPtr,
    scratch: DevPtr,
    moments: DevPtr,
) -> Result<()> {
    g.check_implicit()?;
    let (m, n, kk) = (g.cout, g.cols(), g.kdim());
    gemm_launch(
        dev,
        precision,
        conv_gemm_kernel(precision, ConvPass::Forward, m, n, kk),
        m,
        n,
        kk,
        1.0,
        MatRef::rm(w, kk),
        &g.gather_args(x)?,
        0.0,
        y,
        n,
        scratch,
        moments,
    )
}

/// `dw[cout][cin k k] = dy[cout][n oh ow] col^T`, `col` the lowering of `x` gathered on the
/// fly (implicit GEMM at `precision`, split-K as [`gemm`]): the bits of [`im2col`] then a
/// [`gemm`] of the same product at that precision. An error unless [`Conv::fits_implicit`].
/// `scratch` must hold `gemm_scratch_len(precision, .., cout, kdim, cols)` elements when that
/// is non-zero.
///
/// # Safety
/// See the module documentation.
pub unsafe fn conv_wgrad_implicit<D: Device + ?Sized>(
    dev: &D,
    precision: Precision,
    g: &Conv,
    dy: DevPtr,
    x: DevPtr,
    dw: DevPtr,
    scratch: DevPtr,
) -> Result<()> {
    g.check_implicit()?;
    let (m, n, kk) = (g.cout, g.kdim(), g.cols());
    gemm_launch(
        dev,
        precision,
        conv_gemm_kernel(precision, ConvPass::WeightGrad, m, n, kk),
        m,
        n,
        kk,
        1.0,
        MatRef::rm(dy, kk),
        &g.gather_args(x)?,
        0.0,
        dw,
        n,
        scratch,
        0,
    )
}

/// `dx[cin][n h w] = w^T dy + beta dx` for a stride-1 convolution, `dy` gathered on the fly
/// (implicit GEMM at `precision`; `beta` 0 overwrites `dx`, 1 adds to it with the bits of
/// writing the product and adding the old `dx` after): first `wt = w` with its two outer dimensions swapped
/// (`cin x cout k k`, [`Conv::w_len`] elements), then one GEMM over it. The same value as the
/// column-buffer path (a GEMM into `cin k k x n oh ow`, then [`col2im`]) within FP32 rounding,
/// not the same bits: one sum over `(cout, ky, kx)` where that path rounds each tap's sum
/// first. An error unless [`Conv::fits_implicit_dgrad`]. `scratch` must hold
/// `gemm_scratch_len(precision, .., cin, n h w, cout k k)` elements when that is non-zero.
///
/// # Safety
/// See the module documentation.
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv_dgrad_implicit<D: Device + ?Sized>(
    dev: &D,
    precision: Precision,
    g: &Conv,
    w: DevPtr,
    wt: DevPtr,
    dy: DevPtr,
    dx: DevPtr,
    beta: f32,
    scratch: DevPtr,
) -> Result<()> {
    g.check_implicit_dgrad()?;
    swap_outer(dev, g.cout, g.cin, g.k * g.k, w, wt)?;
    let (m, n, kk) = g.dgrad_dims();
    gemm_launch(
        dev,
        precision,
        conv_gemm_kernel(precision, ConvPass::DataGrad, m, n, kk),
        m,
        n,
        kk,
        1.0,
        MatRef::rm(wt, kk),
        &g.dgrad_args(dy)?,
        beta,
        dx,
        n,
        scratch,
        0,
    )
}

/// The shape of one convolution (square kernel, stride, zero padding, no bias) over a CNHW
/// batch. The host engine uses this type for its CPU and GPU backends alike (re-exported there
/// as `ConvGeom`); it has no CUDA dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height and width.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
    /// Samples in the batch.
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
    /// Rows of the lowered matrix: `cin * k * k`.
    pub fn kdim(&self) -> usize {
        self.cin * self.k * self.k
    }
    /// Input length.
    pub fn in_len(&self) -> usize {
        self.cin * self.n * self.h * self.w
    }
    /// Output length.
    pub fn out_len(&self) -> usize {
        self.cout * self.n * self.oh() * self.ow()
    }
    /// Weight length.
    pub fn w_len(&self) -> usize {
        self.cout * self.kdim()
    }
    /// Whether the geometry is usable (non-zero sizes, kernel fits the padded input).
    pub fn is_valid(&self) -> bool {
        self.cin > 0
            && self.cout > 0
            && self.k > 0
            && self.stride > 0
            && self.n > 0
            && self.h + 2 * self.pad >= self.k
            && self.w + 2 * self.pad >= self.k
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
    /// Whether the implicit-GEMM kernels take this geometry: the input, the lowered matrix's
    /// rows and its columns each below [`IMPLICIT_LIMIT`] (their gather uses 32-bit offsets and
    /// a multiply-shift division exact below 2^31). Every convolution of the paper model is
    /// far below (its largest input is 13 million values).
    pub fn fits_implicit(&self) -> bool {
        self.in_len() < IMPLICIT_LIMIT
            && self.kdim() < IMPLICIT_LIMIT
            && self.cols() < IMPLICIT_LIMIT
    }
    /// Whether [`conv_dgrad_implicit`] takes this geometry: stride 1, and the output gradient,
    /// the product's shared dimension (`cout k k`) and its columns (`n h w`) each below
    /// [`IMPLICIT_LIMIT`]. A strided convolution's data gradient goes through the column
    /// buffer: gathered for it, the matrix would be mostly zeros (3 of 4 at stride 2).
    pub fn fits_implicit_dgrad(&self) -> bool {
        self.check_implicit_dgrad().is_ok()
    }
    /// An error unless [`Conv::fits_implicit`].
    fn check_implicit(&self) -> Result<()> {
        Self::check_limits([
            ("implicit convolution input", self.in_len()),
            ("implicit convolution rows", self.kdim()),
            ("implicit convolution columns", self.cols()),
        ])
    }
    /// An error unless [`Conv::fits_implicit_dgrad`].
    fn check_implicit_dgrad(&self) -> Result<()> {
        if self.stride != 1 {
            return Err(GpuError::InvalidParameter {
                what: "implicit data gradient stride",
                value: self.stride as f64,
                reason: "only stride 1 (a strided convolution's goes through col2im)",
            });
        }
        let (_, cols, shared) = self.dgrad_dims();
        Self::check_limits([
            ("implicit data gradient dy", self.out_len()),
            ("implicit data gradient shared dimension", shared),
            ("implicit data gradient columns", cols),
        ])
    }
    /// The implicit data gradient's GEMM `(m, n, k)`: `(cin, n h w, cout k k)`, `dx` of
    /// `cin x n h w` from the swapped weight (`cin x cout k k`) and the gathered `dy`.
    pub fn dgrad_dims(&self) -> (usize, usize, usize) {
        (
            self.cin,
            self.n * self.h * self.w,
            self.cout * self.k * self.k,
        )
    }
    fn check_limits<const N: usize>(sizes: [(&'static str, usize); N]) -> Result<()> {
        for (what, v) in sizes {
            if v >= IMPLICIT_LIMIT {
                return Err(GpuError::TooLarge {
                    what,
                    value: v as u64,
                    limit: IMPLICIT_LIMIT as u64 - 1,
                });
            }
        }
        Ok(())
    }
    /// The implicit data-gradient kernels' B operand: `dy` and the geometry (their parameters
    /// `dy` .. `w`).
    fn dgrad_args(&self, dy: DevPtr) -> Result<[Arg; 9]> {
        Ok([
            Arg::Ptr(dy),
            Arg::U32(u32_of("conv cout", self.cout)?),
            Arg::U32(u32_of("conv n", self.n)?),
            Arg::U32(u32_of("conv oh", self.oh())?),
            Arg::U32(u32_of("conv ow", self.ow())?),
            Arg::U32(u32_of("conv k", self.k)?),
            Arg::U32(u32_of("conv pad", self.pad)?),
            Arg::U32(u32_of("conv h", self.h)?),
            Arg::U32(u32_of("conv w", self.w)?),
        ])
    }
    /// The implicit-GEMM kernels' B operand: the input and the geometry (their parameters
    /// `x` .. `ow`).
    fn gather_args(&self, x: DevPtr) -> Result<[Arg; 10]> {
        Ok([
            Arg::Ptr(x),
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

/// `dx` from the lowered gradient `col`: overwritten, or with `accumulate` the gradient added
/// to it (the bits of writing it and adding the old `dx` after).
///
/// # Safety
/// See the module documentation.
pub unsafe fn col2im<D: Device + ?Sized>(
    dev: &D,
    g: &Conv,
    col: DevPtr,
    dx: DevPtr,
    accumulate: bool,
) -> Result<()> {
    let args = [&g.args(col, dx)?[..], &[Arg::U32(accumulate.into())]].concat();
    stride_launch(dev, &k::COL2IM, (g.cin * g.n * g.h * g.w) as u64, &args)
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

/// A two-pointer element-wise kernel over `n` values (`RELU_BACKWARD`, `ADD_ASSIGN`).
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

/// `y[j][i][t] = x[i][j][t]` for `x` of `a x b x inner`: its two outer dimensions swapped
/// (`SWAP_OUTER`; the layout change between CNHW and NCHW, and a convolution weight's
/// `cout x cin k k` to `cin x cout k k`).
///
/// # Safety
/// See the module documentation; `x` and `y` hold `a b inner` elements and do not overlap.
pub unsafe fn swap_outer<D: Device + ?Sized>(
    dev: &D,
    a: usize,
    b: usize,
    inner: usize,
    x: DevPtr,
    y: DevPtr,
) -> Result<()> {
    elementwise(
        dev,
        &k::SWAP_OUTER,
        a * b * inner,
        &[
            Arg::Ptr(x),
            Arg::Ptr(y),
            Arg::U32(u32_of("swap a", a)?),
            Arg::U32(u32_of("swap b", b)?),
            Arg::U32(u32_of("swap inner", inner)?),
        ],
    )
}

/// Values of a channel above which batch norm splits it over several blocks: one block per
/// channel would leave most of a GPU idle where channels are few and long (the paper model's
/// first stages: 64 channels of about 200 000 values at batch 64, against 132
/// multiprocessors on an H200), and 8192 values are 32 per thread of a block.
pub const BN_SLICE: usize = 8192;

/// The most slices a batch-norm channel is split into (each block of the main pass adds all
/// its channel's partial sums).
pub const BN_MAX_SLICES: usize = 128;

/// The slices of a batch-norm channel of `len` values: `len / BN_SLICE` rounded up, within
/// `1 ..= BN_MAX_SLICES`. It depends on `len` only, so the sums' order, hence the result, is
/// the same on every GPU.
pub fn bn_slices(len: usize) -> usize {
    len.div_ceil(BN_SLICE).clamp(1, BN_MAX_SLICES)
}

/// The f64 values of partial sums a batch-norm pass over `c` channels of `len` needs
/// (`part` of [`bn_pass`]): two per slice, none when channels are not split.
pub fn bn_part_len(c: usize, len: usize) -> usize {
    match bn_slices(len) {
        1 => 0,
        s => 2 * c * s,
    }
}

/// One batch-norm pass (training forward or backward) over `c` channels of `len` values, on a
/// `c x slices` grid of [`ENG_REDUCE_BLOCK`]-thread blocks ([`bn_slices`]): when the channels
/// are split, first `partial` with `partial_args` then `(part, len, slices)`, each slice's sums
/// into `part` ([`bn_part_len`] f64 values); then `main` with `main_args`, `(part, slices)`
/// and `main_extra` (the main kernel's parameters after those: `BN_TRAIN`'s `tile_w`). `part`
/// is not used (may be null) when the channels are not split.
///
/// # Safety
/// See the module documentation; `part` holds [`bn_part_len`] f64 values.
#[allow(clippy::too_many_arguments)]
pub unsafe fn bn_pass<D: Device + ?Sized>(
    dev: &D,
    partial: &super::KernelSpec,
    main: &super::KernelSpec,
    c: usize,
    len: usize,
    part: DevPtr,
    partial_args: &[Arg],
    main_args: &[Arg],
    main_extra: &[Arg],
) -> Result<()> {
    if c == 0 || len == 0 {
        return Ok(());
    }
    let (grid, slices) = bn_grid(c, len)?;
    let (len32, slices32) = (u32_of("bn len", len)?, slices as u32);
    if slices > 1 {
        let tail = [Arg::Ptr(part), Arg::U32(len32), Arg::U32(slices32)];
        dev.launch(partial, grid, &[partial_args, &tail].concat())?;
    }
    let tail = [Arg::Ptr(part), Arg::U32(slices32)];
    dev.launch(main, grid, &[main_args, &tail, main_extra].concat())
}

/// The training forward `BN_TRAIN` over `c` channels of `len` values whose sums come from the
/// row moments of the GEMM that wrote `x` (`moments`, column tiles of `tile`: [`moments_tile`]):
/// no partial pass, `x` read once. `main_args` as for [`bn_pass`]'s main kernel.
///
/// # Safety
/// See the module documentation; `moments` holds the `3 c len.div_ceil(tile)` values written
/// by that GEMM.
pub unsafe fn bn_train_from_moments<D: Device + ?Sized>(
    dev: &D,
    c: usize,
    len: usize,
    moments: DevPtr,
    tile: usize,
    main_args: &[Arg],
) -> Result<()> {
    if c == 0 || len == 0 {
        return Ok(());
    }
    let (grid, slices) = bn_grid(c, len)?;
    let tail = [
        Arg::Ptr(moments),
        Arg::U32(slices as u32),
        Arg::U32(u32_of("bn moments tile", tile.max(1))?),
    ];
    dev.launch(&k::BN_TRAIN, grid, &[main_args, &tail].concat())
}

/// Batch norm with running statistics (`BN_EVAL`) over `c` channels of `len` values, on the
/// grid of [`bn_pass`]: `args` then the slice count.
///
/// # Safety
/// See the module documentation.
pub unsafe fn bn_eval<D: Device + ?Sized>(
    dev: &D,
    c: usize,
    len: usize,
    args: &[Arg],
) -> Result<()> {
    if c == 0 || len == 0 {
        return Ok(());
    }
    let (grid, slices) = bn_grid(c, len)?;
    dev.launch(
        &k::BN_EVAL,
        grid,
        &[args, &[Arg::U32(slices as u32)]].concat(),
    )
}

/// The batch-norm grid: `c x bn_slices(len)` blocks of [`ENG_REDUCE_BLOCK`] threads, and the
/// slice count.
fn bn_grid(c: usize, len: usize) -> Result<(Grid, usize)> {
    let slices = bn_slices(len);
    let grid = Grid {
        blocks: [u32_of("bn channels", c)?, slices as u32, 1],
        threads: ENG_REDUCE_BLOCK,
    };
    Ok((grid, slices))
}

/// A kernel with one block of [`ENG_REDUCE_BLOCK`] threads per item (`AVGPOOL_FORWARD`).
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

    /// The value of `#define NAME` in kernels/engine.cuh.
    fn define(name: &str) -> u32 {
        let v = crate::kernel_source::define(
            include_str!("../../kernels/engine.cuh"),
            "engine.cuh",
            name,
        );
        u32::try_from(v).unwrap()
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
        assert_eq!(define("TC_BM"), TC_BM);
        assert_eq!(define("TC_BN"), TC_BN);
        assert_eq!(define("TC_BK"), TC_BK);
        assert_eq!(define("TC_THREADS"), TC_THREADS);
        assert_eq!(
            GEMM_BK % define("BIG_BK"),
            0,
            "split-K slices must be whole stages of both kernels"
        );
        assert_eq!(
            GEMM_BK % TC_BK,
            0,
            "split-K slices must be whole stages of the tensor-core kernels"
        );
        assert_eq!(TC_BK % 16, 0, "a stage is whole BF16 m16n8k16 steps");
    }

    #[test]
    fn tf32_rounding_is_nearest_with_ties_away_from_zero() {
        let p = |e: i32| 2f32.powi(e);
        // Below, at and above half a TF32 unit (2^-11 at 1).
        assert_eq!(round_tf32(1.0 + p(-12)), 1.0);
        assert_eq!(
            round_tf32(1.0 + p(-11)),
            1.0 + p(-10),
            "a tie rounds away from zero"
        );
        assert_eq!(round_tf32(-(1.0 + p(-11))), -(1.0 + p(-10)));
        assert_eq!(round_tf32(1.0 + p(-11) + p(-20)), 1.0 + p(-10));
        assert_eq!(round_tf32(1.0 + p(-11) - p(-20)), 1.0);
        // An odd last TF32 bit: ties still go away from zero, not to even.
        assert_eq!(round_tf32(1.0 + p(-10) + p(-11)), 1.0 + p(-9));
        // A carry into the exponent.
        assert_eq!(round_tf32(2.0 - p(-22)), 2.0);
        // TF32 values are fixed points; the low 13 bits always end up zero.
        for x in [
            0.0f32,
            -0.0,
            1.0,
            3.0,
            1.0 + p(-10),
            -7.5,
            p(-126),
            p(-149) * 8192.0,
        ] {
            assert_eq!(round_tf32(x).to_bits(), x.to_bits(), "{x:e}");
        }
        for x in [0.1f32, -3.7, 1e-30, 123_456.79, p(-120) * 1.3] {
            let r = round_tf32(x);
            assert_eq!(r.to_bits() & 0x1fff, 0, "{x:e}");
            assert!((r - x).abs() <= x.abs() * p(-11), "{x:e} -> {r:e}");
        }
        // Subnormals round like any other magnitude: 2^-149 is below half of 2^-136.
        assert_eq!(round_tf32(p(-149)), 0.0);
        assert_eq!(
            round_tf32(p(-137)),
            p(-136),
            "half a unit of the subnormal range"
        );
        // Special values, and overflow past the largest finite TF32.
        assert_eq!(round_tf32(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_tf32(f32::NEG_INFINITY), f32::NEG_INFINITY);
        assert!(round_tf32(f32::NAN).is_nan());
        assert_eq!(round_tf32(f32::MAX), f32::INFINITY);
        assert_eq!(round_tf32(-f32::MAX), f32::NEG_INFINITY);
    }

    #[test]
    fn bf16_rounding_is_nearest_with_ties_to_even() {
        let p = |e: i32| 2f32.powi(e);
        // Half a BF16 unit is 2^-8 at 1. Below, at and above it:
        assert_eq!(round_bf16(1.0 + p(-9)), 1.0);
        assert_eq!(round_bf16(1.0 + p(-8) + p(-20)), 1.0 + p(-7));
        assert_eq!(round_bf16(1.0 + p(-8) - p(-20)), 1.0);
        // Ties go to the even neighbour: down from an even last bit, up from an odd one (ties
        // away from zero, as TF32 rounds, would give 1 + 2^-7 in the first case).
        assert_eq!(round_bf16(1.0 + p(-8)), 1.0, "a tie rounds to even");
        assert_eq!(round_bf16(-(1.0 + p(-8))), -1.0);
        assert_eq!(round_bf16(1.0 + p(-7) + p(-8)), 1.0 + p(-6));
        assert_eq!(round_bf16(-(1.0 + p(-7) + p(-8))), -(1.0 + p(-6)));
        // A carry into the exponent.
        assert_eq!(round_bf16(2.0 - p(-9)), 2.0);
        // BF16 values are fixed points; the low 16 bits always end up zero.
        for x in [0.0f32, -0.0, 1.0, 3.0, 1.0 + p(-7), -7.5, p(-126), p(-133)] {
            assert_eq!(round_bf16(x).to_bits(), x.to_bits(), "{x:e}");
        }
        for x in [0.1f32, -3.7, 1e-30, 123_456.79, p(-120) * 1.3] {
            let r = round_bf16(x);
            assert_eq!(r.to_bits() & 0xffff, 0, "{x:e}");
            assert!((r - x).abs() <= x.abs() * p(-8), "{x:e} -> {r:e}");
        }
        // Subnormals round like any other magnitude (the last BF16 subnormal unit is 2^-133):
        // 2^-149 is below half of it, 2^-134 a tie with an even last bit, 3 2^-134 one with
        // an odd last bit.
        assert_eq!(round_bf16(p(-149)), 0.0);
        assert_eq!(round_bf16(p(-134)), 0.0);
        assert_eq!(round_bf16(3.0 * p(-134)), p(-132));
        // Special values, and overflow past the largest finite BF16 (0x7f7f 0000).
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_bf16(f32::NEG_INFINITY), f32::NEG_INFINITY);
        assert!(round_bf16(f32::NAN).is_nan());
        assert!(
            round_bf16(f32::from_bits(0x7f80_0001)).is_nan(),
            "a low-payload NaN"
        );
        assert_eq!(round_bf16(f32::MAX), f32::INFINITY);
        assert_eq!(round_bf16(-f32::MAX), f32::NEG_INFINITY);
        let top = f32::from_bits(0x7f7f_0000);
        assert_eq!(round_bf16(f32::from_bits(0x7f7f_7fff)), top);
        // Round to nearest-even in the large: every f32 with a fixed high half maps to the
        // nearer of its two BF16 neighbours, and a tie to the one with an even last bit.
        for hi in [0x3f80u32, 0x3f81, 0xbf80, 0xbf81, 0x0001, 0x7f7e] {
            for lo in [0u32, 1, 0x7fff, 0x8000, 0x8001, 0xffff] {
                let x = f32::from_bits(hi << 16 | lo);
                let up = hi + 1;
                let want = if lo > 0x8000 || lo == 0x8000 && hi & 1 == 1 {
                    up
                } else {
                    hi
                };
                assert_eq!(round_bf16(x).to_bits(), want << 16, "{:#010x}", x.to_bits());
            }
        }
    }

    #[test]
    fn tensor_cores_run_only_where_they_pay() {
        use Precision::{Bf16, Fp32, Tf32};
        for tc in [Tf32, Bf16] {
            assert!(gemm_uses_tensor_cores(tc, 32, 32, 32));
            assert!(gemm_uses_tensor_cores(tc, 512, 802_816, 4608));
            for (m, n, kk) in [(31, 512, 512), (512, 6, 512), (512, 512, 16)] {
                assert!(!gemm_uses_tensor_cores(tc, m, n, kk), "{tc} {m}x{n}x{kk}");
            }
            assert_eq!(gemm_kernel(tc, 6, 64, 64).0.name, "eng_gemm");
        }
        assert!(!gemm_uses_tensor_cores(Fp32, 512, 4096, 4608), "FP32 never");
        assert_eq!(gemm_kernel(Tf32, 64, 64, 64).0.name, "eng_gemm_tf32");
        assert_eq!(gemm_kernel(Bf16, 64, 64, 64).0.name, "eng_gemm_bf16");
        assert_eq!(gemm_kernel(Fp32, 256, 256, 64).0.name, "eng_gemm_big");
        assert_eq!(Precision::default(), Fp32);
        for p in [Fp32, Tf32, Bf16] {
            assert_eq!(Precision::parse(p.name()), Some(p));
        }
        assert_eq!(Precision::parse("TF32"), Some(Tf32));
        assert_eq!(Precision::parse("BF16"), Some(Bf16));
        assert_eq!(Precision::parse("fp16"), None);
    }

    /// `FastDiv` of kernels/engine_gemm.cu (the implicit-GEMM gather's division by a
    /// launch-wide divisor), transcribed: `(n, d)` to `n / d`.
    fn fast_div(n: u32, d: u32) -> u32 {
        let l = (0..32).find(|&l| 1u64 << l >= u64::from(d)).unwrap();
        let mul = (1u64 << (31 + l)).div_ceil(u64::from(d));
        assert!(mul < 1 << 32, "{d}");
        ((u64::from(n) * mul) >> (31 + l)) as u32
    }

    #[test]
    fn fast_division_is_exact_below_2_31() {
        // Every divisor a convolution's kernel size or output side can be here, and more; the
        // dividends near the ends of the range, near multiples of d, and spread over it.
        let mut ns: Vec<u32> = (0..4096).collect();
        ns.extend((0..4096).map(|i| (1u32 << 31) - 1 - i));
        let mut x = 0x9e37_79b9u32;
        for _ in 0..4096 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            ns.push(x >> 1);
        }
        for d in (1..=1200).chain([4095, 4096, 4097, 65_535, 1 << 20, (1 << 31) - 1]) {
            for &n in &ns {
                assert_eq!(fast_div(n, d), n / d, "{n} / {d}");
                for m in [n / d * d, (n / d * d).saturating_sub(1)] {
                    assert_eq!(fast_div(m, d), m / d, "{m} / {d}");
                }
            }
        }
    }

    #[test]
    fn implicit_convolutions_take_the_tile_of_the_same_product() {
        use ConvPass::{DataGrad, Forward, WeightGrad};
        let fp32 = Precision::Fp32;
        for (pass, m, n, kk, name) in [
            (Forward, 64, 64, 64, "eng_gemm_conv_fwd"),
            (Forward, 128, 128, 64, "eng_gemm_big_conv_fwd"),
            (WeightGrad, 127, 4096, 64, "eng_gemm_conv_wgrad"),
            (WeightGrad, 128, 576, 200_704, "eng_gemm_big_conv_wgrad"),
            (DataGrad, 64, 64, 64, "eng_gemm_conv_dgrad"),
            (DataGrad, 128, 200_704, 1152, "eng_gemm_big_conv_dgrad"),
        ] {
            assert_eq!(conv_gemm_kernel(fp32, pass, m, n, kk).name, name);
        }
        // The tensor-core twins where gemm would use the tensor cores, FP32 elsewhere.
        for p in [Precision::Tf32, Precision::Bf16] {
            let unit = p.name();
            for (pass, m, n, kk, name) in [
                (Forward, 64, 3136, 576, format!("eng_gemm_{unit}_conv_fwd")),
                (
                    WeightGrad,
                    64,
                    576,
                    200_704,
                    format!("eng_gemm_{unit}_conv_wgrad"),
                ),
                (
                    DataGrad,
                    64,
                    200_704,
                    576,
                    format!("eng_gemm_{unit}_conv_dgrad"),
                ),
                (Forward, 16, 3136, 576, "eng_gemm_conv_fwd".into()),
                (WeightGrad, 128, 576, 31, "eng_gemm_big_conv_wgrad".into()),
                (DataGrad, 3, 200_704, 576, "eng_gemm_conv_dgrad".into()),
            ] {
                assert_eq!(conv_gemm_kernel(p, pass, m, n, kk).name, name);
            }
        }
        let g = Conv {
            cin: 64,
            cout: 64,
            k: 3,
            stride: 1,
            pad: 1,
            n: 64,
            h: 56,
            w: 56,
        };
        assert!(g.fits_implicit() && g.check_implicit().is_ok());
        let huge = Conv { n: 1 << 17, ..g };
        assert!(!huge.fits_implicit() && huge.check_implicit().is_err());
        assert!(g.fits_implicit_dgrad() && !huge.fits_implicit_dgrad());
        // At stride 2 the data gradient goes through the column buffer.
        assert!(!Conv { stride: 2, ..g }.fits_implicit_dgrad());
        // The output gradient counts too: 2^31 values of dy, the input below the limit.
        let wide = Conv {
            cin: 1,
            cout: 1 << 11,
            n: 1 << 10,
            h: 32,
            w: 32,
            ..g
        };
        assert!(wide.fits_implicit() && !wide.fits_implicit_dgrad());
        assert_eq!(ConvAlgo::default(), ConvAlgo::Im2col);
        for a in [ConvAlgo::Im2col, ConvAlgo::Implicit] {
            assert_eq!(ConvAlgo::parse(a.name()), Some(a));
        }
        assert_eq!(ConvAlgo::parse("IMPLICIT"), Some(ConvAlgo::Implicit));
        assert_eq!(ConvAlgo::parse("winograd"), None);
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
        // The tensor-core kernels' slices are whole stages too.
        for p in [Precision::Tf32, Precision::Bf16] {
            let (splits, len) = split_plan_at(p, 132, 64, 576, 200_704);
            assert!(splits > 1 && len % TC_BK as usize == 0 && splits * len >= 200_704);
        }
    }

    #[test]
    fn row_moments_come_from_the_kernel_tile_and_never_from_a_split_product() {
        // The paper model's first 3x3 convolutions at batch 64 (64 x 200 704 x 576): the
        // tensor cores' 128-wide tile; FP32 takes the 64 x 64 tile below 128 rows and the
        // 128 x 128 one from 128 (the second stage).
        for p in [Precision::Tf32, Precision::Bf16] {
            assert_eq!(moments_tile(p, 132, 64, 200_704, 576), Some(128), "{p:?}");
        }
        assert_eq!(
            moments_tile(Precision::Fp32, 132, 64, 200_704, 576),
            Some(64)
        );
        assert_eq!(
            moments_tile(Precision::Fp32, 132, 128, 50_176, 1152),
            Some(128)
        );
        // A long shared dimension for few outputs splits: its tiles are partial sums.
        assert!(split_plan(132, 2, 16, 4608).0 > 1);
        assert_eq!(moments_tile(Precision::Fp32, 132, 2, 16, 4608), None);
    }

    #[test]
    fn batch_norm_splits_only_long_channels_and_every_slice_holds_values() {
        // The kernels' slice s is [s chunk, (s + 1) chunk) clipped to len, chunk = len /
        // slices rounded up: no slice may be empty (its block would add nothing, harmless,
        // but a slice count above what len needs wastes blocks).
        for len in [
            1,
            2,
            8191,
            8192,
            8193,
            12_544,
            50_176,
            200_704,
            1 << 20,
            1 << 30,
        ] {
            let s = bn_slices(len);
            assert!((1..=BN_MAX_SLICES).contains(&s), "{len}: {s}");
            let chunk = len.div_ceil(s);
            assert!((s - 1) * chunk < len, "{len}: slice {} is empty", s - 1);
            assert!(
                s == BN_MAX_SLICES || chunk <= BN_SLICE,
                "{len}: {chunk} per slice"
            );
            assert_eq!(bn_part_len(3, len), if s == 1 { 0 } else { 6 * s });
        }
        assert_eq!(bn_slices(BN_SLICE), 1);
        assert_eq!(bn_slices(BN_SLICE + 1), 2);
        // The paper model's first stage at batch 64: 64 channels become 64 x 25 blocks.
        assert_eq!(bn_slices(64 * 56 * 56), 25);
    }
}
