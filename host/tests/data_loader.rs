//! The background loader: order, batch shapes, determinism across worker counts, bad samples
//! met while loading, and prefetching.

mod data_common;

use std::sync::Arc;
use std::time::Duration;

use data_common::{small_config, small_synth, write_synth, TempDir};
use ogm_host::data::loader::{Batch, Loader, LoaderConfig};
use ogm_host::data::synth::SynthConfig;
use ogm_host::data::{DataError, DataPaths, Dataset, DatasetConfig, SkipReason, Split};

/// 12 training and 6 test clips of 0.2 s with `fps` in the frame folder's name, three 20x16
/// frames each; read as 0.2 s of audio, n_fft 64 (33 bins), hop 49 (91 frames), 12x12 frames.
fn dataset(tag: &str, fps: usize) -> (TempDir, DatasetConfig) {
    let synth = SynthConfig {
        fps,
        ..small_synth(0.2, 20, 16)
    };
    let d = write_synth(tag, &synth);
    let cfg = DatasetConfig {
        fps,
        ..small_config(4410, 64, 49, 12)
    };
    (d, cfg)
}

fn collect(loader: &Loader, epoch: u64) -> Vec<Batch> {
    loader.epoch(epoch).map(|b| b.unwrap()).collect()
}

#[test]
fn batches_have_the_model_layout() {
    let (d, cfg) = dataset("layout", 3);
    let ds = Arc::new(Dataset::open(&DataPaths::under(&d.0), Split::Train, cfg).unwrap());
    let loader = Loader::new(ds.clone(), LoaderConfig::train(5, 2, 7)).unwrap();
    assert_eq!(loader.batches_per_epoch(), 3);
    let batches = collect(&loader, 0);
    assert_eq!(
        batches.iter().map(Batch::len).collect::<Vec<_>>(),
        [5, 5, 2]
    );
    for b in &batches {
        let n = b.len();
        assert_eq!(b.audio_shape, [n, 1, 33, 91]);
        assert_eq!(b.visual_shape, [n, 3, 3, 12, 12]);
        assert_eq!(b.audio.len(), b.audio_shape.iter().product::<usize>());
        assert_eq!(b.visual.len(), b.visual_shape.iter().product::<usize>());
        for (k, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.labels[k], ds.clips()[i].label);
        }
    }
    // Every sample exactly once per epoch.
    let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..12).collect::<Vec<_>>());

    let drop_last = Loader::new(
        ds,
        LoaderConfig {
            drop_last: true,
            ..LoaderConfig::train(5, 2, 7)
        },
    )
    .unwrap();
    assert_eq!(collect(&drop_last, 0).len(), 2);
}

#[test]
fn same_batches_for_any_worker_count() {
    let (d, cfg) = dataset("workers", 1);
    let ds = Arc::new(Dataset::open(&DataPaths::under(&d.0), Split::Train, cfg).unwrap());
    let run = |workers: usize, prefetch: usize, epoch: u64| {
        let c = LoaderConfig {
            prefetch,
            ..LoaderConfig::train(4, workers, 42)
        };
        collect(&Loader::new(ds.clone(), c).unwrap(), epoch)
    };
    let reference = run(0, 1, 0);
    assert_eq!(run(1, 1, 0), reference);
    assert_eq!(run(3, 5, 0), reference);
    // Another epoch reshuffles and redraws the crops.
    let next = run(2, 2, 1);
    assert_ne!(
        next.iter().map(|b| b.indices.clone()).collect::<Vec<_>>(),
        reference
            .iter()
            .map(|b| b.indices.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(run(0, 1, 1), next);
    // Another seed, another order.
    let c = LoaderConfig::train(4, 2, 43);
    assert_ne!(collect(&Loader::new(ds.clone(), c).unwrap(), 0), reference);
}

#[test]
fn evaluation_keeps_file_order() {
    let (d, cfg) = dataset("eval", 1);
    let ds = Arc::new(Dataset::open(&DataPaths::under(&d.0), Split::Test, cfg).unwrap());
    let loader = Loader::new(ds, LoaderConfig::eval(4, 2)).unwrap();
    let idx: Vec<usize> = collect(&loader, 5)
        .iter()
        .flat_map(|b| b.indices.clone())
        .collect();
    assert_eq!(idx, (0..6).collect::<Vec<_>>());
}

#[test]
fn a_corrupt_file_met_while_loading_is_skipped_or_stops_the_epoch() {
    let (d, cfg) = dataset("corrupt", 1);
    let ds = Dataset::open(&DataPaths::under(&d.0), Split::Test, cfg.clone()).unwrap();
    let victim = ds.clips()[2].clone();
    std::fs::write(&victim.audio, b"garbage").unwrap();

    let loader = Loader::new(Arc::new(ds), LoaderConfig::eval(4, 2)).unwrap();
    let mut epoch = loader.epoch(0);
    let batches: Vec<Batch> = epoch.by_ref().map(|b| b.unwrap()).collect();
    assert_eq!(batches.iter().map(Batch::len).collect::<Vec<_>>(), [3, 2]);
    assert!(!batches[0].indices.contains(&2));
    assert_eq!(epoch.skipped().len(), 1);
    assert_eq!(
        epoch.skipped().errors()[0].reason(),
        SkipReason::CorruptAudio
    );
    assert_eq!(epoch.skipped().errors()[0].path(), victim.audio);

    let strict = Dataset::open(
        &DataPaths::under(&d.0),
        Split::Test,
        DatasetConfig {
            strict: true,
            ..cfg
        },
    )
    .unwrap();
    let loader = Loader::new(Arc::new(strict), LoaderConfig::eval(4, 2)).unwrap();
    let results: Vec<_> = loader.epoch(0).collect();
    assert_eq!(results.len(), 1, "the epoch ends at the error");
    match &results[0] {
        Err(DataError::Strict(e)) => assert_eq!(e.path(), victim.audio),
        other => panic!("{other:?}"),
    }
}

#[test]
fn prefetching_keeps_a_slower_step_from_waiting() {
    let (d, cfg) = dataset("prefetch", 1);
    let ds = Arc::new(Dataset::open(&DataPaths::under(&d.0), Split::Train, cfg).unwrap());
    let loader = Loader::new(ds, LoaderConfig::train(2, 2, 1)).unwrap();
    let mut epoch = loader.epoch(0);
    let mut n = 0;
    for b in epoch.by_ref() {
        b.unwrap();
        n += 1;
        // A "training step" much slower than loading two tiny samples.
        std::thread::sleep(Duration::from_millis(150));
    }
    let s = epoch.stats();
    assert_eq!((n, s.batches), (6, 6));
    let after_first = s.waited - s.first_wait;
    assert!(
        after_first < Duration::from_millis(100),
        "waited {after_first:?} after the first batch"
    );
}

#[test]
fn zero_batch_size_is_a_config_error() {
    let (d, cfg) = dataset("zero", 1);
    let ds = Arc::new(Dataset::open(&DataPaths::under(&d.0), Split::Test, cfg).unwrap());
    assert!(matches!(
        Loader::new(ds, LoaderConfig::eval(0, 1)),
        Err(DataError::Config(_))
    ));
}
