//! Datasets other than CREMA-D: a class list (`--classes_file`, one name a line) names the
//! labels of the split files and the rows of the model's output. A three-class dataset
//! trains end to end, its run folder evaluates with the same classes, and bad lists are
//! refused before any work with the file named. The official VGGSound loader's settings
//! (`--audio_frontend vggsound`, `--use_video_frames 3` from an `Image-01-FPS` folder) train
//! end to end too, with random audio crops in training and fixed ones in evaluation, and the
//! official VGGSound folder layout (each split apart, `<clip>.mp4` frame folders) is read in
//! place.

mod train_common;

use std::path::{Path, PathBuf};
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
        frame_dir_suffix: None,
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

/// Writes a three-class dataset with four frames a clip at 16 kHz under `root` and returns
/// a one-epoch configuration with VGGSound's settings (its front end, three frames a clip).
fn vggsound_like(root: &Path, runs: &Path, train_per_class: usize) -> TrainConfig {
    let synth = SynthConfig {
        labels: LabelSet::new(names()).unwrap(),
        train_per_class,
        test_per_class: 2,
        audio_seconds: 0.3,
        sample_rate: 16000,
        width: 32,
        height: 32,
        frames_per_clip: 4,
        fps: 1,
        ..SynthConfig::default()
    };
    write_dataset(&synth, root).unwrap();
    TrainConfig {
        dataset: "Tones".into(),
        classes: names(),
        audio_frontend: AudioFrontend::Vggsound,
        audio_seconds: 0.5,
        use_video_frames: 3,
        epochs: 1,
        ..config(root, runs)
    }
}

/// VGGSound's settings: 3 frames a clip read from `Image-01-FPS`, 16 kHz audio cropped at a
/// random offset in training (the same clip gives different spectrograms under two seeds) and
/// at offset 0 in evaluation (the same under any seed); the run trains and evaluates, and its
/// config keeps both settings.
#[test]
fn vggsound_settings_train_with_random_crops() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    let c = vggsound_like(&root, &runs, 4);
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

/// Moves the clips of `split` from the single-folder dataset `root` into the official
/// VGGSound layout under `vgg`: `<split>-audios/<split>-set/<clip>.wav` and
/// `<split>-videos/<split>-set-img/Image-01-FPS/<clip>.mp4/`. Returns the audio folder and
/// the folder holding `Image-01-FPS`.
fn to_official_layout(root: &Path, vgg: &Path, split: &str) -> (PathBuf, PathBuf) {
    let audio = vgg.join(format!("{split}-audios/{split}-set"));
    let visual = vgg.join(format!("{split}-videos/{split}-set-img"));
    std::fs::create_dir_all(&audio).unwrap();
    std::fs::create_dir_all(visual.join("Image-01-FPS")).unwrap();
    let rows = std::fs::read_to_string(root.join(format!("{split}.csv"))).unwrap();
    for clip in rows.lines().map(|l| l.split(',').next().unwrap()) {
        let wav = format!("{clip}.wav");
        std::fs::rename(root.join("AudioWAV").join(&wav), audio.join(&wav)).unwrap();
        std::fs::rename(
            root.join("Image-01-FPS").join(clip),
            visual.join("Image-01-FPS").join(format!("{clip}.mp4")),
        )
        .unwrap();
    }
    (audio, visual)
}

