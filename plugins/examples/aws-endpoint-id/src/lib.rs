//! Adds AWS PrivateLink's PROXY v2 TLV to every flow and allows it.
//!
//! TLV type `0xEA` (`PP2_TYPE_AWS`), value `[0x01] ++ ASCII endpoint id`: subtype 0x01 is
//! `PP2_SUBTYPE_AWS_VPCE_ID`. The id is `prefix` followed by either the endpoint's name or, like a
//! real VPC endpoint id, its link id as 17 lowercase hex digits.
//!
//! Configuration (all optional): `{"prefix": "vpce-", "id": "name"}`; `id` is `"name"` (default)
//! or `"link-id"` (`vpce-0000000000000002a` for link id 42). Characters of an endpoint name that
//! are not printable ASCII are written as `_`.
#![no_std]

extern crate alloc;
extern crate support;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use support::{Config, Global};

wit_bindgen::generate!({
    inline: "
        package overlink:aws-endpoint-id;
        world aws-endpoint-id {
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

/// `PP2_TYPE_AWS`.
const TYPE_AWS: u8 = 0xEA;
/// `PP2_SUBTYPE_AWS_VPCE_ID`.
const SUBTYPE_VPCE_ID: u8 = 0x01;
/// The longest prefix accepted.
const MAX_PREFIX: usize = 64;

/// Which property of the endpoint names it.
#[derive(Clone, Copy)]
enum IdFrom {
    Name,
    LinkId,
}

struct Settings {
    prefix: String,
    id_from: IdFrom,
}

static SETTINGS: Global<Option<Settings>> = Global::new(None);

struct Plugin;

impl lifecycle::Guest for Plugin {
    fn init(config: String) -> Result<(), String> {
        let config = Config::parse(&config, &["prefix", "id"])?;
        let prefix = config.string("prefix")?.unwrap_or_else(|| "vpce-".into());
        if prefix.len() > MAX_PREFIX || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "configuration: `prefix` must be at most {MAX_PREFIX} printable ASCII characters, not {prefix:?}"
            ));
        }
        let id_from = match config.choice("id", &["name", "link-id"])? {
            Some("link-id") => IdFrom::LinkId,
            _ => IdFrom::Name,
        };
        SETTINGS.with(|settings| *settings = Some(Settings { prefix, id_from }));
        Ok(())
    }
}

impl connect::Guest for Plugin {
    fn check(request: ConnectRequest) -> ConnectVerdict {
        let mut value: Vec<u8> = vec![SUBTYPE_VPCE_ID];
        SETTINGS.with(|settings| {
            // `init` runs before any hook; without it, use the defaults.
            let (prefix, id_from) = match settings {
                Some(settings) => (settings.prefix.as_str(), settings.id_from),
                None => ("vpce-", IdFrom::Name),
            };
            value.extend_from_slice(prefix.as_bytes());
            match id_from {
                IdFrom::Name => {
                    value.extend(
                        request.endpoint.name.chars().map(|c| if c.is_ascii_graphic() { c as u8 } else { b'_' }),
                    )
                }
                IdFrom::LinkId => value.extend_from_slice(format!("{:017x}", request.endpoint.link_id).as_bytes()),
            }
        });
        ConnectVerdict { action: Action::Allow, tlvs: vec![Tlv { kind: TYPE_AWS, value }] }
    }
}

export!(Plugin);
