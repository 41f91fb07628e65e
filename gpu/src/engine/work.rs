//! The work of one kernel launch (floating-point operations by unit, minimum DRAM traffic) and
//! a device's peak rates, so that a profile can say how close each kernel runs to its roofline
//! bound (`ogm-step-bench`'s `peak_fraction`).
//!
//! # The model
//!
//! [`estimate`] derives a launch's [`Work`] from the kernel's declared parameters
//! ([`super::kernels`]) and its `.cu` source:
//!
//! - **Bytes: minimum DRAM traffic.** Each input element the kernel reads is counted once and
//!   each output element it writes once, whatever the kernel really does (a batch-norm kernel
//!   that reads its input three times, a GEMM that re-reads tiles, are charged one read). So
//!   `bytes / time` is a lower bound of the bandwidth the kernel achieved, and the distance to
//!   the device's bandwidth is what a perfect kernel could gain. Caches are not modelled:
//!   small per-channel vectors are counted once per launch.
//! - **Flops: the per-element arithmetic of the source.** Additions, subtractions,
//!   multiplications, divisions, square roots and transcendental calls (`exp`, `log`) count one
//!   each, a fused multiply-add two; comparisons, `max`, selects, conversions and integer work
//!   do not count. Only work per element (per GEMM product, per logit) is counted, not the
//!   per-row or per-channel scalar arithmetic around it (O(rows) against O(rows x columns)),
//!   nor loop-invariant values the compiler hoists. A GEMM is the usual `2 m n k`; its
//!   `alpha` / `beta` epilogue (O(m n)) is not counted.
//! - **Units.** The flops are split by the unit that runs them ([`Unit`]): FP32 and FP64 on
//!   the SIMT cores, TF32 and BF16 on the tensor cores. The roofline bound of a launch is the
//!   largest of `flops_u / peak_u` over the units and `bytes / bandwidth`
//!   ([`Work::min_seconds`]); the units share issue slots, so this bound is optimistic for a
//!   kernel that mixes them (the batch-norm kernels), which only makes the reported fraction
//!   smaller, never larger, than the truth.
//!
//! Kernels without an estimate are listed in [`WITHOUT_ESTIMATE`] with the reason; a test
//! checks that every kernel of [`super::kernels::ALL`] is in exactly one of the two lists.
//!
//! # Peaks
//!
//! [`peaks`] turns a device's attributes ([`DeviceAttrs`]: multiprocessors, clock, memory
//! clock, bus width, compute capability) into peak rates with a per-multiprocessor,
//! per-clock table ([`per_sm_per_clock`]); see there for the sources.

use super::kernels as k;
use super::{Arg, Grid, KernelSpec};

/// Bytes of an `f32` (and of a `u32` index or label).
const F: f64 = 4.0;
/// Bytes of an `f64`.
const D: f64 = 8.0;
/// Values per chunk of the OGM-GE kernels (`OGM_CHUNK` in kernels/common.cuh).
const OGM_CHUNK: f64 = 1024.0;
/// `sizeof(TensorDesc)`, `sizeof(Stats)`, `sizeof(BalanceState)` (kernels/common.cuh, which
/// asserts them).
const TENSOR_DESC: f64 = 40.0;
const STATS: f64 = 32.0;
const BALANCE_STATE: f64 = 80.0;

/// The unit that runs a kernel's floating-point operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// FP32 on the SIMT cores.
    Fp32,
    /// FP64 on the SIMT cores.
    Fp64,
    /// TF32 tensor cores (`mma.sync` with f32 accumulation).
    Tf32,
    /// BF16 tensor cores (`mma.sync` with f32 accumulation).
    Bf16,
}

impl Unit {
    /// Every unit.
    pub const ALL: [Unit; 4] = [Unit::Fp32, Unit::Fp64, Unit::Tf32, Unit::Bf16];

    /// A short lower-case name (`fp32`, `fp64`, `tf32`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Unit::Fp32 => "fp32",
            Unit::Fp64 => "fp64",
            Unit::Tf32 => "tf32",
            Unit::Bf16 => "bf16",
        }
    }
}

/// The work of one launch, or of several summed (see the module documentation for the model).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Work {
    /// FP32 SIMT operations.
    pub fp32: f64,
    /// FP64 SIMT operations.
    pub fp64: f64,
    /// TF32 tensor-core operations.
    pub tf32: f64,
    /// BF16 tensor-core operations.
    pub bf16: f64,
    /// Minimum DRAM traffic in bytes.
    pub bytes: f64,
}

impl Work {
    /// Traffic only (a copy, a gather).
    pub fn bytes(bytes: f64) -> Work {
        Work {
            bytes,
            ..Work::default()
        }
    }

    /// `flops` operations on `unit` and `bytes` of traffic.
    pub fn new(unit: Unit, flops: f64, bytes: f64) -> Work {
        Work::bytes(bytes).plus(unit, flops)
    }

    /// This work with `flops` more operations on `unit`.
    pub fn plus(mut self, unit: Unit, flops: f64) -> Work {
        *self.flops_mut(unit) += flops;
        self
    }

    /// The operations on `unit`.
    pub fn flops_of(&self, unit: Unit) -> f64 {
        match unit {
            Unit::Fp32 => self.fp32,
            Unit::Fp64 => self.fp64,
            Unit::Tf32 => self.tf32,
            Unit::Bf16 => self.bf16,
        }
    }

    fn flops_mut(&mut self, unit: Unit) -> &mut f64 {
        match unit {
            Unit::Fp32 => &mut self.fp32,
            Unit::Fp64 => &mut self.fp64,
            Unit::Tf32 => &mut self.tf32,
            Unit::Bf16 => &mut self.bf16,
        }
    }

    /// All operations, whatever the unit.
    pub fn flops(&self) -> f64 {
        Unit::ALL.iter().map(|&u| self.flops_of(u)).sum()
    }

    /// The unit with the most operations (`None` when there are none).
    pub fn main_unit(&self) -> Option<Unit> {
        Unit::ALL
            .into_iter()
            .filter(|&u| self.flops_of(u) > 0.0)
            .max_by(|&a, &b| self.flops_of(a).total_cmp(&self.flops_of(b)))
    }

    /// The roofline bound: the least time this work can take on a device with `peaks`, the
    /// largest of each unit's `flops / peak` and `bytes / bandwidth`, with the roof that sets
    /// it (a unit's name, or `"dram"`). `None` when the work uses a unit whose peak is unknown
    /// (the bound would be wrong, not merely loose).
    pub fn min_seconds(&self, peaks: &Peaks) -> Option<(f64, &'static str)> {
        let mut best = (self.bytes / peaks.dram, "dram");
        for unit in Unit::ALL {
            let flops = self.flops_of(unit);
            if flops > 0.0 {
                let t = flops / peaks.flops(unit)?;
                if t > best.0 {
                    best = (t, unit.name());
                }
            }
        }
        Some(best)
    }

    /// How close work that took `seconds` ran to its roofline bound: `min_seconds / seconds`
    /// (1 is the device's peak for this work's bottleneck).
    pub fn peak_fraction(&self, seconds: f64, peaks: &Peaks) -> Option<f64> {
        let (t, _) = self.min_seconds(peaks)?;
        (seconds > 0.0).then(|| t / seconds)
    }
}

impl std::ops::Add for Work {
    type Output = Work;
    fn add(self, o: Work) -> Work {
        Work {
            fp32: self.fp32 + o.fp32,
            fp64: self.fp64 + o.fp64,
            tf32: self.tf32 + o.tf32,
            bf16: self.bf16 + o.bf16,
            bytes: self.bytes + o.bytes,
        }
    }
}

/// One kernel's profile: its total time, launch count and summed work.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KernelTotals {
    /// Total milliseconds over the launches.
    pub ms: f64,
    /// Launches.
    pub launches: u64,
    /// The launches' summed work; `None` when any launch had no estimate.
    pub work: Option<Work>,
}

impl KernelTotals {
    /// Adds one launch that took `ms` and did `work`.
    pub fn record(&mut self, ms: f64, work: Option<Work>) {
        self.work = if self.launches == 0 {
            work
        } else {
            self.work.zip(work).map(|(a, b)| a + b)
        };
        self.ms += ms;
        self.launches += 1;
    }
}

/// The device attributes the peaks derive from (CUDA's `MULTIPROCESSOR_COUNT`, `CLOCK_RATE`,
/// `MEMORY_CLOCK_RATE`, `GLOBAL_MEMORY_BUS_WIDTH`, `COMPUTE_CAPABILITY_MAJOR` / `_MINOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceAttrs {
    /// Streaming multiprocessors.
    pub sms: u32,
    /// The multiprocessors' maximum (boost) clock in kHz.
    pub clock_khz: u32,
    /// The memory's clock in kHz (data moves on both edges).
    pub mem_clock_khz: u32,
    /// The global memory bus width in bits.
    pub bus_bits: u32,
    /// Compute capability (major, minor).
    pub cc: (u32, u32),
}

/// Floating-point operations per clock of one multiprocessor, by unit (dense: no structured
/// sparsity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerClock {
    /// FP32 SIMT (2 per FMA lane).
    pub fp32: f64,
    /// FP64 SIMT (2 per FMA lane).
    pub fp64: f64,
    /// TF32 tensor cores.
    pub tf32: f64,
    /// BF16 tensor cores.
    pub bf16: f64,
}

