//! `relay`: rooms × peers on the signaling WebSocket. Each peer sends `offer`s to the next
//! peer of its room, which answers each with an `answer` carrying the same payload; the
//! sender measures the round trip. Closed loop (a fixed number of offers in flight per
//! peer) or open loop (a fixed total offer rate). Every offer must be answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::{close, join_at, wait_server_closed};
use crate::fixture::{Target, populate};
use crate::report::{Better, ServerRun, histogram};
use crate::ws::{Frame, Ws};

/// Parameters of the `relay` mode.
#[derive(Debug, Clone)]
pub struct Params {
    /// Rooms (calls).
    pub rooms: usize,
    /// Peers per room (≥ 2).
    pub peers: usize,
    /// Measurement time.
    pub duration: Duration,
    /// Closed loop: offers in flight per peer.
    pub window: usize,
    /// Open loop: total offers per second over all peers (closed loop when `None`).
    pub rate: Option<f64>,
    /// Bytes of filler in each offer's payload.
    pub payload: usize,
}

impl Params {
    /// The parameters as JSON.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "rooms": self.rooms, "peers": self.peers,
            "duration_s": self.duration.as_secs_f64(),
            "window": self.window, "rate": self.rate, "payload_bytes": self.payload,
        })
    }
}

/// Offers one peer may have unanswered in open loop before it skips a tick.
const OPEN_LOOP_CAP: u64 = 1000;
/// How long the run waits for the last answers once sending stopped.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Wait,
    Run,
    Drain,
    Close,
}

struct Shared {
    base: Instant,
    measure_from: AtomicU64,
    measure_to: AtomicU64,
    offers: AtomicU64,
    answers: AtomicU64,
}

#[derive(Default)]
struct PeerResult {
    measured: u64,
    errors: u64,
    sample: Option<String>,
    closed: bool,
    shed: u64,
}

#[derive(Deserialize)]
struct Stamp {
    t: u64,
}

struct Peer {
    ws: Ws,
    to: i64,
    others: usize,
    window: usize,
    interval: Option<Duration>,
    pad: Arc<str>,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    ready: mpsc::Sender<()>,
}

impl Peer {
    fn offer(&self, seq: u64) -> Message {
        let t = self.shared.base.elapsed().as_micros() as u64;
        Message::text(format!(
            r#"{{"type":"offer","to_user_id":{},"payload":{{"t":{t},"s":{seq},"sdp":"{}"}}}}"#,
            self.to, self.pad
        ))
    }

