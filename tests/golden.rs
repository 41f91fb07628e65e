//! Golden vectors: every case of the reference file (computed from the official formulas in
//! float64 from float32 inputs) must match `ogm-core`.
//!
//! The file is `tests/golden/ogm_reference.json`, or the one named by `OGM_GOLDEN_FILE`, so
//! anyone can check the crate against their own reference run.
//!
//! Tolerances: scores, probabilities, ratios and standard deviations are computed in `f64` by
//! both sides, differing only in the order of sums and in `exp` implementations (each within
//! an ulp), so a relative error of 1e-9 is ample; coefficients are compared with an absolute
//! error of 1e-9. Exact zeros (underflowed scores) and `null`s must match exactly.

use ogm_core::{balance, batch_score, true_class_probs, GradStats};
use serde_json::Value;

const REL: f64 = 1e-9;
const ABS_COEFF: f64 = 1e-9;

fn load() -> Value {
    let path = std::env::var("OGM_GOLDEN_FILE").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/ogm_reference.json"
        )
        .to_string()
    });
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read golden file {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("golden file {path} is not JSON: {e}"))
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn close(name: &str, what: &str, got: f64, want: f64) {
    let ok = if want == 0.0 {
        got == 0.0
    } else {
        ((got - want) / want).abs() <= REL
    };
    assert!(ok, "{name}: {what} = {got:e}, reference {want:e}");
}

#[test]
fn score_cases_match() {
    let g = load();
    let cases = g["score_cases"].as_array().expect("score_cases");
    assert!(!cases.is_empty());
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let classes = c["classes"].as_u64().unwrap() as usize;
        let alpha = c["alpha"].as_f64().unwrap();
        let labels: Vec<u32> = c["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|y| y.as_u64().unwrap() as u32)
            .collect();
        let (la, lv) = (f32s(&c["logits_a"]), f32s(&c["logits_v"]));

        for (logits, key) in [(&la, "probs_true_a"), (&lv, "probs_true_v")] {
            let mut probs = vec![0.0; labels.len()];
            true_class_probs(logits, &labels, classes, &mut probs).unwrap();
            for (i, (p, want)) in probs.iter().zip(c[key].as_array().unwrap()).enumerate() {
                close(name, &format!("{key}[{i}]"), *p, want.as_f64().unwrap());
            }
        }
        let s_a = batch_score(&la, &labels, classes).unwrap();
        let s_v = batch_score(&lv, &labels, classes).unwrap();
        close(name, "score_a", s_a, c["score_a"].as_f64().unwrap());
        close(name, "score_v", s_v, c["score_v"].as_f64().unwrap());

        let b = balance(s_a, s_v, alpha).unwrap();
        match (b.ratio, c["ratio_v"].as_f64()) {
            (Some(r), Some(want)) => {
                close(name, "ratio_v", r.visual, want);
                close(name, "ratio_a", r.audio, c["ratio_a"].as_f64().unwrap());
            }
            // The reference writes an infinite ratio as null: only the audio score is zero.
            (Some(r), None) => assert!(
                r.visual.is_infinite() && s_a == 0.0,
                "{name}: ratio {r:?}, reference null"
            ),
            (None, want) => assert!(
                want.is_none() && s_a == 0.0 && s_v == 0.0,
                "{name}: no ratio, reference {want:?}"
            ),
        }
        for (got, key) in [(b.coeff_audio, "coeff_a"), (b.coeff_visual, "coeff_v")] {
            let want = c[key].as_f64().unwrap();
            assert!(
                (got - want).abs() <= ABS_COEFF,
                "{name}: {key} = {got}, reference {want}"
            );
        }
    }
}

#[test]
fn std_cases_match() {
    let g = load();
    let cases = g["std_cases"].as_array().expect("std_cases");
    assert!(!cases.is_empty());
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let s = GradStats::of(&f32s(&c["grad"])).unwrap();
        match (s.std_unbiased(), c["std_unbiased"].as_f64()) {
            (Some(got), Some(want)) => close(name, "std_unbiased", got, want),
            (None, None) => {}
            (got, want) => panic!("{name}: std {got:?}, reference {want:?}"),
        }
        close(
            name,
            "noise_sigma",
            s.noise_sigma(),
            c["noise_sigma"].as_f64().unwrap(),
        );
    }
}
