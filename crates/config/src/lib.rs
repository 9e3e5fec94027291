//! The overlink configuration file: a TOML schema read with serde, then validated into a typed
//! model ([`Config`]) that the control plane turns into runtime state.
//!
//! Every key is known (`deny_unknown_fields` everywhere) and every value is checked: names are
//! unique, every network, service and account a key names exists, addresses sit inside their
//! network's prefix and collide with nothing the gateway answers for, timeouts respect the NAT
//! RFC minimums. Two networks may use identical prefixes: that is what overlink is for, and
//! nothing here keys an address without its network.
//!
//! A problem is a [`ConfigError`] naming the key path (`services[1].nat_ips[0]`, arrays indexed
//! from 0 in file order), the value as written and what is allowed, printed on one line:
//!
//! ```text
//! services[1].nat_ips[0] = "198.19.0.5": outside network `provider` (198.18.0.0/24); a NAT IP must be inside its service's network
//! ```
//!
//! The sample files in `deploy/` document every key.
#![forbid(unsafe_code)]

mod duration;
mod error;
mod model;
mod raw;
mod validate;

use std::path::Path;

pub use error::ConfigError;
pub use flow::Timeouts;
pub use model::{
    Admin, Config, EchoMode, EndpointConfig, Gateway, IoBackend, NetworkConfig, ProxyPlacement, ProxySettings,
    ServiceConfig,
};
pub use validate::{
    DEFAULT_ADMIN_SOCKET, DEFAULT_FLOW_CAPACITY, DEFAULT_NAT_PORTS, DEFAULT_STATE_DIR, DEFAULT_WORKERS, MAX_CORES,
    MAX_FLOW_CAPACITY, MAX_LIST, MAX_TIMEOUT, MAX_WORKERS, MIN_FLOW_CAPACITY,
};

/// Reads, parses and validates the configuration file at `path`.
///
/// An unreadable file is an error whose `value` is the path and whose `problem` carries the OS
/// error; everything else is as for [`parse`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new("", path.display().to_string(), format!("cannot read the configuration file: {e}"))
    })?;
    parse(&text)
}

/// Parses and validates a configuration from its TOML text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| error::from_toml(text, &e))?;
    validate::validate(raw)
}
