//! How instants are written on SQLite: one fixed-width UTC text format.
//!
//! SQLite has no timestamp type; sqlx would write `DateTime<Utc>` with a variable number of
//! fractional digits (none, 3, 6 or 9), and other writers use other shapes (SeaORM issue
//! #2290), which breaks `expires_at <= ?` and `ORDER BY` on the text. Every statement this
//! crate runs on SQLite goes through [`normalize_statement`], which rewrites each bound
//! `DateTime` into [`SQLITE_TIMESTAMP_FORMAT`]: `2026-11-23T10:00:00.500000+00:00`. All
//! values have the same width and offset, so text order is time order. Precision is
//! microseconds, the same as PostgreSQL's `timestamp with time zone`; finer digits are
//! truncated on both backends.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Value;
use sea_orm::{DbBackend, Statement};

/// The `chrono` format of every instant stored on SQLite.
pub const SQLITE_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f+00:00";

/// The stored SQLite text of `at`: [`SQLITE_TIMESTAMP_FORMAT`], written field by field
/// (every bound instant of every statement goes through here, and `format` would parse the
/// format string each time); years outside 0–9999 and leap seconds, which that format
/// writes differently, go through `format`.
pub fn sqlite_timestamp(at: DateTime<Utc>) -> String {
    use chrono::{Datelike as _, Timelike as _};
    use std::fmt::Write as _;

    if !(0..=9999).contains(&at.year()) || at.nanosecond() >= 1_000_000_000 {
        return at.format(SQLITE_TIMESTAMP_FORMAT).to_string();
    }
    let mut text = String::with_capacity(32);
    let _ = write!(
        text,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond() / 1_000
    );
    text
}

/// On SQLite, rewrites every bound date-time value of `stmt` into
/// [`SQLITE_TIMESTAMP_FORMAT`]; on other backends leaves it alone.
pub fn normalize_statement(stmt: &mut Statement) {
    if stmt.db_backend != DbBackend::Sqlite {
        return;
    }
    let Some(values) = stmt.values.as_mut() else {
        return;
    };
    for value in &mut values.0 {
        match value {
            Value::ChronoDateTimeUtc(at) => {
                *value = Value::String(at.map(sqlite_timestamp));
            }
            Value::ChronoDateTimeWithTimeZone(at) => {
                *value = Value::String(at.map(|at| sqlite_timestamp(at.with_timezone(&Utc))));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn written_text_is_the_format_s() {
        let mut at = Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap();
        let step = chrono::Duration::seconds(86_400 * 389 + 3_671)
            + chrono::Duration::nanoseconds(123_456_789);
        for _ in 0..400 {
            assert_eq!(
                sqlite_timestamp(at),
                at.format(SQLITE_TIMESTAMP_FORMAT).to_string()
            );
            at += step;
        }
        for at in [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2016, 12, 31, 23, 59, 59).unwrap()
                + chrono::Duration::nanoseconds(999_999_999),
        ] {
            assert_eq!(
                sqlite_timestamp(at),
                at.format(SQLITE_TIMESTAMP_FORMAT).to_string()
            );
        }
        // A leap second (chrono carries it in the nanoseconds).
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        assert_eq!(
            sqlite_timestamp(leap),
            leap.format(SQLITE_TIMESTAMP_FORMAT).to_string()
        );
    }

    #[test]
    fn format_is_fixed_width_and_orders_like_time() {
        let base = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let instants = [
            base,
            base + chrono::Duration::nanoseconds(1_000),
            base + chrono::Duration::milliseconds(500),
            base + chrono::Duration::microseconds(500_001),
            base + chrono::Duration::seconds(1),
        ];
        let texts: Vec<String> = instants.iter().map(|t| sqlite_timestamp(*t)).collect();
        assert_eq!(texts[0], "2026-11-23T10:00:00.000000+00:00");
        assert_eq!(texts[2], "2026-11-23T10:00:00.500000+00:00");
        assert!(texts.iter().all(|t| t.len() == texts[0].len()));
        assert!(texts.windows(2).all(|w| w[0] < w[1]));
        for text in &texts {
            let back = DateTime::parse_from_rfc3339(text).unwrap();
            assert_eq!(sqlite_timestamp(back.with_timezone(&Utc)), *text);
        }
    }

    #[test]
    fn only_sqlite_statements_are_rewritten() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let values = vec![Value::from(at), Value::from(7_i64)];
        let mut sqlite =
            Statement::from_sql_and_values(DbBackend::Sqlite, "SELECT ?, ?", values.clone());
        normalize_statement(&mut sqlite);
        assert_eq!(
            sqlite.values.unwrap().0[0],
            Value::String(Some("2026-11-23T10:00:00.000000+00:00".into()))
        );
        let mut pg = Statement::from_sql_and_values(DbBackend::Postgres, "SELECT $1, $2", values);
        normalize_statement(&mut pg);
        assert_eq!(pg.values.unwrap().0[0], Value::from(at));
    }
}
