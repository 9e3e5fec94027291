//! The in-memory backend: queues of pooled buffers that tests and benchmarks fill and drain.
//!
//! Buffers come from a [`MemPool`] allocated once; a [`MemBuf`] returns to its pool when dropped,
//! so a steady state of rx → process → tx → drain allocates nothing, like a DPDK mempool.

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::{Burst, PacketBuf, PacketIo, PcapWriter, PortId, PortStats};

/// Bytes of headroom in front of every frame (room for a VLAN tag or a PROXY v2 header).
pub const HEADROOM: usize = 128;
/// Total bytes of one buffer: headroom plus a 2 KiB frame area plus slack.
pub const BUF_SIZE: usize = 2304;

/// A fixed pool of packet buffers shared by the queues that use it.
#[derive(Clone, Debug)]
pub struct MemPool {
    free: Arc<ArrayQueue<Box<[u8]>>>,
}

impl MemPool {
    /// A pool of `buffers` buffers, all allocated now.
    pub fn new(buffers: usize) -> Self {
        let free = ArrayQueue::new(buffers.max(1));
        for _ in 0..buffers {
            // The queue was sized for exactly this many.
            let _ = free.push(vec![0u8; BUF_SIZE].into_boxed_slice());
        }
        MemPool { free: Arc::new(free) }
    }

    /// An empty buffer, or `None` when every buffer is in use.
    pub fn get(&self) -> Option<MemBuf> {
        let data = self.free.pop()?;
        Some(MemBuf { data: Some(data), head: HEADROOM, len: 0, pool: self.free.clone() })
    }

    /// A buffer holding a copy of `frame`, or `None` when the pool is empty or the frame too big.
    pub fn copy_from(&self, frame: &[u8]) -> Option<MemBuf> {
        let mut buf = self.get()?;
        if !buf.set_len(frame.len()) {
            return None;
        }
        buf.data_mut().copy_from_slice(frame);
        Some(buf)
    }

    /// Buffers currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }
}

/// A pooled packet buffer; returns to its pool on drop.
#[derive(Debug)]
pub struct MemBuf {
    data: Option<Box<[u8]>>,
    head: usize,
    len: usize,
    pool: Arc<ArrayQueue<Box<[u8]>>>,
}

impl MemBuf {
    fn storage(&self) -> &[u8] {
        self.data.as_deref().unwrap_or(&[])
    }
}

impl Drop for MemBuf {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            // The pool has room for every buffer it ever handed out.
            let _ = self.pool.push(data);
        }
    }
}

impl PacketBuf for MemBuf {
    fn data(&self) -> &[u8] {
        &self.storage()[self.head..self.head + self.len]
    }

    fn data_mut(&mut self) -> &mut [u8] {
        let (head, len) = (self.head, self.len);
        match self.data.as_deref_mut() {
            Some(data) => &mut data[head..head + len],
            None => &mut [],
        }
    }

    fn headroom(&self) -> usize {
        self.head
    }

    fn tailroom(&self) -> usize {
        self.storage().len() - self.head - self.len
    }

    fn prepend(&mut self, n: usize) -> bool {
        if n > self.head {
            return false;
        }
        self.head -= n;
        self.len += n;
        true
    }

    fn adj(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.head += n;
        self.len -= n;
        true
    }

    fn set_len(&mut self, len: usize) -> bool {
        if self.head + len > self.storage().len() {
            return false;
        }
        self.len = len;
        true
    }
}

#[derive(Debug)]
struct MemPort {
    rx: VecDeque<MemBuf>,
    tx: VecDeque<MemBuf>,
    stats: PortStats,
}

/// An in-memory backend: per port, an rx queue that tests fill and a tx queue they drain.
#[derive(Debug)]
pub struct MemIo {
    pool: MemPool,
    ports: Vec<MemPort>,
    queue_limit: usize,
    capture: Option<PcapWriter<std::fs::File>>,
}

impl MemIo {
    /// A backend with `ports` ports drawing from `pool`; each queue holds at most `queue_limit`.
    pub fn new(pool: MemPool, ports: usize, queue_limit: usize) -> Self {
        let ports = (0..ports)
            .map(|_| MemPort {
                rx: VecDeque::with_capacity(queue_limit),
                tx: VecDeque::with_capacity(queue_limit),
                stats: PortStats::default(),
            })
            .collect();
        MemIo { pool, ports, queue_limit, capture: None }
    }

    /// Writes every transmitted frame to `writer` as well.
    pub fn capture_to(&mut self, writer: PcapWriter<std::fs::File>) {
        self.capture = Some(writer);
    }

    /// The pool this backend draws from.
    pub fn pool(&self) -> &MemPool {
        &self.pool
    }

    /// Queues a copy of `frame` for reception on `port`; false when the queue or pool is full.
    pub fn inject(&mut self, port: PortId, frame: &[u8]) -> bool {
        match self.pool.copy_from(frame) {
            Some(buf) => self.inject_buf(port, buf),
            None => false,
        }
    }

