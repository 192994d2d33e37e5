//! The standard set (`just loadtest`): every figure of docs/performance.md against freshly
//! started servers, telcall beside the reference relay (and `pgbench -S` for the PostgreSQL
//! read path), written out as Markdown tables, JSON lines and two SVG plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::Command;

use crate::modes::{churn, http, idle, relay, webhook};
use crate::plot::{Line, draw};
use crate::report::{Report, ServerRun, fmt_num};
use crate::{Common, Mode, measure, progress};

/// Arguments of `suite`.
#[derive(clap::Args)]
pub struct SuiteArgs {
    /// The telcall binary to start for each measurement (a release build).
    #[arg(long)]
    server: PathBuf,
    /// A PostgreSQL server (loopback) for the PostgreSQL figures and `pgbench -S`;
    /// scratch databases are created in it and dropped afterwards.
    #[arg(long)]
    postgres: Option<String>,
    /// Where tables, JSON lines and plots are written.
    #[arg(long, default_value = "target/loadtest")]
    out: PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Idle socket counts.
    #[arg(long, value_delimiter = ',', default_value = "5000,19000")]
    sockets: Vec<usize>,
    /// Which parts to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "http,relay,sweep,idle,churn"
    )]
    parts: Vec<String>,
}

/// `GET /health` again with the generator at the lowest priority (`http --yield-cpu`, in a
/// process of its own, since a lowered priority cannot be raised again): what the servers
/// answer when the load does not take the cores from them.
async fn health_with_generator_yielding(args: &SuiteArgs, d: Duration) -> anyhow::Result<Report> {
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let out = Command::new(exe)
        .arg("http")
        .arg("--server")
        .arg(&args.server)
        .args(["--paths", "health", "--connections", "50", "--yield-cpu"])
        .arg("--duration")
        .arg(d.as_secs_f64().to_string())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("cannot run the generator at a lower priority")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| Report::from_json(&v))
        .with_context(|| format!("the lower-priority run gave no result ({})", out.status))
}

