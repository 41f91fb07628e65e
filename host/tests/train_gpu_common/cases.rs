// The trainer's device-step cases, shared by train_gpu_emulated.rs and train_gpu_cuda.rs
// (included after each file's `gpu()`, which gives the backend or skips).

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ogm_core::Mode;
use ogm_host::config::{Device, TrainConfig};
use ogm_host::data::loader::Batch;
use ogm_host::engine::gpu::GpuBackend;
use ogm_host::engine::{AvModel, CpuBackend, FusionKind, ModelConfig};
use ogm_host::run::metrics::{read_records, Record, StepRecord};
use ogm_host::train::device::LOG_SLOTS;
use ogm_host::train::eval::{evaluate_checkpoint_on, request_config, EvalRequest};
use ogm_host::train::optimizer::Optimizer;
use ogm_host::train::{train_on, train_step, StepArgs, StepBackend, TrainError};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const BATCH: usize = 4;
const CLASSES: usize = 6;

fn model_config() -> ModelConfig {
    ModelConfig::small(CLASSES, FusionKind::Concat).with_frames(2)
}

fn batch(seed: u64) -> Batch {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut v = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect() };
    Batch {
        audio: v(BATCH * 24 * 20),
        audio_shape: [BATCH, 1, 24, 20],
        visual: v(BATCH * 3 * 2 * 20 * 20),
        visual_shape: [BATCH, 3, 2, 20, 20],
        labels: (0..BATCH)
            .map(|i| ((i as u64 * 5 + seed) % CLASSES as u64) as u32)
            .collect(),
        indices: (0..BATCH).collect(),
    }
}

fn config(mode: Mode) -> TrainConfig {
    TrainConfig {
        modulation: mode,
        learning_rate: 0.01,
        random_seed: 5,
        ..TrainConfig::default()
    }
}

/// Runs `steps` steps through `queue_step` and `finish_steps`; returns the records and,
/// per call, how many records it pushed (the last entry is `finish_steps`').
fn run<B: StepBackend>(
    model: &mut AvModel<B>,
    config: &TrainConfig,
    steps: u64,
) -> (Vec<StepRecord>, Vec<usize>) {
    let schedule = config.schedule().unwrap();
    let mut opt = Optimizer::new(config);
    let (mut all, mut counts) = (Vec::new(), Vec::new());
    for step in 1..=steps {
        let args = StepArgs {
            schedule: &schedule,
            config,
            epoch: 0,
            step,
            lr: config.learning_rate,
        };
        let mut done = Vec::new();
        B::queue_step(model, &mut opt, &args, &batch(step), &mut done).unwrap();
        counts.push(done.len());
        all.append(&mut done);
    }
    let mut done = Vec::new();
    B::finish_steps(model, &mut done).unwrap();
    counts.push(done.len());
    all.append(&mut done);
    (all, counts)
}

fn close(what: &str, a: &[f32], b: &[f32], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b
        .iter()
        .fold(0.0f64, |m, v| m.max(f64::from(v.abs())))
        .max(1e-30);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = f64::from(x - y).abs() / scale;
        assert!(
            d <= tol,
            "{what}[{i}]: {x} vs {y} (scale {scale}, {d:e} > {tol:e})"
        );
    }
}

fn near(what: &str, a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b} (tolerance {tol})");
}

