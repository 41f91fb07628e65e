//! Batches built on worker threads ahead of the training step.
//!
//! An epoch's order is a seeded permutation (`shuffle`) or the file order; it is cut into
//! batches of `batch_size` (the last one shorter unless `drop_last`), as PyTorch's
//! `DataLoader`. Workers build whole batches; the consumer keeps `prefetch` batches in flight
//! and hands them out in order, so memory stays bounded and the step only waits when loading
//! is slower than training. Every sample's randomness comes from [`sample_seed`]`(seed, epoch,
//! index)`, so the batches are the same whatever the number of workers (zero workers loads
//! on the calling thread).
//!
//! A bad sample found while loading (a file that became unreadable, a corrupt file that
//! [`Dataset::verify`] did not see) is left out of its batch and recorded in
//! [`Epoch::skipped`]; under `strict` the epoch yields the error and ends.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::dataset::{sample_seed, Dataset, Pipeline, SkipSummary};
use super::error::{DataError, SampleError};

/// Settings of a loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Reshuffle every epoch (training) or keep file order (evaluation).
    pub shuffle: bool,
    /// Drop a last, shorter batch.
    pub drop_last: bool,
    /// Worker threads; 0 loads on the caller's thread.
    pub workers: usize,
    /// Batches in flight ahead of the consumer (at least 1).
    pub prefetch: usize,
    /// The run's seed: shuffles, frame choice, crops, flips.
    pub seed: u64,
}

impl LoaderConfig {
    /// Training defaults as in the official main.py (batch 64, shuffled, last batch kept),
    /// with `workers` threads and two batches in flight per worker.
    pub fn train(batch_size: usize, workers: usize, seed: u64) -> LoaderConfig {
        LoaderConfig {
            batch_size,
            shuffle: true,
            drop_last: false,
            workers,
            prefetch: 2 * workers.max(1),
            seed,
        }
    }

    /// Evaluation defaults: file order, last batch kept.
    pub fn eval(batch_size: usize, workers: usize) -> LoaderConfig {
        LoaderConfig {
            shuffle: false,
            ..LoaderConfig::train(batch_size, workers, 0)
        }
    }
}

/// A batch, in the layouts the model takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[B, 1, bins, frames]` spectrograms, row-major.
    pub audio: Vec<f32>,
    /// The shape of `audio`.
    pub audio_shape: [usize; 4],
    /// `[B, 3, T, H, W]` frames, row-major.
    pub visual: Vec<f32>,
    /// The shape of `visual`.
    pub visual_shape: [usize; 5],
    /// Class indices, one per sample.
    pub labels: Vec<u32>,
    /// Dataset indices of the samples, in batch order.
    pub indices: Vec<usize>,
}

impl Batch {
    /// Samples in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for a batch without samples (never yielded by [`Epoch`]).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Time the consumer spent waiting for batches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoaderStats {
    /// Batches handed out.
    pub batches: usize,
    /// Total time blocked in `next()`, the first batch included.
    pub waited: Duration,
    /// Time blocked for the first batch (the pipeline filling up).
    pub first_wait: Duration,
}

/// Builds batches of a dataset.
#[derive(Debug, Clone)]
pub struct Loader {
    dataset: Arc<Dataset>,
    config: LoaderConfig,
}

impl Loader {
    /// A loader over `dataset`.
    pub fn new(dataset: Arc<Dataset>, config: LoaderConfig) -> Result<Loader, DataError> {
        if config.batch_size == 0 {
            return Err(DataError::Config("batch_size must be at least 1".into()));
        }
        Ok(Loader {
            dataset,
            config: LoaderConfig {
                prefetch: config.prefetch.max(1),
                ..config
            },
        })
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// The sample order of `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            // u64::MAX as the index keeps the shuffle's stream apart from every sample's.
            let mut rng =
                Xoshiro256PlusPlus::seed_from_u64(sample_seed(self.config.seed, epoch, u64::MAX));
            order.shuffle(&mut rng);
        }
        order
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Starts loading `epoch` (0-based) in the background.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        let b = self.config.batch_size;
        let order = self.order(epoch);
        let jobs: Vec<Vec<usize>> = order
            .chunks(b)
            .take(self.batches_per_epoch())
            .map(<[usize]>::to_vec)
            .collect();
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (res_tx, res_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..self.config.workers)
            .map(|_| {
                let (dataset, job_rx, res_tx) =
                    (self.dataset.clone(), job_rx.clone(), res_tx.clone());
                let seed = self.config.seed;
                std::thread::spawn(move || worker(&dataset, seed, epoch, &job_rx, &res_tx))
            })
            .collect();
        let mut e = Epoch {
            dataset: self.dataset.clone(),
            seed: self.config.seed,
            epoch,
            jobs,
            next_job: 0,
            next_out: 0,
            job_tx: Some(job_tx),
            res_rx,
            ready: HashMap::new(),
            workers,
            pipeline: None,
            skipped: SkipSummary::default(),
            stats: LoaderStats::default(),
            failed: false,
        };
        if e.workers.is_empty() {
            e.pipeline = Some(Pipeline::new(self.dataset.config()).expect("validated by Dataset"));
        } else {
            for _ in 0..self.config.prefetch {
                e.dispatch();
            }
        }
        e
    }
}

/// A batch job: its position in the epoch and its dataset indices.
type Job = (usize, Vec<usize>);
/// A finished batch: its position, the batch (None when every sample failed), the failures.
type Done = (usize, Option<Batch>, Vec<SampleError>);

