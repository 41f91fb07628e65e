//! The GPU backend: [`Backend`] over device buffers, with the kernels of `ogm_gpu::engine`.
//!
//! [`GpuBackend`] is generic over the [`Device`]: with the `cuda` feature the trainer runs it
//! on `ogm_gpu::cuda::CudaDevice`; everywhere, the tests run it on the CPU emulator
//! (`ogm_gpu::engine::emu::EmuDevice`, the kernels' own source compiled with g++) and compare
//! it with [`crate::engine::CpuBackend`]. The model code is the same for both.
//!
//! Convolutions are im2col + GEMM (the CPU engine's algorithm, on the whole batch at once);
//! weight gradients use a split-K GEMM whose slices are summed in a fixed order.
//! [`GpuBackend::set_conv_algo`] with [`ConvAlgo::Implicit`] gathers the lowered input inside
//! the FP32 GEMMs of the forward pass and the weight gradient instead of materialising it (the
//! same bits, less memory traffic; not yet measured on a device, hence not the default). FP32
//! throughout by default (the reference precision); [`GpuBackend::set_precision`] with
//! [`Precision::Tf32`] or [`Precision::Bf16`] runs the large matrix products on TF32 or BF16
//! tensor cores instead (operands rounded, f32 accumulation and storage). Either way results
//! are reproducible run to run.
//!
//! Errors: the [`Backend`] methods cannot return errors (the CPU ones cannot fail). A device
//! error (a failed launch, memory exhausted) is kept (the first one) and the following
//! operations are skipped; [`GpuBackend::take_error`] returns it, and the trainer checks it
//! after every step, before any result is used.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use ogm_gpu::engine::kernels as k;
use ogm_gpu::engine::ops::{self, at, u32_of, MatRef};
pub use ogm_gpu::engine::ops::{ConvAlgo, Precision};
use ogm_gpu::engine::{Arg, DevPtr, Device};
use ogm_gpu::GpuError;

use crate::engine::backend::{
    conv2d_then_bn_forward_train, AdamStep, Backend, BnAct, BnTrain, ConvGeom, LinearSpec,
    PoolGeom, Region, SgdStep, BN_SAVED,
};

/// A device buffer of 4-byte elements (`f32` values or `u32` indices).
pub struct DevBuf<D: Device> {
    ptr: DevPtr,
    len: usize,
    cap: usize,
    dev: Arc<D>,
}

impl<D: Device> DevBuf<D> {
    /// The device address of the first element.
    pub fn ptr(&self) -> DevPtr {
        self.ptr
    }
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<D: Device> Drop for DevBuf<D> {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated by `dev.alloc`, owned by this buffer only.
            unsafe { self.dev.free(self.ptr) };
        }
    }
}

/// Reusable device scratch: the lowered convolution input and the split-K slices.
#[derive(Default)]
struct Scratch {
    col: (DevPtr, usize),
    split: (DevPtr, usize),
    // A convolution's weights with their outer dimensions swapped, for the implicit data
    // gradient.
    wt: (DevPtr, usize),
    // Batch norm's per-slice partial sums (f64, so two f32 slots each).
    bn: (DevPtr, usize),
}

/// State a user of the backend keeps with it (the trainer's OGM-GE step buffers).
pub type Extension = Option<Box<dyn std::any::Any + Send>>;

/// A failed allocation's sizes, as [`GpuError::OutOfMemory`] has them: bytes asked for, free
/// and total device memory.
type LostAlloc = (usize, Option<usize>, Option<usize>);

/// The GPU backend over device `D`.
pub struct GpuBackend<D: Device> {
    dev: Arc<D>,
    error: Mutex<Option<GpuError>>,
    // A buffer allocation that failed: that buffer has no memory behind it, so every later
    // operation is refused with this error again, also after the first report was taken.
    lost: Mutex<Option<LostAlloc>>,
    scratch: Mutex<Scratch>,
    ext: Mutex<Extension>,
    precision: Precision,
    conv_algo: ConvAlgo,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<D: Device> GpuBackend<D> {
    /// The backend on `dev`.
    pub fn new(dev: Arc<D>) -> Self {
        GpuBackend {
            dev,
            error: Mutex::new(None),
            lost: Mutex::new(None),
            scratch: Mutex::new(Scratch::default()),
            ext: Mutex::new(None),
            precision: Precision::Fp32,
            conv_algo: ConvAlgo::Im2col,
        }
    }

    /// Sets how convolutions meet their lowered input from now on: [`ConvAlgo::Im2col`] (the
    /// default: materialise it) or [`ConvAlgo::Implicit`] (gather it inside the FP32 GEMM, for
    /// the forward pass and the weight gradient; the same bits). Products that run on the
    /// tensor cores at the backend's precision keep the lowering either way.
    pub fn set_conv_algo(&mut self, algo: ConvAlgo) {
        self.conv_algo = algo;
    }

    /// How convolutions meet their lowered input.
    pub fn conv_algo(&self) -> ConvAlgo {
        self.conv_algo
    }

    /// Sets the arithmetic of the matrix products (convolutions, linear layers) from now on:
    /// [`Precision::Fp32`] (the default, the reference), [`Precision::Tf32`] or
    /// [`Precision::Bf16`] (tensor cores for the products where
    /// `ogm_gpu::engine::ops::gemm_uses_tensor_cores`).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    /// The arithmetic of the matrix products.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The extension slot: state that lives as long as the backend (the trainer keeps its
    /// OGM-GE step buffers here, sized for the model).
    pub fn extension(&self) -> MutexGuard<'_, Extension> {
        lock(&self.ext)
    }

