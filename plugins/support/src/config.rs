//! A plugin's configuration: the JSON object `init` receives, read key by key.
//!
//! Every error names the key and says what is allowed, since the operator reads it in the
//! gateway's log when the plugin is refused.

use crate::json::{self, Value};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// A parsed configuration object.
#[derive(Debug, Clone)]
pub struct Config {
    root: Value,
}

impl Config {
    /// Parses `text`, which must be a JSON object whose keys are all in `known`.
    pub fn parse(text: &str, known: &[&str]) -> Result<Self, String> {
        let root = json::parse(text).map_err(|e| format!("configuration: {e}"))?;
        let Value::Object(members) = &root else {
            return Err(format!("configuration: expected an object, found {}", root.kind()));
        };
        if let Some((name, _)) = members.iter().find(|(name, _)| !known.contains(&name.as_str())) {
            return Err(format!("configuration: unknown key `{name}` (known keys: {})", known.join(", ")));
        }
        Ok(Self { root })
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.root.get(key)
    }

    /// `key` as a list of strings.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let items = value.as_array().ok_or_else(|| expected(key, "a list of strings", value))?;
        items
            .iter()
            .map(|item| item.as_str().map(String::from).ok_or_else(|| expected(key, "a list of strings", item)))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// `key` as a list of integers in `0..=max`.
    pub fn integers(&self, key: &str, max: u64) -> Result<Option<Vec<u64>>, String> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let what = format!("a list of integers from 0 to {max}");
        let items = value.as_array().ok_or_else(|| expected(key, &what, value))?;
        items
            .iter()
            .map(|item| item.as_u64().filter(|n| *n <= max).ok_or_else(|| expected(key, &what, item)))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// `key` as an integer in `min..=max`.
    pub fn integer(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, String> {
        let Some(value) = self.get(key) else { return Ok(None) };
        value
            .as_u64()
            .filter(|n| (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| expected(key, &format!("an integer from {min} to {max}"), value))
    }

    /// `key` as a string.
    pub fn string(&self, key: &str) -> Result<Option<String>, String> {
        let Some(value) = self.get(key) else { return Ok(None) };
        value.as_str().map(|text| Some(text.into())).ok_or_else(|| expected(key, "a string", value))
    }

    /// `key` as one of `choices`.
    pub fn choice(&self, key: &str, choices: &[&'static str]) -> Result<Option<&'static str>, String> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let what = format!("one of \"{}\"", choices.join("\", \""));
        let text = value.as_str().ok_or_else(|| expected(key, &what, value))?;
        choices
            .iter()
            .find(|choice| **choice == text)
            .map(|choice| Some(*choice))
            .ok_or_else(|| format!("configuration: `{key}` must be {what}, not \"{text}\""))
    }
}

fn expected(key: &str, what: &str, found: &Value) -> String {
    match found {
        Value::Number(text) => format!("configuration: `{key}` must be {what}, found the number {text}"),
        _ => format!("configuration: `{key}` must be {what}, found {}", found.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_and_names_them_in_errors() {
        let config = Config::parse(
            r#"{"ports": [80, 443], "per_second": 5, "prefix": "vpce-"}"#,
            &["ports", "per_second", "prefix"],
        )
        .unwrap();
        assert_eq!(config.integers("ports", 65535).unwrap(), Some(alloc::vec![80, 443]));
        assert_eq!(config.integer("per_second", 1, 1000).unwrap(), Some(5));
        assert_eq!(config.string("prefix").unwrap().as_deref(), Some("vpce-"));
        assert_eq!(config.strings("missing").unwrap(), None);
        assert!(config.integer("per_second", 10, 20).unwrap_err().contains("`per_second`"));
        assert!(config.strings("ports").unwrap_err().contains("list of strings"));
        assert!(Config::parse(r#"{"port": 1}"#, &["ports"]).unwrap_err().contains("unknown key `port`"));
        assert!(Config::parse("[]", &[]).unwrap_err().contains("expected an object"));
        assert!(Config::parse(r#"{"ports": [70000]}"#, &["ports"]).unwrap().integers("ports", 65535).is_err());
    }
}
