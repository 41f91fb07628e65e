//! A run's `metrics.jsonl` read back (`ogm_host::run::metrics::read_records`, which
//! `--resume` does before it truncates the file) and drawn (`run::plots::draw_run`, the end of
//! every run): fuzzed step and epoch records with values at the edges of `f64` (the ratio of
//! two scores can reach `f64::MAX`), torn and foreign lines, blank lines.
//!
//! Asserts: no panic and no hang (plotters looped forever on an infinite axis span); a file
//! of complete records reads back as exactly those records; a bad line other than the last is
//! an error naming its line; the three plots are written.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_core_fuzz::{scratch, F64};
use ogm_host::run::metrics::{read_records, EpochRecord, Record, StepRecord};
use ogm_host::run::plots::draw_run;

#[derive(Arbitrary, Debug)]
enum Line {
    Step {
        epoch: u8,
        step: u32,
        v: [F64; 8],
        ratio: Option<F64>,
    },
    Epoch {
        epoch: u8,
        step: u32,
        v: [F64; 7],
    },
    Blank,
    Other(String),
}

/// The record of a line, and whether JSON holds it as is (`serde_json` writes a non-finite
/// float as `null`, which does not read back as a float).
fn record(line: &Line) -> Option<(Record, bool)> {
    let r = match *line {
        Line::Step {
            epoch,
            step,
            v,
            ratio,
        } => Record::Step(StepRecord {
            epoch: epoch as u32,
            step: step as u64,
            loss: v[0].get(),
            loss_a: v[1].get(),
            loss_v: v[2].get(),
            score_a: v[3].get(),
            score_v: v[4].get(),
            ratio_v: ratio.map(F64::get).filter(|r| r.is_finite()),
            coeff_a: v[5].get(),
            coeff_v: v[6].get(),
            lr: v[7].get(),
        }),
        Line::Epoch { epoch, step, v } => Record::Epoch(EpochRecord {
            epoch: epoch as u32,
            step: step as u64,
            train_loss: v[0].get(),
            loss: v[1].get(),
            acc: v[2].get(),
            acc_a: v[3].get(),
            acc_v: v[4].get(),
            lr: v[5].get(),
            wall_s: v[6].get(),
        }),
        Line::Blank | Line::Other(_) => return None,
    };
    let values: Vec<f64> = match &r {
        Record::Step(s) => vec![
            s.loss, s.loss_a, s.loss_v, s.score_a, s.score_v, s.coeff_a, s.coeff_v, s.lr,
        ],
        Record::Epoch(e) => vec![
            e.train_loss,
            e.loss,
            e.acc,
            e.acc_a,
            e.acc_v,
            e.lr,
            e.wall_s,
        ],
    };
    let exact = values.iter().all(|v| v.is_finite());
    Some((r, exact))
}

fuzz_target!(|lines: Vec<Line>| {
    let lines = &lines[..lines.len().min(64)];
    let mut text = String::new();
    for line in lines {
        match (line, record(line)) {
            (_, Some((r, _))) => text += &serde_json::to_string(&r).expect("a record serialises"),
            (Line::Other(s), None) => text += &s.replace('\n', " "),
            _ => {}
        }
        text.push('\n');
    }
    let dir = scratch("metrics");
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let path = dir.join("metrics.jsonl");
    std::fs::write(&path, &text).expect("scratch file");
    let read = read_records(&path);
    let all_exact = lines.iter().all(|l| match (l, record(l)) {
        (_, Some((_, exact))) => exact,
        (Line::Blank, None) => true,
        (Line::Other(s), None) => s.trim().is_empty(),
        _ => false,
    });
    if all_exact {
        let want: Vec<Record> = lines
            .iter()
            .filter_map(|l| record(l).map(|(r, _)| r))
            .collect();
        let got = read.as_ref().expect("complete records read back");
        assert!(*got == want, "records read back differently");
    }
    let Ok(records) = read else {
        return;
    };
    let files = draw_run(&dir.join("plots"), &records).expect("the plots are drawn");
    assert_eq!(files.len(), 3);
});