    /// The device.
    pub fn device(&self) -> &Arc<D> {
        &self.dev
    }

    /// The first device error since the last call, if any (operations after it were skipped).
    pub fn take_error(&self) -> Option<GpuError> {
        lock(&self.error).take()
    }

    /// Whether operations must be skipped: an error is pending (until it is taken), or a
    /// buffer could not be allocated (for good; the error is recorded again).
    fn failed(&self) -> bool {
        if lock(&self.error).is_some() {
            return true;
        }
        let Some((bytes, free, total)) = *lock(&self.lost) else {
            return false;
        };
        self.record(Err(GpuError::OutOfMemory { bytes, free, total }));
        true
    }

    /// Keeps the first error.
    pub fn record(&self, r: Result<(), GpuError>) {
        if let Err(e) = r {
            let mut slot = lock(&self.error);
            if slot.is_none() {
                *slot = Some(e);
            }
        }
    }

    /// Runs `f` unless an error is pending, keeping its error: the way for device work the
    /// backend does not launch itself (the trainer's OGM-GE kernels and label upload), so that
    /// after a failed allocation nothing runs on a buffer without memory.
    pub fn run(&self, f: impl FnOnce() -> Result<(), GpuError>) {
        if !self.failed() {
            self.record(f());
        }
    }

    fn alloc_buf(&self, len: usize) -> DevBuf<D> {
        let ptr = if len == 0 {
            0
        } else {
            match self.dev.alloc(4 * len) {
                Ok(p) => p,
                Err(e) => {
                    if let GpuError::OutOfMemory { bytes, free, total } = e {
                        lock(&self.lost).get_or_insert((bytes, free, total));
                    }
                    self.record(Err(e));
                    // The buffer keeps its length, so that the model's size checks pass and
                    // the run stops with the device's error rather than a size panic; it has
                    // no memory (cap 0), and no operation runs while an error is pending.
                    return DevBuf {
                        ptr: 0,
                        len,
                        cap: 0,
                        dev: self.dev.clone(),
                    };
                }
            }
        };
        DevBuf {
            ptr,
            len,
            cap: len,
            dev: self.dev.clone(),
        }
    }

    /// Grows a scratch slot to `len` elements; returns its address.
    fn grow(&self, slot: &mut (DevPtr, usize), len: usize) -> Result<DevPtr, GpuError> {
        if slot.1 < len {
            if slot.1 > 0 {
                // SAFETY: a previous allocation of this slot.
                unsafe { self.dev.free(slot.0) };
                *slot = (0, 0);
            }
            *slot = (self.dev.alloc(4 * len)?, len);
        }
        Ok(slot.0)
    }

    /// The scratch for batch norm's partial sums over `c` channels of `len` (null when the
    /// channels are not split).
    fn bn_part(&self, c: usize, len: usize) -> Result<DevPtr, GpuError> {
        match ops::bn_part_len(c, len) {
            0 => Ok(0),
            n => self.grow(&mut lock(&self.scratch).bn, 2 * n),
        }
    }