/// Runs the standard set; returns whether every run was free of errors.
pub async fn run(args: SuiteArgs) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&args.out)?;
    let d = Duration::from_secs_f64(args.duration.clamp(1.0, 60.0));
    let sqlite = Common {
        target: None,
        server: Some(args.server.clone()),
        database_url: None,
        instances: 1,
        redis_url: None,
        bot_token: None,
        webhook_secret: None,
        server_pid: None,
        no_reference: false,
        duration: d.as_secs_f64(),
        yield_cpu: false,
    };
    let part = |p: &str| args.parts.iter().any(|x| x == p);
    let mut reports: Vec<(String, Report)> = Vec::new();
    let mut pg_tps = None;

    if part("http") {
        let mode = Mode::Http(http::Params {
            connections: 50,
            duration: d,
            paths: vec![http::Path::Health, http::Path::Call],
        });
        reports.push(("http".into(), measure(&sqlite, &mode).await?));
        reports.push((
            "http_yield".into(),
            health_with_generator_yielding(&args, d).await?,
        ));
    }
    if let (true, Some(pg)) = (part("http"), &args.postgres) {
        let db = Scratch::create(pg, "telcall_loadtest").await?;
        let common = Common {
            database_url: Some(db.url.clone()),
            no_reference: true,
            ..sqlite.clone()
        };
        let mode = Mode::Http(http::Params {
            connections: 50,
            duration: d,
            paths: vec![http::Path::Call],
        });
        let result = measure(&common, &mode).await;
        db.drop_it().await?;
        let mut report = result?;
        let tps = pgbench(pg, 50, d).await?;
        pg_tps = Some(tps);
        let mut run = ServerRun::new("pgbench");
        run.metric(
            "call_read_req_per_s",
            tps,
            "tps",
            crate::report::Better::Higher,
        );
        report.runs.push(run);
        report
            .notes
            .push("telcall on PostgreSQL; pgbench -S with as many clients, same duration".into());
        reports.push(("http_postgres".into(), report));
    }
    let mut closed_ref_rate = None;
    if part("relay") {
        for (rooms, peers) in [(50, 2), (10, 6)] {
            let mode = Mode::Relay(relay::Params {
                rooms,
                peers,
                duration: d,
                window: 1,
                rate: None,
                payload: 256,
            });
            let report = measure(&sqlite, &mode).await?;
            if rooms == 50 {
                closed_ref_rate = report
                    .runs
                    .iter()
                    .find(|r| r.server == "reference")
                    .and_then(|r| r.get("offers_per_s"));
            }
            reports.push((format!("relay_{rooms}x{peers}"), report));
        }
    }
    let mut sweep: Vec<(f64, Report)> = Vec::new();
    if part("sweep") {
        let max = closed_ref_rate.unwrap_or(10_000.0);
        let short = Duration::from_secs_f64((d.as_secs_f64() / 2.0).max(1.0));
        for frac in [0.1, 0.25, 0.5, 0.75, 0.9] {
            let rate = (max * frac).round();
            let mode = Mode::Relay(relay::Params {
                rooms: 50,
                peers: 2,
                duration: short,
                window: 1,
                rate: Some(rate),
                payload: 256,
            });
            let common = Common {
                duration: short.as_secs_f64(),
                ..sqlite.clone()
            };
            sweep.push((rate, measure(&common, &mode).await?));
        }
    }
    let mut idle_reports = Vec::new();
    if part("idle") {
        for &n in &args.sockets {
            let mode = Mode::Idle(idle::Params {
                sockets: n,
                room_size: 25,
                concurrency: 128,
                hold: Duration::from_secs(2),
                steps: 10,
            });
            let report = measure(&sqlite, &mode).await?;
            idle_reports.push((n, report.clone()));
            reports.push((format!("idle_{n}"), report));
        }
        if let Some(pg) = &args.postgres {
            let n = args.sockets.first().copied().unwrap_or(5000);
            let db = Scratch::create(pg, "telcall_loadtest").await?;
            let common = Common {
                database_url: Some(db.url.clone()),
                no_reference: true,
                ..sqlite.clone()
            };
            let mode = Mode::Idle(idle::Params {
                sockets: n,
                room_size: 25,
                concurrency: 128,
                hold: Duration::from_secs(2),
                steps: 10,
            });
            let result = measure(&common, &mode).await;
            db.drop_it().await?;
            let mut report = result?;
            report.notes.push("telcall on PostgreSQL".into());
            reports.push((format!("idle_{n}_postgres"), report));
        }
    }
    if part("churn") {
        let mode = Mode::Churn(churn::Params {
            lanes: 50,
            room_size: 5,
            duration: d,
        });
        reports.push(("churn".into(), measure(&sqlite, &mode).await?));
    }
    if part("webhook") {
        let mode = Mode::Webhook(webhook::Params {
            connections: 50,
            duration: d,
        });
        reports.push(("webhook".into(), measure(&sqlite, &mode).await?));
    }

    let mut jsonl = String::new();
    for (name, r) in reports.iter().chain(
        sweep
            .iter()
            .map(|(_, r)| r)
            .map(|r| ("sweep".to_owned(), r.clone()))
            .collect::<Vec<_>>()
            .iter(),
    ) {
        let _ = writeln!(
            jsonl,
            "{{\"name\":\"{name}\",\"result\":{}}}",
            r.json_line()
        );
    }
    std::fs::write(args.out.join("results.jsonl"), jsonl)?;
    if !sweep.is_empty() {
        rtt_plot(&args.out.join("rtt.svg"), &sweep)?;
    }
    if let Some((n, r)) = idle_reports.last() {
        rss_plot(&args.out.join("rss.svg"), *n, r)?;
    }
    let md = markdown(&reports, &sweep, pg_tps);
    std::fs::write(args.out.join("tables.md"), &md)?;
    println!("{md}");
    progress(&format!("wrote {}", args.out.display()));
    let errors: u64 = reports.iter().map(|(_, r)| r.errors()).sum::<u64>()
        + sweep.iter().map(|(_, r)| r.errors()).sum::<u64>();
    Ok(errors == 0)
}

