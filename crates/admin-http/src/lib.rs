//! A small, hardened HTTP/1.1 server for the overlink admin API.
//!
//! The admin API is a handful of JSON calls on a unix socket (optionally TCP with a bearer token):
//! too little to justify an async runtime, and too exposed to trust a client to be well-behaved.
//! So this is one thread on `mio` with `httparse`, generic over a [`Handler`] that maps a
//! [`Request`] to a [`Response`]; the routes live elsewhere.
//!
//! What it promises:
//! - HTTP/1.1 keep-alive, `Connection: close`, pipelined requests answered in order, HTTP/1.0.
//! - Bodies framed by `Content-Length` only: `Transfer-Encoding: chunked` is answered 411, any other
//!   transfer coding 501. `Expect: 100-continue` is honoured.
//! - Every limit in [`Limits`] is enforced: 431 for an overlong head, 413 for a body over the limit
//!   (before reading it), 408 when a request does not arrive in time, 503 beyond `max_connections`,
//!   400 with the parser's reason for anything malformed. Each of these closes the connection.
//! - Every response carries `Content-Length` (except 204), `Content-Type`, and `Connection: close`
//!   when the server closes afterwards. Every status sent is counted ([`Server::status_counts`]).
//! - No input makes it panic; memory per connection is bounded by one request.
//! - The unix socket is created with mode 0600 and removed on drop; unix peers carry their uid and
//!   pid ([`Peer::Unix`]).
//!
//! ```no_run
//! use admin_http::{Limits, Listeners, Request, Response, Server};
//!
//! let listeners = Listeners { unix: Some("/run/overlink/admin.sock".into()), tcp: None };
//! let handler = |request: &Request| match request.path.as_str() {
//!     "/v1/health" => Response::json(200, r#"{"ok": true}"#),
//!     _ => Response::error(404, "no such route"),
//! };
//! let mut server = Server::bind(&listeners, Limits::default(), handler)?;
//! let shutdown = server.shutdown_handle(); // give this to whoever stops the gateway
//! server.run()?;
//! # drop(shutdown);
//! # Ok::<(), admin_http::ServerError>(())
//! ```

#![deny(unsafe_code)]

mod request;
mod response;
mod server;
mod unix_socket;

pub use request::{Method, Peer, Request};
pub use response::{push_json_string, Response};
pub use server::{Handler, Limits, Listeners, Server, ServerError, Shutdown, StatusCounts};
