//! Results: per-server metrics, latency histograms, the one-line JSON result and the
//! readable table (telcall, reference relay, ratio).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

/// Which direction is better for a metric (for the ratio column's reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughput-like.
    Higher,
    /// Latency- or memory-like.
    Lower,
}

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Metric {
    /// Key in the JSON result.
    pub key: String,
    /// Value.
    pub value: f64,
    /// Unit shown in the table.
    pub unit: &'static str,
    /// Which way is better.
    pub better: Better,
}

/// What one server did under one load.
#[derive(Debug, Clone)]
pub struct ServerRun {
    /// `telcall` or `reference`.
    pub server: &'static str,
    /// Figures, in table order.
    pub metrics: Vec<Metric>,
    /// Failed requests, error frames, failed handshakes, unanswered offers, unclosed sockets.
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// Extra series (RSS samples, sweeps) for plots.
    pub series: Value,
}

impl ServerRun {
    /// An empty run for `server`.
    pub fn new(server: &'static str) -> Self {
        Self {
            server,
            metrics: Vec::new(),
            errors: 0,
            error_samples: Vec::new(),
            series: Value::Null,
        }
    }

    /// Adds a figure.
    pub fn metric(&mut self, key: &str, value: f64, unit: &'static str, better: Better) {
        self.metrics.push(Metric {
            key: key.to_owned(),
            value,
            unit,
            better,
        });
    }

    /// Adds p50/p90/p99/p99.9/max of a microsecond histogram, in milliseconds.
    pub fn latency(&mut self, prefix: &str, h: &Histogram<u64>) {
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
            self.metric(
                &format!("{prefix}_{name}_ms"),
                h.value_at_quantile(q) as f64 / 1000.0,
                "ms",
                Better::Lower,
            );
        }
        self.metric(
            &format!("{prefix}_max_ms"),
            h.max() as f64 / 1000.0,
            "ms",
            Better::Lower,
        );
    }

    /// Records errors with a sample message.
    pub fn error(&mut self, count: u64, message: impl Into<String>) {
        self.errors += count;
        if self.error_samples.len() < 5 {
            self.error_samples.push(message.into());
        }
    }

    /// A figure by key.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }

    fn to_json(&self) -> Value {
        let mut metrics = Map::new();
        for m in &self.metrics {
            metrics.insert(m.key.clone(), json!(round(m.value)));
        }
        json!({
            "server": self.server,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "metrics": metrics,
            "series": self.series,
        })
    }
}

/// A new microsecond latency histogram (1 µs – 60 s, 3 significant digits).
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn round(v: f64) -> f64 {
    if v.abs() >= 100.0 {
        v.round()
    } else {
        (v * 1000.0).round() / 1000.0
    }
}

/// The result of one mode.
#[derive(Debug, Clone)]
pub struct Report {
    /// Mode name.
    pub mode: String,
    /// The load's parameters.
    pub params: Value,
    /// One entry per server, telcall first.
    pub runs: Vec<ServerRun>,
    /// Notes (machine, conditions).
    pub notes: Vec<String>,
}

