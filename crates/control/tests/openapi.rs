//! `openapi.json` describes exactly the routes the API serves: the same (method, path) pairs as
//! `control::ROUTES`, each with a success status and the error statuses the route can return, a
//! body schema where it takes one, and only `$ref`s that resolve. (`tests/api.rs` checks the
//! other direction against a running server: every documented status is one the route returns.)

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// Every operation: (METHOD, path) → operation object.
fn operations(spec: &Value) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (path, item) in spec["paths"].as_object().expect("paths is an object") {
        for (key, operation) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&key.as_str()) {
                out.insert((key.to_ascii_uppercase(), path.clone()), operation.clone());
            } else {
                assert!(
                    ["parameters", "summary", "description"].contains(&key.as_str()),
                    "{path}: unexpected key {key}"
                );
            }
        }
    }
    out
}

/// What each route can answer (success first), from reading `api.rs` and `control.rs`.
/// 401 applies to every route on TCP; 403 to every mutation with the read token; 413 to every
/// route that takes a body; 503 to every mutation when the audit log cannot be written.
fn expected_statuses() -> BTreeMap<(&'static str, &'static str), Vec<u16>> {
    BTreeMap::from([
        (("GET", "/healthz"), vec![200, 401]),
        (("GET", "/metrics"), vec![200, 401]),
        (("GET", "/v1/services"), vec![200, 401]),
        (("GET", "/v1/services/{service}"), vec![200, 401, 404]),
        (("DELETE", "/v1/services/{service}"), vec![200, 401, 403, 404, 503]),
        (("POST", "/v1/services/{service}/nat-ips"), vec![201, 400, 401, 403, 404, 409, 413, 503]),
        (("DELETE", "/v1/services/{service}/nat-ips/{ip}"), vec![200, 400, 401, 403, 404, 409, 503]),
        (("GET", "/v1/endpoints"), vec![200, 401]),
        (("POST", "/v1/endpoints"), vec![201, 400, 401, 403, 404, 409, 413, 503]),
        (("GET", "/v1/endpoints/{endpoint}"), vec![200, 401, 404]),
        (("DELETE", "/v1/endpoints/{endpoint}"), vec![200, 401, 403, 404, 503]),
        (("POST", "/v1/endpoints/{endpoint}/approve"), vec![200, 401, 403, 404, 409, 503]),
        (("POST", "/v1/endpoints/{endpoint}/reject"), vec![200, 400, 401, 403, 404, 409, 413, 503]),
        (("GET", "/v1/flows"), vec![200, 400, 401, 404]),
        (("GET", "/v1/counters"), vec![200, 401]),
    ])
}

/// Resolves a local `$ref` (`#/a/b`) as a JSON pointer.
fn resolve<'a>(spec: &'a Value, reference: &str) -> Option<&'a Value> {
    spec.pointer(reference.strip_prefix('#')?)
}

/// Follows `$ref`s until an object without one.
fn deref<'a>(spec: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match value.get("$ref").and_then(Value::as_str) {
            Some(r) => value = resolve(spec, r).unwrap_or_else(|| panic!("dangling $ref {r}")),
            None => return value,
        }
    }
    panic!("$ref cycle")
}

