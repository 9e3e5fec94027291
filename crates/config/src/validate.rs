//! From the file as read ([`raw`](crate::raw)) to the typed model ([`model`](crate::model)):
//! every value is range-checked, every reference resolved, every address placed. The first
//! problem in file order is reported, naming its key path, its value and what is allowed.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use flow::Timeouts;

use crate::duration;
use crate::error::ConfigError;
use crate::model::{
    Admin, Config, EchoMode, EndpointConfig, Gateway, IoBackend, NetworkConfig, ProxyPlacement, ProxySettings,
    ServiceConfig,
};
use crate::raw::{RawAdmin, RawConfig, RawEndpoint, RawGateway, RawNetwork, RawService, RawTimeouts};

type Result<T> = std::result::Result<T, ConfigError>;

/// Most workers a gateway runs.
pub const MAX_WORKERS: usize = 64;
/// Cores are numbered below this.
pub const MAX_CORES: usize = 1024;
/// Fewest flows per worker.
pub const MIN_FLOW_CAPACITY: usize = 1024;
/// Most flows per worker (what the flow table can index).
pub const MAX_FLOW_CAPACITY: usize = flow::table::MAX_FLOWS;
/// Most backends, NAT IPs and endpoint ports in one list.
pub const MAX_LIST: usize = 64;
/// Longest timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(168 * 3600);
/// Longest unix socket path (`sun_path` holds 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Default number of workers.
pub const DEFAULT_WORKERS: usize = 1;
/// Default directory of the runtime store.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/overlink";
/// Default flow table capacity per worker.
pub const DEFAULT_FLOW_CAPACITY: usize = 1 << 20;
/// Default NAT port range.
pub const DEFAULT_NAT_PORTS: RangeInclusive<u16> = 1024..=65535;
/// Default admin API unix socket.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/overlink/admin.sock";

const NAME_RULE: &str = "a name is 1 to 32 characters of a-z, 0-9 and '-', not starting or ending with '-'";
const ACCOUNT_RULE: &str =
    "an account is 1 to 64 characters of a-z, 0-9, '-', '_' and '.', starting with a letter or digit";

/// A string value as written in TOML.
fn q(text: &str) -> String {
    format!("{text:?}")
}

/// A list of strings as written in TOML.
fn q_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "))
}

/// A list of integers as written in TOML.
fn int_list(items: &[i64]) -> String {
    format!("[{}]", items.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))
}

fn err(path: impl Into<String>, value: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(path, value, problem)
}

/// "unknown account; known accounts: `a`, `b`".
fn unknown<'a>(kind: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: Vec<String> = known.map(|k| format!("`{k}`")).collect();
    if known.is_empty() {
        format!("unknown {kind}; no {kind}s are defined")
    } else {
        format!("unknown {kind}; known {kind}s: {}", known.join(", "))
    }
}

fn check_name(path: &str, name: &str) -> Result<()> {
    let ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(err(path, q(name), NAME_RULE))
    }
}

fn check_account_name(path: &str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(err(path, q(name), ACCOUNT_RULE))
    }
}

/// Checks that names are valid and unique: `kind` is "network", "service" or "endpoint".
fn check_names<'a>(section: &str, names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        let path = format!("{section}[{i}].name");
        check_name(&path, name)?;
        if let Some(first) = seen.insert(name, i) {
            return Err(err(path, q(name), format!("duplicate name; {section}[{first}] already has it")));
        }
    }
    Ok(())
}

fn int_in(path: &str, value: i64, range: RangeInclusive<i64>, what: &str) -> Result<i64> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(err(path, value.to_string(), format!("out of range; {what} is {} to {}", range.start(), range.end())))
    }
}

/// A limit as the `i64` the file's integers are read as.
fn wide(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `i64` known to be in a small non-negative range, as `usize`.
fn to_usize(value: i64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// `i64` known to be in 0..=65535, as `u16`.
fn to_u16(value: i64) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}

fn parse_ipv4(path: &str, text: &str, example: &str) -> Result<Ipv4Addr> {
    let ip: Ipv4Addr =
        text.parse().map_err(|_| err(path, q(text), format!("expected an IPv4 address such as \"{example}\"")))?;
    if let Some(problem) = not_unicast(ip) {
        return Err(err(path, q(text), problem));
    }
    Ok(ip)
}

/// Why `ip` cannot be a host's address, if it cannot.
fn not_unicast(ip: Ipv4Addr) -> Option<&'static str> {
    let first = ip.octets()[0];
    if ip.is_loopback() {
        Some("a loopback address cannot be used here")
    } else if ip.is_multicast() {
        Some("a multicast address cannot be used here")
    } else if first == 0 || first >= 240 {
        Some("a reserved address (0.0.0.0/8, 240.0.0.0/4) cannot be used here")
    } else {
        None
    }
}

