//! The kernels on a real GPU against the CPU references (`common::check_*`), plus a full
//! ResNet-18-sized step. Without a CUDA device every test prints why it skips and passes;
//! with `OGM_GPU_REQUIRED=1` (the device check sets it) a missing device fails instead.
#![cfg(feature = "cuda")]

mod common;

use common::Backend;
use cust::memory::{CopyDestination, DeviceBuffer};
use ogm_core::{GradStats, Mode, NoiseKey, Schedule};
use ogm_gpu::cuda::{Gpu, Logits, OgmStep, Probe, Sgd};
use ogm_gpu::reference;
use ogm_gpu::workload::{official_model_params, Arena};
use ogm_gpu::{step_key, BalanceState, DeviceStatus, GpuError, SgdConfig, Stats, TensorList};

/// The device, or `None` after printing why the test is skipped.
fn gpu() -> Option<Gpu> {
    match Gpu::probe() {
        Ok(Probe::Ready(gpu)) => Some(*gpu),
        Ok(Probe::Unavailable(why)) => {
            assert!(
                std::env::var_os("OGM_GPU_REQUIRED").is_none_or(|v| v != "1"),
                "OGM_GPU_REQUIRED=1 but {why}"
            );
            eprintln!("skipping: {why}");
            None
        }
        Err(e) => panic!("a CUDA device is present but unusable: {e}"),
    }
}

/// Runs each kernel through the crate's public API on a fresh [`OgmStep`].
struct Device(Gpu);

fn status_of(step: &mut OgmStep, gpu: &Gpu) -> DeviceStatus {
    match step.take_status(gpu) {
        Ok(()) => DeviceStatus::CLEAR,
        Err(GpuError::DeviceReported {
            flags,
            first_bad_tensor,
        }) => DeviceStatus {
            flags: flags.0,
            first_bad_tensor: first_bad_tensor.unwrap_or(u32::MAX),
        },
        Err(e) => panic!("{e}"),
    }
}

fn any_list() -> TensorList {
    TensorList::packed(&[(ogm_gpu::Modality::Audio, 1)]).unwrap()
}

impl Backend for Device {
    fn scores(
        &mut self,
        audio: &[f32],
        visual: &[f32],
        labels: &[u32],
        classes: usize,
    ) -> (BalanceState, DeviceStatus) {
        let gpu = &self.0;
        let mut step = OgmStep::new(gpu, any_list()).unwrap();
        let (a, v) = (
            DeviceBuffer::from_slice(audio).unwrap(),
            DeviceBuffer::from_slice(visual).unwrap(),
        );
        let y = DeviceBuffer::from_slice(labels).unwrap();
        let logits = Logits {
            audio: &a,
            visual: &v,
            labels: &y,
            classes,
        };
        step.scores(gpu, &logits).unwrap();
        let state = step.read_state(gpu).unwrap();
        (state, status_of(&mut step, gpu))
    }

    fn balance(&mut self, state: &BalanceState, alpha: f64, active: bool) -> BalanceState {
        let gpu = &self.0;
        let mut step = OgmStep::new(gpu, any_list()).unwrap();
        step.set_state(gpu, state).unwrap();
        step.balance(gpu, alpha, active).unwrap();
        step.read_state(gpu).unwrap()
    }

    fn stats(&mut self, grads: &[f32], list: &TensorList) -> (Vec<Stats>, DeviceStatus) {
        let gpu = &self.0;
        let mut step = OgmStep::new(gpu, list.clone()).unwrap();
        let g = DeviceBuffer::from_slice(grads).unwrap();
        step.tensor_stats(gpu, &g).unwrap();
        let stats = step.read_stats(gpu).unwrap();
        (stats, status_of(&mut step, gpu))
    }

    fn modulate(
        &mut self,
        grads: &mut [f32],
        list: &TensorList,
        stats: &[Stats],
        state: &BalanceState,
        mode: Mode,
        key: NoiseKey,
    ) -> DeviceStatus {
        let gpu = &self.0;
        let mut step = OgmStep::new(gpu, list.clone()).unwrap();
        step.set_state(gpu, state).unwrap();
        step.set_stats(gpu, stats).unwrap();
        let mut g = DeviceBuffer::from_slice(grads).unwrap();
        step.modulate(gpu, &mut g, mode, key).unwrap();
        gpu.synchronize().unwrap();
        g.copy_to(grads).unwrap();
        status_of(&mut step, gpu)
    }

