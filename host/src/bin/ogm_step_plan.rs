//! `ogm-step-plan`: the GPU training step of the paper model, planned without a GPU. The step
//! `ogm train --device cuda` queues (and `ogm-step-bench` times: batch 64 by default,
//! CREMA-D shapes, concat fusion, OGM-GE inside its window, SGD) runs on
//! `ogm_gpu::engine::plan::PlanDevice`, which executes nothing and records each launch with
//! its estimated work (`ogm_gpu::engine::work::estimate`: flops by unit, minimum DRAM
//! traffic). Prints, per kernel, launches per step, GFLOP, GB moved at least and the roofline
//! floor on the chosen GPU's peaks, then the step's totals: the floor is the time the step
//! cannot go below with perfect kernels run back to back, the figure to hold a measured step
//! against (a perfect framework has the same floor: the arithmetic is the model's).
//!
//! Flags: `--batch N` (64), `--precision fp32|tf32|bf16` (fp32), `--conv im2col|implicit`
//! (im2col), `--gpu h200|h100|a100` (h200: the peaks from the same per-multiprocessor table
//! as `ogm-step-bench`, with each board's multiprocessors, boost clock and memory).
//! Ends with one line `PLAN_JSON {...}`. Needs no GPU and no `cuda` feature.

use std::process::ExitCode;
use std::sync::Arc;

use ogm_core::Mode;
use ogm_gpu::engine::plan::PlanDevice;
use ogm_gpu::engine::work::{peaks, DeviceAttrs};
use ogm_host::config::TrainConfig;
use ogm_host::data::loader::Batch;
use ogm_host::engine::gpu::{ConvAlgo, GpuBackend, Precision};
use ogm_host::engine::{AvModel, FusionKind, ModelConfig};
use ogm_host::train::optimizer::Optimizer;
use ogm_host::train::{StepArgs, StepBackend};

/// The boards `--gpu` knows: attributes as `cuDeviceGetAttribute` reports them (SXM parts).
fn board(name: &str) -> Option<DeviceAttrs> {
    let attrs = |sms, clock_mhz: u32, mem_clock_mhz: u32, bus_bits, cc| DeviceAttrs {
        sms,
        clock_khz: clock_mhz * 1000,
        mem_clock_khz: mem_clock_mhz * 1000,
        bus_bits,
        cc,
    };
    match name {
        // 4.9 TB/s (HBM3e; the datasheet says 4.8); the memory clock as nvidia-smi read it on
        // this workplace's H200.
        "h200" => Some(attrs(132, 1980, 3201, 6144, (9, 0))),
        // 3.35 TB/s (HBM3).
        "h100" => Some(attrs(132, 1980, 2619, 5120, (9, 0))),
        // 2.04 TB/s (HBM2e, 80 GB part).
        "a100" => Some(attrs(108, 1410, 1593, 5120, (8, 0))),
        _ => None,
    }
}