fn worker(
    dataset: &Dataset,
    seed: u64,
    epoch: u64,
    jobs: &Mutex<Receiver<Job>>,
    out: &Sender<Done>,
) {
    let mut pipe = Pipeline::new(dataset.config()).expect("validated by Dataset");
    loop {
        // Hold the lock only to take a job, never while loading.
        let job = jobs.lock().map(|rx| rx.recv());
        let Ok(Ok((no, indices))) = job else { return };
        let (batch, bad) = build_batch(dataset, seed, epoch, &indices, &mut pipe);
        if out.send((no, batch, bad)).is_err() {
            return;
        }
    }
}

/// Loads the samples of one batch and stacks them; failed samples are left out.
fn build_batch(
    dataset: &Dataset,
    seed: u64,
    epoch: u64,
    indices: &[usize],
    pipe: &mut Pipeline,
) -> (Option<Batch>, Vec<SampleError>) {
    let [_, f, t] = dataset.audio_shape();
    let [c, tt, h, w] = dataset.visual_shape();
    let mut batch = Batch {
        audio: Vec::with_capacity(indices.len() * f * t),
        audio_shape: [0, 1, f, t],
        visual: Vec::with_capacity(indices.len() * c * tt * h * w),
        visual_shape: [0, c, tt, h, w],
        labels: Vec::with_capacity(indices.len()),
        indices: Vec::with_capacity(indices.len()),
    };
    let mut bad = Vec::new();
    for &i in indices {
        match dataset.load(i, sample_seed(seed, epoch, i as u64), pipe) {
            Ok(s) => {
                batch.audio.extend_from_slice(&s.audio);
                batch.visual.extend_from_slice(&s.visual);
                batch.labels.push(s.label);
                batch.indices.push(i);
            }
            Err(e) => bad.push(e),
        }
    }
    batch.audio_shape[0] = batch.labels.len();
    batch.visual_shape[0] = batch.labels.len();
    ((!batch.is_empty()).then_some(batch), bad)
}

/// One epoch's batches, in order. Dropping it stops the workers.
pub struct Epoch {
    dataset: Arc<Dataset>,
    seed: u64,
    epoch: u64,
    jobs: Vec<Vec<usize>>,
    next_job: usize,
    next_out: usize,
    job_tx: Option<Sender<Job>>,
    res_rx: Receiver<Done>,
    ready: HashMap<usize, (Option<Batch>, Vec<SampleError>)>,
    workers: Vec<JoinHandle<()>>,
    pipeline: Option<Pipeline>,
    skipped: SkipSummary,
    stats: LoaderStats,
    failed: bool,
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("epoch", &self.epoch)
            .field("batches", &self.jobs.len())
            .field("next", &self.next_out)
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Epoch {
    /// Samples skipped so far in this epoch, with reasons.
    pub fn skipped(&self) -> &SkipSummary {
        &self.skipped
    }

    /// Waiting time so far.
    pub fn stats(&self) -> LoaderStats {
        self.stats
    }

    /// Batches in the epoch.
    pub fn batches(&self) -> usize {
        self.jobs.len()
    }

    fn dispatch(&mut self) {
        if self.next_job < self.jobs.len() {
            let job = (self.next_job, std::mem::take(&mut self.jobs[self.next_job]));
            self.next_job += 1;
            if let Some(tx) = &self.job_tx {
                // A send fails only when every worker has exited, which `next` reports.
                let _ = tx.send(job);
            }
        }
    }

    /// The next finished batch, in order, waiting for it if needed.
    fn take_next(&mut self) -> Result<(Option<Batch>, Vec<SampleError>), DataError> {
        let no = self.next_out;
        if let Some(pipe) = self.pipeline.as_mut() {
            let indices = std::mem::take(&mut self.jobs[no]);
            return Ok(build_batch(
                &self.dataset,
                self.seed,
                self.epoch,
                &indices,
                pipe,
            ));
        }
        loop {
            if let Some(done) = self.ready.remove(&no) {
                return Ok(done);
            }
            // Workers only exit early by panicking (the job channel is still open), and a
            // panicked worker's batch never comes: poll so that this cannot hang.
            match self.res_rx.recv_timeout(Duration::from_millis(50)) {
                Ok((n, batch, bad)) => {
                    self.ready.insert(n, (batch, bad));
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.workers.iter().any(JoinHandle::is_finished) {
                        return Err(DataError::WorkerPanic);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Err(DataError::WorkerPanic),
            }
        }
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = Instant::now();
        while !self.failed && self.next_out < self.jobs.len() {
            let result = self.take_next();
            self.next_out += 1;
            if self.pipeline.is_none() {
                self.dispatch();
            }
            let (batch, bad) = match result {
                Ok(done) => done,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            };
            if let Some(first) = bad.first() {
                if self.dataset.config().strict {
                    self.failed = true;
                    return Some(Err(DataError::Strict(first.clone())));
                }
                bad.into_iter().for_each(|e| self.skipped.push(e));
            }
            if let Some(batch) = batch {
                let waited = start.elapsed();
                if self.stats.batches == 0 {
                    self.stats.first_wait = waited;
                }
                self.stats.batches += 1;
                self.stats.waited += waited;
                return Some(Ok(batch));
            }
        }
        None
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        // Closing the job channel ends the workers after their current batch.
        self.job_tx = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}
