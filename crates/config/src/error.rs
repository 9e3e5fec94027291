//! [`ConfigError`]: one precise, one-line complaint about a configuration file, and the
//! translation of the `toml` crate's syntax, type and unknown-key errors into it.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// What is wrong with a configuration, where, and what would be allowed.
///
/// `path` is the key path of the offending value, with arrays indexed from 0 in document order
/// (`services[1].nat_ips[0]`, `gateway.timeouts.udp`, `accounts[2]`), or `""` when the complaint
/// is about the whole file (a syntax error, an unreadable file). `value` is the offending value
/// as written in TOML (strings quoted: `"198.19.0.5"`, numbers bare: `5000`), or `""` when there
/// is none (a missing or unknown key). `problem` says what is wrong and what is allowed; for
/// errors found while reading the TOML it ends with the line and column.
///
/// [`Display`](fmt::Display) prints one line: `path = value: problem`, leaving out what is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path, e.g. `services[1].nat_ips[0]`, or `""` for the whole file.
    pub path: String,
    /// The offending value as written, e.g. `"198.19.0.5"`, or `""`.
    pub value: String,
    /// What is wrong and what is allowed.
    pub problem: String,
}

impl ConfigError {
    /// An error at `path` about `value` (as written, or `""`).
    pub fn new(path: impl Into<String>, value: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError { path: path.into(), value: value.into(), problem: problem.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.value.is_empty()) {
            (false, false) => write!(f, "{} = {}: {}", self.path, self.value, self.problem),
            (false, true) => write!(f, "{}: {}", self.path, self.problem),
            (true, false) => write!(f, "{}: {}", self.value, self.problem),
            (true, true) => f.write_str(&self.problem),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Translates a `toml` error on `text` into a [`ConfigError`]: the key path is recovered from
/// the error's position, the problem is toml's (or serde's) message plus the line and column.
pub(crate) fn from_toml(text: &str, error: &toml::de::Error) -> ConfigError {
    let message = one_line(error.message());
    let Some(span) = error.span() else {
        return ConfigError::new("", "", message);
    };
    let (line, column) = line_column(text, span.start);
    // A syntax error leaves no document to find a key path in.
    if toml::from_str::<toml::Table>(text).is_err() {
        return ConfigError::new("", "", format!("TOML syntax error at line {line}, column {column}: {message}"));
    }
    let problem = format!("{message} (line {line}, column {column})");
    let mut found: Option<Found> = None;
    if let Ok(root) = toml::from_str::<Spanned<Node>>(text) {
        locate(&root, &span, &mut String::new(), &mut found);
    }
    match found {
        Some(Found { path, is_value: true, span: value_span, .. }) => {
            let value = text.get(value_span).unwrap_or("").trim();
            // A whole table or array as "the value" would not be one line: keep leaves only.
            let value = if value.contains('\n') { "" } else { value };
            ConfigError::new(path, value, problem)
        }
        Some(Found { path, .. }) => ConfigError::new(path, "", problem),
        None => ConfigError::new("", "", problem),
    }
}

/// Joins a possibly multi-line message into one line, in TOML's words rather than Rust's.
fn one_line(message: &str) -> String {
    let line = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    line.replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array")
        .replace("expected a boolean", "expected true or false")
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// A generic TOML document with the spans of its keys and values, to map an error's position
/// back to a key path. Tables that toml gives no span (implicit `gateway` of `[gateway.admin]`,
/// dotted keys) have none here either; their keys and leaves still have theirs.
struct Spanned<T> {
    span: Option<Range<usize>>,
    inner: T,
}

enum Node {
    Leaf,
    Array(Vec<Spanned<Node>>),
    Table(Vec<(Spanned<String>, Spanned<Node>)>),
}

// The serde protocol by which toml hands out spans (the one `toml::Spanned` uses): a struct of
// this name and fields, answered by a map of start, end and value when the span is known, and
// by the plain value otherwise.
const SPANNED: &str = "$__serde_spanned_private_Spanned";
const START: &str = "$__serde_spanned_private_start";
const END: &str = "$__serde_spanned_private_end";
const VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[START, END, VALUE];

impl<'de> Deserialize<'de> for Spanned<Node> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(SPANNED, SPANNED_FIELDS, NodeVisitor)
    }
}

impl<'de> Deserialize<'de> for Spanned<String> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(SPANNED, SPANNED_FIELDS, KeyVisitor)
    }
}

