//! The four data paths of `ogm train` (`--audio_path`, `--visual_path`, `--train_csv`,
//! `--test_csv`) are independent: a dataset scattered over four folders trains, and each
//! missing path stops the run before any work with a message naming it.

mod train_common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ogm_host::train::train;
use train_common::{config, dataset, opts};

/// Moves the dataset under `root` to four unrelated folders; returns the four paths
/// (audio folder, visual folder, train csv, test csv).
fn scatter(root: &Path, base: &Path) -> [std::path::PathBuf; 4] {
    let to = [
        base.join("audio/wavs"),
        base.join("video"),
        base.join("lists/train_split.csv"),
        base.join("other_lists/test_split.csv"),
    ];
    let moves = [
        (root.join("AudioWAV"), to[0].clone()),
        (root.join("Image-01-FPS"), to[1].join("Image-01-FPS")),
        (root.join("train.csv"), to[2].clone()),
        (root.join("test.csv"), to[3].clone()),
    ];
    for (from, to) in moves {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::rename(from, to).unwrap();
    }
    to
}

#[test]
fn a_dataset_in_four_folders_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    dataset(&root);
    let [audio, visual, train_csv, test_csv] = scatter(&root, &tmp.path().join("scattered"));
    let mut c = config(&root, &runs);
    (c.audio_path, c.visual_path, c.train_csv, c.test_csv) = (audio, visual, train_csv, test_csv);
    c.epochs = 1;
    let s = train(
        &c,
        &opts("scattered", false, 0),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    assert_eq!(s.epochs, 1);
    assert_eq!((s.skipped.train, s.skipped.test), (0, 0));
    assert_eq!(s.final_eval.unwrap().samples, 12);

    // `ogm eval` takes the run's paths, or the ones given: the test split moved once more.
    let ckpt = runs.join("scattered/checkpoints/best.safetensors");
    let moved = tmp.path().join("moved_test.csv");
    std::fs::rename(&c.test_csv, &moved).unwrap();
    let eval = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_ogm"))
            .arg("eval")
            .arg("--checkpoint")
            .arg(&ckpt)
            .args(args)
            .output()
            .unwrap()
    };
    let out = eval(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&c.test_csv.display().to_string()),
        "{err}"
    );
    let out = eval(&["--test_csv".as_ref(), moved.as_os_str()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("samples 12") && text.contains("acc_v"),
        "{text}"
    );
    // The same figures as one JSON object.
    let out = eval(&["--test_csv".as_ref(), moved.as_os_str(), "--json".as_ref()]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["samples"].as_u64(), v["skipped"].as_u64()),
        (Some(12), Some(0))
    );
    assert_eq!(v["device"], "cpu");
    let acc = v["acc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{v}");
    assert!(text.contains(&format!("acc     {acc:.4}")), "{text} / {v}");
    // In a build without CUDA, a GPU evaluation is refused with the build command (with
    // CUDA and no GPU: engine_gpu_cuda.rs).
    if cfg!(feature = "cuda") {
        return;
    }
    let out = eval(&[
        "--test_csv".as_ref(),
        moved.as_os_str(),
        "--device".as_ref(),
        "cuda".as_ref(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--features cuda"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn each_missing_path_flag_is_named_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    dataset(&root);
    let paths = scatter(&root, &tmp.path().join("scattered"));
    let flags = ["--audio_path", "--visual_path", "--train_csv", "--test_csv"];
    let missing = tmp.path().join("nowhere");
    // What each error names: the visual flag's frame folder lies under it.
    let named = [
        missing.clone(),
        missing.join("Image-01-FPS"),
        missing.clone(),
        missing.clone(),
    ];
    for (i, flag) in flags.iter().enumerate() {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ogm"));
        cmd.args(["train", "--quiet", "--epochs", "1", "--ckpt_path"])
            .arg(&runs);
        for (j, f) in flags.iter().enumerate() {
            cmd.arg(f).arg(if i == j { &missing } else { &paths[j] });
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}: {err}");
        assert!(
            err.contains(&named[i].display().to_string()),
            "{flag}: the error does not name {}: {err}",
            named[i].display()
        );
        // Refused before the run folder was made.
        assert!(!runs.exists(), "{flag}");
    }
}