fn non_empty_path(path: &str, text: &str) -> Result<PathBuf> {
    if text.is_empty() {
        Err(err(path, q(text), "must not be empty"))
    } else if text.contains('\0') {
        Err(err(path, q(text), "a path cannot contain a NUL character"))
    } else {
        Ok(PathBuf::from(text))
    }
}

/// Validates and types a whole configuration.
pub(crate) fn validate(raw: RawConfig) -> Result<Config> {
    let accounts = accounts(&raw.accounts)?;
    let gateway = gateway(&raw.gateway)?;
    let networks = networks(&raw.networks, gateway.io)?;
    let services = services(&raw.services, &accounts, &networks, &gateway.timeouts)?;
    let plugins = plugins(&raw.plugins)?;
    let config = Config { accounts, gateway, networks, services, endpoints: Vec::new(), plugins };
    let endpoints = endpoints(&raw.endpoints, &config)?;
    Ok(Config { endpoints, ..config })
}

/// `[plugins."file.wasm"]` tables: plain `.wasm` file names, each a table, rendered as JSON.
fn plugins(
    raw: &std::collections::BTreeMap<String, toml::Value>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for (name, value) in raw {
        let path = format!("plugins.\"{name}\"");
        let plain = !name.is_empty() && !name.contains('/') && !name.starts_with('.') && name.len() <= 255;
        if !plain || !name.ends_with(".wasm") {
            return Err(err(
                path,
                q(name),
                "a plugin is named by its file name in the plugins directory, ending in `.wasm` (no directories)",
            ));
        }
        if !value.is_table() {
            return Err(err(
                path,
                value.to_string(),
                "a plugin's configuration is a table, e.g. `[plugins.\"x.wasm\"]`",
            ));
        }
        let json = serde_json::to_string(value).map_err(|e| {
            err(format!("plugins.\"{name}\""), "", format!("cannot be given to the plugin as JSON: {e}"))
        })?;
        out.insert(name.clone(), json);
    }
    Ok(out)
}

fn accounts(raw: &[String]) -> Result<Vec<String>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, account) in raw.iter().enumerate() {
        let path = format!("accounts[{i}]");
        check_account_name(&path, account)?;
        if let Some(first) = seen.insert(account, i) {
            return Err(err(path, q(account), format!("duplicate account; accounts[{first}] already lists it")));
        }
    }
    Ok(raw.to_vec())
}

