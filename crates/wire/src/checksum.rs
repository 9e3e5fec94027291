//! The Internet checksum: full computation (RFC 1071) and incremental update (RFC 1624).
//!
//! A NAT rewrites a few 16-bit words (addresses, ports) and must fix the IPv4, TCP and UDP
//! checksums without reading the payload again. RFC 1624 §3 eqn 3, `HC' = ~(~HC + ~m + m')`,
//! does that; [`Delta`] accumulates the `~m + m'` part once per flow so the fast path only
//! calls [`Delta::apply`].
//!
//! # When eqn 3 equals a full recomputation
//!
//! Let `HC = data(D)` be the checksum of data `D` as computed here (RFC 1071: never `0xFFFF`
//! unless `D` is all zero bytes) and `D'` the edited data. Then
//! `delta.apply(HC) == data(D')` whenever `D'` is not all zero bytes. If `D'` is all zero,
//! the full computation gives `0xFFFF` while eqn 3 gives `0x0000` (unless no edit changed
//! anything): no function of `(HC, delta)` alone can tell that case apart from a non-zero
//! `D'` whose sum is also `0 mod 0xFFFF` (RFC 1624 §3 discusses the same `-0`/`+0` pair).
//! Every checksum overlink updates covers a non-zero word (the IPv4 version nibble, the
//! pseudo-header's protocol and length), so in practice the two are always equal.
//! Edits that leave a word unchanged are dropped, so [`Delta::ZERO`] leaves any checksum as is.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Unfolded sum of the big-endian 16-bit words of `data`, an odd last byte padded with zero.
///
/// Partially folded as needed so it never overflows; add sums with `+` and [`fold`] at the end.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    // Only slices past 128 KiB get here; folding keeps the residue mod 0xFFFF and leaves
    // room for callers to add a few more sums without overflowing u32.
    while acc >> 31 != 0 {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    #[allow(clippy::cast_possible_truncation, reason = "the loop above leaves acc < 2^31")]
    let small = acc as u32;
    small
}

/// Folds a 32-bit sum to 16 bits with end-around carry (RFC 1071 §4.1).
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    #[allow(clippy::cast_possible_truncation, reason = "the loop leaves sum <= 0xFFFF")]
    let folded = sum as u16;
    folded
}

/// The checksum field value for a sum: the one's complement of the folded sum.
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// The RFC 1071 checksum of `data`.
pub fn data(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xFFFF) + (d >> 16) + (d & 0xFFFF) + u32::from(protocol) + u32::from(length)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1).
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u32 {
    let mut acc: u32 = 0;
    for seg in src.segments().into_iter().chain(dst.segments()) {
        acc += u32::from(seg);
    }
    acc + (length >> 16) + (length & 0xFFFF) + u32::from(next_header)
}

/// An accumulated RFC 1624 difference (the one's complement sum of `~m + m'` over the edits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Delta(u16);

impl Delta {
    /// No edit.
    pub const ZERO: Delta = Delta(0);

    /// Adds the edit of one 16-bit word from `old` to `new`.
    #[must_use]
    pub fn replace16(self, old: u16, new: u16) -> Delta {
        if old == new {
            return self;
        }
        Delta(fold(u32::from(self.0) + u32::from(!old) + u32::from(new)))
    }

    /// Adds the edit of a 32-bit field (two words) from `old` to `new`.
    #[must_use]
    pub fn replace32(self, old: u32, new: u32) -> Delta {
        self.replace16(hi(old), hi(new)).replace16(lo(old), lo(new))
    }

    /// Adds the edit of an IPv4 address.
    #[must_use]
    pub fn replace_addr(self, old: Ipv4Addr, new: Ipv4Addr) -> Delta {
        self.replace32(u32::from(old), u32::from(new))
    }

    /// Combines two deltas (both edits applied).
    #[must_use]
    #[allow(clippy::should_implement_trait, reason = "the datapath's API names it `add`; `+` is also provided")]
    pub fn add(self, other: Delta) -> Delta {
        if other.0 == 0 {
            return self;
        }
        Delta(fold(u32::from(self.0) + u32::from(other.0)))
    }

    /// The delta that undoes this one.
    #[must_use]
    pub fn negate(self) -> Delta {
        match self.0 {
            0 | 0xFFFF => Delta::ZERO,
            d => Delta(!d),
        }
    }

    /// RFC 1624 eqn 3: `HC' = ~(~HC + delta)`.
    #[must_use]
    pub fn apply(self, checksum: u16) -> u16 {
        !fold(u32::from(!checksum) + u32::from(self.0))
    }

    /// The raw folded difference.
    pub fn value(self) -> u16 {
        self.0
    }
}

