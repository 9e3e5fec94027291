//! `overlink ctl`: a client of the admin API with the verbs a Private Link user knows.
//!
//! It speaks HTTP/1.1 over the unix socket (default) or TCP with a bearer token, prints tables
//! by default and the API's JSON with `--json`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// Where the gateway's admin API is.
#[derive(Debug, Args)]
pub struct Connection {
    /// The admin unix socket.
    #[arg(long, default_value = "/run/overlink/admin.sock", global = true)]
    pub socket: PathBuf,
    /// Use the TCP listener instead, e.g. `127.0.0.1:9443` (needs --token-file).
    #[arg(long, global = true)]
    pub tcp: Option<String>,
    /// File holding the bearer token for --tcp.
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Services (private link services).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Endpoints (private endpoints).
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// A sample of live flows.
    Flows {
        /// Only flows of this endpoint.
        #[arg(long)]
        endpoint: Option<String>,
        /// Only flows of this service.
        #[arg(long)]
        service: Option<String>,
        /// Only tcp, udp or icmp.
        #[arg(long)]
        protocol: Option<String>,
        /// At most this many (1..=1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Datapath counters: events and drops by reason.
    Stats,
}

/// Service verbs.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// List services.
    List,
    /// Show one service (by name or alias).
    Show { name: String },
    /// Delete a service; its endpoints become disconnected.
    Delete { name: String },
    /// Add a NAT IP to a service.
    AddNatIp { name: String, ip: Ipv4Addr },
    /// Remove a NAT IP (refused while flows hold it).
    RemoveNatIp { name: String, ip: Ipv4Addr },
}

/// Endpoint verbs.
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Ask for an endpoint to a service (found by its alias).
    Create {
        /// The consumer account.
        #[arg(long)]
        account: String,
        /// The consumer network.
        #[arg(long)]
        network: String,
        /// The endpoint address in that network.
        #[arg(long)]
        address: Ipv4Addr,
        /// The service alias (`name.suffix`).
        #[arg(long)]
        service: String,
        /// Accepted ports (repeat; none means all).
        #[arg(long = "port")]
        ports: Vec<u16>,
        /// A message for the provider.
        #[arg(long, default_value = "")]
        message: String,
        /// A name for the endpoint (generated when absent).
        #[arg(long)]
        name: Option<String>,
    },
    /// List endpoints.
    List {
        /// Only this service's.
        #[arg(long)]
        service: Option<String>,
        /// Only this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one endpoint.
    Show { name: String },
    /// Approve a pending endpoint.
    Approve { name: String },
    /// Reject an endpoint, with a reason.
    Reject {
        name: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Delete an endpoint; its flows are reset.
    Delete { name: String },
}

/// One HTTP exchange with the gateway.
fn call(conn: &Connection, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: overlink\r\nConnection: close\r\n");
    if let Some(file) = &conn.token_file {
        let token =
            std::fs::read_to_string(file).with_context(|| format!("cannot read the token file {}", file.display()))?;
        request.push_str(&format!("Authorization: Bearer {}\r\n", token.trim()));
    } else if conn.tcp.is_some() {
        bail!("--tcp needs --token-file: the TCP listener requires a bearer token");
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut raw = Vec::new();
    match &conn.tcp {
        Some(addr) => {
            let mut s = TcpStream::connect(addr).map_err(|e| {
                anyhow!("cannot reach the gateway's admin API at {addr}: {e} (is `overlink run` running with a TCP listener?)")
            })?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            s.write_all(request.as_bytes())?;
            s.read_to_end(&mut raw)?;
        }
        None => {
            let mut s = UnixStream::connect(&conn.socket).map_err(|e| {
                anyhow!(
                    "cannot reach the gateway at {}: {e} (is `overlink run` running? the socket is set by [gateway.admin] socket)",
                    conn.socket.display()
                )
            })?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            s.write_all(request.as_bytes())?;
            s.read_to_end(&mut raw)?;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let header_len = match response.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => bail!("the gateway sent an incomplete HTTP response"),
    };
    let status = response.code.unwrap_or(0);
    let text = String::from_utf8_lossy(&raw[header_len..]).to_string();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

fn check(status: u16, value: &Value) -> anyhow::Result<()> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let message = value
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string());
    bail!("{message} (HTTP {status})")
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => {
            a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect::<Vec<_>>().join(",")
        }
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Prints rows as an aligned table.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r);
    }
}

fn print_endpoints(list: &[Value]) {
    table(
        &["name", "account", "network", "address", "ports", "service", "state", "link id", "reason"],
        list.iter()
            .map(|e| {
                vec![
                    s(e, "name"),
                    s(e, "account"),
                    s(e, "network"),
                    s(e, "address"),
                    s(e, "ports"),
                    s(e, "service_alias"),
                    s(e, "state"),
                    s(e, "link_id"),
                    s(e, "reason"),
                ]
            })
            .collect(),
    );
}

