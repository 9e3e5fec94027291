//! Responses: what the handler returns, and how the server writes it on the wire.

/// One HTTP response. The server adds `Content-Length` and `Connection` itself (and
/// `Content-Type: application/octet-stream` when the handler set none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 200..=599 (anything else is answered as a 500).
    pub status: u16,
    /// Header fields to send; `Content-Length`, `Transfer-Encoding` and `Connection` are the
    /// server's and are dropped (a `Connection: close` here makes the server close afterwards).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `Content-Type: application/json`.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::with_type(status, "application/json", body.into())
    }

    /// A response with `Content-Type: text/plain; charset=utf-8`.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::with_type(status, "text/plain; charset=utf-8", body.into())
    }

    /// A JSON error: `{"error": {"status": 400, "message": "..."}}`.
    pub fn error(status: u16, message: &str) -> Response {
        let mut body = String::with_capacity(message.len() + 48);
        body.push_str("{\"error\": {\"status\": ");
        body.push_str(&status.to_string());
        body.push_str(", \"message\": ");
        push_json_string(&mut body, message);
        body.push_str("}}");
        Response::json(status, body)
    }

    /// Adds a header field.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    fn with_type(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response { status, headers: vec![("Content-Type".to_owned(), content_type.to_owned())], body }
    }

    /// The handler asked for the connection to be closed after this response.
    pub(crate) fn asks_to_close(&self) -> bool {
        self.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("connection")
                && value.split(',').any(|option| option.trim().eq_ignore_ascii_case("close"))
        })
    }
}

/// Appends `value` as a JSON string literal (RFC 8259 §7).
pub fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    for character in value.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Control characters, and the two JavaScript line terminators for good measure.
            c if c < ' ' || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The reason phrase for a status code.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// A header name is a token (RFC 9110 §5.1); a value has no CR, LF or NUL.
fn header_is_safe(name: &str, value: &str) -> bool {
    const TOKEN_SPECIALS: &[u8] = b"!#$%&'*+-.^_`|~";
    !name.is_empty()
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || TOKEN_SPECIALS.contains(&byte))
        && !value.bytes().any(|byte| matches!(byte, b'\r' | b'\n' | 0))
}

/// Writes `response` to `out`; returns the status actually sent.
///
/// A status outside 200..=599 is a handler bug and is sent as a 500. Header fields that could
/// split the response are dropped. `HEAD` responses, 204 and 304 carry no body, and 204 no
/// `Content-Length` (RFC 9110 §8.6).
pub(crate) fn write_response(
    out: &mut Vec<u8>,
    response: &Response,
    head_only: bool,
    close: bool,
    keep_alive_header: bool,
) -> u16 {
    if !(200..=599).contains(&response.status) {
        let replacement = Response::error(500, &format!("handler returned invalid status {}", response.status));
        return write_response(out, &replacement, head_only, close, keep_alive_header);
    }
    let status = response.status;
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    let mut has_content_type = false;
    for (name, value) in &response.headers {
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("connection")
            || !header_is_safe(name, value)
        {
            continue;
        }
        has_content_type |= name.eq_ignore_ascii_case("content-type");
        push_header(out, name, value);
    }
    if !has_content_type {
        push_header(out, "Content-Type", "application/octet-stream");
    }
    let bodyless = status == 204 || status == 304;
    if status != 204 {
        let length = if status == 304 { 0 } else { response.body.len() };
        push_header(out, "Content-Length", &length.to_string());
    }
    if close {
        push_header(out, "Connection", "close");
    } else if keep_alive_header {
        push_header(out, "Connection", "keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && !bodyless {
        out.extend_from_slice(&response.body);
    }
    status
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(response: &Response, head_only: bool, close: bool) -> String {
        let mut out = Vec::new();
        write_response(&mut out, response, head_only, close, false);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn error_bodies_are_escaped_json() {
        let response = Response::error(400, "bad \"x\"\\\n\u{1}");
        assert_eq!(
            String::from_utf8(response.body).unwrap(),
            r#"{"error": {"status": 400, "message": "bad \"x\"\\\n\u0001"}}"#
        );
        assert_eq!(response.headers, vec![("Content-Type".to_owned(), "application/json".to_owned())]);
    }

    #[test]
    fn wire_form_has_length_type_and_connection() {
        let text = written(&Response::text(200, "hi"), false, true);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
        );
        let bare = Response { status: 201, headers: Vec::new(), body: Vec::new() };
        assert_eq!(
            written(&bare, false, false),
            "HTTP/1.1 201 Created\r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(
            written(&Response::text(200, "hi"), true, false),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\n"
        );
    }

    #[test]
    fn handler_mistakes_cannot_break_framing() {
        let response = Response::text(200, "body")
            .with_header("Content-Length", "999")
            .with_header("X-Split", "a\r\nSet-Cookie: evil=1")
            .with_header("Bad Name", "x")
            .with_header("Connection", "keep-alive");
        let text = written(&response, false, false);
        assert!(!text.contains("999"), "{text}");
        assert!(!text.contains("evil"), "{text}");
        assert!(!text.contains("Bad Name"), "{text}");
        assert!(!text.contains("keep-alive"), "{text}");
        assert!(text.ends_with("Content-Length: 4\r\n\r\nbody"), "{text}");

        let mut out = Vec::new();
        let sent = write_response(&mut out, &Response::text(42, "x"), false, false, false);
        assert_eq!(sent, 500);
        assert!(String::from_utf8(out).unwrap().starts_with("HTTP/1.1 500 Internal Server Error\r\n"));

        let no_content = Response { status: 204, headers: Vec::new(), body: b"ignored".to_vec() };
        let text = written(&no_content, false, false);
        assert!(!text.contains("Content-Length") && !text.contains("ignored"), "{text}");
    }
}
