//! The server against real loopback sockets: a unix socket in a temporary directory and TCP on
//! 127.0.0.1 with a kernel-chosen port, served from a thread with a small routing handler.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use admin_http::{Limits, Listeners, Peer, Request, Response, Server, ServerError, Shutdown, StatusCounts};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "admin-http-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Routes: `/peer` describes the client, `/echo` describes the request, `/close` asks to close,
/// `/missing` is a 404, anything else a 200 `{"path": ...}`.
fn route(request: &Request) -> Response {
    match request.path.as_str() {
        "/peer" => Response::text(
            200,
            match &request.peer {
                Peer::Unix { uid, pid } => format!("unix uid={uid:?} pid={pid:?}"),
                Peer::Tcp(addr) => format!("tcp {addr}"),
            },
        ),
        "/echo" => {
            let mut text = format!("{} {}", request.method, request.path);
            for (key, value) in &request.query {
                text.push_str(&format!(" {key}={value}"));
            }
            text.push_str(" body=");
            text.push_str(&String::from_utf8_lossy(&request.body));
            if let Some(token) = request.bearer_token() {
                text.push_str(&format!(" token={token}"));
            }
            Response::text(200, text)
        }
        "/close" => Response::text(200, "bye").with_header("Connection", "close"),
        "/missing" => Response::error(404, "no such route"),
        path => {
            let mut body = String::from("{\"path\": ");
            admin_http::push_json_string(&mut body, path);
            body.push('}');
            Response::json(200, body)
        }
    }
}

struct TestServer {
    unix: PathBuf,
    tcp: SocketAddr,
    shutdown: Shutdown,
    counts: StatusCounts,
    finished: mpsc::Receiver<Result<(), ServerError>>,
    thread: Option<thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl TestServer {
    fn start(limits: Limits) -> TestServer {
        let dir = TempDir::new();
        let unix = dir.join("admin.sock");
        let listeners = Listeners { unix: Some(unix.clone()), tcp: Some("127.0.0.1:0".parse().unwrap()) };
        let mut server = Server::bind(&listeners, limits, route).unwrap();
        let tcp = server.local_tcp_addr().unwrap();
        assert_ne!(tcp.port(), 0);
        let shutdown = server.shutdown_handle();
        let counts = server.status_counts_handle();
        let (done, finished) = mpsc::channel();
        let thread = thread::spawn(move || {
            let result = server.run();
            drop(server);
            let _ = done.send(result);
        });
        TestServer { unix, tcp, shutdown, counts, finished, thread: Some(thread), _dir: dir }
    }

    fn short_timeouts() -> TestServer {
        TestServer::start(Limits { request_timeout: Duration::from_millis(300), ..Limits::default() })
    }

    fn unix_client(&self) -> Client {
        Client::new(Box::new(UnixStream::connect(&self.unix).unwrap()))
    }

    fn tcp_client(&self) -> Client {
        Client::new(Box::new(TcpStream::connect(self.tcp).unwrap()))
    }

    fn clients(&self) -> [Client; 2] {
        [self.unix_client(), self.tcp_client()]
    }

    /// Stops the server and returns what `run` returned.
    fn stop(mut self) -> Result<(), ServerError> {
        self.shutdown.shutdown();
        let result = self.finished.recv_timeout(Duration::from_secs(5)).expect("run did not return after shutdown");
        self.thread.take().unwrap().join().unwrap();
        assert!(!self.unix.exists(), "the socket file outlived the server");
        result
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

trait Socket: Read + Write + Send {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Socket for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl Socket for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// A raw HTTP client that reads responses off a buffered stream (so pipelined answers work).
struct Client {
    socket: Box<dyn Socket>,
    buffer: Vec<u8>,
}

impl Client {
    fn new(socket: Box<dyn Socket>) -> Client {
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Client { socket, buffer: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).unwrap();
    }

    fn request(&mut self, bytes: &[u8]) -> Reply {
        self.send(bytes);
        self.reply()
    }

    fn read_more(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let count = self.socket.read(&mut chunk).expect("server did not answer in time");
        self.buffer.extend_from_slice(&chunk[..count]);
        count
    }

    /// The next response, parsed strictly: it must carry Content-Length (unless 204).
    fn reply(&mut self) -> Reply {
        self.read_reply(true)
    }

    /// The next response to a HEAD request: Content-Length is there, the body is not.
    fn reply_without_body(&mut self) -> Reply {
        self.read_reply(false)
    }

    fn read_reply(&mut self, with_body: bool) -> Reply {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut slots);
            if let httparse::Status::Complete(head_len) = response.parse(&self.buffer).unwrap() {
                let status = response.code.unwrap();
                let headers: Vec<(String, String)> = response
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), String::from_utf8(h.value.to_vec()).unwrap()))
                    .collect();
                let length: usize = match headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("content-length")) {
                    Some((_, value)) => value.parse().unwrap(),
                    None if status == 204 || status == 100 => 0,
                    None => panic!("response without Content-Length: {headers:?}"),
                };
                let length = if with_body { length } else { 0 };
                while self.buffer.len() < head_len + length {
                    assert!(self.read_more() > 0, "connection closed mid-body");
                }
                let body = self.buffer[head_len..head_len + length].to_vec();
                self.buffer.drain(..head_len + length);
                return Reply { status, headers, body };
            }
            assert!(
                self.read_more() > 0,
                "connection closed before a response; got {:?}",
                String::from_utf8_lossy(&self.buffer)
            );
        }
    }

    /// Asserts the server closed the connection (after everything already buffered).
    fn assert_closed(&mut self) {
        assert!(self.buffer.is_empty(), "unexpected bytes {:?}", self.buffer);
        let mut chunk = [0u8; 64];
        match self.socket.read(&mut chunk) {
            Ok(0) => {}
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {}
            Ok(count) => panic!("expected close, got {:?}", String::from_utf8_lossy(&chunk[..count])),
            Err(error) => panic!("expected close, got {error}"),
        }
    }

    /// Asserts the connection is still open: nothing arrives within `wait`.
    fn assert_open(&mut self, wait: Duration) {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 64];
        match self.socket.read(&mut chunk) {
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            other => panic!("expected an open, quiet connection, got {other:?}"),
        }
        self.socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
}