fn gateway(raw: &RawGateway) -> Result<Gateway> {
    let io = match raw.io.as_deref() {
        None | Some("afpacket") => IoBackend::AfPacket,
        Some("dpdk") => IoBackend::Dpdk,
        Some("memory") => IoBackend::Memory,
        Some(other) => {
            return Err(err(
                "gateway.io",
                q(other),
                "unknown I/O backend; expected \"afpacket\", \"dpdk\" or \"memory\"",
            ))
        }
    };
    let workers = match raw.workers {
        None => DEFAULT_WORKERS,
        Some(w) => to_usize(int_in("gateway.workers", w, 1..=wide(MAX_WORKERS), "the number of workers")?),
    };
    let cores = match &raw.cores {
        None => None,
        Some(list) => {
            if list.len() != workers {
                return Err(err(
                    "gateway.cores",
                    int_list(list),
                    format!(
                        "{} cores for {workers} workers; list exactly one core per worker, or leave cores out",
                        list.len()
                    ),
                ));
            }
            let mut cores = Vec::with_capacity(list.len());
            for (i, &core) in list.iter().enumerate() {
                let path = format!("gateway.cores[{i}]");
                let core = to_usize(int_in(&path, core, 0..=wide(MAX_CORES - 1), "a core number")?);
                if let Some(first) = cores.iter().position(|&c| c == core) {
                    return Err(err(
                        path,
                        core.to_string(),
                        format!("core {core} is already worker {first}'s; each worker needs its own core"),
                    ));
                }
                cores.push(core);
            }
            Some(cores)
        }
    };
    let state_dir = non_empty_path("gateway.state_dir", raw.state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR))?;
    let plugins_dir = raw.plugins_dir.as_deref().map(|p| non_empty_path("gateway.plugins_dir", p)).transpose()?;
    let flow_capacity = match raw.flow_capacity {
        None => DEFAULT_FLOW_CAPACITY,
        Some(c) => to_usize(int_in(
            "gateway.flow_capacity",
            c,
            wide(MIN_FLOW_CAPACITY)..=wide(MAX_FLOW_CAPACITY),
            "the number of flows per worker",
        )?),
    };
    let nat_ports = match raw.nat_ports.as_deref() {
        None => DEFAULT_NAT_PORTS,
        Some(text) => nat_ports(text, workers)?,
    };
    let dpdk_args = match &raw.dpdk_args {
        None => Vec::new(),
        Some(args) if io != IoBackend::Dpdk => {
            return Err(err(
                "gateway.dpdk_args",
                q_list(args),
                format!("only used with io = \"dpdk\" (io is \"{io}\"); remove it or set io = \"dpdk\""),
            ))
        }
        Some(args) => args.clone(),
    };
    let admin = admin(&raw.admin)?;
    let timeouts = timeouts("gateway.timeouts", &raw.timeouts, Timeouts::default())?;
    Ok(Gateway { io, workers, cores, state_dir, plugins_dir, flow_capacity, nat_ports, dpdk_args, admin, timeouts })
}

fn nat_ports(text: &str, workers: usize) -> Result<RangeInclusive<u16>> {
    const PATH: &str = "gateway.nat_ports";
    let malformed = || err(PATH, q(text), "expected a port range \"first-last\" such as \"1024-65535\"");
    let (first, last) = text.split_once('-').ok_or_else(malformed)?;
    let port = |s: &str| -> Result<u16> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        match s.parse::<u32>() {
            Ok(p @ 1..=65535) => Ok(u16::try_from(p).unwrap_or(u16::MAX)),
            _ => Err(err(PATH, q(text), format!("port {s} is out of range; ports are 1 to 65535"))),
        }
    };
    let (first, last) = (port(first)?, port(last)?);
    if first > last {
        return Err(err(PATH, q(text), "the first port is above the last"));
    }
    let size = usize::from(last - first) + 1;
    if size < workers {
        return Err(err(
            PATH,
            q(text),
            format!("{size} ports for {workers} workers; each worker needs a slice of at least one NAT port"),
        ));
    }
    Ok(first..=last)
}

fn admin(raw: &RawAdmin) -> Result<Admin> {
    let socket_text = raw.socket.as_deref().unwrap_or(DEFAULT_ADMIN_SOCKET);
    let socket = non_empty_path("gateway.admin.socket", socket_text)?;
    if socket_text.len() > MAX_SOCKET_PATH {
        return Err(err(
            "gateway.admin.socket",
            q(socket_text),
            format!("{} bytes long; a unix socket path is at most {MAX_SOCKET_PATH} bytes", socket_text.len()),
        ));
    }
    let tcp = match raw.tcp.as_deref() {
        None => None,
        Some(text) => {
            let addr: SocketAddr = text.parse().map_err(|_| {
                err(
                    "gateway.admin.tcp",
                    q(text),
                    "expected an address and port such as \"127.0.0.1:9443\" or \"[::1]:9443\"",
                )
            })?;
            if addr.port() == 0 {
                return Err(err("gateway.admin.tcp", q(text), "port 0 cannot be listened on; ports are 1 to 65535"));
            }
            Some(addr)
        }
    };
    let token_file = raw.token_file.as_deref().map(|p| non_empty_path("gateway.admin.token_file", p)).transpose()?;
    let read_token_file =
        raw.read_token_file.as_deref().map(|p| non_empty_path("gateway.admin.read_token_file", p)).transpose()?;
    if tcp.is_some() && token_file.is_none() {
        return Err(err(
            "gateway.admin.token_file",
            "",
            "missing; required when tcp is set (the TCP listener accepts only requests bearing this file's token)",
        ));
    }
    if tcp.is_none() {
        for (key, value) in [("token_file", &raw.token_file), ("read_token_file", &raw.read_token_file)] {
            if let Some(value) = value {
                return Err(err(
                    format!("gateway.admin.{key}"),
                    q(value),
                    "only used with tcp (tokens guard the TCP listener; the unix socket relies on its file permissions); set tcp or remove it",
                ));
            }
        }
    }
    Ok(Admin { socket, tcp, token_file, read_token_file })
}