/// Per-multiprocessor, per-clock dense throughput by compute capability; `None` for an
/// architecture not in the table (the bandwidth is still known then).
///
/// Sources: NVIDIA's A100 (Ampere GA100) and H100 (Hopper GH100) architecture whitepapers'
/// per-SM figures, checked against their published board peaks (`peak = SMs x clock x rate`):
/// - sm_80 (A100 SXM: 108 SMs, 1410 MHz): 64 FP32 FMA/clk (19.5 TFLOP/s), 32 FP64 FMA/clk
///   (9.7), 4 tensor cores of 256 FP16/BF16 FMA/clk: 2048 BF16 flop/clk (312), TF32 at half
///   that (156).
/// - sm_90 (H100 SXM: 132 SMs): 128 FP32 FMA/clk (66.9 TFLOP/s at 1980 MHz), 64 FP64 FMA/clk
///   (33.5), 4 tensor cores of 512 BF16 FMA/clk: 4096 BF16 flop/clk, TF32 at half. NVIDIA's
///   dense tensor figures (BF16 989.4, TF32 494.7 TFLOP/s) assume a 1830 MHz clock, below the
///   1980 MHz the device reports as its maximum, so [`peaks`] gives tensor peaks 8% above them
///   (1070 and 535) on an H100 SXM: fractions of these peaks are conservative.
///
/// Other capabilities (sm_86, sm_89: a quarter of the tensor rate per SM, 1/64-rate FP64) are
/// left out rather than guessed.
pub fn per_sm_per_clock(cc: (u32, u32)) -> Option<PerClock> {
    match cc {
        (8, 0) => Some(PerClock {
            fp32: 128.0,
            fp64: 64.0,
            tf32: 1024.0,
            bf16: 2048.0,
        }),
        (9, 0) => Some(PerClock {
            fp32: 256.0,
            fp64: 128.0,
            tf32: 2048.0,
            bf16: 4096.0,
        }),
        _ => None,
    }
}

/// A device's peak rates: flop/s by unit (`None` where the architecture is not in
/// [`per_sm_per_clock`]) and DRAM bytes/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peaks {
    /// FP32 SIMT flop/s.
    pub fp32: Option<f64>,
    /// FP64 SIMT flop/s.
    pub fp64: Option<f64>,
    /// Dense TF32 tensor-core flop/s.
    pub tf32: Option<f64>,
    /// Dense BF16 tensor-core flop/s.
    pub bf16: Option<f64>,
    /// DRAM bandwidth in bytes/s.
    pub dram: f64,
}

impl Peaks {
    /// The peak flop/s of `unit`.
    pub fn flops(&self, unit: Unit) -> Option<f64> {
        match unit {
            Unit::Fp32 => self.fp32,
            Unit::Fp64 => self.fp64,
            Unit::Tf32 => self.tf32,
            Unit::Bf16 => self.bf16,
        }
    }
}

/// The peaks of a device with attributes `a`: `SMs x clock x` [`per_sm_per_clock`] for each
/// unit, and `2 x memory clock x bus width / 8` for DRAM (double data rate: HBM2e, HBM3).
pub fn peaks(a: &DeviceAttrs) -> Peaks {
    let clock = f64::from(a.clock_khz) * 1e3;
    let per = per_sm_per_clock(a.cc);
    let rate = |f: fn(&PerClock) -> f64| per.as_ref().map(|p| f64::from(a.sms) * clock * f(p));
    Peaks {
        fp32: rate(|p| p.fp32),
        fp64: rate(|p| p.fp64),
        tf32: rate(|p| p.tf32),
        bf16: rate(|p| p.bf16),
        dram: 2.0 * f64::from(a.mem_clock_khz) * 1e3 * f64::from(a.bus_bits) / 8.0,
    }
}

/// A kernel's estimator: its launch's work from the grid and the arguments.
type Estimator = fn(&Params, Grid) -> Option<Work>;

/// The kernels [`estimate`] covers.
const ESTIMATES: &[(KernelSpec, Estimator)] = &[
    (k::GEMM, |p, g| gemm(p, g, Unit::Fp32)),
    (k::GEMM_BIG, |p, g| gemm(p, g, Unit::Fp32)),
    (k::GEMM_TF32, |p, g| gemm(p, g, Unit::Tf32)),
    (k::GEMM_BF16, |p, g| gemm(p, g, Unit::Bf16)),
    (k::GEMM_CONV_FWD, conv_gemm),
    (k::GEMM_BIG_CONV_FWD, conv_gemm),
    (k::GEMM_CONV_WGRAD, conv_gemm),
    (k::GEMM_BIG_CONV_WGRAD, conv_gemm),
    (k::GEMM_TF32_CONV_FWD, |p, g| conv_gemm_on(p, g, Unit::Tf32)),
    (k::GEMM_TF32_CONV_WGRAD, |p, g| {
        conv_gemm_on(p, g, Unit::Tf32)
    }),
    (k::GEMM_BF16_CONV_FWD, |p, g| conv_gemm_on(p, g, Unit::Bf16)),
    (k::GEMM_BF16_CONV_WGRAD, |p, g| {
        conv_gemm_on(p, g, Unit::Bf16)
    }),
    (k::GEMM_CONV_DGRAD, |p, g| conv_dgrad_on(p, g, Unit::Fp32)),
    (k::GEMM_BIG_CONV_DGRAD, |p, g| {
        conv_dgrad_on(p, g, Unit::Fp32)
    }),
    (k::GEMM_TF32_CONV_DGRAD, |p, g| {
        conv_dgrad_on(p, g, Unit::Tf32)
    }),
    (k::GEMM_BF16_CONV_DGRAD, |p, g| {
        conv_dgrad_on(p, g, Unit::Bf16)
    }),
    (k::SUM_SLICES, sum_slices),
    (k::IM2COL, im2col),
    (k::COL2IM, col2im),
    (k::BN_TRAIN, bn_train),
    (k::BN_EVAL_SAVED, bn_eval_saved),
    (k::BN_TRAIN_PARTIAL, bn_train_partial),
    (k::BN_EVAL, bn_eval),
    (k::BN_BACKWARD, bn_backward),
    (k::BN_BACKWARD_PARTIAL, bn_backward_partial),
    // Element-wise over n values: bytes per value, FP32 flops per value.
    (k::FILL, |p, _| Some(Work::bytes(F * p.u("n")?))), // write
    (k::COPY, |p, _| Some(Work::bytes(2.0 * F * p.u("n")?))), // read, write
    // Reads `out`; `dy` is written where `out <= 0` and never read. Counted as if every value
    // were written: ReLU zeros are scattered, so nearly every 32-byte sector gets a write.
    (k::RELU_BACKWARD, |p, _| ew(p.u("n")?, 2.0, 0.0)),
    // y += x: read both, write y; one add.
    (k::ADD_ASSIGN, |p, _| ew(p.u("n")?, 3.0, 1.0)),
    // A permutation: read and write every value.
    (k::SWAP_OUTER, |p, _| {
        ew(p.u("a")? * p.u("b")? * p.u("inner")?, 2.0, 0.0)
    }),
    (k::MAXPOOL_FORWARD, maxpool_forward),
    (k::MAXPOOL_BACKWARD, maxpool_backward),
    (k::AVGPOOL_FORWARD, avgpool_forward),
    (k::AVGPOOL_BACKWARD, avgpool_backward),
    (k::BIAS_ADD, bias_add),
    (k::COL_SUM, col_sum),
    // Reads gx, y; writes gate, z. Sigmoid (exp, add, div) and a multiply.
    (k::GATE_FORWARD, |p, _| ew(p.u("n")?, 4.0, 4.0)),
    // Reads gate, y, dz; writes dgx, dy. dz y s (1 - s): 3 mul, 1 sub; dz s: 1 mul.
    (k::GATE_BACKWARD, |p, _| ew(p.u("n")?, 5.0, 5.0)),
    (k::FILM_FORWARD, film_forward),
    (k::FILM_BACKWARD, film_backward),
    (k::SOFTMAX_XENT, softmax_xent),
    // Reads rows f64 losses, writes one; one f64 add per loss.
    (k::SUM_LOSSES, |p, _| {
        let rows = p.u("rows")?;
        Some(Work::new(Unit::Fp64, rows, D * (rows + 1.0)))
    }),
    (k::ADAM, adam),
    (k::SGD, sgd),
    (k::SCORES, scores),
    (k::STEP_LOSSES, step_losses),
    (k::TENSOR_STATS, tensor_stats),
    (k::MODULATE, modulate),
];

/// The kernels without an estimate, and why (a test checks that every kernel is either here
/// or in the estimates).
pub const WITHOUT_ESTIMATE: &[(KernelSpec, &str)] = &[(
    k::BALANCE,
    "one thread's scalar arithmetic on an 80-byte state: latency, not throughput, \
     so a fraction of the device's peak means nothing",
)];

/// The work of one launch of `spec` with `grid` and `args` (see the module documentation);
/// `None` for a kernel in [`WITHOUT_ESTIMATE`], arguments that do not match the kernel's
/// parameters, or shapes the model cannot follow.
pub fn estimate(spec: &KernelSpec, grid: Grid, args: &[Arg]) -> Option<Work> {
    let (_, f) = ESTIMATES
        .iter()
        .find(|(s, _)| s.name == spec.name && s.module == spec.module)?;
    f(&Params { spec, args }, grid)
}

