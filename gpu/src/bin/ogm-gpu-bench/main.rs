//! The device check's benchmark: OGM-GE's modulation step on the gradients of the paper's model
//! (two ResNet-18s, batch 64, 6 and 309 classes). For each class count it first prints every
//! kernel's agreement with the CPU reference on this workload, then the timings: the step
//! (scores, ratio, coefficients, std, scale, noise), the step with the SGD update, each kernel
//! alone, the effective memory bandwidth of the modulation kernel against the device's copy
//! bandwidth measured in the same run, and whether the host ever waited inside a step.
//!
//! The last line is `BENCH_JSON {...}` for `scripts/device/run.sh`, which sets the figures next
//! to the PyTorch baseline's from the same run.
//!
//! Usage: `ogm-gpu-bench [--iters N] [--classes 6,309]`. Exit status 2 when there is no device.

mod agree;
mod timing;
mod workload;

use std::process::ExitCode;

use ogm_gpu::cuda::{Gpu, Probe};

struct Args {
    iters: usize,
    classes: Vec<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        iters: 100,
        classes: vec![6, 309],
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let value = it.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--iters" => args.iters = value.parse().map_err(|e| format!("--iters: {e}"))?,
            "--classes" => {
                args.classes = value
                    .split(',')
                    .map(|c| c.parse().map_err(|e| format!("--classes: {e}")))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if args.iters == 0 || args.classes.is_empty() || args.classes.contains(&0) {
        return Err("--iters and every class count must be positive".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ogm-gpu-bench: {e}");
            return ExitCode::from(1);
        }
    };
    let gpu = match Gpu::probe() {
        Ok(Probe::Ready(gpu)) => gpu,
        Ok(Probe::Unavailable(why)) => {
            eprintln!("ogm-gpu-bench: no device: {why}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("ogm-gpu-bench: CUDA initialisation failed: {e}");
            return ExitCode::from(1);
        }
    };
    match run(&gpu, &args) {
        Ok(all_agree) if all_agree => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("ogm-gpu-bench: some kernel disagrees with the CPU reference");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("ogm-gpu-bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(gpu: &Gpu, args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    println!(
        "device: {} ({} SMs), driver CUDA {}.{}",
        gpu.device_name()?,
        gpu.multiprocessors()?,
        cust::CudaApiVersion::get()?.major(),
        cust::CudaApiVersion::get()?.minor()
    );
    let copy = timing::copy_bandwidth(gpu, 256 << 20, 20)?;
    println!(
        "copy bandwidth (device to device, 256 MiB, read + write): {:.0} GB/s",
        copy / 1e9
    );
    let mut all_agree = true;
    let mut json = vec![format!("\"copy_gbps\":{:.1}", copy / 1e9)];
    for &classes in &args.classes {
        let mut w = workload::Workload::new(gpu, classes, 64, 2026)?;
        println!(
            "\n== classes {classes}, batch 64: {} parameters, {} modulated values in {} tensors",
            w.arena.len,
            w.list.total_values(),
            w.list.len()
        );
        println!("-- agreement with the CPU reference");
        all_agree &= agree::run(gpu, &mut w)?;
        println!("-- timings ({} iterations, CUDA events)", args.iters);
        let t = timing::run(gpu, &mut w, args.iters, copy)?;
        json.push(format!("\"c{classes}\":{}", t.json()));
    }
    println!("\nBENCH_JSON {{{},\"agree\":{all_agree}}}", json.join(","));
    Ok(all_agree)
}
