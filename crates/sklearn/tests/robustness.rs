//! Arbitrary and mutated bytes must give `Err` (or a model), never a panic, a hang
//! or an unbounded allocation.

use std::path::{Path, PathBuf};

use tidal_sklearn::Model;

/// xorshift64*: small deterministic PRNG (no dependency, same sequence everywhere).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn model_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).expect("fixtures") {
        let dir = entry.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).expect("dir") {
            let f = f.expect("entry").path();
            if matches!(
                f.extension().and_then(|e| e.to_str()),
                Some("joblib" | "pkl")
            ) {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

/// Loads and, when that works, predicts: neither may panic.
fn exercise(bytes: &[u8]) {
    if let Ok(model) = Model::from_bytes(bytes) {
        let nf = model.n_features().unwrap_or(1).min(64);
        let x: Vec<f64> = (0..nf * 3).map(|i| i as f64 * 0.37 - 1.0).collect();
        let _ = model.predict(&x, 3);
        let _ = model.predict_proba(&x, 3);
        let _ = model.predict(&x[..nf.saturating_sub(1)], 1);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..3000 {
        let len = rng.below(300);
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Give half of them a plausible pickle header so the VM gets past byte 0.
        if i % 2 == 0 && b.len() > 2 {
            b[0] = 0x80;
            b[1] = (rng.below(6)) as u8;
        }
        exercise(&b);
    }
}

#[test]
fn opcode_soup_never_panics() {
    // Random sequences drawn from the real opcodes with small arguments.
    const OPS: &[u8] = b"(.012NKJMabcdehjlpqrstuGBCXU])}\x80\x81\x85\x86\x87\x88\x89\x8a\x8c\x8f\x90\x91\x92\x93\x94\x95";
    let mut rng = Rng(42);
    for _ in 0..3000 {
        let mut b = vec![0x80, 4];
        for _ in 0..rng.below(80) {
            b.push(OPS[rng.below(OPS.len())]);
            for _ in 0..rng.below(3) {
                b.push(rng.below(4) as u8);
            }
        }
        b.push(b'.');
        exercise(&b);
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    let files = model_files();
    assert!(!files.is_empty());
    let originals: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("read"))
        .collect();
    let mut rng = Rng(7);
    let mut loaded = 0;
    for round in 0..2500 {
        let src = &originals[round % originals.len()];
        let mut b = src.clone();
        match rng.below(5) {
            0 => b.truncate(rng.below(b.len())),
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            2 => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            3 => {
                let i = rng.below(b.len());
                let n = rng.below(16).min(b.len() - i);
                b.drain(i..i + n);
            }
            _ => {
                let i = rng.below(b.len());
                for _ in 0..rng.below(8) {
                    b.insert(i, rng.next() as u8);
                }
            }
        }
        if Model::from_bytes(&b).is_ok() {
            loaded += 1;
        }
        exercise(&b);
    }
    // Sanity: some mutations (e.g. of float payloads) still load.
    assert!(loaded > 0);
}

#[test]
fn every_truncation_of_a_small_model_is_an_error() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iris-logreg/model.joblib");
    let b = std::fs::read(path).expect("read");
    for n in 0..b.len() {
        assert!(
            Model::from_bytes(&b[..n]).is_err(),
            "prefix of {n} bytes loaded"
        );
    }
    assert!(Model::from_bytes(&b).is_ok());
}