/// A launch's arguments by parameter name.
struct Params<'a> {
    spec: &'a KernelSpec,
    args: &'a [Arg],
}

impl Params<'_> {
    fn arg(&self, name: &str) -> Option<Arg> {
        let i = self.spec.params.iter().position(|(n, _)| *n == name)?;
        self.args.get(i).copied()
    }
    /// An unsigned size (`U32` or `U64`) as f64.
    fn u(&self, name: &str) -> Option<f64> {
        match self.arg(name)? {
            Arg::U32(v) => Some(f64::from(v)),
            Arg::U64(v) => Some(v as f64),
            _ => None,
        }
    }
    /// An unsigned size as an integer (for the window counts).
    fn n(&self, name: &str) -> Option<u64> {
        match self.arg(name)? {
            Arg::U32(v) => Some(u64::from(v)),
            Arg::U64(v) => Some(v),
            _ => None,
        }
    }
    fn f32(&self, name: &str) -> Option<f32> {
        match self.arg(name)? {
            Arg::F32(v) => Some(v),
            _ => None,
        }
    }
    /// Whether an optional pointer argument is set.
    fn set(&self, name: &str) -> Option<bool> {
        match self.arg(name)? {
            Arg::Ptr(v) => Some(v != 0),
            _ => None,
        }
    }
}

/// An element-wise kernel over `n` values: `arrays` f32 arrays of n read or written once each,
/// `flops` FP32 operations per value.
fn ew(n: f64, arrays: f64, flops: f64) -> Option<Work> {
    Some(Work::new(Unit::Fp32, flops * n, arrays * F * n))
}

fn b2f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// `C = alpha A B + beta C`, A m x k, B k x n: `2 m n k` operations on `unit`; reads A and B
/// once; writes m x n once per split-K slice (grid z > 1: block z writes its partial product
/// to its own slice, `C + z * split_stride`; kernels/engine_gemm.cu), and reads the same when
/// `beta != 0` (the kernel never reads C when beta is 0). Plus the row moments when asked for
/// ([`row_moments`]).
fn gemm(p: &Params, g: Grid, unit: Unit) -> Option<Work> {
    let (m, n, kk) = (p.u("m")?, p.u("n")?, p.u("k")?);
    let slices = f64::from(g.blocks[2].max(1));
    let c_rw = 1.0 + b2f(p.f32("beta")? != 0.0);
    Some(row_moments(
        p,
        g,
        Work::new(
            unit,
            2.0 * m * n * kk,
            F * (m * kk + kk * n + slices * m * n * c_rw),
        ),
    ))
}

/// `w` plus a GEMM's row moments, when its `moments` argument is set (kernels without that
/// parameter never compute them): per output value an f64 subtract, multiply and two adds;
/// three f64 written per row and column tile (grid x).
fn row_moments(p: &Params, g: Grid, w: Work) -> Work {
    if p.set("moments") != Some(true) {
        return w;
    }
    let Some((m, n)) = p.u("m").zip(p.u("n")) else {
        return w;
    };
    let rows_tiles = m * f64::from(g.blocks[0]);
    w + Work::new(Unit::Fp64, 4.0 * m * n, 24.0 * rows_tiles)
}

/// An implicit-GEMM convolution (forward or weight gradient): the GEMM's `2 m n k` FP32
/// operations; reads A once and the input values some window covers once (the lowered matrix
/// is gathered from them, never stored: that is the point of the kernel); writes (and reads
/// when `beta != 0`) C once per split-K slice, as [`gemm`].
fn conv_gemm(p: &Params, g: Grid) -> Option<Work> {
    conv_gemm_on(p, g, Unit::Fp32)
}

/// [`conv_gemm`] with the products on `unit` (the tensor-core twins).
fn conv_gemm_on(p: &Params, g: Grid, unit: Unit) -> Option<Work> {
    let (m, n, kk) = (p.u("m")?, p.u("n")?, p.u("k")?);
    let (ks, s, pad) = (p.n("ksize")?, p.n("stride")?, p.n("pad")?);
    let (th, _) = window(p.n("h")?, ks, s, pad, p.n("oh")?)?;
    let (tw, _) = window(p.n("w")?, ks, s, pad, p.n("ow")?)?;
    let input = p.u("cin")? * p.u("batch")? * (th * tw) as f64;
    let slices = f64::from(g.blocks[2].max(1));
    let c_rw = 1.0 + b2f(p.f32("beta")? != 0.0);
    Some(row_moments(
        p,
        g,
        Work::new(
            unit,
            2.0 * m * n * kk,
            F * (m * kk + input + slices * m * n * c_rw),
        ),
    ))
}

/// An implicit-GEMM data gradient (stride 1): the GEMM's `2 m n k` operations on `unit` (the
/// taps that fall in the padding included: they are multiplied by gathered zeros); reads A
/// (the swapped weights) and `dy` once; writes (and reads when `beta != 0`) C once per split-K
/// slice, as [`gemm`].
fn conv_dgrad_on(p: &Params, g: Grid, unit: Unit) -> Option<Work> {
    let (m, n, kk) = (p.u("m")?, p.u("n")?, p.u("k")?);
    let dy = p.u("cout")? * p.u("batch")? * p.u("oh")? * p.u("ow")?;
    let slices = f64::from(g.blocks[2].max(1));
    let c_rw = 1.0 + b2f(p.f32("beta")? != 0.0);
    Some(Work::new(
        unit,
        2.0 * m * n * kk,
        F * (m * kk + dy + slices * m * n * c_rw),
    ))
}

/// `C = alpha sum_z P_z + beta C` over `splits` slices of rows x cols: reads every slice (and
/// C when `beta != 0`), writes C; `splits` adds and the alpha multiply per value (+ a multiply
/// and an add for beta).
fn sum_slices(p: &Params, _: Grid) -> Option<Work> {
    let (s, rc) = (p.u("splits")?, p.u("rows")? * p.u("cols")?);
    let beta = b2f(p.f32("beta")? != 0.0);
    Some(Work::new(
        Unit::Fp32,
        rc * (s + 1.0 + 2.0 * beta),
        F * rc * (s + 1.0 + beta),
    ))
}

/// Along one axis of a window operation (input length `len`, window `k`, `stride`, `pad`, `out`
/// outputs): the inputs some window reads, and the (output, tap) pairs that fall inside the
/// input. `None` when the loop would be unreasonably long (not a shape of this project).
fn window(len: u64, k: u64, stride: u64, pad: u64, out: u64) -> Option<(u64, u64)> {
    if out.checked_mul(k)? > 1 << 24 || len > 1 << 24 {
        return None;
    }
    let mut hit = vec![false; len as usize];
    let mut pairs = 0;
    for o in 0..out {
        for t in 0..k {
            if let Some(i) = (o * stride + t).checked_sub(pad).filter(|&i| i < len) {
                hit[i as usize] = true;
                pairs += 1;
            }
        }
    }
    Some((hit.iter().filter(|&&h| h).count() as u64, pairs))
}

/// The (rows, columns) windows of a pooling or convolution launch: ((touched rows, row
/// pairs), (touched columns, column pairs)).
fn windows(p: &Params) -> Option<((u64, u64), (u64, u64))> {
    let (k, s, pad) = (p.n("k")?, p.n("stride")?, p.n("pad")?);
    Some((
        window(p.n("h")?, k, s, pad, p.n("oh")?)?,
        window(p.n("w")?, k, s, pad, p.n("ow")?)?,
    ))
}

/// im2col: writes every column entry (`cin k k x n oh ow`, padding zeros included); reads the
/// input values some window covers (all of them unless the stride skips some). No arithmetic.
fn im2col(p: &Params, _: Grid) -> Option<Work> {
    let ((th, _), (tw, _)) = windows(p)?;
    let planes = p.u("cin")? * p.u("n")?;
    let kk = p.u("k")?;
    let cols = planes * kk * kk * p.u("oh")? * p.u("ow")?;
    Some(Work::bytes(F * (planes * (th * tw) as f64 + cols)))
}

/// col2im (a gather): reads the column entries that map inside the input (not the padding
/// taps), one add each; writes every input gradient, and when accumulating reads it first and
/// adds once more.
fn col2im(p: &Params, _: Grid) -> Option<Work> {
    let ((_, ph), (_, pw)) = windows(p)?;
    let planes = p.u("cin")? * p.u("n")?;
    let taps = planes * (ph * pw) as f64;
    let dx = planes * p.u("h")? * p.u("w")?;
    let acc = f64::from(p.n("accumulate")? != 0);
    Some(Work::new(
        Unit::Fp32,
        taps + acc * dx,
        F * (taps + (1.0 + acc) * dx),
    ))
}

/// A batch-norm kernel's `channels x slices` grid (`ops::bn_pass`): channels, slices and the
/// values of all channels.
fn bn_sizes(p: &Params, g: Grid) -> Option<(f64, f64, f64)> {
    let (c, slices) = (f64::from(g.blocks[0]), f64::from(g.blocks[1]));
    Some((c, slices, c * p.u("len")?))
}

