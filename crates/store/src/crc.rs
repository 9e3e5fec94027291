//! CRC-32C (Castagnoli), table-driven. Small and dependency-free; the store checksums a few
//! kilobytes per control-plane change, so throughput is not a concern.

/// Reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i: u32 = 0;
    while i < 256 {
        let mut crc = i;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ POLY } else { crc >> 1 };
            bit += 1;
        }
        table[i as usize] = crc;
        i += 1;
    }
    table
};

/// An incremental CRC-32C computation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Crc32c(u32);

impl Crc32c {
    pub(crate) fn new() -> Self {
        Crc32c(!0)
    }

    pub(crate) fn update(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self.0 = TABLE[usize::from(self.0.to_le_bytes()[0] ^ b)] ^ (self.0 >> 8);
        }
        self
    }

    pub(crate) fn finish(self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Crc32c;

    #[test]
    fn known_vectors() {
        assert_eq!(Crc32c::new().update(b"123456789").finish(), 0xE306_9283);
        assert_eq!(Crc32c::new().finish(), 0);
        // 32 zero bytes (RFC 3720, B.4).
        assert_eq!(Crc32c::new().update(&[0u8; 32]).finish(), 0x8A91_36AA);
        // Incremental equals one-shot.
        assert_eq!(Crc32c::new().update(b"1234").update(b"56789").finish(), 0xE306_9283);
    }
}
