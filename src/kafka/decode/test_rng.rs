//! A small seeded generator for the decoders' differential tests
//! (`proto_json_tests`, `json_reference_tests`): fixed seeds, so a failure
//! is reproducible, and edge values drawn on purpose.

/// xorshift64*: a fixed seed, so a failure is reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    pub fn u64(&mut self) -> u64 {
        match self.below(6) {
            0 => 0,
            1 => u64::MAX,
            2 => self.next() % 300,
            3 => 1 << self.below(64),
            _ => self.next(),
        }
    }
    pub fn f64(&mut self) -> f64 {
        self.pick(&[0.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.5, 1e21, 0.1, -2.0, f64::MIN_POSITIVE])
            * if self.chance(50) { 1.0 } else { f64::from_bits(self.next()).signum() }
    }
    pub fn float(&mut self) -> f64 {
        if self.chance(70) {
            self.f64()
        } else {
            f64::from_bits(self.next())
        }
    }
    pub fn string(&mut self) -> String {
        let parts = ["", "a", "Ann", "\"", "\\", "\n", "\u{1}", "\u{1f}", "\u{7f}", "é", "😀", "\u{2028}", "/", " "];
        (0..self.below(6)).map(|_| self.pick(&parts)).collect()
    }
    pub fn bytes(&mut self) -> Vec<u8> {
        (0..self.below(7)).map(|_| self.next() as u8).collect()
    }
}
