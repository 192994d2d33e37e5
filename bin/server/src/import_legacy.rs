//! `telcall import-legacy`: runs the persistence crate's importer of the older backend's
//! database against the configured one, drawing progress (a bar on a terminal, plain lines
//! otherwise) and printing the per-table summary.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use telcall_persistence::legacy::{
    ImportObserver, ImportOptions, ImportReport, LegacyError, LegacyTable, TableReport,
    import_legacy,
};

/// Least time between two redraws of the terminal progress bar.
const BAR_REDRAW: Duration = Duration::from_millis(200);
/// Least time between two plain progress lines.
const LINE_INTERVAL: Duration = Duration::from_secs(5);
/// Width of the progress bar, in characters.
const BAR_WIDTH: usize = 30;

/// Draws progress on stderr: a bar redrawn in place on a terminal, else a line now and then.
pub struct Progress {
    tty: bool,
    started: Instant,
    last_draw: Option<Instant>,
}

impl Progress {
    /// A progress display for stderr, a bar when stderr is a terminal.
    pub fn for_stderr() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_draw: None,
        }
    }

    fn rate(&self, done: u64) -> u64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let rate = (done as f64 / secs) as u64;
            rate
        } else {
            0
        }
    }
}

fn percent(done: u64, total: u64) -> u64 {
    done.saturating_mul(100).checked_div(total).unwrap_or(100)
}

impl ImportObserver for Progress {
    fn table_started(&mut self, table: LegacyTable, total: u64) {
        self.started = Instant::now();
        self.last_draw = None;
        if !self.tty {
            eprintln!("import-legacy: {table}: {total} rows to read");
        }
    }

    fn progress(&mut self, table: LegacyTable, done: u64, total: u64) {
        let due = if self.tty { BAR_REDRAW } else { LINE_INTERVAL };
        if self.last_draw.is_some_and(|at| at.elapsed() < due) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let pct = percent(done, total);
        let rate = self.rate(done);
        if self.tty {
            let filled = usize::try_from(pct).unwrap_or(100).min(100) * BAR_WIDTH / 100;
            let bar = format!("{}{}", "#".repeat(filled), "-".repeat(BAR_WIDTH - filled));
            eprint!("\r\x1b[2K{table:<13} [{bar}] {pct:>3}% {done}/{total} rows, {rate} rows/s");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("import-legacy: {table}: {done}/{total} rows ({pct}%), {rate} rows/s");
        }
    }

    fn table_finished(&mut self, report: &TableReport) {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = self.rate(report.read);
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!(
            "import-legacy: {}: {} rows read in {secs:.1} s ({rate} rows/s)",
            report.table, report.read
        );
    }
}

/// The summary table: one line per table, then the reasons rows were skipped or repaired.
pub fn summary(report: &ImportReport) -> String {
    let mut out = String::new();
    if report.dry_run {
        out.push_str("DRY RUN: nothing was written.\n");
    }
    out.push_str(&format!(
        "{:<13} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "table", "read", "imported", "updated", "present", "skipped"
    ));
    for t in &report.tables {
        out.push_str(&format!(
            "{:<13} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            t.table.name(),
            t.read,
            t.imported,
            t.updated,
            t.already_present,
            t.skipped_total()
        ));
    }
    for t in &report.tables {
        for (reason, n) in &t.skipped {
            out.push_str(&format!("{}: skipped {n}: {reason}\n", t.table));
        }
        for (repair, n) in &t.repaired {
            out.push_str(&format!("{}: repaired {n}: {repair}\n", t.table));
        }
    }
    out
}

/// Runs `telcall import-legacy`: imports the older database at `from` into the configured
/// database. Prints the summary on stdout; fails when the import could not run or stopped.
pub async fn run(
    settings: &crate::config::Settings,
    from: &str,
    dry_run: bool,
    batch: u64,
) -> anyhow::Result<()> {
    let options = ImportOptions { batch, dry_run };
    tracing::info!(
        target_database = %settings.database_url_redacted(),
        source = %telcall_persistence::redacted_url(from),
        dry_run = options.dry_run,
        batch = options.batch,
        "importing the older database"
    );
    let target = telcall_persistence::connect(
        settings.database_url.expose_secret(),
        &telcall_persistence::DbOptions {
            max_connections: 2,
            connect_timeout: settings.db_connect_timeout,
            acquire_timeout: settings.db_connect_timeout,
            ..Default::default()
        },
    )
    .await?;
    let mut progress = Progress::for_stderr();
    let result = import_legacy(from, &target, &options, &mut progress).await;
    let _ = telcall_persistence::close(target).await;
    match result {
        Ok(report) => {
            print!("{}", summary(&report));
            Ok(())
        }
        Err(LegacyError::Interrupted {
            table,
            report,
            source,
        }) => {
            print!("{}", summary(&report));
            Err(anyhow::Error::new(source).context(format!(
                "import stopped in table {table}; batches written so far stay, and running \
                 the same command again completes the import"
            )))
        }
        Err(e) => Err(e.into()),
    }
}