impl Report {
    /// A report back from its [`Report::json_line`] (another run of this tool, e.g. one at a
    /// lower priority). Units and directions are read off the keys' suffixes; series and
    /// unknown server names are left out.
    pub fn from_json(v: &Value) -> Option<Self> {
        let runs = v["runs"]
            .as_array()?
            .iter()
            .filter_map(|r| {
                let server = match r["server"].as_str()? {
                    "telcall" => "telcall",
                    "reference" => "reference",
                    "pgbench" => "pgbench",
                    _ => return None,
                };
                let mut run = ServerRun::new(server);
                for (key, value) in r["metrics"].as_object()? {
                    let (unit, better) = if key.ends_with("_ms") {
                        ("ms", Better::Lower)
                    } else if key.ends_with("_per_s") {
                        ("/s", Better::Higher)
                    } else {
                        ("", Better::Higher)
                    };
                    run.metric(key, value.as_f64()?, unit, better);
                }
                let errors = r["errors"].as_u64().unwrap_or(0);
                if errors > 0 {
                    run.error(
                        errors,
                        "(errors counted by the run that produced this report)",
                    );
                }
                Some(run)
            })
            .collect();
        Some(Self {
            mode: v["mode"].as_str()?.to_owned(),
            params: v["params"].clone(),
            runs,
            notes: v["notes"]
                .as_array()
                .map(|n| {
                    n.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Total errors over all runs.
    pub fn errors(&self) -> u64 {
        self.runs.iter().map(|r| r.errors).sum()
    }

    /// telcall's figure divided by the reference's, per key present in both.
    pub fn ratios(&self) -> Vec<(String, f64)> {
        let (Some(t), Some(r)) = (
            self.runs.iter().find(|r| r.server == "telcall"),
            self.runs.iter().find(|r| r.server == "reference"),
        ) else {
            return Vec::new();
        };
        t.metrics
            .iter()
            .filter_map(|m| {
                let rv = r.get(&m.key)?;
                (rv != 0.0).then(|| (m.key.clone(), m.value / rv))
            })
            .collect()
    }

    /// The one-line JSON result.
    pub fn json_line(&self) -> String {
        let ratios: Map<String, Value> = self
            .ratios()
            .into_iter()
            .map(|(k, v)| (k, json!((v * 1000.0).round() / 1000.0)))
            .collect();
        json!({
            "mode": self.mode,
            "params": self.params,
            "ok": self.errors() == 0,
            "errors": self.errors(),
            "runs": self.runs.iter().map(ServerRun::to_json).collect::<Vec<_>>(),
            "ratios": ratios,
            "notes": self.notes,
        })
        .to_string()
    }

    /// The readable table: one row per figure, a column per server and the ratio.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} {}", self.mode, self.params);
        let servers: Vec<&ServerRun> = self.runs.iter().collect();
        let ratios = self.ratios();
        let mut header = format!("{:<28}", "figure");
        for s in &servers {
            let _ = write!(header, " {:>14}", s.server);
        }
        if !ratios.is_empty() {
            let _ = write!(header, " {:>10}", "ratio");
        }
        let _ = writeln!(out, "{header}");
        let _ = writeln!(out, "{}", "-".repeat(header.len()));
        let Some(first) = servers.first() else {
            return out;
        };
        for m in &first.metrics {
            let mut row = format!("{:<28}", format!("{} ({})", m.key, m.unit));
            for s in &servers {
                let v = s.get(&m.key).map_or("-".to_owned(), fmt_num);
                let _ = write!(row, " {v:>14}");
            }
            if let Some((_, r)) = ratios.iter().find(|(k, _)| *k == m.key) {
                let _ = write!(row, " {:>9.2}×", r);
            }
            let _ = writeln!(out, "{row}");
        }
        for s in &servers {
            let _ = writeln!(out, "{}: {} errors", s.server, s.errors);
            for e in &s.error_samples {
                let _ = writeln!(out, "  {e}");
            }
        }
        out
    }
}

/// A number for humans: thousands separated, few decimals.
pub fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let n = v.round() as i64;
        let s = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(72_345.4), "72,345");
        assert_eq!(fmt_num(1_234_567.0), "1,234,567");
        assert_eq!(fmt_num(3.456), "3.46");
        assert_eq!(fmt_num(250.2), "250");
    }

    #[test]
    fn ratios_divide_telcall_by_the_reference() {
        let mut t = ServerRun::new("telcall");
        t.metric("req_per_s", 50.0, "req/s", Better::Higher);
        let mut r = ServerRun::new("reference");
        r.metric("req_per_s", 100.0, "req/s", Better::Higher);
        let report = Report {
            mode: "http".into(),
            params: json!({}),
            runs: vec![t, r],
            notes: vec![],
        };
        assert_eq!(report.ratios(), vec![("req_per_s".to_owned(), 0.5)]);
        let line: Value = serde_json::from_str(&report.json_line()).unwrap_or_default();
        assert_eq!(line["ratios"]["req_per_s"], 0.5);
        assert_eq!(line["ok"], true);
        assert!(report.table().contains("0.50×"));
    }

    #[test]
    fn a_report_read_back_from_its_json_line_has_the_same_figures() {
        let mut t = ServerRun::new("telcall");
        t.metric("health_req_per_s", 90_000.0, "req/s", Better::Higher);
        t.metric("health_p99_ms", 1.5, "ms", Better::Lower);
        t.error(2, "boom");
        let mut r = ServerRun::new("reference");
        r.metric("health_p99_ms", 1.2, "ms", Better::Lower);
        let report = Report {
            mode: "http".into(),
            params: json!({"connections": 50}),
            runs: vec![t, r],
            notes: vec!["nice".into()],
        };
        let line: Value = serde_json::from_str(&report.json_line()).unwrap_or_default();
        let back = Report::from_json(&line).unwrap_or_else(|| panic!("unreadable: {line}"));
        assert_eq!(back.mode, "http");
        assert_eq!(back.params, json!({"connections": 50}));
        assert_eq!(back.notes, ["nice"]);
        assert_eq!(back.errors(), 2);
        assert_eq!(back.runs[0].get("health_req_per_s"), Some(90_000.0));
        assert_eq!(back.runs[1].get("health_p99_ms"), Some(1.2));
        assert_eq!(back.ratios(), report.ratios());
        assert_eq!(
            Report::from_json(&json!({"mode": "http"})).map(|r| r.runs.len()),
            None
        );
    }
}
