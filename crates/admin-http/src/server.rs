//! The event loop: listeners, connections, limits and timeouts.
//!
//! One thread, one `mio::Poll`, edge-triggered. Every event on a connection runs [`drive`], which
//! repeats "flush what we owe, answer complete requests in order, read more" until none of them
//! makes progress: that is what edge triggering needs (we always read until `WouldBlock`
//! unless our buffer is full, and a full buffer is only ever emptied by `drive` itself, which then
//! reads again).
//!
//! Everything is bounded: at most `max_connections` connections, each with a read buffer of at most
//! one request (`max_header_bytes + max_body_bytes`), and no new request is answered while more
//! than [`WRITE_HIGH_WATER`] bytes of responses wait for the client to read them. Every
//! connection always has a deadline (whole request, write drain, idle keep-alive or lingering
//! close), so a client that stalls loses its slot.
//!
//! A connection we close after an error answer is closed "lingering" (RFC 9112 §9.6): we shut our
//! sending side and discard what the client still sends for a short while, so the kernel does not
//! reset the connection and destroy the answer before the client has read it.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::request::{parse_head, Peer, Rejection, Request};
use crate::response::{write_response, Response};
use crate::unix_socket::{self, SocketFile};

const UNIX_LISTENER: Token = Token(0);
const TCP_LISTENER: Token = Token(1);
const WAKER: Token = Token(2);
const FIRST_CONNECTION: usize = 3;

/// Responses waiting to be read beyond which we stop answering pipelined requests.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Longest we keep discarding input after answering and closing.
const LINGER: Duration = Duration::from_secs(2);
/// Buffers bigger than this are given back once empty, so idle connections stay small.
const KEEP_CAPACITY: usize = 64 * 1024;
/// Bytes read from a socket per `read` call.
const READ_CHUNK: usize = 16 * 1024;

/// What the admin API answers requests with.
pub trait Handler {
    /// Answers one request. Called on the event-loop thread, so it should not block for long.
    fn handle(&mut self, request: &Request) -> Response;
}

impl<F: FnMut(&Request) -> Response> Handler for F {
    fn handle(&mut self, request: &Request) -> Response {
        self(request)
    }
}

/// Resource limits; every one bounds what a client can make the server hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request head (request line and header fields); longer is answered 431.
    pub max_header_bytes: usize,
    /// Longest body; a bigger `Content-Length` is answered 413.
    pub max_body_bytes: usize,
    /// The whole request must arrive within this time of its first byte, else 408.
    pub request_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this long.
    pub idle_timeout: Duration,
    /// Open connections at most; one more is answered 503 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 64,
        }
    }
}

/// Where to listen: a unix socket, TCP, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listeners {
    /// Unix socket path; the file is created with mode 0600 and removed when the server is dropped.
    /// It is first bound in a private directory next to it (see the `unix_socket` module), so the
    /// path must fit `sun_path` (108 bytes) with about 16 bytes to spare, and its directory must be
    /// writable.
    pub unix: Option<PathBuf>,
    /// TCP address (port 0 picks a free port, see [`Server::local_tcp_addr`]).
    pub tcp: Option<SocketAddr>,
}

/// Why the admin server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Neither a unix socket nor a TCP address was configured.
    #[error("no admin listener configured: set a unix socket path, a TCP address, or both")]
    NoListeners,
    /// The TCP address could not be bound.
    #[error("cannot listen for admin requests on TCP {addr}: {error}")]
    BindTcp {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        error: io::Error,
    },
    /// The unix socket could not be created.
    #[error("cannot listen for admin requests on unix socket {}: {error}", path.display())]
    BindUnix {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// Another server answers on the unix socket path.
    #[error(
        "unix socket {} is in use by another running server: stop it or choose another path",
        path.display()
    )]
    UnixSocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something that is not a socket exists at the unix socket path.
    #[error(
        "{} exists and is not a socket: remove it or choose another admin socket path",
        path.display()
    )]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The event loop itself failed.
    #[error("admin server event loop failed while {context}: {error}")]
    EventLoop {
        /// What the loop was doing.
        context: &'static str,
        /// The OS error.
        error: io::Error,
    },
}

