//! Importing the older backend's database (its SQLAlchemy schema: `users`, `calls`,
//! `participants`, `friend_links`, `call_stats`) into telcall's migrated schema.
//!
//! ```no_run
//! # async fn run(target: &sea_orm::DatabaseConnection) -> Result<(), telcall_persistence::legacy::LegacyError> {
//! use telcall_persistence::legacy::{ImportOptions, NoProgress, import_legacy};
//!
//! let report = import_legacy("sqlite://old.db", target, &ImportOptions::default(), &mut NoProgress).await?;
//! for table in &report.tables {
//!     println!("{}: {} read, {} imported", table.table, table.read, table.imported);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The source is opened read-only and its shape checked before anything is written. Tables
//! are read page by page in primary-key order (memory stays flat whatever the size), each
//! page mapped ([`mapping`]) and written in its own transaction, while the next page is
//! being read. Every row is recognised by its natural key (users by Telegram id, calls by
//! code, participants by call + user + join time, friend links by pair, statistics by call +
//! user + creation time), so running the import again imports nothing twice and completes
//! an interrupted run. A dry run does the same work inside one transaction that is rolled
//! back.

pub mod mapping;
mod source;
mod write;

use std::collections::BTreeMap;
use std::fmt;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};

pub use source::REQUIRED_SHAPE;

use self::mapping::{Repair, SkipReason};
use self::source::{Cursor, Source};
use crate::error::PersistenceError;

/// Default rows per page and per write transaction.
pub const DEFAULT_BATCH: u64 = 10_000;
/// Largest accepted batch.
pub const MAX_BATCH: u64 = 100_000;

/// How to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// Rows per page read and per write transaction (1..=[`MAX_BATCH`]).
    pub batch: u64,
    /// Read, map and check everything, write inside a transaction that is rolled back.
    pub dry_run: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            batch: DEFAULT_BATCH,
            dry_run: false,
        }
    }
}

/// One table of the older schema, in import order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyTable {
    /// `users`.
    Users,
    /// `calls`.
    Calls,
    /// `participants`.
    Participants,
    /// `friend_links`.
    FriendLinks,
    /// `call_stats`.
    CallStats,
}

impl LegacyTable {
    /// Every table, in the order they are imported (referenced tables first).
    pub const ALL: [Self; 5] = [
        Self::Users,
        Self::Calls,
        Self::Participants,
        Self::FriendLinks,
        Self::CallStats,
    ];

    /// The table's name (the same in both schemas).
    pub fn name(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Calls => "calls",
            Self::Participants => "participants",
            Self::FriendLinks => "friend_links",
            Self::CallStats => "call_stats",
        }
    }
}

impl fmt::Display for LegacyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened to one table's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// The table.
    pub table: LegacyTable,
    /// Rows read from the older database.
    pub read: u64,
    /// telcall rows written (a one-directional friend link writes two).
    pub imported: u64,
    /// Rows telcall already had that took newer data from the older database (a user's
    /// newer profile, a friend link's more recent call).
    pub updated: u64,
    /// Rows telcall already had, left as they were.
    pub already_present: u64,
    /// Rows not imported, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Rows imported after a repair, by repair.
    pub repaired: BTreeMap<String, u64>,
}

impl TableReport {
    fn new(table: LegacyTable) -> Self {
        Self {
            table,
            read: 0,
            imported: 0,
            updated: 0,
            already_present: 0,
            skipped: BTreeMap::new(),
            repaired: BTreeMap::new(),
        }
    }

    /// All skipped rows.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    fn skip(&mut self, reason: &SkipReason) {
        *self.skipped.entry(reason.to_string()).or_default() += 1;
    }

    fn repair(&mut self, repair: Repair) {
        *self.repaired.entry(repair.to_string()).or_default() += 1;
    }
}

/// What an import did, table by table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// Whether this was a dry run (nothing was kept).
    pub dry_run: bool,
    /// The tables finished or begun, in import order.
    pub tables: Vec<TableReport>,
}

/// Receives progress while an import runs (a terminal progress bar, log lines…).
pub trait ImportObserver {
    /// `table` starts; the older database holds `total` rows of it.
    fn table_started(&mut self, table: LegacyTable, total: u64);
    /// `done` of the table's rows are read and written.
    fn progress(&mut self, table: LegacyTable, done: u64, total: u64);
    /// The table is finished.
    fn table_finished(&mut self, report: &TableReport);
}