    async fn run(mut self) -> anyhow::Result<(Histogram<u64>, PeerResult)> {
        let mut h = histogram()?;
        let mut res = PeerResult::default();
        let mut present = std::collections::HashSet::new();
        let mut ready_sent = false;
        let mut phase = Phase::Wait;
        let mut seq = 0u64;
        let mut outstanding = 0u64;
        let open_loop = self.interval.is_some();
        // In closed loop the ticker exists but is never polled.
        let mut ticker = tokio::time::interval(self.interval.unwrap_or(Duration::from_secs(3600)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        if self.others == 0 {
            let _ = self.ready.send(()).await;
            ready_sent = true;
        }
        loop {
            tokio::select! {
                changed = self.phase.changed() => {
                    if changed.is_err() { break; }
                    let next = *self.phase.borrow_and_update();
                    if next == Phase::Run && phase < Phase::Run && self.interval.is_none() {
                        for _ in 0..self.window {
                            seq += 1;
                            outstanding += 1;
                            self.shared.offers.fetch_add(1, Ordering::Relaxed);
                            self.ws.send(self.offer(seq)).await?;
                        }
                    }
                    if next == Phase::Close && phase < Phase::Close {
                        res.closed = close(&mut self.ws).await;
                        break;
                    }
                    phase = next;
                }
                _ = ticker.tick(), if open_loop && phase == Phase::Run => {
                    if outstanding >= OPEN_LOOP_CAP {
                        res.shed += 1;
                    } else {
                        seq += 1;
                        outstanding += 1;
                        self.shared.offers.fetch_add(1, Ordering::Relaxed);
                        self.ws.send(self.offer(seq)).await?;
                    }
                }
                incoming = self.ws.next() => {
                    let text = match incoming {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(c))) => {
                            res.errors += 1;
                            res.sample.get_or_insert_with(|| format!("server closed the socket: {c:?}"));
                            break;
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => {
                            res.errors += 1;
                            res.sample.get_or_insert_with(|| format!("socket error: {e}"));
                            break;
                        }
                        None => {
                            res.errors += 1;
                            res.sample.get_or_insert_with(|| "socket ended".to_owned());
                            break;
                        }
                    };
                    let f: Frame<'_> = serde_json::from_str(&text).context("unparsable frame")?;
                    match f.kind {
                        "offer" => {
                            let from = f.from_user.map(|u| u.id).context("offer without from_user")?;
                            let payload = f.payload.map_or("null", |p| p.get());
                            self.ws.send(Message::text(format!(
                                r#"{{"type":"answer","to_user_id":{from},"payload":{payload}}}"#
                            ))).await?;
                        }
                        "answer" => {
                            let now = self.shared.base.elapsed().as_micros() as u64;
                            let stamp: Stamp = serde_json::from_str(f.payload.map_or("null", |p| p.get()))
                                .context("answer without the offer's payload")?;
                            outstanding = outstanding.saturating_sub(1);
                            self.shared.answers.fetch_add(1, Ordering::Relaxed);
                            let from = self.shared.measure_from.load(Ordering::Relaxed);
                            let to = self.shared.measure_to.load(Ordering::Relaxed);
                            if now >= from && now <= to {
                                h.saturating_record(now.saturating_sub(stamp.t).max(1));
                                res.measured += 1;
                            }
                            if phase == Phase::Run && self.interval.is_none() {
                                seq += 1;
                                outstanding += 1;
                                self.shared.offers.fetch_add(1, Ordering::Relaxed);
                                self.ws.send(self.offer(seq)).await?;
                            }
                        }
                        "participants_snapshot" => {
                            for u in f.participants.unwrap_or_default() { present.insert(u.id); }
                        }
                        "user_joined" => { if let Some(u) = f.user { present.insert(u.id); } }
                        "user_left" => { if let Some(u) = f.user { present.remove(&u.id); } }
                        "error" => {
                            res.errors += 1;
                            res.sample.get_or_insert_with(|| format!("error frame: {}", f.detail.unwrap_or_default()));
                        }
                        _ => {}
                    }
                    if !ready_sent && present.len() >= self.others {
                        ready_sent = true;
                        let _ = self.ready.send(()).await;
                    }
                }
            }
        }
        Ok((h, res))
    }
}

/// Runs rooms × peers against `t`.
pub async fn run(t: &Target, p: &Params) -> anyhow::Result<ServerRun> {
    anyhow::ensure!(p.peers >= 2, "a relay room needs at least 2 peers");
    let mut out = ServerRun::new(t.kind.name());
    let rooms = populate(t, p.rooms, p.peers).await?;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        measure_from: AtomicU64::new(u64::MAX),
        measure_to: AtomicU64::new(u64::MAX),
        offers: AtomicU64::new(0),
        answers: AtomicU64::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Wait);
    let total = p.rooms * p.peers;
    let (ready_tx, mut ready_rx) = mpsc::channel(total.max(1));
    let pad: Arc<str> = "x".repeat(p.payload).into();
    let interval = p
        .rate
        .map(|r| Duration::from_secs_f64(total as f64 / r.max(0.001)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut connected = 0usize;
    for room in &rooms {
        for (k, user) in room.users.iter().enumerate() {
            let addr = match t.instances.len() {
                0 => t.addr,
                n => t.instances[k % n],
            };
            let ws = match join_at(addr, room, user).await {
                Ok(ws) => ws,
                Err(e) => {
                    out.error(1, format!("join failed: {e:#}"));
                    continue;
                }
            };
            connected += 1;
            let peer = Peer {
                ws,
                to: room.users[(k + 1) % room.users.len()].id,
                others: room.users.len() - 1,
                window: p.window.max(1),
                interval,
                pad: pad.clone(),
                shared: shared.clone(),
                phase: phase_rx.clone(),
                ready: ready_tx.clone(),
            };
            tasks.spawn(peer.run());
        }
    }
    drop(ready_tx);
    crate::progress(&format!("{}: {connected} peers connected", t.kind.name()));
    let mut ready = 0;
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while ready < connected && ready_rx.recv().await.is_some() {
            ready += 1;
        }
    })
    .await;
    if waited.is_err() {
        out.error(
            (connected - ready) as u64,
            format!("{} peers never saw their whole room", connected - ready),
        );
    }
    let warmup = (p.duration / 5).min(Duration::from_secs(1));
    let start = shared.base.elapsed();
    shared
        .measure_from
        .store((start + warmup).as_micros() as u64, Ordering::Relaxed);
    shared.measure_to.store(
        (start + warmup + p.duration).as_micros() as u64,
        Ordering::Relaxed,
    );
    let _ = phase_tx.send(Phase::Run);
    tokio::time::sleep(warmup + p.duration).await;
    let _ = phase_tx.send(Phase::Drain);
    let drain_deadline = Instant::now() + DRAIN_DEADLINE;
    while shared.answers.load(Ordering::Relaxed) < shared.offers.load(Ordering::Relaxed)
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let offers = shared.offers.load(Ordering::Relaxed);
    let answers = shared.answers.load(Ordering::Relaxed);
    let _ = phase_tx.send(Phase::Close);
    let mut h = histogram()?;
    let mut measured = 0u64;
    let mut closed = 0usize;
    let mut shed = 0u64;
    while let Some(res) = tasks.join_next().await {
        match res? {
            Ok((ph, r)) => {
                h.add(&ph)?;
                measured += r.measured;
                shed += r.shed;
                if r.closed {
                    closed += 1;
                }
                if r.errors > 0 {
                    out.error(r.errors, r.sample.unwrap_or_default());
                }
            }
            Err(e) => out.error(1, format!("peer failed: {e:#}")),
        }
    }
    if answers < offers {
        out.error(
            offers - answers,
            format!("{} offers never answered", offers - answers),
        );
    }
    if closed < connected {
        out.error(
            (connected - closed) as u64,
            format!("{} sockets did not close cleanly", connected - closed),
        );
    }
    let left = wait_server_closed(t).await?;
    if left > 0 {
        out.error(left, format!("{left} sockets still open on the server"));
    }
    let secs = p.duration.as_secs_f64();
    out.metric(
        "offers_per_s",
        measured as f64 / secs,
        "offers/s",
        Better::Higher,
    );
    out.metric(
        "messages_per_s",
        2.0 * measured as f64 / secs,
        "msgs/s",
        Better::Higher,
    );
    out.latency("rtt", &h);
    out.metric("offers_sent", offers as f64, "count", Better::Higher);
    out.metric("offers_answered", answers as f64, "count", Better::Higher);
    if p.rate.is_some() {
        out.metric(
            "offered_per_s",
            p.rate.unwrap_or_default(),
            "offers/s",
            Better::Higher,
        );
        out.metric("offers_skipped", shed as f64, "count", Better::Lower);
    }
    crate::progress(&format!(
        "{}: {:.0} msgs/s, RTT p50 {:.2} ms p99 {:.2} ms",
        t.kind.name(),
        2.0 * measured as f64 / secs,
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0
    ));
    Ok(out)
}