fn fig(r: &Report, server: &str, key: &str) -> Option<f64> {
    r.runs.iter().find(|x| x.server == server)?.get(key)
}

fn find<'a>(reports: &'a [(String, Report)], name: &str) -> Option<&'a Report> {
    reports.iter().find(|(n, _)| n == name).map(|(_, r)| r)
}

/// The docs-ready tables.
fn markdown(reports: &[(String, Report)], sweep: &[(f64, Report)], pg_tps: Option<f64>) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| figure | telcall | reference relay | telcall ÷ reference |"
    );
    let _ = writeln!(md, "|---|---|---|---|");
    let mut row = |label: &str, r: Option<&Report>, key: &str, unit: &str| {
        let Some(r) = r else { return };
        let (t, x) = (fig(r, "telcall", key), fig(r, "reference", key));
        let cell =
            |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{} {unit}", fmt_num(v)));
        let ratio = match (t, x) {
            (Some(t), Some(x)) if x != 0.0 => format!("{:.2}×", t / x),
            _ => "–".to_owned(),
        };
        let _ = writeln!(md, "| {label} | {} | {} | {ratio} |", cell(t), cell(x));
    };
    for (name, r) in reports
        .iter()
        .filter(|(n, _)| n.starts_with("idle_") && !n.ends_with("postgres"))
    {
        let n = name.trim_start_matches("idle_");
        let n = fmt_num(n.parse().unwrap_or(0.0));
        row(
            &format!("RSS per idle WebSocket, {n} sockets (25 per call)"),
            Some(r),
            "rss_per_socket_kib",
            "KiB",
        );
        row(
            &format!("joins/s filling {n} sockets (25 per call)"),
            Some(r),
            "joins_per_s",
            "/s",
        );
        row(
            &format!("joins/s, last tenth of {n}"),
            Some(r),
            "joins_per_s_last_step",
            "/s",
        );
    }
    let http = find(reports, "http");
    row(
        "authenticated `GET /api/calls/{id}`, 50 connections (SQLite)",
        http,
        "call_read_req_per_s",
        "req/s",
    );
    row("… p99", http, "call_read_p99_ms", "ms");
    for (name, label) in [
        ("relay_50x2", "relay, closed loop, 50 rooms × 2"),
        ("relay_10x6", "relay, closed loop, 10 rooms × 6"),
    ] {
        let r = find(reports, name);
        row(&format!("{label}: messages/s"), r, "messages_per_s", "/s");
        row(&format!("{label}: RTT p50"), r, "rtt_p50_ms", "ms");
        row(&format!("{label}: RTT p99"), r, "rtt_p99_ms", "ms");
    }
    row(
        "`GET /health`, 50 connections",
        http,
        "health_req_per_s",
        "req/s",
    );
    row("… p99", http, "health_p99_ms", "ms");
    let yielded = find(reports, "http_yield");
    row(
        "`GET /health`, 50 connections, generator at nice 19",
        yielded,
        "health_req_per_s",
        "req/s",
    );
    row("… p99", yielded, "health_p99_ms", "ms");
    let churn = find(reports, "churn");
    row(
        "join+leave cycles/s, 50 lanes (5 per call)",
        churn,
        "cycles_per_s",
        "/s",
    );
    let wh = find(reports, "webhook");
    row(
        "webhook updates/s, 50 connections",
        wh,
        "updates_per_s",
        "/s",
    );
    row("… p99", wh, "update_p99_ms", "ms");

    if let (Some(r), Some(tps)) = (find(reports, "http_postgres"), pg_tps) {
        let t = fig(r, "telcall", "call_read_req_per_s").unwrap_or(0.0);
        let _ = writeln!(md, "\nPostgreSQL read path (same run):\n");
        let _ = writeln!(
            md,
            "| figure | telcall | `pgbench -S` | telcall ÷ pgbench |"
        );
        let _ = writeln!(md, "|---|---|---|---|");
        let _ = writeln!(
            md,
            "| authenticated `GET /api/calls/{{id}}`, 50 connections | {} req/s | {} tps | {:.2}× |",
            fmt_num(t),
            fmt_num(tps),
            t / tps
        );
        if let Some(p99) = fig(r, "telcall", "call_read_p99_ms") {
            let _ = writeln!(md, "| … p99 | {} ms | | |", fmt_num(p99));
        }
    }
    if let Some((name, r)) = reports
        .iter()
        .find(|(n, _)| n.starts_with("idle_") && n.ends_with("postgres"))
    {
        let _ = writeln!(
            md,
            "\nPostgreSQL joins ({}): {} joins/s filling, {} joins/s in the last tenth.",
            name,
            fig(r, "telcall", "joins_per_s").map_or("–".into(), fmt_num),
            fig(r, "telcall", "joins_per_s_last_step").map_or("–".into(), fmt_num),
        );
    }
    if !sweep.is_empty() {
        let _ = writeln!(
            md,
            "\nRTT against offered load (open loop, 50 rooms × 2):\n"
        );
        let _ = writeln!(
            md,
            "| offered offers/s | telcall p50 | telcall p99 | reference p50 | reference p99 |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|");
        for (rate, r) in sweep {
            let c = |s: &str, k: &str| {
                fig(r, s, k).map_or("–".into(), |v| format!("{} ms", fmt_num(v)))
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                fmt_num(*rate),
                c("telcall", "rtt_p50_ms"),
                c("telcall", "rtt_p99_ms"),
                c("reference", "rtt_p50_ms"),
                c("reference", "rtt_p99_ms")
            );
        }
    }
    let errors: Vec<String> = reports
        .iter()
        .map(|(n, r)| (n.clone(), r))
        .chain(sweep.iter().map(|(_, r)| ("sweep".to_owned(), r)))
        .filter(|(_, r)| r.errors() > 0)
        .map(|(n, r)| format!("{n}: {} errors", r.errors()))
        .collect();
    let _ = writeln!(
        md,
        "\nErrors: {}. {}",
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        },
        crate::machine_note()
    );
    md
}

