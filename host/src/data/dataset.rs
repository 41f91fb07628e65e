//! A dataset over the CREMA-D layout: clips, their files, and loading one sample.
//!
//! The four places of the official flags, each free to be anywhere ([`DataPaths`]):
//!
//! ```text
//! train_csv, test_csv                    rows `clip_id,LABEL`        (--train_csv, --test_csv)
//! <audio>/<clip>.wav                                                 (--audio_path)
//! <visual>/Image-XX-FPS/<clip>/*.jpg     XX = frames per clip, two digits (--visual_path, --fps)
//! ```
//!
//! The test clips' media may live in folders of their own (`--test_audio_path`,
//! `--test_visual_path`), as in the official VGGSound layout (`train-audios/train-set`,
//! `test-audios/test-set`, ...), and a clip's frame folder may carry a suffix after the clip
//! id ([`DatasetConfig::frame_dir_suffix`]: the official VGGSound extraction names it
//! `<ytid>_<start>.mp4`).
//!
//! [`DataPaths::under`] gives the single-folder layout of the official repository
//! (`<root>/train.csv`, `<root>/test.csv`, `<root>/AudioWAV`, `<root>/Image-XX-FPS`).
//!
//! [`Dataset::open`] reads the split, checks that the audio folder and the frame folder exist
//! (a missing one is an error naming it, not a split of skipped clips), and checks each clip
//! (the WAV exists, the frame directory exists and holds enough `.jpg` files);
//! [`Dataset::verify`] also decodes every file. Bad
//! clips are skipped and counted in a [`SkipSummary`], or stop the run under `strict`.
//! The official code silently drops clips whose WAV or frame directory is missing and crashes
//! on the rest; here every case is reported with the file's name.
//!
//! Frame choice. The official `CramedDataset` draws `fps` sorted indices without replacement
//! (`np.random.choice`) for train and test alike, but then reads `image_samples[i]` instead of
//! `image_samples[select_index[i]]`, i.e. the first `fps` entries of an unsorted `os.listdir`.
//! Here frames are sorted by file name; training draws sorted random indices as the official
//! code intends ([`FramePick::Random`], seeded); evaluation takes evenly spaced frames
//! `i * (n / fps)` ([`FramePick::Even`], the official Kinetics-Sounds/AVE rule, and
//! deterministic), which for `fps = 1` is the first frame. In training every frame gets its own
//! crop and flip, as in the official code (one transform object applied per frame).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::audio::load_audio;
use super::error::{DataError, SampleError, SkipReason};
use super::image::{decode_image, ImageConfig, ImageTransform};
use super::spectrogram::{ClipWindow, SpectrogramConfig, Stft};
use super::split::{read_split, LabelSet};

/// Which split file to read; also the default augmentation (train: random crops and flips).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `train.csv`, augmented.
    Train,
    /// `test.csv`, deterministic.
    Test,
}

impl Split {
    /// The CSV file's name in the single-folder layout.
    pub fn file_name(self) -> &'static str {
        match self {
            Split::Train => "train.csv",
            Split::Test => "test.csv",
        }
    }
}

/// Where a dataset's files are: the official script's `--audio_path` and `--visual_path`, and
/// the two split files it hard-codes (`./data/CREMAD/train.csv`, `test.csv`), which here are
/// flags as well; the test clips' media folders are the training ones unless given apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPaths {
    /// Folder of the training clips' `<clip>.wav` files.
    pub audio: PathBuf,
    /// Folder holding the training clips' frame folder `Image-XX-FPS/<clip>/*.jpg`.
    pub visual: PathBuf,
    /// Folder of the test clips' WAVs (`audio` in the single-folder layout).
    pub test_audio: PathBuf,
    /// Folder holding the test clips' `Image-XX-FPS/` (`visual` in the single-folder layout).
    pub test_visual: PathBuf,
    /// Training split file.
    pub train_csv: PathBuf,
    /// Test split file.
    pub test_csv: PathBuf,
}

impl DataPaths {
    /// The single-folder layout: `<root>/train.csv`, `<root>/test.csv`, `<root>/AudioWAV`,
    /// frames under `<root>` (what `ogm synth` writes, and the official `./data/CREMAD`).
    pub fn under(root: &Path) -> DataPaths {
        DataPaths {
            audio: root.join("AudioWAV"),
            visual: root.to_path_buf(),
            test_audio: root.join("AudioWAV"),
            test_visual: root.to_path_buf(),
            train_csv: root.join(Split::Train.file_name()),
            test_csv: root.join(Split::Test.file_name()),
        }
    }

