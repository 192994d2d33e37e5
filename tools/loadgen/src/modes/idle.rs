//! `idle`: N WebSockets joined to calls of a given size and held open; the join rate while
//! filling, and the server's resident memory (`/proc/<pid>/status`) against open sockets.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::{close, join, wait_server_closed};
use crate::fixture::{Target, populate};
use crate::procs::rss_kib;
use crate::report::{Better, ServerRun, histogram};

/// Parameters of the `idle` mode.
#[derive(Debug, Clone)]
pub struct Params {
    /// Sockets to open and hold.
    pub sockets: usize,
    /// Sockets per call.
    pub room_size: usize,
    /// Handshakes in flight at once while filling.
    pub concurrency: usize,
    /// How long the full set is held before memory is read.
    pub hold: Duration,
    /// Memory samples while filling (the fill pauses briefly at each).
    pub steps: usize,
}

impl Params {
    /// The parameters as JSON.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "sockets": self.sockets, "room_size": self.room_size,
            "concurrency": self.concurrency, "hold_s": self.hold.as_secs_f64(),
        })
    }
}

/// Holds one socket: reads (and so answers pings) until told to close.
async fn hold(mut ws: crate::ws::Ws, mut stop: watch::Receiver<bool>) -> Result<bool, String> {
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(close(&mut ws).await),
            m = ws.next() => match m {
                Some(Ok(Message::Close(c))) => return Err(format!("server closed a held socket: {c:?}")),
                Some(Ok(Message::Text(t))) if t.contains(r#""type":"error""#) => {
                    return Err(format!("error frame: {t}"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("held socket failed: {e}")),
                None => return Err("held socket ended".to_owned()),
            }
        }
    }
}

/// Fills, holds and closes `p.sockets` sockets on `t`.
pub async fn run(t: &Target, p: &Params) -> anyhow::Result<ServerRun> {
    let mut out = ServerRun::new(t.kind.name());
    let rooms_n = p.sockets.div_ceil(p.room_size.max(1));
    let rooms = populate(t, rooms_n, p.room_size).await?;
    // Join order: room by room, so calls fill up one after the other as in real use.
    let members: Vec<(usize, usize)> = rooms
        .iter()
        .enumerate()
        .flat_map(|(r, room)| (0..room.users.len()).map(move |k| (r, k)))
        .take(p.sockets)
        .collect();
    let rss = |pid: Option<u32>| pid.and_then(|pid| rss_kib(pid).ok());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = rss(t.pid);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut holders = tokio::task::JoinSet::new();
    let mut samples = vec![json!({"sockets": 0, "rss_kib": base})];
    let mut join_h = histogram()?;
    let mut connect_time = Duration::ZERO;
    let steps = p.steps.max(1);
    let per_step = members.len().div_ceil(steps);
    let mut step_rates = Vec::new();
    let mut open = 0usize;
    for chunk in members.chunks(per_step.max(1)) {
        let started = Instant::now();
        let mut joins = futures_util::stream::iter(chunk.iter().copied())
            .map(|(r, k)| {
                let room = &rooms[r];
                let user = &room.users[k];
                async move {
                    let t0 = Instant::now();
                    (join(t, room, user).await, t0.elapsed())
                }
            })
            .buffer_unordered(p.concurrency.max(1));
        while let Some((res, took)) = joins.next().await {
            match res {
                Ok(ws) => {
                    join_h.saturating_record(took.as_micros() as u64);
                    open += 1;
                    holders.spawn(hold(ws, stop_rx.clone()));
                }
                Err(e) => out.error(1, format!("join failed: {e:#}")),
            }
        }
        drop(joins);
        let took = started.elapsed();
        connect_time += took;
        step_rates.push(chunk.len() as f64 / took.as_secs_f64());
        let sample = rss(t.pid);
        samples.push(json!({"sockets": open, "rss_kib": sample}));
        crate::progress(&format!(
            "{}: {open} sockets open ({:.0} joins/s in this step){}",
            t.kind.name(),
            chunk.len() as f64 / took.as_secs_f64(),
            sample.map_or(String::new(), |k| format!(", server RSS {} MiB", k / 1024))
        ));
    }
    tokio::time::sleep(p.hold).await;
    let full = rss(t.pid);
    // Are they all still there?
    let still = super::server_connections(t).await.unwrap_or(0);
    if (still as usize) < open {
        out.error(
            (open - still as usize) as u64,
            format!("the server holds {still} of {open} sockets"),
        );
    }
    let _ = stop_tx.send(true);
    let mut closed = 0usize;
    while let Some(res) = holders.join_next().await {
        match res? {
            Ok(true) => closed += 1,
            Ok(false) => {}
            Err(e) => out.error(1, e),
        }
    }
    if closed < open {
        out.error(
            (open - closed) as u64,
            format!("{} sockets did not close cleanly", open - closed),
        );
    }
    let left = wait_server_closed(t).await?;
    if left > 0 {
        out.error(left, format!("{left} sockets still open on the server"));
    }
    out.metric("sockets", open as f64, "count", Better::Higher);
    out.metric(
        "joins_per_s",
        open as f64 / connect_time.as_secs_f64(),
        "joins/s",
        Better::Higher,
    );
    if let (Some(first), Some(last)) = (step_rates.first(), step_rates.last()) {
        out.metric("joins_per_s_first_step", *first, "joins/s", Better::Higher);
        out.metric("joins_per_s_last_step", *last, "joins/s", Better::Higher);
    }
    out.latency("join", &join_h);
    if let (Some(base), Some(full)) = (base, full) {
        out.metric("rss_base_mib", base as f64 / 1024.0, "MiB", Better::Lower);
        out.metric("rss_full_mib", full as f64 / 1024.0, "MiB", Better::Lower);
        if open > 0 {
            out.metric(
                "rss_per_socket_kib",
                full.saturating_sub(base) as f64 / open as f64,
                "KiB",
                Better::Lower,
            );
        }
    }
    out.series = json!({ "rss": samples });
    Ok(out)
}
