//! Log lines on stderr: warnings and errors from everything, and isobar's own information
//! (connections closed, messages not stored) as well. One line each, with the UTC time, level
//! and the module that logged it. rustls logs only errors: its warnings are about what a
//! client sent (an IP address as the TLS server name, say), one line per connection.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let target = metadata.target();
        match metadata.level() {
            Level::Error => true,
            Level::Warn => !target.starts_with("rustls"),
            Level::Info => target.starts_with("isobar"),
            Level::Debug | Level::Trace => false,
        }
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
            eprintln!("{now} {} {}: {}", record.level(), record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger; a second call changes nothing.
pub(crate) fn init() {
    if log::set_logger(&Stderr).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

