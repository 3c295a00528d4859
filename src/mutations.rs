//! Damaged copies of real inputs, for the tests that hold every reader of untrusted bytes
//! (frames, client messages, weight files) to errors, never panics: a small, seeded
//! pseudo-random mutator, so each run is the same and a failure names its case.
//! `FACE_SERVICE_MUTATIONS=N` runs N cases per reader instead of each test's own bound.

/// xorshift64*: enough randomness to spread damage over a file, reproducible from its seed.
pub struct Mutator(u64);

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// `original` with one to four kinds of damage: bytes flipped or set to extremes, a cut,
    /// a run of bytes repeated, or random bytes inserted.
    pub fn mutate(&mut self, original: &[u8]) -> Vec<u8> {
        let mut bytes = original.to_vec();
        for _ in 0..1 + self.below(4) {
            if bytes.is_empty() {
                bytes.push(self.next() as u8);
                continue;
            }
            let at = self.below(bytes.len());
            match self.below(5) {
                0 => bytes[at] ^= 1 << self.below(8),
                1 => bytes[at] = [0x00, 0xFF, 0x7F, 0x80][self.below(4)],
                2 => bytes.truncate(at),
                3 => {
                    let run = bytes[at..(at + 1 + self.below(64)).min(bytes.len())].to_vec();
                    bytes.splice(at..at, run);
                }
                _ => {
                    let noise: Vec<u8> =
                        (0..1 + self.below(16)).map(|_| self.next() as u8).collect();
                    bytes.splice(at..at, noise);
                }
            }
        }
        bytes
    }
}

/// How many damaged cases a test runs: its own bound, or `FACE_SERVICE_MUTATIONS`.
pub fn cases(default: usize) -> usize {
    std::env::var("FACE_SERVICE_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Runs `read` on `cases` damaged copies of `original`; a panic names the seed and the case.
pub fn never_panics(original: &[u8], cases: usize, read: impl Fn(&[u8])) {
    let mut mutator = Mutator::new(0x5eed ^ original.len() as u64);
    for case in 0..cases {
        let damaged = mutator.mutate(original);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&damaged)));
        assert!(
            outcome.is_ok(),
            "case {case} of {cases} ({} bytes) panicked",
            damaged.len()
        );
    }
}
