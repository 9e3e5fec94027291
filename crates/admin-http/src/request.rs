//! Requests: the parsed form the handler sees, and the incremental parser that builds it.
//!
//! The parser is a pure function over the bytes a connection has buffered so far, so it can be
//! driven byte by byte in tests and can never block. It enforces the header limit itself
//! (a partial head longer than the limit is rejected before the rest arrives) and frames bodies
//! by `Content-Length` only: `Transfer-Encoding` is refused, because a body whose length we do not
//! know up front cannot be bounded before it is read.

use crate::response::Response;

/// Header fields one request may carry (httparse needs a fixed array).
pub(crate) const MAX_HEADER_COUNT: usize = 100;

/// The request method; the common ones as variants, anything else verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `HEAD`: answered like `GET`, without the body.
    Head,
    /// Any other method token, as sent (methods are case-sensitive, RFC 9110 §9.1).
    Other(String),
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "HEAD" => Method::Head,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method token as it appears on the request line.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Head => "HEAD",
            Method::Other(token) => token,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is on the other end of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A unix-socket client, with its credentials from `SO_PEERCRED` when the kernel gave them
    /// (`pid` is `None` when the peer is outside our pid namespace).
    Unix {
        /// Effective user id of the connecting process.
        uid: Option<u32>,
        /// Process id of the connecting process.
        pid: Option<i32>,
    },
    /// A TCP client.
    Tcp(std::net::SocketAddr),
}

/// One complete HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request method.
    pub method: Method,
    /// The percent-decoded path, without the query string.
    pub path: String,
    /// The decoded query parameters, in order (`+` is a space; a key without `=` has an empty value).
    pub query: Vec<(String, String)>,
    /// The header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, exactly `Content-Length` bytes.
    pub body: Vec<u8>,
    /// The client.
    pub peer: Peer,
}

impl Request {
    /// The value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 6750 §2.1).
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.header("authorization")?.trim();
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim_start_matches(' ');
        (!token.is_empty() && !token.contains(' ')).then_some(token)
    }

    /// The value of the first query parameter called `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }
}

/// A request head that parsed completely; the body may still be on its way.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: Vec<(String, String)>,
    /// Bytes of the head, including the blank line.
    pub(crate) head_len: usize,
    pub(crate) content_length: usize,
    /// The client asked to keep the connection open after this request.
    pub(crate) keep_alive: bool,
    /// The client sent `Expect: 100-continue`.
    pub(crate) expects_continue: bool,
    /// The request is HTTP/1.0, which needs an explicit `Connection: keep-alive` back.
    pub(crate) http10: bool,
}

impl Head {
    /// The total length of this request in the buffer.
    pub(crate) fn total_len(&self) -> usize {
        self.head_len + self.content_length
    }

    /// Builds the request from a buffer that holds at least `total_len()` bytes.
    pub(crate) fn into_request(self, buffer: &[u8], peer: Peer) -> Request {
        let body = buffer.get(self.head_len..self.total_len()).unwrap_or_default().to_vec();
        Request { method: self.method, path: self.path, query: self.query, headers: self.headers, body, peer }
    }
}

/// Why a request was refused; the connection is closed after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// The status to answer with.
    pub(crate) status: u16,
    /// What was wrong, for the client.
    pub(crate) message: String,
}

impl Rejection {
    fn new(status: u16, message: impl Into<String>) -> Rejection {
        Rejection { status, message: message.into() }
    }

    pub(crate) fn to_response(&self) -> Response {
        Response::error(self.status, &self.message)
    }
}

