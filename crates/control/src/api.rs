//! The admin API: HTTP/1.1 + JSON routes over the control plane.
//!
//! Requests are decoded into a [`Route`] first (method and path), then authorised, then run. On
//! the unix socket (mode 0600) the peer is trusted as an operator; on TCP a bearer token is
//! required: the admin token may do everything, the read token only `GET`. Tokens are compared in
//! constant time. Every mutation goes through [`Control`], which audits and persists it before
//! this module answers.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use admin_http::{Handler, Method, Peer, Request, Response, StatusCounts};
use datapath::{Counters, DropReason, Event, SharedCounters, Telemetry};
use serde::Deserialize;
use serde_json::json;

use crate::control::{Actor, Control, ControlError, CreateEndpoint};
use crate::metrics::Exposition;

/// Flows returned by `/v1/flows` at most.
pub const FLOWS_LIMIT_MAX: usize = 1000;

/// What a caller may do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Read only.
    Read,
    /// Everything.
    Admin,
}

/// Credentials for the TCP listener.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// The admin token.
    pub admin: Option<String>,
    /// The read-only token.
    pub read: Option<String>,
}

/// Constant-time comparison (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Every route: method, path pattern (`{x}` is one segment). The OpenAPI test checks these
/// against `openapi.json`.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/v1/services"),
    ("GET", "/v1/services/{service}"),
    ("DELETE", "/v1/services/{service}"),
    ("POST", "/v1/services/{service}/nat-ips"),
    ("DELETE", "/v1/services/{service}/nat-ips/{ip}"),
    ("GET", "/v1/endpoints"),
    ("POST", "/v1/endpoints"),
    ("GET", "/v1/endpoints/{endpoint}"),
    ("DELETE", "/v1/endpoints/{endpoint}"),
    ("POST", "/v1/endpoints/{endpoint}/approve"),
    ("POST", "/v1/endpoints/{endpoint}/reject"),
    ("GET", "/v1/flows"),
    ("GET", "/v1/counters"),
];

/// A decoded request.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Health,
    Metrics,
    ListServices,
    ShowService(String),
    DeleteService(String),
    AddNatIp(String),
    RemoveNatIp(String, String),
    ListEndpoints,
    CreateEndpoint,
    ShowEndpoint(String),
    DeleteEndpoint(String),
    Approve(String),
    Reject(String),
    Flows,
    Counters,
}

impl Route {
    fn mutates(&self) -> bool {
        matches!(
            self,
            Route::DeleteService(_)
                | Route::AddNatIp(_)
                | Route::RemoveNatIp(..)
                | Route::CreateEndpoint
                | Route::DeleteEndpoint(_)
                | Route::Approve(_)
                | Route::Reject(_)
        )
    }
}

fn method_name(m: &Method) -> &str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Head => "HEAD",
        Method::Other(s) => s.as_str(),
    }
}

