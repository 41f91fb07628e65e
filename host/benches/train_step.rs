//! One full training step (forward, loss, backward, SGD update) of the paper model at batch
//! 16 with CREMA-D shapes (audio 1x257x188, visual 3x1x224x224), concat fusion, 6 classes.
//!
//! `scripts/bench-train-step.sh` runs this beside `scripts/bench_torch_step.py` with the same
//! thread count and prints the ratio. Arguments: `--steps N` (timed steps, default 5),
//! `--batch B` (default 16). Threads: `RAYON_NUM_THREADS` (default: all cores).

mod common;

use std::time::Instant;

use ogm_host::engine::{
    softmax_cross_entropy, AvModel, CpuBackend, FusionKind, Input, Mode, ModelConfig, Sgd,
};

use common::number;

/// Peak resident memory of this process, from the kernel's high-water mark.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let steps = number("--steps", 5);
    let batch = number("--batch", 16);
    let (ah, aw, vh, vw) = (257, 188, 224, 224);
    let cfg = ModelConfig::paper(6, FusionKind::Concat);
    let mut model = AvModel::new(CpuBackend::<f32>::new(), cfg, 0).expect("model");
    let mut sgd = Sgd::official();
    // Deterministic pseudo-random inputs (values do not change the work done).
    let mut s = 1u32;
    let mut gen = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    };
    let audio = gen(batch * ah * aw);
    let visual = gen(batch * 3 * vh * vw);
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 6).collect();
    let input = Input {
        batch,
        audio: &audio,
        audio_hw: (ah, aw),
        visual: &visual,
        visual_hw: (vh, vw),
    };
    let mut step = || {
        let out = model.forward(&input, Mode::Train).expect("forward");
        let (loss, dl) = softmax_cross_entropy(&out.logits, &labels, 6).expect("loss");
        model.backward(&dl).expect("backward");
        sgd.step(&mut model);
        loss
    };
    step(); // warm-up: buffers are allocated once here
    let mut times = Vec::new();
    let mut loss = 0.0;
    for _ in 0..steps {
        let t = Instant::now();
        loss = step();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "RESULT impl=ogm-rs threads={} batch={batch} steps={steps} step_s={median:.4} min_s={:.4} samples_per_s={:.2} peak_rss_mib={:.0} loss={loss:.4}",
        rayon::current_num_threads(),
        times[0],
        batch as f64 / median,
        peak_rss_mib()
    );
}
