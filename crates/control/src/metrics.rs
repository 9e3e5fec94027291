//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Small enough to write by hand: families with `# HELP` and `# TYPE`, label values escaped
//! (backslash, double quote, newline), counters named `*_total`.

use std::fmt::Write;

/// Builds one exposition document.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// Escapes a label value.
fn escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Escapes help text.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

impl Exposition {
    /// Starts a family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        if value.fract() == 0.0 && value.abs() < 1e15 {
            // Whole numbers print without a fraction; below 1e15 the conversion is exact.
            #[allow(clippy::cast_possible_truncation)]
            let whole = value as i64;
            let _ = writeln!(self.out, " {whole}");
        } else {
            let _ = writeln!(self.out, " {value}");
        }
        self
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        let mut e = Exposition::default();
        e.family("overlink_x_total", "counter", "X.\nSecond line");
        e.sample("overlink_x_total", &[("a", "q\"u\\o\nte")], 3.0);
        e.sample("overlink_x_total", &[], 0.5);
        assert_eq!(
            e.finish(),
            "# HELP overlink_x_total X.\\nSecond line\n# TYPE overlink_x_total counter\n\
             overlink_x_total{a=\"q\\\"u\\\\o\\nte\"} 3\noverlink_x_total 0.5\n"
        );
    }
}