    /// The split file of `split`.
    pub fn csv(&self, split: Split) -> &Path {
        match split {
            Split::Train => &self.train_csv,
            Split::Test => &self.test_csv,
        }
    }

    /// The folder of `split`'s `<clip>.wav` files.
    pub fn audio_dir(&self, split: Split) -> &Path {
        match split {
            Split::Train => &self.audio,
            Split::Test => &self.test_audio,
        }
    }

    /// The folder holding `split`'s frame folder.
    pub fn visual_dir(&self, split: Split) -> &Path {
        match split {
            Split::Train => &self.visual,
            Split::Test => &self.test_visual,
        }
    }

    /// The frame folder of `split` for `config`: `<visual>/Image-XX-FPS`.
    pub fn frame_dir(&self, split: Split, config: &DatasetConfig) -> PathBuf {
        self.visual_dir(split).join(config.frame_dir_name())
    }

    /// Whether the test clips' media are in folders of their own.
    pub fn test_media_apart(&self) -> bool {
        self.test_audio != self.audio || self.test_visual != self.visual
    }
}

/// How the frames of a clip are chosen among the files of its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramePick {
    /// `fps` distinct random indices, sorted (seeded per sample).
    Random,
    /// Indices `i * (n / fps)` for `i` in `0..fps`.
    Even,
}

/// Settings of a dataset. [`DatasetConfig::default`] is the official CREMA-D pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetConfig {
    /// The classes, in index order.
    pub labels: LabelSet,
    /// Frames per clip (`--fps`); also names the frame directory `Image-XX-FPS`.
    pub fps: usize,
    /// The frame directory's name, when it is not `Image-XX-FPS`.
    pub frame_dir: Option<String>,
    /// What follows the clip id in the name of a clip's frame folder: empty for CREMA-D
    /// (`<clip>/`), `.mp4` for the official VGGSound extraction (`<ytid>_<start>.mp4/`).
    pub frame_dir_suffix: String,
    /// Audio features.
    pub spectrogram: SpectrogramConfig,
    /// Image transforms.
    pub image: ImageConfig,
    /// Frame choice with augmentation (training).
    pub train_pick: FramePick,
    /// Frame choice without augmentation (evaluation).
    pub test_pick: FramePick,
    /// Stop at the first bad sample instead of skipping it.
    pub strict: bool,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            labels: LabelSet::cremad(),
            fps: 1,
            frame_dir: None,
            frame_dir_suffix: String::new(),
            spectrogram: SpectrogramConfig::default(),
            image: ImageConfig::default(),
            train_pick: FramePick::Random,
            test_pick: FramePick::Even,
            strict: false,
        }
    }
}

impl DatasetConfig {
    /// The frame directory's name: `Image-01-FPS` for `fps = 1`.
    pub fn frame_dir_name(&self) -> String {
        self.frame_dir
            .clone()
            .unwrap_or_else(|| format!("Image-{:02}-FPS", self.fps))
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.fps == 0 {
            return Err(DataError::Config("fps must be at least 1".into()));
        }
        if let Some(m) = suffix_problem(&self.frame_dir_suffix) {
            return Err(DataError::Config(format!("frame_dir_suffix: {m}")));
        }
        self.spectrogram.validate()?;
        self.image.validate()
    }
}

/// Why `suffix` cannot end a frame folder's name, if it cannot: the name must stay one
/// folder inside the frame folder (no path separator, no NUL; clip ids are never empty, so
/// no suffix makes `.` or `..`).
pub fn suffix_problem(suffix: &str) -> Option<String> {
    if suffix.contains(['/', '\\', '\0']) {
        return Some(format!(
            "`{}` holds a path separator or NUL; it is the end of a folder name, such as .mp4",
            suffix.escape_debug()
        ));
    }
    None
}

/// Bad samples that were skipped, with the reason and file of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipSummary {
    errors: Vec<SampleError>,
}

impl SkipSummary {
    /// Records one skipped sample.
    pub fn push(&mut self, e: SampleError) {
        self.errors.push(e);
    }

    /// Appends another summary.
    pub fn extend(&mut self, other: SkipSummary) {
        self.errors.extend(other.errors);
    }

    /// Number of skipped samples (or rows).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// True when nothing was skipped.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Every error, in the order found.
    pub fn errors(&self) -> &[SampleError] {
        &self.errors
    }

    /// Counts by reason.
    pub fn by_reason(&self) -> BTreeMap<SkipReason, usize> {
        let mut m = BTreeMap::new();
        for e in &self.errors {
            *m.entry(e.reason()).or_insert(0) += 1;
        }
        m
    }
}

