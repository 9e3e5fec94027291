//! Kernel ABI constants and thin wrappers over the system calls this backend makes.
//!
//! The constants come from `<linux/if_packet.h>`, `<linux/ethtool.h>` and `<linux/sockios.h>`;
//! they are part of the stable kernel ABI. They are spelled out here rather than taken from
//! `libc`, which lacks most of the `PACKET_*`/`TP_STATUS_*` set.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use libc::{c_int, c_void};

pub const ETH_P_ALL: u16 = 0x0003;
pub const ARPHRD_ETHER: u16 = 1;
/// `AF_PACKET` as the 16-bit `sll_family`.
pub const AF_PACKET_FAMILY: u16 = 17;

pub const SOL_PACKET: c_int = 263;
pub const PACKET_ADD_MEMBERSHIP: c_int = 1;
pub const PACKET_RX_RING: c_int = 5;
pub const PACKET_STATISTICS: c_int = 6;
pub const PACKET_VERSION: c_int = 10;
pub const PACKET_TX_RING: c_int = 13;
pub const PACKET_LOSS: c_int = 14;
pub const PACKET_FANOUT: c_int = 18;
pub const PACKET_QDISC_BYPASS: c_int = 20;
pub const PACKET_IGNORE_OUTGOING: c_int = 23;

pub const PACKET_MR_PROMISC: u16 = 1;
pub const TPACKET_V3: c_int = 2;
pub const PACKET_FANOUT_HASH: u32 = 0;
/// `sll_pkttype` of a frame this host sent.
pub const PACKET_OUTGOING: u8 = 4;

// Rx block and frame status bits.
pub const TP_STATUS_KERNEL: u32 = 0;
pub const TP_STATUS_USER: u32 = 1 << 0;
pub const TP_STATUS_COPY: u32 = 1 << 1;
pub const TP_STATUS_LOSING: u32 = 1 << 2;
pub const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
pub const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
pub const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

// Tx frame status values.
pub const TP_STATUS_AVAILABLE: u32 = 0;
pub const TP_STATUS_SEND_REQUEST: u32 = 1 << 0;
pub const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;

/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where a V3 tx frame's data starts, and where the
/// `sockaddr_ll` follows an rx frame header.
pub const TPACKET3_HDR_ALIGNED: usize = 48;

// Offsets inside `struct tpacket_block_desc` (version, offset_to_priv, then tpacket_hdr_v1).
pub const BLK_STATUS: usize = 8;
pub const BLK_NUM_PKTS: usize = 12;
pub const BLK_OFFSET_TO_FIRST: usize = 16;

// Offsets inside `struct tpacket3_hdr`.
pub const H3_NEXT_OFFSET: usize = 0;
pub const H3_SNAPLEN: usize = 12;
pub const H3_LEN: usize = 16;
pub const H3_STATUS: usize = 20;
pub const H3_MAC: usize = 24;
pub const H3_VLAN_TCI: usize = 32;
pub const H3_VLAN_TPID: usize = 36;
/// `sll_pkttype` inside the `sockaddr_ll` that follows the header.
pub const H3_SLL_PKTTYPE: usize = TPACKET3_HDR_ALIGNED + 10;

// ethtool.
pub const SIOCETHTOOL: libc::c_ulong = 0x8946;
pub const ETHTOOL_GDRVINFO: u32 = 0x03;
pub const ETHTOOL_GTSO: u32 = 0x1e;
pub const ETHTOOL_GGSO: u32 = 0x23;
pub const ETHTOOL_GFLAGS: u32 = 0x25;
pub const ETHTOOL_GGRO: u32 = 0x2b;
pub const ETH_FLAG_LRO: u32 = 1 << 15;

/// `struct tpacket_req3`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TpacketReq3 {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
    pub retire_blk_tov: u32,
    pub sizeof_priv: u32,
    pub feature_req_word: u32,
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TpacketStatsV3 {
    pub packets: u32,
    pub drops: u32,
    pub freeze_q_cnt: u32,
}

/// `struct packet_mreq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketMreq {
    pub ifindex: c_int,
    pub kind: u16,
    pub alen: u16,
    pub address: [u8; 8],
}

/// `struct ethtool_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EthtoolValue {
    pub cmd: u32,
    pub data: u32,
}

/// `struct ethtool_drvinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EthtoolDrvinfo {
    pub cmd: u32,
    pub driver: [u8; 32],
    pub version: [u8; 32],
    pub fw_version: [u8; 32],
    pub bus_info: [u8; 32],
    pub erom_version: [u8; 32],
    pub reserved2: [u8; 12],
    pub n_priv_flags: u32,
    pub n_stats: u32,
    pub testinfo_len: u32,
    pub eedump_len: u32,
    pub regdump_len: u32,
}

fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A new `AF_PACKET`/`SOCK_RAW` socket with protocol 0: it receives nothing until bound.
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the result is checked before use.
    let fd = cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new `AF_INET`/`SOCK_DGRAM` socket, only for interface ioctls.
pub fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the result is checked before use.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, &value, sizeof value)` for a plain-old-data `value`.
pub fn setsockopt<T: Copy>(fd: &OwnedFd, level: c_int, name: c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(mem::size_of::<T>()).map_err(io::Error::other)?;
    // SAFETY: `value` points to `len` readable bytes for the duration of the call; the
    // options this crate sets are all plain C structs or ints (`T: Copy`, `#[repr(C)]`).
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast::<c_void>(), len) })?;
    Ok(())
}

/// `getsockopt` into a plain-old-data `T` (zero-initialised first).
pub fn getsockopt<T: Copy + Default>(fd: &OwnedFd, level: c_int, name: c_int) -> io::Result<T> {
    let mut value = T::default();
    let mut len = libc::socklen_t::try_from(mem::size_of::<T>()).map_err(io::Error::other)?;
    // SAFETY: `value` is `len` writable bytes owned by this frame and `len` is a valid in/out
    // length; the kernel writes at most `len` bytes.
    cvt(unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&mut value as *mut T).cast::<c_void>(), &mut len) })?;
    Ok(value)
}

/// An `ifreq` naming `name` (which the caller validated: shorter than `IFNAMSIZ`, no NUL).
pub fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is a C struct of integers, arrays and a union of those and a pointer;
    // all-zero bytes are a valid value of it (a null `ifru_data`).
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// `ioctl(fd, request, req)` for the `SIOCGIF*` family.
pub fn ifreq_ioctl(fd: &OwnedFd, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `req` is a valid, exclusively borrowed `ifreq`; the SIOCGIF* and SIOCETHTOOL
    // requests read its name and write only inside it (or, for SIOCETHTOOL, through
    // `ifru_data`, which the caller points at a live buffer of the right type).
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request as _, req as *mut libc::ifreq) })?;
    Ok(())
}

/// An ethtool get command into `buf` (whose first `u32` is the command).
pub fn ethtool<T: Copy>(fd: &OwnedFd, name: &str, buf: &mut T) -> io::Result<()> {
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_data = (buf as *mut T).cast::<libc::c_char>();
    ifreq_ioctl(fd, SIOCETHTOOL, &mut req)
}

/// `bind` to `ifindex` with protocol `ETH_P_ALL`.
pub fn bind_all(fd: &OwnedFd, ifindex: c_int) -> io::Result<()> {
    // SAFETY: `sockaddr_ll` is plain integers and arrays; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = AF_PACKET_FAMILY;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex;
    let len = libc::socklen_t::try_from(mem::size_of::<libc::sockaddr_ll>()).map_err(io::Error::other)?;
    // SAFETY: `sll` is a valid `sockaddr_ll` of `len` bytes living across the call.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(), len) })?;
    Ok(())
}

/// Attaches a classic BPF program that accepts the first `snaplen` bytes of every frame
/// (`snaplen == 0` drops everything).
pub fn attach_snaplen_filter(fd: &OwnedFd, snaplen: u32) -> io::Result<()> {
    // BPF_RET | BPF_K: return the constant.
    let mut insn = [libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: snaplen }];
    let prog = libc::sock_fprog { len: 1, filter: insn.as_mut_ptr() };
    // The kernel copies the program during the call, so `insn` only has to outlive it.
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

/// Removes the socket filter.
pub fn detach_filter(fd: &OwnedFd) -> io::Result<()> {
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, &0 as &c_int)
}

/// The zero-length `sendto` that makes the kernel send every `TP_STATUS_SEND_REQUEST` frame.
pub fn kick(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: a null buffer of length 0 and a null address are what the TX_RING kick expects;
    // the kernel reads the frames from the ring this socket owns.
    let ret = unsafe { libc::sendto(fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// A shared mapping of a packet socket's rings; unmapped on drop.
#[derive(Debug)]
pub struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; moving it to another thread
// is no different from moving a `Box<[u8]>`. It is not `Sync`: the rings are used by one worker.
unsafe impl Send for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `fd`'s rings (rx ring first, then tx ring).
    pub fn rings(fd: &OwnedFd, len: usize) -> io::Result<Mmap> {
        // SAFETY: a fresh mapping chosen by the kernel (null hint) cannot alias any Rust
        // object; the result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mmap { ptr, len })
    }

    /// The start of the mapping.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `rings`, and nothing borrows
        // it any more (every slice into it is scoped to one rx/tx call on `&mut self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast::<c_void>(), self.len);
        }
    }
}