/// Plain (unspanned) nodes inside a span map.
struct PlainNode(Node);

impl<'de> Deserialize<'de> for PlainNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor).map(|n| PlainNode(n.inner))
    }
}

/// Reads the rest of a span map (after its start key) into the span and the value.
fn spanned_rest<'de, A: MapAccess<'de>, T: Deserialize<'de>>(map: &mut A) -> Result<(Range<usize>, T), A::Error> {
    let start: usize = map.next_value()?;
    let (Some(end_key), end) = (map.next_key::<String>()?, map.next_value::<usize>()?) else {
        return Err(de::Error::custom("malformed span"));
    };
    let (Some(value_key), value) = (map.next_key::<String>()?, map.next_value::<T>()?) else {
        return Err(de::Error::custom("malformed span"));
    };
    if end_key != END || value_key != VALUE {
        return Err(de::Error::custom("malformed span"));
    }
    Ok((start..end, value))
}

struct NodeVisitor;

impl NodeVisitor {
    fn leaf<E>(self) -> Result<Spanned<Node>, E> {
        Ok(Spanned { span: None, inner: Node::Leaf })
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Spanned<Node>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        self.leaf()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        self.leaf()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        self.leaf()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        self.leaf()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        self.leaf()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Spanned { span: None, inner: Node::Array(items) })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            if key.span.is_none() && key.inner == START && entries.is_empty() {
                // A span map around the real value.
                let (span, PlainNode(inner)) = spanned_rest(&mut map)?;
                return Ok(Spanned { span: Some(span), inner });
            }
            if key.inner.starts_with("$__toml_private") {
                // A datetime, which toml hands out as a one-entry map: a leaf for us.
                map.next_value::<IgnoredAny>()?;
                return self.leaf();
            }
            entries.push((key, map.next_value()?));
        }
        Ok(Spanned { span: None, inner: Node::Table(entries) })
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Spanned<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Spanned { span: None, inner: key.to_owned() })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        match map.next_key::<String>()? {
            Some(k) if k == START => {
                let (span, inner) = spanned_rest::<A, String>(&mut map)?;
                Ok(Spanned { span: Some(span), inner })
            }
            _ => Err(de::Error::custom("a key is a string")),
        }
    }
}

/// The best match so far for an error's position.
struct Found {
    path: String,
    span: Range<usize>,
    is_value: bool,
}

/// Walks `node` (at `path`), keeping in `found` the key or value whose span is the tightest
/// around the error's span (the deepest one on ties).
fn locate(node: &Spanned<Node>, error: &Range<usize>, path: &mut String, found: &mut Option<Found>) {
    consider(&node.span, path, true, error, found);
    let len = path.len();
    match &node.inner {
        Node::Leaf => {}
        Node::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                locate(item, error, path, found);
                path.truncate(len);
            }
        }
        Node::Table(entries) => {
            for (key, value) in entries {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key_text(&key.inner));
                consider(&key.span, path, false, error, found);
                locate(value, error, path, found);
                path.truncate(len);
            }
        }
    }
}

fn consider(span: &Option<Range<usize>>, path: &str, is_value: bool, error: &Range<usize>, found: &mut Option<Found>) {
    let Some(span) = span.clone() else { return };
    let contains = span.start <= error.start && (error.start < span.end || span == *error);
    if !contains {
        return;
    }
    let tighter = match found {
        None => true,
        Some(f) => span.len() <= f.span.len(),
    };
    if tighter {
        *found = Some(Found { path: path.to_owned(), span, is_value });
    }
}

/// A key as it would appear in a path: bare when it can be, quoted otherwise.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_leaves_out_empty_parts() {
        assert_eq!(ConfigError::new("a.b", "1", "bad").to_string(), "a.b = 1: bad");
        assert_eq!(ConfigError::new("a.b", "", "bad").to_string(), "a.b: bad");
        assert_eq!(ConfigError::new("", "/x", "bad").to_string(), "/x: bad");
        assert_eq!(ConfigError::new("", "", "bad").to_string(), "bad");
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncdé f", 0), (1, 1));
        assert_eq!(line_column("ab\ncdé f", 3), (2, 1));
        assert_eq!(line_column("ab\ncdé f", 8), (2, 5));
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    #[test]
    fn keys_are_quoted_only_when_needed() {
        assert_eq!(key_text("nat_ips"), "nat_ips");
        assert_eq!(key_text("a.b"), "\"a.b\"");
        assert_eq!(key_text(""), "\"\"");
    }
}
