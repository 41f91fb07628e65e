//! Datasets other than CREMA-D: a class list (`--classes_file`, one name a line) names the
//! labels of the split files and the rows of the model's output. A three-class dataset
//! trains end to end, its run folder evaluates with the same classes, and bad lists are
//! refused before any work with the file named. The official VGGSound loader's settings
//! (`--audio_frontend vggsound`, `--use_video_frames 3` from an `Image-01-FPS` folder) train
//! end to end too, with random audio crops in training and fixed ones in evaluation.

mod train_common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use ogm_host::cli::{Cli, Command};
use ogm_host::config::{AudioFrontend, TrainConfig};
use ogm_host::data::{write_dataset, LabelSet, Pipeline, Split, SynthConfig};
use ogm_host::train::eval::{evaluate_checkpoint, EvalRequest};
use ogm_host::train::{open_split, train};
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
    for (text, expect) in [("low\nlow\n", "listed twice"), ("only\n", "at least two")] {
        std::fs::write(&file, text).unwrap();
        let e = to_config(&["--dataset", "Tones", "--classes_file", f])
            .unwrap_err()
            .to_string();
        assert!(e.contains(f) && e.contains(expect), "{text:?}: {e}");
    }
    // VGGSound's names hold commas (quoted in the split files).
    std::fs::write(&file, "male speech, man speaking\ndog barking\n").unwrap();
    let c = to_config(&["--dataset", "V", "--classes_file", f]).unwrap();
    assert_eq!(c.classes, ["male speech, man speaking", "dog barking"]);
    std::fs::write(&file, [0xff, 0xfe, 0x00]).unwrap();
    let e = to_config(&["--classes_file", f]).unwrap_err().to_string();
    assert!(e.contains(f) && e.contains("UTF-8"), "{e}");
    // The VGGSound front end brings its 5 s crops unless a length is given.
    let c = to_config(&["--audio_frontend", "vggsound"]).unwrap();
    assert_eq!(
        (c.audio_frontend, c.audio_seconds),
        (AudioFrontend::Vggsound, 5.0)
    );
    let c = to_config(&["--audio_frontend", "vggsound", "--audio_seconds", "2"]).unwrap();
    assert_eq!(c.audio_seconds, 2.0);
    let c = to_config(&["--use_video_frames", "3"]).unwrap();
    assert_eq!((c.fps, c.frames_per_clip()), (1, 3));

    let missing = tmp.path().join("nope.txt");
    let e = to_config(&["--classes_file", missing.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.txt"), "{e}");
}

/// VGGSound's settings: 3 frames a clip read from `Image-01-FPS`, 16 kHz audio cropped at a
/// random offset in training (the same clip gives different spectrograms under two seeds) and
/// at offset 0 in evaluation (the same under any seed); the run trains and evaluates, and its
/// config keeps both settings.
#[test]
fn vggsound_settings_train_with_random_crops() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    let synth = SynthConfig {
        labels: LabelSet::new(names()).unwrap(),
        train_per_class: 4,
        test_per_class: 2,
        audio_seconds: 0.3,
        sample_rate: 16000,
        width: 32,
        height: 32,
        frames_per_clip: 4,
        fps: 1,
        ..SynthConfig::default()
    };
    write_dataset(&synth, &root).unwrap();
    let c = TrainConfig {
        dataset: "Tones".into(),
        classes: names(),
        audio_frontend: AudioFrontend::Vggsound,
        audio_seconds: 0.5,
        use_video_frames: 3,
        epochs: 1,
        ..config(&root, &runs)
    };
    c.validate().unwrap();

    let train_split = open_split(&c, Split::Train).unwrap();
    let mut pipe = Pipeline::new(train_split.config()).unwrap();
    let (a, b) = (
        train_split.load(0, 1, &mut pipe).unwrap(),
        train_split.load(0, 2, &mut pipe).unwrap(),
    );
    // 0.5 s at 16 kHz, hop 128: 63 frames of 129 bins; three frames a clip.
    assert_eq!(a.audio.len(), 129 * 63);
    assert_eq!(a.visual.len(), 3 * 3 * 32 * 32);
    assert_ne!(a.audio, b.audio, "training crops at random offsets");
    let test_split = open_split(&c, Split::Test).unwrap();
    let (a, b) = (
        test_split.load(0, 1, &mut pipe).unwrap(),
        test_split.load(0, 2, &mut pipe).unwrap(),
    );
    assert_eq!(a.audio, b.audio, "evaluation crops at offset 0");

    let s = train(&c, &opts("vgg", false, 0), Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!((s.skipped.train, s.skipped.test), (0, 0));
    assert_eq!(s.final_eval.unwrap().samples, 6);
    let saved = TrainConfig::from_file(&runs.join("vgg/config.toml")).unwrap();
    assert_eq!(
        (saved.audio_frontend, saved.use_video_frames, saved.fps),
        (AudioFrontend::Vggsound, 3, 1)
    );
}
