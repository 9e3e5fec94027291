//! Hostile test plugin: connect grows its linear memory by 64 MiB.
//!
//! It calls `memory.grow` one MiB at a time. If any growth fails (the host's memory cap held), it
//! traps, so the host fails the flow closed (`reset`). If all 64 MiB arrive, it writes to every
//! page and returns `allow` with TLV 0xE1 = the bytes it got as u32 little-endian: a host whose
//! cap is below 64 MiB never sees that answer.
#![no_std]

extern crate alloc;
extern crate support;

use alloc::vec;
use core::arch::wasm32;

wit_bindgen::generate!({
    inline: "
        package overlink:testing-grow;
        world grow {
            export overlink:policy/connect@0.1.0;
        }
    ",
    path: "../../wit",
    generate_all,
});

use exports::overlink::policy::connect::{Action, ConnectRequest, ConnectVerdict, Guest};
use overlink::policy::types::Tlv;

/// A wasm page.
const PAGE: usize = 64 * 1024;
/// What it asks for in total.
const TOTAL: usize = 64 * 1024 * 1024;
/// What it asks for at a time.
const STEP_PAGES: usize = 16;

struct Plugin;

impl Guest for Plugin {
    fn check(_request: ConnectRequest) -> ConnectVerdict {
        let mut grown = 0;
        while grown < TOTAL {
            let previous_pages = wasm32::memory_grow(0, STEP_PAGES);
            if previous_pages == usize::MAX {
                // The cap held.
                wasm32::unreachable()
            }
            // Touch every new page, so the memory is really committed.
            for page in 0..STEP_PAGES {
                let address = (previous_pages + page) * PAGE;
                // SAFETY: `memory.grow` just added this page to linear memory; nothing else in
                // the program owns it (the allocator only knows the pages it grew itself).
                unsafe { core::ptr::write_volatile(address as *mut u8, 1) };
            }
            grown += STEP_PAGES * PAGE;
        }
        let value = u32::try_from(grown).unwrap_or(u32::MAX).to_le_bytes().to_vec();
        ConnectVerdict { action: Action::Allow, tlvs: vec![Tlv { kind: 0xE1, value }] }
    }
}

export!(Plugin);