    fn sgd(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        buf: &mut [f32],
        offset: usize,
        config: &SgdConfig,
        first: bool,
    ) {
        // A fresh optimiser per call; later steps restore the momentum buffer as a
        // checkpoint would.
        let gpu = &self.0;
        let n = params.len() - offset;
        let mut sgd = Sgd::new(gpu, n, *config).unwrap();
        if !first {
            sgd.load_momentum(gpu, &buf[offset..]).unwrap();
        }
        let p = DeviceBuffer::from_slice(params).unwrap();
        let g = DeviceBuffer::from_slice(grads).unwrap();
        // Views from `offset` on (offset > 0 makes them unaligned for float4).
        let mut pd = p.index(offset..);
        let gd = g.index(offset..);
        sgd.step(gpu, &mut pd, &gd).unwrap();
        gpu.synchronize().unwrap();
        p.copy_to(params).unwrap();
        sgd.momentum_buffer().copy_to(&mut buf[offset..]).unwrap();
    }
}

macro_rules! device_test {
    ($name:ident, $check:path) => {
        #[test]
        fn $name() {
            if let Some(gpu) = gpu() {
                $check(&mut Device(gpu));
            }
        }
    };
}

device_test!(scores_match_core, common::check_scores);
device_test!(scores_report_bad_input, common::check_scores_bad_input);
device_test!(balance_matches_core, common::check_balance);
device_test!(stats_match_core, common::check_stats);
device_test!(stats_report_non_finite, common::check_stats_non_finite);
device_test!(modulate_is_bit_exact, common::check_modulate);
device_test!(modulate_rejects_like_core, common::check_modulate_rejects);
device_test!(sgd_is_bit_exact, common::check_sgd);

/// Host-side validation: bad shapes are typed errors and nothing is launched.
#[test]
fn bad_arguments_are_typed_errors() {
    let Some(gpu) = gpu() else { return };
    let list = TensorList::packed(&[(ogm_gpu::Modality::Audio, 10)]).unwrap();
    let mut step = OgmStep::new(&gpu, list).unwrap();
    let a = DeviceBuffer::from_slice(&[0.0f32; 6]).unwrap();
    let y = DeviceBuffer::from_slice(&[0u32; 2]).unwrap();
    let logits = Logits {
        audio: &a,
        visual: &a,
        labels: &y,
        classes: 4,
    };
    assert!(matches!(
        step.scores(&gpu, &logits),
        Err(GpuError::LengthMismatch {
            what: "logits.audio",
            expected: 8,
            got: 6
        })
    ));
    assert!(matches!(
        step.balance(&gpu, -1.0, true),
        Err(GpuError::Core(_))
    ));
    let mut g = DeviceBuffer::from_slice(&[0.0f32; 9]).unwrap();
    assert!(matches!(
        step.modulate(&gpu, &mut g, Mode::OgmGe, NoiseKey::new(0)),
        Err(GpuError::LengthMismatch { what: "grads", .. })
    ));
    assert!(matches!(
        step.set_stats(&gpu, &[]),
        Err(GpuError::LengthMismatch { .. })
    ));
    let mut sgd = Sgd::new(&gpu, 10, SgdConfig::OFFICIAL).unwrap();
    assert!(matches!(
        sgd.step(&gpu, &mut g, &a),
        Err(GpuError::LengthMismatch { .. })
    ));
    assert!(sgd.set_lr(f32::NAN).is_err());
    step.take_status(&gpu).unwrap();
}