#[test]
fn queued_ogm_ge_steps_match_the_cpu_steps() {
    let Some(gpu) = gpu() else { return };
    let cfg = config(Mode::OgmGe);
    let steps = 3;
    let mut g = AvModel::new(gpu, model_config(), 7).unwrap();
    let (grec, counts) = run(&mut g, &cfg, steps);
    assert_eq!(
        counts,
        [0, 0, 0, 3],
        "the device step pushes its records when read"
    );
    let mut c = AvModel::new(CpuBackend::<f32>::new(), model_config(), 7).unwrap();
    let (crec, counts) = run(&mut c, &cfg, steps);
    assert_eq!(
        counts,
        [1, 1, 1, 0],
        "the CPU step pushes its record at once"
    );

    for (a, b) in grec.iter().zip(&crec) {
        let s = a.step;
        assert_eq!((a.epoch, a.step, a.lr), (b.epoch, b.step, b.lr));
        near(&format!("step {s} loss"), a.loss, b.loss, 1e-4);
        near(&format!("step {s} loss_a"), a.loss_a, b.loss_a, 1e-4);
        near(&format!("step {s} loss_v"), a.loss_v, b.loss_v, 1e-4);
        near(&format!("step {s} score_a"), a.score_a, b.score_a, 1e-4);
        near(&format!("step {s} score_v"), a.score_v, b.score_v, 1e-4);
        near(&format!("step {s} coeff_a"), a.coeff_a, b.coeff_a, 1e-3);
        near(&format!("step {s} coeff_v"), a.coeff_v, b.coeff_v, 1e-3);
        near(
            &format!("step {s} ratio_v"),
            a.ratio_v.unwrap(),
            b.ratio_v.unwrap(),
            1e-3,
        );
    }
    assert!(
        grec.iter().any(|r| r.coeff_a < 1.0 || r.coeff_v < 1.0),
        "a step inside the window slows one modality"
    );
    // The last step's modulated gradients and the parameters after three steps.
    for t in c.params_table().iter() {
        let what = format!("grad {}", t.name);
        close(
            &what,
            &g.read_grad(&t.name).unwrap(),
            &c.read_grad(&t.name).unwrap(),
            2e-3,
        );
        let what = format!("param {}", t.name);
        close(
            &what,
            &g.read_tensor(&t.name).unwrap(),
            &c.read_tensor(&t.name).unwrap(),
            2e-3,
        );
    }
    // The agreement is about the modulated gradients: without OGM-GE they differ far more
    // than the tolerance (the noise alone is as large as the gradient's spread).
    let mut normal = AvModel::new(CpuBackend::<f32>::new(), model_config(), 7).unwrap();
    run(&mut normal, &config(Mode::Normal), steps);
    let target = c.modulation_targets().next().unwrap().name.clone();
    let (m, n) = (
        c.read_grad(&target).unwrap(),
        normal.read_grad(&target).unwrap(),
    );
    let scale = n.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let diff = m
        .iter()
        .zip(&n)
        .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(
        diff > 0.05 * scale,
        "{target}: OGM-GE changed the gradient by {diff} only"
    );
}

#[test]
fn records_come_in_order_when_the_ring_fills() {
    let Some(gpu) = gpu() else { return };
    let cfg = config(Mode::Normal);
    let steps = LOG_SLOTS as u64 + 2;
    let mut g = AvModel::new(gpu, model_config(), 3).unwrap();
    let (rec, counts) = run(&mut g, &cfg, steps);
    let mut want = vec![0; steps as usize + 1];
    want[LOG_SLOTS] = LOG_SLOTS; // the call that finds the ring full reads it first
    want[steps as usize] = 2;
    assert_eq!(counts, want);
    let order: Vec<u64> = rec.iter().map(|r| r.step).collect();
    assert_eq!(order, (1..=steps).collect::<Vec<_>>());
    assert!(rec
        .iter()
        .all(|r| r.loss.is_finite() && r.coeff_a == 1.0 && r.coeff_v == 1.0));
}