/// `base` overridden by the keys of `raw`, each checked against its RFC minimum.
fn timeouts(section: &str, raw: &RawTimeouts, base: Timeouts) -> Result<Timeouts> {
    let min = Timeouts::RFC_MINIMUM;
    let one = |key: &str, text: &Option<String>, base: Duration, min: Duration, rfc: &str| -> Result<Duration> {
        let Some(text) = text else { return Ok(base) };
        let path = format!("{section}.{key}");
        let d = duration::parse(text).ok_or_else(|| err(&path, q(text), duration::EXPECTED))?;
        if d < min {
            return Err(err(
                &path,
                q(text),
                format!("below {} ({}), the minimum {rfc}", duration::human(min), duration::seconds(min)),
            ));
        }
        if d > MAX_TIMEOUT {
            return Err(err(
                &path,
                q(text),
                format!("above the maximum of {} ({})", duration::human(MAX_TIMEOUT), duration::seconds(MAX_TIMEOUT)),
            ));
        }
        Ok(d)
    };
    Ok(Timeouts {
        tcp_established: one(
            "tcp_established",
            &raw.tcp_established,
            base.tcp_established,
            min.tcp_established,
            "RFC 5382 sets for established TCP connections",
        )?,
        tcp_transitory: one(
            "tcp_transitory",
            &raw.tcp_transitory,
            base.tcp_transitory,
            min.tcp_transitory,
            "RFC 5382 sets for partially open or closing TCP connections",
        )?,
        udp: one("udp", &raw.udp, base.udp, min.udp, "RFC 4787 sets for UDP mappings")?,
        icmp: one("icmp", &raw.icmp, base.icmp, min.icmp, "RFC 5508 sets for ICMP query mappings")?,
        port_cooldown: one("port_cooldown", &raw.port_cooldown, base.port_cooldown, min.port_cooldown, "")?,
    })
}

fn check_interface(path: &str, name: &str, io: IoBackend) -> Result<()> {
    if io == IoBackend::Dpdk {
        if (1..=63).contains(&name.len()) && !name.chars().any(char::is_whitespace) {
            return Ok(());
        }
        return Err(err(path, q(name), "a DPDK port name is 1 to 63 bytes without whitespace"));
    }
    let ok = (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(err(
            path,
            q(name),
            "a Linux interface name is 1 to 15 bytes without '/', ':' or whitespace, and not \".\" or \"..\"",
        ))
    }
}

/// Why `ip`, inside `net`, cannot be given to a host other than the gateway, if it cannot.
fn reserved_in(net: &NetworkConfig, ip: Ipv4Addr) -> Option<String> {
    if ip == net.address {
        Some(format!("is the gateway's own address in network `{}`", net.name))
    } else if ip == net.network_address() {
        Some(format!("is the network address of `{}` ({})", net.name, net.prefix()))
    } else if ip == net.broadcast() {
        Some(format!("is the broadcast address of `{}` ({})", net.name, net.prefix()))
    } else {
        None
    }
}