fn print_services(list: &[Value]) {
    table(
        &["name", "alias", "provider", "network", "backends", "nat ips", "endpoints", "proxy v2"],
        list.iter()
            .map(|v| {
                vec![
                    s(v, "name"),
                    s(v, "alias"),
                    s(v, "provider"),
                    s(v, "network"),
                    s(v, "backends"),
                    s(v, "nat_ips"),
                    s(v, "endpoints"),
                    s(v, "proxy_protocol"),
                ]
            })
            .collect(),
    );
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// Runs one `ctl` command.
pub fn run(conn: &Connection, command: CtlCommand) -> anyhow::Result<()> {
    let (status, value) = match &command {
        CtlCommand::Service(ServiceCommand::List) => call(conn, "GET", "/v1/services", None)?,
        CtlCommand::Service(ServiceCommand::Show { name }) => {
            call(conn, "GET", &format!("/v1/services/{}", encode(name)), None)?
        }
        CtlCommand::Service(ServiceCommand::Delete { name }) => {
            call(conn, "DELETE", &format!("/v1/services/{}", encode(name)), None)?
        }
        CtlCommand::Service(ServiceCommand::AddNatIp { name, ip }) => {
            call(conn, "POST", &format!("/v1/services/{}/nat-ips", encode(name)), Some(&json!({"ip": ip})))?
        }
        CtlCommand::Service(ServiceCommand::RemoveNatIp { name, ip }) => {
            call(conn, "DELETE", &format!("/v1/services/{}/nat-ips/{ip}", encode(name)), None)?
        }
        CtlCommand::Endpoint(EndpointCommand::Create { account, network, address, service, ports, message, name }) => {
            let mut body = json!({"account": account, "network": network, "address": address, "service": service,
                "ports": ports, "message": message});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            call(conn, "POST", "/v1/endpoints", Some(&body))?
        }
        CtlCommand::Endpoint(EndpointCommand::List { service, state }) => call(
            conn,
            "GET",
            &format!("/v1/endpoints{}", query(&[("service", service.clone()), ("state", state.clone())])),
            None,
        )?,
        CtlCommand::Endpoint(EndpointCommand::Show { name }) => {
            call(conn, "GET", &format!("/v1/endpoints/{}", encode(name)), None)?
        }
        CtlCommand::Endpoint(EndpointCommand::Approve { name }) => {
            call(conn, "POST", &format!("/v1/endpoints/{}/approve", encode(name)), None)?
        }
        CtlCommand::Endpoint(EndpointCommand::Reject { name, reason }) => {
            call(conn, "POST", &format!("/v1/endpoints/{}/reject", encode(name)), Some(&json!({"reason": reason})))?
        }
        CtlCommand::Endpoint(EndpointCommand::Delete { name }) => {
            call(conn, "DELETE", &format!("/v1/endpoints/{}", encode(name)), None)?
        }
        CtlCommand::Flows { endpoint, service, protocol, limit } => call(
            conn,
            "GET",
            &format!(
                "/v1/flows{}",
                query(&[
                    ("endpoint", endpoint.clone()),
                    ("service", service.clone()),
                    ("protocol", protocol.clone()),
                    ("limit", Some(limit.to_string()))
                ])
            ),
            None,
        )?,
        CtlCommand::Stats => call(conn, "GET", "/v1/counters", None)?,
    };
    check(status, &value)?;
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    match command {
        CtlCommand::Service(ServiceCommand::List) => print_services(value.as_array().map_or(&[][..], |v| v)),
        CtlCommand::Service(
            ServiceCommand::Show { .. } | ServiceCommand::AddNatIp { .. } | ServiceCommand::RemoveNatIp { .. },
        ) => print_services(std::slice::from_ref(&value)),
        CtlCommand::Endpoint(EndpointCommand::List { .. }) => print_endpoints(value.as_array().map_or(&[][..], |v| v)),
        CtlCommand::Endpoint(
            EndpointCommand::Create { .. }
            | EndpointCommand::Show { .. }
            | EndpointCommand::Approve { .. }
            | EndpointCommand::Reject { .. },
        ) => print_endpoints(std::slice::from_ref(&value)),
        CtlCommand::Service(ServiceCommand::Delete { name }) => {
            println!("service `{name}` deleted; its endpoints are disconnected")
        }
        CtlCommand::Endpoint(EndpointCommand::Delete { name }) => println!("endpoint `{name}` deleted"),
        CtlCommand::Flows { .. } => {
            let flows = value.get("flows").and_then(Value::as_array).cloned().unwrap_or_default();
            table(
                &["proto", "endpoint", "consumer", "endpoint address", "nat", "backend", "state", "pkts →", "pkts ←"],
                flows
                    .iter()
                    .map(|f| {
                        vec![
                            s(f, "protocol"),
                            s(f, "endpoint"),
                            s(f, "consumer"),
                            s(f, "endpoint_address"),
                            s(f, "nat"),
                            s(f, "backend"),
                            s(f, "state"),
                            s(f, "packets_to_service"),
                            s(f, "packets_to_consumer"),
                        ]
                    })
                    .collect(),
            );
        }
        CtlCommand::Stats => {
            for section in ["events", "drops"] {
                if let Some(map) = value.get(section).and_then(Value::as_object) {
                    let rows: Vec<Vec<String>> = map
                        .iter()
                        .filter(|(_, v)| section == "events" || v.as_u64() != Some(0))
                        .map(|(k, v)| vec![format!("{section}.{k}"), v.to_string()])
                        .collect();
                    table(&["counter", "value"], rows);
                }
            }
        }
    }
    Ok(())
}
