//! Hostile test plugin: connect reads past the end of its linear memory, which traps.
//!
//! The host must count the trap and fail closed (`reset`).
#![no_std]

extern crate alloc;
extern crate support;

wit_bindgen::generate!({
    inline: "
        package overlink:testing-oob;
        world oob {
            export overlink:policy/connect@0.1.0;
        }
    ",
    path: "../../wit",
    generate_all,
});

use exports::overlink::policy::connect::{Action, ConnectRequest, ConnectVerdict, Guest};

/// An address just below 4 GiB: outside any memory the host would grant.
const OUT_OF_BOUNDS: usize = 0xFFFF_FFF0;

struct Plugin;

impl Guest for Plugin {
    fn check(_request: ConnectRequest) -> ConnectVerdict {
        // SAFETY: not safe, on purpose: the address is outside linear memory and the load traps.
        // A volatile read so the compiler keeps it.
        let byte = unsafe { core::ptr::read_volatile(OUT_OF_BOUNDS as *const u8) };
        // Only reached if the read did not trap.
        let action = if byte == 0 { Action::Allow } else { Action::Deny };
        ConnectVerdict { action, tlvs: alloc::vec::Vec::new() }
    }
}

export!(Plugin);
