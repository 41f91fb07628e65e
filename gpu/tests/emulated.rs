//! The CUDA kernels' own source, compiled for the CPU with g++ and a small CUDA stand-in
//! (`tests/emulator/`), checked against the CPU references with the same checks as the device
//! tests (`common::check_*`). This runs everywhere g++ does, GPU or not, so a mistake in
//! indexing, a reduction tree, the last-block merge or the noise arithmetic shows up before any
//! device time is spent. Without g++ the tests print why they skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use common::Backend;
use ogm_core::{Mode, NoiseKey};
use ogm_gpu::{BalanceState, DeviceStatus, SgdConfig, Stats, TensorDesc, TensorList};

const KERNELS: [&str; 5] = ["scores", "balance", "stats", "modulate", "sgd"];

/// Builds the harness once per source version (the binary's name carries a hash of every
/// source file, so an edited kernel is rebuilt). `Err` carries the reason to skip.
fn harness() -> Result<&'static Path, &'static str> {
    static HARNESS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = HARNESS.get_or_init(|| {
        if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            return Err("SKIP the emulator's fibers are written for x86-64 Linux".to_string());
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut sources: Vec<PathBuf> = KERNELS
            .iter()
            .map(|k| root.join("kernels").join(format!("{k}.cu")))
            .collect();
        for extra in [
            "kernels/common.cuh",
            "kernels/balance.cuh",
            "kernels/noise.cuh",
            "tests/emulator/cuda_shim.h",
            "tests/emulator/fibers.h",
            "tests/emulator/harness.cpp",
        ] {
            sources.push(root.join(extra));
        }
        // FNV-1a over the sources' contents.
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for s in &sources {
            let bytes = std::fs::read(s).map_err(|e| format!("reading {}: {e}", s.display()))?;
            for b in bytes {
                hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
        // OGM_EMU_SANITIZE=address: the kernels under AddressSanitizer (an access outside an
        // input array or a shared array stops the harness with a report), as for the engine's
        // emulator library (ogm_gpu::engine::emu).
        let sanitize: &[&str] = match std::env::var("OGM_EMU_SANITIZE").as_deref() {
            Ok("address") => &["-fsanitize=address", "-fno-omit-frame-pointer", "-g"],
            _ => &[],
        };
        for b in sanitize.concat().bytes() {
            hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ogm-emulator");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let exe = dir.join(format!("harness-{hash:016x}"));
        if exe.is_file() {
            return Ok(exe);
        }
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
        let mut cmd = Command::new(&cxx);
        cmd.args([
            "-std=c++20",
            "-O2",
            "-ffp-contract=off",
            "-fno-strict-aliasing",
        ])
        .args(sanitize)
        .args(["-Wall", "-Wno-unknown-pragmas"])
        .arg(format!("-I{}", root.join("kernels").display()))
        .arg("-include")
        .arg(root.join("tests/emulator/cuda_shim.h"))
        .args(["-x", "c++"])
        .args(&sources[..KERNELS.len()])
        .args(["-x", "none"])
        .arg(root.join("tests/emulator/harness.cpp"))
        .arg("-o")
        .arg(&exe);
        let out = match cmd.output() {
            Ok(out) => out,
            Err(e) => return Err(format!("SKIP no C++ compiler ({cxx}: {e})")),
        };
        if !out.status.success() {
            return Err(format!(
                "compiling the kernels for the CPU failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(exe)
    });
    match built {
        Ok(p) => Ok(p.as_path()),
        Err(e) if e.starts_with("SKIP ") => Err(&e[5..]),
        Err(e) => panic!("{e}"),
    }
}

/// One harness run per kernel launch, through files in a fresh directory.
struct Emulator {
    exe: &'static Path,
}

fn bytes_of<T: Copy>(v: &[T]) -> Vec<u8> {
    // SAFETY: T is plain #[repr(C)] data or a primitive; we only read its bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
        .to_vec()
}

fn from_bytes<T: Copy + Default>(b: &[u8]) -> Vec<T> {
    let n = b.len() / std::mem::size_of::<T>();
    let mut v = vec![T::default(); n];
    // SAFETY: v holds n Ts; every bit pattern is a valid value of the plain types used here.
    unsafe {
        std::ptr::copy_nonoverlapping(
            b.as_ptr(),
            v.as_mut_ptr() as *mut u8,
            n * std::mem::size_of::<T>(),
        )
    };
    v
}

struct Job {
    dir: PathBuf,
}

impl Job {
    fn new(kernel: &str, params: &str, state: &BalanceState, status: &DeviceStatus) -> Job {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("ogm-emulator")
            .join(format!(
                "job-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("job"), format!("kernel={kernel} {params}")).unwrap();
        let job = Job { dir };
        job.put("state.bin", std::slice::from_ref(state));
        job.put("status.bin", std::slice::from_ref(status));
        job
    }
    fn put<T: Copy>(&self, name: &str, v: &[T]) {
        std::fs::write(self.dir.join(name), bytes_of(v)).unwrap();
    }
    fn get<T: Copy + Default>(&self, name: &str) -> Vec<T> {
        from_bytes(&std::fs::read(self.dir.join(name)).unwrap())
    }
    fn run(&self, exe: &Path) -> (BalanceState, DeviceStatus) {
        let out = Command::new(exe).arg(&self.dir).output().unwrap();
        assert!(
            out.status.success(),
            "harness: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            self.get::<BalanceState>("state.bin")[0],
            self.get::<DeviceStatus>("status.bin")[0],
        )
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn descs(list: &TensorList) -> &[TensorDesc] {
    list.descs()
}

impl Backend for Emulator {
    fn scores(
        &mut self,
        audio: &[f32],
        visual: &[f32],
        labels: &[u32],
        classes: usize,
    ) -> (BalanceState, DeviceStatus) {
        let params = format!("batch={} classes={classes}", labels.len());
        let job = Job::new(
            "scores",
            &params,
            &BalanceState::default(),
            &DeviceStatus::CLEAR,
        );
        job.put("audio.bin", audio);
        job.put("visual.bin", visual);
        job.put("labels.bin", labels);
        job.run(self.exe)
    }

    fn balance(&mut self, state: &BalanceState, alpha: f64, active: bool) -> BalanceState {
        // {:e} prints the shortest representation that parses back to the same f64.
        let params = format!("alpha={alpha:e} active={}", active as u32);
        Job::new("balance", &params, state, &DeviceStatus::CLEAR)
            .run(self.exe)
            .0
    }

    fn stats(&mut self, grads: &[f32], list: &TensorList) -> (Vec<Stats>, DeviceStatus) {
        let params = format!("total_chunks={}", list.total_chunks());
        let job = Job::new(
            "stats",
            &params,
            &BalanceState::default(),
            &DeviceStatus::CLEAR,
        );
        job.put("grads.bin", grads);
        job.put("tensors.bin", descs(list));
        let (_, status) = job.run(self.exe);
        (job.get("stats.bin"), status)
    }

    fn modulate(
        &mut self,
        grads: &mut [f32],
        list: &TensorList,
        stats: &[Stats],
        state: &BalanceState,
        mode: Mode,
        key: NoiseKey,
    ) -> DeviceStatus {
        let params = format!(
            "total_chunks={} step_key={} noise={} max_z={:e}",
            list.total_chunks(),
            key.0,
            (mode == Mode::OgmGe) as u32,
            ogm_core::noise::max_normal_magnitude()
        );
        let job = Job::new("modulate", &params, state, &DeviceStatus::CLEAR);
        job.put("grads.bin", grads);
        job.put("tensors.bin", descs(list));
        job.put("stats.bin", stats);
        let (_, status) = job.run(self.exe);
        grads.copy_from_slice(&job.get::<f32>("grads.bin"));
        status
    }

    fn sgd(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        buf: &mut [f32],
        offset: usize,
        config: &SgdConfig,
        first: bool,
    ) {
        let p = format!(
            "offset={offset} lr={:e} momentum={:e} weight_decay={:e} first={}",
            config.lr, config.momentum, config.weight_decay, first as u32
        );
        let job = Job::new("sgd", &p, &BalanceState::default(), &DeviceStatus::CLEAR);
        job.put("params.bin", params);
        job.put("grads.bin", grads);
        job.put("buf.bin", buf);
        job.run(self.exe);
        params.copy_from_slice(&job.get::<f32>("params.bin"));
        buf.copy_from_slice(&job.get::<f32>("buf.bin"));
    }
}

/// `normal_from_bits` of `kernels/noise.cuh` equals `ogm_core::noise::normal_from_bits` bit
/// for bit on every one of the 2^24 inputs it distinguishes (tails included).
#[test]
fn every_normal_matches_core() {
    let exe = match harness() {
        Ok(exe) => exe,
        Err(why) => return eprintln!("skipping: {why}"),
    };
    let job = Job::new(
        "normals",
        "",
        &BalanceState::default(),
        &DeviceStatus::CLEAR,
    );
    job.run(exe);
    let got: Vec<f32> = job.get("normals.bin");
    assert_eq!(got.len(), 1 << 24);
    let mut bad = (0..1u32 << 24).filter(|&k| {
        got[k as usize].to_bits() != ogm_core::noise::normal_from_bits(k << 8 | 0x80).to_bits()
    });
    if let Some(k) = bad.next() {
        panic!(
            "k = {k}: emulated {:e}, ogm-core {:e} ({} more differ)",
            got[k as usize],
            ogm_core::noise::normal_from_bits(k << 8 | 0x80),
            bad.count()
        );
    }
}

macro_rules! emulated_test {
    ($name:ident, $check:path) => {
        #[test]
        fn $name() {
            match harness() {
                Ok(exe) => $check(&mut Emulator { exe }),
                Err(why) => eprintln!("skipping: {why}"),
            }
        }
    };
}

emulated_test!(scores_match_core, common::check_scores);
emulated_test!(scores_report_bad_input, common::check_scores_bad_input);
emulated_test!(balance_matches_core, common::check_balance);
emulated_test!(stats_match_core, common::check_stats);
emulated_test!(stats_report_non_finite, common::check_stats_non_finite);
emulated_test!(modulate_is_bit_exact, common::check_modulate);
emulated_test!(modulate_rejects_like_core, common::check_modulate_rejects);
emulated_test!(sgd_is_bit_exact, common::check_sgd);