struct Args {
    batch: usize,
    precision: Precision,
    conv: ConvAlgo,
    gpu: String,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        batch: 64,
        precision: Precision::Fp32,
        conv: ConvAlgo::Im2col,
        gpu: "h200".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let text = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--precision" => {
                a.precision = Precision::parse(&text)
                    .ok_or_else(|| format!("--precision: `{text}` is not fp32, tf32 or bf16"))?
            }
            "--conv" => {
                a.conv = ConvAlgo::parse(&text)
                    .ok_or_else(|| format!("--conv: `{text}` is not im2col or implicit"))?
            }
            "--gpu" => {
                board(&text).ok_or_else(|| format!("--gpu: `{text}` is not h200, h100 or a100"))?;
                a.gpu = text;
            }
            "--batch" => {
                a.batch = text
                    .parse::<usize>()
                    .ok()
                    .filter(|&b| (1..=4096).contains(&b))
                    .ok_or_else(|| format!("--batch: `{text}` is not a count from 1 to 4096"))?
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ogm-step-plan: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    let attrs = board(&args.gpu).ok_or("unknown --gpu")?;
    let peaks = peaks(&attrs);
    let dev = Arc::new(PlanDevice::new(peaks, attrs.sms));
    let mut backend = GpuBackend::new(dev.clone());
    backend.set_precision(args.precision);
    backend.set_conv_algo(args.conv);
    let classes = 6;
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
    // The values are never read (nothing runs); the shapes are CREMA-D's.
    let batch = Batch {
        audio: vec![0.0; b * 257 * 188],
        audio_shape: [b, 1, 257, 188],
        visual: vec![0.0; b * 3 * 224 * 224],
        visual_shape: [b, 3, 1, 224, 224],
        labels: (0..b).map(|i| (i % classes) as u32).collect(),
        indices: (0..b).collect(),
    };
    let mut done = Vec::new();
    // The third step is the steady state: the first ones allocate and start the momentum.
    for step in 1..=3u64 {
        dev.take();
        let step_args = StepArgs {
            schedule: &schedule,
            config: &config,
            epoch: 0,
            step,
            lr: config.learning_rate,
        };
        GpuBackend::queue_step(&mut model, &mut opt, &step_args, &batch, &mut done)?;
    }
    let plan = dev.take();
    let mut rows: Vec<_> = plan.iter().collect();
    rows.sort_by(|a, b| b.1.floor_s.total_cmp(&a.1.floor_s));
    let total_floor: f64 = rows.iter().map(|(_, k)| k.floor_s).sum();
    let memory_floor: f64 = rows.iter().map(|(_, k)| k.memory_bound_s).sum();
    let launches: u64 = rows.iter().map(|(_, k)| k.launches).sum();
    let unestimated: u64 = rows.iter().map(|(_, k)| k.unestimated).sum();
    let flops: f64 = rows.iter().map(|(_, k)| k.work.flops()).sum();
    let bytes: f64 = rows.iter().map(|(_, k)| k.work.bytes).sum();

    println!(
        "paper model, batch {b}, {} {}, on {} ({} SMs, {:.1} TFLOP/s FP32, {} TB/s):",
        args.precision,
        match args.conv {
            ConvAlgo::Im2col => "im2col",
            ConvAlgo::Implicit => "implicit GEMM",
        },
        args.gpu,
        attrs.sms,
        peaks.fp32.unwrap_or(f64::NAN) / 1e12,
        format_args!("{:.2}", peaks.dram / 1e12),
    );
    println!(
        "{:<28} {:>8} {:>10} {:>9} {:>10} {:>7}  bound",
        "kernel", "launches", "GFLOP", "GB", "floor ms", "share"
    );
    for (name, k) in &rows {
        let bound = if k.unestimated > 0 {
            "no estimate"
        } else if k.memory_bound_s * 2.0 > k.floor_s {
            "dram"
        } else {
            "arithmetic"
        };
        println!(
            "{:<28} {:>8} {:>10.2} {:>9.3} {:>10.3} {:>6.1}%  {bound}",
            name,
            k.launches,
            k.work.flops() / 1e9,
            k.work.bytes / 1e9,
            k.floor_s * 1e3,
            100.0 * k.floor_s / total_floor.max(f64::MIN_POSITIVE),
        );
    }
    println!(
        "step: {launches} launches ({unestimated} without an estimate), {:.1} GFLOP, {:.2} GB at \
         least, floor {:.2} ms ({:.2} ms of it memory-bound), so at most {:.0} steps/s; \
         {:.2} GB of device memory allocated",
        flops / 1e9,
        bytes / 1e9,
        total_floor * 1e3,
        memory_floor * 1e3,
        1.0 / total_floor,
        dev.allocated_bytes() as f64 / 1e9,
    );
    let json = serde_json::json!({
        "batch": b,
        "precision": args.precision.to_string(),
        "conv": format!("{:?}", args.conv).to_lowercase(),
        "gpu": args.gpu,
        "launches": launches,
        "gflop": flops / 1e9,
        "gbytes": bytes / 1e9,
        "floor_ms": total_floor * 1e3,
        "memory_floor_ms": memory_floor * 1e3,
        "allocated_gb": dev.allocated_bytes() as f64 / 1e9,
        "kernels": rows.iter().map(|(name, k)| serde_json::json!({
            "name": name,
            "launches": k.launches,
            "gflop": k.work.flops() / 1e9,
            "gbytes": k.work.bytes / 1e9,
            "floor_ms": k.floor_s * 1e3,
        })).collect::<Vec<_>>(),
    });
    println!("PLAN_JSON {json}");
    Ok(())
}