fn networks(raw: &[RawNetwork], io: IoBackend) -> Result<Vec<NetworkConfig>> {
    check_names("networks", raw.iter().map(|n| n.name.as_str()))?;
    let mut networks: Vec<NetworkConfig> = Vec::with_capacity(raw.len());
    for (i, n) in raw.iter().enumerate() {
        let at = |key: &str| format!("networks[{i}].{key}");
        check_interface(&at("interface"), &n.interface, io)?;
        let vlan = n
            .vlan
            .map(|v| {
                let e = int_in(&at("vlan"), v, 1..=4094, "a VLAN id");
                e.map_err(|e| ConfigError { problem: format!("{} (leave vlan out for untagged)", e.problem), ..e })
            })
            .transpose()?
            .map(to_u16);
        if let Some((j, other)) =
            networks.iter().enumerate().find(|(_, o)| o.interface == n.interface && o.vlan == vlan)
        {
            let (path, value, port) = match vlan {
                Some(v) => (at("vlan"), v.to_string(), format!("{} VLAN {v}", n.interface)),
                None => (at("interface"), q(&n.interface), format!("{} untagged", n.interface)),
            };
            return Err(err(
                path,
                value,
                format!(
                    "{port} is already networks[{j}] (`{}`); each network needs its own interface or VLAN",
                    other.name
                ),
            ));
        }
        let (address, prefix_len) = cidr(&at("address"), &n.address)?;
        let mut net = NetworkConfig {
            name: n.name.clone(),
            interface: n.interface.clone(),
            vlan,
            address,
            prefix_len,
            next_hop: None,
            mtu: match n.mtu {
                Some(v) => to_u16(int_in(&at("mtu"), v, 576..=9216, "an MTU in bytes")?),
                None => 1500,
            },
        };
        if address == net.network_address() || address == net.broadcast() {
            let which = if address == net.network_address() { "network" } else { "broadcast" };
            return Err(err(
                at("address"),
                q(&n.address),
                format!("{address} is the {which} address of {}; give the gateway a host address", net.prefix()),
            ));
        }
        if let Some(text) = &n.next_hop {
            let path = at("next_hop");
            let hop = parse_ipv4(&path, text, "198.18.0.254")?;
            if !net.contains(hop) {
                return Err(err(
                    path,
                    q(text),
                    format!("outside network `{}` ({}); a next hop must be inside its network", net.name, net.prefix()),
                ));
            }
            if let Some(why) = reserved_in(&net, hop) {
                return Err(err(path, q(text), format!("{why}; a next hop is another router in the network")));
            }
            net.next_hop = Some(hop);
        }
        networks.push(net);
    }
    Ok(networks)
}

/// `"198.18.0.1/24"` → the address and the prefix length (8..=30).
fn cidr(path: &str, text: &str) -> Result<(Ipv4Addr, u8)> {
    let malformed =
        || err(path, q(text), "expected the gateway's address and the prefix length, such as \"198.18.0.1/24\"");
    let (ip, len) = text.split_once('/').ok_or_else(malformed)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| malformed())?;
    if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let len: u8 = len.parse().map_err(|_| malformed())?;
    if !(8..=30).contains(&len) {
        return Err(err(path, q(text), format!("prefix length /{len} is out of range; it must be 8 to 30")));
    }
    if let Some(problem) = not_unicast(ip) {
        return Err(err(path, q(text), problem));
    }
    Ok((ip, len))
}

