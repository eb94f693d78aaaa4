//! The committer: one thread that turns queued writes into grouped, synced RocksDB writes.
//!
//! Writers prepare their batch (under the registry lock, which fixes its WAL sequence) and
//! queue it on a bounded channel. The committer takes everything queued, waits up to the group
//! commit window for the writes being prepared at that moment (never for writes that have not
//! reached the engine yet: a writer still parsing its request would only delay everyone
//! queued), writes it all in one synced RocksDB write batch, applies the rows to
//! the write buffer in sequence order, and only then answers each writer. If the write fails,
//! the engine is poisoned: that write and every later one fail, and nothing is acknowledged.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::batch::TableRows;
use crate::catalog::Op;
use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::model::WalSequence;

/// Bytes of catalog changes above which a group is committed without waiting for more.
const GROUP_BYTES_MAX: usize = 32 << 20;

/// One prepared write waiting for its fsync.
#[derive(Debug)]
pub(crate) struct CommitRequest {
    pub(crate) sequence: WalSequence,
    pub(crate) ops: Vec<Op>,
    pub(crate) tables: Vec<TableRows>,
    pub(crate) done: Sender<Result<()>>,
}

/// Runs until every sender of `queue` is gone.
pub(crate) fn run_committer(shared: Arc<Shared>, queue: Receiver<CommitRequest>) {
    let window = Duration::from_micros(shared.config.group_commit_window_us);
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        let mut bytes: usize = group[0].ops.iter().map(Op::size_bytes).sum();
        let deadline = Instant::now() + window;
        while bytes < GROUP_BYTES_MAX {
            let next = match queue.try_recv() {
                Ok(r) => r,
                Err(_) if window.is_zero() || shared.preparing_writes.load(Ordering::SeqCst) == 0 => break,
                Err(_) => match queue.recv_deadline(deadline) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                },
            };
            bytes += next.ops.iter().map(Op::size_bytes).sum::<usize>();
            group.push(next);
        }
        commit_group(&shared, group);
    }
}

fn commit_group(shared: &Shared, group: Vec<CommitRequest>) {
    if let Some(reason) = shared.poisoned() {
        for req in group {
            let _ = req.done.send(Err(Error::Poisoned(reason.clone())));
        }
        return;
    }
    let result = shared.store.commit(group.iter().flat_map(|r| &r.ops), true);
    shared.metrics.wal_fsyncs.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = result {
        let reason = format!("WAL write failed: {e}");
        shared.poison(reason.clone());
        for req in group {
            let _ = req.done.send(Err(Error::Poisoned(reason.clone())));
        }
        return;
    }
    let mut done = Vec::with_capacity(group.len());
    {
        let mut state = shared.state.write();
        for req in group {
            state.latest.note(&req.tables);
            state.active.apply(req.tables);
            state.applied_sequence = req.sequence;
            done.push(req.done);
        }
    }
    shared.kick_persist_if_full();
    for d in done {
        let _ = d.send(Ok(()));
    }
}
