//! The method's effect, end to end, on the `ogm demo` configuration: a synthetic dataset whose
//! audio is learnt within a few epochs and whose frames are faint but clean (learnable to a
//! high accuracy alone, slowly). Under Normal training the audio branch fits the training set,
//! the fused loss vanishes and the visual branch starves; OGM-GE slows the audio encoder, so
//! the visual branch keeps learning. For each of three seeds, OGM-GE must end with
//!
//! - a visual-only test accuracy `acc_v` higher than Normal's by at least [`MARGIN`]
//!   (180 test clips: a 0.10 gap is 18 clips, about twice the sampling spread of the
//!   difference; the gaps measured are two to four times larger), and
//! - a mean ratio `r_v = s_v / s_a` over the last epoch closer to 1.
//!
//! Both runs of a seed share data, initialisation, batch order and a pool of [`THREADS`]
//! threads; only the modulation differs. The test fails if OGM-GE stops rescuing the weak
//! modality.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ogm_core::Mode;
use ogm_host::data::write_dataset;
use ogm_host::run::metrics::{read_records, Record};
use ogm_host::train::demo::{demo_config, demo_data, DEMO_EPOCHS};
use ogm_host::train::{train, RunOptions};

/// The smallest `acc_v` gain accepted, OGM_GE over Normal.
const MARGIN: f64 = 0.10;

/// Threads the runs use, whatever the machine's core count. The engine's results depend on
/// the thread count (it sets how work and sums are cut), so a fixed count makes this test
/// the same computation on every machine. Gains measured at ed37a20 (seeds 0, 1, 2) at 1
/// thread: 0.378, 0.578, -0.011; at 2: 0.172, 0.455, 0.217; at 3: 0.134, 0.567, 0.044; at 4:
/// 0.250, 0.594, 0.200. A run is chaotic (one ulp in the spectrogram moved gains by up to
/// 0.27): see the README's demo section before reading a failure as the method's.
/// `OGM_EFFECT_THREADS` overrides it, to measure the gains at other counts.
const THREADS: usize = 2;

/// Final acc_v and the mean r_v of the last epoch.
fn run(data: &Path, runs: &Path, mode: Mode, seed: u64) -> (f64, f64) {
    let config = demo_config(data, runs, mode, DEMO_EPOCHS, seed);
    let name = format!("{}_{seed}", mode.as_str());
    let opts = RunOptions {
        run_name: Some(name.clone()),
        quiet: true,
        ..Default::default()
    };
    let s = train(&config, &opts, Arc::new(AtomicBool::new(false))).unwrap();
    let recs = read_records(&runs.join(name).join("metrics.jsonl")).unwrap();
    let last: Vec<f64> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Step(st) if st.epoch == DEMO_EPOCHS - 1 => st.ratio_v,
            _ => None,
        })
        .collect();
    assert!(
        !last.is_empty(),
        "{mode:?}: no defined ratio in the last epoch"
    );
    let eval = s.final_eval.unwrap();
    assert_eq!(eval.samples, 180);
    (eval.acc_v, last.iter().sum::<f64>() / last.len() as f64)
}

#[test]
fn ogm_ge_rescues_the_weak_modality_on_three_seeds() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(
            std::env::var("OGM_EFFECT_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(THREADS),
        )
        .build()
        .unwrap();
    let mut failures = Vec::new();
    for seed in 0..3u64 {
        let tmp = tempfile::tempdir().unwrap();
        let (data, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
        write_dataset(&demo_data(false, seed), &data).unwrap();
        let (acc_v_normal, ratio_normal) = pool.install(|| run(&data, &runs, Mode::Normal, seed));
        let (acc_v_ogm, ratio_ogm) = pool.install(|| run(&data, &runs, Mode::OgmGe, seed));
        eprintln!(
            "seed {seed}: acc_v Normal {acc_v_normal:.3} OGM_GE {acc_v_ogm:.3}; \
             mean r_v (last epoch) Normal {ratio_normal:.3} OGM_GE {ratio_ogm:.3}"
        );
        if acc_v_ogm < acc_v_normal + MARGIN {
            failures.push(format!(
                "seed {seed}: acc_v {acc_v_ogm:.3} (OGM_GE) is not {MARGIN} above {acc_v_normal:.3} (Normal)"
            ));
        }
        if (ratio_ogm - 1.0).abs() >= (ratio_normal - 1.0).abs() {
            failures.push(format!(
                "seed {seed}: r_v {ratio_ogm:.3} (OGM_GE) is not closer to 1 than {ratio_normal:.3} (Normal)"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