    /// `C = A B (+ C)` at the backend's precision, with the split-K scratch managed here.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        m: usize,
        n: usize,
        kk: usize,
        a: MatRef,
        b: MatRef,
        beta: f32,
        c: DevPtr,
        ldc: usize,
    ) -> Result<(), GpuError> {
        let p = self.precision;
        let scratch = self.split_scratch(p, m, n, kk)?;
        // SAFETY: operands are the backend's buffers at the sizes the callers checked.
        unsafe { ops::gemm(&*self.dev, p, m, n, kk, 1.0, a, b, beta, c, ldc, scratch) }
    }

    /// Whether a convolution `g`'s products gather its lowered input (implicit GEMM, at the
    /// backend's precision) rather than reading a materialised one: [`ConvAlgo::Implicit`], a
    /// lowering that is not the identity (a 1x1 stride-1 convolution reads `x` directly
    /// anyway), and a geometry the kernels take (`ConvGeom::fits_implicit`: below 2^31
    /// elements).
    fn implicit(&self, g: &ConvGeom) -> bool {
        self.conv_algo == ConvAlgo::Implicit && !g.is_identity_lowering() && g.fits_implicit()
    }

    /// The split-K scratch for an `m x n x kk` product at `precision` (0: none needed).
    fn split_scratch(
        &self,
        precision: Precision,
        m: usize,
        n: usize,
        kk: usize,
    ) -> Result<DevPtr, GpuError> {
        let need = ops::gemm_scratch_len(precision, self.dev.multiprocessors(), m, n, kk);
        if need > 0 {
            self.grow(&mut lock(&self.scratch).split, need)
        } else {
            Ok(0)
        }
    }

    /// Copies `src` into `buf` from `offset`: in queue order (`after` None), or overlapping
    /// the work queued since the mark `after` (the caller guarantees that work leaves `buf`
    /// alone: [`Backend::write_after`]).
    fn upload_into(&self, buf: &mut DevBuf<D>, offset: usize, src: &[f32], after: Option<u64>) {
        let dst = region(
            buf,
            Region {
                offset,
                len: src.len(),
            },
        );
        let bytes: &[u8] = bytemuck_f32(src);
        // SAFETY: the region lies inside buf (checked); for upload_after, the caller's
        // contract above.
        self.run(|| unsafe {
            match after {
                None => self.dev.upload(dst, bytes),
                Some(mark) => self.dev.upload_after(mark, dst, bytes),
            }
        });
    }

    /// The lowered input of a convolution: `x` itself for 1x1 stride-1 convolutions, else
    /// the column scratch filled by im2col.
    fn lowered(&self, g: &ConvGeom, x: DevPtr) -> Result<DevPtr, GpuError> {
        if g.is_identity_lowering() {
            return Ok(x);
        }
        let col = self.grow(&mut lock(&self.scratch).col, g.col_len())?;
        // SAFETY: x holds the input, col col_len elements.
        unsafe { ops::im2col(&*self.dev, g, x, col)? };
        Ok(col)
    }

    /// `y = conv(x)` with the weight at `w` (implicit GEMM or lowered, by `self.implicit`), the
    /// output channels' row moments into `moments` unless it is 0 (the product must not
    /// split: `ops::moments_tile`).
    fn conv_forward(
        &self,
        g: &ConvGeom,
        xp: DevPtr,
        wp: DevPtr,
        yp: DevPtr,
        moments: DevPtr,
    ) -> Result<(), GpuError> {
        let (cols, kdim, p) = (g.cols(), g.kdim(), self.precision);
        if self.implicit(g) {
            let scratch = self.split_scratch(p, g.cout, cols, kdim)?;
            // SAFETY: w, x and y hold the geometry's lengths, scratch what the plan needs,
            // moments (when set) what the caller sized by the plan's tile.
            return unsafe {
                ops::conv_forward_implicit(&*self.dev, p, g, wp, xp, yp, scratch, moments)
            };
        }
        let col = self.lowered(g, xp)?;
        let (a, b) = (MatRef::rm(wp, kdim), MatRef::rm(col, cols));
        if moments != 0 {
            // SAFETY: as for self.gemm; moments sized by the caller.
            return unsafe {
                ops::gemm_with_moments(&*self.dev, p, g.cout, cols, kdim, a, b, yp, moments)
            };
        }
        self.gemm(g.cout, cols, kdim, a, b, 0.0, yp, cols)
    }

    /// The training batch norm's arguments (`BN_TRAIN` up to its partial sums) over the
    /// `bn.gb.len / 2` channels of `len` values at `xp` (`y` `None`: a null output, the
    /// statistics alone); the buffers' sizes asserted as for every launch, a `len` beyond the
    /// kernel's `u32` the error.
    #[allow(clippy::too_many_arguments)]
    fn bn_train_args(
        &self,
        len: usize,
        xp: DevPtr,
        params: &DevBuf<D>,
        bn: &BnTrain,
        state: &DevBuf<D>,
        act: BnAct<&DevBuf<D>>,
        y: Option<&DevBuf<D>>,
        saved: &DevBuf<D>,
    ) -> Result<Vec<Arg>, GpuError> {
        let c = bn.gb.len / 2;
        let yp = y.map_or(0, |y| need(y, c * len, "bn y"));
        let (gp, sp) = (region(params, bn.gb), region(state, bn.rs));
        let savp = need(saved, BN_SAVED * c, "bn saved");
        let (rp, relu) = bn_act(act, c * len);
        let mut args = vec![Arg::Ptr(xp), Arg::Ptr(yp)];
        args.extend(bn_tables(gp, sp, c));
        args.extend([
            Arg::Ptr(savp),
            Arg::Ptr(rp),
            Arg::U32(u32_of("bn len", len)?),
            Arg::F64(bn.momentum),
            Arg::F64(bn.eps),
            Arg::U32(relu),
        ]);
        Ok(args)
    }
}

impl<D: Device> Drop for GpuBackend<D> {
    fn drop(&mut self) {
        let s = lock(&self.scratch);
        for slot in [s.col, s.split, s.wt, s.bn] {
            if slot.1 > 0 {
                // SAFETY: scratch allocations of this backend, freed once.
                unsafe { self.dev.free(slot.0) };
            }
        }
    }
}

/// A batch norm's per-channel tables as the kernels take them: gamma, beta (the halves of the
/// parameters at `gp`), running mean, running variance (the halves of the state at `sp`).
fn bn_tables(gp: DevPtr, sp: DevPtr, c: usize) -> [Arg; 4] {
    [
        Arg::Ptr(gp),
        Arg::Ptr(at(gp, c)),
        Arg::Ptr(sp),
        Arg::Ptr(at(sp, c)),
    ]
}

/// A batch norm's activation as kernel arguments: the residual's pointer (null: none) and
/// the ReLU flag.
fn bn_act<D: Device>(act: BnAct<&DevBuf<D>>, n: usize) -> (DevPtr, u32) {
    match act {
        BnAct::Identity => (0, 0),
        BnAct::Relu => (0, 1),
        BnAct::AddRelu(r) => (need(r, n, "bn residual"), 1),
    }
}

/// Checks, as the CPU backend's slicing does, that `buf` holds `need` elements: a shorter one
/// is an engine bug (the model sizes every buffer), so it panics like an out-of-range slice.
fn need<D: Device>(buf: &DevBuf<D>, need: usize, what: &str) -> DevPtr {
    assert!(
        buf.len >= need,
        "{what}: buffer of {} elements, {need} needed",
        buf.len
    );
    buf.ptr
}

fn region<D: Device>(buf: &DevBuf<D>, r: Region) -> DevPtr {
    assert!(
        r.offset + r.len <= buf.len,
        "region {r:?} outside a buffer of {}",
        buf.len
    );
    at(buf.ptr, r.offset)
}

