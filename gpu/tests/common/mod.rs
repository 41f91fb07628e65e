//! Kernel checks shared by the device tests (`device.rs`, real GPU through cust) and the
//! emulated tests (`emulated.rs`, the same CUDA sources compiled for the CPU): each check
//! builds inputs, runs one kernel through a [`Backend`] and compares with `ogm_gpu::reference`.
#![allow(dead_code)] // each test file uses its own subset

use ogm_core::{GradStats, Mode, NoiseKey};
use ogm_gpu::reference;
use ogm_gpu::{
    step_key, BalanceState, DeviceStatus, Modality, SgdConfig, Stats, StatusFlags, TensorList,
    TensorSpec,
};

/// One way of running the kernels (each call is one launch, inputs in, outputs out).
pub trait Backend {
    /// `ogm_batch_scores`; returns the state (only `score` and `score_ok` are written) and
    /// the status.
    fn scores(
        &mut self,
        audio: &[f32],
        visual: &[f32],
        labels: &[u32],
        classes: usize,
    ) -> (BalanceState, DeviceStatus);
    /// `ogm_balance` on the given state.
    fn balance(&mut self, state: &BalanceState, alpha: f64, active: bool) -> BalanceState;
    /// `ogm_tensor_stats`; returns per-tensor statistics and the status.
    fn stats(&mut self, grads: &[f32], list: &TensorList) -> (Vec<Stats>, DeviceStatus);
    /// `ogm_modulate` in place from the given statistics and state.
    fn modulate(
        &mut self,
        grads: &mut [f32],
        list: &TensorList,
        stats: &[Stats],
        state: &BalanceState,
        mode: Mode,
        key: NoiseKey,
    ) -> DeviceStatus;
    /// `ogm_sgd` over `params[offset..]` etc. (an offset of 1 exercises the unaligned path).
    fn sgd(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        buf: &mut [f32],
        offset: usize,
        config: &SgdConfig,
        first: bool,
    );
}

/// SplitMix64: deterministic inputs without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        ogm_core::noise::fmix64(self.0)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

pub fn logits(rng: &mut Rng, batch: usize, classes: usize, scale: f32) -> Vec<f32> {
    (0..batch * classes)
        .map(|_| rng.uniform() * scale)
        .collect()
}

pub fn labels(rng: &mut Rng, batch: usize, classes: usize) -> Vec<u32> {
    (0..batch).map(|_| rng.below(classes as u32)).collect()
}

/// Gradients for a list: tensor t has mean ~ t * 1e-3 and spread 10^-(t % 4); values outside
/// every tensor are a sentinel the kernels must not touch.
pub const SENTINEL: f32 = 12345.5;

pub fn grads(rng: &mut Rng, list: &TensorList) -> Vec<f32> {
    let mut g = vec![SENTINEL; list.buffer_len()];
    for (t, s) in list.specs().iter().enumerate() {
        let spread = 10f32.powi(-((t % 4) as i32));
        for v in &mut g[s.offset..s.offset + s.len] {
            *v = t as f32 * 1e-3 + spread * rng.uniform();
        }
    }
    g
}

/// Layouts that cover one-value tensors, chunk boundaries, gaps, unordered offsets and both
/// modalities.
pub fn layouts() -> Vec<TensorList> {
    let spec = TensorSpec::new;
    vec![
        TensorList::packed(&[(Modality::Audio, 1)]).unwrap(),
        TensorList::packed(&[
            (Modality::Audio, 2),
            (Modality::Visual, 1023),
            (Modality::Audio, 1024),
            (Modality::Visual, 1025),
        ])
        .unwrap(),
        TensorList::new(
            50_000,
            vec![
                spec(30_000, 17_000, Modality::Visual, 3),
                spec(7, 9_000, Modality::Audio, 11),
                spec(9_100, 3, Modality::Visual, 0),
                spec(10_000, 20_000, Modality::Audio, 1 << 40),
            ],
        )
        .unwrap(),
        // A tensor of more than 256 chunks: each merging thread takes several.
        TensorList::packed(&[(Modality::Visual, 600_000), (Modality::Audio, 5)]).unwrap(),
        // Many tensors: more than one modulation block, and every chunk slot of a warp.
        TensorList::packed(
            &(0..70)
                .map(|i| {
                    let m = if i % 3 == 0 {
                        Modality::Visual
                    } else {
                        Modality::Audio
                    };
                    (m, 1 + (i * 997) % 3000)
                })
                .collect::<Vec<_>>(),
        )
        .unwrap(),
    ]
}

