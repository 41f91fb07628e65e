//! The `ogm` command-line trainer.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use ogm_host::cli::{Cli, Command, EvalArgs, ImportArgs, SynthArgs};
use ogm_host::data::write_dataset;
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
        Command::Import(args) => import(&args),
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
    let e = train::eval::evaluate_checkpoint(&args.to_request())?;
    let r = e.result;
    if args.json {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "checkpoint".into(),
                args.checkpoint.display().to_string().into(),
            );
            o.insert(
                "device".into(),
                serde_json::to_value(args.device).unwrap_or_default(),
            );
            o.insert("skipped".into(), e.skipped.into());
        }
        println!("{v}");
        return Ok(());
    }
    println!(
        "samples {}  (skipped {})\nloss    {:.4}\nacc     {:.4}\nacc_a   {:.4}\nacc_v   {:.4}",
        r.samples, e.skipped, r.loss, r.acc, r.acc_a, r.acc_v
    );
    Ok(())
}

fn import(args: &ImportArgs) -> Result<(), TrainError> {
    let i = train::import::import_official(&args.pth, &args.out, &args.base_config()?)?;
    let c = &i.config;
    println!(
        "imported {} ({:?} fusion, width {}, {} blocks a stage, {} alpha {}{}{})\nwrote {}\n\
         evaluate with: ogm eval --checkpoint {} [--test_csv ... --audio_path ... --visual_path ...]",
        args.pth.display(),
        c.fusion_method,
        c.model.width,
        c.model.blocks,
        c.modulation.as_str(),
        c.alpha,
        i.saved_epoch
            .map(|e| format!(", saved at epoch {e}"))
            .unwrap_or_default(),
        i.saved_acc
            .map(|a| format!(", test acc {a:.4} then"))
            .unwrap_or_default(),
        args.out.display(),
        i.checkpoint.display(),
    );
    Ok(())
}

fn synth(args: &SynthArgs) -> Result<(), TrainError> {
    let c = args.to_config()?;
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
