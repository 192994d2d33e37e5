//! Tracing set-up: human-readable or JSON lines, filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// The default filter when `RUST_LOG` is unset: info for telcall, warnings for the rest.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,actix_server=warn";

/// Directives always added to the filter, whatever `RUST_LOG` says: SeaORM's
/// trace-level `connect` spans record the whole connection options, database URL (and so
/// its password) included.
pub const SECRET_SAFE_DIRECTIVES: [&str; 3] = [
    "sea_orm::driver::sqlx_postgres=debug",
    "sea_orm::driver::sqlx_sqlite=debug",
    "sea_orm::database=debug",
];

/// The log filter: `RUST_LOG` (or [`DEFAULT_FILTER`]) plus [`SECRET_SAFE_DIRECTIVES`].
pub fn filter() -> EnvFilter {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    for directive in SECRET_SAFE_DIRECTIVES {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// Installs the global subscriber writing to `sink`. Call once per process; later calls
/// are ignored (tests start many apps in one process).
pub fn init<W>(format: LogFormat, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(filter())
        .with_writer(sink);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_safe_directives_parse() {
        for d in super::SECRET_SAFE_DIRECTIVES {
            assert!(
                d.parse::<tracing_subscriber::filter::Directive>().is_ok(),
                "{d}"
            );
        }
    }
}
