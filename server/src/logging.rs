//! Log lines on stderr through `tracing`, as text (one line each: UTC time, level, target and
//! message) or as JSON objects, one per line. Levels come from `ISOBAR_LOG` in `tracing`'s
//! filter syntax (`debug`, `warn,isobar=debug`); by default warnings and errors from
//! everything and isobar's own information (connections closed, messages not stored).
//! rustls logs only errors: its warnings are about what a client sent (an IP address as the
//! TLS server name, say), one line per connection. The crates below the server log through
//! the `log` facade, which `tracing` picks up.

use tracing_subscriber::EnvFilter;

/// What `ISOBAR_LOG` is when unset.
const DEFAULT_FILTER: &str = "warn,isobar=info,rustls=error";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the subscriber; a second call changes nothing. A bad `ISOBAR_LOG` falls back to
/// the default, with a warning saying so.
pub(crate) fn init(format: Format) {
    let (filter, bad) = match std::env::var("ISOBAR_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => {
                (EnvFilter::new(DEFAULT_FILTER), Some(format!("ISOBAR_LOG={spec} is not a log filter ({e}); using {DEFAULT_FILTER}")))
            }
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false);
    let installed = match format {
        Format::Text => builder.try_init(),
        Format::Json => builder.json().try_init(),
    };
    if let (Ok(()), Some(warning)) = (installed, bad) {
        tracing::warn!("{warning}");
    }
}
