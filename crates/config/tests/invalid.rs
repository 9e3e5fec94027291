//! Every invalid configuration below must fail with exactly the message the user sees.

use config::{parse, ConfigError};

/// A valid configuration; each case edits it into an invalid one. Line numbers matter for the
/// TOML-level errors: `[gateway]` is line 3, the first `[[networks]]` line 6, the second 11,
/// `[[services]]` 16, `[[endpoints]]` 25.
const BASE: &str = r#"accounts = ["provider-b", "team-a", "team-c"]

[gateway]
workers = 2

[[networks]]
name = "consumer"
interface = "veth-gw-c"
address = "198.18.0.1/24"

[[networks]]
name = "provider"
interface = "veth-gw-p"
address = "198.18.0.1/24"

[[services]]
name = "web"
provider = "provider-b"
network = "provider"
backends = ["198.18.0.10:8080"]
nat_ips = ["198.18.0.200"]
visibility = ["team-a"]
auto_approval = ["team-a"]

[[endpoints]]
name = "web-for-team-a"
account = "team-a"
network = "consumer"
address = "198.18.0.50"
ports = [80]
service = "web"
"#;

/// BASE with `from` (which must occur exactly once) replaced by `to`.
fn edit(from: &str, to: &str) -> String {
    assert_eq!(BASE.matches(from).count(), 1, "{from:?} must occur once in BASE");
    BASE.replacen(from, to, 1)
}

/// BASE with several edits.
fn edits(pairs: &[(&str, &str)]) -> String {
    let mut text = BASE.to_owned();
    for (from, to) in pairs {
        assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
        text = text.replacen(from, to, 1);
    }
    text
}

/// BASE with `extra` appended.
fn append(extra: &str) -> String {
    format!("{BASE}{extra}")
}

const SECOND_ENDPOINT: &str = r#"
[[endpoints]]
name = "web-for-team-a-2"
account = "team-a"
network = "consumer"
address = "198.18.0.50"
service = "web"
"#;

const SECOND_SERVICE: &str = r#"
[[services]]
name = "api"
provider = "provider-b"
network = "provider"
backends = ["198.18.0.11:443"]
nat_ips = ["198.18.0.200"]
"#;

