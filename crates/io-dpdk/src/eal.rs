//! Starting DPDK's Environment Abstraction Layer, once per process, with one-line errors.

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::Mutex;

use dpdk_sys as sys;

use crate::DpdkError;

/// Whether `rte_eal_init` was already called in this process (it can be called only once, even
/// after a failure).
static STARTED: Mutex<bool> = Mutex::new(false);

/// `rte_errno` of this thread.
pub(crate) fn errno() -> c_int {
    // SAFETY: reads this thread's rte_errno; no preconditions.
    unsafe { sys::overlink_rte_errno() }
}

/// DPDK's text for an error number (its own codes, then the C library's).
pub(crate) fn strerror(code: c_int) -> String {
    // SAFETY: rte_strerror returns a pointer to a NUL-terminated string that stays valid until
    // the next call on this thread; it is copied at once.
    unsafe { CStr::from_ptr(sys::rte_strerror(code.abs())) }.to_string_lossy().into_owned()
}

/// What an `rte_eal_init` failure most likely means, from its `rte_errno`, in words an operator
/// can act on.
pub(crate) fn eal_failure_hint(code: c_int, args: &[String]) -> &'static str {
    let no_huge = args.iter().any(|a| a == "--no-huge");
    match code {
        libc::EACCES if !no_huge => {
            "no usable hugepages: reserve some (e.g. `echo 512 > /proc/sys/vm/nr_hugepages`) or add \
             `--no-huge -m 1024` to gateway.dpdk_args"
        }
        libc::EACCES => "permission denied: DPDK needs root (or the capabilities it asks for)",
        libc::ENODEV => "a --vdev/-a device could not be parsed or its driver is unknown (check the driver name)",
        libc::ENOMEM => "not enough memory for the EAL: raise -m, or reserve more hugepages",
        libc::EINVAL => "invalid EAL arguments (see the EAL usage above)",
        libc::EALREADY => "another DPDK primary process uses this --file-prefix; give each process its own",
        libc::EPROTO | libc::ENOEXEC => "the EAL could not set up its runtime directory or IPC",
        libc::ENOTSUP => "a device could not be probed (is it in use or missing?)",
        libc::EFAULT => "the EAL's memory or bus configuration failed",
        _ => "see the EAL messages above",
    }
}

/// Calls `rte_eal_init` with `overlink` as the program name followed by `args`.
pub(crate) fn start(args: &[String]) -> Result<(), DpdkError> {
    let mut started = STARTED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if *started {
        return Err(DpdkError::AlreadyStarted);
    }
    let mut owned = Vec::with_capacity(args.len() + 1);
    for a in std::iter::once("overlink").chain(args.iter().map(String::as_str)) {
        owned.push(CString::new(a).map_err(|_| DpdkError::BadArgument(a.to_owned()))?);
    }
    // The EAL may keep pointers into argv (and getopt permutes the array): both live for the
    // rest of the process.
    let strings: &'static [CString] = Box::leak(owned.into_boxed_slice());
    let argv: &'static mut [*mut c_char] =
        Box::leak(strings.iter().map(|s| s.as_ptr().cast_mut()).collect::<Vec<_>>().into_boxed_slice());
    let argc = c_int::try_from(argv.len()).map_err(|_| DpdkError::BadArgument("too many arguments".into()))?;

    // rte_eal_init pins the calling thread to the main lcore's CPUs; threads created afterwards
    // (the workers) would inherit that. Put the caller's affinity back once the EAL is up.
    let affinity = current_affinity();
    *started = true;
    // SAFETY: argv has argc valid NUL-terminated strings that outlive the process; the EAL is
    // initialised at most once (guarded by STARTED).
    let rc = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
    if let Some(set) = affinity {
        restore_affinity(&set);
    }
    if rc < 0 {
        let code = errno();
        return Err(DpdkError::Eal {
            reason: strerror(code),
            hint: eal_failure_hint(code, args),
            args: args.join(" "),
        });
    }
    Ok(())
}

fn current_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; all zeroes is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (rc == 0).then_some(set)
}

fn restore_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this thread.
    let _ = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_fix() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(eal_failure_hint(libc::EACCES, &args("-l 0")).contains("--no-huge"));
        assert!(eal_failure_hint(libc::EACCES, &args("-l 0 --no-huge")).contains("root"));
        assert!(eal_failure_hint(libc::ENODEV, &args("--vdev=net_bogus0")).contains("driver"));
        assert!(eal_failure_hint(libc::EALREADY, &[]).contains("--file-prefix"));
    }
}
