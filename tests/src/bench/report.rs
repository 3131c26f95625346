//! One JSON line per measurement. Every line has the same eight fields
//! (`null` where a figure does not apply), then the scenario's own.

use serde::Serialize;
use serde_json::{Map, Value};

use super::stats::Summary;

/// A result line.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub scenario: &'static str,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
    pub req_per_s: Option<f64>,
    pub rss_kb: Option<u64>,
    pub upstream_calls: Option<u64>,
    pub errors: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Line {
    pub fn new(scenario: &'static str) -> Line {
        Line {
            scenario,
            p50_us: None,
            p99_us: None,
            max_us: None,
            req_per_s: None,
            rss_kb: None,
            upstream_calls: None,
            errors: 0,
            extra: Map::new(),
        }
    }

    /// A line saying the scenario did not run, and why.
    pub fn skipped(scenario: &'static str, why: &str) -> Line {
        Line::new(scenario).with("skipped", why)
    }

    /// Sets p50/p99/max from a summary (left `null` with no samples).
    pub fn latency(mut self, summary: Option<Summary>) -> Line {
        if let Some(s) = summary {
            self.p50_us = Some(s.p50_us);
            self.p99_us = Some(s.p99_us);
            self.max_us = Some(s.max_us);
        }
        self
    }

    /// Adds a scenario-specific field; the standard ones cannot be shadowed.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Line {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The line as printed.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_has_the_standard_fields() {
        let line = Line::new("cold")
            .latency(Some(Summary {
                count: 3,
                p50_us: 1.5,
                p99_us: 9.0,
                max_us: 9.0,
                mean_us: 4.0,
            }))
            .with("credentials", 100);
        let v: Value = serde_json::from_str(&line.to_json()).unwrap();
        for key in [
            "scenario",
            "p50_us",
            "p99_us",
            "max_us",
            "req_per_s",
            "rss_kb",
            "upstream_calls",
            "errors",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert_eq!(v["scenario"], "cold");
        assert_eq!(v["p50_us"], 1.5);
        assert_eq!(v["req_per_s"], Value::Null);
        assert_eq!(v["credentials"], 100);
        let text = line.to_json();
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn skipped_lines_say_why() {
        let v: Value =
            serde_json::from_str(&Line::skipped("soak", "needs its own daemon").to_json()).unwrap();
        assert_eq!(v["skipped"], "needs its own daemon");
        assert_eq!(v["errors"], 0);
    }
}