#[test]
fn a_bad_label_stops_at_its_step_and_keeps_the_records_before_it() {
    let Some(gpu) = gpu() else { return };
    let cfg = config(Mode::OgmGe);
    let schedule = cfg.schedule().unwrap();
    let mut g = AvModel::new(gpu, model_config(), 3).unwrap();
    let mut opt = Optimizer::new(&cfg);
    let mut done = Vec::new();
    for step in 1..=3u64 {
        let mut b = batch(step);
        if step == 3 {
            b.labels[1] = CLASSES as u32; // out of range
        }
        let args = StepArgs {
            schedule: &schedule,
            config: &cfg,
            epoch: 2,
            step,
            lr: cfg.learning_rate,
        };
        GpuBackend::queue_step(&mut g, &mut opt, &args, &b, &mut done).unwrap();
    }
    let err = GpuBackend::finish_steps(&mut g, &mut done).unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::Diverged {
                epoch: 2,
                step: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("a label out of range"), "{err}");
    assert_eq!(done.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 2]);
    // train_step (one step, waited for) reports the same.
    let mut b = batch(9);
    b.labels[0] = 99;
    let err = train_step(&mut g, &mut opt, &schedule, &cfg, &b, 2, 4, 0.01).unwrap_err();
    assert!(matches!(err, TrainError::Diverged { step: 4, .. }), "{err}");
}

fn step_records(runs: &Path, name: &str) -> (Vec<StepRecord>, usize) {
    let recs = read_records(&runs.join(name).join("metrics.jsonl")).unwrap();
    let epochs = recs
        .iter()
        .filter(|r| matches!(r, Record::Epoch(_)))
        .count();
    let steps = recs
        .into_iter()
        .filter_map(|r| match r {
            Record::Step(s) => Some(s),
            Record::Epoch(_) => None,
        })
        .collect();
    (steps, epochs)
}

#[test]
fn the_training_loop_on_the_gpu_backend_resumes_exactly_and_logs_as_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let dev = gpu.device().clone();
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    train_common::dataset(&root);
    let c = train_common::config(&root, &runs);
    let stop = Arc::new(AtomicBool::new(false));
    let opts = train_common::opts;

    let full = train_on(
        &c,
        &opts("full", false, 0),
        stop.clone(),
        GpuBackend::new(dev.clone()),
    )
    .unwrap();
    // 30 training clips in batches of 8: 4 steps per epoch, 2 epochs.
    assert_eq!((full.epochs, full.steps), (2, 8));
    // Stopped mid-epoch 1: the queued steps are read and checkpointed, then resumed.
    let e = train_on(
        &c,
        &opts("split", false, 6),
        stop.clone(),
        GpuBackend::new(dev.clone()),
    )
    .unwrap_err();
    assert!(matches!(e, TrainError::Interrupted { step: 6 }), "{e}");
    let resumed = train_on(
        &c,
        &opts("split", true, 0),
        stop.clone(),
        GpuBackend::new(dev.clone()),
    )
    .unwrap();
    assert_eq!(resumed.steps, full.steps);
    assert_eq!(
        train_common::final_model(&runs, "full"),
        train_common::final_model(&runs, "split")
    );
    assert_eq!(resumed.final_eval, full.final_eval);

    // Every step logged once, in order, with the CPU's values (2e-3 of the loss: the sums run
    // in another order, and eight steps of training let the difference grow a little).
    let cpu = train_on(&c, &opts("cpu", false, 0), stop, CpuBackend::<f32>::new()).unwrap();
    assert_eq!(cpu.steps, full.steps);
    let (g, g_epochs) = step_records(&runs, "full");
    let (s, _) = step_records(&runs, "split");
    let (k, k_epochs) = step_records(&runs, "cpu");
    assert_eq!((g_epochs, k_epochs), (2, 2));
    assert_eq!(
        g.iter().map(|r| r.step).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<u64>>()
    );
    assert_eq!(s, g, "the resumed run logs the uninterrupted run's steps");
    for (a, b) in g.iter().zip(&k) {
        assert_eq!((a.epoch, a.step), (b.epoch, b.step));
        near(
            &format!("step {} loss", a.step),
            a.loss,
            b.loss,
            2e-3 * b.loss.abs().max(1.0),
        );
        near(
            &format!("step {} coeff_a", a.step),
            a.coeff_a,
            b.coeff_a,
            1e-2,
        );
        near(
            &format!("step {} coeff_v", a.step),
            a.coeff_v,
            b.coeff_v,
            1e-2,
        );
    }

    // `ogm eval` of each run's last checkpoint, on the GPU backend and on the CPU: on the
    // engine that trained it (and with the run's batch size), the run's own final evaluation
    // bit for bit; across engines, the same accuracies and the loss within 1e-4.
    let eval = |run: &str, device: Device| {
        let dir = runs.join(run).join("checkpoints");
        let sidecar = ogm_host::train::checkpoint::read_sidecar(&dir).unwrap().unwrap();
        let req = EvalRequest {
            checkpoint: dir.join(sidecar.model_file),
            test_csv: None,
            audio_path: None,
            visual_path: None,
            frame_dir_suffix: None,
            batch_size: c.batch_size,
            device,
        };
        let config = request_config(&req).unwrap();
        match device {
            Device::Cpu => evaluate_checkpoint_on(&req, &config, CpuBackend::<f32>::new()),
            Device::Cuda => evaluate_checkpoint_on(&req, &config, GpuBackend::new(dev.clone())),
        }
        .unwrap()
    };
    let gpu_full = eval("full", Device::Cuda);
    assert_eq!(Some(gpu_full.result), full.final_eval);
    assert_eq!(gpu_full.skipped, 0);
    let cpu_cpu = eval("cpu", Device::Cpu);
    assert_eq!(Some(cpu_cpu.result), cpu.final_eval);
    let gpu_cpu = eval("cpu", Device::Cuda);
    let (a, b) = (gpu_cpu.result, cpu_cpu.result);
    assert_eq!(a.samples, b.samples);
    assert_eq!((a.acc, a.acc_a, a.acc_v), (b.acc, b.acc_a, b.acc_v));
    near("eval loss", a.loss, b.loss, 1e-4 * b.loss.abs().max(1.0));
}