impl<D: Device + 'static> Backend for GpuBackend<D> {
    type Elem = f32;
    type Buf = DevBuf<D>;
    type IdxBuf = DevBuf<D>;

    fn zeros(&self, len: usize) -> DevBuf<D> {
        let b = self.alloc_buf(len);
        // SAFETY: b holds b.len elements.
        self.run(|| unsafe { ops::fill(&*self.dev, b.ptr, b.len, 0.0) });
        b
    }
    fn resize(&self, buf: &mut DevBuf<D>, len: usize) {
        if len <= buf.cap {
            if len > buf.len {
                let (p, n) = (at(buf.ptr, buf.len), len - buf.len);
                // SAFETY: inside the allocation (len <= cap).
                self.run(|| unsafe { ops::fill(&*self.dev, p, n, 0.0) });
            }
            buf.len = len;
            return;
        }
        // As a Vec: the first elements are kept and the new ones are zero. The model relies on
        // it (a block's incoming gradient sits in a scratch buffer that may grow).
        let new = self.alloc_buf(len);
        let (dst, src, keep) = (new.ptr, buf.ptr, buf.len);
        self.run(|| unsafe {
            // SAFETY: new holds len > keep elements, buf holds keep.
            ops::binary(&*self.dev, &k::COPY, dst, src, keep)?;
            ops::fill(&*self.dev, at(dst, keep), len - keep, 0.0)
        });
        *buf = new;
    }
    fn idx_empty(&self) -> DevBuf<D> {
        self.alloc_buf(0)
    }
    fn idx_resize(&self, buf: &mut DevBuf<D>, len: usize) {
        self.resize(buf, len);
    }
    fn len(&self, buf: &DevBuf<D>) -> usize {
        buf.len
    }
    fn write(&self, buf: &mut DevBuf<D>, offset: usize, src: &[f32]) {
        self.upload_into(buf, offset, src, None);
    }
    fn mark(&self) -> u64 {
        let mut mark = 0;
        self.run(|| {
            mark = self.dev.mark()?;
            Ok(())
        });
        mark
    }
    fn write_after(&self, buf: &mut DevBuf<D>, offset: usize, src: &[f32], after: u64) {
        self.upload_into(buf, offset, src, Some(after));
    }
    fn read(&self, buf: &DevBuf<D>, range: Range<usize>) -> Vec<f32> {
        let src = region(
            buf,
            Region {
                offset: range.start,
                len: range.len(),
            },
        );
        let mut out = vec![0.0f32; range.len()];
        if !self.failed() {
            // SAFETY: the region lies inside buf (checked); out has its length.
            let r = unsafe { self.dev.download(src, bytemuck_f32_mut(&mut out)) };
            self.record(r);
        }
        out
    }
    fn fill(&self, buf: &mut DevBuf<D>, range: Range<usize>, value: f32) {
        let dst = region(
            buf,
            Region {
                offset: range.start,
                len: range.len(),
            },
        );
        // SAFETY: the region lies inside buf.
        self.run(|| unsafe { ops::fill(&*self.dev, dst, range.len(), value) });
    }
    fn swap_outer(&self, a: usize, b: usize, inner: usize, x: &DevBuf<D>, y: &mut DevBuf<D>) {
        let n = a * b * inner;
        let (xp, yp) = (need(x, n, "swap_outer x"), need(y, n, "swap_outer y"));
        // SAFETY: both hold n elements (checked); distinct buffers do not overlap.
        self.run(|| unsafe { ops::swap_outer(&*self.dev, a, b, inner, xp, yp) });
    }
    fn conv2d_forward(
        &self,
        g: &ConvGeom,
        x: &DevBuf<D>,
        params: &DevBuf<D>,
        w: Region,
        y: &mut DevBuf<D>,
    ) {
        let (xp, wp) = (need(x, g.in_len(), "conv x"), region(params, w));
        let yp = need(y, g.out_len(), "conv y");
        self.run(|| self.conv_forward(g, xp, wp, yp, 0));
    }
    fn conv2d_bn_forward_train(
        &self,
        g: &ConvGeom,
        x: &DevBuf<D>,
        params: &DevBuf<D>,
        w: Region,
        conv_out: &mut DevBuf<D>,
        bn: &BnTrain,
        state: &mut DevBuf<D>,
        act: BnAct<&DevBuf<D>>,
        y: Option<&mut DevBuf<D>>,
        saved: &mut DevBuf<D>,
    ) {
        let (c, len) = (g.cout, g.cols());
        let sms = self.dev.multiprocessors();
        let Some(tile) = ops::moments_tile(self.precision, sms, c, len, g.kdim()) else {
            // A split product's tiles are partial sums: the batch norm reads the output.
            let (st, sv) = (state, saved);
            return conv2d_then_bn_forward_train(
                self, g, x, params, w, conv_out, bn, st, act, y, sv,
            );
        };
        let (xp, wp) = (need(x, g.in_len(), "conv x"), region(params, w));
        let cp = need(conv_out, g.out_len(), "conv y");
        let args = self.bn_train_args(len, cp, params, bn, state, act, y.as_deref(), saved);
        self.run(|| {
            // 3 f64 per channel and column tile.
            let moments = self.grow(&mut lock(&self.scratch).bn, 6 * c * len.div_ceil(tile))?;
            self.conv_forward(g, xp, wp, cp, moments)?;
            // SAFETY: sizes checked above; the convolution just wrote the moments.
            unsafe { ops::bn_train_from_moments(&*self.dev, c, len, moments, tile, &args?) }
        });
    }
    fn conv2d_backward(
        &self,
        g: &ConvGeom,
        x: &DevBuf<D>,
        params: &DevBuf<D>,
        w: Region,
        dy: &DevBuf<D>,
        grads: &mut DevBuf<D>,
        dx: Option<&mut DevBuf<D>>,
        dx_add: bool,
    ) {
        // Every path below adds in its last write (GEMM beta 1, col2im's accumulate): one
        // add per value, the bits of an add_assign after.
        let beta = if dx_add { 1.0 } else { 0.0 };
        let (xp, wp) = (need(x, g.in_len(), "conv x"), region(params, w));
        let dyp = need(dy, g.out_len(), "conv dy");
        let dwp = region(grads, w);
        let dxp = dx.map(|d| need(d, g.in_len(), "conv dx"));
        self.run(|| {
            let (cols, kdim) = (g.cols(), g.kdim());
            // dW[cout][kdim] = dy[cout][cols] col[kdim][cols]^T
            let col = if self.implicit(g) {
                let p = self.precision;
                let scratch = self.split_scratch(p, g.cout, kdim, cols)?;
                // SAFETY: dy, x and dw hold the geometry's lengths, scratch what the plan
                // needs.
                unsafe { ops::conv_wgrad_implicit(&*self.dev, p, g, dyp, xp, dwp, scratch)? };
                None
            } else {
                let col = self.lowered(g, xp)?;
                self.gemm(
                    g.cout,
                    kdim,
                    cols,
                    MatRef::rm(dyp, cols),
                    MatRef::tr(col, cols),
                    0.0,
                    dwp,
                    kdim,
                )?;
                Some(col)
            };
            if let (Some(dxp), true) = (dxp, self.implicit(g) && g.fits_implicit_dgrad()) {
                let p = self.precision;
                let (m, n, kk) = g.dgrad_dims();
                let scratch = self.split_scratch(p, m, n, kk)?;
                let wt = self.grow(&mut lock(&self.scratch).wt, g.w_len())?;
                // SAFETY: w and wt hold the weight's length, dy and dx the geometry's, scratch
                // what the plan needs.
                return unsafe {
                    ops::conv_dgrad_implicit(&*self.dev, p, g, wp, wt, dyp, dxp, beta, scratch)
                };
            }
            if let Some(dxp) = dxp {
                // dcol = W^T dy, written over the lowered input if there is one (no longer
                // needed: the weight gradient above was queued first), else into the column
                // scratch.
                let dcol = match col {
                    _ if g.is_identity_lowering() => dxp,
                    Some(col) => col,
                    None => self.grow(&mut lock(&self.scratch).col, g.col_len())?,
                };
                let identity = g.is_identity_lowering();
                self.gemm(
                    kdim,
                    cols,
                    g.cout,
                    MatRef::tr(wp, kdim),
                    MatRef::rm(dyp, cols),
                    if identity { beta } else { 0.0 },
                    dcol,
                    cols,
                )?;
                if !identity {
                    // SAFETY: dcol holds col_len elements, dx the input's length.
                    unsafe { ops::col2im(&*self.dev, g, dcol, dxp, dx_add)? };
                }
            }
            Ok(())
        });
    }
    fn bn_forward_train(
        &self,
        len: usize,
        x: &DevBuf<D>,
        params: &DevBuf<D>,
        gb: Region,
        state: &mut DevBuf<D>,
        rs: Region,
        momentum: f64,
        eps: f64,
        act: BnAct<&DevBuf<D>>,
        y: Option<&mut DevBuf<D>>,
        saved: &mut DevBuf<D>,
    ) {
        let c = gb.len / 2;
        let xp = need(x, c * len, "bn x");
        let bn = BnTrain {
            gb,
            rs,
            momentum,
            eps,
        };
        let args = self.bn_train_args(len, xp, params, &bn, state, act, y.as_deref(), saved);
        self.run(|| unsafe {
            let part = self.bn_part(c, len)?;
            // SAFETY: sizes checked above; part holds what the pass needs.
            ops::bn_pass(
                &*self.dev,
                &k::BN_TRAIN_PARTIAL,
                &k::BN_TRAIN,
                c,
                len,
                part,
                &[Arg::Ptr(xp)],
                &args?,
                // tile_w 0: the sums from part (or x), not from a GEMM's moments.
                &[Arg::U32(0)],
            )
        });
    }
    fn bn_forward_eval(
        &self,
        len: usize,
        x: &DevBuf<D>,
        params: &DevBuf<D>,
        gb: Region,
        state: &DevBuf<D>,
        rs: Region,
        eps: f64,
        act: BnAct<&DevBuf<D>>,
        y: &mut DevBuf<D>,
    ) {
        let c = gb.len / 2;
        let (xp, yp) = (need(x, c * len, "bn x"), need(y, c * len, "bn y"));
        let (gp, sp) = (region(params, gb), region(state, rs));
        let (rp, relu) = bn_act(act, c * len);
        self.run(|| unsafe {
            // SAFETY: sizes checked above.
            let mut args = vec![Arg::Ptr(xp), Arg::Ptr(yp)];
            args.extend(bn_tables(gp, sp, c));
            args.extend([
                Arg::Ptr(rp),
                Arg::U32(u32_of("bn len", len)?),
                Arg::F64(eps),
                Arg::U32(relu),
            ]);
            ops::bn_eval(&*self.dev, c, len, &args)
        });
    }
    fn bn_eval_saved(
        &self,
        params: &DevBuf<D>,
        gb: Region,
        state: &DevBuf<D>,
        rs: Region,
        eps: f64,
        saved: &mut DevBuf<D>,
    ) {
        let c = gb.len / 2;
        let (gp, sp) = (region(params, gb), region(state, rs));
        let savp = need(saved, BN_SAVED * c, "bn saved");
        self.run(|| unsafe {
            let mut args = bn_tables(gp, sp, c).to_vec();
            args.extend([
                Arg::Ptr(savp),
                Arg::U32(u32_of("bn channels", c)?),
                Arg::F64(eps),
            ]);
            // SAFETY: sizes checked above.
            ops::elementwise(&*self.dev, &k::BN_EVAL_SAVED, c, &args)
        });
    }
    fn bn_backward(
        &self,
        len: usize,
        x: &DevBuf<D>,
        params: &DevBuf<D>,
        gb: Region,
        saved: &DevBuf<D>,
        dy: &DevBuf<D>,
        relu: bool,
        grads: &mut DevBuf<D>,
        dx: &mut DevBuf<D>,
    ) {
        let c = gb.len / 2;
        let n = c * len;
        let (xp, dyp, dxp) = (
            need(x, n, "bn x"),
            need(dy, n, "bn dy"),
            need(dx, n, "bn dx"),
        );
        let (gp, dgp) = (region(params, gb), region(grads, gb));
        let savp = need(saved, BN_SAVED * c, "bn saved");
        let relu = Arg::U32(relu as u32);
        self.run(|| unsafe {
            let part = self.bn_part(c, len)?;
            // SAFETY: sizes checked above; part holds what the pass needs.
            ops::bn_pass(
                &*self.dev,
                &k::BN_BACKWARD_PARTIAL,
                &k::BN_BACKWARD,
                c,
                len,
                part,
                &[Arg::Ptr(xp), Arg::Ptr(savp), Arg::Ptr(dyp), relu],
                &[
                    Arg::Ptr(xp),
                    Arg::Ptr(gp),
                    Arg::Ptr(savp),
                    Arg::Ptr(dyp),
                    relu,
                    Arg::Ptr(dxp),
                    Arg::Ptr(dgp),
                    Arg::Ptr(at(dgp, c)),
                    Arg::U32(u32_of("bn len", len)?),
                ],
                &[],
            )
        });
    }
    fn maxpool_forward(
        &self,
        g: &PoolGeom,
        x: &DevBuf<D>,
        bn: Option<&DevBuf<D>>,
        y: &mut DevBuf<D>,
        idx: &mut DevBuf<D>,
    ) {
        let (ni, no) = (g.planes * g.h * g.w, g.planes * g.oh() * g.ow());
        let (xp, yp, ip) = (
            need(x, ni, "pool x"),
            need(y, no, "pool y"),
            need(idx, no, "pool idx"),
        );
        // The batch norm's saved values and channel count (a null table: none).
        let (sp, c) = bn.map_or((0, 0), |s| (s.ptr, s.len / BN_SAVED));
        assert!(
            bn.is_none() || (c > 0 && g.planes.is_multiple_of(c)),
            "pool planes {} over {c} batch-norm channels",
            g.planes
        );
        self.run(|| unsafe {
            let mut args = pool_args(g, xp, yp, ip)?;
            args.extend([Arg::Ptr(sp), Arg::U32(u32_of("pool bn channels", c)?)]);
            // SAFETY: sizes checked above.
            ops::elementwise(&*self.dev, &k::MAXPOOL_FORWARD, no, &args)
        });
    }
    fn maxpool_backward(&self, g: &PoolGeom, dy: &DevBuf<D>, idx: &DevBuf<D>, dx: &mut DevBuf<D>) {
        let (ni, no) = (g.planes * g.h * g.w, g.planes * g.oh() * g.ow());
        let (dyp, ip, dxp) = (
            need(dy, no, "pool dy"),
            need(idx, no, "pool idx"),
            need(dx, ni, "pool dx"),
        );
        self.run(|| unsafe {
            // SAFETY: sizes checked above.
            ops::elementwise(
                &*self.dev,
                &k::MAXPOOL_BACKWARD,
                ni,
                &pool_args(g, dyp, ip, dxp)?,
            )
        });
    }
    fn avgpool_forward(&self, c: usize, b: usize, run: usize, x: &DevBuf<D>, feat: &mut DevBuf<D>) {
        let (xp, fp) = (
            need(x, c * b * run, "avgpool x"),
            need(feat, b * c, "avgpool feat"),
        );
        self.run(|| unsafe {
            // SAFETY: sizes checked above.
            ops::per_block(
                &*self.dev,
                &k::AVGPOOL_FORWARD,
                c * b,
                &avg_args(xp, fp, c, b, run)?,
            )
        });
    }
    fn avgpool_backward(
        &self,
        c: usize,
        b: usize,
        run: usize,
        dfeat: &DevBuf<D>,
        dx: &mut DevBuf<D>,
    ) {
        let (fp, dxp) = (
            need(dfeat, b * c, "avgpool dfeat"),
            need(dx, c * b * run, "avgpool dx"),
        );
        self.run(|| unsafe {
            // SAFETY: sizes checked above.
            ops::elementwise(
                &*self.dev,
                &k::AVGPOOL_BACKWARD,
                c * b * run,
                &avg_args(fp, dxp, c, b, run)?,
            )
        });
    }
    fn relu_backward(&self, len: usize, out: &DevBuf<D>, dy: &mut DevBuf<D>) {
        let (op, dp) = (need(out, len, "relu out"), need(dy, len, "relu dy"));
        // SAFETY: both hold len elements.
        self.run(|| unsafe { ops::binary(&*self.dev, &k::RELU_BACKWARD, op, dp, len) });
    }
    fn add_assign(&self, len: usize, y: &mut DevBuf<D>, x: &DevBuf<D>) {
        let (yp, xp) = (need(y, len, "add y"), need(x, len, "add x"));
        // SAFETY: both hold len elements.
        self.run(|| unsafe { ops::binary(&*self.dev, &k::ADD_ASSIGN, yp, xp, len) });
    }
    fn linear_forward(
        &self,
        spec: &LinearSpec,
        rows: usize,
        x: &DevBuf<D>,
        params: &DevBuf<D>,
        bias: Option<Region>,
        bias_scale: f32,
        y: &mut DevBuf<D>,
        accumulate: bool,
    ) {
        let xp = need(x, rows * spec.inp, "linear x");
        let yp = need(y, rows * spec.out, "linear y");
        let wp = region(params, weight_region(spec));
        let bp = bias.map(|b| region(params, b));
        self.run(|| {
            self.gemm(
                rows,
                spec.out,
                spec.inp,
                MatRef::rm(xp, spec.inp),
                MatRef::tr(wp, spec.ld),
                if accumulate { 1.0 } else { 0.0 },
                yp,
                spec.out,
            )?;
            if let Some(bp) = bp {
                // SAFETY: y holds rows x out, the bias out elements.
                unsafe {
                    ops::elementwise(
                        &*self.dev,
                        &k::BIAS_ADD,
                        rows * spec.out,
                        &[
                            Arg::Ptr(yp),
                            Arg::Ptr(bp),
                            Arg::U32(u32_of("linear rows", rows)?),
                            Arg::U32(u32_of("linear out", spec.out)?),
                            Arg::F32(bias_scale),
                        ],
                    )?
                };
            }
            Ok(())
        });
    }
    fn linear_backward(
        &self,
        spec: &LinearSpec,
        rows: usize,
        x: &DevBuf<D>,
        params: &DevBuf<D>,
        bias: Option<Region>,
        dy: &DevBuf<D>,
        grads: &mut DevBuf<D>,
        dx: Option<&mut DevBuf<D>>,
    ) {
        let xp = need(x, rows * spec.inp, "linear x");
        let dyp = need(dy, rows * spec.out, "linear dy");
        let wp = region(params, weight_region(spec));
        let dwp = region(grads, weight_region(spec));
        let dbp = bias.map(|b| region(grads, b));
        let dxp = dx.map(|d| need(d, rows * spec.inp, "linear dx"));
        self.run(|| {
            // dW[out][in] = dy^T x
            self.gemm(
                spec.out,
                spec.inp,
                rows,
                MatRef::tr(dyp, spec.out),
                MatRef::rm(xp, spec.inp),
                0.0,
                dwp,
                spec.ld,
            )?;
            if let Some(dbp) = dbp {
                // SAFETY: dy holds rows x out, db out elements.
                unsafe {
                    ops::elementwise(
                        &*self.dev,
                        &k::COL_SUM,
                        spec.out,
                        &[
                            Arg::Ptr(dyp),
                            Arg::Ptr(dbp),
                            Arg::U32(u32_of("linear rows", rows)?),
                            Arg::U32(u32_of("linear out", spec.out)?),
                        ],
                    )?
                };
            }
            if let Some(dxp) = dxp {
                // dx = dy W
                self.gemm(
                    rows,
                    spec.inp,
                    spec.out,
                    MatRef::rm(dyp, spec.out),
                    MatRef::rm(wp, spec.ld),
                    0.0,
                    dxp,
                    spec.inp,
                )?;
            }
            Ok(())
        });
    }
    fn gate_forward(&self, gx: &DevBuf<D>, y: &DevBuf<D>, gate: &mut DevBuf<D>, z: &mut DevBuf<D>) {
        let n = gx.len;
        let ptrs = [
            gx.ptr,
            need(y, n, "gate y"),
            need(gate, n, "gate"),
            need(z, n, "gate z"),
        ];
        self.run(|| unsafe {
            // SAFETY: all hold n elements.
            ops::elementwise(
                &*self.dev,
                &k::GATE_FORWARD,
                n,
                &ptr_args(&ptrs, Arg::U64(n as u64)),
            )
        });
    }
    fn gate_backward(
        &self,
        gate: &DevBuf<D>,
        y: &DevBuf<D>,
        dz: &DevBuf<D>,
        dgx: &mut DevBuf<D>,
        dy: &mut DevBuf<D>,
    ) {
        let n = gate.len;
        let ptrs = [
            gate.ptr,
            need(y, n, "gate y"),
            need(dz, n, "gate dz"),
            need(dgx, n, "gate dgx"),
            need(dy, n, "gate dy"),
        ];
        self.run(|| unsafe {
            // SAFETY: all hold n elements.
            ops::elementwise(
                &*self.dev,
                &k::GATE_BACKWARD,
                n,
                &ptr_args(&ptrs, Arg::U64(n as u64)),
            )
        });
    }
    fn film_forward(&self, d: usize, h: &DevBuf<D>, x: &DevBuf<D>, z: &mut DevBuf<D>) {
        let n = x.len;
        let rows = n / d.max(1);
        let ptrs = [need(h, 2 * n, "film h"), x.ptr, need(z, n, "film z")];
        self.run(|| {
            let mut args = ptrs.map(Arg::Ptr).to_vec();
            args.push(Arg::U32(u32_of("film rows", rows)?));
            args.push(Arg::U32(u32_of("film d", d)?));
            // SAFETY: sizes checked above.
            unsafe { ops::elementwise(&*self.dev, &k::FILM_FORWARD, n, &args) }
        });
    }
    fn film_backward(
        &self,
        d: usize,
        h: &DevBuf<D>,
        x: &DevBuf<D>,
        dz: &DevBuf<D>,
        dh: &mut DevBuf<D>,
        dx: &mut DevBuf<D>,
    ) {
        let n = x.len;
        let rows = n / d.max(1);
        let ptrs = [
            need(h, 2 * n, "film h"),
            x.ptr,
            need(dz, n, "film dz"),
            need(dh, 2 * n, "film dh"),
            need(dx, n, "film dx"),
        ];
        self.run(|| {
            let mut args = ptrs.map(Arg::Ptr).to_vec();
            args.push(Arg::U32(u32_of("film rows", rows)?));
            args.push(Arg::U32(u32_of("film d", d)?));
            // SAFETY: sizes checked above.
            unsafe { ops::elementwise(&*self.dev, &k::FILM_BACKWARD, n, &args) }
        });
    }
    fn sgd_step(
        &self,
        s: &SgdStep,
        params: &mut DevBuf<D>,
        grads: &DevBuf<D>,
        buf: &mut DevBuf<D>,
    ) {
        let n = params.len;
        let (pp, gp, bp) = (
            params.ptr,
            need(grads, n, "sgd grads"),
            need(buf, n, "sgd buffer"),
        );
        // ogm_sgd: a grid-stride loop of one float4 per thread (gpu/src/cuda/launch.rs).
        let blocks = (n as u64)
            .div_ceil(4 * 256)
            .clamp(1, u64::from(self.dev.multiprocessors()) * 8);
        self.run(|| unsafe {
            // SAFETY: all three hold n elements.
            self.dev.launch(
                &k::SGD,
                ogm_gpu::engine::Grid::linear(blocks as u32, 256),
                &[
                    Arg::Ptr(pp),
                    Arg::Ptr(gp),
                    Arg::Ptr(bp),
                    Arg::U64(n as u64),
                    Arg::F32(s.lr as f32),
                    Arg::F32(s.momentum as f32),
                    Arg::F32(s.weight_decay as f32),
                    Arg::U32(s.first as u32),
                ],
            )
        });
    }
    fn adam_step(
        &self,
        s: &AdamStep,
        params: &mut DevBuf<D>,
        grads: &DevBuf<D>,
        m: &mut DevBuf<D>,
        v: &mut DevBuf<D>,
    ) {
        let n = params.len;
        let ptrs = [
            params.ptr,
            need(grads, n, "adam grads"),
            need(m, n, "adam m"),
            need(v, n, "adam v"),
        ];
        // The scalars exactly as the CPU backend rounds them.
        let bc1 = 1.0 - s.beta1.powi(s.step as i32);
        let bc2 = 1.0 - s.beta2.powi(s.step as i32);
        let mut args = ptrs.map(Arg::Ptr).to_vec();
        args.extend([
            Arg::U64(n as u64),
            Arg::F32((s.lr / bc1) as f32),
            Arg::F32(bc2.sqrt() as f32),
            Arg::F32(s.beta1 as f32),
            Arg::F32(s.beta2 as f32),
            Arg::F32(s.eps as f32),
            Arg::F32(s.weight_decay as f32),
            Arg::F32((1.0 - s.lr * s.weight_decay) as f32),
            Arg::U32(s.decoupled as u32),
        ]);
        // SAFETY: all four hold n elements.
        self.run(|| unsafe { ops::elementwise(&*self.dev, &k::ADAM, n, &args) });
    }
}