fn rtt_plot(path: &Path, sweep: &[(f64, Report)]) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for (colour, server, name) in [
        (0, "telcall", "telcall"),
        (1, "reference", "reference relay"),
    ] {
        for (q, dashed) in [("p50", false), ("p99", true)] {
            let points = sweep
                .iter()
                .filter_map(|(rate, r)| Some((2.0 * rate, fig(r, server, &format!("rtt_{q}_ms"))?)))
                .collect();
            lines.push(Line {
                name: format!("{name} {q}"),
                points,
                dashed,
                colour,
            });
        }
    }
    draw(
        path,
        "Signaling RTT against offered load (50 rooms × 2, open loop)",
        "offered messages/s (offers + answers)",
        "round trip (ms)",
        &lines,
    )
}

fn rss_plot(path: &Path, n: usize, r: &Report) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for (colour, server, name) in [
        (0, "telcall", "telcall"),
        (1, "reference", "reference relay"),
    ] {
        let Some(run) = r.runs.iter().find(|x| x.server == server) else {
            continue;
        };
        let points = run.series["rss"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| Some((s["sockets"].as_f64()?, s["rss_kib"].as_f64()? / 1024.0)))
                    .collect()
            })
            .unwrap_or_default();
        lines.push(Line {
            name: name.to_owned(),
            points,
            dashed: false,
            colour,
        });
    }
    draw(
        path,
        &format!(
            "Server RSS against open WebSockets (25 per call, up to {})",
            fmt_num(n as f64)
        ),
        "open WebSockets",
        "RSS (MiB)",
        &lines,
    )
}

