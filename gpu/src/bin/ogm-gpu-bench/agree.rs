//! Every kernel against the CPU reference on the benchmark's workload, one line each.

use cust::memory::{CopyDestination, DeviceBuffer};
use ogm_core::{GradStats, Mode, Schedule};
use ogm_gpu::cuda::{Gpu, Logits, Sgd};
use ogm_gpu::{reference, SgdConfig};

use crate::workload::Workload;

/// The modulation strength used throughout (the official value for VGGSound).
pub const ALPHA: f64 = 0.1;

fn line(what: &str, detail: String, ok: bool) -> bool {
    println!(
        "agree  {what:<28} {detail:<60} {}",
        if ok { "OK" } else { "FAIL" }
    );
    ok
}

fn max_rel(got: &[f64], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| if g == w { 0.0 } else { (g - w).abs() / w.abs() })
        .fold(0.0, f64::max)
}

fn bit_diffs(got: &[f32], want: &[f32]) -> usize {
    got.iter()
        .zip(want)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count()
}

fn download(buf: &DeviceBuffer<f32>) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let mut v = vec![0.0f32; buf.len()];
    buf.copy_to(&mut v[..])?;
    Ok(v)
}

/// Prints one line per check; returns whether all agree.
pub fn run(gpu: &Gpu, w: &mut Workload) -> Result<bool, Box<dyn std::error::Error>> {
    let mut ok = true;
    let logits = Logits {
        audio: &w.d_logits_a,
        visual: &w.d_logits_v,
        labels: &w.d_labels,
        classes: w.classes,
    };

    // Scores: f64 on both sides, different summation order.
    w.step.scores(gpu, &logits)?;
    let st = w.step.read_state(gpu)?;
    let want = reference::batch_scores(&w.logits_a, &w.logits_v, &w.labels, w.classes)?;
    let d = max_rel(&st.score, &want);
    ok &= line(
        "scores (s_a, s_v)",
        format!(
            "max rel diff {d:.1e} (tolerance 1e-12), s = {:.4} / {:.4}",
            st.score[0], st.score[1]
        ),
        d <= 1e-12,
    );

    // Coefficients from the device's scores.
    w.step.balance(gpu, ALPHA, true)?;
    let st = w.step.read_state(gpu)?;
    let want = reference::balance_state(st.score, ALPHA, true)?;
    let d = st
        .coeff
        .iter()
        .zip(&want.coeff)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    ok &= line(
        "ratio and coefficients",
        format!(
            "max abs diff {d:.1e} (tolerance 4 eps), k = {:.6} / {:.6}",
            st.coeff[0], st.coeff[1]
        ),
        d <= 4.0 * f64::EPSILON && st.ratio == want.ratio,
    );

    // Per-tensor std: a different (fixed) merge order.
    w.d_work.copy_from(&w.d_grads)?;
    w.step.tensor_stats(gpu, &w.d_work)?;
    let gs: Vec<GradStats> = w
        .step
        .read_stats(gpu)?
        .into_iter()
        .map(GradStats::from)
        .collect();
    let ws = reference::tensor_stats(&w.grads, &w.list)?;
    let std = |s: &[GradStats]| -> Vec<f64> {
        s.iter().map(|s| s.std_unbiased().unwrap_or(0.0)).collect()
    };
    let d = max_rel(&std(&gs), &std(&ws));
    ok &= line(
        "per-tensor std",
        format!(
            "max rel diff {d:.1e} over {} tensors (tolerance 1e-10)",
            gs.len()
        ),
        d <= 1e-10,
    );

    // Modulation from the device's statistics and coefficients: bit for bit.
    w.step.modulate(gpu, &mut w.d_work, Mode::OgmGe, w.key)?;
    gpu.synchronize()?;
    let got = download(&w.d_work)?;
    let mut want = w.grads.clone();
    reference::modulate(&mut want, &w.list, &gs, st.applied, Mode::OgmGe, w.key)?;
    let n = bit_diffs(&got, &want);
    ok &= line(
        "modulation (scale + noise)",
        format!(
            "{n} of {} values differ in any bit (tolerance 0)",
            got.len()
        ),
        n == 0,
    );

    // The whole step through OgmStep::enqueue against ogm-core alone.
    w.d_work.copy_from(&w.d_grads)?;
    let schedule = Schedule::official(Mode::OgmGe, ALPHA)?;
    w.step
        .enqueue(gpu, &logits, &mut w.d_work, &schedule, 0, w.key)?;
    w.step.take_status(gpu)?;
    let got = download(&w.d_work)?;
    let s_a = ogm_core::batch_score(&w.logits_a, &w.labels, w.classes)?;
    let s_v = ogm_core::batch_score(&w.logits_v, &w.labels, w.classes)?;
    let plan = schedule.plan(0, s_a, s_v)?;
    let mut want = w.grads.clone();
    let mut worst = 0.0f64;
    for s in w.list.specs() {
        let k = [plan.coeff_audio, plan.coeff_visual][s.modality.index()];
        let t = &mut want[s.offset..s.offset + s.len];
        let sigma = ogm_core::modulate_tensor(t, Mode::OgmGe, k, w.key.derive(s.noise_id))?
            .map_or(1.0, |st| st.noise_sigma());
        for i in s.offset..s.offset + s.len {
            worst = worst.max(((got[i] - want[i]) as f64).abs() / sigma);
        }
    }
    let n = bit_diffs(&got, &want);
    ok &= line(
        "whole step vs ogm-core",
        format!("{n} values differ; max |diff| / sigma {worst:.1e} (tolerance 1e-5)"),
        worst <= 1e-5,
    );

    // Fused SGD, two steps (the first initialises the momentum buffer): bit for bit.
    let mut sgd = Sgd::new(gpu, w.arena.len, SgdConfig::OFFICIAL)?;
    let mut d_params = DeviceBuffer::from_slice(&w.params)?;
    let (mut p, mut b) = (w.params.clone(), vec![0.0f32; w.arena.len]);
    for first in [true, false] {
        sgd.step(gpu, &mut d_params, &w.d_work)?;
        reference::sgd_step(&mut p, &got, &mut b, &SgdConfig::OFFICIAL, first)?;
    }
    gpu.synchronize()?;
    let n = bit_diffs(&download(&d_params)?, &p);
    ok &= line(
        "SGD (momentum, weight decay)",
        format!(
            "{n} of {} parameters differ after 2 steps (tolerance 0)",
            p.len()
        ),
        n == 0,
    );
    Ok(ok)
}