pub fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| got[i].to_bits() != want[i].to_bits())
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} values differ; first at {}: got {:e}, want {:e}",
        bad.len(),
        got.len(),
        bad[0],
        got[bad[0]],
        want[bad[0]]
    );
}

pub fn assert_rel(what: &str, got: f64, want: f64, rel: f64) {
    let tol = rel * want.abs().max(f64::MIN_POSITIVE);
    assert!(
        (got - want).abs() <= tol || got == want,
        "{what}: got {got:e}, want {want:e} (tolerance {tol:e})"
    );
}

// ---------------------------------------------------------------------------------------------

/// Scores agree with `ogm_core::batch_score` to 1e-12 relative (f64 exp may differ by an ulp
/// per row; the batch sum is ordered differently), for small and large class counts, and for
/// logits as large as 1e30.
pub fn check_scores(b: &mut impl Backend) {
    let mut rng = Rng(1);
    for &(batch, classes, scale) in &[
        (1usize, 1usize, 1.0f32),
        (3, 2, 5.0),
        (64, 6, 3.0),
        (64, 309, 10.0),
        (100, 1000, 1.0),
        (33, 7, 1e30),
    ] {
        let la = logits(&mut rng, batch, classes, scale);
        let lv = logits(&mut rng, batch, classes, scale * 0.5);
        let y = labels(&mut rng, batch, classes);
        let want = reference::batch_scores(&la, &lv, &y, classes).unwrap();
        let (st, status) = b.scores(&la, &lv, &y, classes);
        assert_eq!(
            status,
            DeviceStatus::CLEAR,
            "batch {batch} classes {classes}"
        );
        assert_eq!(st.score_ok, [1, 1]);
        for (m, &want) in want.iter().enumerate() {
            assert_rel(
                &format!("score[{m}] batch {batch} classes {classes}"),
                st.score[m],
                want,
                1e-12,
            );
        }
    }
}

/// A label out of range or a non-finite logit marks the score invalid and sets the status.
pub fn check_scores_bad_input(b: &mut impl Backend) {
    let mut rng = Rng(2);
    let la = logits(&mut rng, 4, 3, 1.0);
    let mut lv = la.clone();
    let (st, status) = b.scores(&la, &lv, &[0, 1, 3, 2], 3);
    assert_eq!(st.score_ok, [0, 0]);
    assert!(StatusFlags(status.flags).contains(StatusFlags::BAD_LABEL));
    lv[5] = f32::NAN;
    let (st, status) = b.scores(&la, &lv, &[0, 1, 2, 2], 3);
    assert_eq!(st.score_ok, [1, 0]);
    assert_eq!(status.flags, StatusFlags::NONFINITE_LOGIT);
}

/// The balance kernel follows `ogm_core::balance` branch for branch: the official branches,
/// the tie, zero scores, alpha 0, the inactive window; coefficients equal up to tanh's last
/// bit. Invalid scores give no modulation.
#[allow(clippy::needless_range_loop)] // m indexes four parallel arrays of two structs
pub fn check_balance(b: &mut impl Backend) {
    let cases: &[([f64; 2], f64, bool)] = &[
        ([1.0, 2.0], 0.5, true),
        ([2.0, 1.0], 0.5, true),
        ([3.0, 3.0], 0.5, true),
        ([0.0, 0.0], 0.8, true),
        ([0.0, 1.0], 0.8, true),
        ([1.0, 0.0], 0.8, true),
        ([0.0, 1.0], 0.0, true),
        ([40.0, 3.5], 0.1, true),
        ([40.0, 3.5], 0.1, false),
        ([1e-300, 5.0], 0.8, true),
    ];
    for &(score, alpha, active) in cases {
        let input = BalanceState {
            score,
            score_ok: [1, 1],
            ..BalanceState::default()
        };
        let got = b.balance(&input, alpha, active);
        let want = reference::balance_state(score, alpha, active).unwrap();
        let what = format!("scores {score:?} alpha {alpha} active {active}");
        assert_eq!(got.has_ratio, want.has_ratio, "{what}");
        assert_eq!(got.active, want.active, "{what}");
        for m in 0..2 {
            if want.has_ratio == 1 {
                assert_eq!(got.ratio[m], want.ratio[m], "{what}: ratio");
            } else {
                assert!(got.ratio[m].is_nan(), "{what}: ratio");
            }
            // 1 - tanh(x): CUDA's tanh and libm's may differ in the last bit.
            assert!(
                (got.coeff[m] - want.coeff[m]).abs() <= 4.0 * f64::EPSILON,
                "{what}: coeff"
            );
            assert!(
                (got.applied[m] - want.applied[m]).abs() <= 4.0 * f64::EPSILON,
                "{what}"
            );
            // Which coefficient is 1 is exact.
            assert_eq!(got.coeff[m] == 1.0, want.coeff[m] == 1.0, "{what}: branch");
        }
    }
    let bad = BalanceState {
        score: [1.0, 2.0],
        score_ok: [1, 0],
        ..BalanceState::default()
    };
    let got = b.balance(&bad, 0.8, true);
    assert_eq!((got.has_ratio, got.applied), (0, [1.0, 1.0]));
}