/// Batch-norm training forward on a `channels x slices` grid (`ops::bn_pass`). Reads x and,
/// when set, the residual; writes y; per channel reads gamma, beta and the running
/// statistics, writes those and the four saved values (10 values). Per value an f32 multiply
/// and add (the normalisation), and one more add with a residual. Unsplit channels (one
/// slice) are also summed here: per value an f64 subtract, square and two adds, and x read a
/// second time, not counted: a block's channel is at most `ops::BN_SLICE` values (32 KB),
/// read again at once, from L2. Split channels read their partial sums instead (two f64 per
/// slice, added). With `tile_w > 0` the sums come from a GEMM's row moments, three f64 per
/// column tile, each moved to one shift and added (seven f64 operations) by every block of the
/// channel, read from DRAM once (the later blocks find them in L2). Without `y` (the
/// statistics alone) only the slice-0 blocks work and nothing per value is read or written,
/// but x by unsplit channels summing it themselves.
fn bn_train(p: &Params, g: Grid) -> Option<Work> {
    let (c, slices, n) = bn_sizes(p, g)?;
    let residual = b2f(p.set("residual")?);
    let tile_w = p.u("tile_w")?;
    let out = p.set("y")?;
    // The blocks that sum: all of them, or the slice-0 ones.
    let summing = if out { slices } else { 1.0 };
    // (partials read, f64 operations of the sums, whether x is read for them)
    let (parts, sums, reads_x) = if tile_w > 0.0 {
        let tiles = (p.u("len")? / tile_w).ceil();
        (3.0 * c * tiles, 7.0 * c * summing * tiles, false)
    } else if slices > 1.0 {
        (2.0 * c * slices, 2.0 * c * summing, false)
    } else {
        (0.0, 4.0 * n, true)
    };
    let per_value = match (out, reads_x) {
        (true, _) => (2.0 + residual, 2.0 + residual),
        (false, true) => (0.0, 1.0),
        (false, false) => (0.0, 0.0),
    };
    Some(
        Work::new(
            Unit::Fp32,
            per_value.0 * n,
            F * (per_value.1 * n + 10.0 * c) + 8.0 * parts,
        )
        .plus(Unit::Fp64, sums),
    )
}

/// The forward sums of split channels (grid `channels x slices`): reads x, writes two f64 per
/// slice; per value an f64 subtract, square and two adds.
fn bn_train_partial(p: &Params, g: Grid) -> Option<Work> {
    let (c, slices, n) = bn_sizes(p, g)?;
    Some(Work::new(Unit::Fp64, 4.0 * n, F * n + 16.0 * c * slices))
}

/// Batch norm with running statistics on a `channels x slices` grid: reads x and, when set,
/// the residual, writes y, reads four per-channel vectors. Each block computes its channel's
/// scale and shift once: an f64 add, square root and division (the inverse deviation), one
/// multiply (the scale), two multiplies and a subtract (the shift); then per value an f32
/// multiply and add, and one more add with a residual.
fn bn_eval(p: &Params, g: Grid) -> Option<Work> {
    let (c, slices, n) = bn_sizes(p, g)?;
    let residual = b2f(p.set("residual")?);
    Some(
        Work::new(
            Unit::Fp32,
            (2.0 + residual) * n,
            F * ((2.0 + residual) * n + 4.0 * c),
        )
        .plus(Unit::Fp64, 7.0 * c * slices),
    )
}

/// The evaluation batch norm's saved values: reads four vectors of c, writes four; per
/// channel the seven f64 operations of the scale and shift (as [`bn_eval`]).
fn bn_eval_saved(p: &Params, _: Grid) -> Option<Work> {
    let c = p.u("c")?;
    Some(Work::new(Unit::Fp64, 7.0 * c, F * 8.0 * c))
}

/// Batch-norm backward on a `channels x slices` grid (`ops::bn_pass`). Reads x and dy,
/// writes dx; per channel reads gamma and the saved mean and inverse deviation (and with the
/// ReLU its scale and shift), writes dgamma and dbeta. Per value three f32 subtracts and two
/// multiplies (dx), and with the ReLU a multiply and add more (its mask, recomputed from x).
/// Unsplit channels are also summed here (as [`bn_train`], the second read of the inputs from
/// L2): per value an f32 subtract and multiply (and the mask again) and two f64 adds. Split
/// channels read their partial sums instead.
fn bn_backward(p: &Params, g: Grid) -> Option<Work> {
    let (c, slices, n) = bn_sizes(p, g)?;
    let relu = b2f(p.n("relu")? != 0);
    let mask = 2.0 * relu * n;
    // (partials read, f32 and f64 operations of the sums)
    let (parts, f32_sums, f64_sums) = match slices > 1.0 {
        true => (2.0 * c * slices, 0.0, 2.0 * c * slices),
        false => (0.0, 2.0 * n + mask, 2.0 * n),
    };
    Some(
        Work::new(
            Unit::Fp32,
            5.0 * n + mask + f32_sums,
            F * (3.0 * n + (5.0 + 2.0 * relu) * c) + 8.0 * parts,
        )
        .plus(Unit::Fp64, f64_sums),
    )
}

/// The backward sums of split channels (grid `channels x slices`): reads x and dy, writes two
/// f64 per slice; per value an f32 subtract and multiply (with the ReLU, a multiply and add
/// more for its mask) and two f64 adds. Per block the saved mean (and scale and shift).
fn bn_backward_partial(p: &Params, g: Grid) -> Option<Work> {
    let (c, slices, n) = bn_sizes(p, g)?;
    let relu = b2f(p.n("relu")? != 0);
    Some(
        Work::new(
            Unit::Fp32,
            (2.0 + 2.0 * relu) * n,
            F * (2.0 * n + (1.0 + 2.0 * relu) * c * slices) + 16.0 * c * slices,
        )
        .plus(Unit::Fp64, 2.0 * n),
    )
}

/// Max pooling: reads the input values some window covers, writes each output and its index
/// (u32). Comparisons only, but with a batch norm applied as it reads (`bn_saved`): a
/// multiply and an add per value read (each read of an input every window covering it
/// makes, `k^2` per output at most) and its two values per channel.
fn maxpool_forward(p: &Params, _: Grid) -> Option<Work> {
    let ((th, _), (tw, _)) = windows(p)?;
    let planes = p.u("planes")?;
    let out = planes * p.u("oh")? * p.u("ow")?;
    let bytes = F * (planes * (th * tw) as f64 + 2.0 * out);
    if !p.set("bn_saved")? {
        return Some(Work::bytes(bytes));
    }
    let k = p.u("k")?;
    let c = p.u("bn_c")?;
    Some(Work::new(
        Unit::Fp32,
        2.0 * k * k * out,
        bytes + 2.0 * F * c,
    ))
}

/// Max pooling backward (a gather): reads each output's index and gradient (every window of
/// this project's pooling holds an input, so each gradient is added exactly once), writes
/// every input gradient.
fn maxpool_backward(p: &Params, _: Grid) -> Option<Work> {
    let planes = p.u("planes")?;
    let out = planes * p.u("oh")? * p.u("ow")?;
    let dx = planes * p.u("h")? * p.u("w")?;
    Some(Work::new(Unit::Fp32, out, F * (2.0 * out + dx)))
}

/// Average over c x b runs of `run` values: reads every value (one f64 add each), writes one
/// feature per run.
fn avgpool_forward(p: &Params, _: Grid) -> Option<Work> {
    let runs = p.u("c")? * p.u("b")?;
    let n = runs * p.u("run")?;
    Some(Work::new(Unit::Fp64, n, F * (n + runs)))
}

/// Its backward: reads one gradient per run, writes every value (one multiply each).
fn avgpool_backward(p: &Params, _: Grid) -> Option<Work> {
    let runs = p.u("c")? * p.u("b")?;
    let n = runs * p.u("run")?;
    Some(Work::new(Unit::Fp32, n, F * (n + runs)))
}

/// `y[r][o] += scale * bias[o]`: reads and writes y, reads the bias; a multiply and an add.
fn bias_add(p: &Params, _: Grid) -> Option<Work> {
    let (rows, out) = (p.u("rows")?, p.u("out")?);
    Some(Work::new(
        Unit::Fp32,
        2.0 * rows * out,
        F * (2.0 * rows * out + out),
    ))
}

/// Column sums: reads dy, writes one sum per column; one add per value.
fn col_sum(p: &Params, _: Grid) -> Option<Work> {
    let (rows, out) = (p.u("rows")?, p.u("out")?);
    Some(Work::new(Unit::Fp32, rows * out, F * (rows * out + out)))
}

/// FiLM: reads h (rows x 2d: gamma and beta) and x, writes z; a multiply and an add.
fn film_forward(p: &Params, _: Grid) -> Option<Work> {
    let n = p.u("rows")? * p.u("d")?;
    Some(Work::new(Unit::Fp32, 2.0 * n, F * 4.0 * n))
}

/// FiLM backward: reads gamma (half of h), x and dz; writes dh (2d per row) and dx; two
/// multiplies.
fn film_backward(p: &Params, _: Grid) -> Option<Work> {
    let n = p.u("rows")? * p.u("d")?;
    Some(Work::new(Unit::Fp32, 2.0 * n, F * 6.0 * n))
}

