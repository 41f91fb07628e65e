//! Split files: `train.csv` / `test.csv` with rows `clip_id,LABEL` and no header, as in the
//! official CREMA-D code (which opens them as `UTF-8-sig`, so a leading byte-order mark is
//! allowed).
//!
//! Parsing never fails on a bad row: it returns the good rows and, for each bad one, a
//! [`SampleError`] naming the file and the line, so the bad-sample policy decides.
//! Blank lines are ignored; fields are trimmed (Windows line ends, stray spaces).

use std::path::Path;

use super::error::{DataError, SampleError};

/// The class names of a dataset, in class-index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSet {
    names: Vec<String>,
}

/// CREMA-D's classes in the official `class_dict` order:
/// `{'NEU':0, 'HAP':1, 'SAD':2, 'FEA':3, 'DIS':4, 'ANG':5}`.
pub const CREMAD_LABELS: [&str; 6] = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"];

impl LabelSet {
    /// CREMA-D's six emotions, indexed as the official dataset code does.
    pub fn cremad() -> LabelSet {
        LabelSet::new(CREMAD_LABELS.iter().map(|s| s.to_string()).collect())
            .expect("the CREMA-D labels are distinct")
    }

    /// A label set from names in class-index order; `None` if a name repeats or is empty.
    pub fn new(names: Vec<String>) -> Option<LabelSet> {
        let distinct = names
            .iter()
            .enumerate()
            .all(|(i, n)| !n.is_empty() && !names[..i].contains(n));
        (distinct && !names.is_empty()).then_some(LabelSet { names })
    }

    /// The class index of a label (exact, case-sensitive match as in the official dict).
    pub fn index(&self, label: &str) -> Option<u32> {
        self.names.iter().position(|n| n == label).map(|i| i as u32)
    }

    /// The name of class `index`.
    pub fn name(&self, index: u32) -> Option<&str> {
        self.names.get(index as usize).map(String::as_str)
    }

    /// The number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false: a label set has at least one class.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The names in class-index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// One good row of a split file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRow {
    /// The clip id (file stem of the WAV, name of the frame directory).
    pub clip: String,
    /// The class index.
    pub label: u32,
    /// 1-based line number in the split file, for messages.
    pub line: usize,
}

/// A parsed split file: its good rows and its bad rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSplit {
    /// Rows with a clip id and a known label, in file order.
    pub rows: Vec<SplitRow>,
    /// One error per bad row, in file order.
    pub bad: Vec<SampleError>,
}

/// The comma-separated fields of one row, as Python's `csv` module reads them: a field in
/// double quotes may hold commas (`""` is one quote); unquoted fields are trimmed. `None`:
/// a quote is not closed.
fn csv_fields(raw: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut rest = raw;
    loop {
        let lead = rest.trim_start();
        if let Some(quoted) = lead.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let after = loop {
                match chars.next()? {
                    (i, '"') if quoted[i + 1..].starts_with('"') => {
                        value.push('"');
                        chars.next();
                    }
                    (i, '"') => break &quoted[i + 1..],
                    (_, c) => value.push(c),
                }
            };
            // Anything between the closing quote and the next comma is kept, as csv does.
            let (tail, next) = match after.split_once(',') {
                Some((tail, next)) => (tail, Some(next)),
                None => (after, None),
            };
            value.push_str(tail.trim_end());
            fields.push(value);
            match next {
                Some(next) => rest = next,
                None => return Some(fields),
            }
        } else {
            match rest.split_once(',') {
                Some((field, next)) => {
                    fields.push(field.trim().to_string());
                    rest = next;
                }
                None => {
                    fields.push(rest.trim().to_string());
                    return Some(fields);
                }
            }
        }
    }
}

/// Parses split text; `path` only names the file in errors.
pub fn parse_split(text: &str, path: &Path, labels: &LabelSet) -> ParsedSplit {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let Some(fields) = csv_fields(raw) else {
            bad.push(SampleError::Quote {
                path: path.to_path_buf(),
                line,
            });
            continue;
        };
        if fields.len() != 2 {
            bad.push(SampleError::Columns {
                path: path.to_path_buf(),
                line,
                found: fields.len(),
            });
            continue;
        }
        let (clip, label) = (fields[0].as_str(), fields[1].as_str());
        if clip.is_empty() {
            bad.push(SampleError::EmptyClip {
                path: path.to_path_buf(),
                line,
            });
            continue;
        }
        match labels.index(label) {
            Some(label) => rows.push(SplitRow {
                clip: clip.to_string(),
                label,
                line,
            }),
            None => bad.push(SampleError::UnknownLabel {
                path: path.to_path_buf(),
                line,
                label: label.to_string(),
                known: labels.names().join(","),
            }),
        }
    }
    ParsedSplit { rows, bad }
}

