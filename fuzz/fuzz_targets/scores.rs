//! `batch_score`, `true_class_probs` and `validate_logits` on arbitrary logits, labels and
//! class counts.
//!
//! Valid input: every probability finite in `[0, 1]`, the score in `[0, batch]` and equal to
//! the batch-order sum of the probabilities. Invalid input: an error that points at a real
//! fault, and `out` left as it was.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_core::score::validate_logits;
use ogm_core::{batch_score, true_class_probs, OgmError};
use ogm_core_fuzz::{f32s, F32};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Small counts most of the time; any `usize` (overflowing `batch * classes`) sometimes.
    classes: Classes,
    labels: Vec<u32>,
    logits: Vec<F32>,
    /// Reduce labels modulo the class count and cycle the logits to the implied length, so
    /// that most runs get past the shape checks into the arithmetic.
    conform: bool,
    /// `out` gets `batch + out_delta - 1` slots (wrong lengths sometimes).
    out_delta: u8,
}

#[derive(Arbitrary, Debug)]
enum Classes {
    Small(u8),
    Any(usize),
}

fuzz_target!(|input: Input| {
    let Input {
        classes,
        mut labels,
        logits,
        conform,
        out_delta,
    } = input;
    let classes = match classes {
        Classes::Small(c) => c as usize,
        Classes::Any(c) => c,
    };
    let mut logits = f32s(&logits);
    if conform && classes > 0 && classes <= 256 && !logits.is_empty() {
        for y in labels.iter_mut() {
            *y %= classes as u32;
        }
        let n = labels.len() * classes;
        logits = logits.iter().copied().cycle().take(n).collect();
    }

    // The documented conditions for success, computed independently of the crate.
    let shape_ok = classes > 0
        && !labels.is_empty()
        && labels.len().checked_mul(classes) == Some(logits.len());
    let valid = shape_ok
        && labels.iter().all(|&y| (y as usize) < classes)
        && logits.iter().all(|x| x.is_finite());

    // validate_logits is public too: the batch size exactly for valid input.
    match validate_logits(&logits, &labels, classes) {
        Ok(b) => assert!(valid && b == labels.len()),
        Err(e) => {
            assert!(!valid, "{e:?} for valid input");
            check_error(e, &logits, &labels, classes);
        }
    }

    let score = batch_score(&logits, &labels, classes);
    let batch = labels.len();
    let out_len = (batch + out_delta as usize % 3).saturating_sub(1);
    const SENTINEL: f64 = -7.0;
    let mut out = vec![SENTINEL; out_len];
    let probs = true_class_probs(&logits, &labels, classes, &mut out);

    match score {
        Ok(s) => {
            assert!(valid, "Ok({s}) for invalid input");
            assert!(
                s.is_finite() && (0.0..=batch as f64).contains(&s),
                "score {s}"
            );
        }
        Err(e) => {
            assert!(!valid, "{e:?} for valid input");
            check_error(e, &logits, &labels, classes);
        }
    }

    match probs {
        Ok(()) => {
            assert!(valid && out_len == batch);
            for (i, (&p, (row, &y))) in out
                .iter()
                .zip(logits.chunks_exact(classes).zip(&labels))
                .enumerate()
            {
                assert!(p.is_finite() && (0.0..=1.0).contains(&p), "row {i}: p {p}");
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let gap = row[y as usize] as f64 - max as f64;
                // Documented: exactly 0 only when the label's probability underflows f64
                // (exp of a gap of about -745, less the log of the row's softmax sum).
                if p == 0.0 {
                    assert!(gap < -700.0, "row {i}: p == 0 at gap {gap}");
                }
                // The label holds the row maximum: its probability is at least 1 / classes.
                if gap == 0.0 {
                    assert!(p >= 1.0 / classes as f64, "row {i}: argmax p {p}");
                }
            }
            // "The sum runs in batch order": the score is the sum of these very values.
            let sum: f64 = out.iter().sum();
            assert_eq!(score.unwrap().to_bits(), sum.to_bits());
        }
        Err(e) => {
            assert!(!valid || out_len != batch, "{e:?} for valid input");
            // "Errors (nothing is written)".
            assert!(out.iter().all(|&o| o == SENTINEL), "out written on {e:?}");
            if valid {
                assert!(matches!(e, OgmError::LengthMismatch { what: "out", .. }));
            } else {
                check_error(e, &logits, &labels, classes);
            }
        }
    }
});

/// Checks that an error names a fault the input really has.
fn check_error(e: OgmError, logits: &[f32], labels: &[u32], classes: usize) {
    match e {
        OgmError::ZeroClasses => assert_eq!(classes, 0),
        OgmError::Empty { what } => assert!(what == "labels" && labels.is_empty()),
        OgmError::LengthMismatch { what, got, .. } => {
            assert_eq!(what, "logits");
            assert_eq!(got, logits.len());
            assert_ne!(labels.len().checked_mul(classes), Some(logits.len()));
        }
        OgmError::LabelOutOfRange {
            index,
            label,
            classes: c,
        } => {
            assert_eq!(c, classes);
            assert_eq!(labels[index], label);
            assert!(label as usize >= classes);
        }
        OgmError::NonFinite { what, index } => {
            assert_eq!(what, "logits");
            // The first offending element, as OgmError documents.
            assert_eq!(Some(index), logits.iter().position(|x| !x.is_finite()));
        }
        other => panic!("unexpected error {other:?}"),
    }
}