/// Refuses a PostgreSQL URL whose host is not loopback.
fn ensure_loopback_url(url: &str) -> anyhow::Result<()> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or_default();
    let host = hostport.rsplit('@').next().unwrap_or_default();
    let host = host.split(':').next().unwrap_or_default();
    if host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        Ok(())
    } else {
        bail!("refusing PostgreSQL at {host:?}: loopback only")
    }
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

async fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .await
        .context("cannot run psql (PostgreSQL client tools)")?;
    if !out.status.success() {
        bail!(
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A scratch database, dropped afterwards.
struct Scratch {
    admin: String,
    name: String,
    url: String,
}

impl Scratch {
    async fn create(admin: &str, prefix: &str) -> anyhow::Result<Self> {
        ensure_loopback_url(admin)?;
        let name = format!("{prefix}_{}", rand::random::<u32>());
        psql(admin, &format!("CREATE DATABASE {name}")).await?;
        Ok(Self {
            admin: admin.to_owned(),
            url: with_database(admin, &name),
            name,
        })
    }

    async fn drop_it(self) -> anyhow::Result<()> {
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await
    }
}

/// `pgbench -S` (select-only) with `clients` clients for `duration` on a scratch database;
/// returns transactions per second.
pub async fn pgbench(admin: &str, clients: usize, duration: Duration) -> anyhow::Result<f64> {
    let db = Scratch::create(admin, "telcall_pgbench").await?;
    let result = async {
        let init = Command::new("pgbench")
            .args(["-i", "-q", "-s", "1", &db.url])
            .output()
            .await
            .context("cannot run pgbench (PostgreSQL client tools)")?;
        if !init.status.success() {
            bail!(
                "pgbench -i failed: {}",
                String::from_utf8_lossy(&init.stderr).trim()
            );
        }
        progress(&format!(
            "pgbench -S, {clients} clients, {:.0} s",
            duration.as_secs_f64()
        ));
        let out = Command::new("pgbench")
            .args([
                "-S",
                "-n",
                "-c",
                &clients.to_string(),
                "-j",
                "2",
                "-T",
                &duration.as_secs().max(1).to_string(),
                &db.url,
            ])
            .output()
            .await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let tps = text
            .lines()
            .find(|l| l.starts_with("tps = "))
            .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| {
                format!(
                    "no tps in pgbench's output: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        progress(&format!("pgbench -S: {tps:.0} tps"));
        Ok(tps)
    }
    .await;
    db.drop_it().await?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn database_urls_are_rewritten_and_checked() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@localhost/test?sslmode=disable", "y"),
            "postgres://u@localhost/y?sslmode=disable"
        );
        assert!(ensure_loopback_url("postgres://postgres@127.0.0.1:5432/test").is_ok());
        assert!(ensure_loopback_url("postgres://postgres@db.example.com:5432/test").is_err());
        assert!(ensure_loopback_url("postgres://u:p@10.1.2.3/test").is_err());
    }

    #[test]
    fn markdown_pairs_telcall_with_the_reference() {
        let mut t = ServerRun::new("telcall");
        t.metric(
            "health_req_per_s",
            50_000.0,
            "req/s",
            crate::report::Better::Higher,
        );
        let mut r = ServerRun::new("reference");
        r.metric(
            "health_req_per_s",
            100_000.0,
            "req/s",
            crate::report::Better::Higher,
        );
        let report = Report {
            mode: "http".into(),
            params: Value::Null,
            runs: vec![t, r],
            notes: vec![],
        };
        let md = markdown(&[("http".into(), report)], &[], None);
        assert!(
            md.contains("| `GET /health`, 50 connections | 50,000 req/s | 100,000 req/s | 0.50× |"),
            "{md}"
        );
    }
}