/// The steady state waits for the device only to read the log ring: over `LOG_SLOTS + 1`
/// queued steps after the first, one download (the ring, when it is full) and no
/// synchronisation or free (no buffer is reallocated).
#[test]
fn queued_steps_wait_for_the_device_only_to_read_the_log_ring() {
    let Some(gpu) = gpu() else { return };
    let watch = Arc::new(Recorder::new(gpu.device().clone()));
    let waits = || -> Vec<&str> {
        let waits = ["download", "synchronize", "free"];
        watch
            .take()
            .into_iter()
            .filter(|e| waits.contains(e))
            .collect()
    };
    let cfg = config(Mode::OgmGe);
    let schedule = cfg.schedule().unwrap();
    let mut model = AvModel::new(GpuBackend::new(watch.clone()), model_config(), 3).unwrap();
    let mut opt = Optimizer::new(&cfg);
    let mut done = Vec::new();
    let step = |model: &mut AvModel<_>, opt: &mut Optimizer<_>, s: u64, done: &mut Vec<_>| {
        let args = StepArgs {
            schedule: &schedule,
            config: &cfg,
            epoch: 0,
            step: s,
            lr: cfg.learning_rate,
        };
        GpuBackend::queue_step(model, opt, &args, &batch(s), done).unwrap();
    };
    // The first step allocates the step's buffers and the optimiser's state.
    step(&mut model, &mut opt, 1, &mut done);
    GpuBackend::finish_steps(&mut model, &mut done).unwrap();
    waits();
    for s in 2..=LOG_SLOTS as u64 + 2 {
        step(&mut model, &mut opt, s, &mut done);
    }
    assert_eq!(waits(), ["download"], "the steady state's waits");
    assert_eq!(done.len(), 1 + LOG_SLOTS);
    GpuBackend::finish_steps(&mut model, &mut done).unwrap();
    assert_eq!(done.len(), 2 + LOG_SLOTS);
}