/// Parses the head at the start of `buffer`: `Ok(None)` if more bytes are needed.
pub(crate) fn parse_head(
    buffer: &[u8],
    max_header_bytes: usize,
    max_body_bytes: usize,
) -> Result<Option<Head>, Rejection> {
    let mut header_slots = [httparse::EMPTY_HEADER; MAX_HEADER_COUNT];
    let mut parsed = httparse::Request::new(&mut header_slots);
    let head_len = match parsed.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buffer.len() > max_header_bytes {
                return Err(headers_too_large(max_header_bytes));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Rejection::new(
                431,
                format!("too many header fields (at most {MAX_HEADER_COUNT} are accepted)"),
            ));
        }
        Err(error) => {
            if buffer.len() > max_header_bytes {
                return Err(headers_too_large(max_header_bytes));
            }
            return Err(Rejection::new(400, format!("malformed request: {error}")));
        }
    };
    if head_len > max_header_bytes {
        return Err(headers_too_large(max_header_bytes));
    }

    // httparse fills every field of a complete request.
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(Rejection::new(400, "malformed request line"));
    };
    let method = Method::from_token(method);
    let (path, query) = parse_target(target)?;

    let mut headers = Vec::with_capacity(parsed.headers.len());
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<String> = None;
    // HTTP/1.1 keeps the connection by default, HTTP/1.0 closes it (RFC 9112 §9.3).
    let mut keep_alive = version == 1;
    let mut expects_continue = false;
    for header in parsed.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        let Ok(value) = std::str::from_utf8(header.value) else {
            return Err(Rejection::new(400, format!("header field {name:?} is not valid UTF-8")));
        };
        let value = value.trim_matches(|c| c == ' ' || c == '\t').to_owned();
        match name.as_str() {
            "content-length" => {
                let length = parse_content_length(&value)?;
                if content_length.is_some_and(|previous| previous != length) {
                    return Err(Rejection::new(400, "conflicting Content-Length header fields"));
                }
                content_length = Some(length);
            }
            "transfer-encoding" => {
                let all = transfer_encoding.get_or_insert_with(String::new);
                if !all.is_empty() {
                    all.push_str(", ");
                }
                all.push_str(&value);
            }
            "connection" => {
                for option in value.split(',').map(str::trim) {
                    if option.eq_ignore_ascii_case("close") {
                        keep_alive = false;
                    } else if option.eq_ignore_ascii_case("keep-alive") && version == 0 {
                        keep_alive = true;
                    }
                }
            }
            "expect" => {
                if value.eq_ignore_ascii_case("100-continue") {
                    expects_continue = true;
                } else {
                    return Err(Rejection::new(
                        417,
                        format!("unsupported expectation {value:?}; only 100-continue is known"),
                    ));
                }
            }
            _ => {}
        }
        headers.push((name, value));
    }

    if let Some(codings) = transfer_encoding {
        let chunked = codings.split(',').any(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        return Err(if chunked {
            Rejection::new(411, "chunked transfer encoding is not supported: send the body with a Content-Length")
        } else {
            Rejection::new(
                501,
                format!("transfer encoding {codings:?} is not supported: send the body with a Content-Length"),
            )
        });
    }

    let content_length = content_length.unwrap_or(0);
    let content_length = match usize::try_from(content_length) {
        Ok(length) if length <= max_body_bytes => length,
        _ => {
            return Err(Rejection::new(
                413,
                format!("request body of {content_length} bytes is over the limit of {max_body_bytes} bytes"),
            ))
        }
    };

    Ok(Some(Head {
        method,
        path,
        query,
        headers,
        head_len,
        content_length,
        keep_alive,
        expects_continue,
        http10: version == 0,
    }))
}

fn headers_too_large(max_header_bytes: usize) -> Rejection {
    Rejection::new(431, format!("request header is over the limit of {max_header_bytes} bytes"))
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6); a number too big for `u64` is `u64::MAX`,
/// which is over any body limit.
fn parse_content_length(value: &str) -> Result<u64, Rejection> {
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(Rejection::new(
            400,
            format!("invalid Content-Length {value:?}: expected a decimal number of bytes"),
        ));
    }
    Ok(value.parse::<u64>().unwrap_or(u64::MAX))
}

type Target = (String, Vec<(String, String)>);

/// Splits an origin-form target (RFC 9112 §3.2.1) into a decoded path and query.
fn parse_target(target: &str) -> Result<Target, Rejection> {
    if !target.starts_with('/') {
        return Err(Rejection::new(400, format!("request target {target:?} must be a path starting with '/'")));
    }
    let (raw_path, raw_query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let path = percent_decode(raw_path, false)
        .ok_or_else(|| Rejection::new(400, format!("invalid percent-encoding in path {raw_path:?}")))?;
    if path.contains('\0') {
        return Err(Rejection::new(400, "path contains a NUL character"));
    }
    let mut query = Vec::new();
    for pair in raw_query.unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let invalid = || Rejection::new(400, format!("invalid percent-encoding in query {pair:?}"));
        let key = percent_decode(key, true).ok_or_else(invalid)?;
        let value = percent_decode(value, true).ok_or_else(invalid)?;
        query.push((key, value));
    }
    Ok((path, query))
}