fn event_loop_error(context: &'static str) -> impl FnOnce(io::Error) -> ServerError {
    move |error| ServerError::EventLoop { context, error }
}

/// Stops [`Server::run`] from another thread.
#[derive(Debug, Clone)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Shutdown {
    /// Makes `run` close every connection and return `Ok(())`; it returns at once if called again.
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::Release);
        // If waking fails the loop still sees the flag at its next wake-up (at most one timeout).
        let _ = self.waker.wake();
    }

    fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

/// Responses sent, by status code; a cheap handle that can be read from any thread.
#[derive(Debug, Clone, Default)]
pub struct StatusCounts {
    counts: Arc<Mutex<BTreeMap<u16, u64>>>,
}

impl StatusCounts {
    /// Responses sent so far, by status.
    pub fn snapshot(&self) -> BTreeMap<u16, u64> {
        self.lock().clone()
    }

    fn record(&self, status: u16) {
        *self.lock().entry(status).or_insert(0) += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, u64>> {
        // The map is consistent after every operation, so a panic elsewhere cannot corrupt it.
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The admin HTTP server.
pub struct Server<H: Handler> {
    poll: Poll,
    events: Events,
    unix: Option<(UnixListener, SocketFile)>,
    tcp: Option<(TcpListener, SocketAddr)>,
    limits: Limits,
    handler: H,
    connections: HashMap<Token, Connection>,
    next_token: usize,
    shutdown: Shutdown,
    counts: StatusCounts,
}

impl<H: Handler> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("unix", &self.unix_path())
            .field("tcp", &self.local_tcp_addr())
            .field("limits", &self.limits)
            .field("connections", &self.connections.len())
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Server<H> {
    /// Binds every configured listener; nothing is accepted until [`Server::run`].
    pub fn bind(listeners: &Listeners, limits: Limits, handler: H) -> Result<Server<H>, ServerError> {
        if listeners.unix.is_none() && listeners.tcp.is_none() {
            return Err(ServerError::NoListeners);
        }
        let poll = Poll::new().map_err(event_loop_error("creating the poller"))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(event_loop_error("creating the shutdown waker"))?;

        let tcp = match listeners.tcp {
            Some(addr) => {
                let mut listener = TcpListener::bind(addr).map_err(|error| ServerError::BindTcp { addr, error })?;
                let local = listener.local_addr().map_err(|error| ServerError::BindTcp { addr, error })?;
                poll.registry()
                    .register(&mut listener, TCP_LISTENER, Interest::READABLE)
                    .map_err(event_loop_error("registering the TCP listener"))?;
                Some((listener, local))
            }
            None => None,
        };
        let unix = match &listeners.unix {
            Some(path) => {
                let (mut listener, file) = unix_socket::bind(path)?;
                poll.registry()
                    .register(&mut listener, UNIX_LISTENER, Interest::READABLE)
                    .map_err(event_loop_error("registering the unix listener"))?;
                Some((listener, file))
            }
            None => None,
        };

        Ok(Server {
            poll,
            events: Events::with_capacity(256),
            unix,
            tcp,
            limits,
            handler,
            connections: HashMap::new(),
            next_token: FIRST_CONNECTION,
            shutdown: Shutdown { requested: Arc::new(AtomicBool::new(false)), waker: Arc::new(waker) },
            counts: StatusCounts::default(),
        })
    }

    /// The bound TCP address (the real port when bound to port 0).
    pub fn local_tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().map(|(_, addr)| *addr)
    }

    /// The unix socket path, if listening on one.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_ref().map(|(_, file)| file.path())
    }

    /// A handle that stops [`Server::run`] from another thread.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Responses sent so far, by status code (including the server's own 400/408/413/431/503…).
    pub fn status_counts(&self) -> BTreeMap<u16, u64> {
        self.counts.snapshot()
    }

    /// A handle to the status counts that another thread (or the handler) can read while `run` runs.
    pub fn status_counts_handle(&self) -> StatusCounts {
        self.counts.clone()
    }

    /// The handler, e.g. to give it the status counts handle after binding.
    pub fn handler(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Open connections right now.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Serves until [`Shutdown::shutdown`] is called, then closes every connection.
    pub fn run(&mut self) -> Result<(), ServerError> {
        let mut ready = Vec::new();
        loop {
            if self.shutdown.is_requested() {
                self.connections.clear();
                return Ok(());
            }
            let timeout = self.next_timeout(Instant::now());
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(event_loop_error("waiting for events")(error)),
            }
            ready.clear();
            ready.extend(self.events.iter().map(|event| event.token()));
            for &token in &ready {
                match token {
                    UNIX_LISTENER => self.accept_unix(),
                    TCP_LISTENER => self.accept_tcp(),
                    WAKER => {}
                    token => self.drive_connection(token),
                }
            }
            self.expire(Instant::now());
        }
    }

    fn accept_unix(&mut self) {
        loop {
            let Some((listener, _)) = &self.unix else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => {
                    let (uid, pid) = unix_socket::peer_credentials(&stream);
                    self.admit(Stream::Unix(stream), Peer::Unix { uid, pid });
                }
                Err(error) if retry_accept(&error) => continue,
                // WouldBlock, or out of descriptors: what is left waits in the backlog.
                Err(_) => return,
            }
        }
    }

