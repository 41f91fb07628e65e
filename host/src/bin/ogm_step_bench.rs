//! `ogm-step-bench`: full training steps per second of the paper model on the GPU (feature
//! `cuda`), the step the trainer runs with `--device cuda` (forward, cross-entropy, backward,
//! per-modality scores, OGM-GE with alpha 0.8 inside its window, SGD lr 1e-3 momentum 0.9
//! weight decay 1e-4), FP32 by default, `--precision tf32` or `--precision bf16` for the TF32
//! or BF16 tensor-core GEMMs (`ogm_gpu::engine::ops::Precision`). Batch 64 by default,
//! CREMA-D shapes (audio 1x257x188, visual 3x1x224x224), concat fusion, 6 classes: the same
//! step as scripts/bench_torch_step_gpu.py (whose `eager_tf32` and `eager_bf16` variants are
//! the TF32 and BF16 baselines). `--conv implicit` runs the convolutions' forward and
//! weight-gradient products as implicit GEMMs (`ogm_gpu::engine::ops::ConvAlgo`; `--conv
//! im2col`, the default, materialises the lowered input), to compare the two on a device.
//!
//! Prints one line `STEP_JSON {"impl":"ogm_fp32",...,"steps_per_s":..,"kernels":[...]}`
//! (`ogm_tf32` / `ogm_bf16` with `--precision`; the `precision` key names it too; `_implicit`
//! appended with `--conv implicit`, which the `conv` key names too): the
//! throughput over `--steps` steps after `--warmup`, and each kernel's time per step and share
//! of the step, measured with CUDA events over `--profile-steps` further steps (events around
//! every launch slow those steps a little; the throughput is measured without them).
//!
//! Each kernel entry also says how close the kernel runs to the device's peak:
//! `gflops_per_s` and `gbytes_per_s` are its estimated work over its measured time (flops by
//! unit and minimum DRAM traffic, `ogm_gpu::engine::work::estimate`: each input read once,
//! each output written once, so `gbytes_per_s` is a lower bound of the traffic it moved),
//! `peak_fraction` is its roofline bound over its time (the larger of achieved/peak flop/s
//! for each unit it uses and achieved/peak bandwidth; 1 is the roof), and `bound` names the
//! roof that sets it (`fp32`, `fp64`, `tf32`, `bf16` or `dram`); all null for a kernel
//! without an estimate. The top-level `peaks` object holds the device's peaks
//! (`CudaDevice::peaks`: attributes x a per-architecture table; the tensor peaks use the
//! maximum clock the device reports, above the clock of NVIDIA's published tensor figures on
//! an H100, so these fractions are conservative) and the attributes they come from.
//! Exit status 2 when there is no GPU.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use ogm_core::Mode;
use ogm_gpu::cuda::CudaDevice;
use ogm_gpu::engine::Device;
use ogm_host::config::TrainConfig;
use ogm_host::data::loader::Batch;
use ogm_host::engine::gpu::{ConvAlgo, GpuBackend, Precision};
use ogm_host::engine::{AvModel, FusionKind, ModelConfig};
use ogm_host::train::optimizer::Optimizer;
use ogm_host::train::{StepArgs, StepBackend};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