fn services(
    raw: &[RawService],
    accounts: &[String],
    networks: &[NetworkConfig],
    gateway_timeouts: &Timeouts,
) -> Result<Vec<ServiceConfig>> {
    check_names("services", raw.iter().map(|s| s.name.as_str()))?;
    let known_account = |path: &str, account: &str| -> Result<()> {
        if accounts.iter().any(|a| a == account) {
            Ok(())
        } else {
            Err(err(path, q(account), unknown("account", accounts.iter().map(String::as_str))))
        }
    };
    let mut services: Vec<ServiceConfig> = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let at = |key: &str| format!("services[{i}].{key}");
        known_account(&at("provider"), &s.provider)?;
        let net = networks.iter().find(|n| n.name == s.network).ok_or_else(|| {
            err(at("network"), q(&s.network), unknown("network", networks.iter().map(|n| n.name.as_str())))
        })?;
        // The services sharing this network, for the cross-service checks.
        let neighbours: Vec<(usize, &ServiceConfig)> =
            services.iter().enumerate().filter(|(_, o)| o.network == net.name).collect();

        check_count(&at("backends"), s.backends.len(), "backends", "a service")?;
        let mut backends: Vec<SocketAddrV4> = Vec::with_capacity(s.backends.len());
        for (k, text) in s.backends.iter().enumerate() {
            let path = format!("services[{i}].backends[{k}]");
            let malformed = || err(&path, q(text), "expected an IPv4 address and port such as \"198.18.0.10:8080\"");
            let backend: SocketAddrV4 = text.parse().map_err(|_| malformed())?;
            if backend.port() == 0 {
                return Err(err(&path, q(text), "port 0 is not a destination; ports are 1 to 65535"));
            }
            if let Some(problem) = not_unicast(*backend.ip()) {
                return Err(err(&path, q(text), problem));
            }
            if let Some(first) = backends.iter().position(|b| *b == backend) {
                return Err(err(&path, q(text), format!("duplicate backend; backends[{first}] is the same")));
            }
            let ip = *backend.ip();
            if net.contains(ip) {
                if let Some(why) = reserved_in(net, ip) {
                    return Err(err(&path, q(text), format!("{why}; a backend is a host in the network")));
                }
                for (j, other) in &neighbours {
                    if let Some(n) = other.nat_ips.iter().position(|&nat| nat == ip) {
                        return Err(err(
                            &path,
                            q(text),
                            format!(
                                "{ip} is NAT IP services[{j}].nat_ips[{n}] of service `{}`; a backend cannot use a NAT IP's address",
                                other.name
                            ),
                        ));
                    }
                }
            } else if net.next_hop.is_none() {
                return Err(err(
                    &path,
                    q(text),
                    format!(
                        "outside network `{}` ({}), which has no next_hop; a backend outside its service's network needs a next_hop router",
                        net.name,
                        net.prefix()
                    ),
                ));
            }
            backends.push(backend);
        }

        check_count(&at("nat_ips"), s.nat_ips.len(), "NAT IPs", "a service")?;
        let mut nat_ips: Vec<Ipv4Addr> = Vec::with_capacity(s.nat_ips.len());
        for (k, text) in s.nat_ips.iter().enumerate() {
            let path = format!("services[{i}].nat_ips[{k}]");
            let ip = parse_ipv4(&path, text, "198.18.0.200")?;
            if !net.contains(ip) {
                return Err(err(
                    &path,
                    q(text),
                    format!(
                        "outside network `{}` ({}); a NAT IP must be inside its service's network",
                        net.name,
                        net.prefix()
                    ),
                ));
            }
            if let Some(why) = reserved_in(net, ip) {
                return Err(err(&path, q(text), format!("{why}; a NAT IP is an address the gateway answers for")));
            }
            if net.next_hop == Some(ip) {
                return Err(err(
                    &path,
                    q(text),
                    format!(
                        "is the next hop of network `{}`; a NAT IP is an address the gateway answers for",
                        net.name
                    ),
                ));
            }
            if let Some(first) = nat_ips.iter().position(|&n| n == ip) {
                return Err(err(&path, q(text), format!("duplicate NAT IP; nat_ips[{first}] is the same")));
            }
            for (j, other) in &neighbours {
                if let Some(n) = other.nat_ips.iter().position(|&nat| nat == ip) {
                    return Err(err(
                        &path,
                        q(text),
                        format!(
                            "already NAT IP services[{j}].nat_ips[{n}] of service `{}` in network `{}`; a NAT IP belongs to one service",
                            other.name, net.name
                        ),
                    ));
                }
            }
            let own = std::iter::once((i, s.name.as_str(), backends.as_slice()));
            let others = neighbours.iter().map(|(j, o)| (*j, o.name.as_str(), o.backends.as_slice()));
            for (j, name, list) in others.chain(own) {
                if let Some(b) = list.iter().position(|b| *b.ip() == ip) {
                    return Err(err(
                        &path,
                        q(text),
                        format!(
                            "{ip} is backend services[{j}].backends[{b}] of service `{name}`; a NAT IP cannot be a backend's address"
                        ),
                    ));
                }
            }
            nat_ips.push(ip);
        }

        let visibility = account_list(&at("visibility"), &s.visibility, &known_account)?;
        let auto_approval = account_list(&at("auto_approval"), &s.auto_approval, &known_account)?;
        for (k, account) in auto_approval.iter().enumerate() {
            let visible = account == &s.provider || visibility.iter().any(|v| v == "*" || v == account);
            let visible = if account == "*" { visibility.iter().any(|v| v == "*") } else { visible };
            if !visible {
                let problem = if account == "*" {
                    "\"*\" needs \"*\" in visibility; auto-approval only applies to accounts that can see the service"
                        .to_owned()
                } else {
                    format!("account `{account}` cannot see the service; add it (or \"*\") to visibility first")
                };
                return Err(err(format!("services[{i}].auto_approval[{k}]"), q(account), problem));
            }
        }
        let echo = match s.echo.as_deref() {
            None | Some("reply") => EchoMode::Reply,
            Some("forward") => EchoMode::Forward,
            Some(other) => {
                return Err(err(at("echo"), q(other), "unknown echo mode; expected \"reply\" or \"forward\""))
            }
        };
        let timeouts = timeouts(&at("timeouts"), &s.timeouts, *gateway_timeouts)?;
        let proxy_protocol = s.proxy_protocol.unwrap_or(false);
        let proxy = proxy_settings(&at, s, proxy_protocol)?;
        services.push(ServiceConfig {
            name: s.name.clone(),
            provider: s.provider.clone(),
            network: net.name.clone(),
            backends,
            nat_ips,
            visibility,
            auto_approval,
            echo,
            proxy_protocol,
            proxy,
            timeouts,
        });
    }
    Ok(services)
}

