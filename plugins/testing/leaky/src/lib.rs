//! Test plugin: connect counts its calls in a `static` and reports the count.
//!
//! It answers `allow` with TLV 0xE1 = the number of connects this instance has seen, including
//! this one, as u32 little-endian. A fresh instance answers 1: a test that sees 1 after a reload
//! or after another plugin's trap proves no state survived; within one instance the count grows.
#![no_std]

extern crate alloc;
extern crate support;

use alloc::vec;
use core::sync::atomic::{AtomicU32, Ordering};

wit_bindgen::generate!({
    inline: "
        package overlink:testing-leaky;
        world leaky {
            export overlink:policy/connect@0.1.0;
        }
    ",
    path: "../../wit",
    generate_all,
});

use exports::overlink::policy::connect::{Action, ConnectRequest, ConnectVerdict, Guest};
use overlink::policy::types::Tlv;

static CONNECTS: AtomicU32 = AtomicU32::new(0);

struct Plugin;

impl Guest for Plugin {
    fn check(_request: ConnectRequest) -> ConnectVerdict {
        let count = CONNECTS.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        ConnectVerdict { action: Action::Allow, tlvs: vec![Tlv { kind: 0xE1, value: count.to_le_bytes().to_vec() }] }
    }
}

export!(Plugin);