/// The official VGGSound layout is read where it lies: each split's media in folders of its
/// own (`--test_audio_path`, `--test_visual_path`) and frame folders named `<clip>.mp4`
/// (`--frame_dir_suffix .mp4`). Both splits load the very samples of the single-folder
/// layout; the run trains and keeps the settings; `ogm eval --audio_path` moves the test
/// clips' audio; a missing test folder is named as such; bad suffixes are refused.
#[test]
fn the_official_vggsound_layout_is_read_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, runs, vgg) = (
        tmp.path().join("data"),
        tmp.path().join("runs"),
        tmp.path().join("VGGsound"),
    );
    let single = vggsound_like(&root, &runs, 3);
    let load_all = |c: &TrainConfig, split: Split| {
        let ds = open_split(c, split).unwrap();
        assert!(ds.skipped().is_empty(), "{}", ds.skipped());
        let mut pipe = Pipeline::new(ds.config()).unwrap();
        (0..ds.len())
            .map(|i| ds.load(i, 7 + i as u64, &mut pipe).unwrap())
            .collect::<Vec<_>>()
    };
    let before = [
        load_all(&single, Split::Train),
        load_all(&single, Split::Test),
    ];

    let (train_audio, train_visual) = to_official_layout(&root, &vgg, "train");
    let (test_audio, test_visual) = to_official_layout(&root, &vgg, "test");
    let c = TrainConfig {
        audio_path: train_audio,
        visual_path: train_visual,
        test_audio_path: Some(test_audio.clone()),
        test_visual_path: Some(test_visual),
        frame_dir_suffix: ".mp4".into(),
        ..single.clone()
    };
    c.validate().unwrap();
    assert_eq!(load_all(&c, Split::Train), before[0]);
    assert_eq!(load_all(&c, Split::Test), before[1]);

    // Without the suffix no frame folder is found; without the test folders the test
    // clips' WAVs are not found: nothing usable is left in those splits.
    let no_suffix = TrainConfig {
        frame_dir_suffix: String::new(),
        ..c.clone()
    };
    assert!(open_split(&no_suffix, Split::Train).is_err());
    let shared = TrainConfig {
        test_audio_path: None,
        test_visual_path: None,
        ..c.clone()
    };
    assert!(open_split(&shared, Split::Test).is_err());
    let gone = TrainConfig {
        test_audio_path: Some(vgg.join("test-audios/nope")),
        ..c.clone()
    };
    let e = open_split(&gone, Split::Test).err().unwrap().to_string();
    assert!(e.contains("test audio folder") && e.contains("nope"), "{e}");

    let s = train(&c, &opts("vgg", false, 0), Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!((s.skipped.train, s.skipped.test), (0, 0));
    assert_eq!(s.final_eval.unwrap().samples, 6);
    let saved = TrainConfig::from_file(&runs.join("vgg/config.toml")).unwrap();
    assert_eq!(saved, c);

    // `ogm eval --audio_path` names where the test clips' audio is now.
    let moved = tmp.path().join("moved_test_wavs");
    std::fs::rename(&test_audio, &moved).unwrap();
    let req = |audio_path: Option<PathBuf>| EvalRequest {
        checkpoint: runs.join("vgg/checkpoints/best.safetensors"),
        test_csv: None,
        audio_path,
        visual_path: None,
        frame_dir_suffix: None,
        batch_size: 4,
        device: ogm_host::config::Device::Cpu,
    };
    let e = evaluate_checkpoint(&req(None)).unwrap_err().to_string();
    assert!(e.contains("test audio folder"), "{e}");
    let e = evaluate_checkpoint(&req(Some(moved))).unwrap();
    assert_eq!((e.result.samples, e.skipped), (6, 0));
}

/// The layout flags reach the configuration; a suffix that is not the end of a folder name
/// is refused naming the flag.
#[test]
fn layout_flags_set_the_test_folders_and_the_suffix() {
    let to_config = |args: &[&str]| {
        let mut argv = vec!["ogm", "train", "--alpha", "0.1"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Train(t) => t.to_config(),
            _ => unreachable!("a train command"),
        }
    };
    let c = to_config(&[]).unwrap();
    assert_eq!(
        (
            &c.test_audio_path,
            &c.test_visual_path,
            c.frame_dir_suffix.as_str()
        ),
        (&None, &None, "")
    );
    let c = to_config(&[
        "--test_audio_path",
        "t/a",
        "--test_visual_path",
        "t/v",
        "--frame_dir_suffix",
        ".mp4",
    ])
    .unwrap();
    assert_eq!(
        (
            c.test_audio_path.unwrap(),
            c.test_visual_path.unwrap(),
            c.frame_dir_suffix.as_str()
        ),
        (PathBuf::from("t/a"), PathBuf::from("t/v"), ".mp4")
    );
    for bad in ["x/.mp4", "a\\b"] {
        let e = to_config(&["--frame_dir_suffix", bad])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--frame_dir_suffix"), "{bad}: {e}");
    }
}

/// `ogm synth --fps N` writes what `ogm train --fps N` reads: N frames a clip (at least
/// three) in `Image-0N-FPS` (it used to write three whatever N, so that every clip of a
/// four-frame run was skipped).
#[test]
fn synth_fps_writes_the_frames_train_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let synth_config = |args: &[&str]| {
        let mut argv = vec!["ogm", "synth", "--out", "x"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Synth(s) => s.to_config().unwrap(),
            _ => unreachable!("a synth command"),
        }
    };
    assert_eq!(synth_config(&[]).frames_per_clip, 3);
    assert_eq!(synth_config(&["--frames_per_clip", "5"]).frames_per_clip, 5);
    let s = synth_config(&[
        "--fps",
        "4",
        "--size",
        "32",
        "--audio_seconds",
        "0.3",
        "--train_per_class",
        "1",
        "--test_per_class",
        "1",
    ]);
    assert_eq!((s.fps, s.frames_per_clip), (4, 4));
    let root = tmp.path().join("data");
    write_dataset(&s, &root).unwrap();
    let c = TrainConfig {
        fps: 4,
        ..config(&root, &tmp.path().join("runs"))
    };
    for split in [Split::Train, Split::Test] {
        let ds = open_split(&c, split).unwrap();
        assert!(ds.skipped().is_empty(), "{}", ds.skipped());
        assert_eq!(ds.len(), 6);
        let mut pipe = Pipeline::new(ds.config()).unwrap();
        assert_eq!(
            ds.load(0, 1, &mut pipe).unwrap().visual.len(),
            3 * 4 * 32 * 32
        );
    }
}
