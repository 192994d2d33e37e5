//! `telcall import-legacy`: an older backend's database, built here from its schema (SQLite
//! file and PostgreSQL with the `callstatus` enum and both timestamp flavours) and filled
//! with realistic rows and edge cases, is imported through the real binary; then telcall's
//! own HTTP API must show the same friends, calls and statistics. Re-runs import nothing
//! twice, an interrupted run is completed by a re-run, and a dry run writes nothing.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use serde_json::{Value, json};
use telcall_migration::ConnectionTrait;
use telcall_persistence::{DatabaseConnection, DbOptions};

use crate::common::TestAppBuilder;
use crate::common::pg::TestDb;
use crate::common::process::{base_env, run, telcall, texts};

/// Users of the big call.
const CROWD: i64 = 300;
/// Telegram id of the first crowd member.
const CROWD_TG: i64 = 50_000;
/// An old join code of the older backend's longest shape.
const LONG_CODE: &str = "Zx-_9aQ7LmN0pR2sT4uV";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Sqlite,
    Postgres,
}

/// An older database being built: DDL from the older schema and rows as SQL literals.
struct Legacy {
    flavour: Flavour,
    now: DateTime<Utc>,
    statements: Vec<String>,
    row: usize,
}

fn q(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn opt(text: Option<&str>) -> String {
    text.map_or_else(|| "NULL".to_owned(), q)
}

impl Legacy {
    fn new(flavour: Flavour, now: DateTime<Utc>) -> Self {
        let ts = |aware: bool| match (flavour, aware) {
            (Flavour::Sqlite, _) => "DATETIME",
            (Flavour::Postgres, true) => "TIMESTAMP WITH TIME ZONE",
            (Flavour::Postgres, false) => "TIMESTAMP WITHOUT TIME ZONE",
        };
        let (status, boolean) = match flavour {
            Flavour::Sqlite => ("VARCHAR(7)", "BOOLEAN"),
            Flavour::Postgres => ("callstatus", "BOOLEAN"),
        };
        let pk = match flavour {
            Flavour::Sqlite => "INTEGER NOT NULL PRIMARY KEY",
            Flavour::Postgres => "SERIAL PRIMARY KEY",
        };
        let mut statements = Vec::new();
        if flavour == Flavour::Postgres {
            statements.push("CREATE TYPE callstatus AS ENUM ('ACTIVE', 'ENDED', 'EXPIRED')".into());
        }
        // Foreign keys as the older models declared them, except that rows whose parent
        // was deleted are still there (as in a database that went through manual clean-ups).
        statements.extend([
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
                .to_owned(),
            "INSERT INTO alembic_version VALUES ('a1b2c3d4e5f6')".to_owned(),
            format!(
                "CREATE TABLE users (id {pk}, telegram_user_id BIGINT NOT NULL UNIQUE, \
                 username VARCHAR(255), first_name VARCHAR(255), last_name VARCHAR(255), \
                 photo_url VARCHAR(512), created_at {ts}, updated_at {ts})",
                ts = ts(true)
            ),
            format!(
                "CREATE TABLE calls (id {pk}, call_id VARCHAR(20) NOT NULL UNIQUE, \
                 creator_user_id INTEGER NOT NULL, title VARCHAR(255), \
                 is_video_enabled {boolean}, status {status} NOT NULL, created_at {ts}, \
                 expires_at {ts})",
                ts = ts(false)
            ),
            format!(
                "CREATE TABLE participants (id {pk}, call_id INTEGER NOT NULL, \
                 user_id INTEGER NOT NULL, joined_at {ts}, left_at {ts})",
                ts = ts(true)
            ),
            format!(
                "CREATE TABLE friend_links (user_id INTEGER NOT NULL, friend_id INTEGER NOT NULL, \
                 created_at {ts}, updated_at {ts}, PRIMARY KEY (user_id, friend_id))",
                ts = ts(false)
            ),
            format!(
                "CREATE TABLE call_stats (id {pk}, call_id VARCHAR(20) NOT NULL, \
                 user_id INTEGER NOT NULL, duration_seconds INTEGER, audio_bitrate_kbps FLOAT, \
                 audio_packets_lost INTEGER, audio_packets_sent INTEGER, audio_jitter_ms FLOAT, \
                 video_bitrate_kbps FLOAT, video_packets_lost INTEGER, video_packets_sent INTEGER, \
                 video_frame_rate FLOAT, video_resolution VARCHAR(20), rtt_ms FLOAT, \
                 created_at {ts})",
                ts = ts(true)
            ),
        ]);
        Self {
            flavour,
            now,
            statements,
            row: 0,
        }
    }

    /// A timestamp literal `ago` before now: on SQLite alternately naive UTC text (as the
    /// older backend wrote it) and text with an offset; on PostgreSQL with `+00:00` (taken as
    /// UTC by both column flavours).
    fn at(&mut self, ago: TimeDelta) -> String {
        let t = self.now - ago;
        self.row += 1;
        match self.flavour {
            Flavour::Sqlite if self.row.is_multiple_of(2) => q(&(t + TimeDelta::hours(3))
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.6f+03:00")
                .to_string()),
            Flavour::Sqlite => q(&t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
            Flavour::Postgres => q(&format!(
                "{}+00:00",
                t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f")
            )),
        }
    }

    fn bool(&self, b: bool) -> &'static str {
        match (self.flavour, b) {
            (Flavour::Sqlite, true) => "1",
            (Flavour::Sqlite, false) => "0",
            (Flavour::Postgres, true) => "TRUE",
            (Flavour::Postgres, false) => "FALSE",
        }
    }

    fn user(&mut self, id: i64, tg: i64, username: Option<&str>, first: &str, updated: TimeDelta) {
        let photo = q(&format!("https://t.me/i/userpic/320/{tg}.jpg"));
        self.user_sql(id, tg, username, [&q(first), "'Old'", &photo], updated);
    }

    /// A user whose first name, last name and photo URL are SQL expressions.
    fn user_sql(
        &mut self,
        id: i64,
        tg: i64,
        username: Option<&str>,
        [first, last, photo]: [&str; 3],
        updated: TimeDelta,
    ) {
        let created = self.at(TimeDelta::days(30));
        let updated = self.at(updated);
        self.statements.push(format!(
            "INSERT INTO users (id, telegram_user_id, username, first_name, last_name, photo_url, \
             created_at, updated_at) VALUES ({id}, {tg}, {}, {first}, {last}, {photo}, {created}, \
             {updated})",
            opt(username),
        ));
    }

    /// `text` with the control character `code` inserted after its first two characters: NUL
    /// on SQLite (which stores it; PostgreSQL text cannot hold one), BEL on PostgreSQL.
    fn with_control(&self, text: &str) -> String {
        let (head, tail) = text.split_at(2);
        match self.flavour {
            Flavour::Sqlite => format!("{} || char(0) || {}", q(head), q(tail)),
            Flavour::Postgres => format!("{} || chr(7) || {}", q(head), q(tail)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        id: i64,
        code: &str,
        creator: i64,
        status: &str,
        video: bool,
        created: TimeDelta,
        expires: Option<TimeDelta>,
    ) {
        let title = q(&format!("Call {code}"));
        self.call_sql(
            id,
            [&q(code), &title],
            creator,
            status,
            video,
            created,
            expires,
        );
    }

    /// A call whose code and title are SQL expressions.
    #[allow(clippy::too_many_arguments)]
    fn call_sql(
        &mut self,
        id: i64,
        [code, title]: [&str; 2],
        creator: i64,
        status: &str,
        video: bool,
        created: TimeDelta,
        expires: Option<TimeDelta>,
    ) {
        let created = self.at(created);
        let expires = match expires {
            Some(e) => self.at(e),
            None => "NULL".to_owned(),
        };
        self.statements.push(format!(
            "INSERT INTO calls (id, call_id, creator_user_id, title, is_video_enabled, status, \
             created_at, expires_at) VALUES ({id}, {code}, {creator}, {title}, {}, {}, {created}, \
             {expires})",
            self.bool(video),
            q(status),
        ));
    }

    fn participant(&mut self, call: i64, user: i64, joined: TimeDelta, left: Option<TimeDelta>) {
        let joined = self.at(joined);
        let left = match left {
            Some(l) => self.at(l),
            None => "NULL".to_owned(),
        };
        self.statements.push(format!(
            "INSERT INTO participants (call_id, user_id, joined_at, left_at) \
             VALUES ({call}, {user}, {joined}, {left})"
        ));
    }

    fn link(&mut self, user: i64, friend: i64, last_call: TimeDelta) {
        let created = self.at(TimeDelta::days(20));
        let updated = self.at(last_call);
        self.statements.push(format!(
            "INSERT INTO friend_links (user_id, friend_id, created_at, updated_at) \
             VALUES ({user}, {friend}, {created}, {updated})"
        ));
    }

    /// A statistics row created 30 minutes ago: `(duration, bitrate, lost, jitter, rtt)`.
    fn stat(&mut self, code: &str, user: i64, figures: (i64, f64, i64, Option<f64>, f64)) {
        self.stat_at(code, user, figures, TimeDelta::minutes(30));
    }

    /// A statistics row created `ago`.
    fn stat_at(
        &mut self,
        code: &str,
        user: i64,
        figures: (i64, f64, i64, Option<f64>, f64),
        ago: TimeDelta,
    ) {
        let created = self.at(ago);
        let (duration, bitrate, lost, jitter, rtt) = figures;
        let jitter = jitter.map_or_else(|| "NULL".to_owned(), |j| j.to_string());
        self.statements.push(format!(
            "INSERT INTO call_stats (call_id, user_id, duration_seconds, audio_bitrate_kbps, \
             audio_packets_lost, audio_packets_sent, audio_jitter_ms, video_bitrate_kbps, \
             video_packets_lost, video_packets_sent, video_frame_rate, video_resolution, rtt_ms, \
             created_at) VALUES ({}, {user}, {duration}, {bitrate}, {lost}, 1000, {jitter}, \
             NULL, NULL, NULL, NULL, '1280x720', {rtt}, {created})",
            q(code)
        ));
    }

    async fn write(&self, conn: &DatabaseConnection) {
        for sql in &self.statements {
            conn.execute_unprepared(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}

/// The scenario every backend pairing is checked with.
fn scenario(flavour: Flavour, now: DateTime<Utc>) -> Legacy {
    let h = TimeDelta::hours;
    let d = TimeDelta::days;
    let mut db = Legacy::new(flavour, now);
    // Alice (1), Bob (2, username too short), Carol (3, username with a hyphen), Dave (4, a
    // photo URL with a space and a 300-character last name), Erin (5, no username, a control
    // character in her name), and a crowd for a 300-participant call.
    db.user(1, 1001, Some("alice_w"), "Alice", h(5));
    db.user(2, 1002, Some("bob"), "Bob", h(6));
    db.user(3, 1003, Some("carol-x"), "Carol", d(3));
    // The older PostgreSQL schema holds at most 255 characters; its SQLite one any number.
    let long = q(&"D".repeat(if flavour == Flavour::Sqlite { 300 } else { 255 }));
    db.user_sql(
        4,
        1004,
        Some("dave_d"),
        ["'Dave'", &long, "'https://t.me/i/userpic/320/dave d.jpg'"],
        h(2),
    );
    let erin = db.with_control("Erin");
    db.user_sql(5, 1005, None, [&erin, "NULL", "NULL"], d(5));
    for i in 0..CROWD {
        db.user(
            100 + i,
            CROWD_TG + i,
            Some(&format!("crowd_{i}")),
            "Crowd",
            d(1),
        );
    }
    // An active call with a short old code and no expiry; an ended one; an expired one; the
    // big video call; a call whose creator was deleted.
    db.call(1, "AbCd1234", 1, "ACTIVE", false, h(1), None);
    db.call(2, "old_ended_01", 2, "ENDED", false, d(3), Some(d(2)));
    db.call(3, "exp-call-7", 3, "EXPIRED", false, d(10), None);
    db.call(4, "bigcall300", 4, "ACTIVE", true, h(2), Some(-h(22)));
    db.call(5, "orphancreator", 999, "ENDED", false, d(4), Some(d(3)));
    // A code of the older backend's longest shape (20 URL-safe characters, `-` and `_`
    // included) with a control character in its title; codes no link can reach: a space,
    // and a NUL byte (SQLite) or a slash (PostgreSQL).
    let title = db.with_control("Long code");
    db.call_sql(6, [&q(LONG_CODE), &title], 1, "ACTIVE", false, h(1), None);
    db.call(7, "bad code", 1, "ACTIVE", false, h(1), None);
    let unreachable = match flavour {
        Flavour::Sqlite => format!("{} || char(0)", q("nul")),
        Flavour::Postgres => q("slash/code"),
    };
    db.call_sql(8, [&unreachable, "NULL"], 1, "ACTIVE", false, h(1), None);
    db.participant(1, 1, h(1), None);
    db.participant(1, 2, TimeDelta::minutes(50), Some(TimeDelta::minutes(10)));
    db.participant(1, 4, TimeDelta::minutes(45), None);
    db.participant(2, 2, d(3), Some(d(3) - h(1)));
    db.participant(2, 3, d(3), Some(d(3) - h(1)));
    for i in 0..CROWD {
        db.participant(4, 100 + i, h(2) - TimeDelta::seconds(i), None);
    }
    db.participant(4, 1, h(1), Some(TimeDelta::minutes(5)));
    db.participant(4, 999, h(1), None); // a deleted user
    db.participant(777, 1, h(1), None); // a deleted call
    db.participant(7, 2, h(1), None); // a call that is not imported
    // Alice's friends, most recent call first: Bob, Dave, Carol (one-directional), Erin.
    db.link(1, 2, h(1));
    db.link(2, 1, h(1));
    db.link(1, 4, h(2));
    db.link(4, 1, h(2));
    db.link(1, 3, d(3));
    db.link(1, 5, d(5));
    db.link(5, 1, d(5));
    db.link(5, 999, d(6)); // a deleted user
    db.link(5, 5, d(6)); // a link to oneself
    // Alice reported twice, Bob too: the newest report counts, whichever was stored first.
    db.stat_at(
        "AbCd1234",
        1,
        (999, 1.0, 500, Some(99.0), 1.0),
        TimeDelta::minutes(50),
    );
    db.stat("AbCd1234", 1, (120, 32.5, 3, Some(4.5), 80.0));
    db.stat("AbCd1234", 2, (60, 30.0, 7, None, 100.0));
    db.stat_at("AbCd1234", 2, (5, 5.0, 900, None, 5.0), h(2));
    db.stat(LONG_CODE, 1, (30, 40.0, 0, Some(1.0), 20.0));
    db.stat("bad code", 1, (30, 40.0, 0, Some(1.0), 20.0)); // a call that is not imported
    db.stat("old_ended_01", 3, (3600, 24.0, 1, Some(2.0), 50.0));
    db.stat("gone-call", 1, (10, 10.0, 0, None, 10.0)); // a stat of a call that is gone
    db.stat("old_ended_01", 2, (-5, 24.0, 1, Some(2.0), 50.0)); // a negative duration
    db
}

/// What the scenario must give, per table: `(read, imported, skipped)`.
fn expected_counts() -> HashMap<&'static str, (u64, u64, u64)> {
    let crowd = u64::try_from(CROWD).unwrap();
    HashMap::from([
        ("users", (5 + crowd, 5 + crowd, 0)),
        ("calls", (8, 5, 3)),
        ("participants", (9 + crowd, 6 + crowd, 3)),
        // 7 of the 9 rows are imported, and Carol gets the reverse of Alice's link.
        ("friend_links", (9, 8, 2)),
        ("call_stats", (9, 4, 5)),
    ])
}

/// `table -> [read, imported, updated, present, skipped]` from the printed summary.
fn summary_counts(stdout: &str) -> HashMap<String, [u64; 5]> {
    stdout
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [table, rest @ ..] = words.as_slice() else {
                return None;
            };
            let numbers: Vec<u64> = rest.iter().filter_map(|w| w.parse().ok()).collect();
            (rest.len() == 5 && numbers.len() == 5)
                .then(|| ((*table).to_owned(), numbers.try_into().unwrap()))
        })
        .collect()
}

fn import(dir: &Path, target: &str, source: &str, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["import-legacy", "--from", source];
    args.extend_from_slice(extra);
    let output = run(telcall(dir, &base_env(target), &args));
    let (out, err) = texts(&output);
    (output.status.success(), out, err)
}

fn migrate(dir: &Path, target: &str) {
    let output = run(telcall(dir, &base_env(target), &["migrate", "up"]));
    assert!(output.status.success(), "{:?}", texts(&output));
}

async fn connect(url: &str) -> DatabaseConnection {
    telcall_persistence::connect(url, &DbOptions::default())
        .await
        .unwrap()
}

async fn count(db: &DatabaseConnection, table: &str) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn counts(url: &str) -> Vec<i64> {
    let db = connect(url).await;
    let mut out = Vec::new();
    for table in [
        "users",
        "calls",
        "participants",
        "friend_links",
        "call_stats",
    ] {
        out.push(count(&db, table).await);
    }
    db.close().await.unwrap();
    out
}

fn assert_first_run(stdout: &str) {
    let got = summary_counts(stdout);
    for (table, (read, imported, skipped)) in expected_counts() {
        let [r, i, _, p, s] = got[table];
        assert_eq!(
            (r, i, p, s),
            (read, imported, 0, skipped),
            "{table}:\n{stdout}"
        );
    }
}

async fn json(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(got, status, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The aggregate of call `AbCd1234` counts only the newest report of Alice
/// `(120 s, 32.5 kbps, 3 lost, 4.5 ms jitter, 80 ms)` and of Bob
/// `(60 s, 30 kbps, 7 lost, no jitter, 100 ms)`, whatever older reports the source held.
async fn assert_newest_stats_count(app: &crate::common::TestApp, user: &crate::common::TestUser) {
    let stats = json(
        app.get("/api/call-stats/AbCd1234", user)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(stats["participant_count"], 2);
    assert_eq!(stats["avg_duration_seconds"], 90.0);
    assert_eq!(stats["avg_audio_bitrate_kbps"], 31.25);
    assert_eq!(stats["total_audio_packets_lost"], 10);
    assert_eq!(stats["avg_audio_jitter_ms"], 4.5);
    assert_eq!(stats["avg_rtt_ms"], 90.0);
}

/// Checks the imported scenario through telcall's HTTP API.
async fn check_through_api(target: &str, now: DateTime<Utc>) {
    let app = TestAppBuilder::default().database_url(target).spawn().await;
    let alice = app
        .sign_in_as(&json!({"id": 1001, "first_name": "Alice", "username": "alice_w"}))
        .await;

    // Same friends, same order (most recent shared call first), usernames as at sign-in.
    let friends = json(app.get("/api/friends", &alice).send().await.unwrap(), 200).await;
    let friends = friends.as_array().unwrap();
    let tg: Vec<i64> = friends
        .iter()
        .map(|f| f["telegram_user_id"].as_i64().unwrap())
        .collect();
    assert_eq!(tg, [1002, 1004, 1003, 1005]);
    assert_eq!(friends[0]["username"], Value::Null, "bob is too short");
    assert_eq!(friends[1]["username"], "dave_d");
    assert_eq!(friends[2]["username"], Value::Null, "carol-x has a hyphen");
    // Names and photos are cleaned as at sign-in.
    assert_eq!(friends[3]["first_name"], "Erin", "no control character");
    assert_eq!(friends[1]["photo_url"], Value::Null, "a URL with a space");
    assert_eq!(friends[1]["last_name"].as_str().unwrap().len(), 255);
    let last_bob = DateTime::parse_from_rfc3339(friends[0]["last_call_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(last_bob, (now - TimeDelta::hours(1)).trunc_subsecs(6));

    // The one-directional link works both ways now.
    let carol = app
        .sign_in_as(&json!({"id": 1003, "first_name": "Carol"}))
        .await;
    let carols = json(app.get("/api/friends", &carol).send().await.unwrap(), 200).await;
    assert_eq!(carols[0]["telegram_user_id"], 1001);
    assert_eq!(carols.as_array().unwrap().len(), 1);

    // Old join codes open their calls; ended and expired ones answer as such.
    let call = json(
        app.get("/api/calls/AbCd1234", &alice).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(call["call_id"], "AbCd1234");
    assert_eq!(call["status"], "active");
    assert_eq!(call["title"], "Call AbCd1234");
    let created = DateTime::parse_from_rfc3339(call["created_at"].as_str().unwrap()).unwrap();
    let expires = DateTime::parse_from_rfc3339(call["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires - created,
        TimeDelta::hours(24),
        "null expiry: created + 24 h"
    );
    let joined = app
        .post(
            "/api/calls/join_by_code",
            &alice,
            &json!({"call_code": " AbCd1234 "}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), 200);
    let big = json(
        app.get("/api/calls/bigcall300", &alice)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(big["is_video_enabled"], true);
    // The older backend's longest codes are reached by every route a link leads to.
    let long = json(
        app.get(&format!("/api/calls/{LONG_CODE}"), &alice)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(long["call_id"], LONG_CODE);
    assert_eq!(long["title"], "Long code", "control character removed");
    let mut ws = app.ws(LONG_CODE).token(&alice.token).connect().await;
    assert!(ws.expect("call_metadata").await["room_start_time"].is_string());
    drop(ws);
    let long_stats = json(
        app.get(&format!("/api/call-stats/{LONG_CODE}"), &alice)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(long_stats["participant_count"], 1);
    assert_eq!(long_stats["avg_rtt_ms"], 20.0);
    for (code, detail) in [
        ("bad%20code", "Call not found"),
        ("old_ended_01", "Call is not available"),
        ("exp-call-7", "Call has expired"),
        ("orphancreator", "Call not found"),
    ] {
        let resp = app
            .get(&format!("/api/calls/{code}"), &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{code}");
        assert_eq!(crate::common::detail(resp).await, detail, "{code}");
    }

    // Statistics aggregate to the same figures.
    assert_newest_stats_count(&app, &alice).await;
    let own = json(
        app.get("/api/call-stats/", &alice).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(
        own.as_array().unwrap().len(),
        2,
        "the stats of a gone call and of an unreachable code are skipped"
    );
    app.stop().await;
}

/// The whole story on one pairing: dry run, import, API checks, re-run.
async fn full_story(source: &str, target: &str, now: DateTime<Utc>) {
    let dir = tempfile::tempdir().unwrap();
    migrate(dir.path(), target);

    let (ok, out, err) = import(dir.path(), target, source, &["--dry-run"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("DRY RUN"), "{out}");
    assert_first_run(&out);
    assert_eq!(counts(target).await, [0; 5], "a dry run writes nothing");

    let (ok, out, err) = import(dir.path(), target, source, &["--batch", "64"]);
    assert!(ok, "{out}\n{err}");
    assert_first_run(&out);
    assert!(
        out.contains("username failed the username rule"),
        "repairs are reported: {out}"
    );
    assert!(
        out.contains("refers to a call that does not exist"),
        "{out}"
    );
    for reason in [
        "name cleaned as at sign-in",
        "users: repaired 1: photo URL",
        "calls: skipped 2: call code is not 1 to 32 characters of A-Z a-z 0-9 - _",
        "calls: repaired 1: control characters removed from the title",
        "call_stats: skipped 2: not the newest statistics row",
    ] {
        assert!(out.contains(reason), "{reason}:\n{out}");
    }
    let after_first = counts(target).await;
    assert_eq!(after_first, [305, 5, 306, 8, 4]);

    check_through_api(target, now).await;
    // Joining the long-code call through the API recorded one participant.
    let after_api = counts(target).await;
    assert_eq!(after_api, [305, 5, 307, 8, 4]);

    // Again: nothing imported twice.
    let (ok, out, err) = import(dir.path(), target, source, &[]);
    assert!(ok, "{out}\n{err}");
    let got = summary_counts(&out);
    for (table, (read, imported, skipped)) in expected_counts() {
        let [r, i, u, p, s] = got[table];
        assert_eq!((r, i, u, s), (read, 0, 0, skipped), "{table}:\n{out}");
        assert_eq!(
            p, imported,
            "{table}: everything is already present:\n{out}"
        );
    }
    assert_eq!(counts(target).await, after_api);
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

async fn build_sqlite(path: &Path, legacy: &Legacy) -> String {
    // One connection, so that the journal mode can be switched back at the end.
    let db = telcall_persistence::connect(
        &format!("sqlite://{}?mode=rwc", path.display()),
        &DbOptions {
            max_connections: 1,
            ..DbOptions::default()
        },
    )
    .await
    .unwrap();
    legacy.write(&db).await;
    db.execute_unprepared("PRAGMA journal_mode=DELETE")
        .await
        .unwrap();
    db.close().await.unwrap();
    format!("sqlite://{}", path.display())
}

#[tokio::test]
async fn sqlite_database_imports_losslessly_and_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let now = now();
    let source = build_sqlite(&dir.path().join("old.db"), &scenario(Flavour::Sqlite, now)).await;
    let target = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("telcall.db").display()
    );
    full_story(&source, &target, now).await;
}

#[tokio::test]
async fn an_interrupted_import_is_completed_by_a_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let now = now();
    let source = build_sqlite(&dir.path().join("old.db"), &scenario(Flavour::Sqlite, now)).await;
    let target_path = dir.path().join("telcall.db");
    let target = format!("sqlite://{}?mode=rwc", target_path.display());
    migrate(dir.path(), &target);
    // The disk "fills up" once 100 participants are stored.
    let db = connect(&target).await;
    db.execute_unprepared(
        "CREATE TRIGGER injected_failure BEFORE INSERT ON participants \
         WHEN (SELECT COUNT(*) FROM participants) >= 100 \
         BEGIN SELECT RAISE(ABORT, 'injected failure: disk full'); END",
    )
    .await
    .unwrap();

    let (ok, out, err) = import(dir.path(), &target, &source, &["--batch", "40"]);
    assert!(!ok, "a failed import must not exit 0:\n{out}\n{err}");
    assert!(
        err.contains("import stopped in table participants"),
        "{err}"
    );
    assert!(err.contains("injected failure"), "{err}");
    let partial = counts(&target).await;
    assert_eq!(partial[..2], [305, 5], "users and calls were done");
    assert!(
        partial[2] > 0 && partial[2] <= 100,
        "whole batches only: {partial:?}"
    );
    assert_eq!(partial[3..], [0, 0], "later tables were not started");

    db.execute_unprepared("DROP TRIGGER injected_failure")
        .await
        .unwrap();
    db.close().await.unwrap();
    let (ok, out, err) = import(dir.path(), &target, &source, &["--batch", "40"]);
    assert!(ok, "{out}\n{err}");
    let got = summary_counts(&out);
    let [_, imported, _, present, _] = got["participants"];
    assert_eq!(imported + present, 306, "{out}");
    assert_eq!(present, u64::try_from(partial[2]).unwrap(), "{out}");
    assert_eq!(counts(&target).await, [305, 5, 306, 8, 4]);
    check_through_api(&target, now).await;
}

#[tokio::test]
async fn a_source_of_the_wrong_shape_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let db = connect(&format!("sqlite://{}?mode=rwc", path.display())).await;
    db.execute_unprepared(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, telegram_user_id BIGINT, username TEXT, \
         first_name TEXT, last_name TEXT, photo_url TEXT, created_at TEXT, updated_at TEXT); \
         INSERT INTO users VALUES (1, 42, 'someone', 'A', NULL, NULL, '2026-01-01 00:00:00', NULL); \
         CREATE TABLE calls (id INTEGER PRIMARY KEY, code TEXT)",
    )
    .await
    .unwrap();
    db.close().await.unwrap();
    let target = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("telcall.db").display()
    );
    migrate(dir.path(), &target);
    let source = format!("sqlite://{}", path.display());
    let (ok, out, err) = import(dir.path(), &target, &source, &[]);
    assert!(!ok, "{out}");
    assert!(err.contains("table calls has no column call_id"), "{err}");
    assert!(err.contains("table participants is missing"), "{err}");
    assert_eq!(counts(&target).await, [0; 5]);

    // An unmigrated target is refused too.
    let fresh = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("empty.db").display()
    );
    let (ok, _, err) = import(dir.path(), &fresh, &source, &[]);
    assert!(!ok);
    assert!(err.contains("telcall migrate up"), "{err}");
}

/// A fresh PostgreSQL database holding the older schema and the scenario.
async fn build_postgres(now: DateTime<Utc>) -> TestDb {
    let db = TestDb::create().await;
    let conn = connect(&db.url()).await;
    scenario(Flavour::Postgres, now).write(&conn).await;
    conn.close().await.unwrap();
    db
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
async fn postgres_database_imports_into_postgres() {
    let now = now();
    let source = build_postgres(now).await;
    let target = TestDb::create().await;
    full_story(&source.url(), &target.url(), now).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
async fn sqlite_database_imports_into_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let now = now();
    let source = build_sqlite(&dir.path().join("old.db"), &scenario(Flavour::Sqlite, now)).await;
    let target = TestDb::create().await;
    full_story(&source, &target.url(), now).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
async fn postgres_database_imports_into_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let now = now();
    let source = build_postgres(now).await;
    let target = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("telcall.db").display()
    );
    full_story(&source.url(), &target, now).await;
}

/// Four reports of two participants of one call, read two per batch: the newest report of
/// each participant wins even when it comes in a later batch than an older one.
async fn newest_stats_story(target: &str) {
    let dir = tempfile::tempdir().unwrap();
    let now = now();
    let m = TimeDelta::minutes;
    let mut db = Legacy::new(Flavour::Sqlite, now);
    db.user(1, 1001, Some("alice_w"), "Alice", m(5));
    db.user(2, 1002, Some("bobby_b"), "Bob", m(5));
    db.call(1, "AbCd1234", 1, "ACTIVE", false, m(60), None);
    db.participant(1, 2, m(55), None);
    db.stat_at("AbCd1234", 1, (999, 1.0, 500, Some(99.0), 1.0), m(50));
    db.stat_at("AbCd1234", 2, (60, 30.0, 7, None, 100.0), m(30));
    db.stat_at("AbCd1234", 1, (120, 32.5, 3, Some(4.5), 80.0), m(20)); // Alice's newest
    db.stat_at("AbCd1234", 2, (5, 5.0, 900, None, 5.0), m(180));
    db.stat_at("AbCd1234", 1, (7, 7.0, 70, None, 7.0), m(40));
    let source = build_sqlite(&dir.path().join("old.db"), &db).await;
    migrate(dir.path(), target);

    for run in 0..2 {
        let (ok, out, err) = import(dir.path(), target, &source, &["--batch", "2"]);
        assert!(ok, "{out}\n{err}");
        let [read, imported, updated, present, skipped] = summary_counts(&out)["call_stats"];
        let want = if run == 0 { (2, 0) } else { (0, 2) };
        assert_eq!(
            (read, (imported, present), updated, skipped),
            (5, want, 0, 3),
            "run {run}:\n{out}"
        );
        assert!(
            out.contains("call_stats: skipped 3: not the newest statistics row"),
            "{out}"
        );
        assert_eq!(counts(target).await[4], 2);
    }

    let app = TestAppBuilder::default().database_url(target).spawn().await;
    let alice = app
        .sign_in_as(&json!({"id": 1001, "first_name": "Alice", "username": "alice_w"}))
        .await;
    assert_newest_stats_count(&app, &alice).await;
    app.stop().await;
}

#[tokio::test]
async fn the_newest_statistics_row_wins_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let target = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("telcall.db").display()
    );
    newest_stats_story(&target).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
async fn the_newest_statistics_row_wins_across_batches_on_postgres() {
    let target = TestDb::create().await;
    newest_stats_story(&target.url()).await;
}