fn assert_well_formed(reply: &Reply) {
    assert!(reply.header("content-type").is_some(), "{reply:?}");
    assert!(reply.header("content-length").is_some(), "{reply:?}");
}

/// Waits until `condition` holds (the server runs on another thread).
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn unix_socket_is_private_and_reports_the_peer() {
    let server = TestServer::start(Limits::default());
    let metadata = std::fs::metadata(&server.unix).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    // No temporary directory is left next to the socket.
    let entries: Vec<_> =
        std::fs::read_dir(server.unix.parent().unwrap()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("admin.sock")]);

    // The socket file is owned by our effective uid, which is what SO_PEERCRED reports for us.
    let reply = server.unix_client().request(b"GET /peer HTTP/1.1\r\nHost: admin\r\n\r\n");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), format!("unix uid=Some({}) pid=Some({})", metadata.uid(), std::process::id()));

    let mut tcp = server.tcp_client();
    let reply = tcp.request(b"GET /peer HTTP/1.1\r\nHost: admin\r\n\r\n");
    assert!(reply.text().starts_with("tcp 127.0.0.1:"), "{}", reply.text());
    server.stop().unwrap();
}

#[test]
fn get_and_post_with_a_body_on_both_listeners() {
    let server = TestServer::start(Limits::default());
    for mut client in server.clients() {
        let reply = client.request(
            b"GET /echo?name=a%20b&flag&x=1+2 HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer s3cret\r\n\r\n",
        );
        assert_eq!(reply.status, 200);
        assert_well_formed(&reply);
        assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(reply.text(), "GET /echo name=a b flag= x=1 2 body= token=s3cret");

        let reply = client.request(
            b"POST /echo HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"approve\": true}",
        );
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "POST /echo body={\"approve\": true}");

        let reply = client.request(b"DELETE /v1/endpoints/%E2%9C%93 HTTP/1.1\r\n\r\n");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.text(), "{\"path\": \"/v1/endpoints/\u{2713}\"}");
    }
    server.stop().unwrap();
}