/// The whole step on the paper's model (two ResNet-18s, 309 classes, batch 64) through
/// `OgmStep::enqueue` and `Sgd::step`, against the CPU: `ogm_core::Schedule::plan` for the
/// coefficients, `GradStats::of` + `modulate_tensor` per tensor, `sgd_step`. The statistics'
/// merge order differs, so sigma may differ in its last bit: values agree to a few ulps of the
/// noise term, and all but a small fraction are bit-identical.
#[test]
fn full_step_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let (batch, classes) = (64usize, 309usize);
    let arena = Arena::new(official_model_params(classes));
    let list = arena.modulated().unwrap();
    let mut rng = common::Rng(11);
    let grads0 = common::grads(&mut rng, &list);
    let mut grads0 = grads0;
    for v in grads0.iter_mut().filter(|v| **v == common::SENTINEL) {
        *v = rng.uniform() * 1e-2; // BatchNorm and head gradients: not modulated, but updated
    }
    let params0: Vec<f32> = (0..arena.len).map(|_| rng.uniform() * 0.1).collect();
    let la = common::logits(&mut rng, batch, classes, 4.0);
    let lv = common::logits(&mut rng, batch, classes, 1.0);
    let y = common::labels(&mut rng, batch, classes);
    let schedule = Schedule::official(Mode::OgmGe, 0.1).unwrap();
    let key = step_key(2026, 17);

    // Device.
    let mut step = OgmStep::new(&gpu, list.clone()).unwrap();
    let (da, dv) = (
        DeviceBuffer::from_slice(&la).unwrap(),
        DeviceBuffer::from_slice(&lv).unwrap(),
    );
    let dy = DeviceBuffer::from_slice(&y).unwrap();
    let logits = Logits {
        audio: &da,
        visual: &dv,
        labels: &dy,
        classes,
    };
    let mut dg = DeviceBuffer::from_slice(&grads0).unwrap();
    let mut dp = DeviceBuffer::from_slice(&params0).unwrap();
    let mut sgd = Sgd::new(&gpu, arena.len, SgdConfig::OFFICIAL).unwrap();
    assert!(step
        .enqueue(&gpu, &logits, &mut dg, &schedule, 0, key)
        .unwrap());
    sgd.step(&gpu, &mut dp, &dg).unwrap();
    step.take_status(&gpu).unwrap();
    let state = step.read_state(&gpu).unwrap();
    let (mut g_dev, mut p_dev) = (vec![0.0f32; arena.len], vec![0.0f32; arena.len]);
    dg.copy_to(&mut g_dev[..]).unwrap();
    dp.copy_to(&mut p_dev[..]).unwrap();

    // CPU.
    let s_a = ogm_core::batch_score(&la, &y, classes).unwrap();
    let s_v = ogm_core::batch_score(&lv, &y, classes).unwrap();
    let plan = schedule.plan(0, s_a, s_v).unwrap();
    common::assert_rel("s_a", state.score[0], s_a, 1e-12);
    common::assert_rel("s_v", state.score[1], s_v, 1e-12);
    assert!((state.applied[0] - plan.coeff_audio).abs() <= 4.0 * f64::EPSILON);
    assert!((state.applied[1] - plan.coeff_visual).abs() <= 4.0 * f64::EPSILON);
    // Use the device's coefficients so that only the statistics' rounding can differ.
    let mut g_cpu = grads0.clone();
    for s in list.specs() {
        let k = state.applied[s.modality.index()];
        ogm_core::modulate_tensor(
            &mut g_cpu[s.offset..s.offset + s.len],
            Mode::OgmGe,
            k,
            key.derive(s.noise_id),
        )
        .unwrap();
    }
    let mut p_cpu = params0.clone();
    let mut b_cpu = vec![0.0f32; arena.len];
    reference::sgd_step(&mut p_cpu, &g_cpu, &mut b_cpu, &SgdConfig::OFFICIAL, true).unwrap();

    let stats = step.read_stats(&gpu).unwrap();
    let mut differ = 0usize;
    for (t, s) in list.specs().iter().enumerate() {
        let sigma = GradStats::from(stats[t]).noise_sigma();
        for i in s.offset..s.offset + s.len {
            if g_dev[i].to_bits() != g_cpu[i].to_bits() {
                differ += 1;
                // sigma differs by at most a few ulps; |z| <= 5.5.
                let tol = 6.0 * sigma * 4.0 * f32::EPSILON as f64
                    + f32::EPSILON as f64 * g_cpu[i].abs() as f64;
                assert!(
                    ((g_dev[i] - g_cpu[i]) as f64).abs() <= tol,
                    "tensor {t} value {i}: {} vs {}",
                    g_dev[i],
                    g_cpu[i]
                );
            }
        }
    }
    let total = list.total_values();
    eprintln!("full step: {differ} of {total} modulated values differ in their last bits");
    assert!(differ * 10 <= total, "{differ} of {total} values differ");
    // Unmodulated gradients are untouched; parameters follow the gradients.
    for (i, (&a, &b)) in g_dev.iter().zip(&grads0).enumerate() {
        if !list
            .specs()
            .iter()
            .any(|s| (s.offset..s.offset + s.len).contains(&i))
        {
            assert_eq!(a.to_bits(), b.to_bits(), "unmodulated value {i}");
        }
    }
    let max_dp = p_dev
        .iter()
        .zip(&p_cpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_dp <= 1e-6, "parameters differ by {max_dp}");
}
