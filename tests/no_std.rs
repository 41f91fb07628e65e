//! Proof that `ogm-core` stays `no_std`: builds `tests/no_std_check`, a `#![no_std]` static
//! library with its own panic handler that links ogm-core. If `std` reaches ogm-core through
//! any dependency or feature, that build fails (duplicate `panic_impl` lang item).

use std::process::Command;

#[test]
fn core_links_into_a_no_std_crate() {
    let root = env!("CARGO_MANIFEST_DIR");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = format!("{root}/target/no_std_check");
    let out = Command::new(cargo)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(format!("{root}/tests/no_std_check/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cannot run cargo");
    assert!(
        out.status.success(),
        "ogm-core no longer builds into a no_std crate:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