fn collect_refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push((at.to_owned(), v.as_str().expect("$ref is a string").to_owned()));
                } else {
                    collect_refs(v, &format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_is_openapi_3_0_3_with_a_bearer_scheme_for_tcp() {
    let spec = spec();
    assert_eq!(spec["openapi"], "3.0.3");
    assert!(spec["info"]["title"].is_string() && spec["info"]["version"].is_string());
    let scheme = &spec["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let said = scheme["description"].as_str().unwrap_or_default();
    assert!(said.contains("unix socket needs no token"), "the scheme says the unix socket needs none: {said}");
    assert_eq!(spec["security"], serde_json::json!([{"bearer": []}]));
    let description = spec["info"]["description"].as_str().unwrap_or_default();
    for needle in ["0600", "405", "`Allow`", "413", "503", "audit log", "WWW-Authenticate"] {
        assert!(description.contains(needle), "info.description mentions {needle}");
    }
    // 405 is path-wide, not per operation: described once, with its Allow header.
    assert!(spec["components"]["responses"]["MethodNotAllowed"]["headers"]["Allow"].is_object());
    assert!(spec["components"]["responses"]["Unauthorized"]["headers"]["WWW-Authenticate"].is_object());
}

#[test]
fn the_operations_are_exactly_the_routes() {
    let spec = spec();
    let documented: BTreeSet<(String, String)> = operations(&spec).into_keys().collect();
    let served: BTreeSet<(String, String)> =
        control::ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(control::ROUTES.len(), served.len(), "ROUTES has no duplicates");
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not documented: {missing:?}; documented but not served: {extra:?}"
    );
    let table: BTreeSet<(String, String)> =
        expected_statuses().into_keys().map(|(m, p)| (m.to_owned(), p.to_owned())).collect();
    assert_eq!(table, served, "this test's status table covers every route");
}

#[test]
fn every_operation_lists_a_success_and_the_errors_its_route_can_return() {
    let spec = spec();
    let ops = operations(&spec);
    let mut ids = BTreeSet::new();
    for ((method, path), expected) in expected_statuses() {
        let op = &ops[&(method.to_owned(), path.to_owned())];
        assert!(ids.insert(op["operationId"].as_str().expect("operationId").to_owned()), "operationId unique");
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: no responses"));
        let listed: BTreeSet<u16> = responses
            .keys()
            .map(|k| k.parse().unwrap_or_else(|_| panic!("{method} {path}: status `{k}` is not a number")))
            .collect();
        assert!(listed.iter().any(|s| (200..300).contains(s)), "{method} {path}: no 2xx");
        let expected: BTreeSet<u16> = expected.into_iter().collect();
        assert_eq!(listed, expected, "{method} {path}: documented statuses");
        for (status, response) in responses {
            let response = deref(&spec, response);
            assert!(response["description"].is_string(), "{method} {path} {status}: description");
            let content = response["content"].as_object().unwrap_or_else(|| panic!("{method} {path} {status}"));
            if status.starts_with('2') {
                continue;
            }
            let schema = &content["application/json"]["schema"];
            assert_eq!(schema["$ref"], "#/components/schemas/Error", "{method} {path} {status}: error body");
        }
        let mutates = method != "GET";
        assert_eq!(listed.contains(&403), mutates, "{method} {path}: 403 exactly on mutations");
        assert_eq!(listed.contains(&503), mutates, "{method} {path}: 503 (audit log) exactly on mutations");
        assert!(listed.contains(&401), "{method} {path}: 401 on TCP without a valid token");
        if listed.contains(&401) {
            let r = deref(&spec, &responses["401"]);
            assert!(r["headers"]["WWW-Authenticate"].is_object(), "{method} {path}: 401 documents WWW-Authenticate");
        }
    }
}

#[test]
fn path_parameters_and_request_bodies_are_declared() {
    let spec = spec();
    let with_body: BTreeMap<(&str, &str), &str> = BTreeMap::from([
        (("POST", "/v1/endpoints"), "CreateEndpoint"),
        (("POST", "/v1/services/{service}/nat-ips"), "NatIpRequest"),
        (("POST", "/v1/endpoints/{endpoint}/reject"), "RejectRequest"),
    ]);
    for ((method, path), op) in operations(&spec) {
        // Every `{param}` in the path is a required path parameter (on the path item or the operation).
        let declared: BTreeSet<String> = spec["paths"][&path]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(op["parameters"].as_array().into_iter().flatten())
            .map(|p| deref(&spec, p))
            .filter(|p| p["in"] == "path")
            .inspect(|p| assert_eq!(p["required"], true, "{method} {path}: path parameters are required"))
            .map(|p| p["name"].as_str().expect("name").to_owned())
            .collect();
        let in_path: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, in_path, "{method} {path}: path parameters");
        match with_body.get(&(method.as_str(), path.as_str())) {
            Some(schema) => {
                let body = &op["requestBody"];
                assert_eq!(body["required"], true, "{method} {path}");
                assert_eq!(
                    body["content"]["application/json"]["schema"]["$ref"],
                    format!("#/components/schemas/{schema}")
                );
            }
            None => assert!(op.get("requestBody").is_none(), "{method} {path} takes no body"),
        }
    }
    // The bodies match the structs serde decodes (deny_unknown_fields: the property lists are exact).
    let schemas = &spec["components"]["schemas"];
    let props = |name: &str| -> BTreeSet<String> {
        assert_eq!(schemas[name]["additionalProperties"], false, "{name} refuses unknown fields like the server");
        schemas[name]["properties"].as_object().expect(name).keys().cloned().collect()
    };
    let required = |name: &str| -> BTreeSet<String> {
        schemas[name]["required"].as_array().expect(name).iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    let set = |items: &[&str]| -> BTreeSet<String> { items.iter().map(|s| (*s).to_owned()).collect() };
    assert_eq!(props("CreateEndpoint"), set(&["name", "account", "network", "address", "ports", "service", "message"]));
    assert_eq!(required("CreateEndpoint"), set(&["account", "network", "address", "service"]));
    assert_eq!(props("RejectRequest"), set(&["reason"]));
    assert_eq!(required("RejectRequest"), set(&["reason"]));
    assert_eq!(props("NatIpRequest"), set(&["ip"]));
    assert_eq!(required("NatIpRequest"), set(&["ip"]));
    // The error body is `{"error": {"status", "message"}}`.
    let error = &schemas["Error"];
    assert_eq!(required("Error"), set(&["error"]));
    let inner: BTreeSet<String> = error["properties"]["error"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(inner, set(&["status", "message"]));
    for name in ["ServiceView", "EndpointView", "Flow", "FlowList", "Counters", "Error"] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
}

#[test]
fn every_ref_resolves() {
    let spec = spec();
    let mut refs = Vec::new();
    collect_refs(&spec, "#", &mut refs);
    assert!(refs.len() > 50, "the document uses $refs ({})", refs.len());
    for (at, r) in &refs {
        assert!(r.starts_with("#/components/"), "{at}: only local component refs: {r}");
        assert!(resolve(&spec, r).is_some_and(Value::is_object), "{at}: $ref {r} does not resolve");
    }
    // And every component is used, so nothing documented is dead — except the path-wide 405.
    let used: BTreeSet<&str> = refs.iter().map(|(_, r)| r.as_str()).collect();
    for kind in ["schemas", "responses", "parameters"] {
        for name in spec["components"][kind].as_object().unwrap().keys() {
            let r = format!("#/components/{kind}/{name}");
            if r != "#/components/responses/MethodNotAllowed" {
                assert!(used.contains(r.as_str()), "{r} is never used");
            }
        }
    }
}
