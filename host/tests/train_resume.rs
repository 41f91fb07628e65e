//! Resume: a run stopped in the middle of an epoch and resumed ends with exactly the weights of
//! an uninterrupted run (same seed, same thread count).

mod train_common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ogm_host::train::{train, TrainError};
use train_common::{config, dataset, files_under, final_model, opts};

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    dataset(&root);
    let c = config(&root, &runs);
    let stop = Arc::new(AtomicBool::new(false));

    let full = train(&c, &opts("full", false, 0), stop.clone()).unwrap();
    assert_eq!(full.epochs, 2);
    // 30 training clips in batches of 8: 4 steps per epoch; stop mid-epoch 1 (step 6).
    let e = train(&c, &opts("split", false, 6), stop.clone()).unwrap_err();
    assert!(matches!(e, TrainError::Interrupted { step: 6 }), "{e}");
    // Without --resume, the run folder is protected.
    let e = train(&c, &opts("split", false, 0), stop.clone()).unwrap_err();
    assert!(matches!(e, TrainError::RunExists { .. }), "{e}");
    // A changed setting is refused on resume.
    let mut other = c.clone();
    other.alpha = 0.1;
    let e = train(&other, &opts("split", true, 0), stop.clone()).unwrap_err();
    assert!(e.to_string().contains("alpha"), "{e}");
    // So is a setting the saved config does not write because it was left at its default
    // (optional ones: a frame folder suffix; a class list, here CREMA-D's in another order).
    let mut other = c.clone();
    other.frame_dir_suffix = ".mp4".into();
    let e = train(&other, &opts("split", true, 0), stop.clone()).unwrap_err();
    assert!(e.to_string().contains("frame_dir_suffix"), "{e}");
    let mut other = c.clone();
    other.classes = ["ANG", "DIS", "FEA", "SAD", "HAP", "NEU"]
        .map(String::from)
        .to_vec();
    let e = train(&other, &opts("split", true, 0), stop.clone()).unwrap_err();
    assert!(e.to_string().contains("classes"), "{e}");
    // The data-loading threads and the checkpoint interval may change: they change nothing
    // that is computed (a batch is the same whatever the number of workers).
    let resume_with = ogm_host::config::TrainConfig {
        loader_workers: c.loader_workers + 1,
        checkpoint_every_steps: 3,
        ..c.clone()
    };
    let resumed = train(&resume_with, &opts("split", true, 0), stop).unwrap();
    assert_eq!(resumed.steps, full.steps);
    assert_eq!(final_model(&runs, "full"), final_model(&runs, "split"));
    assert_eq!(resumed.final_eval, full.final_eval);
    // The metrics of the resumed run have no duplicated steps.
    let recs = ogm_host::run::metrics::read_records(&runs.join("split/metrics.jsonl")).unwrap();
    let full_recs = ogm_host::run::metrics::read_records(&runs.join("full/metrics.jsonl")).unwrap();
    assert_eq!(recs.len(), full_recs.len());
    // Where the time went, for this process's part of each run.
    assert_eq!(full.timing.steps, 8);
    assert_eq!(resumed.timing.steps, 2);
    for t in [&full.timing, &resumed.timing] {
        assert!(t.train_s > 0.0 && t.eval_s > 0.0, "{t:?}");
        assert!((0.0..=t.train_s).contains(&t.loader_wait_s), "{t:?}");
        assert!(t.samples_per_s(c.batch_size) > 0.0, "{t:?}");
    }
}

#[test]
fn a_resume_on_changed_data_is_refused_before_any_file_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    dataset(&root);
    let c = config(&root, &runs);
    let stop = Arc::new(AtomicBool::new(false));
    // 30 training clips in batches of 8: 4 steps per epoch; stopped at step 6 (epoch 1
    // batch 2). Step 4 wrote epoch 0's metrics, which a resume keeps.
    let e = train(&c, &opts("run", false, 6), stop.clone()).unwrap_err();
    assert!(matches!(e, TrainError::Interrupted { step: 6 }), "{e}");
    let run = runs.join("run");
    // Every file of the run folder with its bytes, in path order.
    let files = |dir: &std::path::Path| -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = files_under(dir)
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        v.sort();
        v
    };
    let before = files(&run);

    // The split file edited in place (the config is the same): 20 clips, 3 batches an epoch,
    // where step 6 is no position of epoch 1.
    let csv = root.join("train.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let kept: String = text.lines().take(20).map(|l| format!("{l}\n")).collect();
    std::fs::write(&csv, kept).unwrap();
    let e = train(&c, &opts("run", true, 0), stop.clone()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("last.json") && msg.contains("3 batches an epoch"),
        "{msg}"
    );
    assert!(msg.contains("20 usable training clips"), "{msg}");
    assert!(
        files(&run) == before,
        "a refused resume changed the run folder"
    );
    std::fs::write(&csv, &text).unwrap();

    // A sidecar whose step was edited is refused too, with no overflow on the way.
    let sidecar = run.join("checkpoints/last.json");
    let json = std::fs::read_to_string(&sidecar).unwrap();
    std::fs::write(
        &sidecar,
        json.replace("\"step\": 6,", &format!("\"step\": {},", u64::MAX)),
    )
    .unwrap();
    assert_ne!(
        std::fs::read_to_string(&sidecar).unwrap(),
        json,
        "the edit took"
    );
    let e = train(&c, &opts("run", true, 0), stop.clone()).unwrap_err();
    assert!(
        e.to_string().contains(&format!("at step {}", u64::MAX)),
        "{e}"
    );
    std::fs::write(&sidecar, &json).unwrap();

    // With the data and the file as they were, the run resumes to the end.
    let done = train(&c, &opts("run", true, 0), stop).unwrap();
    assert_eq!(done.steps, 8);
}