/// Decodes method and path; `Err` is the response (404, or 405 with the allowed methods).
fn route(method: &str, path: &str) -> Result<Route, Response> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let allowed: &[&str];
    let r = match segments.as_slice() {
        ["healthz"] => {
            allowed = &["GET"];
            (method == "GET").then_some(Route::Health)
        }
        ["metrics"] => {
            allowed = &["GET"];
            (method == "GET").then_some(Route::Metrics)
        }
        ["v1", "services"] => {
            allowed = &["GET"];
            (method == "GET").then_some(Route::ListServices)
        }
        ["v1", "services", s] => {
            allowed = &["GET", "DELETE"];
            match method {
                "GET" => Some(Route::ShowService(s.to_string())),
                "DELETE" => Some(Route::DeleteService(s.to_string())),
                _ => None,
            }
        }
        ["v1", "services", s, "nat-ips"] => {
            allowed = &["POST"];
            (method == "POST").then(|| Route::AddNatIp(s.to_string()))
        }
        ["v1", "services", s, "nat-ips", ip] => {
            allowed = &["DELETE"];
            (method == "DELETE").then(|| Route::RemoveNatIp(s.to_string(), ip.to_string()))
        }
        ["v1", "endpoints"] => {
            allowed = &["GET", "POST"];
            match method {
                "GET" => Some(Route::ListEndpoints),
                "POST" => Some(Route::CreateEndpoint),
                _ => None,
            }
        }
        ["v1", "endpoints", e] => {
            allowed = &["GET", "DELETE"];
            match method {
                "GET" => Some(Route::ShowEndpoint(e.to_string())),
                "DELETE" => Some(Route::DeleteEndpoint(e.to_string())),
                _ => None,
            }
        }
        ["v1", "endpoints", e, "approve"] => {
            allowed = &["POST"];
            (method == "POST").then(|| Route::Approve(e.to_string()))
        }
        ["v1", "endpoints", e, "reject"] => {
            allowed = &["POST"];
            (method == "POST").then(|| Route::Reject(e.to_string()))
        }
        ["v1", "flows"] => {
            allowed = &["GET"];
            (method == "GET").then_some(Route::Flows)
        }
        ["v1", "counters"] => {
            allowed = &["GET"];
            (method == "GET").then_some(Route::Counters)
        }
        _ => return Err(Response::error(404, &format!("no such route: {path}"))),
    };
    r.ok_or_else(|| {
        let mut resp =
            Response::error(405, &format!("{method} is not allowed on {path}; allowed: {}", allowed.join(", ")));
        resp.headers.push(("Allow".into(), allowed.join(", ")));
        resp
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NatIpBody {
    ip: Ipv4Addr,
}

/// The API handler: owns the control plane.
#[derive(Debug)]
pub struct Api {
    control: Control,
    telemetry: Arc<Telemetry>,
    counters: Vec<Arc<SharedCounters>>,
    tokens: Tokens,
    status_counts: BTreeMap<u16, u64>,
    server_counts: Option<StatusCounts>,
    last_created: Option<(Instant, u64)>,
    new_flows_per_second: f64,
}

fn json_response<T: serde::Serialize>(status: u16, value: &T) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => Response::json(status, body),
        Err(e) => Response::error(500, &format!("internal: {e}")),
    }
}

fn parse_body<'a, T: Deserialize<'a>>(request: &'a Request) -> Result<T, Response> {
    if request.body.is_empty() {
        return Err(Response::error(400, "a JSON body is required"));
    }
    serde_json::from_slice(&request.body).map_err(|e| Response::error(400, &format!("bad JSON body: {e}")))
}

fn error(e: ControlError) -> Response {
    Response::error(e.status(), &e.to_string())
}

impl Api {
    /// The handler over `control`, reading worker reports and counters.
    pub fn new(control: Control, telemetry: Arc<Telemetry>, counters: Vec<Arc<SharedCounters>>, tokens: Tokens) -> Api {
        Api {
            control,
            telemetry,
            counters,
            tokens,
            status_counts: BTreeMap::new(),
            server_counts: None,
            last_created: None,
            new_flows_per_second: 0.0,
        }
    }

    /// The control plane.
    pub fn control(&mut self) -> &mut Control {
        &mut self.control
    }

    /// Responses this handler produced so far, by status.
    pub fn status_counts(&self) -> &BTreeMap<u16, u64> {
        &self.status_counts
    }

    /// Makes `overlink_admin_requests_total` report every response the server sent, including
    /// those it answers without the handler (413, 431, 408, 400 for malformed HTTP, 503 beyond the
    /// connection limit). Call it with [`admin_http::Server::status_counts_handle`] after binding;
    /// without it the metric only counts the handler's own responses.
    pub fn count_server_responses(&mut self, counts: StatusCounts) {
        self.server_counts = Some(counts);
    }

    /// The datapath counters summed over workers.
    pub fn counters(&self) -> Counters {
        let mut total = Counters::default();
        for c in &self.counters {
            total.add(&c.read());
        }
        total
    }

    /// Who is asking, and what they may do: checked before the route is even decoded, so a
    /// caller without credentials learns nothing about which routes exist.
    fn authenticate(&self, request: &Request) -> Result<(Actor, Role), Response> {
        let (who, role) = match &request.peer {
            Peer::Unix { uid, .. } => (format!("unix:uid={}", uid.map_or("?".into(), |u| u.to_string())), Role::Admin),
            Peer::Tcp(addr) => {
                let Some(token) = request.bearer_token() else {
                    let mut r = Response::error(401, "a bearer token is required: Authorization: Bearer <token>");
                    r.headers.push(("WWW-Authenticate".into(), "Bearer".into()));
                    return Err(r);
                };
                let matches =
                    |t: &Option<String>| t.as_ref().is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
                if matches(&self.tokens.admin) {
                    (format!("tcp:{addr}:admin"), Role::Admin)
                } else if matches(&self.tokens.read) {
                    (format!("tcp:{addr}:read"), Role::Read)
                } else {
                    let mut r = Response::error(401, "the bearer token is not valid");
                    r.headers.push(("WWW-Authenticate".into(), "Bearer error=\"invalid_token\"".into()));
                    return Err(r);
                }
            }
        };
        Ok((Actor(who), role))
    }

