//! `DeviceOgm::step_losses` (the fused loss stage, `ogm_step_losses`) on the kernel emulator:
//! the same bits as the kernels it replaces in the trainer's step (three cross-entropies, the
//! scores and the balance), on valid and on invalid input, and the core crate's scores,
//! ratios and coefficients. Without g++ the tests print why they skip.

use std::sync::{Arc, OnceLock};

use ogm_gpu::engine::emu::EmuDevice;
use ogm_gpu::engine::ogm::{DeviceOgm, LossSlot, StepLog};
use ogm_gpu::engine::{DevPtr, Device};
use ogm_gpu::{Modality, StatusFlags, TensorList};

fn device() -> Option<Arc<EmuDevice>> {
    static DEV: OnceLock<Result<Arc<EmuDevice>, String>> = OnceLock::new();
    let dev = DEV.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ogm-engine-emulator");
        EmuDevice::build(&dir)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    });
    match dev {
        Ok(d) => Some(d.clone()),
        Err(e) if e.contains("SKIP ") => {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Deterministic values in [-scale, scale) (splitmix64).
fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

struct Buf {
    dev: Arc<EmuDevice>,
    ptr: DevPtr,
    bytes: usize,
}

impl Buf {
    fn f32s(dev: &Arc<EmuDevice>, v: &[f32]) -> Buf {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Buf::raw(dev, &bytes)
    }
    fn u32s(dev: &Arc<EmuDevice>, v: &[u32]) -> Buf {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Buf::raw(dev, &bytes)
    }
    fn raw(dev: &Arc<EmuDevice>, bytes: &[u8]) -> Buf {
        let ptr = dev.alloc(bytes.len().max(4)).unwrap();
        // SAFETY: ptr holds bytes.len() bytes.
        unsafe { dev.upload(ptr, bytes).unwrap() };
        Buf {
            dev: dev.clone(),
            ptr,
            bytes: bytes.len(),
        }
    }
    fn read_f32(&self) -> Vec<f32> {
        let mut b = vec![0u8; self.bytes];
        // SAFETY: the allocation holds self.bytes bytes.
        unsafe { self.dev.download(self.ptr, &mut b).unwrap() };
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: allocated in Buf::raw, freed once.
        unsafe { self.dev.free(self.ptr) };
    }
}

/// One step's inputs.
struct Case {
    batch: usize,
    classes: usize,
    logits: Vec<f32>,
    audio: Vec<f32>,
    visual: Vec<f32>,
    labels: Vec<u32>,
}

impl Case {
    fn new(seed: u64, batch: usize, classes: usize) -> Case {
        let n = batch * classes;
        Case {
            batch,
            classes,
            logits: values(seed, n, 4.0),
            // Visual logits flatter than the audio ones: scores of different sizes.
            audio: values(seed + 1, n, 6.0),
            visual: values(seed + 2, n, 1.5),
            labels: (0..batch)
                .map(|i| ((i * 7 + seed as usize) % classes) as u32)
                .collect(),
        }
    }
}

/// What the two paths leave: the slot's log and the fused logits' gradient.
struct Out {
    log: StepLog,
    dlogits: Vec<f32>,
}

/// Runs `case` through the separate kernels (slot 0: `cross_entropy` three times,
/// `scores_and_balance`) and through `step_losses` (slot 1) on one `DeviceOgm`.
fn both(dev: &Arc<EmuDevice>, case: &Case, alpha: f64, active: bool) -> (Out, Out) {
    let list = TensorList::packed(&[(Modality::Audio, 8), (Modality::Visual, 8)]).unwrap();
    let ogm = DeviceOgm::new(dev.clone(), list, 2, case.batch).unwrap();
    let (logits, audio, visual) = (
        Buf::f32s(dev, &case.logits),
        Buf::f32s(dev, &case.audio),
        Buf::f32s(dev, &case.visual),
    );
    let labels = Buf::u32s(dev, &case.labels);
    let zeros = vec![0.0f32; case.batch * case.classes];
    let (d_sep, d_fused) = (Buf::f32s(dev, &zeros), Buf::f32s(dev, &zeros));
    let (b, c) = (case.batch, case.classes);
    // SAFETY: every buffer holds batch x classes f32 (labels batch u32).
    unsafe {
        ogm.cross_entropy(0, LossSlot::Audio, audio.ptr, labels.ptr, b, c, 0)
            .unwrap();
        ogm.cross_entropy(0, LossSlot::Visual, visual.ptr, labels.ptr, b, c, 0)
            .unwrap();
        ogm.cross_entropy(0, LossSlot::Fused, logits.ptr, labels.ptr, b, c, d_sep.ptr)
            .unwrap();
        ogm.scores_and_balance(0, audio.ptr, visual.ptr, labels.ptr, b, c, alpha, active)
            .unwrap();
        ogm.step_losses(
            1,
            logits.ptr,
            audio.ptr,
            visual.ptr,
            labels.ptr,
            b,
            c,
            d_fused.ptr,
            alpha,
            active,
        )
        .unwrap();
    }
    let logs = ogm.read_logs(2).unwrap();
    (
        Out {
            log: logs[0],
            dlogits: d_sep.read_f32(),
        },
        Out {
            log: logs[1],
            dlogits: d_fused.read_f32(),
        },
    )
}

/// Every field of the two logs, as bits (NaN included).
fn log_bits(l: &StepLog) -> Vec<u64> {
    let s = &l.state;
    let mut v: Vec<u64> = [s.score, s.ratio, s.coeff, s.applied]
        .iter()
        .flatten()
        .map(|x| x.to_bits())
        .collect();
    v.extend([s.score_ok[0], s.score_ok[1], s.has_ratio, s.active].map(u64::from));
    v.extend([l.status.flags, l.status.first_bad_tensor].map(u64::from));
    v.extend([l.loss, l.loss_a, l.loss_v].map(f64::to_bits));
    v
}

fn same_bits(sep: &Out, fused: &Out, what: &str) {
    assert_eq!(
        log_bits(&sep.log),
        log_bits(&fused.log),
        "{what}: logs differ"
    );
    let (a, b): (Vec<u32>, Vec<u32>) = (
        sep.dlogits.iter().map(|x| x.to_bits()).collect(),
        fused.dlogits.iter().map(|x| x.to_bits()).collect(),
    );
    assert_eq!(a, b, "{what}: dlogits differ");
}

#[test]
fn the_fused_loss_stage_gives_the_separate_kernels_bits() {
    let Some(dev) = device() else { return };
    // Batches that do and do not fill the 8 warps evenly; class counts below and above a
    // warp's 32 lanes (CREMA-D's 6, VGGSound's 309).
    for (seed, batch, classes) in [(1, 13, 6), (2, 64, 6), (3, 9, 37), (4, 3, 309)] {
        let case = Case::new(seed, batch, classes);
        for (alpha, active) in [(0.8, true), (0.8, false), (0.0, true)] {
            let (sep, fused) = both(&dev, &case, alpha, active);
            let what = format!("batch {batch}, classes {classes}, alpha {alpha}, {active}");
            same_bits(&sep, &fused, &what);
            let log = fused.log;
            assert_eq!(log.status.flags, 0, "{what}");
            assert!(log.loss.is_finite() && log.loss > 0.0, "{what}");
            assert_eq!(log.state.active, u32::from(active), "{what}");
            // The gradient is not all zeros: the fused kernel wrote it.
            assert!(fused.dlogits.iter().any(|&g| g != 0.0), "{what}");
        }
    }
}

#[test]
fn the_fused_loss_stage_agrees_with_the_core_crate() {
    let Some(dev) = device() else { return };
    let case = Case::new(7, 64, 6);
    let alpha = 0.8;
    let (_, fused) = both(&dev, &case, alpha, true);
    let st = fused.log.state;
    let sa = ogm_core::batch_score(&case.audio, &case.labels, case.classes).unwrap();
    let sv = ogm_core::batch_score(&case.visual, &case.labels, case.classes).unwrap();
    assert!(
        (st.score[0] - sa).abs() <= 1e-12 * sa.max(1.0),
        "{} vs {sa}",
        st.score[0]
    );
    assert!(
        (st.score[1] - sv).abs() <= 1e-12 * sv.max(1.0),
        "{} vs {sv}",
        st.score[1]
    );
    let b = ogm_core::balance::balance(sa, sv, alpha).unwrap();
    let r = b.ratio.unwrap();
    assert!((st.ratio[1] - r.visual).abs() <= 1e-12 * r.visual);
    assert!((st.coeff[0] - b.coeff_audio).abs() <= 1e-12);
    assert!((st.coeff[1] - b.coeff_visual).abs() <= 1e-12);
    // The audio logits are the sharper ones, so audio dominates and is the one slowed.
    assert!(st.coeff[0] < 1.0 && st.coeff[1] == 1.0, "{st:?}");
    assert_eq!(st.applied, st.coeff);
    // The mean cross-entropy, computed here in f64 from the definition.
    let xent = |x: &[f32]| -> f64 {
        let c = case.classes;
        let mut s = 0.0;
        for (r, &y) in case.labels.iter().enumerate() {
            let row = &x[r * c..(r + 1) * c];
            let lse = row.iter().map(|&v| f64::from(v).exp()).sum::<f64>().ln();
            s += lse - f64::from(row[y as usize]);
        }
        s / case.batch as f64
    };
    let log = fused.log;
    for (got, x) in [
        (log.loss, &case.logits),
        (log.loss_a, &case.audio),
        (log.loss_v, &case.visual),
    ] {
        let want = xent(x);
        assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
    }
}

#[test]
fn bad_input_is_reported_as_the_separate_kernels_report_it() {
    let Some(dev) = device() else { return };
    // A label past the classes: every loss NaN, neither score valid, no modulation.
    let mut case = Case::new(11, 13, 6);
    case.labels[5] = 6;
    let (sep, fused) = both(&dev, &case, 0.8, true);
    same_bits(&sep, &fused, "bad label");
    let log = fused.log;
    assert_eq!(log.status.flags, StatusFlags::BAD_LABEL);
    assert!(log.loss.is_nan() && log.loss_a.is_nan() && log.loss_v.is_nan());
    assert_eq!(log.state.score_ok, [0, 0]);
    assert_eq!((log.state.has_ratio, log.state.applied), (0, [1.0, 1.0]));

    // A NaN among the audio logits: the audio loss and score only.
    let mut case = Case::new(12, 13, 6);
    case.audio[3 * 6 + 2] = f32::NAN;
    let (sep, fused) = both(&dev, &case, 0.8, true);
    assert_eq!(log_bits(&sep.log), log_bits(&fused.log), "NaN audio logit");
    let log = fused.log;
    assert_eq!(log.status.flags, StatusFlags::NONFINITE_LOGIT);
    assert!(log.loss_a.is_nan() && log.loss.is_finite() && log.loss_v.is_finite());
    assert_eq!(log.state.score_ok, [0, 1]);
    assert_eq!(log.state.applied, [1.0, 1.0]);

    // An infinite fused logit: the fused loss only; the scores and coefficients stand.
    let mut case = Case::new(13, 13, 6);
    case.logits[0] = f32::INFINITY;
    let (sep, fused) = both(&dev, &case, 0.8, true);
    assert_eq!(log_bits(&sep.log), log_bits(&fused.log), "inf fused logit");
    let log = fused.log;
    assert_eq!(log.status.flags, StatusFlags::NONFINITE_LOGIT);
    assert!(log.loss.is_nan() && log.loss_a.is_finite());
    assert_eq!((log.state.score_ok, log.state.has_ratio), ([1, 1], 1));
}

#[test]
fn the_fused_loss_stage_refuses_what_the_separate_kernels_refuse() {
    let Some(dev) = device() else { return };
    let list = TensorList::packed(&[(Modality::Audio, 8)]).unwrap();
    let ogm = DeviceOgm::new(dev.clone(), list, 2, 4).unwrap();
    let call = |slot, batch, classes, alpha| {
        // SAFETY: every call below is refused before anything is launched.
        unsafe { ogm.step_losses(slot, 8, 8, 8, 8, batch, classes, 8, alpha, true) }
    };
    assert!(call(0, 5, 6, 0.8).is_err(), "a batch past the scratch");
    assert!(call(0, 4, 0, 0.8).is_err(), "zero classes");
    assert!(call(0, 0, 6, 0.8).is_err(), "an empty batch");
    assert!(call(2, 4, 6, 0.8).is_err(), "a slot past the ring");
    assert!(call(0, 4, 6, -1.0).is_err(), "a negative alpha");
    assert!(call(0, 4, 6, f64::NAN).is_err(), "a NaN alpha");
}
