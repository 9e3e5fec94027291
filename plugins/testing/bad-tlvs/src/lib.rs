//! Hostile test plugin: connect answers `allow` with TLVs the host must refuse.
//!
//! Configuration `{"case": "..."}` picks what it returns (default `"both"`):
//!
//! - `"reserved"`: one TLV of type 0x04 (`PP2_TYPE_NOOP`, reserved for the gateway);
//! - `"crc"`: one TLV of type 0x03 (`PP2_TYPE_CRC32C`, reserved for the gateway);
//! - `"huge"`: one TLV of type 0xE1 with a 70 KiB value (71 680 bytes: more than a TLV's 16-bit
//!   length field can hold);
//! - `"both"`: the 0x04 TLV, then the huge one.
//!
//! The answer is invalid, so the host must treat it as a failure: `reset`.
#![no_std]

extern crate alloc;
extern crate support;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use support::{Config, Global};

wit_bindgen::generate!({
    inline: "
        package overlink:testing-bad-tlvs;
        world bad-tlvs {
            export overlink:policy/lifecycle@0.1.0;
            export overlink:policy/connect@0.1.0;
        }
    ",
    path: "../../wit",
    generate_all,
});

use exports::overlink::policy::connect::{self, Action, ConnectRequest, ConnectVerdict};
use exports::overlink::policy::lifecycle;
use overlink::policy::types::Tlv;

/// The size of the huge value: 70 KiB.
const HUGE: usize = 70 * 1024;

static CASE: Global<&'static str> = Global::new("both");

fn reserved() -> Tlv {
    Tlv { kind: 0x04, value: vec![0] }
}

fn crc() -> Tlv {
    Tlv { kind: 0x03, value: vec![0; 4] }
}

fn huge() -> Tlv {
    Tlv { kind: 0xE1, value: vec![0xAB; HUGE] }
}

struct Plugin;

impl lifecycle::Guest for Plugin {
    fn init(config: String) -> Result<(), String> {
        let config = Config::parse(&config, &["case"])?;
        let case = config.choice("case", &["reserved", "crc", "huge", "both"])?.unwrap_or("both");
        CASE.with(|current| *current = case);
        Ok(())
    }
}

impl connect::Guest for Plugin {
    fn check(_request: ConnectRequest) -> ConnectVerdict {
        let tlvs: Vec<Tlv> = match CASE.with(|case| *case) {
            "reserved" => vec![reserved()],
            "crc" => vec![crc()],
            "huge" => vec![huge()],
            _ => vec![reserved(), huge()],
        };
        ConnectVerdict { action: Action::Allow, tlvs }
    }
}

export!(Plugin);