struct Args {
    batch: usize,
    steps: usize,
    warmup: usize,
    profile_steps: usize,
    precision: Precision,
    conv: ConvAlgo,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        batch: 64,
        steps: 20,
        warmup: 3,
        profile_steps: 3,
        precision: Precision::Fp32,
        conv: ConvAlgo::Im2col,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let text = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if flag == "--precision" {
            a.precision = Precision::parse(&text)
                .ok_or_else(|| format!("--precision: `{text}` is not fp32, tf32 or bf16"))?;
            continue;
        }
        if flag == "--conv" {
            a.conv = ConvAlgo::parse(&text)
                .ok_or_else(|| format!("--conv: `{text}` is not im2col or implicit"))?;
            continue;
        }
        let value = text.parse::<usize>().map_err(|e| format!("{flag}: {e}"))?;
        match flag.as_str() {
            "--batch" => a.batch = value,
            "--steps" => a.steps = value,
            "--warmup" => a.warmup = value,
            "--profile-steps" => a.profile_steps = value,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.batch == 0 || a.steps == 0 {
        return Err("--batch and --steps must be positive".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ogm-step-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args = parse()?;
    let dev = match CudaDevice::probe()? {
        Ok(d) => Arc::new(d),
        Err(why) => {
            eprintln!("ogm-step-bench: no GPU: {why}");
            return Ok(ExitCode::from(2));
        }
    };
    let name = dev.name().to_string();
    let classes = 6;
    let mut backend = GpuBackend::new(dev.clone());
    backend.set_precision(args.precision);
    backend.set_conv_algo(args.conv);
    let mut model = AvModel::new(backend, ModelConfig::paper(classes, FusionKind::Concat), 0)?;
    let config = TrainConfig {
        modulation: Mode::OgmGe,
        alpha: 0.8,
        batch_size: args.batch,
        ..TrainConfig::default()
    };
    let schedule = config.schedule()?;
    let mut opt = Optimizer::new(&config);
    let b = args.batch;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut uniform =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect() };
    let batch = Batch {
        audio: uniform(b * 257 * 188),
        audio_shape: [b, 1, 257, 188],
        visual: uniform(b * 3 * 224 * 224),
        visual_shape: [b, 3, 1, 224, 224],
        labels: (0..b).map(|i| (i % classes) as u32).collect(),
        indices: (0..b).collect(),
    };
    let lr = config.learning_rate;
    let mut step = 0u64;
    // Steps are queued as the trainer queues them (no wait per step; the host reads the
    // device's log ring every LOG_SLOTS steps), and their records kept for the last loss.
    let mut done = Vec::new();
    let mut one = |model: &mut AvModel<_>, opt: &mut Optimizer<_>, done: &mut Vec<_>| {
        step += 1;
        let args = StepArgs {
            schedule: &schedule,
            config: &config,
            epoch: 0,
            step,
            lr,
        };
        GpuBackend::queue_step(model, opt, &args, &batch, done)
    };
    for _ in 0..args.warmup {
        one(&mut model, &mut opt, &mut done)?;
    }
    GpuBackend::finish_steps(&mut model, &mut done)?;
    dev.synchronize()?;
    let t = Instant::now();
    for _ in 0..args.steps {
        one(&mut model, &mut opt, &mut done)?;
    }
    GpuBackend::finish_steps(&mut model, &mut done)?;
    dev.synchronize()?;
    let ms = t.elapsed().as_secs_f64() * 1e3 / args.steps as f64;
    let loss = done.last().map_or(f64::NAN, |r| r.loss);

    let mut kernels = Vec::new();
    let peaks = dev.peaks();
    if args.profile_steps > 0 {
        dev.set_profiling(true)?;
        let t = Instant::now();
        for _ in 0..args.profile_steps {
            one(&mut model, &mut opt, &mut done)?;
        }
        GpuBackend::finish_steps(&mut model, &mut done)?;
        dev.synchronize()?;
        let prof_ms = t.elapsed().as_secs_f64() * 1e3 / args.profile_steps as f64;
        let profile = dev.take_profile()?;
        dev.set_profiling(false)?;
        let n = args.profile_steps as f64;
        let mut rows: Vec<_> = profile.into_iter().collect();
        rows.sort_by(|a, b| b.1.ms.total_cmp(&a.1.ms));
        for (kernel, t) in rows {
            let seconds = t.ms / 1e3;
            let rate = |x: f64| (seconds > 0.0).then(|| x / seconds / 1e9);
            let bound = t.work.and_then(|w| w.min_seconds(&peaks));
            kernels.push(serde_json::json!({
                "name": kernel,
                "ms_per_step": t.ms / n,
                "share": t.ms / n / prof_ms,
                "launches_per_step": t.launches as f64 / n,
                "gflops_per_s": t.work.and_then(|w| rate(w.flops())),
                "gbytes_per_s": t.work.and_then(|w| rate(w.bytes)),
                "peak_fraction": t.work.and_then(|w| w.peak_fraction(seconds, &peaks)),
                "bound": bound.map(|(_, roof)| roof),
            }));
        }
    }
    let attrs = dev.attributes();
    let tera = |x: Option<f64>| x.map(|v| v / 1e12);
    let peaks_json = serde_json::json!({
        "fp32_tflops": tera(peaks.fp32),
        "fp64_tflops": tera(peaks.fp64),
        "tf32_tflops": tera(peaks.tf32),
        "bf16_tflops": tera(peaks.bf16),
        "dram_gbytes_per_s": peaks.dram / 1e9,
        "sms": attrs.sms,
        "clock_mhz": f64::from(attrs.clock_khz) / 1e3,
        "mem_clock_mhz": f64::from(attrs.mem_clock_khz) / 1e3,
        "bus_bits": attrs.bus_bits,
        "compute_capability": format!("{}.{}", attrs.cc.0, attrs.cc.1),
    });
    let line = serde_json::json!({
        // The default algorithm keeps the names earlier runs reported under.
        "impl": match args.conv {
            ConvAlgo::Im2col => format!("ogm_{}", args.precision),
            other => format!("ogm_{}_{other}", args.precision),
        },
        "precision": args.precision.name(),
        "conv": args.conv.name(),
        "batch": b,
        "classes": classes,
        "fusion": "concat",
        "ms_per_step": ms,
        "steps_per_s": 1e3 / ms,
        "samples_per_s": b as f64 * 1e3 / ms,
        "loss": loss,
        "device": name,
        "peaks": peaks_json,
        "kernels": kernels,
    });
    println!("STEP_JSON {line}");
    Ok(ExitCode::SUCCESS)
}
