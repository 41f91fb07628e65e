//! A crash while a checkpoint is being written leaves the previous checkpoint usable. (Its own
//! test binary: the crash is simulated through an environment variable, which is process-wide.)

mod train_common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ogm_host::train::{checkpoint, train};
use train_common::{config, dataset, opts};

#[test]
fn crash_while_checkpointing_keeps_the_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    dataset(&root);
    let mut c = config(&root, &runs);
    c.checkpoint_every_steps = 2;
    let stop = Arc::new(AtomicBool::new(false));
    // Steps 1-2 checkpoint normally; the run is stopped at step 3 and its checkpoint's
    // sidecar write "crashes" between the temporary file and the rename.
    train(&c, &opts("crash", false, 2), stop.clone()).unwrap_err();
    let dir = runs.join("crash/checkpoints");
    let before = checkpoint::read_sidecar(&dir).unwrap().unwrap();
    assert_eq!(before.step, 2);
    std::env::set_var("OGM_FAIL_WRITE", "last.json");
    let e = train(&c, &opts("crash", true, 3), stop.clone()).unwrap_err();
    std::env::remove_var("OGM_FAIL_WRITE");
    assert!(e.to_string().contains("last.json"), "{e}");
    // The sidecar still names the step-2 files, which are complete and load.
    let after = checkpoint::read_sidecar(&dir).unwrap().unwrap();
    assert_eq!(after, before);
    assert!(dir.join(&after.model_file).exists());
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    // And the run resumes from it to the end.
    let s = train(&c, &opts("crash", true, 0), stop).unwrap();
    assert_eq!(s.epochs, 2);
}
