//! `webhook`: Telegram updates posted to `POST /api/telegram/webhook` with the secret
//! header, over keep-alive connections: inline queries for a live call (answered through
//! the Bot API, played here by the generator's own stand-in). Updates/s and latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use serde_json::json;

use crate::fixture::{Kind, Target, populate};
use crate::net::HttpConn;
use crate::report::{Better, ServerRun, histogram};

/// Parameters of the `webhook` mode.
#[derive(Debug, Clone)]
pub struct Params {
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// Measurement time.
    pub duration: Duration,
}

impl Params {
    /// The parameters as JSON.
    pub fn json(&self) -> serde_json::Value {
        json!({ "connections": self.connections, "duration_s": self.duration.as_secs_f64() })
    }
}

/// Posts updates to `t` for the duration.
pub async fn run(t: &Target, p: &Params) -> anyhow::Result<ServerRun> {
    let mut out = ServerRun::new(t.kind.name());
    let rooms = populate(t, 1, 1).await?;
    let call = format!("call_{}", rooms[0].call_id);
    let secret = match (t.kind, &t.webhook_secret) {
        (Kind::Telcall, None) => {
            bail!("the webhook mode needs --webhook-secret (BOT_WEBHOOK_SECRET)")
        }
        (_, s) => s.clone().unwrap_or_default(),
    };
    let next_id = Arc::new(AtomicU64::new(u64::from(rand::random::<u32>())));
    let deadline = Instant::now() + p.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..p.connections {
        let (addr, ip) = (t.addr, t.ips.ip(300_000 + c));
        let (call, secret, next_id) = (call.clone(), secret.clone(), next_id.clone());
        tasks.spawn(async move {
            let mut h = histogram()?;
            let (mut errors, mut sample) = (0u64, None);
            let mut conn = HttpConn::open(ip, addr).await?;
            let headers = [("x-telegram-bot-api-secret-token", secret.as_str())];
            while Instant::now() < deadline {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let body = json!({
                    "update_id": id,
                    "inline_query": {
                        "id": format!("{id}"),
                        "from": {"id": 5_000_000 + c as i64, "is_bot": false, "first_name": "Load", "language_code": "en"},
                        "query": call,
                        "offset": "",
                    }
                });
                let started = Instant::now();
                match conn.send("POST", "/api/telegram/webhook", &headers, Some(Bytes::from(body.to_string()))).await {
                    Ok(r) if r.status.as_u16() == 200 => {
                        h.saturating_record(started.elapsed().as_micros() as u64);
                    }
                    Ok(r) if r.status.as_u16() == 429 => bail!(
                        "webhook: rate limited ({}): start telcall with the load-test profile",
                        r.describe()
                    ),
                    Ok(r) => {
                        errors += 1;
                        sample.get_or_insert_with(|| format!("webhook: {}", r.describe()));
                    }
                    Err(e) => {
                        errors += 1;
                        sample.get_or_insert_with(|| format!("webhook: {e:#}"));
                        conn = HttpConn::open(ip, addr).await?;
                    }
                }
            }
            anyhow::Ok((h, errors, sample))
        });
    }
    let started = Instant::now();
    let mut h = histogram()?;
    while let Some(res) = tasks.join_next().await {
        let (ch, errors, sample) = res??;
        h.add(&ch)?;
        if errors > 0 {
            out.error(errors, sample.unwrap_or_default());
        }
    }
    let secs = started
        .elapsed()
        .as_secs_f64()
        .max(p.duration.as_secs_f64());
    out.metric(
        "updates_per_s",
        h.len() as f64 / secs,
        "updates/s",
        Better::Higher,
    );
    out.latency("update", &h);
    out.metric("updates", h.len() as f64, "count", Better::Higher);
    crate::progress(&format!(
        "{}: {:.0} updates/s",
        t.kind.name(),
        h.len() as f64 / secs
    ));
    Ok(out)
}