#[test]
fn keep_alive_serves_several_requests_and_connection_close_ends_it() {
    let server = TestServer::start(Limits::default());
    for mut client in server.clients() {
        for round in 0..3 {
            let reply = client.request(format!("GET /echo?round={round} HTTP/1.1\r\n\r\n").as_bytes());
            assert_eq!(reply.status, 200);
            assert_eq!(reply.text(), format!("GET /echo round={round} body="));
            assert_eq!(reply.header("connection"), None);
        }
        client.assert_open(Duration::from_millis(50));
        let reply = client.request(b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("connection"), Some("close"));
        client.assert_closed();
    }
    // The handler can close too; HTTP/1.0 closes unless asked not to.
    let mut client = server.tcp_client();
    let reply = client.request(b"GET /close HTTP/1.1\r\n\r\n");
    assert_eq!((reply.status, reply.header("connection")), (200, Some("close")));
    client.assert_closed();
    let mut client = server.tcp_client();
    let reply = client.request(b"GET /echo HTTP/1.0\r\n\r\n");
    assert_eq!((reply.status, reply.header("connection")), (200, Some("close")));
    client.assert_closed();
    let mut client = server.tcp_client();
    let reply = client.request(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(reply.header("connection"), Some("keep-alive"));
    assert_eq!(client.request(b"GET /echo HTTP/1.0\r\n\r\n").status, 200);
    client.assert_closed();
    server.stop().unwrap();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::start(Limits::default());
    for mut client in server.clients() {
        client.send(
            b"GET /echo?n=1 HTTP/1.1\r\n\r\nPOST /echo?n=2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcHEAD /echo?n=3 HTTP/1.1\r\n\r\nGET /echo?n=4 HTTP/1.1\r\nConnection: close\r\n\r\nGET /echo?n=5 HTTP/1.1\r\n\r\n",
        );
        assert_eq!(client.reply().text(), "GET /echo n=1 body=");
        assert_eq!(client.reply().text(), "POST /echo n=2 body=abc");
        // HEAD: the length of what GET would send, and no body.
        let head = client.reply_without_body();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some("HEAD /echo n=3 body=".len().to_string().as_str()));
        let last = client.reply();
        assert_eq!(last.text(), "GET /echo n=4 body=");
        assert_eq!(last.header("connection"), Some("close"));
        // The request after `Connection: close` is not answered.
        client.assert_closed();
    }
    server.stop().unwrap();
}

#[test]
fn a_body_over_the_limit_is_413_and_closes() {
    let server = TestServer::start(Limits { max_body_bytes: 1024, ..Limits::default() });
    for mut client in server.clients() {
        // Refused on the announced length, before the body is read.
        let reply = client.request(b"POST /echo HTTP/1.1\r\nContent-Length: 1025\r\n\r\n");
        assert_eq!(reply.status, 413);
        assert_well_formed(&reply);
        assert_eq!(reply.header("connection"), Some("close"));
        assert!(reply.text().contains("over the limit of 1024 bytes"), "{}", reply.text());
        client.assert_closed();
    }
    // Exactly at the limit is fine.
    let mut client = server.tcp_client();
    let mut request = b"POST /echo HTTP/1.1\r\nContent-Length: 1024\r\n\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 1024));
    assert_eq!(client.request(&request).status, 200);
    server.stop().unwrap();
}