fn cases() -> Vec<(String, &'static str)> {
    vec![
        // --- TOML level: syntax, types, unknown and missing keys -----------------------------
        (
            edit("[gateway]\n", "[gateway\n"),
            "TOML syntax error at line 3, column 9: invalid table header; expected `.`, `]`",
        ),
        (
            edit("workers = 2", "workers = \"two\""),
            "gateway.workers = \"two\": invalid type: string \"two\", expected an integer (line 4, column 11)",
        ),
        (
            edit("interface = \"veth-gw-c\"\n", "interface = \"veth-gw-c\"\nmru = 1500\n"),
            "networks[0].mru: unknown field `mru`, expected one of `name`, `interface`, `vlan`, `address`, \
             `next_hop`, `mtu` (line 9, column 1)",
        ),
        (edit("interface = \"veth-gw-p\"\n", ""), "networks[1]: missing field `interface` (line 11, column 1)"),
        (
            format!("foo = 1\n{BASE}"),
            "foo: unknown field `foo`, expected one of `accounts`, `gateway`, `networks`, `services`, \
             `endpoints`, `plugins` (line 1, column 1)",
        ),
        (
            edit("auto_approval = [\"team-a\"]\n", "auto_approval = [\"team-a\"]\n[services.timeouts]\ntcp = \"3h\"\n"),
            "services[0].timeouts.tcp: unknown field `tcp`, expected one of `tcp_established`, \
             `tcp_transitory`, `udp`, `icmp`, `port_cooldown` (line 25, column 1)",
        ),
        (
            edit("ports = [80]", "ports = [80, \"http\"]"),
            "endpoints[0].ports[1] = \"http\": invalid type: string \"http\", expected an integer (line 30, column 14)",
        ),
        (
            edit("workers = 2\n", "workers = 2\n[gateway.admin]\ntcp = true\n"),
            "gateway.admin.tcp = true: invalid type: boolean `true`, expected a string (line 6, column 7)",
        ),
        // --- names and accounts ---------------------------------------------------------------
        (
            edit("name = \"provider\"", "name = \"consumer\""),
            "networks[1].name = \"consumer\": duplicate name; networks[0] already has it",
        ),
        (
            edit("name = \"consumer\"", "name = \"Consumer\""),
            "networks[0].name = \"Consumer\": a name is 1 to 32 characters of a-z, 0-9 and '-', not starting \
             or ending with '-'",
        ),
        (
            append(&SECOND_SERVICE.replace("\"api\"", "\"web\"")),
            "services[1].name = \"web\": duplicate name; services[0] already has it",
        ),
        (
            append(&SECOND_ENDPOINT.replace("web-for-team-a-2", "web-for-team-a")),
            "endpoints[1].name = \"web-for-team-a\": duplicate name; endpoints[0] already has it",
        ),
        (
            edit("\"team-a\", \"team-c\"]", "\"team-a\", \"provider-b\"]"),
            "accounts[2] = \"provider-b\": duplicate account; accounts[0] already lists it",
        ),
        (
            edit("\"team-c\"]", "\"*\"]"),
            "accounts[2] = \"*\": an account is 1 to 64 characters of a-z, 0-9, '-', '_' and '.', starting \
             with a letter or digit",
        ),
        // --- references ------------------------------------------------------------------------
        (
            edit("provider = \"provider-b\"", "provider = \"provider-x\""),
            "services[0].provider = \"provider-x\": unknown account; known accounts: `provider-b`, `team-a`, \
             `team-c`",
        ),
        (
            edit("visibility = [\"team-a\"]", "visibility = [\"team-a\", \"team-x\"]"),
            "services[0].visibility[1] = \"team-x\": unknown account; known accounts: `provider-b`, `team-a`, \
             `team-c`",
        ),
        (
            edit("auto_approval = [\"team-a\"]", "auto_approval = [\"teama\"]"),
            "services[0].auto_approval[0] = \"teama\": unknown account; known accounts: `provider-b`, \
             `team-a`, `team-c`",
        ),
        (
            edit("account = \"team-a\"", "account = \"team-x\""),
            "endpoints[0].account = \"team-x\": unknown account; known accounts: `provider-b`, `team-a`, \
             `team-c`",
        ),
        (
            edit("network = \"provider\"", "network = \"backend\""),
            "services[0].network = \"backend\": unknown network; known networks: `consumer`, `provider`",
        ),
        (
            edit("network = \"consumer\"", "network = \"consumers\""),
            "endpoints[0].network = \"consumers\": unknown network; known networks: `consumer`, `provider`",
        ),
        (
            edit("service = \"web\"", "service = \"api\""),
            "endpoints[0].service = \"api\": unknown service; known services: `web`",
        ),
        (
            edit("account = \"team-a\"", "account = \"team-c\""),
            "endpoints[0].service = \"web\": service `web` is not visible to account `team-c` (visibility: \
             `team-a`); add the account to the service's visibility",
        ),
        (
            edit("auto_approval = [\"team-a\"]", "auto_approval = [\"team-c\"]"),
            "services[0].auto_approval[0] = \"team-c\": account `team-c` cannot see the service; add it (or \
             \"*\") to visibility first",
        ),
        (
            edit("auto_approval = [\"team-a\"]", "auto_approval = [\"*\"]"),
            "services[0].auto_approval[0] = \"*\": \"*\" needs \"*\" in visibility; auto-approval only applies \
             to accounts that can see the service",
        ),
        (
            edit("visibility = [\"team-a\"]", "visibility = [\"team-a\", \"team-a\"]"),
            "services[0].visibility[1] = \"team-a\": duplicate; visibility[0] is the same",
        ),
        // --- addresses -------------------------------------------------------------------------
        (
            edit("nat_ips = [\"198.18.0.200\"]", "nat_ips = [\"198.19.0.5\"]"),
            "services[0].nat_ips[0] = \"198.19.0.5\": outside network `provider` (198.18.0.0/24); a NAT IP \
             must be inside its service's network",
        ),
        (
            edit("nat_ips = [\"198.18.0.200\"]", "nat_ips = [\"198.18.0.1\"]"),
            "services[0].nat_ips[0] = \"198.18.0.1\": is the gateway's own address in network `provider`; a \
             NAT IP is an address the gateway answers for",
        ),
        (
            edit("nat_ips = [\"198.18.0.200\"]", "nat_ips = [\"198.18.0.10\"]"),
            "services[0].nat_ips[0] = \"198.18.0.10\": 198.18.0.10 is backend services[0].backends[0] of \
             service `web`; a NAT IP cannot be a backend's address",
        ),
        (
            edit("nat_ips = [\"198.18.0.200\"]", "nat_ips = [\"198.18.0.200\", \"198.18.0.200\"]"),
            "services[0].nat_ips[1] = \"198.18.0.200\": duplicate NAT IP; nat_ips[0] is the same",
        ),
        (
            append(SECOND_SERVICE),
            "services[1].nat_ips[0] = \"198.18.0.200\": already NAT IP services[0].nat_ips[0] of service `web` \
             in network `provider`; a NAT IP belongs to one service",
        ),
        (
            edit("nat_ips = [\"198.18.0.200\"]", "nat_ips = []"),
            "services[0].nat_ips = []: empty; a service needs 1 to 64 NAT IPs",
        ),
        (
            edit("backends = [\"198.18.0.10:8080\"]", "backends = [\"10.1.2.3:8080\"]"),
            "services[0].backends[0] = \"10.1.2.3:8080\": outside network `provider` (198.18.0.0/24), which \
             has no next_hop; a backend outside its service's network needs a next_hop router",
        ),
        (
            edit("backends = [\"198.18.0.10:8080\"]", "backends = [\"198.18.0.10:0\"]"),
            "services[0].backends[0] = \"198.18.0.10:0\": port 0 is not a destination; ports are 1 to 65535",
        ),
        (
            edit("backends = [\"198.18.0.10:8080\"]", "backends = [\"198.18.0.10\"]"),
            "services[0].backends[0] = \"198.18.0.10\": expected an IPv4 address and port such as \
             \"198.18.0.10:8080\"",
        ),
        (
            edit("address = \"198.18.0.50\"", "address = \"198.18.0.1\""),
            "endpoints[0].address = \"198.18.0.1\": is the gateway's own address in network `consumer`; each \
             endpoint needs an address of its own",
        ),
        (
            edit("address = \"198.18.0.50\"", "address = \"198.18.0.255\""),
            "endpoints[0].address = \"198.18.0.255\": is the broadcast address of `consumer` (198.18.0.0/24); \
             each endpoint needs an address of its own",
        ),
        (
            append(SECOND_ENDPOINT),
            "endpoints[1].address = \"198.18.0.50\": already the address of endpoints[0] (`web-for-team-a`) \
             in network `consumer`; each endpoint needs an address of its own",
        ),
        (
            edits(&[("network = \"consumer\"", "network = \"provider\""), ("\"198.18.0.50\"", "\"198.18.0.200\"")]),
            "endpoints[0].address = \"198.18.0.200\": is NAT IP services[0].nat_ips[0] of service `web` in \
             network `provider`; each endpoint needs an address of its own",
        ),
        (
            edit("address = \"198.18.0.50\"", "address = \"198.18.1.50\""),
            "endpoints[0].address = \"198.18.1.50\": outside network `consumer` (198.18.0.0/24); an endpoint \
             address must be inside its network",
        ),
        (
            edit("address = \"198.18.0.50\"", "address = \"198.18.0.500\""),
            "endpoints[0].address = \"198.18.0.500\": expected an IPv4 address such as \"198.18.0.50\"",
        ),
        (
            edit("interface = \"veth-gw-p\"", "interface = \"veth-gw-c\""),
            "networks[1].interface = \"veth-gw-c\": veth-gw-c untagged is already networks[0] (`consumer`); \
             each network needs its own interface or VLAN",
        ),
        (
            edits(&[
                ("interface = \"veth-gw-c\"", "interface = \"eth1\"\nvlan = 100"),
                ("interface = \"veth-gw-p\"", "interface = \"eth1\"\nvlan = 100"),
            ]),
            "networks[1].vlan = 100: eth1 VLAN 100 is already networks[0] (`consumer`); each network needs its \
             own interface or VLAN",
        ),
        (
            edit("interface = \"veth-gw-c\"", "interface = \"veth-gw-c\"\nvlan = 4095"),
            "networks[0].vlan = 4095: out of range; a VLAN id is 1 to 4094 (leave vlan out for untagged)",
        ),
        (
            edit("interface = \"veth-gw-c\"", "interface = \"veth-gateway-consumer\""),
            "networks[0].interface = \"veth-gateway-consumer\": a Linux interface name is 1 to 15 bytes \
             without '/', ':' or whitespace, and not \".\" or \"..\"",
        ),
        (
            edit("address = \"198.18.0.1/24\"\n\n[[networks]]", "address = \"198.18.0.1/31\"\n\n[[networks]]"),
            "networks[0].address = \"198.18.0.1/31\": prefix length /31 is out of range; it must be 8 to 30",
        ),
        (
            edit("address = \"198.18.0.1/24\"\n\n[[networks]]", "address = \"198.18.0.0/24\"\n\n[[networks]]"),
            "networks[0].address = \"198.18.0.0/24\": 198.18.0.0 is the network address of 198.18.0.0/24; give \
             the gateway a host address",
        ),
        (
            edit("address = \"198.18.0.1/24\"\n\n[[networks]]", "address = \"198.18.0.1\"\n\n[[networks]]"),
            "networks[0].address = \"198.18.0.1\": expected the gateway's address and the prefix length, such \
             as \"198.18.0.1/24\"",
        ),
        (
            edit(
                "address = \"198.18.0.1/24\"\n\n[[services]]",
                "address = \"198.18.0.1/24\"\nnext_hop = \"10.0.0.1\"\n\n[[services]]",
            ),
            "networks[1].next_hop = \"10.0.0.1\": outside network `provider` (198.18.0.0/24); a next hop must \
             be inside its network",
        ),
        // --- gateway ---------------------------------------------------------------------------
        (edit("workers = 2", "workers = 0"), "gateway.workers = 0: out of range; the number of workers is 1 to 64"),
        (
            edit("workers = 2", "workers = 2\ncores = [0, 1, 2]"),
            "gateway.cores = [0, 1, 2]: 3 cores for 2 workers; list exactly one core per worker, or leave cores \
             out",
        ),
        (
            edit("workers = 2", "workers = 2\ncores = [1, 1]"),
            "gateway.cores[1] = 1: core 1 is already worker 0's; each worker needs its own core",
        ),
        (
            edit("workers = 2", "workers = 2\ncores = [0, 1024]"),
            "gateway.cores[1] = 1024: out of range; a core number is 0 to 1023",
        ),
        (
            edit("workers = 2", "workers = 2\nio = \"xdp\""),
            "gateway.io = \"xdp\": unknown I/O backend; expected \"afpacket\", \"dpdk\" or \"memory\"",
        ),
        (
            edit("workers = 2", "workers = 2\ndpdk_args = [\"-l\", \"0-1\"]"),
            "gateway.dpdk_args = [\"-l\", \"0-1\"]: only used with io = \"dpdk\" (io is \"afpacket\"); remove it \
             or set io = \"dpdk\"",
        ),
        (
            edit("workers = 2", "workers = 2\nflow_capacity = 100"),
            "gateway.flow_capacity = 100: out of range; the number of flows per worker is 1024 to 268435456",
        ),
        (
            edit("workers = 2", "workers = 2\nnat_ports = \"2000-1000\""),
            "gateway.nat_ports = \"2000-1000\": the first port is above the last",
        ),
        (
            edit("workers = 2", "workers = 2\nnat_ports = \"1024\""),
            "gateway.nat_ports = \"1024\": expected a port range \"first-last\" such as \"1024-65535\"",
        ),
        (
            edit("workers = 2", "workers = 2\nnat_ports = \"0-1023\""),
            "gateway.nat_ports = \"0-1023\": port 0 is out of range; ports are 1 to 65535",
        ),
        (
            edit("workers = 2", "workers = 3\nnat_ports = \"40000-40001\""),
            "gateway.nat_ports = \"40000-40001\": 2 ports for 3 workers; each worker needs a slice of at least \
             one NAT port",
        ),
        (
            edit("workers = 2", "workers = 2\n[gateway.admin]\ntcp = \"127.0.0.1:9443\""),
            "gateway.admin.token_file: missing; required when tcp is set (the TCP listener accepts only \
             requests bearing this file's token)",
        ),
        (
            edit("workers = 2", "workers = 2\n[gateway.admin]\nread_token_file = \"/etc/overlink/ro.token\""),
            "gateway.admin.read_token_file = \"/etc/overlink/ro.token\": only used with tcp (tokens guard the \
             TCP listener; the unix socket relies on its file permissions); set tcp or remove it",
        ),
        (
            edit("workers = 2", "workers = 2\n[gateway.admin]\ntcp = \"localhost:9443\"\ntoken_file = \"/t\""),
            "gateway.admin.tcp = \"localhost:9443\": expected an address and port such as \"127.0.0.1:9443\" or \
             \"[::1]:9443\"",
        ),
        // --- timeouts --------------------------------------------------------------------------
        (
            edit("workers = 2", "workers = 2\n[gateway.timeouts]\nudp = \"5 minutes\""),
            "gateway.timeouts.udp = \"5 minutes\": expected a duration such as \"300s\", \"2h4m\" or \"500ms\" \
             (whole numbers with units h, m, s, ms, largest first)",
        ),
        (
            edit("workers = 2", "workers = 2\n[gateway.timeouts]\ntcp_established = \"2h\""),
            "gateway.timeouts.tcp_established = \"2h\": below 2h4m (7440s), the minimum RFC 5382 sets for \
             established TCP connections",
        ),
        (
            edit("workers = 2", "workers = 2\n[gateway.timeouts]\ntcp_transitory = \"239s\""),
            "gateway.timeouts.tcp_transitory = \"239s\": below 4m (240s), the minimum RFC 5382 sets for \
             partially open or closing TCP connections",
        ),
        (
            edit("workers = 2", "workers = 2\n[gateway.timeouts]\nicmp = \"59s\""),
            "gateway.timeouts.icmp = \"59s\": below 1m (60s), the minimum RFC 5508 sets for ICMP query mappings",
        ),
        (
            edit(
                "auto_approval = [\"team-a\"]\n",
                "auto_approval = [\"team-a\"]\n[services.timeouts]\nudp = \"30s\"\n",
            ),
            "services[0].timeouts.udp = \"30s\": below 2m (120s), the minimum RFC 4787 sets for UDP mappings",
        ),
        (
            edit("workers = 2", "workers = 2\n[gateway.timeouts]\nport_cooldown = \"169h\""),
            "gateway.timeouts.port_cooldown = \"169h\": above the maximum of 168h (604800s)",
        ),
        // --- endpoint ports and misc -----------------------------------------------------------
        (
            edit("ports = [80]", "ports = [80, 443, 80]"),
            "endpoints[0].ports[2] = 80: duplicate port; ports[0] is the same",
        ),
        (edit("ports = [80]", "ports = [0]"), "endpoints[0].ports[0] = 0: out of range; a port is 1 to 65535"),
        (
            edit("auto_approval = [\"team-a\"]", "auto_approval = [\"team-a\"]\necho = \"drop\""),
            "services[0].echo = \"drop\": unknown echo mode; expected \"reply\" or \"forward\"",
        ),
        (
            edit("auto_approval = [\"team-a\"]", "auto_approval = [\"team-a\"]\nproxy_placement = \"on_first_data\""),
            "services[0].proxy_placement = \"on_first_data\": set while proxy_protocol is off; add proxy_protocol = true or remove the key",
        ),
        (
            edit(
                "auto_approval = [\"team-a\"]",
                "auto_approval = [\"team-a\"]\nproxy_protocol = true\nproxy_placement = \"first_data\"",
            ),
            "services[0].proxy_placement = \"first_data\": unknown placement; expected \"on_handshake_ack\" or \"on_first_data\"",
        ),
        (
            edit("auto_approval = [\"team-a\"]", "auto_approval = [\"team-a\"]\nproxy_protocol = true\nproxy_header_budget = 16"),
            "services[0].proxy_header_budget = 16: out of range; a header length in bytes is 28 to 255 (28 fits the addresses alone; Debian 12's nginx reads at most 107)",
        ),
        (
            edit(
                "auto_approval = [\"team-a\"]",
                "auto_approval = [\"team-a\"]\nproxy_protocol = true\nproxy_probe_sources = [\"198.18.0.99\", \"198.18.0.0/33\"]",
            ),
            "services[0].proxy_probe_sources[1] = \"198.18.0.0/33\": prefix length /33 is out of range; it must be 0 to 32",
        ),
        (
            edit(
                "auto_approval = [\"team-a\"]",
                "auto_approval = [\"team-a\"]\nproxy_protocol = true\nproxy_probe_sources = [\"probe-host\"]",
            ),
            "services[0].proxy_probe_sources[0] = \"probe-host\": expected an address or a prefix, such as \"198.18.0.99\" or \"198.18.0.64/26\"",
        ),
        (
            edit("address = \"198.18.0.1/24\"\n\n[[networks]]", "address = \"198.18.0.1/24\"\nmtu = 100\n\n[[networks]]"),
            "networks[0].mtu = 100: out of range; an MTU in bytes is 576 to 9216",
        ),
    ]
}

