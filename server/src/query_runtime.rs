//! The runtime SQL clients are served on, apart from ingest's.
//!
//! Ingest acknowledges devices that will resend or drop readings if it falls behind; a query
//! can wait. Postgres wire connections, and everything DataFusion and storage scans do for
//! them, therefore run on a tokio runtime of their own whose threads (`isobar-query`: its
//! workers, which also decode scans, and the blocking threads its writes wait on) run at a lower
//! CPU priority (`[query] nice`, default 10). Queries get every cycle ingest leaves free, but a
//! burst of them cannot take the CPU MQTT and the committer need: on two cores, four clients
//! querying back to back cost ingest a third of its rate at equal priority (docs/benchmarks.md,
//! "Ingest under queries").
//!
//! Storage's own threads (commit, persist, rollups) and the MQTT and HTTP listeners stay on
//! the main runtime at the process's priority.

use std::io;

use tokio::runtime::{Builder, Runtime};

use crate::config::QuerySection;

/// Name of the query runtime's threads, as `top -H` and `/proc/<pid>/task/*/comm` show it.
const THREAD_NAME: &str = "isobar-query";

/// Stack of each query thread. Planning recurses over a statement's syntax tree, and tokio's
/// 2 MiB default was overrun by a catalog query SQLAlchemy sends (in a debug build, whose
/// frames are larger). The pages are only touched as deep as a query goes.
const THREAD_STACK_BYTES: usize = 8 << 20;

/// Builds the query runtime: `section.threads` workers (0: one per core), each thread at nice
/// `section.nice` above the process's own.
pub(crate) fn build(section: &QuerySection) -> io::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    if section.threads > 0 {
        builder.worker_threads(section.threads);
    }
    // Absolute, not relative to the starting thread: blocking threads are started by workers
    // whose nice value is already raised.
    let nice = (priority::current()? + section.nice).min(priority::NICE_MAX);
    builder
        .thread_name(THREAD_NAME)
        .thread_stack_size(THREAD_STACK_BYTES)
        .on_thread_start(move || {
            if let Err(e) = priority::set_current(nice) {
                tracing::warn!("query thread keeps the server's CPU priority: {e}");
            }
        })
        .enable_all()
        .build()
}

/// The calling thread's nice value. On Linux it belongs to the thread (`setpriority(2)`,
/// BUGS), and threads it starts inherit it.
#[allow(unsafe_code)]
mod priority {
    use std::io;

    /// The lowest priority there is.
    pub(super) const NICE_MAX: i32 = 19;

    pub(super) fn current() -> io::Result<i32> {
        // SAFETY: errno is the calling thread's; getpriority only reads the scheduler's value
        // for the calling thread (`who` 0). -1 is a valid nice value, hence errno decides.
        unsafe {
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
            if nice == -1 && *libc::__errno_location() != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(nice)
        }
    }

    pub(super) fn set_current(nice: i32) -> io::Result<()> {
        // SAFETY: setpriority only writes the scheduler's value for the calling thread.
        match unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}
