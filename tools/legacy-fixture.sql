-- A generated database of the older backend (its SQLite schema) for measuring
-- `telcall import-legacy`: 100,000 users, 100,000 calls, 1,000,000 participant rows,
-- 100,000 friend links and 100,000 call statistics (1.4 million rows in all).
--
--   sqlite3 /tmp/legacy.db < tools/legacy-fixture.sql
--   telcall import-legacy --from sqlite:///tmp/legacy.db
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;

CREATE TABLE users (id INTEGER NOT NULL PRIMARY KEY, telegram_user_id BIGINT NOT NULL UNIQUE,
    username VARCHAR(255), first_name VARCHAR(255), last_name VARCHAR(255),
    photo_url VARCHAR(512), created_at DATETIME, updated_at DATETIME);
CREATE TABLE calls (id INTEGER NOT NULL PRIMARY KEY, call_id VARCHAR(20) NOT NULL UNIQUE,
    creator_user_id INTEGER NOT NULL REFERENCES users (id), title VARCHAR(255),
    is_video_enabled BOOLEAN, status VARCHAR(7) NOT NULL, created_at DATETIME,
    expires_at DATETIME);
CREATE TABLE participants (id INTEGER NOT NULL PRIMARY KEY,
    call_id INTEGER NOT NULL REFERENCES calls (id), user_id INTEGER NOT NULL REFERENCES users (id),
    joined_at DATETIME, left_at DATETIME);
CREATE TABLE friend_links (user_id INTEGER NOT NULL REFERENCES users (id),
    friend_id INTEGER NOT NULL REFERENCES users (id), created_at DATETIME, updated_at DATETIME,
    PRIMARY KEY (user_id, friend_id));
CREATE TABLE call_stats (id INTEGER NOT NULL PRIMARY KEY,
    call_id VARCHAR(20) NOT NULL REFERENCES calls (call_id),
    user_id INTEGER NOT NULL REFERENCES users (id), duration_seconds INTEGER,
    audio_bitrate_kbps FLOAT, audio_packets_lost INTEGER, audio_packets_sent INTEGER,
    audio_jitter_ms FLOAT, video_bitrate_kbps FLOAT, video_packets_lost INTEGER,
    video_packets_sent INTEGER, video_frame_rate FLOAT, video_resolution VARCHAR(20),
    rtt_ms FLOAT, created_at DATETIME);
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO users
SELECT i, 1000000000 + i,
       CASE WHEN i % 10 = 0 THEN 'u' || i ELSE 'user_' || i END,
       'First ' || i, 'Last', 'https://t.me/i/userpic/320/' || i || '.jpg',
       strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || (i % 300) || ' days'),
       strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || (i % 300) || ' days', '+1 hours')
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO calls
SELECT i, 'c' || printf('%09d', i), (i * 13) % 100000 + 1, 'Call ' || i, i % 2,
       CASE i % 3 WHEN 0 THEN 'ACTIVE' WHEN 1 THEN 'ENDED' ELSE 'EXPIRED' END,
       strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || (i % 300) || ' days', '+' || (i % 1440) || ' minutes'),
       CASE WHEN i % 5 = 0 THEN NULL
            ELSE strftime('%Y-%m-%d %H:%M:%f', '2026-01-02', '+' || (i % 300) || ' days') END
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
INSERT INTO participants
SELECT i, (i - 1) / 10 + 1, (i * 7919) % 100000 + 1,
       strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || (i % 300) || ' days', '+' || (i % 86400) || ' seconds'),
       CASE WHEN i % 4 = 0 THEN NULL
            ELSE strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || (i % 300) || ' days', '+' || (i % 86400 + 600) || ' seconds') END
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT OR IGNORE INTO friend_links
SELECT i % 100000 + 1, (i * 31 + 7) % 100000 + 1,
       strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || (i % 300) || ' days'),
       strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || (i % 300) || ' days', '+' || (i % 1000) || ' minutes')
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO call_stats
SELECT i, 'c' || printf('%09d', i), (i * 13) % 100000 + 1, i % 3600, 32.0 + (i % 20),
       i % 50, 1000 + i % 5000, (i % 100) / 10.0, 800.0, i % 30, 5000, 30.0, '1280x720',
       20.0 + (i % 200),
       strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || (i % 300) || ' days', '+2 hours')
FROM n;