#[test]
fn every_invalid_config_fails_with_its_exact_message() {
    let cases = cases();
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for (i, (text, expected)) in cases.iter().enumerate() {
        match parse(text) {
            Ok(_) => failures.push(format!("case {i}: accepted, expected `{expected}`")),
            Err(e) if e.to_string() != *expected => {
                failures.push(format!("case {i}:\n  expected `{expected}`\n  got      `{e}`"))
            }
            Err(e) => assert!(!e.to_string().contains('\n'), "case {i}: not one line"),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn the_base_of_the_table_is_valid() {
    parse(BASE).unwrap();
}

#[test]
fn errors_carry_path_value_and_problem_separately() {
    let e = parse(&edit("nat_ips = [\"198.18.0.200\"]", "nat_ips = [\"198.19.0.5\"]")).unwrap_err();
    assert_eq!(
        e,
        ConfigError {
            path: "services[0].nat_ips[0]".into(),
            value: "\"198.19.0.5\"".into(),
            problem: "outside network `provider` (198.18.0.0/24); a NAT IP must be inside its service's network".into(),
        }
    );
    let e = parse(&edit("workers = 2", "workers = 2.5")).unwrap_err();
    assert_eq!(e.path, "gateway.workers");
    assert_eq!(e.value, "2.5");
    assert_eq!(e.problem, "invalid type: floating point `2.5`, expected an integer (line 4, column 11)");
}

#[test]
fn toml_errors_are_located_under_dotted_keys_and_implicit_tables() {
    let e = parse("gateway.workers = 1.5\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "gateway.workers = 1.5: invalid type: floating point `1.5`, expected an integer (line 1, column 19)"
    );
    let e = parse("[gateway.admin]\nsocket = 7\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "gateway.admin.socket = 7: invalid type: integer `7`, expected a string (line 2, column 10)"
    );
    let e = parse("[gateway]\ntimeouts = { udp = \"300s\", tcp = \"1h\" }\n").unwrap_err();
    assert_eq!(e.path, "gateway.timeouts.tcp");
    let e = parse("when = 1979-05-27T07:32:00Z\n").unwrap_err();
    assert_eq!(e.path, "when");
}

#[test]
fn an_unreadable_file_names_the_path_and_the_os_error() {
    let path = std::path::Path::new("/nonexistent/overlink/overlink.toml");
    let e = config::load(path).unwrap_err();
    assert_eq!(e.path, "");
    assert_eq!(e.value, "/nonexistent/overlink/overlink.toml");
    assert!(e.problem.starts_with("cannot read the configuration file: "), "{e}");
    let os = std::fs::read_to_string(path).unwrap_err().to_string();
    assert_eq!(e.to_string(), format!("/nonexistent/overlink/overlink.toml: cannot read the configuration file: {os}"));
}
