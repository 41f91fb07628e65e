//! The dataset over the CREMA-D layout, on synthetic datasets written by `data::synth`:
//! shapes, determinism, and every bad-input case (skipped and counted by default, an error
//! naming the file under `strict`).

mod data_common;

use std::path::Path;

use data_common::{write_synth, TempDir};
use ogm_host::data::dataset::{sample_seed, Pipeline};
use ogm_host::data::synth::{write_dataset, SynthConfig};
use ogm_host::data::{
    DataError, DataPaths, Dataset, DatasetConfig, SampleError, SkipReason, Split,
};

/// 12 training and 6 test clips of 0.3 s, three 24x20 frames each.
fn small_synth() -> SynthConfig {
    data_common::small_synth(0.3, 24, 20)
}

/// Small shapes: 0.5 s of audio, n_fft 128 (65 bins), hop 64 (ceil: 173 frames), 16x16 frames.
fn small_config() -> DatasetConfig {
    data_common::small_config(11025, 128, 64, 16)
}

fn strict() -> DatasetConfig {
    DatasetConfig {
        strict: true,
        ..small_config()
    }
}

fn make(tag: &str) -> TempDir {
    write_synth(tag, &small_synth())
}

fn first_clip(root: &Path, split: Split) -> String {
    let csv = std::fs::read_to_string(root.join(split.file_name())).unwrap();
    csv.lines()
        .next()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn synthetic_dataset_opens_and_loads() {
    let d = make("open");
    let train = Dataset::open(&DataPaths::under(&d.0), Split::Train, small_config()).unwrap();
    assert_eq!(train.len(), 12);
    assert!(train.skipped().is_empty());
    assert!(train.augment());
    assert_eq!(train.audio_shape(), [1, 65, 173]);
    assert_eq!(train.visual_shape(), [3, 1, 16, 16]);
    let mut pipe = Pipeline::new(train.config()).unwrap();
    for i in 0..train.len() {
        let s = train
            .load(i, sample_seed(0, 0, i as u64), &mut pipe)
            .unwrap();
        assert_eq!(s.audio.len(), 65 * 173);
        assert_eq!(s.visual.len(), 3 * 16 * 16);
        assert_eq!(s.label, train.clips()[i].label);
        assert!(s.audio.iter().chain(&s.visual).all(|v| v.is_finite()));
        // The clip id names its class (synth writes `<split>_<class>_<k>_<LABEL>`).
        let label = train.config().labels.name(s.label).unwrap();
        assert!(
            train.clips()[i].id.ends_with(label),
            "{}",
            train.clips()[i].id
        );
    }
    let test = Dataset::open(&DataPaths::under(&d.0), Split::Test, small_config()).unwrap();
    assert_eq!(test.len(), 6);
    assert!(!test.augment());
}

#[test]
fn training_randomness_is_seeded_and_evaluation_has_none() {
    let d = make("seeded");
    let cfg = DatasetConfig {
        fps: 1,
        ..small_config()
    };
    let train = Dataset::open(&DataPaths::under(&d.0), Split::Train, cfg.clone()).unwrap();
    let mut pipe = Pipeline::new(&cfg).unwrap();
    let a = train.load(3, 11, &mut pipe).unwrap();
    assert_eq!(a, train.load(3, 11, &mut pipe).unwrap());
    let differs = (12..20).any(|s| train.load(3, s, &mut pipe).unwrap().visual != a.visual);
    assert!(differs, "crops and flips must depend on the seed");
    // Audio has no augmentation.
    assert_eq!(a.audio, train.load(3, 99, &mut pipe).unwrap().audio);

    let test = Dataset::open(&DataPaths::under(&d.0), Split::Test, cfg).unwrap();
    let t = test.load(0, 1, &mut pipe).unwrap();
    assert_eq!(t, test.load(0, 2, &mut pipe).unwrap());
}

#[test]
fn three_frames_per_clip_stack_as_channels_time_height_width() {
    let d = write_synth(
        "fps3",
        &SynthConfig {
            fps: 3,
            ..small_synth()
        },
    );
    let cfg = DatasetConfig {
        fps: 3,
        ..small_config()
    };
    let test = Dataset::open(&DataPaths::under(&d.0), Split::Test, cfg.clone()).unwrap();
    assert_eq!(test.visual_shape(), [3, 3, 16, 16]);
    let mut pipe = Pipeline::new(&cfg).unwrap();
    let s = test.load(0, 0, &mut pipe).unwrap();
    // Evenly spaced frames of a 3-frame directory are all three, in order: frame t of
    // channel c sits at (c * 3 + t) * 256.
    let mut single = ogm_host::data::image::ImageTransform::new(cfg.image).unwrap();
    for (t, path) in test.clips()[0].frames.iter().enumerate() {
        let img = ogm_host::data::image::decode_image(path).unwrap();
        let mut one = vec![0.0; 3 * 256];
        single.test(&img, &mut one);
        for c in 0..3 {
            assert_eq!(
                &s.visual[(c * 3 + t) * 256..(c * 3 + t + 1) * 256],
                &one[c * 256..(c + 1) * 256]
            );
        }
    }
}

/// Opens a split with the default (skip) policy and with `strict`, and checks that both report
/// `want` about `path`.
fn assert_skipped_and_strict(root: &Path, split: Split, reason: SkipReason, path: &Path) {
    let ds = Dataset::open(&DataPaths::under(root), split, small_config()).unwrap();
    let errs = ds.skipped().errors();
    assert_eq!(errs.len(), 1, "{}", ds.skipped());
    assert_eq!(errs[0].reason(), reason);
    assert_eq!(errs[0].path(), path);
    assert!(ds
        .skipped()
        .to_string()
        .contains(&path.display().to_string()));
    match Dataset::open(&DataPaths::under(root), split, strict()) {
        Err(DataError::Strict(e)) => {
            assert_eq!(e, errs[0]);
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        other => panic!("strict: {other:?}"),
    }
}

#[test]
fn missing_wav_is_skipped_or_fatal() {
    let d = make("nowav");
    let clip = first_clip(&d.0, Split::Train);
    let wav = d.0.join("AudioWAV").join(format!("{clip}.wav"));
    std::fs::remove_file(&wav).unwrap();
    assert_skipped_and_strict(&d.0, Split::Train, SkipReason::MissingAudio, &wav);
}

#[test]
fn missing_frame_directory_and_directory_without_frames() {
    let d = make("noframes");
    let clip = first_clip(&d.0, Split::Train);
    let dir = d.0.join("Image-01-FPS").join(&clip);
    for f in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not a frame").unwrap();
    assert_skipped_and_strict(&d.0, Split::Train, SkipReason::NoFrames, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_skipped_and_strict(&d.0, Split::Train, SkipReason::MissingFrames, &dir);
}

#[test]
fn too_few_frames_for_fps() {
    let d = make("fewframes");
    // Three frames per clip in Image-01-FPS; ask for 4 via a renamed directory.
    std::fs::rename(d.0.join("Image-01-FPS"), d.0.join("Image-04-FPS")).unwrap();
    let cfg = DatasetConfig {
        fps: 4,
        ..small_config()
    };
    let ds = Dataset::open(&DataPaths::under(&d.0), Split::Test, cfg);
    match ds {
        Err(DataError::EmptySplit { skipped, .. }) => assert_eq!(skipped, 6),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_label_and_extra_columns_name_file_and_line() {
    let d = make("csv");
    let csv = d.0.join("train.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    let clip = first_clip(&d.0, Split::Train);
    text.push_str(&format!("{clip},BORED\n"));
    std::fs::write(&csv, &text).unwrap();
    assert_skipped_and_strict(&d.0, Split::Train, SkipReason::UnknownLabel, &csv);
    let ds = Dataset::open(&DataPaths::under(&d.0), Split::Train, small_config()).unwrap();
    match &ds.skipped().errors()[0] {
        SampleError::UnknownLabel { line, label, .. } => {
            assert_eq!((*line, label.as_str()), (13, "BORED"))
        }
        e => panic!("{e:?}"),
    }

    // An extra column on an otherwise good row.
    let text = std::fs::read_to_string(&csv)
        .unwrap()
        .replace(",BORED\n", ",ANG,0.93\n");
    std::fs::write(&csv, text).unwrap();
    assert_skipped_and_strict(&d.0, Split::Train, SkipReason::Columns, &csv);
    assert!(
        Dataset::open(&DataPaths::under(&d.0), Split::Train, small_config())
            .unwrap()
            .skipped()
            .to_string()
            .contains("train.csv:13")
    );
}

#[test]
fn empty_split_is_an_error_naming_the_file() {
    let d = make("empty");
    let csv = d.0.join("test.csv");
    std::fs::write(&csv, "\u{feff}\n\n").unwrap();
    match Dataset::open(&DataPaths::under(&d.0), Split::Test, small_config()) {
        Err(e @ DataError::EmptySplit { .. }) => assert!(e.to_string().contains("test.csv"), "{e}"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(&csv).unwrap();
    match Dataset::open(&DataPaths::under(&d.0), Split::Test, small_config()) {
        Err(e @ DataError::SplitRead { .. }) => assert!(e.to_string().contains("test.csv"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn corrupt_wav_and_jpeg_are_found_by_verify() {
    let d = make("corrupt");
    let clip = first_clip(&d.0, Split::Test);
    let wav = d.0.join("AudioWAV").join(format!("{clip}.wav"));
    std::fs::write(&wav, b"RIFF....WAVEgarbage").unwrap();
    let mut ds = Dataset::open(&DataPaths::under(&d.0), Split::Test, small_config()).unwrap();
    assert_eq!(ds.len(), 6, "opening only checks that files exist");
    ds.verify(2).unwrap();
    assert_eq!(ds.len(), 5);
    assert_eq!(ds.skipped().errors()[0].reason(), SkipReason::CorruptAudio);
    assert_eq!(ds.skipped().errors()[0].path(), wav);
    let mut strict_ds = Dataset::open(&DataPaths::under(&d.0), Split::Test, strict()).unwrap();
    match strict_ds.verify(2) {
        Err(DataError::Strict(SampleError::CorruptAudio { path, .. })) => assert_eq!(path, wav),
        other => panic!("{other:?}"),
    }

    // A corrupt JPEG in another clip.
    let clip2 = ds.clips()[0].id.clone();
    let jpg = d.0.join("Image-01-FPS").join(&clip2).join("frame_001.jpg");
    let bytes = std::fs::read(&jpg).unwrap();
    std::fs::write(&jpg, &bytes[..40]).unwrap();
    let mut ds = Dataset::open(&DataPaths::under(&d.0), Split::Test, small_config()).unwrap();
    ds.verify(1).unwrap();
    assert_eq!(ds.len(), 4);
    let reasons: Vec<_> = ds
        .skipped()
        .errors()
        .iter()
        .map(|e| (e.reason(), e.path().to_path_buf()))
        .collect();
    assert!(
        reasons.contains(&(SkipReason::CorruptImage, jpg.clone())),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(SkipReason::CorruptAudio, wav.clone())),
        "{reasons:?}"
    );
    assert!(
        ds.skipped().to_string().starts_with("2 skipped: "),
        "{}",
        ds.skipped()
    );
}

/// Moves the four parts of a single-folder dataset to four unrelated places.
fn scatter(root: &Path, base: &Path) -> DataPaths {
    let paths = DataPaths {
        audio: base.join("wav_store/cremad_wavs"),
        visual: base.join("frames_store"),
        test_audio: base.join("wav_store/cremad_wavs"),
        test_visual: base.join("frames_store"),
        train_csv: base.join("splits_a/my_train.csv"),
        test_csv: base.join("splits_b/my_test.csv"),
    };
    let single = DataPaths::under(root);
    for (from, to) in [
        (&single.audio, &paths.audio),
        (
            &single.frame_dir(Split::Train, &small_config()),
            &paths.frame_dir(Split::Train, &small_config()),
        ),
        (&single.train_csv, &paths.train_csv),
        (&single.test_csv, &paths.test_csv),
    ] {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::rename(from, to).unwrap();
    }
    paths
}

#[test]
fn separate_folders_load_the_same_samples_as_one_folder() {
    let d = TempDir::new("scatter");
    let root = d.0.join("root");
    write_dataset(&small_synth(), &root).unwrap();
    let mut pipe = Pipeline::new(&small_config()).unwrap();
    let load_all = |paths: &DataPaths, split: Split, pipe: &mut Pipeline| {
        let ds = Dataset::open(paths, split, small_config()).unwrap();
        assert!(ds.skipped().is_empty(), "{}", ds.skipped());
        (0..ds.len())
            .map(|i| ds.load(i, sample_seed(5, 1, i as u64), pipe).unwrap())
            .collect::<Vec<_>>()
    };
    let before_train = load_all(&DataPaths::under(&root), Split::Train, &mut pipe);
    let before_test = load_all(&DataPaths::under(&root), Split::Test, &mut pipe);
    let paths = scatter(&root, &d.0.join("elsewhere"));
    // Nothing is left where the single-folder layout would look.
    assert!(!root.join("AudioWAV").exists() && !root.join("train.csv").exists());
    let ds = Dataset::open(&paths, Split::Train, small_config()).unwrap();
    assert!(ds.clips()[0].audio.starts_with(&paths.audio));
    assert!(ds.clips()[0].frames[0].starts_with(paths.visual.join("Image-01-FPS")));
    assert_eq!(ds.paths(), &paths);
    assert_eq!(load_all(&paths, Split::Train, &mut pipe), before_train);
    assert_eq!(load_all(&paths, Split::Test, &mut pipe), before_test);
}

#[test]
fn each_missing_path_is_an_error_naming_it() {
    let d = make("missing-paths");
    let good = DataPaths::under(&d.0);
    let nowhere = d.0.join("does_not_exist");
    let cases = [
        (
            DataPaths {
                audio: nowhere.clone(),
                ..good.clone()
            },
            nowhere.clone(),
        ),
        (
            DataPaths {
                visual: nowhere.clone(),
                ..good.clone()
            },
            nowhere.join("Image-01-FPS"),
        ),
        (
            DataPaths {
                train_csv: nowhere.join("train.csv"),
                ..good.clone()
            },
            nowhere.join("train.csv"),
        ),
    ];
    for (paths, missing) in cases {
        for cfg in [small_config(), strict()] {
            let e = Dataset::open(&paths, Split::Train, cfg).unwrap_err();
            let named = match &e {
                DataError::MissingFolder { path, .. } | DataError::SplitRead { path, .. } => path,
                other => panic!("{other:?}"),
            };
            assert_eq!(named, &missing);
            assert!(
                e.to_string().contains(&missing.display().to_string()),
                "{e}"
            );
        }
    }
    // The test split file is independent of the training one.
    let paths = DataPaths {
        test_csv: nowhere.join("test.csv"),
        ..good.clone()
    };
    assert!(Dataset::open(&paths, Split::Train, small_config()).is_ok());
    let e = Dataset::open(&paths, Split::Test, small_config()).unwrap_err();
    assert!(matches!(&e, DataError::SplitRead { path, .. } if *path == nowhere.join("test.csv")));
    // A file where a folder belongs is as wrong as no folder.
    let paths = DataPaths {
        audio: good.train_csv.clone(),
        ..good
    };
    let e = Dataset::open(&paths, Split::Train, small_config()).unwrap_err();
    assert!(e.to_string().contains("audio folder"), "{e}");
}
