//! Durations as written in the file: `"7440s"`, `"2h4m"`, `"300s"`, `"500ms"`, `"1m"`.
//!
//! A duration is one or more `<integer><unit>` parts, units `h`, `m`, `s`, `ms`, each at most
//! once and largest first (`"1h30m"`, not `"30m1h"`), without spaces.

use std::time::Duration;

/// What a duration must look like, for error messages.
pub(crate) const EXPECTED: &str =
    "expected a duration such as \"300s\", \"2h4m\" or \"500ms\" (whole numbers with units h, m, s, ms, largest first)";

/// Parses a duration, or `None` if it is not one.
pub(crate) fn parse(text: &str) -> Option<Duration> {
    // Units in the order they must appear, with their length in milliseconds.
    const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
    let mut rest = text;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        // Nine digits of hours already exceed any sensible timeout; this keeps the sum exact.
        if digits == 0 || digits > 9 {
            return None;
        }
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number.parse().ok()?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let index = UNITS.iter().position(|(u, _)| *u == unit)?;
        if index < next_unit {
            return None;
        }
        next_unit = index + 1;
        total = total.checked_add(number.checked_mul(UNITS[index].1)?)?;
        rest = tail;
    }
    Some(Duration::from_millis(total))
}

/// A duration the way a person writes it: `2h4m`, `4m`, `500ms`, `1m30s`, `0s`.
pub(crate) fn human(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, len) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    out
}

/// A duration in seconds (`7440s`), or in milliseconds when it is not whole seconds.
pub(crate) fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("7440s"), Some(Duration::from_secs(7440)));
        assert_eq!(parse("2h4m"), Some(Duration::from_secs(7440)));
        assert_eq!(parse("300s"), Some(Duration::from_secs(300)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse("1h30m15s250ms"), Some(Duration::from_millis(5_415_250)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
        assert_eq!(parse("90m"), Some(Duration::from_secs(5400)));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "300",
            "s",
            "5 m",
            " 5m",
            "5m ",
            "1.5h",
            "-5s",
            "4m2h",
            "1m1m",
            "5d",
            "5S",
            "5sec",
            "1000000000h",
            "m5",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn prints_like_a_person() {
        assert_eq!(human(Duration::from_secs(7440)), "2h4m");
        assert_eq!(human(Duration::from_secs(240)), "4m");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_millis(500)), "500ms");
        assert_eq!(human(Duration::ZERO), "0s");
        assert_eq!(seconds(Duration::from_secs(7440)), "7440s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1500ms");
    }
}