/// The `proxy_*` keys of a service; each needs `proxy_protocol = true`.
fn proxy_settings(at: &impl Fn(&str) -> String, s: &RawService, on: bool) -> Result<ProxySettings> {
    let mut settings = ProxySettings::default();
    let off = |key: &str, value: String| {
        err(at(key), value, "set while proxy_protocol is off; add proxy_protocol = true or remove the key")
    };
    if let Some(text) = &s.proxy_placement {
        if !on {
            return Err(off("proxy_placement", q(text)));
        }
        settings.placement = match text.as_str() {
            "on_handshake_ack" => ProxyPlacement::OnHandshakeAck,
            "on_first_data" => ProxyPlacement::OnFirstData,
            _ => {
                return Err(err(
                    at("proxy_placement"),
                    q(text),
                    "unknown placement; expected \"on_handshake_ack\" or \"on_first_data\"",
                ))
            }
        };
    }
    if let Some(v) = s.proxy_header_budget {
        if !on {
            return Err(off("proxy_header_budget", v.to_string()));
        }
        let e = int_in(&at("proxy_header_budget"), v, 28..=255, "a header length in bytes");
        let v = e.map_err(|e| ConfigError {
            problem: format!("{} (28 fits the addresses alone; Debian 12's nginx reads at most 107)", e.problem),
            ..e
        })?;
        settings.header_budget = to_u16(v);
    }
    if let Some(list) = &s.proxy_probe_sources {
        if !on {
            return Err(off("proxy_probe_sources", q_list(list)));
        }
        for (k, text) in list.iter().enumerate() {
            let path = at(&format!("proxy_probe_sources[{k}]"));
            let malformed = || {
                err(&path, q(text), "expected an address or a prefix, such as \"198.18.0.99\" or \"198.18.0.64/26\"")
            };
            let (ip, len) = match text.split_once('/') {
                Some((ip, len)) => {
                    let len: u8 = len.parse().map_err(|_| malformed())?;
                    if len > 32 {
                        return Err(err(
                            &path,
                            q(text),
                            format!("prefix length /{len} is out of range; it must be 0 to 32"),
                        ));
                    }
                    (ip.parse::<Ipv4Addr>().map_err(|_| malformed())?, len)
                }
                None => (text.parse::<Ipv4Addr>().map_err(|_| malformed())?, 32),
            };
            if settings.probe_sources.contains(&(ip, len)) {
                return Err(err(&path, q(text), "listed twice"));
            }
            settings.probe_sources.push((ip, len));
        }
    }
    Ok(settings)
}

fn check_count(path: &str, count: usize, what: &str, owner: &str) -> Result<()> {
    if count == 0 {
        Err(err(path, "[]", format!("empty; {owner} needs 1 to {MAX_LIST} {what}")))
    } else if count > MAX_LIST {
        Err(err(path, "", format!("{count} {what}; {owner} has at most {MAX_LIST}")))
    } else {
        Ok(())
    }
}