impl fmt::Display for SkipSummary {
    /// One line of counts, then up to 20 errors, one a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errors.is_empty() {
            return write!(f, "no samples skipped");
        }
        let counts: Vec<String> = self
            .by_reason()
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        write!(f, "{} skipped: {}", self.errors.len(), counts.join(", "))?;
        for e in self.errors.iter().take(20) {
            write!(f, "\n  {e}")?;
        }
        if self.errors.len() > 20 {
            write!(f, "\n  ... and {} more", self.errors.len() - 20)?;
        }
        Ok(())
    }
}

/// One usable clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// The clip id.
    pub id: String,
    /// The class index.
    pub label: u32,
    /// Its WAV file.
    pub audio: PathBuf,
    /// Its frame directory's `.jpg` files, sorted by name.
    pub frames: Vec<PathBuf>,
}

/// One loaded sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `1 x bins x frames` log-magnitude spectrogram, `[freq][time]`.
    pub audio: Vec<f32>,
    /// `3 x fps x height x width` frames (channels first, then time, as the official permute).
    pub visual: Vec<f32>,
    /// The class index.
    pub label: u32,
}

/// The per-thread state of loading: the FFT plan and the resizer.
#[derive(Debug)]
pub struct Pipeline {
    stft: Stft,
    image: ImageTransform,
}

impl Pipeline {
    /// A pipeline for `config`.
    pub fn new(config: &DatasetConfig) -> Result<Pipeline, DataError> {
        Ok(Pipeline {
            stft: Stft::new(config.spectrogram)?,
            image: ImageTransform::new(config.image)?,
        })
    }
}