/// Softmax cross-entropy: reads the logits and labels, writes one f64 loss per row and, when
/// `dlogits` is set, the gradient. Per logit in f64: subtract, exp and add (the normaliser),
/// and for the gradient subtract, exp, subtract and multiply.
fn softmax_xent(p: &Params, _: Grid) -> Option<Work> {
    let rows = p.u("rows")?;
    let n = rows * p.u("classes")?;
    let grad = b2f(p.set("dlogits")?);
    Some(Work::new(
        Unit::Fp64,
        n * (3.0 + 4.0 * grad),
        F * n * (1.0 + grad) + F * rows + D * rows,
    ))
}

/// Adam / AdamW: reads p, g, m, v, writes p, m, v. Per value: the decay (one multiply,
/// decoupled) or the L2 term (a multiply and an add), 3 for m, 4 for v, 3 for the denominator
/// (sqrt, divide, add), 3 for the update (divide, multiply, subtract).
fn adam(p: &Params, _: Grid) -> Option<Work> {
    let decoupled = match p.arg("decoupled")? {
        Arg::U32(v) => v != 0,
        _ => return None,
    };
    ew(p.u("n")?, 7.0, 13.0 + if decoupled { 1.0 } else { 2.0 })
}

/// SGD with momentum (kernels/sgd.cu): reads p and g, writes p; with momentum writes the
/// buffer, and reads it after the first step. Per value: weight decay (a multiply and an add,
/// when set), the momentum (a multiply and an add, after the first step), the update (a
/// multiply and an add).
fn sgd(p: &Params, _: Grid) -> Option<Work> {
    let m = p.f32("momentum")? != 0.0;
    let first = match p.arg("first_step")? {
        Arg::U32(v) => v != 0,
        _ => return None,
    };
    let wd = p.f32("weight_decay")? != 0.0;
    let arrays = 3.0 + b2f(m) + b2f(m && !first);
    let flops = 2.0 + 2.0 * b2f(wd) + 2.0 * b2f(m && !first);
    ew(p.u("n")?, arrays, flops)
}

/// Per-modality scores (kernels/scores.cu): reads both logit matrices and the labels, writes
/// the two scores. Per logit in f64: subtract, exp and add.
fn scores(p: &Params, _: Grid) -> Option<Work> {
    let batch = p.u("batch")?;
    let n = 2.0 * batch * p.u("classes")?;
    Some(Work::new(Unit::Fp64, 3.0 * n, F * (n + batch) + 2.0 * D))
}

/// A step's loss stage (kernels/scores.cu): reads the three logit matrices and the labels;
/// writes the fused gradient, 3 x batch f64 row losses (scratch it reads back: counted once),
/// the 3 losses and the state. Per logit in f64: subtract, exp and add for each of the three
/// matrices, and subtract, exp, subtract and multiply for the fused gradient.
fn step_losses(p: &Params, _: Grid) -> Option<Work> {
    let batch = p.u("batch")?;
    let n = batch * p.u("classes")?;
    Some(Work::new(
        Unit::Fp64,
        n * (3.0 * 3.0 + 4.0),
        F * (4.0 * n + batch) + D * (3.0 * batch + 3.0) + BALANCE_STATE,
    ))
}

/// The values of the flat gradient buffer that `total_chunks` chunks cover. The launch does
/// not carry the exact count: each tensor's last chunk may be partial, so this overstates it
/// by at most `num_tensors x (OGM_CHUNK - 1)` values (about 1% for the paper model, whose
/// batch-norm vectors each take a chunk of their own).
fn chunk_values(p: &Params) -> Option<f64> {
    Some(p.u("total_chunks")? * OGM_CHUNK)
}

/// Per-tensor statistics (kernels/stats.cu): reads every value and the tensor table, writes a
/// summary per chunk (read back by the merging warp: counted once) and per tensor, reads and
/// resets a counter per tensor. Per value in f64: an add (the sum), a subtract, multiply and
/// add (the squared deviation).
fn tensor_stats(p: &Params, _: Grid) -> Option<Work> {
    let (values, tensors) = (chunk_values(p)?, p.u("num_tensors")?);
    let chunks = p.u("total_chunks")?;
    let bytes = F * values + STATS * (chunks + tensors) + (TENSOR_DESC + 2.0 * F) * tensors;
    Some(Work::new(Unit::Fp64, 4.0 * values, bytes))
}

