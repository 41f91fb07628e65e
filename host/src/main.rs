//! The `ogm` command-line trainer.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use ogm_host::cli::{Cli, Command, EvalArgs, SynthArgs};
use ogm_host::config::TrainConfig;
use ogm_host::data::{write_dataset, LoaderConfig, Split, SynthConfig};
use ogm_host::engine::{checkpoint, AvModel, CpuBackend};
use ogm_host::train::{self, demo, RunOptions, TrainError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // First Ctrl-C (or SIGTERM): finish the step, checkpoint, exit. Second: exit now.
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("\nogm: stopping now");
                std::process::exit(130);
            }
            eprintln!("\nogm: stopping after this step (Ctrl-C again to quit at once)");
        });
    }
    let result = match cli.command {
        Command::Train(args) => args
            .to_config()
            .map_err(TrainError::from)
            .and_then(|config| {
                set_threads(config.threads);
                let opts = RunOptions {
                    run_name: args.run_name.clone(),
                    resume: args.resume,
                    quiet: args.quiet,
                    stop_after_steps: 0,
                };
                let s = train::train(&config, &opts, stop)?;
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                if !args.quiet {
                    data_bound_hint(&s);
                }
                Ok(())
            }),
        Command::Eval(args) => eval(&args),
        Command::Synth(args) => synth(&args),
        Command::Demo(args) => demo::run(&args, stop).map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(TrainError::Interrupted { step }) => {
            eprintln!("ogm: interrupted after step {step}; checkpoint saved, rerun with --resume to continue");
            ExitCode::from(130)
        }
        Err(e @ TrainError::Config(_)) => {
            eprintln!("ogm: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("ogm: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Says so when the training loop spent a large share of its time waiting for batches: the
/// run is limited by its data loading, and a faster device would not help.
fn data_bound_hint(s: &train::Summary) {
    let t = &s.timing;
    let share = t.loader_wait_share();
    if t.steps >= 10 && share > 0.25 {
        eprintln!(
            "ogm: the training loop waited for the data loader {:.0}% of its time ({:.0} samples/s \
             with {} loader workers); more --loader_workers or faster storage may speed the run up",
            100.0 * share,
            t.samples_per_s(s.config.batch_size),
            s.config.loader_threads()
        );
    }
}

fn set_threads(threads: usize) {
    if threads > 0 {
        // Fails only when the pool was already built, which cannot happen this early.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global();
    }
}

fn eval(args: &EvalArgs) -> Result<(), TrainError> {
    // A missing checkpoint is named as such, not as the config.toml its path would imply.
    if !args.checkpoint.is_file() {
        return Err(TrainError::Checkpoint {
            path: args.checkpoint.clone(),
            message: "no such file".into(),
        });
    }
    // <run>/checkpoints/<file>.safetensors: the run's config.toml is two levels up.
    let run_dir = args
        .checkpoint
        .parent()
        .and_then(|p| p.parent())
        .ok_or_else(|| TrainError::Checkpoint {
            path: args.checkpoint.clone(),
            message: "expected <run folder>/checkpoints/<file>.safetensors".into(),
        })?;
    let mut config = TrainConfig::from_file(&run_dir.join("config.toml"))?;
    if let Some(p) = &args.test_csv {
        config.test_csv = p.clone();
    }
    if let Some(p) = &args.audio_path {
        config.audio_path = p.clone();
    }
    if let Some(p) = &args.visual_path {
        config.visual_path = p.clone();
    }
    let mut ds = train::open_split(&config, Split::Test)?;
    // Evaluation runs on the CPU engine whatever device trained the checkpoint.
    let cpu = TrainConfig {
        device: ogm_host::config::Device::Cpu,
        ..config.clone()
    };
    train::footprint::check_memory(&cpu, args.batch_size.min(ds.len()))?;
    ds.verify(cpu.loader_threads())?;
    let classes = ds.num_classes();
    let skipped = ds.skipped().len();
    let loader = ogm_host::data::Loader::new(
        Arc::new(ds),
        LoaderConfig::eval(args.batch_size, cpu.loader_threads()),
    )?;
    let mut model = AvModel::new(
        CpuBackend::<f32>::new(),
        train::model_config(&config, classes),
        config.random_seed,
    )?;
    checkpoint::load(&mut model, &args.checkpoint)?;
    let r = train::evaluate(&mut model, &loader, classes)?;
    println!(
        "samples {}  (skipped {skipped})\nloss    {:.4}\nacc     {:.4}\nacc_a   {:.4}\nacc_v   {:.4}",
        r.samples, r.loss, r.acc, r.acc_a, r.acc_v
    );
    Ok(())
}

fn synth(args: &SynthArgs) -> Result<(), TrainError> {
    let c = SynthConfig {
        train_per_class: args.train_per_class,
        test_per_class: args.test_per_class,
        audio_signal: args.audio_signal,
        visual_signal: args.visual_signal,
        clutter_colour: args.clutter_colour,
        width: args.size,
        height: args.size,
        audio_seconds: args.audio_seconds,
        fps: args.fps,
        seed: args.seed,
        ..SynthConfig::default()
    };
    let s = write_dataset(&c, &args.out)?;
    println!(
        "wrote {} ({} train, {} test clips, {} classes, {} files, {:.1} MB)",
        s.root.display(),
        s.train,
        s.test,
        s.classes,
        s.files,
        s.bytes as f64 / 1e6
    );
    Ok(())
}
