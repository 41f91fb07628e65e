//! Input helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Raw fuzzer bytes read as `f32`/`f64` bits almost never hit the values that matter to
//! `ogm-core` (0, 1, ties, the edge of the `f32` range, subnormals), and almost never form a
//! well-shaped batch. The types here let libFuzzer choose, per value, between any bit pattern
//! (NaN, infinities and subnormals included), an everyday small value, and a table of edge
//! values, so that both the validation paths and the arithmetic paths get coverage.

use arbitrary::Arbitrary;

/// Edge values worth hitting on purpose (as `f64`; [`F32`] rounds them).
const SPECIAL: [f64; 21] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    2.0,
    f64::MIN_POSITIVE,
    5e-324,
    f64::EPSILON,
    1e-300,
    1e300,
    f64::MAX,
    // Two of these sum past f64::MAX.
    f64::MAX / 2.0,
    -f64::MAX,
    f32::MAX as f64,
    -(f32::MAX as f64),
    1e38,
    f32::MIN_POSITIVE as f64,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
];

/// An `f64` chosen by the fuzzer from any bits, a small fixed-point value, or an edge value.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum F64 {
    /// Any bit pattern.
    Bits(u64),
    /// `n / 256`: everyday magnitudes, exact ties between inputs.
    Small(i16),
    /// An entry of the edge-value table.
    Special(u8),
}

impl F64 {
    /// The value.
    pub fn get(self) -> f64 {
        match self {
            F64::Bits(b) => f64::from_bits(b),
            F64::Small(n) => n as f64 / 256.0,
            F64::Special(i) => SPECIAL[i as usize % SPECIAL.len()],
        }
    }
}

/// An `f32` chosen like [`F64`].
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum F32 {
    /// Any bit pattern.
    Bits(u32),
    /// `n / 256`.
    Small(i16),
    /// An entry of the edge-value table, rounded to `f32`.
    Special(u8),
}

impl F32 {
    /// The value.
    pub fn get(self) -> f32 {
        match self {
            F32::Bits(b) => f32::from_bits(b),
            F32::Small(n) => n as f32 / 256.0,
            F32::Special(i) => SPECIAL[i as usize % SPECIAL.len()] as f32,
        }
    }
}

/// A scratch path of this fuzzing process, `<temp>/ogm-fuzz-<pid>-<name>`, for the host
/// targets whose code under test reads files.
pub fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ogm-fuzz-{}-{name}", std::process::id()))
}

/// The values of `xs`.
pub fn f32s(xs: &[F32]) -> Vec<f32> {
    xs.iter().map(|x| x.get()).collect()
}

/// The values of `xs`.
pub fn f64s(xs: &[F64]) -> Vec<f64> {
    xs.iter().map(|x| x.get()).collect()
}

/// `xs` repeated cyclically to `xs.len() * (1 + reps % 4)` values: libFuzzer's default input
/// cap (4 KiB) holds fewer than [`ogm_core::CHUNK`] values, and tiling is how the targets
/// reach tensors of several chunks.
pub fn tile(xs: Vec<f32>, reps: u8) -> Vec<f32> {
    let n = xs.len() * (1 + reps as usize % 4);
    xs.iter().copied().cycle().take(n).collect()
}

/// A mode from a byte.
pub fn mode(b: u8) -> ogm_core::Mode {
    match b % 3 {
        0 => ogm_core::Mode::Normal,
        1 => ogm_core::Mode::Ogm,
        _ => ogm_core::Mode::OgmGe,
    }
}

/// An `RngCore` that replays fuzzer-chosen words cyclically (zeros when there are none), so
/// that the fuzzer controls the raw bits behind the noise, extreme tails included.
#[derive(Debug, Clone)]
pub struct ReplayRng {
    words: Vec<u64>,
    pos: usize,
    /// `next_u64` calls served so far.
    pub draws: usize,
}

impl ReplayRng {
    /// A generator replaying `words`.
    pub fn new(words: Vec<u64>) -> ReplayRng {
        ReplayRng {
            words,
            pos: 0,
            draws: 0,
        }
    }
}

impl rand_core::RngCore for ReplayRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.draws += 1;
        if self.words.is_empty() {
            return 0;
        }
        let w = self.words[self.pos % self.words.len()];
        self.pos += 1;
        w
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dest)
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Whether `a` and `b` hold the same bits (NaN payloads included).
pub fn same_bits_f32(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