/// Statistics: count and max exact, mean and M2 to 1e-12 relative (a different but fixed
/// merge order than the CPU's); the unbiased std then agrees to ~1e-12.
pub fn check_stats(b: &mut impl Backend) {
    let mut rng = Rng(3);
    for list in layouts() {
        let g = grads(&mut rng, &list);
        let want = reference::tensor_stats(&g, &list).unwrap();
        let (got, status) = b.stats(&g, &list);
        assert_eq!(status, DeviceStatus::CLEAR);
        assert_eq!(got.len(), list.len());
        for (t, (gs, ws)) in got.iter().zip(&want).enumerate() {
            assert_eq!(gs.count, ws.count, "tensor {t}");
            assert_eq!(gs.max_abs, ws.max_abs, "tensor {t}");
            assert_rel(&format!("tensor {t} mean"), gs.mean, ws.mean, 1e-12);
            let m2_scale = ws.m2.max(ws.mean * ws.mean * ws.count as f64 * 1e-6);
            assert!(
                (gs.m2 - ws.m2).abs() <= 1e-12 * m2_scale || gs.m2 == ws.m2,
                "tensor {t} m2: {} vs {}",
                gs.m2,
                ws.m2
            );
            let (a, w) = (GradStats::from(*gs), *ws);
            if let (Some(sa), Some(sw)) = (a.std_unbiased(), w.std_unbiased()) {
                assert_rel(&format!("tensor {t} std"), sa, sw, 1e-12);
            }
        }
        // Launch again: the ticket counters were reset, the result is identical.
        let (again, _) = b.stats(&g, &list);
        assert_eq!(again, got, "second launch");
    }
}

/// A non-finite value is reported with the smallest affected tensor index.
pub fn check_stats_non_finite(b: &mut impl Backend) {
    let list = &layouts()[1];
    let mut g = grads(&mut Rng(4), list);
    g[list.specs()[3].offset + 1024] = f32::INFINITY;
    g[list.specs()[2].offset + 5] = f32::NAN;
    let (got, status) = b.stats(&g, list);
    assert!(StatusFlags(status.flags).contains(StatusFlags::NONFINITE_GRADIENT));
    assert_eq!(status.first_bad_tensor, 2);
    assert!(got[0].mean.is_finite() && !got[2].mean.is_finite() && !got[3].mean.is_finite());
}

fn state_with(applied: [f64; 2]) -> BalanceState {
    BalanceState {
        applied,
        active: 1,
        score_ok: [1, 1],
        ..BalanceState::default()
    }
}

