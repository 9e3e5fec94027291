//! Resets flows whose destination port is not on its list.
//!
//! Configuration: `{"ports": [80, 443], "icmp": true}`. `ports` (required) applies to TCP and
//! UDP; ICMP echo has no port, so `icmp` (default `true`) says whether pings are allowed. An
//! allowed flow gets `allow` with no TLVs; any other gets `reset` (TCP RST, ICMP administratively
//! prohibited).
#![no_std]

extern crate alloc;
extern crate support;

use alloc::string::String;
use alloc::vec::Vec;
use support::{Config, Global};

wit_bindgen::generate!({
    inline: "
        package overlink:port-guard;
        world port-guard {
            export overlink:policy/lifecycle@0.1.0;
            export overlink:policy/connect@0.1.0;
        }
    ",
    path: "../../wit",
    generate_all,
});

use exports::overlink::policy::connect::{self, Action, ConnectRequest, ConnectVerdict};
use exports::overlink::policy::lifecycle;
use overlink::policy::types::Protocol;

/// What `init` read. Until then nothing is allowed.
struct Settings {
    /// The allowed destination ports, sorted.
    ports: Vec<u16>,
    icmp: bool,
}

static SETTINGS: Global<Settings> = Global::new(Settings { ports: Vec::new(), icmp: false });

struct Plugin;

impl lifecycle::Guest for Plugin {
    fn init(config: String) -> Result<(), String> {
        let config = Config::parse(&config, &["ports", "icmp"])?;
        let ports = config
            .integers("ports", u16::MAX.into())?
            .ok_or("configuration: `ports` (a list of port numbers) is required")?;
        let mut ports: Vec<u16> = ports.into_iter().filter_map(|port| u16::try_from(port).ok()).collect();
        ports.sort_unstable();
        ports.dedup();
        let icmp = match config.get("icmp") {
            None => true,
            Some(value) => value.as_bool().ok_or("configuration: `icmp` must be true or false")?,
        };
        SETTINGS.with(|settings| *settings = Settings { ports, icmp });
        Ok(())
    }
}

impl connect::Guest for Plugin {
    fn check(request: ConnectRequest) -> ConnectVerdict {
        let allowed = SETTINGS.with(|settings| match request.protocol {
            Protocol::Icmp => settings.icmp,
            Protocol::Tcp | Protocol::Udp => settings.ports.binary_search(&request.destination.port).is_ok(),
        });
        ConnectVerdict { action: if allowed { Action::Allow } else { Action::Reset }, tlvs: Vec::new() }
    }
}

export!(Plugin);
