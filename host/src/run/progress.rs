//! Progress display: a bar with loss, ratio and ETA on a terminal, plain lines otherwise (logs,
//! CI), so that redirected output stays readable.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports training progress, step by step.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    start: Instant,
    last_line: Instant,
    every_s: f64,
    quiet: bool,
}

impl Progress {
    /// A reporter for `total` steps starting at `done`. `quiet` prints nothing but epoch lines.
    pub fn new(total: u64, done: u64, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} steps {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_position(done);
            b
        });
        Progress {
            bar,
            total,
            start: Instant::now(),
            last_line: Instant::now(),
            every_s: 10.0,
            quiet,
        }
    }

    /// Updates after a step.
    pub fn step(&mut self, epoch: u32, step: u64, loss: f64, ratio: Option<f64>) {
        let ratio = ratio.map_or("-".to_string(), |r| format!("{r:.3}"));
        match &self.bar {
            Some(b) => {
                b.set_prefix(format!("epoch {epoch}"));
                b.set_message(format!("loss {loss:.4} ratio {ratio}"));
                b.set_position(step);
            }
            None if !self.quiet && self.last_line.elapsed().as_secs_f64() >= self.every_s => {
                self.last_line = Instant::now();
                eprintln!(
                    "epoch {epoch} step {step}/{} loss {loss:.4} ratio {ratio} ({:.0}s)",
                    self.total,
                    self.start.elapsed().as_secs_f64()
                );
            }
            None => {}
        }
    }

    /// Prints a line (an epoch summary) without breaking the bar.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
