//! Hostile test plugin: every hook traps (`unreachable`).
//!
//! The host must count the trap and fail closed: visibility `hidden`, approval `pending`,
//! connect `reset`. `init` is not exported, so the plugin loads.
#![no_std]

extern crate alloc;
extern crate support;

wit_bindgen::generate!({
    inline: "
        package overlink:testing-trap;
        world trap {
            export overlink:policy/visibility@0.1.0;
            export overlink:policy/approval@0.1.0;
            export overlink:policy/connect@0.1.0;
        }
    ",
    path: "../../wit",
    generate_all,
});

use alloc::string::String;
use exports::overlink::policy::{approval, connect, visibility};
use overlink::policy::types::Service;

struct Plugin;

impl visibility::Guest for Plugin {
    fn visible(_account: String, _svc: Service) -> visibility::VisibilityVerdict {
        core::arch::wasm32::unreachable()
    }
}

impl approval::Guest for Plugin {
    fn decide(_request: approval::ApprovalRequest) -> approval::ApprovalVerdict {
        core::arch::wasm32::unreachable()
    }
}

impl connect::Guest for Plugin {
    fn check(_request: connect::ConnectRequest) -> connect::ConnectVerdict {
        core::arch::wasm32::unreachable()
    }
}

export!(Plugin);