/// An [`ImportObserver`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ImportObserver for NoProgress {
    fn table_started(&mut self, _: LegacyTable, _: u64) {}
    fn progress(&mut self, _: LegacyTable, _: u64, _: u64) {}
    fn table_finished(&mut self, _: &TableReport) {}
}

/// Why an import could not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// The source URL is not usable.
    #[error("older database: {0}")]
    Setup(#[source] PersistenceError),
    /// The older database could not be opened.
    #[error("cannot open the older database {url}")]
    Connect {
        /// The URL with any password hidden.
        url: String,
        /// The driver's error.
        #[source]
        source: DbErr,
    },
    /// The batch size is outside 1..=[`MAX_BATCH`].
    #[error("batch size must be between 1 and {MAX_BATCH}, got {0}")]
    InvalidBatch(u64),
    /// The older database lacks tables or columns; nothing was written.
    #[error("the older database does not have the expected shape: {}", .0.join("; "))]
    Shape(Vec<String>),
    /// The target database has migrations to apply first; nothing was written.
    #[error("the target database has pending migrations ({}): run `telcall migrate up` first", .0.join(", "))]
    TargetNotMigrated(Vec<String>),
    /// Checking the databases before the import failed; nothing was written.
    #[error("cannot inspect the databases")]
    Inspect(#[source] DbErr),
    /// A database error stopped the import in `table`. Batches committed before it stay;
    /// running the import again completes it.
    #[error("import stopped in table {table}")]
    Interrupted {
        /// Where it stopped.
        table: LegacyTable,
        /// What was done until then.
        report: Box<ImportReport>,
        /// The database error.
        #[source]
        source: DbErr,
    },
}

/// One page of an older table.
enum Page {
    Users(Vec<mapping::LegacyUser>),
    Calls(Vec<mapping::LegacyCall>),
    Participants(Vec<mapping::LegacyParticipant>),
    FriendLinks(Vec<mapping::LegacyFriendLink>),
    CallStats(Vec<mapping::LegacyStat>),
}

impl Page {
    fn len(&self) -> usize {
        match self {
            Self::Users(r) => r.len(),
            Self::Calls(r) => r.len(),
            Self::Participants(r) => r.len(),
            Self::FriendLinks(r) => r.len(),
            Self::CallStats(r) => r.len(),
        }
    }

    /// The cursor after this page's last row (`None` when empty).
    fn next_cursor(&self) -> Option<Cursor> {
        match self {
            Self::Users(r) => r.last().map(|x| Cursor::After(x.id)),
            Self::Calls(r) => r.last().map(|x| Cursor::After(x.id)),
            Self::Participants(r) => r.last().map(|x| Cursor::After(x.id)),
            Self::FriendLinks(r) => r.last().map(|x| Cursor::AfterPair(x.user_id, x.friend_id)),
            Self::CallStats(r) => r.last().map(|x| Cursor::After(x.id)),
        }
    }
}

async fn read_page(
    source: &Source,
    table: LegacyTable,
    cursor: Cursor,
    limit: u64,
) -> Result<Page, DbErr> {
    Ok(match table {
        LegacyTable::Users => Page::Users(source.users(cursor, limit).await?),
        LegacyTable::Calls => Page::Calls(source.calls(cursor, limit).await?),
        LegacyTable::Participants => Page::Participants(source.participants(cursor, limit).await?),
        LegacyTable::FriendLinks => Page::FriendLinks(source.friend_links(cursor, limit).await?),
        LegacyTable::CallStats => Page::CallStats(source.call_stats(cursor, limit).await?),
    })
}

/// Maps a row with repairs, counting skips and repairs.
fn keep<T>(report: &mut TableReport, mapped: Result<(T, Vec<Repair>), SkipReason>) -> Option<T> {
    match mapped {
        Ok((row, repairs)) => {
            for repair in repairs {
                report.repair(repair);
            }
            Some(row)
        }
        Err(reason) => {
            report.skip(&reason);
            None
        }
    }
}

/// Maps and writes one page inside its own transaction on `target`; `stats_since` is the
/// highest statistics row id from before this run (see [`write::last_stats_id`]).
async fn write_page<T>(
    target: &T,
    page: Page,
    stats_since: i64,
    report: &mut TableReport,
) -> Result<(), DbErr>
where
    T: TransactionTrait<Transaction = sea_orm::DatabaseTransaction>,
{
    let txn = target.begin().await?;
    match page {
        Page::Users(rows) => {
            let mapped = rows
                .iter()
                .filter_map(|r| keep(report, mapping::map_user(r)))
                .collect();
            write::users(&txn, mapped, report).await?;
        }
        Page::Calls(rows) => {
            let mapped = rows
                .iter()
                .filter_map(|r| keep(report, mapping::map_call(r)))
                .collect();
            write::calls(&txn, mapped, report).await?;
        }
        Page::Participants(rows) => {
            let mapped = rows
                .iter()
                .filter_map(|r| keep(report, mapping::map_participant(r).map(|p| (p, vec![]))))
                .collect();
            write::participants(&txn, mapped, report).await?;
        }
        Page::FriendLinks(rows) => {
            let mapped = rows
                .iter()
                .filter_map(|r| keep(report, mapping::map_link(r)))
                .flatten()
                .collect();
            write::friend_links(&txn, mapped, report).await?;
        }
        Page::CallStats(rows) => {
            let mapped = rows
                .iter()
                .filter_map(|r| keep(report, mapping::map_stat(r).map(|s| (s, vec![]))))
                .collect();
            write::call_stats(&txn, mapped, stats_since, report).await?;
        }
    }
    txn.commit().await
}

/// Imports one table: reads page after page, writing each while the next is read.
async fn import_table<T>(
    source: &Source,
    target: &T,
    table: LegacyTable,
    batch: u64,
    observer: &mut dyn ImportObserver,
    report: &mut TableReport,
) -> Result<(), DbErr>
where
    T: TransactionTrait<Transaction = sea_orm::DatabaseTransaction> + ConnectionTrait,
{
    let total = source.count(table.name()).await?;
    let stats_since = match table {
        LegacyTable::CallStats => write::last_stats_id(target).await?,
        _ => 0,
    };
    observer.table_started(table, total);
    let mut page = read_page(source, table, Cursor::Start, batch).await?;
    loop {
        let len = page.len() as u64;
        let Some(cursor) = page.next_cursor() else {
            break;
        };
        report.read += len;
        let last = len < batch;
        let (written, next) =
            futures_util::future::join(write_page(target, page, stats_since, report), async {
                if last {
                    Ok(None)
                } else {
                    read_page(source, table, cursor, batch).await.map(Some)
                }
            })
            .await;
        written?;
        observer.progress(table, report.read, total.max(report.read));
        match next? {
            Some(next) => page = next,
            None => break,
        }
    }
    observer.table_finished(report);
    Ok(())
}

/// Imports the older database at `source_url` into `target` (telcall's database, which
/// must be fully migrated). See the module documentation.
pub async fn import_legacy(
    source_url: &str,
    target: &DatabaseConnection,
    options: &ImportOptions,
    observer: &mut dyn ImportObserver,
) -> Result<ImportReport, LegacyError> {
    if !(1..=MAX_BATCH).contains(&options.batch) {
        return Err(LegacyError::InvalidBatch(options.batch));
    }
    let pending = telcall_migration::pending_migrations(target)
        .await
        .map_err(LegacyError::Inspect)?;
    if !pending.is_empty() {
        return Err(LegacyError::TargetNotMigrated(pending));
    }
    let source = source::open(source_url).await?;
    let problems = source
        .shape_problems()
        .await
        .map_err(LegacyError::Inspect)?;
    if !problems.is_empty() {
        let _ = source.close().await;
        return Err(LegacyError::Shape(problems));
    }
    let result = if options.dry_run {
        match target.begin().await {
            Ok(outer) => {
                let result = run(&source, &outer, options, observer).await;
                // Nothing of a dry run is kept; a failed rollback loses nothing either.
                let _ = outer.rollback().await;
                result
            }
            Err(source) => Err(LegacyError::Inspect(source)),
        }
    } else {
        run(&source, target, options, observer).await
    };
    let _ = source.close().await;
    result
}

async fn run<T>(
    source: &Source,
    target: &T,
    options: &ImportOptions,
    observer: &mut dyn ImportObserver,
) -> Result<ImportReport, LegacyError>
where
    T: TransactionTrait<Transaction = sea_orm::DatabaseTransaction> + ConnectionTrait,
{
    let mut report = ImportReport {
        dry_run: options.dry_run,
        tables: Vec::new(),
    };
    for table in LegacyTable::ALL {
        let mut table_report = TableReport::new(table);
        let outcome = import_table(
            source,
            target,
            table,
            options.batch,
            observer,
            &mut table_report,
        )
        .await;
        report.tables.push(table_report);
        if let Err(source) = outcome {
            return Err(LegacyError::Interrupted {
                table,
                report: Box::new(report),
                source,
            });
        }
    }
    tracing::info!(
        dry_run = options.dry_run,
        "import of the older database finished"
    );
    Ok(report)
}