/// Modulation in place (kernels/modulate.cu): reads and writes every value, reads the tensor
/// table, the statistics and the state. Per value: `k g` (one multiply) or, with noise,
/// `k g + sigma z` (two multiplies and an add). The noise itself (Xoshiro256++ in integer
/// arithmetic and the normal conversion) is not counted, so a noisy launch's compute bound is
/// understated.
fn modulate(p: &Params, _: Grid) -> Option<Work> {
    let (values, tensors) = (chunk_values(p)?, p.u("num_tensors")?);
    let noise = match p.arg("noise")? {
        Arg::U32(v) => v != 0,
        _ => return None,
    };
    let bytes = 2.0 * F * values + (TENSOR_DESC + STATS) * tensors + BALANCE_STATE;
    Some(Work::new(
        Unit::Fp32,
        values * if noise { 3.0 } else { 1.0 },
        bytes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::check_args;

    /// Builds `spec`'s arguments from (name, value) pairs, zero (or null) for the rest, and
    /// checks them against the declaration.
    fn args(spec: &KernelSpec, set: &[(&str, Arg)]) -> Vec<Arg> {
        let out: Vec<Arg> = spec
            .params
            .iter()
            .map(|(name, ty)| {
                if let Some((_, a)) = set.iter().find(|(n, _)| n == name) {
                    return *a;
                }
                match ty {
                    crate::engine::ParamTy::Ptr => Arg::Ptr(0),
                    crate::engine::ParamTy::U32 => Arg::U32(0),
                    crate::engine::ParamTy::U64 => Arg::U64(0),
                    crate::engine::ParamTy::F32 => Arg::F32(0.0),
                    crate::engine::ParamTy::F64 => Arg::F64(0.0),
                }
            })
            .collect();
        check_args(spec, &out).unwrap();
        out
    }

    fn est(spec: &KernelSpec, grid: Grid, set: &[(&str, Arg)]) -> Work {
        estimate(spec, grid, &args(spec, set)).unwrap()
    }

    fn one() -> Grid {
        Grid::linear(1, 256)
    }

    use Arg::{Ptr, F32, U32, U64};

    #[test]
    fn every_kernel_has_an_estimate_or_a_documented_reason() {
        for spec in k::ALL {
            let estimated = ESTIMATES.iter().filter(|(s, _)| s == spec).count();
            let without = WITHOUT_ESTIMATE.iter().filter(|(s, _)| s == spec).count();
            assert_eq!(
                estimated + without,
                1,
                "{}: {estimated} estimates, {without} entries without",
                spec.name
            );
        }
        for (spec, why) in WITHOUT_ESTIMATE {
            assert!(!why.is_empty());
            let a = args(spec, &[]);
            assert_eq!(estimate(spec, one(), &a), None, "{}", spec.name);
        }
        assert_eq!(ESTIMATES.len() + WITHOUT_ESTIMATE.len(), k::ALL.len());
    }

    /// Every estimator reads only parameters its kernel declares, with their types: with
    /// every size 1 and every pointer set, each gives a finite, positive traffic.
    #[test]
    fn every_estimator_reads_declared_parameters() {
        for (spec, _) in ESTIMATES {
            let set: Vec<(&str, Arg)> = spec
                .params
                .iter()
                .map(|(name, ty)| {
                    let a = match ty {
                        crate::engine::ParamTy::Ptr => Ptr(256),
                        crate::engine::ParamTy::U32 => U32(1),
                        crate::engine::ParamTy::U64 => U64(1),
                        crate::engine::ParamTy::F32 => F32(1.0),
                        crate::engine::ParamTy::F64 => Arg::F64(1.0),
                    };
                    (*name, a)
                })
                .collect();
            let w = est(spec, one(), &set);
            assert!(w.bytes > 0.0 && w.bytes.is_finite(), "{}: {w:?}", spec.name);
            assert!(w.flops().is_finite(), "{}", spec.name);
        }
    }

    #[test]
    fn wrong_arguments_give_no_estimate() {
        assert_eq!(estimate(&k::GEMM, one(), &[U32(2)]), None);
    }

    fn gemm_args(m: u32, n: u32, kk: u32, beta: f32) -> Vec<(&'static str, Arg)> {
        vec![
            ("m", U32(m)),
            ("n", U32(n)),
            ("k", U32(kk)),
            ("alpha", F32(1.0)),
            ("beta", F32(beta)),
        ]
    }

    #[test]
    fn gemm_is_2mnk_and_each_operand_once() {
        // m 2, n 3, k 4: 2 * 2 * 3 * 4 = 48 operations; A 8 + B 12 + C 6 values.
        let w = est(&k::GEMM, one(), &gemm_args(2, 3, 4, 0.0));
        assert_eq!(w, Work::new(Unit::Fp32, 48.0, 4.0 * (8.0 + 12.0 + 6.0)));
        assert_eq!(w.main_unit(), Some(Unit::Fp32));
        // beta != 0 reads C as well.
        let w = est(&k::GEMM_BIG, one(), &gemm_args(2, 3, 4, 1.0));
        assert_eq!(w, Work::new(Unit::Fp32, 48.0, 4.0 * (8.0 + 12.0 + 12.0)));
        // The tensor-core kernels count on their unit.
        let w = est(&k::GEMM_TF32, one(), &gemm_args(2, 3, 4, 0.0));
        assert_eq!(w, Work::new(Unit::Tf32, 48.0, 104.0));
        let w = est(&k::GEMM_BF16, one(), &gemm_args(2, 3, 4, 0.0));
        assert_eq!(
            (w.bf16, w.fp32, w.main_unit()),
            (48.0, 0.0, Some(Unit::Bf16))
        );
        // Split-K in 2 slices (grid z 2): the same operations, one m x n slice written each.
        let g = Grid {
            blocks: [1, 1, 2],
            threads: 256,
        };
        let w = est(&k::GEMM, g, &gemm_args(2, 3, 4, 0.0));
        assert_eq!(w, Work::new(Unit::Fp32, 48.0, 4.0 * (8.0 + 12.0 + 12.0)));
    }

    #[test]
    fn row_moments_add_their_f64_work_and_three_values_per_row_and_tile() {
        // m 2, n 3 over 2 column tiles (grid x): 4 f64 operations per output value (24), 3 f64
        // per row and tile (12) written; nothing more without the pointer.
        let g = Grid {
            blocks: [2, 1, 1],
            threads: 256,
        };
        let mut set = gemm_args(2, 3, 4, 0.0);
        let plain = est(&k::GEMM_TF32, g, &set);
        set.push(("moments", Ptr(256)));
        let w = est(&k::GEMM_TF32, g, &set);
        assert_eq!(w, plain + Work::new(Unit::Fp64, 24.0, 8.0 * 12.0));
        let conv = [
            ("cin", U32(1)),
            ("batch", U32(1)),
            ("h", U32(3)),
            ("w", U32(3)),
            ("ksize", U32(1)),
            ("stride", U32(1)),
            ("oh", U32(3)),
            ("ow", U32(3)),
        ];
        let mut set: Vec<_> = gemm_args(2, 9, 1, 0.0).into_iter().chain(conv).collect();
        let plain = est(&k::GEMM_CONV_FWD, g, &set);
        set.push(("moments", Ptr(256)));
        let w = est(&k::GEMM_CONV_FWD, g, &set);
        assert_eq!(w, plain + Work::new(Unit::Fp64, 72.0, 8.0 * 12.0));
    }

    #[test]
    fn sum_slices_reads_every_slice() {
        // 3 slices of 2 x 2: reads 12, writes 4; 3 adds and a multiply per value.
        let set = [
            ("splits", U32(3)),
            ("rows", U32(2)),
            ("cols", U32(2)),
            ("beta", F32(0.0)),
        ];
        let w = est(&k::SUM_SLICES, one(), &set);
        assert_eq!(w, Work::new(Unit::Fp32, 16.0, 4.0 * 16.0));
        // beta != 0: C read too, and beta C added.
        let set = [
            ("splits", U32(3)),
            ("rows", U32(2)),
            ("cols", U32(2)),
            ("beta", F32(0.5)),
        ];
        let w = est(&k::SUM_SLICES, one(), &set);
        assert_eq!(w, Work::new(Unit::Fp32, 24.0, 4.0 * 20.0));
    }

    fn conv(
        cin: u32,
        n: u32,
        h: u32,
        kk: u32,
        stride: u32,
        pad: u32,
        o: u32,
    ) -> Vec<(&'static str, Arg)> {
        vec![
            ("cin", U32(cin)),
            ("n", U32(n)),
            ("h", U32(h)),
            ("w", U32(h)),
            ("k", U32(kk)),
            ("stride", U32(stride)),
            ("pad", U32(pad)),
            ("oh", U32(o)),
            ("ow", U32(o)),
        ]
    }

    #[test]
    fn window_counts_follow_the_definition() {
        // len 3, k 3, stride 1, pad 1, 3 outputs: windows [-1, 1], [0, 2], [1, 3]; every input
        // read, 2 + 3 + 2 = 7 taps inside.
        assert_eq!(window(3, 3, 1, 1, 3), Some((3, 7)));
        // len 4, k 1, stride 2, no pad, 2 outputs: inputs 0 and 2 only.
        assert_eq!(window(4, 1, 2, 0, 2), Some((2, 2)));
        // len 4, k 3, stride 2, pad 1, 2 outputs: [-1, 1], [1, 3]: all 4 read, 2 + 3 taps.
        assert_eq!(window(4, 3, 2, 1, 2), Some((4, 5)));
    }

    #[test]
    fn im2col_and_col2im() {
        // 2 channels x 1 image of 3 x 3, k 3, stride 1, pad 1, 3 x 3 outputs: col has
        // 2 * 9 rows x 9 columns = 162 values; all 18 inputs read.
        let w = est(&k::IM2COL, one(), &conv(2, 1, 3, 3, 1, 1, 3));
        assert_eq!(w, Work::bytes(4.0 * (18.0 + 162.0)));
        // col2im reads the 7 x 7 in-range taps per plane (98), one add each, writes 18.
        let w = est(&k::COL2IM, one(), &conv(2, 1, 3, 3, 1, 1, 3));
        assert_eq!(w, Work::new(Unit::Fp32, 98.0, 4.0 * (98.0 + 18.0)));
        // A 1 x 1 stride-2 convolution of a 4 x 4 input reads 2 x 2 of its 16 values.
        let w = est(&k::IM2COL, one(), &conv(1, 1, 4, 1, 2, 0, 2));
        assert_eq!(w, Work::bytes(4.0 * (4.0 + 4.0)));
    }

    #[test]
    fn implicit_conv_gemm_reads_the_input_not_the_lowered_matrix() {
        // Forward of 2 channels x 1 image of 3 x 3, k 3, stride 1, pad 1, 4 output channels:
        // m 4, n 9, k 18: 2 * 4 * 9 * 18 operations; A 72 + the 18 inputs + C 36 values.
        let set = [
            ("m", U32(4)),
            ("n", U32(9)),
            ("k", U32(18)),
            ("beta", F32(0.0)),
            ("cin", U32(2)),
            ("batch", U32(1)),
            ("h", U32(3)),
            ("w", U32(3)),
            ("ksize", U32(3)),
            ("stride", U32(1)),
            ("pad", U32(1)),
            ("oh", U32(3)),
            ("ow", U32(3)),
        ];
        let want = Work::new(Unit::Fp32, 1296.0, 4.0 * (72.0 + 18.0 + 36.0));
        for spec in [k::GEMM_CONV_FWD, k::GEMM_BIG_CONV_FWD] {
            assert_eq!(est(&spec, one(), &set), want, "{}", spec.name);
        }
        // A 1 x 1 stride-2 weight gradient of a 4 x 4 input reads 2 x 2 of its 16 values; two
        // split-K slices write C twice. m 3 (cout), n 1 (cin), k 4 (pixels).
        let set = [
            ("m", U32(3)),
            ("n", U32(1)),
            ("k", U32(4)),
            ("beta", F32(0.0)),
            ("cin", U32(1)),
            ("batch", U32(1)),
            ("h", U32(4)),
            ("w", U32(4)),
            ("ksize", U32(1)),
            ("stride", U32(2)),
            ("pad", U32(0)),
            ("oh", U32(2)),
            ("ow", U32(2)),
        ];
        let g = Grid {
            blocks: [1, 1, 2],
            threads: 256,
        };
        let want = Work::new(Unit::Fp32, 24.0, 4.0 * (12.0 + 4.0 + 6.0));
        for spec in [k::GEMM_CONV_WGRAD, k::GEMM_BIG_CONV_WGRAD] {
            assert_eq!(est(&spec, g, &set), want, "{}", spec.name);
        }
    }

    #[test]
    fn implicit_data_gradient_reads_dy_not_the_column_gradient() {
        // 4 output channels x 1 image of 3 x 3 (k 3, pad 1) back to 2 input channels: m 2, n 9,
        // k 36: 2 * 2 * 9 * 36 operations; A 72 + dy 36 + C 18 values.
        let set = [
            ("m", U32(2)),
            ("n", U32(9)),
            ("k", U32(36)),
            ("beta", F32(0.0)),
            ("cout", U32(4)),
            ("batch", U32(1)),
            ("oh", U32(3)),
            ("ow", U32(3)),
        ];
        for (spec, unit) in [
            (k::GEMM_CONV_DGRAD, Unit::Fp32),
            (k::GEMM_BIG_CONV_DGRAD, Unit::Fp32),
            (k::GEMM_TF32_CONV_DGRAD, Unit::Tf32),
            (k::GEMM_BF16_CONV_DGRAD, Unit::Bf16),
        ] {
            let want = Work::new(unit, 1296.0, 4.0 * (72.0 + 36.0 + 18.0));
            assert_eq!(est(&spec, one(), &set), want, "{}", spec.name);
        }
    }

    #[test]
    fn batch_norm() {
        // 3 channels (grid x) of 10 values, one slice each: x read, y written (60), 10 values
        // per channel (30); the normalisation in f32 (60), the sums in f64 (120).
        let set = [("len", U32(10)), ("residual", Ptr(0)), ("y", Ptr(256))];
        let w = est(&k::BN_TRAIN, Grid::linear(3, 256), &set);
        let want = Work::new(Unit::Fp32, 60.0, 4.0 * (60.0 + 30.0)).plus(Unit::Fp64, 120.0);
        assert_eq!(w, want);
        // With a residual: read too (30 more), and added (30 more f32 operations).
        let res = [("len", U32(10)), ("residual", Ptr(256)), ("y", Ptr(256))];
        let w = est(&k::BN_TRAIN, Grid::linear(3, 256), &res);
        let want = Work::new(Unit::Fp32, 90.0, 4.0 * (90.0 + 30.0)).plus(Unit::Fp64, 120.0);
        assert_eq!(w, want);
        // Split in 2 slices (grid y): the sums move to the partial kernel (x read, 6 pairs of
        // f64 written); the main kernel reads and adds the pairs.
        let split = Grid {
            blocks: [3, 2, 1],
            threads: 256,
        };
        let w = est(&k::BN_TRAIN_PARTIAL, split, &set);
        assert_eq!(w, Work::new(Unit::Fp64, 120.0, 4.0 * 30.0 + 8.0 * 12.0));
        let w = est(&k::BN_TRAIN, split, &set);
        let want =
            Work::new(Unit::Fp32, 60.0, 4.0 * (60.0 + 30.0) + 8.0 * 12.0).plus(Unit::Fp64, 12.0);
        assert_eq!(w, want);
        // Sums from a GEMM's row moments in tiles of 4 (3 tiles a channel): 27 f64 read once,
        // 7 operations per tile in each of the 6 blocks (126).
        let mut moments = vec![("len", U32(10)), ("residual", Ptr(0)), ("tile_w", U32(4))];
        moments.push(("y", Ptr(256)));
        let w = est(&k::BN_TRAIN, split, &moments);
        let want =
            Work::new(Unit::Fp32, 60.0, 4.0 * (60.0 + 30.0) + 8.0 * 27.0).plus(Unit::Fp64, 126.0);
        assert_eq!(w, want);
        // The statistics alone (y null): the slice-0 blocks add the moments (63), nothing per
        // value; unsplit, x read once for the sums.
        moments.pop();
        let w = est(&k::BN_TRAIN, split, &moments);
        assert_eq!(
            w,
            Work::new(Unit::Fp32, 0.0, 4.0 * 30.0 + 8.0 * 27.0).plus(Unit::Fp64, 63.0)
        );
        let w = est(&k::BN_TRAIN, Grid::linear(3, 256), &set[..2]);
        let want = Work::new(Unit::Fp32, 0.0, 4.0 * (30.0 + 30.0)).plus(Unit::Fp64, 120.0);
        assert_eq!(w, want);
        // The evaluation values in the saved layout: 4 vectors of 3 read, 4 written.
        let w = est(&k::BN_EVAL_SAVED, one(), &[("c", U32(3))]);
        assert_eq!(w, Work::new(Unit::Fp64, 21.0, 4.0 * 24.0));
        // Evaluation: the scale and shift once per block (7 f64 operations).
        let w = est(&k::BN_EVAL, Grid::linear(3, 256), &set);
        let want = Work::new(Unit::Fp32, 60.0, 4.0 * (60.0 + 12.0)).plus(Unit::Fp64, 21.0);
        assert_eq!(w, want);
        let w = est(&k::BN_EVAL, split, &set);
        assert_eq!(w, want.plus(Unit::Fp64, 21.0));
        let w = est(&k::BN_EVAL, Grid::linear(3, 256), &res);
        let want = Work::new(Unit::Fp32, 90.0, 4.0 * (90.0 + 12.0)).plus(Unit::Fp64, 21.0);
        assert_eq!(w, want);
        // Backward without the ReLU: x, dy, dx (90) and 5 per channel (15). With it, 2 more per
        // channel (its scale and shift) and its mask recomputed in both passes (60 more f32
        // operations), no array more.
        let set = [("len", U32(10)), ("relu", U32(0))];
        let w = est(&k::BN_BACKWARD, Grid::linear(3, 256), &set);
        let want = Work::new(Unit::Fp32, 210.0, 4.0 * (90.0 + 15.0)).plus(Unit::Fp64, 60.0);
        assert_eq!(w, want);
        let relu = [("len", U32(10)), ("relu", U32(1))];
        let w = est(&k::BN_BACKWARD, Grid::linear(3, 256), &relu);
        let want = Work::new(Unit::Fp32, 330.0, 4.0 * (90.0 + 21.0)).plus(Unit::Fp64, 60.0);
        assert_eq!(w, want);
        // Split: the partial kernel reads x and dy (60) and the mean per block (6), writes 6
        // pairs; the main kernel reads those too, and computes dx only.
        let w = est(&k::BN_BACKWARD_PARTIAL, split, &set);
        let want = Work::new(Unit::Fp32, 60.0, 4.0 * 66.0 + 8.0 * 12.0).plus(Unit::Fp64, 60.0);
        assert_eq!(w, want);
        let w = est(&k::BN_BACKWARD, split, &set);
        let want =
            Work::new(Unit::Fp32, 150.0, 4.0 * (90.0 + 15.0) + 8.0 * 12.0).plus(Unit::Fp64, 12.0);
        assert_eq!(w, want);
        let w = est(&k::BN_BACKWARD_PARTIAL, split, &relu);
        let want = Work::new(Unit::Fp32, 120.0, 4.0 * 78.0 + 8.0 * 12.0).plus(Unit::Fp64, 60.0);
        assert_eq!(w, want);
    }

    #[test]
    fn element_wise() {
        let n = [("n", U64(10))];
        assert_eq!(est(&k::FILL, one(), &n), Work::bytes(40.0));
        assert_eq!(est(&k::COPY, one(), &n), Work::bytes(80.0));
        assert_eq!(
            est(&k::ADD_ASSIGN, one(), &n),
            Work::new(Unit::Fp32, 10.0, 120.0)
        );
        assert_eq!(est(&k::RELU_BACKWARD, one(), &n), Work::bytes(80.0));
        assert_eq!(
            est(&k::GATE_FORWARD, one(), &n),
            Work::new(Unit::Fp32, 40.0, 160.0)
        );
        assert_eq!(
            est(&k::GATE_BACKWARD, one(), &n),
            Work::new(Unit::Fp32, 50.0, 200.0)
        );
        // [2][3][4] to [3][2][4]: 24 values read and written.
        let set = [("a", U32(2)), ("b", U32(3)), ("inner", U32(4))];
        assert_eq!(est(&k::SWAP_OUTER, one(), &set), Work::bytes(4.0 * 48.0));
        // 2 rows x 3 outputs: y read and written (12), bias read (3); multiply and add.
        let set = [("rows", U32(2)), ("out", U32(3))];
        assert_eq!(
            est(&k::BIAS_ADD, one(), &set),
            Work::new(Unit::Fp32, 12.0, 4.0 * 15.0)
        );
        assert_eq!(
            est(&k::COL_SUM, one(), &set),
            Work::new(Unit::Fp32, 6.0, 4.0 * 9.0)
        );
        // FiLM, 2 rows of d 3: forward reads h (12) and x (6), writes z (6).
        let set = [("rows", U32(2)), ("d", U32(3))];
        assert_eq!(
            est(&k::FILM_FORWARD, one(), &set),
            Work::new(Unit::Fp32, 12.0, 4.0 * 24.0)
        );
        // Backward reads gamma (6), x (6), dz (6); writes dh (12), dx (6).
        assert_eq!(
            est(&k::FILM_BACKWARD, one(), &set),
            Work::new(Unit::Fp32, 12.0, 4.0 * 36.0)
        );
    }

    #[test]
    fn pooling() {
        // 2 planes of 4 x 4, k 3, stride 2, pad 1, 2 x 2 outputs: every input read (32), 8
        // outputs and 8 indices written.
        let mut set = conv(0, 0, 4, 3, 2, 1, 2);
        set.push(("planes", U32(2)));
        assert_eq!(
            est(&k::MAXPOOL_FORWARD, one(), &set),
            Work::bytes(4.0 * (32.0 + 16.0))
        );
        // A batch norm of 2 channels applied as it reads: a multiply and add per read (at most
        // 9 per output: 144) and 2 values per channel (4) read.
        let mut bn = set.clone();
        bn.extend([("bn_saved", Ptr(256)), ("bn_c", U32(2))]);
        assert_eq!(
            est(&k::MAXPOOL_FORWARD, one(), &bn),
            Work::new(Unit::Fp32, 144.0, 4.0 * (32.0 + 16.0 + 4.0))
        );
        // Backward: reads 8 indices and 8 gradients, adds each gradient once, writes 32.
        assert_eq!(
            est(&k::MAXPOOL_BACKWARD, one(), &set),
            Work::new(Unit::Fp32, 8.0, 4.0 * (16.0 + 32.0))
        );
        // Average of 2 x 3 runs of 5: reads 30 (f64 adds), writes 6.
        let set = [("c", U32(2)), ("b", U32(3)), ("run", U32(5))];
        assert_eq!(
            est(&k::AVGPOOL_FORWARD, one(), &set),
            Work::new(Unit::Fp64, 30.0, 4.0 * 36.0)
        );
        assert_eq!(
            est(&k::AVGPOOL_BACKWARD, one(), &set),
            Work::new(Unit::Fp32, 30.0, 4.0 * 36.0)
        );
    }

    #[test]
    fn losses() {
        // 2 rows x 3 classes with the gradient: logits 6 and gradient 6 (f32), labels 2 (u32),
        // losses 2 (f64); 7 f64 operations per logit.
        let set = [("rows", U32(2)), ("classes", U32(3)), ("dlogits", Ptr(256))];
        assert_eq!(
            est(&k::SOFTMAX_XENT, one(), &set),
            Work::new(Unit::Fp64, 42.0, 4.0 * 14.0 + 8.0 * 2.0)
        );
        // Loss only: 3 per logit, no gradient written.
        let set = [("rows", U32(2)), ("classes", U32(3))];
        assert_eq!(
            est(&k::SOFTMAX_XENT, one(), &set),
            Work::new(Unit::Fp64, 18.0, 4.0 * 8.0 + 8.0 * 2.0)
        );
        // 4 losses summed into one slot.
        let set = [("rows", U32(4))];
        assert_eq!(
            est(&k::SUM_LOSSES, one(), &set),
            Work::new(Unit::Fp64, 4.0, 40.0)
        );
        // Scores: 2 matrices of 2 x 3 logits and 2 labels read, 2 f64 scores written.
        let set = [("batch", U32(2)), ("classes", U32(3))];
        assert_eq!(
            est(&k::SCORES, one(), &set),
            Work::new(Unit::Fp64, 36.0, 4.0 * 14.0 + 16.0)
        );
        // The loss stage: 3 matrices (18) and labels (2) read, gradient (6) written, 6 row
        // losses and 3 losses (f64), the 80-byte state; 3 * 3 + 4 = 13 per logit.
        assert_eq!(
            est(&k::STEP_LOSSES, one(), &set),
            Work::new(Unit::Fp64, 78.0, 4.0 * 26.0 + 8.0 * 9.0 + 80.0)
        );
    }

    #[test]
    fn optimisers() {
        // Adam, 10 values: 4 arrays read, 3 written; 14 (decoupled) or 15 operations each.
        let set = [("n", U64(10)), ("decoupled", U32(1))];
        assert_eq!(
            est(&k::ADAM, one(), &set),
            Work::new(Unit::Fp32, 140.0, 280.0)
        );
        let set = [("n", U64(10)), ("decoupled", U32(0))];
        assert_eq!(est(&k::ADAM, one(), &set).fp32, 150.0);
        // SGD after the first step with momentum and decay: p, g, buf read, p, buf written;
        // 6 operations per value.
        let set = [
            ("n", U64(10)),
            ("momentum", F32(0.9)),
            ("weight_decay", F32(1e-4)),
        ];
        assert_eq!(
            est(&k::SGD, one(), &set),
            Work::new(Unit::Fp32, 60.0, 200.0)
        );
        // First step: the buffer is written, not read, and the momentum term is skipped.
        let mut first = set.to_vec();
        first.push(("first_step", U32(1)));
        assert_eq!(
            est(&k::SGD, one(), &first),
            Work::new(Unit::Fp32, 40.0, 160.0)
        );
        // Plain SGD: p, g read, p written; the update only.
        let set = [("n", U64(10))];
        assert_eq!(
            est(&k::SGD, one(), &set),
            Work::new(Unit::Fp32, 20.0, 120.0)
        );
    }

    #[test]
    fn ogm_ge_kernels() {
        // 3 chunks over 2 tensors: 3072 values.
        let set = [("num_tensors", U32(2)), ("total_chunks", U64(3))];
        let w = est(&k::TENSOR_STATS, one(), &set);
        let bytes = 4.0 * 3072.0 + 32.0 * 5.0 + (40.0 + 8.0) * 2.0;
        assert_eq!(w, Work::new(Unit::Fp64, 4.0 * 3072.0, bytes));
        let w = est(&k::MODULATE, one(), &set);
        let bytes = 8.0 * 3072.0 + 72.0 * 2.0 + 80.0;
        assert_eq!(w, Work::new(Unit::Fp32, 3072.0, bytes));
        let mut noisy = set.to_vec();
        noisy.push(("noise", U32(1)));
        assert_eq!(est(&k::MODULATE, one(), &noisy).fp32, 3.0 * 3072.0);
    }

    #[test]
    fn totals_sum_launches_and_lose_the_work_of_an_unknown_one() {
        let mut t = KernelTotals::default();
        t.record(1.0, Some(Work::bytes(10.0)));
        t.record(2.0, Some(Work::new(Unit::Fp32, 5.0, 10.0)));
        assert_eq!(t.ms, 3.0);
        assert_eq!(t.launches, 2);
        assert_eq!(t.work, Some(Work::new(Unit::Fp32, 5.0, 20.0)));
        t.record(1.0, None);
        assert_eq!((t.launches, t.work), (3, None));
        t.record(1.0, Some(Work::bytes(1.0)));
        assert_eq!(t.work, None);
    }

    /// An H100 SXM5's attributes as CUDA reports them.
    const H100_SXM: DeviceAttrs = DeviceAttrs {
        sms: 132,
        clock_khz: 1_980_000,
        mem_clock_khz: 2_619_000,
        bus_bits: 5120,
        cc: (9, 0),
    };

    fn close(got: Option<f64>, want: f64, rel: f64) -> bool {
        got.is_some_and(|g| ((g - want) / want).abs() < rel)
    }

    #[test]
    fn h100_peaks_match_the_published_figures() {
        let p = peaks(&H100_SXM);
        // NVIDIA: 66.9 TFLOP/s FP32, 33.5 FP64 (non-tensor), 3.35 TB/s HBM3.
        assert!(close(p.fp32, 66.9e12, 0.002), "{p:?}");
        assert!(close(p.fp64, 33.5e12, 0.002), "{p:?}");
        assert!(close(Some(p.dram), 3.35e12, 0.002), "{p:?}");
        // Dense tensor peaks at the 1980 MHz maximum clock: 1070 (BF16) and 535 (TF32), 8%
        // above NVIDIA's 989.4 and 494.7, which assume 1830 MHz (see per_sm_per_clock).
        assert!(close(p.bf16, 1070.5e12, 0.001), "{p:?}");
        assert!(close(p.tf32, 535.2e12, 0.001), "{p:?}");
        let at_1830 = peaks(&DeviceAttrs {
            clock_khz: 1_830_000,
            ..H100_SXM
        });
        assert!(close(at_1830.bf16, 989.4e12, 0.001), "{at_1830:?}");
        assert!(close(at_1830.tf32, 494.7e12, 0.001), "{at_1830:?}");
    }

    #[test]
    fn a100_peaks_match_the_published_figures() {
        // A100 SXM4 40 GB: 108 SMs, 1410 MHz, HBM2e at 1215 MHz on 5120 bits.
        let p = peaks(&DeviceAttrs {
            sms: 108,
            clock_khz: 1_410_000,
            mem_clock_khz: 1_215_000,
            bus_bits: 5120,
            cc: (8, 0),
        });
        // NVIDIA: 19.5 TFLOP/s FP32, 9.7 FP64, 156 TF32, 312 BF16, 1555 GB/s.
        assert!(close(p.fp32, 19.5e12, 0.003), "{p:?}");
        assert!(close(p.fp64, 9.7e12, 0.006), "{p:?}");
        assert!(close(p.tf32, 156e12, 0.003), "{p:?}");
        assert!(close(p.bf16, 312e12, 0.003), "{p:?}");
        assert!(close(Some(p.dram), 1555e9, 0.001), "{p:?}");
    }

    #[test]
    fn unknown_architectures_keep_the_bandwidth() {
        let p = peaks(&DeviceAttrs {
            cc: (8, 6),
            ..H100_SXM
        });
        assert_eq!((p.fp32, p.bf16), (None, None));
        assert!(p.dram > 0.0);
        // Traffic-only work still has a bound; work on an unknown unit has none.
        assert!(Work::bytes(1.0).min_seconds(&p).is_some());
        assert_eq!(Work::new(Unit::Fp32, 1.0, 1.0).min_seconds(&p), None);
    }

    #[test]
    fn the_bound_is_the_slowest_roof() {
        let p = Peaks {
            fp32: Some(100.0),
            fp64: Some(50.0),
            tf32: Some(1000.0),
            bf16: Some(2000.0),
            dram: 10.0,
        };
        // 100 bytes at 10/s: 10 s; 500 FP32 ops at 100/s: 5 s. DRAM-bound.
        let w = Work::new(Unit::Fp32, 500.0, 100.0);
        assert_eq!(w.min_seconds(&p), Some((10.0, "dram")));
        assert_eq!(w.peak_fraction(20.0, &p), Some(0.5));
        // 1000 FP64 ops: 20 s. FP64-bound.
        let w = w.plus(Unit::Fp64, 1000.0);
        assert_eq!(w.min_seconds(&p), Some((20.0, "fp64")));
        assert_eq!(w.flops(), 1500.0);
        assert_eq!(w.main_unit(), Some(Unit::Fp64));
        assert_eq!(w.peak_fraction(0.0, &p), None);
    }
}
