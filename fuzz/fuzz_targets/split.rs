//! `ogm_host::data::split::parse_split`: split files (`clip,label` rows, read as Python's
//! `csv` reads them) as arbitrary text, against the CREMA-D classes and against a fuzzed
//! class list (names with commas, quotes and spaces).
//!
//! Asserts: no panic; every line that is not blank ends as exactly one row or one error, in
//! line order; a row has a non-empty clip and a label index inside the class list. Rows
//! written with every field quoted (`"` doubled inside), as Python's `csv.writer` does with
//! `QUOTE_ALL`, read back as exactly the clips and labels written.
#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ogm_host::data::split::parse_split;
use ogm_host::data::LabelSet;

#[derive(Arbitrary, Debug)]
struct Input {
    text: String,
    classes: Option<Vec<String>>,
    /// Clip ids and label choices for the quoted round trip.
    rows: Vec<(String, u8)>,
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fuzz_target!(|input: Input| {
    let labels = match input.classes {
        None => LabelSet::cremad(),
        Some(names) => match LabelSet::new(names) {
            Some(l) => l,
            None => return,
        },
    };
    let parsed = parse_split(&input.text, Path::new("fuzz.csv"), &labels);
    let text = input.text.strip_prefix('\u{feff}').unwrap_or(&input.text);
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(
        parsed.rows.len() + parsed.bad.len(),
        lines,
        "rows and errors per line"
    );
    let mut last = 0;
    for row in &parsed.rows {
        assert!(row.line > last, "rows out of line order");
        last = row.line;
        assert!(!row.clip.is_empty());
        assert!((row.label as usize) < labels.len());
    }

    // The round trip: one line a row, so no field may hold a line break.
    let rows: Vec<(String, u32)> = input
        .rows
        .into_iter()
        .filter(|(clip, _)| !clip.is_empty() && !clip.contains('\n'))
        .map(|(clip, l)| (clip, l as u32 % labels.len() as u32))
        .collect();
    if labels.names().iter().any(|n| n.contains('\n')) {
        return;
    }
    let text: String = rows
        .iter()
        .map(|(clip, l)| {
            let name = labels.name(*l).expect("index below len");
            format!("{},{}\n", quoted(clip), quoted(name))
        })
        .collect();
    let parsed = parse_split(&text, Path::new("fuzz.csv"), &labels);
    assert!(parsed.bad.is_empty(), "{text:?}: {:?}", parsed.bad);
    let back: Vec<(String, u32)> = parsed.rows.into_iter().map(|r| (r.clip, r.label)).collect();
    assert_eq!(back, rows, "{text:?}");
});