/// A visibility or auto-approval list: known accounts or `"*"`, no repeats.
fn account_list(
    list_path: &str,
    list: &[String],
    known_account: &impl Fn(&str, &str) -> Result<()>,
) -> Result<Vec<String>> {
    for (k, account) in list.iter().enumerate() {
        let path = format!("{list_path}[{k}]");
        if account != "*" {
            known_account(&path, account)?;
        }
        if let Some(first) = list[..k].iter().position(|a| a == account) {
            let key = list_path.rsplit('.').next().unwrap_or(list_path);
            return Err(err(path, q(account), format!("duplicate; {key}[{first}] is the same")));
        }
    }
    Ok(list.to_vec())
}

fn endpoints(raw: &[RawEndpoint], config: &Config) -> Result<Vec<EndpointConfig>> {
    check_names("endpoints", raw.iter().map(|e| e.name.as_str()))?;
    let mut endpoints: Vec<EndpointConfig> = Vec::with_capacity(raw.len());
    for (i, e) in raw.iter().enumerate() {
        let at = |key: &str| format!("endpoints[{i}].{key}");
        if !config.accounts.contains(&e.account) {
            return Err(err(
                at("account"),
                q(&e.account),
                unknown("account", config.accounts.iter().map(String::as_str)),
            ));
        }
        let (_, net) = config.network(&e.network).ok_or_else(|| {
            err(at("network"), q(&e.network), unknown("network", config.networks.iter().map(|n| n.name.as_str())))
        })?;

        let path = at("address");
        let text = &e.address;
        let address = parse_ipv4(&path, text, "198.18.0.50")?;
        if !net.contains(address) {
            return Err(err(
                &path,
                q(text),
                format!(
                    "outside network `{}` ({}); an endpoint address must be inside its network",
                    net.name,
                    net.prefix()
                ),
            ));
        }
        let taken = |why: String| err(&path, q(text), format!("{why}; each endpoint needs an address of its own"));
        if let Some(why) = reserved_in(net, address) {
            return Err(taken(why));
        }
        if net.next_hop == Some(address) {
            return Err(taken(format!("is the next hop of network `{}`", net.name)));
        }
        if let Some((j, other)) =
            endpoints.iter().enumerate().find(|(_, o)| o.network == net.name && o.address == address)
        {
            return Err(taken(format!(
                "already the address of endpoints[{j}] (`{}`) in network `{}`",
                other.name, net.name
            )));
        }
        for (j, service) in config.services.iter().enumerate().filter(|(_, s)| s.network == net.name) {
            if let Some(n) = service.nat_ips.iter().position(|&ip| ip == address) {
                return Err(taken(format!(
                    "is NAT IP services[{j}].nat_ips[{n}] of service `{}` in network `{}`",
                    service.name, net.name
                )));
            }
            if let Some(b) = service.backends.iter().position(|b| *b.ip() == address) {
                return Err(taken(format!(
                    "is backend services[{j}].backends[{b}] of service `{}` in network `{}`",
                    service.name, net.name
                )));
            }
        }

        if e.ports.len() > MAX_LIST {
            return Err(err(
                at("ports"),
                "",
                format!("{} ports; an endpoint has at most {MAX_LIST} (leave ports out for every port)", e.ports.len()),
            ));
        }
        let mut ports: Vec<u16> = Vec::with_capacity(e.ports.len());
        for (k, &port) in e.ports.iter().enumerate() {
            let path = format!("endpoints[{i}].ports[{k}]");
            let port = to_u16(int_in(&path, port, 1..=65535, "a port")?);
            if let Some(first) = ports.iter().position(|&p| p == port) {
                return Err(err(path, port.to_string(), format!("duplicate port; ports[{first}] is the same")));
            }
            ports.push(port);
        }

        let (_, service) = config.service(&e.service).ok_or_else(|| {
            err(at("service"), q(&e.service), unknown("service", config.services.iter().map(|s| s.name.as_str())))
        })?;
        if !config.is_visible(service, &e.account) {
            let visibility = if service.visibility.is_empty() {
                "empty".to_owned()
            } else {
                service.visibility.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
            };
            return Err(err(
                at("service"),
                q(&e.service),
                format!(
                    "service `{}` is not visible to account `{}` (visibility: {visibility}); add the account to the service's visibility",
                    service.name, e.account
                ),
            ));
        }
        endpoints.push(EndpointConfig {
            name: e.name.clone(),
            account: e.account.clone(),
            network: net.name.clone(),
            address,
            ports,
            service: service.name.clone(),
        });
    }
    Ok(endpoints)
}