/// Reads and parses a split file.
pub fn read_split(path: &Path, labels: &LabelSet) -> Result<ParsedSplit, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::SplitRead {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| DataError::SplitEncoding {
        path: path.to_path_buf(),
    })?;
    Ok(parse_split(&text, path, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ParsedSplit {
        parse_split(text, Path::new("s.csv"), &LabelSet::cremad())
    }

    #[test]
    fn official_class_order() {
        let l = LabelSet::cremad();
        let idx: Vec<u32> = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]
            .iter()
            .map(|n| l.index(n).unwrap())
            .collect();
        assert_eq!(idx, [0, 1, 2, 3, 4, 5]);
        assert_eq!(l.index("neu"), None);
    }

    #[test]
    fn bom_blank_lines_crlf_and_spaces() {
        let p = parse("\u{feff}1001_DFA_ANG_XX,ANG\r\n\r\n 1002_IEO_HAP_HI , HAP \n");
        assert!(p.bad.is_empty(), "{:?}", p.bad);
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].clip, "1001_DFA_ANG_XX");
        assert_eq!(p.rows[0].label, 5);
        assert_eq!(
            (p.rows[1].clip.as_str(), p.rows[1].label, p.rows[1].line),
            ("1002_IEO_HAP_HI", 1, 3)
        );
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let p = parse("a,NEU\nb,NEU,extra\nc,XYZ\n,SAD\nd\n");
        assert_eq!(p.rows.len(), 1);
        assert_eq!(
            p.bad,
            vec![
                SampleError::Columns {
                    path: "s.csv".into(),
                    line: 2,
                    found: 3
                },
                SampleError::UnknownLabel {
                    path: "s.csv".into(),
                    line: 3,
                    label: "XYZ".into(),
                    known: "NEU,HAP,SAD,FEA,DIS,ANG".into()
                },
                SampleError::EmptyClip {
                    path: "s.csv".into(),
                    line: 4
                },
                SampleError::Columns {
                    path: "s.csv".into(),
                    line: 5,
                    found: 1
                },
            ]
        );
        assert_eq!(
            p.bad[1].to_string(),
            "s.csv:3: unknown label \"XYZ\" (known: NEU,HAP,SAD,FEA,DIS,ANG)"
        );
    }

    /// VGGSound's labels hold commas: quoted, they read as one field, as Python's csv reads
    /// them; an unclosed quote is a bad row naming the line.
    #[test]
    fn quoted_labels_may_hold_commas() {
        assert_eq!(
            csv_fields(r#" a , "male speech, man speaking" "#).unwrap(),
            ["a", "male speech, man speaking"]
        );
        assert_eq!(
            csv_fields(r#""say ""hi""",x"#).unwrap(),
            [r#"say "hi""#, "x"]
        );
        assert_eq!(csv_fields("a,,b").unwrap(), ["a", "", "b"]);
        assert_eq!(csv_fields(r#"a,"b"#), None);
        let names = vec!["male speech, man speaking".to_string(), "dog".to_string()];
        let labels = LabelSet::new(names).unwrap();
        let text = "x1,\"male speech, man speaking\"\nx2,dog\nx3,\"dog\n";
        let p = parse_split(text, Path::new("v.csv"), &labels);
        let rows: Vec<_> = p.rows.iter().map(|r| (r.clip.as_str(), r.label)).collect();
        assert_eq!(rows, [("x1", 0), ("x2", 1)]);
        assert_eq!(
            p.bad,
            [SampleError::Quote {
                path: "v.csv".into(),
                line: 3
            }]
        );
    }

    /// Every row of up to five characters of `a , " é`: no panic, and rows without quotes
    /// split exactly as before quotes were read (a plain split on commas, trimmed).
    #[test]
    fn every_short_row_splits_without_panic() {
        let alphabet = ['a', ',', '"', ' ', 'é'];
        let mut rows = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = rows
                .iter()
                .flat_map(|r| alphabet.iter().map(move |c| format!("{r}{c}")))
                .collect();
            for r in &longer {
                let got = csv_fields(r);
                if !r.contains('"') {
                    let plain: Vec<String> = r.split(',').map(|f| f.trim().to_string()).collect();
                    assert_eq!(got, Some(plain), "{r:?}");
                }
            }
            rows = longer;
        }
    }

    #[test]
    fn label_set_rejects_duplicates() {
        assert!(LabelSet::new(vec!["a".into(), "a".into()]).is_none());
        assert!(LabelSet::new(vec![]).is_none());
        assert_eq!(
            LabelSet::new(vec!["x".into(), "y".into()])
                .unwrap()
                .index("y"),
            Some(1)
        );
    }
}