/// Modulation from given statistics is bit-identical to `ogm_core` (`NoiseParams::new` +
/// `modulate_chunk`): the noise stream, the scaling and the f32 arithmetic, for OGM and
/// OGM_GE, every layout, several keys; nothing outside the tensors is written.
pub fn check_modulate(b: &mut impl Backend) {
    let mut rng = Rng(5);
    for (i, list) in layouts().into_iter().enumerate() {
        let g = grads(&mut rng, &list);
        let stats: Vec<Stats> = reference::tensor_stats(&g, &list)
            .unwrap()
            .into_iter()
            .map(Stats::from)
            .collect();
        let core_stats: Vec<GradStats> = stats.iter().copied().map(GradStats::from).collect();
        for (mode, applied, key) in [
            (Mode::OgmGe, [0.375, 1.0], step_key(0, 0)),
            (Mode::OgmGe, [1.0, 0.0625], step_key(7, 123_456)),
            (Mode::Ogm, [0.3, 1.0], step_key(1, 1)),
        ] {
            let mut want = g.clone();
            reference::modulate(&mut want, &list, &core_stats, applied, mode, key).unwrap();
            let mut got = g.clone();
            let status = b.modulate(&mut got, &list, &stats, &state_with(applied), mode, key);
            assert_eq!(status, DeviceStatus::CLEAR);
            assert_bits_eq(&format!("layout {i} {mode:?} key {key:?}"), &got, &want);
        }
    }
}

/// A tensor whose modulation could overflow, or whose statistics are non-finite, is left
/// untouched and reported; the others are modulated as usual.
pub fn check_modulate_rejects(b: &mut impl Backend) {
    let list = TensorList::packed(&[
        (Modality::Audio, 3000),
        (Modality::Visual, 2),
        (Modality::Audio, 5),
    ])
    .unwrap();
    let mut g = grads(&mut Rng(6), &list);
    g[3000] = -3.0e38;
    g[3001] = 3.0e38;
    let mut stats: Vec<Stats> = reference::tensor_stats(&g, &list)
        .unwrap()
        .into_iter()
        .map(Stats::from)
        .collect();
    stats[2].mean = f64::NAN;
    let core_stats: Vec<GradStats> = stats.iter().copied().map(GradStats::from).collect();
    let key = step_key(3, 4);
    let mut want = g.clone();
    let err = reference::modulate(&mut want, &list, &core_stats, [1.0, 1.0], Mode::OgmGe, key);
    assert!(err.is_err());
    let mut got = g.clone();
    let status = b.modulate(
        &mut got,
        &list,
        &stats,
        &state_with([1.0, 1.0]),
        Mode::OgmGe,
        key,
    );
    assert_bits_eq("rejected tensors", &got, &want);
    assert!(StatusFlags(status.flags).contains(StatusFlags::OVERFLOW));
    assert_eq!(status.first_bad_tensor, 1);
}

/// The fused SGD kernel equals `reference::sgd_step` bit for bit: first and later steps, with
/// and without momentum and weight decay, aligned (vectorised) and unaligned buffers, lengths
/// that are not multiples of 4.
pub fn check_sgd(b: &mut impl Backend) {
    let mut rng = Rng(7);
    for &(n, offset) in &[(1usize, 0usize), (7, 0), (4099, 0), (4099, 1), (100_003, 3)] {
        for config in [
            SgdConfig::OFFICIAL,
            SgdConfig {
                lr: 0.05,
                momentum: 0.0,
                weight_decay: 0.0,
            },
            SgdConfig {
                lr: 0.01,
                momentum: 0.5,
                weight_decay: 0.0,
            },
        ] {
            let p0: Vec<f32> = (0..n + offset).map(|_| rng.uniform()).collect();
            let g1: Vec<f32> = (0..n + offset).map(|_| rng.uniform() * 0.1).collect();
            let g2: Vec<f32> = (0..n + offset).map(|_| rng.uniform() * 0.1).collect();
            // A stale buffer: the first step must ignore it (PyTorch starts from `d`).
            let (mut pw, mut bw) = (p0.clone(), vec![7.0f32; n + offset]);
            let (mut pg, mut bg) = (p0.clone(), vec![7.0f32; n + offset]);
            for (step, g) in [&g1, &g2].into_iter().enumerate() {
                let first = step == 0;
                reference::sgd_step(
                    &mut pw[offset..],
                    &g[offset..],
                    &mut bw[offset..],
                    &config,
                    first,
                )
                .unwrap();
                b.sgd(&mut pg, g, &mut bg, offset, &config, first);
                let what = format!("n {n} offset {offset} {config:?} step {step}");
                assert_bits_eq(&format!("{what} params"), &pg, &pw);
                assert_bits_eq(&format!("{what} momentum"), &bg, &bw);
            }
        }
    }
}
