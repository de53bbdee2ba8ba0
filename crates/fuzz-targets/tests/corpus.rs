//! Replays `fuzz/corpus/<target>/*` (seeds, and every finding saved by `scripts/fuzz.sh`)
//! and a fixed pseudo-random set through each target, in every `cargo test`.

use std::path::Path;

/// xorshift64*: deterministic inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Bytes biased towards the ones parsers care about (NULs that split fields, `%`, `=`,
    /// `&`, quotes, brackets, controls) and towards short lengths.
    fn input(&mut self) -> Vec<u8> {
        const INTERESTING: &[u8] = b"\0\x01%=&+.\"'[]{}<>\\\n\r\t,:;/ aZ09-_~\x7f\xff";
        let len = (self.next() % 64) as usize + if self.next().is_multiple_of(8) { 400 } else { 0 };
        (0..len)
            .map(|_| {
                let r = self.next();
                if r.is_multiple_of(3) { INTERESTING[(r >> 8) as usize % INTERESTING.len()] } else { (r >> 16) as u8 }
            })
            .collect()
    }
}

#[test]
fn corpus_and_random_inputs_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, target) in fuzz_targets::TARGETS {
        let dir = root.join(name);
        let mut files = 0;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let data = std::fs::read(e.path()).unwrap_or_default();
                target(&data);
                files += 1;
            }
        }
        assert!(files > 0, "no seeds in {}", dir.display());
        let mut rng = Rng(0x5eed ^ name.len() as u64);
        for _ in 0..3000 {
            target(&rng.input());
        }
    }
}