    fn accept_tcp(&mut self) {
        loop {
            let Some((listener, _)) = &self.tcp else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    self.admit(Stream::Tcp(stream), Peer::Tcp(addr));
                }
                Err(error) if retry_accept(&error) => continue,
                Err(_) => return,
            }
        }
    }

    fn admit(&mut self, mut stream: Stream, peer: Peer) {
        if self.connections.len() >= self.limits.max_connections {
            refuse_over_capacity(&mut stream, &self.counts);
            return;
        }
        let token = self.allocate_token();
        if self.poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE).is_err() {
            return;
        }
        self.connections.insert(token, Connection::new(stream, peer, Instant::now()));
    }

    fn allocate_token(&mut self) -> Token {
        loop {
            let candidate = self.next_token;
            self.next_token = match self.next_token.checked_add(1) {
                Some(next) => next,
                None => FIRST_CONNECTION,
            };
            if !self.connections.contains_key(&Token(candidate)) {
                return Token(candidate);
            }
        }
    }

    fn drive_connection(&mut self, token: Token) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        let outcome = drive(connection, &mut self.handler, &self.limits, &self.counts, Instant::now());
        if outcome == Outcome::Close {
            self.close(token);
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut connection) = self.connections.remove(&token) {
            let _ = self.poll.registry().deregister(&mut connection.stream);
        }
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.connections
            .values()
            .filter_map(|connection| connection.deadline(&self.limits))
            .min()
            .map(|deadline| deadline.saturating_duration_since(now))
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<Token> = self
            .connections
            .iter()
            .filter(|(_, connection)| connection.deadline(&self.limits).is_some_and(|deadline| deadline <= now))
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            let Some(connection) = self.connections.get_mut(&token) else {
                continue;
            };
            let answer_timeout = connection.linger_until.is_none()
                && !connection.closing
                && !connection.write_pending()
                && connection.request_started.is_some();
            if !answer_timeout {
                // Idle keep-alive, a client that does not read its answers, or lingering done.
                self.close(token);
                continue;
            }
            let rejection = Rejection {
                status: 408,
                message: format!(
                    "the request did not arrive completely within {} ms",
                    self.limits.request_timeout.as_millis()
                ),
            };
            connection.answer_and_close(&rejection.to_response(), &self.counts, now);
            if drive(connection, &mut self.handler, &self.limits, &self.counts, now) == Outcome::Close {
                self.close(token);
            }
        }
    }
}

fn retry_accept(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted)
}

