//! [`Mbuf`]: an owned, single-segment DPDK packet buffer that goes back to its mempool on drop.

use std::ptr::NonNull;

use dpdk_sys as sys;
use io::PacketBuf;

/// An owned `rte_mbuf` holding one frame in one segment.
///
/// The backend hands out only single-segment mbufs (multi-segment frames are dropped on
/// receive), so the frame is the contiguous `data_len` bytes at `buf_addr + data_off`, with
/// `data_off` bytes of headroom in front (`RTE_PKTMBUF_HEADROOM`, 128 in Debian's build: room
/// for a VLAN tag or a PROXY v2 header) and the rest of the data room behind.
#[derive(Debug)]
pub struct Mbuf {
    raw: NonNull<sys::rte_mbuf>,
}

// SAFETY: an `Mbuf` is the only owner of its rte_mbuf (the backend never keeps a copy of the
// pointer once it has wrapped it), and mempools are multi-producer/multi-consumer, so the mbuf
// may be used and freed from any thread.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of `raw`.
    ///
    /// # Safety
    /// `raw` is a valid mbuf (from a driver or a mempool) that nothing else will use or free.
    /// The frame accessors read only its first segment, which always lies in its own buffer;
    /// the backend drops multi-segment mbufs before anyone sees them.
    pub(crate) unsafe fn from_raw(raw: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf { raw }
    }

    /// Gives up ownership (for `rte_eth_tx_burst`, which takes it).
    pub(crate) fn into_raw(self) -> *mut sys::rte_mbuf {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }

    fn mbuf(&self) -> &sys::rte_mbuf {
        // SAFETY: `raw` is valid while we own it, and nothing else accesses it meanwhile.
        unsafe { self.raw.as_ref() }
    }

    /// Number of segments (the backend delivers only mbufs with one).
    pub fn segments(&self) -> u16 {
        self.mbuf().nb_segs
    }

    /// Frame length as DPDK keeps it.
    pub(crate) fn data_len(&self) -> u16 {
        self.mbuf().data_len
    }

    /// The DPDK port the mbuf was received on (as the driver set it).
    pub fn input_port(&self) -> u16 {
        self.mbuf().port
    }

    fn frame_ptr(&self) -> *mut u8 {
        let m = self.mbuf();
        // SAFETY: `data_off <= buf_len`, so the result stays inside the mbuf's data buffer.
        unsafe { m.buf_addr.cast::<u8>().add(usize::from(m.data_off)) }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (see `from_raw`) and never use the pointer again.
        unsafe { sys::rte_pktmbuf_free(self.raw.as_ptr()) }
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let len = usize::from(self.mbuf().data_len);
        // SAFETY: a single-segment mbuf's frame is `data_len` initialised bytes at
        // `buf_addr + data_off`, inside its buffer; `&self` keeps it alive and unchanged.
        unsafe { std::slice::from_raw_parts(self.frame_ptr(), len) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.mbuf().data_len);
        // SAFETY: as in `data`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.frame_ptr(), len) }
    }

    #[inline]
    fn len(&self) -> usize {
        usize::from(self.mbuf().data_len)
    }

    fn headroom(&self) -> usize {
        usize::from(self.mbuf().data_off)
    }

    fn tailroom(&self) -> usize {
        let m = self.mbuf();
        usize::from(m.buf_len).saturating_sub(usize::from(m.data_off) + usize::from(m.data_len))
    }

    fn prepend(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else { return false };
        // SAFETY: `raw` is a valid single-segment mbuf we own; rte_pktmbuf_prepend checks the
        // headroom and leaves the mbuf unchanged (returning NULL) when it is too small.
        !unsafe { sys::rte_pktmbuf_prepend(self.raw.as_ptr(), n) }.is_null()
    }

    fn adj(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else { return false };
        // SAFETY: as above; rte_pktmbuf_adj refuses (NULL, unchanged) when `n > data_len`.
        !unsafe { sys::rte_pktmbuf_adj(self.raw.as_ptr(), n) }.is_null()
    }

    fn set_len(&mut self, len: usize) -> bool {
        let current = self.len();
        if len >= current {
            let Ok(grow) = u16::try_from(len - current) else { return false };
            if grow == 0 {
                return true;
            }
            // SAFETY: as above; rte_pktmbuf_append checks the tailroom and leaves the mbuf
            // unchanged (NULL) when it is too small. The new bytes are the buffer's previous
            // contents: initialised memory of the mempool, never uninitialised.
            !unsafe { sys::rte_pktmbuf_append(self.raw.as_ptr(), grow) }.is_null()
        } else {
            let Ok(shrink) = u16::try_from(current - len) else { return false };
            // SAFETY: as above; `shrink <= data_len`, which is what rte_pktmbuf_trim checks.
            unsafe { sys::rte_pktmbuf_trim(self.raw.as_ptr(), shrink) == 0 }
        }
    }
}