/// Decodes `%XX` escapes (and `+` as a space in a query); `None` for a bad escape or non-UTF-8.
fn percent_decode(input: &str, plus_is_space: bool) -> Option<String> {
    let bytes = input.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'%' => {
                let high = hex_value(*bytes.get(index + 1)?)?;
                let low = hex_value(*bytes.get(index + 2)?)?;
                decoded.push(high << 4 | low);
                index += 3;
            }
            b'+' if plus_is_space => {
                decoded.push(b' ');
                index += 1;
            }
            _ => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEADER_LIMIT: usize = 16 * 1024;
    const BODY_LIMIT: usize = 1024 * 1024;

    fn parse(bytes: &[u8]) -> Result<Option<Head>, Rejection> {
        parse_head(bytes, HEADER_LIMIT, BODY_LIMIT)
    }

    fn rejected(bytes: &[u8]) -> Rejection {
        match parse(bytes) {
            Err(rejection) => rejection,
            Ok(head) => panic!("{:?} was accepted: {head:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn parses_a_request_with_query_and_body_length() {
        let bytes =
            b"POST /v1/end%20points?state=pending&name=a+b%21&flag HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Thing:  spaced \r\n\r\nhello";
        let head = parse(bytes).unwrap().unwrap();
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path, "/v1/end points");
        assert_eq!(
            head.query,
            vec![
                ("state".to_owned(), "pending".to_owned()),
                ("name".to_owned(), "a b!".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert_eq!(head.content_length, 5);
        assert_eq!(head.total_len(), bytes.len());
        assert!(head.keep_alive);
        assert!(head.headers.contains(&("x-thing".to_owned(), "spaced".to_owned())));
        let request = head.into_request(bytes, Peer::Unix { uid: None, pid: None });
        assert_eq!(request.body, b"hello");
        assert_eq!(request.header("X-THING"), Some("spaced"));
        assert_eq!(request.query("name"), Some("a b!"));
        assert_eq!(request.query("missing"), None);
    }

    #[test]
    fn partial_heads_ask_for_more() {
        let bytes = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        for end in 0..bytes.len() {
            assert!(parse(&bytes[..end]).unwrap().is_none(), "prefix of {end} bytes");
        }
        assert!(parse(bytes).unwrap().is_some());
    }

    #[test]
    fn connection_options_decide_keep_alive() {
        let head = parse(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").unwrap().unwrap();
        assert!(!head.keep_alive);
        let head = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!head.keep_alive);
        let head = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().unwrap();
        assert!(head.keep_alive);
    }

    #[test]
    fn refuses_what_it_cannot_frame_or_bound() {
        let chunked = rejected(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(chunked.status, 411);
        assert!(chunked.message.contains("Content-Length"));
        assert_eq!(rejected(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").status, 501);
        assert_eq!(rejected(b"POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n").status, 413);
        assert_eq!(rejected(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n").status, 413);
        assert_eq!(rejected(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").status, 400);
        assert_eq!(rejected(b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n").status, 400);
        assert_eq!(rejected(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").status, 400);
        assert_eq!(rejected(b"GET /%zz HTTP/1.1\r\n\r\n").status, 400);
        assert_eq!(rejected(b"GET /%ff HTTP/1.1\r\n\r\n").status, 400);
        assert_eq!(rejected(b"GET /%00 HTTP/1.1\r\n\r\n").status, 400);
        assert_eq!(rejected(b"GET http://x/ HTTP/1.1\r\n\r\n").status, 400);
        assert_eq!(rejected(b"GET / HTTP/1.1\r\nExpect: magic\r\n\r\n").status, 417);
        assert_eq!(rejected(b"\x00\x01\x02 garbage\r\n\r\n").status, 400);
    }

    #[test]
    fn header_limits_are_431() {
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        while big.len() <= HEADER_LIMIT {
            big.extend_from_slice(b"X-Fill: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        // Rejected before the head is complete ...
        assert_eq!(rejected(&big).status, 431);
        // ... and when it is.
        big.extend_from_slice(b"\r\n");
        assert_eq!(rejected(&big).status, 431);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for index in 0..=MAX_HEADER_COUNT {
            many.extend_from_slice(format!("X-{index}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(rejected(&many).status, 431);
    }

    #[test]
    fn bearer_tokens() {
        let with = |value: &str| Request {
            method: Method::Get,
            path: "/".to_owned(),
            query: Vec::new(),
            headers: vec![("authorization".to_owned(), value.to_owned())],
            body: Vec::new(),
            peer: Peer::Unix { uid: None, pid: None },
        };
        assert_eq!(with("Bearer abc.def").bearer_token(), Some("abc.def"));
        assert_eq!(with("bearer   abc").bearer_token(), Some("abc"));
        assert_eq!(with("Basic abc").bearer_token(), None);
        assert_eq!(with("Bearer").bearer_token(), None);
        assert_eq!(with("Bearer ").bearer_token(), None);
        assert_eq!(with("Bearer a b").bearer_token(), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_head(&bytes, 256, 1024);
        }

        #[test]
        fn never_panics_on_request_like_input(
            method in "[A-Z]{1,7}",
            target in "[/a-z0-9%?&=+]{0,40}",
            headers in proptest::collection::vec(("[A-Za-z-]{1,12}", "[ -~]{0,20}"), 0..8),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut bytes = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
            for (name, value) in &headers {
                bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            bytes.extend_from_slice(b"\r\n");
            let whole = parse(&bytes);
            // Every prefix either needs more bytes or fails the same way the whole request does
            // when the failure is in the part already seen; a prefix never succeeds.
            let end = cut.index(bytes.len());
            if let Ok(Some(_)) = parse(&bytes[..end]) {
                prop_assert!(false, "a strict prefix parsed as a complete request");
            }
            if let Ok(Some(head)) = whole {
                prop_assert_eq!(head.head_len, bytes.len());
            }
        }
    }
}