    fn dispatch(&mut self, request: &Request) -> Response {
        let (actor, role) = match self.authenticate(request) {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        // HEAD is answered like GET (the server sends no body).
        let method = match method_name(&request.method) {
            "HEAD" => "GET",
            m => m,
        };
        let route = match route(method, &request.path) {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        if route.mutates() && role != Role::Admin {
            return Response::error(403, "this token may only read; changes need the admin token");
        }
        match route {
            Route::Health => json_response(200, &json!({"status": "ok"})),
            Route::Metrics => {
                let mut r = Response::text(200, self.metrics());
                for h in r.headers.iter_mut().filter(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                    h.1 = "text/plain; version=0.0.4; charset=utf-8".into();
                }
                r
            }
            Route::ListServices => json_response(200, &self.control.services()),
            Route::ShowService(s) => match self.control.service(&s) {
                Ok(v) => json_response(200, &v),
                Err(e) => error(e),
            },
            Route::DeleteService(s) => match self.control.delete_service(&actor, &s) {
                Ok(()) => Response::json(200, b"{\"deleted\": true}".to_vec()),
                Err(e) => error(e),
            },
            Route::AddNatIp(s) => {
                let body: NatIpBody = match parse_body(request) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                match self.control.add_nat_ip(&actor, &s, body.ip) {
                    Ok(v) => json_response(201, &v),
                    Err(e) => error(e),
                }
            }
            Route::RemoveNatIp(s, ip) => {
                let Ok(ip) = ip.parse::<Ipv4Addr>() else {
                    return Response::error(400, &format!("`{ip}` is not an IPv4 address"));
                };
                let holding = self.telemetry.flows_holding(ip);
                match self.control.remove_nat_ip(&actor, &s, ip, holding) {
                    Ok(v) => json_response(200, &v),
                    Err(e) => error(e),
                }
            }
            Route::ListEndpoints => {
                let mut list = self.control.endpoints();
                if let Some(s) = request.query("service") {
                    list.retain(|e| e.service == s || e.service_alias == s);
                }
                if let Some(s) = request.query("state") {
                    list.retain(|e| e.state == s);
                }
                if let Some(a) = request.query("account") {
                    list.retain(|e| e.account == a);
                }
                json_response(200, &list)
            }
            Route::CreateEndpoint => {
                let body: CreateEndpoint = match parse_body(request) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                match self.control.create_endpoint(&actor, body) {
                    Ok(v) => json_response(201, &v),
                    Err(e) => error(e),
                }
            }
            Route::ShowEndpoint(e) => match self.control.endpoint(&e) {
                Ok(v) => json_response(200, &v),
                Err(e) => error(e),
            },
            Route::DeleteEndpoint(e) => match self.control.delete_endpoint(&actor, &e) {
                Ok(()) => Response::json(200, b"{\"deleted\": true}".to_vec()),
                Err(e) => error(e),
            },
            Route::Approve(e) => match self.control.approve(&actor, &e) {
                Ok(v) => json_response(200, &v),
                Err(e) => error(e),
            },
            Route::Reject(e) => {
                let body: RejectBody = match parse_body(request) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                if body.reason.trim().is_empty() {
                    return Response::error(400, "reason: say why the endpoint is rejected");
                }
                match self.control.reject(&actor, &e, &body.reason) {
                    Ok(v) => json_response(200, &v),
                    Err(e) => error(e),
                }
            }
            Route::Flows => self.flows(request),
            Route::Counters => {
                let c = self.counters();
                let events: BTreeMap<&str, u64> = Event::ALL.iter().map(|e| (e.name(), c.get(*e))).collect();
                let drops: BTreeMap<&str, u64> = DropReason::ALL.iter().map(|r| (r.name(), c.dropped(*r))).collect();
                json_response(200, &json!({"events": events, "drops": drops}))
            }
        }
    }

    fn flows(&self, request: &Request) -> Response {
        let limit = match request.query("limit").map(str::parse::<usize>) {
            None => 100,
            Some(Ok(n)) if (1..=FLOWS_LIMIT_MAX).contains(&n) => n,
            Some(_) => return Response::error(400, &format!("limit: give a number from 1 to {FLOWS_LIMIT_MAX}")),
        };
        let endpoints = self.control.endpoints();
        let link_of = |name: &str| endpoints.iter().find(|e| e.name == name).map(|e| e.link_id);
        let endpoint_filter = match request.query("endpoint") {
            Some(name) => match link_of(name) {
                Some(id) => Some(id),
                None => return Response::error(404, &format!("no endpoint `{name}`")),
            },
            None => None,
        };
        let service_filter: Option<Vec<u32>> = match request.query("service") {
            Some(s) => match self.control.service(s) {
                Ok(v) => Some(endpoints.iter().filter(|e| e.service == v.name).map(|e| e.link_id).collect()),
                Err(e) => return error(e),
            },
            None => None,
        };
        let protocol = request.query("protocol").map(str::to_ascii_lowercase);
        if let Some(p) = &protocol {
            if !["tcp", "udp", "icmp"].contains(&p.as_str()) {
                return Response::error(400, "protocol: one of tcp, udp, icmp");
            }
        }
        let mut out = Vec::new();
        'reports: for report in self.telemetry.reports() {
            for f in report.sample {
                if endpoint_filter.is_some_and(|id| id != f.link_id)
                    || service_filter.as_ref().is_some_and(|ids| !ids.contains(&f.link_id))
                    || protocol.as_ref().is_some_and(|p| p != &format!("{:?}", f.protocol).to_ascii_lowercase())
                {
                    continue;
                }
                let endpoint =
                    endpoints.iter().find(|e| e.link_id == f.link_id).map(|e| e.name.clone()).unwrap_or_default();
                out.push(json!({
                    "worker": f.worker,
                    "protocol": format!("{:?}", f.protocol).to_ascii_lowercase(),
                    "endpoint": endpoint,
                    "link_id": f.link_id,
                    "consumer": f.consumer.to_string(),
                    "endpoint_address": f.endpoint.to_string(),
                    "nat": f.nat.to_string(),
                    "backend": f.backend.to_string(),
                    "state": f.state,
                    "packets_to_service": f.packets[0],
                    "packets_to_consumer": f.packets[1],
                    "bytes_to_service": f.bytes[0],
                    "bytes_to_consumer": f.bytes[1],
                }));
                if out.len() >= limit {
                    break 'reports;
                }
            }
        }
        json_response(200, &json!({"flows": out, "limit": limit}))
    }

    fn metrics(&mut self) -> String {
        let c = self.counters();
        let links = self.telemetry.links();
        let reports = self.telemetry.reports();
        let endpoints = self.control.endpoints();
        let services = self.control.services();
        let mut e = Exposition::default();

        let created_total: u64 = c.get(Event::FlowsCreated);
        let now = Instant::now();
        if let Some((at, before)) = self.last_created {
            let secs = now.duration_since(at).as_secs_f64();
            if secs >= 0.5 {
                self.new_flows_per_second = created_total.saturating_sub(before) as f64 / secs;
                self.last_created = Some((now, created_total));
            }
        } else {
            self.last_created = Some((now, created_total));
        }

        e.family("overlink_packets_total", "counter", "Packets forwarded, per service, endpoint and direction.");
        for ep in &endpoints {
            let s = links.get(&ep.link_id).copied().unwrap_or_default();
            for (d, dir) in ["to_service", "to_consumer"].iter().enumerate() {
                e.sample(
                    "overlink_packets_total",
                    &[("service", &ep.service), ("endpoint", &ep.name), ("direction", dir)],
                    s.packets[d] as f64,
                );
            }
        }
        e.family("overlink_bytes_total", "counter", "IP bytes forwarded, per service, endpoint and direction.");
        for ep in &endpoints {
            let s = links.get(&ep.link_id).copied().unwrap_or_default();
            for (d, dir) in ["to_service", "to_consumer"].iter().enumerate() {
                e.sample(
                    "overlink_bytes_total",
                    &[("service", &ep.service), ("endpoint", &ep.name), ("direction", dir)],
                    s.bytes[d] as f64,
                );
            }
        }
        e.family("overlink_endpoint_active_flows", "gauge", "Live flows per service and endpoint.");
        for ep in &endpoints {
            let s = links.get(&ep.link_id).copied().unwrap_or_default();
            e.sample(
                "overlink_endpoint_active_flows",
                &[("service", &ep.service), ("endpoint", &ep.name)],
                s.active_flows as f64,
            );
        }
        e.family("overlink_endpoint_flows_created_total", "counter", "Flows created per service and endpoint.");
        for ep in &endpoints {
            let s = links.get(&ep.link_id).copied().unwrap_or_default();
            e.sample(
                "overlink_endpoint_flows_created_total",
                &[("service", &ep.service), ("endpoint", &ep.name)],
                s.flows_created as f64,
            );
        }
        e.family("overlink_endpoints", "gauge", "Endpoints per connection state.");
        for state in ["pending", "approved", "rejected", "disconnected"] {
            let n = endpoints.iter().filter(|ep| ep.state == state).count();
            e.sample("overlink_endpoints", &[("state", state)], n as f64);
        }
        e.family("overlink_active_flows", "gauge", "Live flows over all workers.");
        e.sample("overlink_active_flows", &[], reports.iter().map(|r| r.active_flows).sum::<u64>() as f64);
        e.family("overlink_flows_created_total", "counter", "Flows created over all workers.");
        e.sample("overlink_flows_created_total", &[], created_total as f64);
        e.family("overlink_new_flows_per_second", "gauge", "Flows created per second between the last two scrapes.");
        e.sample("overlink_new_flows_per_second", &[], self.new_flows_per_second);
        e.family("overlink_drops_total", "counter", "Packets dropped, by reason.");
        for r in DropReason::ALL {
            e.sample("overlink_drops_total", &[("reason", r.name())], c.dropped(*r) as f64);
        }
        e.family("overlink_datapath_events_total", "counter", "Datapath events: received, forwarded, local, ...");
        for ev in Event::ALL {
            e.sample("overlink_datapath_events_total", &[("event", ev.name())], c.get(*ev) as f64);
        }
        e.family("overlink_nat_ports_used", "gauge", "NAT ports in use per NAT IP (over all workers).");
        let mut usage: BTreeMap<Ipv4Addr, (u64, u64)> = BTreeMap::new();
        for r in &reports {
            for (ip, &(used, capacity, _)) in &r.nat_ips {
                let u = usage.entry(*ip).or_default();
                u.0 += u64::from(used);
                u.1 += u64::from(capacity);
            }
        }
        let service_of = |ip: &Ipv4Addr| {
            services.iter().find(|s| s.nat_ips.contains(ip)).map(|s| s.name.clone()).unwrap_or_default()
        };
        for (ip, (used, _)) in &usage {
            e.sample(
                "overlink_nat_ports_used",
                &[("service", &service_of(ip)), ("nat_ip", &ip.to_string())],
                *used as f64,
            );
        }
        e.family("overlink_nat_ports_capacity", "gauge", "NAT ports available per NAT IP (over all workers).");
        for (ip, (_, capacity)) in &usage {
            e.sample(
                "overlink_nat_ports_capacity",
                &[("service", &service_of(ip)), ("nat_ip", &ip.to_string())],
                *capacity as f64,
            );
        }
        e.family("overlink_admin_requests_total", "counter", "Admin API responses, by status.");
        let statuses = self.server_counts.as_ref().map_or_else(|| self.status_counts.clone(), StatusCounts::snapshot);
        for (status, n) in &statuses {
            e.sample("overlink_admin_requests_total", &[("status", &status.to_string())], *n as f64);
        }
        e.finish()
    }
}

impl Handler for Api {
    fn handle(&mut self, request: &Request) -> Response {
        let response = self.dispatch(request);
        *self.status_counts.entry(response.status).or_default() += 1;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_decode_and_wrong_methods_are_405() {
        assert_eq!(route("GET", "/v1/endpoints/e1"), Ok(Route::ShowEndpoint("e1".into())));
        assert_eq!(route("POST", "/v1/endpoints/e1/approve"), Ok(Route::Approve("e1".into())));
        assert_eq!(
            route("DELETE", "/v1/services/web/nat-ips/1.2.3.4"),
            Ok(Route::RemoveNatIp("web".into(), "1.2.3.4".into()))
        );
        assert_eq!(route("PUT", "/v1/endpoints").unwrap_err().status, 405);
        assert_eq!(route("GET", "/v2/nothing").unwrap_err().status, 404);
        for (m, p) in ROUTES {
            let concrete = p.replace("{service}", "web").replace("{endpoint}", "e1").replace("{ip}", "1.2.3.4");
            assert!(route(m, &concrete).is_ok(), "{m} {p}");
        }
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secre"));
    }
}