    /// Queues `buf` for reception on `port`; false (and `buf` dropped) when the queue is full.
    pub fn inject_buf(&mut self, port: PortId, buf: MemBuf) -> bool {
        let limit = self.queue_limit;
        match self.ports.get_mut(port.index()) {
            Some(p) if p.rx.len() < limit => {
                p.rx.push_back(buf);
                true
            }
            _ => false,
        }
    }

    /// Frames waiting in `port`'s rx queue.
    pub fn rx_pending(&self, port: PortId) -> usize {
        self.ports.get(port.index()).map_or(0, |p| p.rx.len())
    }

    /// Frames waiting in `port`'s tx queue.
    pub fn tx_pending(&self, port: PortId) -> usize {
        self.ports.get(port.index()).map_or(0, |p| p.tx.len())
    }

    /// Removes and returns copies of the frames sent on `port` (allocates: for tests).
    pub fn take_tx(&mut self, port: PortId) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.drain_tx(port, |buf| out.push(buf.data().to_vec()));
        out
    }

    /// Hands each frame sent on `port` to `f`, then returns it to the pool (no allocation).
    pub fn drain_tx(&mut self, port: PortId, mut f: impl FnMut(&MemBuf)) {
        if let Some(p) = self.ports.get_mut(port.index()) {
            while let Some(buf) = p.tx.pop_front() {
                f(&buf);
            }
        }
    }
}

impl PacketIo for MemIo {
    type Buf = MemBuf;

    fn ports(&self) -> usize {
        self.ports.len()
    }

    fn rx_burst(&mut self, port: PortId, burst: &mut Burst<MemBuf>) {
        let Some(p) = self.ports.get_mut(port.index()) else { return };
        while !burst.is_full() {
            let Some(buf) = p.rx.pop_front() else { break };
            p.stats.rx_packets += 1;
            p.stats.rx_bytes += buf.len() as u64;
            burst.push(buf);
        }
    }

    fn tx_burst(&mut self, port: PortId, burst: &mut Burst<MemBuf>) {
        let limit = self.queue_limit;
        let Some(p) = self.ports.get_mut(port.index()) else {
            burst.clear();
            return;
        };
        for buf in burst.drain(..) {
            if p.tx.len() >= limit {
                p.stats.tx_dropped += 1;
                continue;
            }
            if let Some(capture) = self.capture.as_mut() {
                // A capture failure must not stop the datapath; the file is for debugging only.
                let _ = capture.write_frame(buf.data());
            }
            p.stats.tx_packets += 1;
            p.stats.tx_bytes += buf.len() as u64;
            p.tx.push_back(buf);
        }
    }

    fn alloc(&mut self) -> Option<MemBuf> {
        self.pool.get()
    }

    fn stats(&self, port: PortId) -> PortStats {
        self.ports.get(port.index()).map_or_else(PortStats::default, |p| p.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_return_to_the_pool() {
        let pool = MemPool::new(4);
        let mut io = MemIo::new(pool.clone(), 2, 8);
        assert!(io.inject(PortId(0), &[1, 2, 3]));
        assert_eq!(pool.available(), 3);
        let mut burst = Burst::new();
        io.rx_burst(PortId(0), &mut burst);
        assert_eq!(burst.len(), 1);
        assert_eq!(burst[0].data(), &[1, 2, 3]);
        io.tx_burst(PortId(1), &mut burst);
        assert!(burst.is_empty());
        assert_eq!(io.take_tx(PortId(1)), vec![vec![1, 2, 3]]);
        assert_eq!(pool.available(), 4);
        assert_eq!(io.stats(PortId(0)).rx_packets, 1);
        assert_eq!(io.stats(PortId(1)).tx_packets, 1);
    }

    #[test]
    fn headroom_prepend_and_adj() {
        let pool = MemPool::new(1);
        let mut buf = pool.copy_from(&[9; 10]).unwrap();
        assert_eq!(buf.headroom(), HEADROOM);
        assert!(buf.prepend(4));
        assert_eq!(buf.len(), 14);
        assert!(buf.adj(6));
        assert_eq!(buf.data(), &[9; 8]);
        assert!(!buf.prepend(HEADROOM + 10));
        assert!(!buf.set_len(BUF_SIZE));
        assert!(buf.set_len(100));
    }

    #[test]
    fn full_queue_and_empty_pool_refuse() {
        let pool = MemPool::new(2);
        let mut io = MemIo::new(pool.clone(), 1, 1);
        assert!(io.inject(PortId(0), &[1]));
        assert!(!io.inject(PortId(0), &[2]));
        assert!(!io.inject(PortId(5), &[2]));
        let _held = pool.get();
        assert!(pool.get().is_none());
    }
}
