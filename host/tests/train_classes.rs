//! Datasets other than CREMA-D: a class list (`--classes_file`, one name a line) names the
//! labels of the split files and the rows of the model's output. A three-class dataset
//! trains end to end, its run folder evaluates with the same classes, and bad lists are
//! refused before any work with the file named.

mod train_common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use ogm_host::cli::{Cli, Command};
use ogm_host::config::TrainConfig;
use ogm_host::data::{write_dataset, LabelSet, SynthConfig};
use ogm_host::train::eval::{evaluate_checkpoint, EvalRequest};
use ogm_host::train::train;
use safetensors::SafeTensors;
use train_common::{config, opts};

const CLASSES: [&str; 3] = ["low", "mid", "high"];

fn names() -> Vec<String> {
    CLASSES.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_three_class_dataset_trains_and_evaluates() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    let synth = SynthConfig {
        labels: LabelSet::new(names()).unwrap(),
        train_per_class: 5,
        test_per_class: 2,
        audio_seconds: 0.5,
        width: 32,
        height: 32,
        ..SynthConfig::default()
    };
    write_dataset(&synth, &root).unwrap();
    let c = TrainConfig {
        dataset: "Tones".into(),
        classes: names(),
        epochs: 1,
        ..config(&root, &runs)
    };
    let s = train(
        &c,
        &opts("tones", false, 0),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    assert_eq!((s.skipped.train, s.skipped.test), (0, 0));
    assert_eq!(s.final_eval.unwrap().samples, 6);

    // Three output rows, and the run's config keeps the list for `ogm eval`.
    let ckpt = runs.join("tones/checkpoints/best.safetensors");
    let bytes = std::fs::read(&ckpt).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        st.tensor("fusion_module.fc_out.weight").unwrap().shape()[0],
        3
    );
    let saved = TrainConfig::from_file(&runs.join("tones/config.toml")).unwrap();
    assert_eq!(saved.class_names().unwrap(), names());
    let e = evaluate_checkpoint(&EvalRequest {
        checkpoint: ckpt,
        test_csv: None,
        audio_path: None,
        visual_path: None,
        batch_size: 4,
        device: ogm_host::config::Device::Cpu,
    })
    .unwrap();
    assert_eq!(e.result.samples, 6);
    assert_eq!(e.skipped, 0);

    // CREMA-D's labels are unknown to this list: a CREMA-D split's rows are all skipped.
    let cremad = tmp.path().join("cremad");
    train_common::dataset(&cremad);
    let c = TrainConfig {
        dataset: "Tones".into(),
        classes: names(),
        strict: true,
        ..config(&cremad, &runs)
    };
    let err = train(
        &c,
        &opts("mixed", false, 0),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown label") && err.contains("(known: low,mid,high)"),
        "{err}"
    );
}

/// `ogm train --dataset X --classes_file F`: the list comes from the file; a dataset without
/// built-in classes and no list, and bad lists, are refused naming the flag or the file.
#[test]
fn classes_file_flag_sets_and_checks_the_list() {
    let tmp = tempfile::tempdir().unwrap();
    let to_config = |args: &[&str]| {
        let mut argv = vec!["ogm", "train", "--alpha", "0.1", "--ckpt_path", "x"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Train(t) => t.to_config(),
            _ => unreachable!("a train command"),
        }
    };
    let file = tmp.path().join("classes.txt");
    std::fs::write(&file, "\u{feff}low\n\n mid \r\nhigh\n").unwrap();
    let f = file.to_str().unwrap();
    let c = to_config(&["--dataset", "Tones", "--classes_file", f]).unwrap();
    assert_eq!((c.dataset.as_str(), c.classes.clone()), ("Tones", names()));

    let e = to_config(&["--dataset", "Tones"]).unwrap_err().to_string();
    assert!(e.contains("Tones") && e.contains("--classes_file"), "{e}");
    for (text, expect) in [
        ("low\nlow\n", "listed twice"),
        ("only\n", "at least two"),
        ("a,b\nc\n", "without commas"),
    ] {
        std::fs::write(&file, text).unwrap();
        let e = to_config(&["--dataset", "Tones", "--classes_file", f])
            .unwrap_err()
            .to_string();
        assert!(e.contains(f) && e.contains(expect), "{text:?}: {e}");
    }
    std::fs::write(&file, [0xff, 0xfe, 0x00]).unwrap();
    let e = to_config(&["--classes_file", f]).unwrap_err().to_string();
    assert!(e.contains(f) && e.contains("UTF-8"), "{e}");
    let missing = tmp.path().join("nope.txt");
    let e = to_config(&["--classes_file", missing.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.txt"), "{e}");
}