/// The seed of one sample's randomness (frame choice, crops, flips): a SplitMix64 mix of the
/// run's seed, the epoch and the sample's index, so that it does not depend on which worker
/// loads the sample or in which order.
pub fn sample_seed(seed: u64, epoch: u64, index: u64) -> u64 {
    let mut z = seed;
    for v in [epoch, index] {
        z = splitmix(z ^ splitmix(v));
    }
    z
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Chooses `k` of `n` frame indices (`k <= n`), ascending.
pub fn pick_frames(
    n: usize,
    k: usize,
    pick: FramePick,
    rng: &mut Xoshiro256PlusPlus,
) -> Vec<usize> {
    match pick {
        FramePick::Even => (0..k).map(|i| i * (n / k)).collect(),
        FramePick::Random => {
            let mut v = index::sample(rng, n, k).into_vec();
            v.sort_unstable();
            v
        }
    }
}

/// A split of a dataset in the CREMA-D layout.
#[derive(Debug, Clone)]
pub struct Dataset {
    paths: DataPaths,
    split: Split,
    config: DatasetConfig,
    augment: bool,
    clips: Vec<Clip>,
    skipped: SkipSummary,
}

impl Dataset {
    /// Reads the split file of `split` and checks each clip's files. A missing split file or
    /// folder is an error naming it ([`DataError::SplitRead`], [`DataError::MissingFolder`]).
    /// Bad rows and clips are skipped and counted ([`Dataset::skipped`]), or returned as
    /// [`DataError::Strict`] when `config.strict`; a split with no usable clip is
    /// [`DataError::EmptySplit`].
    pub fn open(
        paths: &DataPaths,
        split: Split,
        config: DatasetConfig,
    ) -> Result<Dataset, DataError> {
        config.validate()?;
        let csv = paths.csv(split).to_path_buf();
        let parsed = read_split(&csv, &config.labels)?;
        let frame_root = paths.frame_dir(split, &config);
        let audio_dir = paths.audio_dir(split);
        // A wrong folder would otherwise show up as every clip skipped, one message each.
        let test_apart = split == Split::Test && paths.test_media_apart();
        let folders: [(&'static str, &Path); 2] = if test_apart {
            [
                ("test audio folder (<clip>.wav files)", audio_dir),
                ("test frame folder (<clip>/*.jpg directories)", &frame_root),
            ]
        } else {
            [
                ("audio folder (<clip>.wav files)", audio_dir),
                ("frame folder (<clip>/*.jpg directories)", &frame_root),
            ]
        };
        for (what, dir) in folders {
            if !dir.is_dir() {
                return Err(DataError::MissingFolder {
                    what,
                    path: dir.to_path_buf(),
                });
            }
        }
        let mut skipped = SkipSummary::default();
        let mut record = |e: SampleError| {
            if config.strict {
                Err(DataError::Strict(e))
            } else {
                skipped.push(e);
                Ok(())
            }
        };
        // Report in file order: merge bad rows and bad clips by line number.
        let mut bad_rows = parsed.bad.into_iter().peekable();
        let mut clips = Vec::with_capacity(parsed.rows.len());
        for row in parsed.rows {
            while let Some(e) = bad_rows.next_if(|e| line_of(e) < row.line) {
                record(e)?;
            }
            let frames = frame_root.join(format!("{}{}", row.clip, config.frame_dir_suffix));
            match check_clip(audio_dir, frames, &row.clip, config.fps) {
                Ok((audio, frames)) => clips.push(Clip {
                    id: row.clip,
                    label: row.label,
                    audio,
                    frames,
                }),
                Err(e) => record(e)?,
            }
        }
        for e in bad_rows {
            record(e)?;
        }
        if clips.is_empty() {
            return Err(DataError::EmptySplit {
                path: csv,
                skipped: skipped.len(),
            });
        }
        Ok(Dataset {
            paths: paths.clone(),
            split,
            augment: split == Split::Train,
            config,
            clips,
            skipped,
        })
    }

    /// Decodes every clip's WAV and every frame once, in `threads` threads (at least one).
    /// Clips that fail are removed and counted (or the first failure, in file order, is
    /// returned under `strict`), so that a run stops before training, not in its middle.
    pub fn verify(&mut self, threads: usize) -> Result<(), DataError> {
        let threads = threads.max(1).min(self.clips.len());
        let chunk = self.clips.len().div_ceil(threads);
        let results: Vec<Option<SampleError>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .clips
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|c| verify_clip(c).err())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("verification threads do not panic"))
                .collect()
        });
        let mut keep = Vec::with_capacity(self.clips.len());
        for (clip, err) in std::mem::take(&mut self.clips).into_iter().zip(results) {
            match err {
                None => keep.push(clip),
                Some(e) if self.config.strict => return Err(DataError::Strict(e)),
                Some(e) => self.skipped.push(e),
            }
        }
        if keep.is_empty() {
            return Err(DataError::EmptySplit {
                path: self.paths.csv(self.split).to_path_buf(),
                skipped: self.skipped.len(),
            });
        }
        self.clips = keep;
        Ok(())
    }

    /// Loads sample `index`: decode, resample, spectrogram; pick frames, decode, transform.
    /// `seed` drives the frame choice, crops and flips (see [`sample_seed`]); without
    /// augmentation it is unused.
    pub fn load(
        &self,
        index: usize,
        seed: u64,
        pipe: &mut Pipeline,
    ) -> Result<Sample, SampleError> {
        let clip = &self.clips[index];
        let samples = load_audio(&clip.audio, self.config.spectrogram.sample_rate)?;
        if samples.is_empty() {
            return Err(SampleError::EmptyAudio {
                path: clip.audio.clone(),
            });
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        // A random crop offset in training under the VGGSound rule (drawn first, as the
        // official code does; the CREMA-D rule draws nothing, so its frames and crops keep
        // their random streams).
        let start = match self.config.spectrogram.window {
            ClipWindow::Crop { max_start, .. } if self.augment => rng.gen_range(0..=max_start),
            _ => 0,
        };
        let audio = pipe.stft.features_at(&samples, start);

        let (t, plane) = (self.config.fps, self.config.image.frame_len() / 3);
        let pick = if self.augment {
            self.config.train_pick
        } else {
            self.config.test_pick
        };
        let chosen = pick_frames(clip.frames.len(), t, pick, &mut rng);
        let mut visual = vec![0.0f32; 3 * t * plane];
        let mut frame = vec![0.0f32; 3 * plane];
        for (ti, &fi) in chosen.iter().enumerate() {
            let img = decode_image(&clip.frames[fi])?;
            if self.augment {
                pipe.image.train(&img, &mut rng, &mut frame);
            } else {
                pipe.image.test(&img, &mut frame);
            }
            // (T, 3, H, W) -> (3, T, H, W), as the official `torch.permute(images, (1,0,2,3))`.
            for c in 0..3 {
                let dst = (c * t + ti) * plane;
                visual[dst..dst + plane].copy_from_slice(&frame[c * plane..(c + 1) * plane]);
            }
        }
        Ok(Sample {
            audio,
            visual,
            label: clip.label,
        })
    }

    /// Number of usable clips.
    pub fn len(&self) -> usize {
        self.clips.len()
    }

    /// True when no clip is usable (never after a successful [`Dataset::open`]).
    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    /// The usable clips.
    pub fn clips(&self) -> &[Clip] {
        &self.clips
    }

    /// What was skipped, and why.
    pub fn skipped(&self) -> &SkipSummary {
        &self.skipped
    }

    /// The settings.
    pub fn config(&self) -> &DatasetConfig {
        &self.config
    }

    /// The split.
    pub fn split(&self) -> Split {
        self.split
    }

    /// Where the dataset's files are.
    pub fn paths(&self) -> &DataPaths {
        &self.paths
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.config.labels.len()
    }

    /// Whether samples get the training transforms (random frames, crops, flips).
    pub fn augment(&self) -> bool {
        self.augment
    }

    /// Turns the training transforms on or off (e.g. to evaluate on the training split).
    pub fn set_augment(&mut self, on: bool) {
        self.augment = on;
    }

    /// Shape of one sample's audio: `[1, bins, frames]`.
    pub fn audio_shape(&self) -> [usize; 3] {
        let s = &self.config.spectrogram;
        [1, s.bins(), s.frames()]
    }

    /// Shape of one sample's frames: `[3, fps, height, width]`.
    pub fn visual_shape(&self) -> [usize; 4] {
        let i = &self.config.image;
        [3, self.config.fps, i.height as usize, i.width as usize]
    }
}

