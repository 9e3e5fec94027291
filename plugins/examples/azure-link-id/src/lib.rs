//! Adds Azure Private Link's PROXY v2 TLV to every flow and allows it.
//!
//! TLV type `0xEE` (`PP2_TYPE_AZURE`), value `[0x01, LINKID as u32 little-endian]`: subtype 0x01
//! is `PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID`, and the link id is the endpoint's, unique per
//! gateway. No configuration.
#![no_std]

extern crate alloc;
extern crate support;

use alloc::vec;

wit_bindgen::generate!({
    inline: "
        package overlink:azure-link-id;
        world azure-link-id {
            export overlink:policy/connect@0.1.0;
        }
    ",
    path: "../../wit",
    generate_all,
});

use exports::overlink::policy::connect::{Action, ConnectRequest, ConnectVerdict, Guest};
use overlink::policy::types::Tlv;

/// `PP2_TYPE_AZURE`.
const TYPE_AZURE: u8 = 0xEE;
/// `PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID`.
const SUBTYPE_LINKID: u8 = 0x01;

struct Plugin;

impl Guest for Plugin {
    fn check(request: ConnectRequest) -> ConnectVerdict {
        let mut value = vec![SUBTYPE_LINKID];
        value.extend_from_slice(&request.endpoint.link_id.to_le_bytes());
        ConnectVerdict { action: Action::Allow, tlvs: vec![Tlv { kind: TYPE_AZURE, value }] }
    }
}

export!(Plugin);
