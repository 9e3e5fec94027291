//! Hostile test plugin: every hook loops forever.
//!
//! The host's epoch deadline must interrupt it: visibility fails closed as `hidden`, approval as
//! `pending`, connect as `reset`. `init` returns at once, so the plugin loads.
#![no_std]

extern crate support;

wit_bindgen::generate!({
    inline: "
        package overlink:testing-spin;
        world spin {
            export overlink:policy/visibility@0.1.0;
            export overlink:policy/approval@0.1.0;
            export overlink:policy/connect@0.1.0;
        }
    ",
    path: "../../wit",
    generate_all,
});

use exports::overlink::policy::{approval, connect, visibility};
use overlink::policy::types::Service;

/// Never returns. `loop {}` is defined behaviour in Rust and stays a wasm `loop`.
fn spin() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

struct Plugin;

impl visibility::Guest for Plugin {
    fn visible(_account: alloc::string::String, _svc: Service) -> visibility::VisibilityVerdict {
        spin()
    }
}

impl approval::Guest for Plugin {
    fn decide(_request: approval::ApprovalRequest) -> approval::ApprovalVerdict {
        spin()
    }
}

impl connect::Guest for Plugin {
    fn check(_request: connect::ConnectRequest) -> connect::ConnectVerdict {
        spin()
    }
}

extern crate alloc;

export!(Plugin);