fn weight_region(s: &LinearSpec) -> Region {
    // The block's last element is at off + (out - 1) * ld + inp - 1.
    let len = if s.out == 0 {
        0
    } else {
        (s.out - 1) * s.ld + s.inp
    };
    Region { offset: s.off, len }
}

fn ptr_args(ptrs: &[DevPtr], last: Arg) -> Vec<Arg> {
    let mut v: Vec<Arg> = ptrs.iter().map(|&p| Arg::Ptr(p)).collect();
    v.push(last);
    v
}

fn pool_args(g: &PoolGeom, a: DevPtr, b: DevPtr, c: DevPtr) -> Result<Vec<Arg>, GpuError> {
    Ok(vec![
        Arg::Ptr(a),
        Arg::Ptr(b),
        Arg::Ptr(c),
        Arg::U32(u32_of("pool planes", g.planes)?),
        Arg::U32(u32_of("pool h", g.h)?),
        Arg::U32(u32_of("pool w", g.w)?),
        Arg::U32(u32_of("pool k", g.k)?),
        Arg::U32(u32_of("pool stride", g.stride)?),
        Arg::U32(u32_of("pool pad", g.pad)?),
        Arg::U32(u32_of("pool oh", g.oh())?),
        Arg::U32(u32_of("pool ow", g.ow())?),
    ])
}

fn avg_args(a: DevPtr, b: DevPtr, c: usize, n: usize, run: usize) -> Result<Vec<Arg>, GpuError> {
    Ok(vec![
        Arg::Ptr(a),
        Arg::Ptr(b),
        Arg::U32(u32_of("avgpool channels", c)?),
        Arg::U32(u32_of("avgpool batch", n)?),
        Arg::U32(u32_of("avgpool run", run)?),
    ])
}

fn bytemuck_f32(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte view of it is valid; the length is exact.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

fn bytemuck_f32_mut(v: &mut [f32]) -> &mut [u8] {
    // SAFETY: as above, and every byte pattern is a valid f32.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}
