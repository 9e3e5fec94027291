//! Start-up warnings about offloads that make the kernel hand AF_PACKET frames the gateway
//! must drop (design §3.7): GRO and LRO merge received segments into super-frames larger than
//! the MTU; a veth peer with TSO/GSO/tx checksumming on forwards such frames as they are.

use std::os::fd::OwnedFd;

use crate::sys;

/// Warnings for `iface` (in the calling thread's network namespace), one sentence each; empty
/// when nothing needs attention. Errors reading the settings become warnings too.
pub fn offload_warnings(iface: &str) -> Vec<String> {
    match sys::ioctl_socket() {
        Ok(fd) => warnings_with(&fd, iface),
        Err(e) => vec![format!("cannot check the offloads of {iface}: socket: {e}")],
    }
}

fn get(fd: &OwnedFd, iface: &str, cmd: u32) -> std::io::Result<u32> {
    let mut value = sys::EthtoolValue { cmd, data: 0 };
    sys::ethtool(fd, iface, &mut value)?;
    Ok(value.data)
}

pub(crate) fn warnings_with(fd: &OwnedFd, iface: &str) -> Vec<String> {
    let mut out = Vec::new();
    match get(fd, iface, sys::ETHTOOL_GGRO) {
        Ok(0) => {}
        Ok(_) => out.push(format!(
            "GRO is on for {iface}: super-frames will be dropped; turn it off with `ethtool -K {iface} gro off`"
        )),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
            out.push(format!("cannot check the offloads of {iface}: no such interface"));
            return out;
        }
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
        Err(e) => out.push(format!("cannot read the GRO setting of {iface}: {e}")),
    }
    if let Ok(flags) = get(fd, iface, sys::ETHTOOL_GFLAGS) {
        if flags & sys::ETH_FLAG_LRO != 0 {
            out.push(format!(
                "LRO is on for {iface}: super-frames will be dropped; turn it off with `ethtool -K {iface} lro off`"
            ));
        }
    }
    let mut info = sys::EthtoolDrvinfo {
        cmd: sys::ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    if sys::ethtool(fd, iface, &mut info).is_ok() {
        let end = info.driver.iter().position(|&b| b == 0).unwrap_or(info.driver.len());
        if &info.driver[..end] == b"veth" {
            let tso = get(fd, iface, sys::ETHTOOL_GTSO).unwrap_or(0);
            let gso = get(fd, iface, sys::ETHTOOL_GGSO).unwrap_or(0);
            out.push(format!(
                "{iface} is a veth: its peer forwards TSO/GSO super-frames and partial checksums as they are \
                 (super-frames will be dropped); turn them off on the peer end with \
                 `ethtool -K <peer> tso off gso off tx off`{}",
                if tso != 0 || gso != 0 {
                    format!(" and on {iface} with `ethtool -K {iface} tso off gso off`")
                } else {
                    String::new()
                }
            ));
        }
    }
    out
}