/// Answers a connection over `max_connections` with 503 and closes it, without keeping any state.
fn refuse_over_capacity(stream: &mut Stream, counts: &StatusCounts) {
    // Read what already arrived, so closing does not reset the connection over unread data.
    let mut scratch = [0u8; 4096];
    for _ in 0..4 {
        match stream.read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let mut out = Vec::new();
    let status = write_response(
        &mut out,
        &Response::error(503, "too many admin connections: try again later"),
        false,
        true,
        false,
    );
    // A new socket's send buffer is empty, so this fits; if it does not, the client gets a close.
    let _ = stream.write(&out);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    counts.record(status);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Keep,
    Close,
}

/// Flushes, answers complete requests in order and reads, until none of these makes progress.
fn drive<H: Handler>(
    connection: &mut Connection,
    handler: &mut H,
    limits: &Limits,
    counts: &StatusCounts,
    now: Instant,
) -> Outcome {
    loop {
        let mut progress = false;
        match connection.flush(now) {
            Ok(wrote) => progress |= wrote,
            Err(_) => return Outcome::Close,
        }
        if connection.closing && !connection.write_pending() {
            if connection.linger_until.is_none() {
                connection.start_lingering(now, limits);
            }
            return connection.discard_input();
        }
        if !connection.closing
            && connection.pending_len() < WRITE_HIGH_WATER
            && connection.answer_one(handler, limits, counts, now)
        {
            continue;
        }
        if !connection.closing && !connection.read_eof {
            match connection.fill(limits, now) {
                Ok(read) => progress |= read,
                Err(_) => return Outcome::Close,
            }
        }
        if !progress {
            break;
        }
    }
    if connection.read_eof && !connection.write_pending() {
        // The client is done sending and everything it completely sent has been answered.
        return Outcome::Close;
    }
    Outcome::Keep
}

/// A unix or TCP client stream.
#[derive(Debug)]
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        match self {
            Stream::Unix(stream) => stream.shutdown(how),
            Stream::Tcp(stream) => stream.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(stream) => stream.read(buf),
            Stream::Tcp(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(stream) => stream.write(buf),
            Stream::Tcp(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl mio::event::Source for Stream {
    fn register(&mut self, registry: &mio::Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Unix(stream) => stream.register(registry, token, interests),
            Stream::Tcp(stream) => stream.register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &mio::Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Unix(stream) => stream.reregister(registry, token, interests),
            Stream::Tcp(stream) => stream.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        match self {
            Stream::Unix(stream) => stream.deregister(registry),
            Stream::Tcp(stream) => stream.deregister(registry),
        }
    }
}

/// One client connection.
#[derive(Debug)]
struct Connection {
    stream: Stream,
    peer: Peer,
    /// Received bytes not yet consumed: at most one request (plus one byte to detect an overlong head).
    input: Vec<u8>,
    /// Response bytes; `output[written..]` is still to be sent.
    output: Vec<u8>,
    written: usize,
    /// When the request now being received started (its first byte, or when we became ready for it).
    request_started: Option<Instant>,
    /// When the unsent response bytes were queued.
    write_started: Option<Instant>,
    last_activity: Instant,
    /// The client shut its sending side.
    read_eof: bool,
    /// Close after the queued output is sent; read nothing more.
    closing: bool,
    /// Sending side shut; discarding input until the client closes or this instant.
    linger_until: Option<Instant>,
    /// A `100 Continue` went out for the request now being received.
    continue_sent: bool,
}

impl Connection {
    fn new(stream: Stream, peer: Peer, now: Instant) -> Connection {
        Connection {
            stream,
            peer,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            request_started: None,
            write_started: None,
            last_activity: now,
            read_eof: false,
            closing: false,
            linger_until: None,
            continue_sent: false,
        }
    }

    fn pending_len(&self) -> usize {
        self.output.len().saturating_sub(self.written)
    }

    fn write_pending(&self) -> bool {
        self.pending_len() > 0
    }

    /// When this connection must have made progress; `None` only for absurdly long limits.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if let Some(until) = self.linger_until {
            return Some(until);
        }
        if let Some(since) = self.write_started {
            return since.checked_add(limits.request_timeout);
        }
        if let Some(since) = self.request_started {
            return since.checked_add(limits.request_timeout);
        }
        self.last_activity.checked_add(limits.idle_timeout)
    }

    fn queue(&mut self, bytes_before: usize, now: Instant) {
        if self.output.len() > bytes_before && self.write_started.is_none() {
            self.write_started = Some(now);
        }
    }

    /// Sends queued output until done or the socket is full; `Ok(true)` if anything was sent.
    fn flush(&mut self, now: Instant) -> io::Result<bool> {
        let mut wrote = false;
        while let Some(pending) = self.output.get(self.written..).filter(|rest| !rest.is_empty()) {
            match self.stream.write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(count) => {
                    self.written += count;
                    wrote = true;
                    self.last_activity = now;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        if !self.write_pending() {
            self.written = 0;
            self.write_started = None;
            if self.output.capacity() > KEEP_CAPACITY {
                self.output = Vec::new();
            } else {
                self.output.clear();
            }
        }
        Ok(wrote)
    }

    /// Reads until `WouldBlock`, end of stream or a full buffer; `Ok(true)` if anything happened.
    fn fill(&mut self, limits: &Limits, now: Instant) -> io::Result<bool> {
        let capacity = limits.max_header_bytes.saturating_add(limits.max_body_bytes).saturating_add(1);
        let mut chunk = [0u8; READ_CHUNK];
        let mut progress = false;
        while self.input.len() < capacity {
            let room = (capacity - self.input.len()).min(READ_CHUNK);
            let Some(buffer) = chunk.get_mut(..room) else {
                break;
            };
            match self.stream.read(buffer) {
                Ok(0) => {
                    self.read_eof = true;
                    return Ok(true);
                }
                Ok(count) => {
                    if self.input.is_empty() && self.request_started.is_none() {
                        self.request_started = Some(now);
                    }
                    self.input.extend_from_slice(buffer.get(..count).unwrap_or_default());
                    self.last_activity = now;
                    progress = true;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        Ok(progress)
    }

    /// Answers the request at the front of the input if it is complete; `true` if output was queued.
    fn answer_one<H: Handler>(
        &mut self,
        handler: &mut H,
        limits: &Limits,
        counts: &StatusCounts,
        now: Instant,
    ) -> bool {
        if self.input.is_empty() {
            return false;
        }
        let head = match parse_head(&self.input, limits.max_header_bytes, limits.max_body_bytes) {
            Ok(Some(head)) => head,
            Ok(None) => return false,
            Err(rejection) => {
                self.answer_and_close(&rejection.to_response(), counts, now);
                return true;
            }
        };
        let total = head.total_len();
        if self.input.len() < total {
            if head.expects_continue && !self.continue_sent {
                // RFC 9110 §10.1.1: tell the client to send the body it announced.
                let before = self.output.len();
                self.output.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                self.queue(before, now);
                self.continue_sent = true;
                return true;
            }
            return false;
        }
        let keep_alive = head.keep_alive;
        let http10 = head.http10;
        let head_only = head.method == crate::Method::Head;
        let request = head.into_request(&self.input, self.peer.clone());
        self.input.drain(..total);
        if self.input.is_empty() && self.input.capacity() > KEEP_CAPACITY {
            self.input = Vec::new();
        }
        self.continue_sent = false;
        // The next pipelined request's time starts now that we are ready to read it.
        self.request_started = (!self.input.is_empty()).then_some(now);

        let response = handler.handle(&request);
        let close = !keep_alive || response.asks_to_close();
        let before = self.output.len();
        let status = write_response(&mut self.output, &response, head_only, close, http10 && !close);
        self.queue(before, now);
        counts.record(status);
        if close {
            self.closing = true;
        }
        true
    }

    /// Queues `response` with `Connection: close` and stops reading requests.
    fn answer_and_close(&mut self, response: &Response, counts: &StatusCounts, now: Instant) {
        let before = self.output.len();
        let status = write_response(&mut self.output, response, false, true, false);
        self.queue(before, now);
        counts.record(status);
        self.closing = true;
        self.request_started = None;
    }

    fn start_lingering(&mut self, now: Instant, limits: &Limits) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let linger = LINGER.min(limits.request_timeout);
        self.linger_until = Some(now.checked_add(linger).unwrap_or(now));
        self.input = Vec::new();
    }

    /// Reads and drops input while lingering; closes once the client has closed too.
    fn discard_input(&mut self) -> Outcome {
        if self.read_eof {
            return Outcome::Close;
        }
        let mut scratch = [0u8; READ_CHUNK];
        loop {
            match self.stream.read(&mut scratch) {
                Ok(0) => return Outcome::Close,
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Outcome::Keep,
                Err(_) => return Outcome::Close,
            }
        }
    }
}