#[test]
fn a_one_mebibyte_body_arrives_whole() {
    let server = TestServer::start(Limits::default());
    let mut client = server.unix_client();
    let body = vec![b'z'; 1024 * 1024];
    let mut request = format!("PUT /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    request.extend_from_slice(&body);
    let reply = client.request(&request);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), "PUT /echo body=".len() + body.len());
    server.stop().unwrap();
}

#[test]
fn twenty_kib_of_headers_is_431() {
    let server = TestServer::start(Limits::default());
    for mut client in server.clients() {
        let mut request = b"GET /echo HTTP/1.1\r\n".to_vec();
        let mut index = 0;
        while request.len() < 20 * 1024 {
            request.extend_from_slice(format!("X-Fill-{index}: {}\r\n", "a".repeat(200)).as_bytes());
            index += 1;
        }
        request.extend_from_slice(b"\r\n");
        let reply = client.request(&request);
        assert_eq!(reply.status, 431);
        assert_well_formed(&reply);
        assert_eq!(reply.header("connection"), Some("close"));
        client.assert_closed();
    }
    server.stop().unwrap();
}

#[test]
fn garbage_is_400_with_the_parser_reason() {
    let server = TestServer::start(Limits::default());
    for mut client in server.clients() {
        let reply = client.request(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 definitely not http\r\n\r\n");
        assert_eq!(reply.status, 400);
        assert_well_formed(&reply);
        assert_eq!(reply.header("connection"), Some("close"));
        assert!(
            reply.text().starts_with(r#"{"error": {"status": 400, "message": "malformed request: "#),
            "{}",
            reply.text()
        );
        client.assert_closed();
    }
    let mut client = server.tcp_client();
    let reply = client.request(b"GET /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
    assert_eq!(reply.status, 400);
    client.assert_closed();
    server.stop().unwrap();
}

#[test]
fn chunked_bodies_are_refused_with_a_reason() {
    let server = TestServer::start(Limits::default());
    let mut client = server.tcp_client();
    let reply = client.request(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(reply.status, 411);
    assert!(reply.text().contains("Content-Length"), "{}", reply.text());
    client.assert_closed();
    server.stop().unwrap();
}

#[test]
fn expect_100_continue_gets_an_interim_answer() {
    let server = TestServer::start(Limits::default());
    let mut client = server.unix_client();
    let interim = client.request(b"POST /echo HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(interim.status, 100);
    let reply = client.request(b"data");
    assert_eq!((reply.status, reply.text().as_str()), (200, "POST /echo body=data"));
    server.stop().unwrap();
}

#[test]
fn slowloris_gets_408_after_the_request_timeout_and_is_closed() {
    let server = TestServer::short_timeouts();
    // One client stalls after half a request, another dribbles a byte every 50 ms: the timeout
    // covers the whole request, so activity does not extend it.
    let mut stalled = server.tcp_client();
    let mut dribbling = server.unix_client();
    let start = Instant::now();
    stalled.send(b"GET /echo HTTP/1.1\r\nHost: adm");
    let dribbler = thread::spawn(move || {
        for byte in b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".iter() {
            if dribbling.socket.write_all(&[*byte]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        dribbling
    });
    // A well-behaved client is served meanwhile.
    assert_eq!(server.tcp_client().request(b"GET /echo HTTP/1.1\r\n\r\n").status, 200);

    let reply = stalled.reply();
    let elapsed = start.elapsed();
    assert_eq!(reply.status, 408);
    assert_well_formed(&reply);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(elapsed >= Duration::from_millis(300), "answered after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "answered after {elapsed:?}");
    stalled.assert_closed();

    let mut dribbling = dribbler.join().unwrap();
    let reply = dribbling.reply();
    assert_eq!(reply.status, 408);
    dribbling.assert_closed();
    server.stop().unwrap();
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let server = TestServer::start(Limits { idle_timeout: Duration::from_millis(200), ..Limits::default() });
    let mut client = server.tcp_client();
    assert_eq!(client.request(b"GET / HTTP/1.1\r\n\r\n").status, 200);
    let start = Instant::now();
    client.assert_closed();
    assert!(start.elapsed() >= Duration::from_millis(150), "{:?}", start.elapsed());
    // A silent connection that never sent anything is closed without an answer.
    let mut silent = server.unix_client();
    silent.assert_closed();
    server.stop().unwrap();
}

#[test]
fn one_connection_over_the_limit_gets_503_while_the_others_work() {
    let server = TestServer::start(Limits { max_connections: 2, ..Limits::default() });
    let mut first = server.tcp_client();
    let mut second = server.unix_client();
    // Answered, so the server has registered both.
    assert_eq!(first.request(b"GET / HTTP/1.1\r\n\r\n").status, 200);
    assert_eq!(second.request(b"GET / HTTP/1.1\r\n\r\n").status, 200);

    for mut extra in [server.tcp_client(), server.unix_client()] {
        let reply = extra.reply();
        assert_eq!(reply.status, 503);
        assert_well_formed(&reply);
        assert_eq!(reply.header("connection"), Some("close"));
        extra.assert_closed();
    }
    assert_eq!(first.request(b"GET /echo HTTP/1.1\r\n\r\n").status, 200);
    assert_eq!(second.request(b"GET /echo HTTP/1.1\r\n\r\n").status, 200);

    // A freed slot is usable again.
    drop(first);
    let start = Instant::now();
    loop {
        let mut client = server.tcp_client();
        let reply = client.request(b"GET / HTTP/1.1\r\n\r\n");
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503);
        assert!(start.elapsed() < Duration::from_secs(5), "the slot was never freed");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(server.counts.snapshot().get(&503).copied().unwrap_or(0) >= 2);
    server.stop().unwrap();
}

#[test]
fn clients_that_vanish_mid_request_do_not_disturb_others() {
    let server = TestServer::start(Limits::default());
    let mut steady = server.unix_client();
    assert_eq!(steady.request(b"GET / HTTP/1.1\r\n\r\n").status, 200);
    // Half a body, then our sending side closes: the server closes without answering.
    let mut half = server.tcp_client();
    half.send(b"POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly ten b");
    half.socket.shutdown_write().unwrap();
    half.assert_closed();
    for _ in 0..20 {
        // Half a head, then gone for good (sometimes with a reset).
        let mut gone = server.tcp_client();
        gone.send(b"GET /echo HTTP/1.1\r\nHo");
        drop(gone);
        let mut gone = server.unix_client();
        gone.send(b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nab");
        drop(gone);
    }
    assert_eq!(steady.request(b"GET /echo?still=here HTTP/1.1\r\n\r\n").text(), "GET /echo still=here body=");
    eventually("vanished clients to be closed", || server.counts.snapshot().values().sum::<u64>() == 2);
    server.stop().unwrap();
}

#[test]
fn status_counts_count_every_response() {
    let server = TestServer::start(Limits::default());
    let mut client = server.tcp_client();
    client.request(b"GET / HTTP/1.1\r\n\r\n");
    client.request(b"GET /missing HTTP/1.1\r\n\r\n");
    client.send(b"HEAD /echo HTTP/1.1\r\n\r\n");
    assert_eq!(client.reply_without_body().status, 200);
    let mut client = server.unix_client();
    client.request(b"GET / HTTP/1.1\r\n\r\n");
    client.request(b"BAD\x01 / HTTP/1.1\r\n\r\n");
    let expected: BTreeMap<u16, u64> = [(200, 3), (400, 1), (404, 1)].into_iter().collect();
    eventually("the counts", || server.counts.snapshot() == expected);
    server.stop().unwrap();
}

#[test]
fn shutdown_stops_run_closes_connections_and_removes_the_socket() {
    let server = TestServer::start(Limits::default());
    let mut open = server.tcp_client();
    assert_eq!(open.request(b"GET / HTTP/1.1\r\n\r\n").status, 200);
    assert!(server.unix.exists());
    let started = Instant::now();
    // `stop` also checks that the socket file is gone once the server is dropped.
    server.stop().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    open.assert_closed();
}

#[test]
fn shutdown_before_run_makes_run_return_at_once() {
    let dir = TempDir::new();
    let listeners = Listeners { unix: Some(dir.join("a.sock")), tcp: None };
    let mut server = Server::bind(&listeners, Limits::default(), route).unwrap();
    server.shutdown_handle().shutdown();
    server.run().unwrap();
    assert!(dir.join("a.sock").exists());
    drop(server);
    assert!(!dir.join("a.sock").exists());
}

#[test]
fn binding_errors_name_the_address_and_the_os_error() {
    let dir = TempDir::new();
    let path = dir.join("admin.sock");
    let listeners = Listeners { unix: Some(path.clone()), tcp: None };
    let live = Server::bind(&listeners, Limits::default(), route).unwrap();

    // A live socket is not taken over.
    let error = Server::bind(&listeners, Limits::default(), route).unwrap_err();
    assert!(matches!(error, ServerError::UnixSocketInUse { .. }), "{error}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
    // TCP port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let error = Server::bind(&Listeners { unix: None, tcp: Some(addr) }, Limits::default(), route).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.to_lowercase().contains("in use"), "{message}");

    // A stale socket file (its server died without cleaning up) is replaced.
    drop(live);
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale); // the file stays, nobody listens
    assert!(path.exists());
    let server = Server::bind(&listeners, Limits::default(), route).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    drop(server);

    // Anything that is not a socket is left alone.
    std::fs::write(&path, b"precious").unwrap();
    let error = Server::bind(&listeners, Limits::default(), route).unwrap_err();
    assert!(matches!(error, ServerError::NotASocket { .. }), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");

    // A directory we may not write to.
    let error = Server::bind(
        &Listeners { unix: Some(Path::new("/proc/admin-http-test.sock").to_owned()), tcp: None },
        Limits::default(),
        route,
    )
    .unwrap_err();
    assert!(error.to_string().contains("/proc/admin-http-test.sock"), "{error}");

    let error = Server::bind(&Listeners::default(), Limits::default(), route).unwrap_err();
    assert!(matches!(error, ServerError::NoListeners), "{error}");
}

/// A tiny deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> usize {
        usize::try_from(self.next() % bound).unwrap()
    }
}

#[test]
fn random_bytes_on_the_wire_never_take_the_server_down() {
    let server = TestServer::start(Limits { max_header_bytes: 1024, max_body_bytes: 1024, ..Limits::default() });
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let fragments: [&[u8]; 12] = [
        b"GET ",
        b"POST ",
        b"/echo",
        b"?a=%zz",
        b" HTTP/1.1",
        b" HTTP/1.0",
        b"\r\n",
        b"\r\n\r\n",
        b"Content-Length: 3",
        b"Transfer-Encoding: chunked",
        b"Connection: close",
        b"%",
    ];
    for round in 0..300 {
        let mut bytes = Vec::new();
        for _ in 0..random.below(24) {
            if random.below(2) == 0 {
                bytes.extend_from_slice(fragments[random.below(fragments.len() as u64)]);
            } else {
                for _ in 0..random.below(16) {
                    bytes.push(u8::try_from(random.next() & 0xff).unwrap());
                }
            }
        }
        let mut client = if round % 2 == 0 { server.tcp_client() } else { server.unix_client() };
        let _ = client.socket.write_all(&bytes);
        let _ = client.socket.shutdown_write();
        // Whatever happens, the server answers or closes; it never hangs on us.
        let mut sink = Vec::new();
        match client.socket.read_to_end(&mut sink) {
            Ok(_) => {}
            Err(error) => assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "round {round}: {error}"),
        }
    }
    let mut client = server.unix_client();
    assert_eq!(client.request(b"GET /echo HTTP/1.1\r\n\r\n").status, 200);
    server.stop().unwrap();
}
