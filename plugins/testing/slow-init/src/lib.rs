//! Hostile test plugin: its `init` never succeeds.
//!
//! By default `init` returns an error, so the host must refuse the plugin (and keep the previous
//! chain). With the configuration `{"spin": true}` it loops forever instead, so the host's
//! deadline on `init` must fire. Were it ever loaded, its connect would `allow` every flow with
//! TLV 0xE1 = `[0x51]`, which a test can look for.
#![no_std]

extern crate alloc;
extern crate support;

use alloc::string::String;
use alloc::vec;
use support::Config;

wit_bindgen::generate!({
    inline: "
        package overlink:testing-slow-init;
        world slow-init {
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

struct Plugin;

impl lifecycle::Guest for Plugin {
    fn init(config: String) -> Result<(), String> {
        let spin = Config::parse(&config, &["spin"])?.get("spin").and_then(|value| value.as_bool()).unwrap_or(false);
        if spin {
            loop {
                core::hint::spin_loop();
            }
        }
        Err("slow-init refuses to start (a test plugin whose init always fails)".into())
    }
}

impl connect::Guest for Plugin {
    fn check(_request: ConnectRequest) -> ConnectVerdict {
        ConnectVerdict { action: Action::Allow, tlvs: vec![Tlv { kind: 0xE1, value: vec![0x51] }] }
    }
}

export!(Plugin);
