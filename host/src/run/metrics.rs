//! `metrics.jsonl`: one JSON object per line, a line per step and one per epoch.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 0-based epoch.
    pub epoch: u32,
    /// Global step, counted from 1.
    pub step: u64,
    /// Cross-entropy of the fused logits.
    pub loss: f64,
    /// Cross-entropy of the audio-only logits (for monitoring; not trained on).
    pub loss_a: f64,
    /// Cross-entropy of the visual-only logits.
    pub loss_v: f64,
    /// Audio true-class score of the batch.
    pub score_a: f64,
    /// Visual true-class score of the batch.
    pub score_v: f64,
    /// `r_v = s_v / s_a` (`null` when undefined or infinite).
    pub ratio_v: Option<f64>,
    /// Coefficient applied to the audio encoder (1 outside the window).
    pub coeff_a: f64,
    /// Coefficient applied to the visual encoder.
    pub coeff_v: f64,
    /// Learning rate of the step.
    pub lr: f64,
}

/// One evaluation at the end of an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch.
    pub epoch: u32,
    /// Global step at the end of the epoch.
    pub step: u64,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Test loss (fused logits).
    pub loss: f64,
    /// Test accuracy of the fused logits.
    pub acc: f64,
    /// Test accuracy of the audio-only logits.
    pub acc_a: f64,
    /// Test accuracy of the visual-only logits.
    pub acc_v: f64,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Seconds since the run started (cumulative over resumes).
    pub wall_s: f64,
}

/// A line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// A step line.
    Step(StepRecord),
    /// An epoch line.
    Epoch(EpochRecord),
}

impl Record {
    /// The global step the record belongs to.
    pub fn step(&self) -> u64 {
        match self {
            Record::Step(s) => s.step,
            Record::Epoch(e) => e.step,
        }
    }
}

/// Appends records to `metrics.jsonl`.
pub struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsWriter {
    /// Opens (creating) the file for appending.
    pub fn open(path: &Path) -> io::Result<MetricsWriter> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(MetricsWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(f),
        })
    }

    /// Appends one record (buffered; see [`MetricsWriter::flush`]).
    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, r)?;
        self.out.write_all(b"\n")
    }

    /// Flushes buffered lines to the file and the disk.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}

/// Reads every record; a torn last line (a crash mid-write) is ignored, any other bad line is
/// an error naming its number (callers name the file).
pub fn read_records(path: &Path) -> io::Result<Vec<Record>> {
    let f = File::open(path)?;
    let lines: Vec<String> = BufReader::new(f).lines().collect::<io::Result<_>>()?;
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("line {}: {e}", i + 1),
                ))
            }
        }
    }
    Ok(out)
}

/// Keeps only the records up to `step` (inclusive), rewriting the file atomically: a resumed
/// run continues from its checkpoint, so lines written after it would be duplicated.
pub fn truncate_after(path: &Path, step: u64) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let kept: Vec<Record> = read_records(path)?
        .into_iter()
        .filter(|r| r.step() <= step)
        .collect();
    let mut buf = Vec::new();
    for r in &kept {
        serde_json::to_writer(&mut buf, r)?;
        buf.push(b'\n');
    }
    super::fsio::write_atomic(path, &buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: u64) -> Record {
        Record::Step(StepRecord {
            epoch: 0,
            step: n,
            loss: 1.0,
            loss_a: 1.0,
            loss_v: 1.0,
            score_a: 1.0,
            score_v: 0.5,
            ratio_v: Some(0.5),
            coeff_a: 0.8,
            coeff_v: 1.0,
            lr: 1e-3,
        })
    }

    #[test]
    fn round_trip_torn_tail_and_truncation() {
        let dir = std::env::temp_dir().join(format!("ogm-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("metrics.jsonl");
        let mut w = MetricsWriter::open(&p).unwrap();
        for n in 1..=5 {
            w.write(&step(n)).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        // A crash mid-line leaves a torn tail, which reading skips.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"kind\":\"step\",\"epo").unwrap();
        drop(f);
        assert_eq!(read_records(&p).unwrap().len(), 5);
        truncate_after(&p, 3).unwrap();
        let r = read_records(&p).unwrap();
        assert_eq!(r, vec![step(1), step(2), step(3)]);
        // A bad line before the last is an error naming the line.
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("{{oops\n{text}")).unwrap();
        let e = read_records(&p).unwrap_err();
        assert!(e.to_string().starts_with("line 1: "), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
