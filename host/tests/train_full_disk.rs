//! A full disk: `ogm train` writing its run folder to a small tmpfs runs out of space at a
//! different point for each size (at least three different files: step model and optimiser
//! files, the best model). At every point the process stops with an error that names the
//! file and no panic, leaves no temporary file, and `--resume` on a disk with room ends with
//! exactly the weights of an uninterrupted run.
//!
//! The small disk is a tmpfs mounted in a private user and mount namespace (`unshare -rm`),
//! so no privilege is needed where unprivileged user namespaces are allowed, and nothing is
//! mounted outside the test's own process tree. Where they are not, the test prints why it
//! skips.

mod train_common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use train_common::{config, dataset, files_under};

/// Whether a private tmpfs can be mounted here; the reason when not.
fn can_mount(dir: &Path) -> Result<(), String> {
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=64k tmpfs '{0}' && umount '{0}'",
            dir.display()
        ))
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `ogm train --config <config>` with the run folder under `ckpt`, and `extra` flags.
fn train_cmd(config: &Path, ckpt: &Path, extra: &str) -> String {
    format!(
        "'{}' train --config '{}' --ckpt_path '{}' --run_name r --quiet {extra}",
        env!("CARGO_BIN_EXE_ogm"),
        config.display(),
        ckpt.display()
    )
}

fn sh(script: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(script).output().unwrap()
}

/// The run's final model and best model, as bytes.
fn models(ckpt: &Path) -> (Vec<u8>, Vec<u8>) {
    let dir = ckpt.join("r/checkpoints");
    let s = ogm_host::train::checkpoint::read_sidecar(&dir)
        .unwrap()
        .expect("a checkpoint");
    (
        std::fs::read(dir.join(s.model_file)).unwrap(),
        std::fs::read(dir.join("best.safetensors")).unwrap(),
    )
}

#[test]
fn a_full_disk_at_any_point_stops_cleanly_and_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = tmp.path().join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    if let Err(why) = can_mount(&probe) {
        eprintln!("skipping: no private tmpfs for a small disk (unshare -rm: {why})");
        return;
    }
    let root = tmp.path().join("data");
    dataset(&root);
    let mut c = config(&root, &tmp.path().join("unused"));
    c.checkpoint_every_steps = 3;
    let config_path = tmp.path().join("config.toml");
    std::fs::write(&config_path, toml::to_string(&c).unwrap()).unwrap();

    let full = tmp.path().join("full");
    let out = sh(&train_cmd(&config_path, &full, ""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = models(&full);
    let total: u64 = files_under(&full.join("r"))
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();

    // Disks from a fifth of the run's bytes to more than all of them.
    let mut failed_at = BTreeSet::new();
    let mut finished = 0;
    for fifth in 1..=7u64 {
        let size_k = total * fifth / 5 / 1024;
        let disk = tmp.path().join(format!("disk-{size_k}k"));
        let stash = tmp.path().join(format!("stash-{size_k}k"));
        std::fs::create_dir_all(&disk).unwrap();
        std::fs::create_dir_all(&stash).unwrap();
        // In the namespace: mount the small disk, train onto it, keep what it holds, unmount,
        // and put that back at the same path on the real disk, where the resume runs.
        let script = format!(
            "mount -t tmpfs -o size={size_k}k tmpfs '{d}' || exit 90; \
             {train} 2> '{s}/stderr'; echo $? > '{s}/rc'; \
             cp -a '{d}/.' '{s}/kept' && umount '{d}' && cp -a '{s}/kept/.' '{d}/'",
            d = disk.display(),
            s = stash.display(),
            train = train_cmd(&config_path, &disk, ""),
        );
        let out = Command::new("unshare")
            .args(["-rm", "sh", "-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{size_k}k: {out:?}");
        let run = disk.join("r");
        let rc: i32 = std::fs::read_to_string(stash.join("rc"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let stderr = std::fs::read_to_string(stash.join("stderr")).unwrap();
        if rc == 0 {
            finished += 1;
        } else {
            assert!(
                rc != 101 && !stderr.contains("panicked"),
                "{size_k}k: {stderr}"
            );
            assert!(
                stderr.contains("No space left on device"),
                "{size_k}k: {stderr}"
            );
            // The error names the file that could not be written, inside the run folder.
            let named = stderr
                .split(|ch: char| ch.is_whitespace() || ch == ':')
                .find(|w| {
                    let name = Path::new(w).file_name().map(|n| n.to_string_lossy());
                    w.starts_with(&*run.to_string_lossy()) && name.is_some_and(|n| n.contains('.'))
                })
                .unwrap_or_else(|| panic!("{size_k}k: no file named: {stderr}"));
            failed_at.insert(Path::new(named).file_name().unwrap().to_owned());
        }
        let left: Vec<_> = files_under(&disk)
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{size_k}k: temporary files left: {left:?}");

        let out = sh(&train_cmd(&config_path, &disk, "--resume"));
        assert!(
            out.status.success(),
            "{size_k}k resume: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            models(&disk) == want,
            "{size_k}k: the resumed run ends elsewhere"
        );
    }
    eprintln!("the disk filled writing: {failed_at:?}; {finished} runs had room");
    assert!(
        failed_at.len() >= 3,
        "too few distinct points: {failed_at:?}"
    );
    assert!(finished >= 1, "no disk had room for the whole run");
}