fn line_of(e: &SampleError) -> usize {
    match e {
        SampleError::Columns { line, .. }
        | SampleError::Quote { line, .. }
        | SampleError::EmptyClip { line, .. }
        | SampleError::UnknownLabel { line, .. } => *line,
        _ => 0,
    }
}

/// Checks one clip's files without decoding: its WAV exists and its frame directory `dir`
/// holds at least `fps` `.jpg` files. Returns the WAV path and the sorted frame paths.
fn check_clip(
    audio_dir: &Path,
    dir: PathBuf,
    clip: &str,
    fps: usize,
) -> Result<(PathBuf, Vec<PathBuf>), SampleError> {
    let audio = audio_dir.join(format!("{clip}.wav"));
    if !audio.is_file() {
        return Err(SampleError::MissingAudio { path: audio });
    }
    if !dir.is_dir() {
        return Err(SampleError::MissingFrames { path: dir });
    }
    let io = |e: std::io::Error| SampleError::Io {
        path: dir.clone(),
        detail: e.to_string(),
    };
    let mut frames = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let p = entry.map_err(io)?.path();
        let is_jpg = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"));
        if is_jpg && p.is_file() {
            frames.push(p);
        }
    }
    frames.sort();
    match frames.len() {
        0 => Err(SampleError::NoFrames { path: dir }),
        n if n < fps => Err(SampleError::TooFewFrames {
            path: dir,
            found: n,
            needed: fps,
        }),
        _ => Ok((audio, frames)),
    }
}

/// Decodes one clip's WAV and all its frames (resampling and transforms cannot fail on
/// decoded data, so decoding is all there is to check).
fn verify_clip(clip: &Clip) -> Result<(), SampleError> {
    super::audio::decode_wav(&clip.audio)?;
    for f in &clip.frames {
        decode_image(f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_pick_is_the_official_rule() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        assert_eq!(pick_frames(10, 3, FramePick::Even, &mut rng), vec![0, 3, 6]);
        assert_eq!(pick_frames(3, 1, FramePick::Even, &mut rng), vec![0]);
        assert_eq!(pick_frames(3, 3, FramePick::Even, &mut rng), vec![0, 1, 2]);
    }

    #[test]
    fn random_pick_is_sorted_distinct_and_covers_all() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut seen = [0usize; 5];
        for _ in 0..500 {
            let v = pick_frames(5, 2, FramePick::Random, &mut rng);
            assert!(v.len() == 2 && v[0] < v[1] && v[1] < 5);
            v.iter().for_each(|&i| seen[i] += 1);
        }
        assert!(seen.iter().all(|&n| n > 120), "{seen:?}");
    }

    #[test]
    fn sample_seeds_differ_by_epoch_and_index() {
        let a = sample_seed(0, 0, 0);
        assert_ne!(a, sample_seed(0, 1, 0));
        assert_ne!(a, sample_seed(0, 0, 1));
        assert_ne!(a, sample_seed(1, 0, 0));
        assert_ne!(sample_seed(0, 1, 2), sample_seed(0, 2, 1));
        assert_eq!(a, sample_seed(0, 0, 0));
    }

    #[test]
    fn default_frame_dir_is_two_digit_fps() {
        let mut c = DatasetConfig::default();
        assert_eq!(c.frame_dir_name(), "Image-01-FPS");
        c.fps = 3;
        assert_eq!(c.frame_dir_name(), "Image-03-FPS");
    }
}
