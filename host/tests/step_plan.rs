//! `ogm-step-plan`: the paper model's GPU step planned without a GPU (every launch with its
//! estimated work). The same model does the same products whatever the precision or the
//! convolution algorithm; implicit GEMMs launch no lowering kernels and move fewer bytes; every
//! kernel of the step has an estimate.

use std::process::Command;

fn plan(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ogm-step-plan"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("PLAN_JSON "))
        .expect("a PLAN_JSON line");
    serde_json::from_str(line).unwrap()
}

fn kernel<'a>(p: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    p["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
}

#[test]
fn the_step_plan_counts_the_same_arithmetic_in_every_variant() {
    let fp32 = plan(&["--batch", "8"]);
    let implicit = plan(&["--batch", "8", "--conv", "implicit"]);
    let tf32 = plan(&["--batch", "8", "--precision", "tf32", "--gpu", "h100"]);
    let gflop = |p: &serde_json::Value| p["gflop"].as_f64().unwrap();
    let launches = |p: &serde_json::Value| p["launches"].as_u64().unwrap();
    // Two ResNet-18 encoders, forward and backward, at batch 8: about 170 GFLOP.
    assert!((100.0..300.0).contains(&gflop(&fp32)), "{}", gflop(&fp32));
    // The same products; the batch norms' statistics (f64, under 0.1% of the step) are
    // summed per GEMM column tile where a product does not split, and the tiles differ.
    assert!((gflop(&tf32) / gflop(&fp32) - 1.0).abs() < 1e-3, "{tf32}");
    // The implicit step does the same products; what it no longer does is col2im's additions
    // for its stride-1 convolutions (their data gradients sum every tap in the GEMM), under
    // 1% of the step.
    let saved = 1.0 - gflop(&implicit) / gflop(&fp32);
    assert!((0.0..0.01).contains(&saved), "{saved}: {implicit}");
    let col2im_gflop = |p: &serde_json::Value| kernel(p, "eng_col2im").unwrap()["gflop"].as_f64();
    assert!(col2im_gflop(&implicit) < col2im_gflop(&fp32), "{implicit}");
    assert!(
        kernel(&implicit, "eng_gemm_big_conv_dgrad").is_some(),
        "{implicit}"
    );
    assert!(kernel(&fp32, "eng_im2col").is_some());
    assert!(kernel(&implicit, "eng_im2col").is_none(), "{implicit}");
    assert!(
        kernel(&implicit, "eng_gemm_big_conv_fwd").is_some()
            || kernel(&implicit, "eng_gemm_conv_fwd").is_some()
    );
    assert!(launches(&implicit) < launches(&fp32));
    assert!(implicit["gbytes"].as_f64() < fp32["gbytes"].as_f64());
    assert!(kernel(&tf32, "eng_gemm_tf32").is_some());
    for p in [&fp32, &implicit, &tf32] {
        assert!(p["floor_ms"].as_f64().unwrap() > 0.0, "{p}");
        for k in p["kernels"].as_array().unwrap() {
            assert!(k["launches"].as_u64().unwrap() > 0, "{k}");
        }
    }
    // The H100 has less bandwidth than the H200 and the same arithmetic rate.
    let h100 = plan(&["--batch", "8", "--gpu", "h100"]);
    assert!(h100["floor_ms"].as_f64() > fp32["floor_ms"].as_f64());
}

#[test]
fn the_step_plan_refuses_bad_flags_with_their_name() {
    for (args, needle) in [
        (&["--batch", "0"][..], "--batch"),
        (&["--gpu", "v100"][..], "--gpu"),
        (&["--precision", "fp16"][..], "--precision"),
        (&["--frobnicate", "1"][..], "--frobnicate"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ogm-step-plan"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