impl core::ops::Add for Delta {
    type Output = Delta;
    fn add(self, other: Delta) -> Delta {
        Delta::add(self, other)
    }
}

#[inline]
fn hi(v: u32) -> u16 {
    // `v >> 16` always fits in 16 bits.
    u16::try_from(v >> 16).unwrap_or(0)
}

#[inline]
fn lo(v: u32) -> u16 {
    u16::try_from(v & 0xFFFF).unwrap_or(0)
}

/// Updates `checksum` for one 16-bit word changing from `old` to `new` (RFC 1624 eqn 3).
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    Delta::ZERO.replace16(old, new).apply(checksum)
}

/// Updates `checksum` for one 32-bit field changing from `old` to `new` (RFC 1624 eqn 3).
pub fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    Delta::ZERO.replace32(old, new).apply(checksum)
}

/// Maps a computed UDP checksum of `0` to `0xFFFF`, since `0` means "no checksum" (RFC 768).
pub fn udp_nonzero(c: u16) -> u16 {
    if c == 0 {
        0xFFFF
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: words 0001 f203 f4f5 f6f7 sum to 0x2ddf0, folded 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&d), 0x2ddf0);
        assert_eq!(fold(sum(&d)), 0xddf2);
        assert_eq!(data(&d), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[]), 0);
        assert_eq!(data(&[]), 0xFFFF);
    }

    #[test]
    fn ipv4_header_fixture() {
        // A real IPv4 header (Wikipedia "IPv4 header checksum" example), checksum 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(data(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(fold(sum(&h)), 0xFFFF);
    }

    #[test]
    fn no_overflow_on_large_slices() {
        let big = vec![0xFFu8; 1 << 20];
        assert_eq!(fold(sum(&big)), 0xFFFF);
        let big = vec![0x01u8; (1 << 20) + 1];
        // (2^19 words of 0x0101) + 0x0100, reduced mod 0xFFFF.
        let expect = ((1u64 << 19) * 0x0101 + 0x0100) % 0xFFFF;
        assert_eq!(u64::from(fold(sum(&big))) % 0xFFFF, expect);
    }

    #[test]
    fn pseudo_headers() {
        let p = pseudo_header_v4(Ipv4Addr::new(10, 0, 1, 4), Ipv4Addr::new(10, 0, 2, 10), 6, 20);
        assert_eq!(p, 0x0a00 + 0x0104 + 0x0a00 + 0x020a + 6 + 20);
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let p = pseudo_header_v6(&a, &b, 17, 0x1_0008);
        assert_eq!(p, 2 * (0x2001 + 0x0db8) + 1 + 2 + 1 + 8 + 17);
    }

    #[test]
    fn udp_zero_maps_to_ffff() {
        assert_eq!(udp_nonzero(0), 0xFFFF);
        assert_eq!(udp_nonzero(0x1234), 0x1234);
        assert_eq!(udp_nonzero(0xFFFF), 0xFFFF);
    }

    #[test]
    fn zero_delta_is_identity() {
        for c in [0x0000, 0x0001, 0x1234, 0xFFFE, 0xFFFF] {
            assert_eq!(Delta::ZERO.apply(c), c);
            assert_eq!(Delta::ZERO.replace16(7, 7).apply(c), c);
        }
    }

    /// Applies `edits` to `buf` and checks eqn 3 against a full recomputation.
    fn check_edits(buf: &mut [u8], edits: &[(usize, bool, u32)]) {
        let before = data(buf);
        let mut delta = Delta::ZERO;
        let mut singly = before;
        for &(off, wide, new) in edits {
            if wide {
                let off = off & !1;
                if off + 4 > buf.len() {
                    continue;
                }
                let old = u32::from_be_bytes(buf[off..off + 4].try_into().unwrap());
                delta = delta.replace32(old, new);
                singly = update32(singly, old, new);
                buf[off..off + 4].copy_from_slice(&new.to_be_bytes());
            } else {
                let off = off & !1;
                if off + 2 > buf.len() {
                    continue;
                }
                let new = (new & 0xFFFF) as u16;
                let old = u16::from_be_bytes([buf[off], buf[off + 1]]);
                delta = delta.replace16(old, new);
                singly = update16(singly, old, new);
                buf[off..off + 2].copy_from_slice(&new.to_be_bytes());
            }
        }
        let full = data(buf);
        let incremental = delta.apply(before);
        if buf.iter().all(|&b| b == 0) {
            // The documented corner: full gives 0xFFFF; eqn 3 gives 0x0000 unless nothing changed.
            assert_eq!(full, 0xFFFF);
            assert!(incremental == 0x0000 || incremental == 0xFFFF);
        } else {
            assert_eq!(incremental, full, "buf {buf:02x?} before {before:#06x}");
            assert_eq!(singly, full);
            // And the result verifies: data plus checksum folds to 0xFFFF.
            assert_eq!(fold(sum(buf) + u32::from(incremental)), 0xFFFF);
        }
        // Undoing the delta gives back the old checksum (when the old one was canonical and nonzero data).
        if before != 0xFFFF {
            assert_eq!(delta.negate().apply(incremental), before);
        }
    }

    #[test]
    fn corner_sum_folds_to_ffff() {
        // Sum 0xFFFF: checksum 0x0000.
        let mut b = [0x12, 0x34, 0xED, 0xCB];
        assert_eq!(data(&b), 0x0000);
        // Keep the sum at 0xFFFF with a different split.
        check_edits(&mut b, &[(0, false, 0x0001), (2, false, 0xFFFE)]);
        let mut b = [0xFF, 0xFF, 0x00, 0x00];
        assert_eq!(data(&b), 0x0000);
        check_edits(&mut b, &[(0, false, 0x0000), (2, false, 0xFFFF)]);
        // From an 0xFFFF word to 0x0000 with other data nonzero.
        let mut b = [0xFF, 0xFF, 0x00, 0x05];
        check_edits(&mut b, &[(0, false, 0x0000)]);
        // From sum 0xFFFF to sum 0x0001.
        let mut b = [0xFF, 0xFF, 0x00, 0x00];
        check_edits(&mut b, &[(2, false, 0x0001)]);
    }

    #[test]
    fn corner_all_zero_data() {
        // All-zero data: checksum 0xFFFF; edits make it nonzero.
        let mut b = [0u8; 8];
        assert_eq!(data(&b), 0xFFFF);
        check_edits(&mut b, &[(0, false, 0xFFFF)]);
        let mut b = [0u8; 8];
        check_edits(&mut b, &[(4, true, 0xDEAD_BEEF)]);
        // Edited down to all zero: the documented corner.
        let mut b = [0x00, 0x00, 0x12, 0x34];
        check_edits(&mut b, &[(2, false, 0)]);
        assert_eq!(Delta::ZERO.replace16(0x1234, 0).apply(!0x1234), 0x0000);
    }

    #[test]
    fn negate_undoes() {
        let d =
            Delta::ZERO.replace_addr(Ipv4Addr::new(10, 0, 1, 4), Ipv4Addr::new(192, 0, 2, 7)).replace16(50000, 1024);
        for c in [0x0000u16, 0x1234, 0xFFFE] {
            assert_eq!(d.negate().apply(d.apply(c)), c);
            assert_eq!(d.add(d.negate()).apply(c), c);
        }
    }

    fn word() -> impl Strategy<Value = u32> {
        prop_oneof![Just(0u32), Just(0xFFFF), Just(0xFFFF_FFFF), Just(0xFFFF_0000), Just(0x0000_FFFF), any::<u32>(),]
    }

    fn buffer() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 2..64),
            proptest::collection::vec(prop_oneof![Just(0u8), Just(0xFF), any::<u8>()], 2..16),
            proptest::collection::vec(Just(0u8), 2..8),
            proptest::collection::vec(Just(0xFFu8), 2..8),
        ]
    }

    proptest! {
        #[test]
        fn incremental_equals_full(
            mut buf in buffer(),
            edits in proptest::collection::vec((0usize..64, any::<bool>(), word()), 1..6),
        ) {
            let n = buf.len();
            let edits: Vec<_> = edits.into_iter().map(|(o, w, v)| (o % n, w, v)).collect();
            check_edits(&mut buf, &edits);
        }

        #[test]
        fn embedded_checksum_stays_valid(
            mut buf in proptest::collection::vec(any::<u8>(), 20..40),
            edits in proptest::collection::vec((0usize..40, word()), 1..4),
        ) {
            // Like an IPv4 header: checksum at bytes 10..12, word 0 nonzero.
            buf[0] = 0x45;
            buf[10] = 0;
            buf[11] = 0;
            let c = data(&buf);
            buf[10..12].copy_from_slice(&c.to_be_bytes());
            let mut delta = Delta::ZERO;
            for (off, v) in edits {
                let off = (off % buf.len()) & !1;
                if off + 2 > buf.len() || off == 10 || off == 0 { continue; }
                let new = (v & 0xFFFF) as u16;
                let old = u16::from_be_bytes([buf[off], buf[off + 1]]);
                delta = delta.replace16(old, new);
                buf[off..off + 2].copy_from_slice(&new.to_be_bytes());
            }
            let updated = delta.apply(c);
            buf[10..12].copy_from_slice(&updated.to_be_bytes());
            prop_assert_eq!(fold(sum(&buf)), 0xFFFF);
            buf[10] = 0;
            buf[11] = 0;
            prop_assert_eq!(updated, data(&buf));
        }
    }
}
