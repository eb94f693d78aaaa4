//! Queries whose rows are being streamed, by ticket, so that `CancelFlightInfo` can stop them.
//!
//! A cancelled query's stream ends with `CANCELLED` rather than quietly, so a client never
//! takes a cut-off result for a whole one. A client that goes away stops its query too: the
//! stream is dropped, and DataFusion's work with it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::stream::{AbortHandle, Abortable};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tonic::Status;

/// Streams under way, by the ticket that started them.
#[derive(Debug, Default)]
pub(crate) struct Running {
    by_ticket: Mutex<HashMap<Bytes, Vec<(u64, AbortHandle)>>>,
    next_id: AtomicU64,
}

impl Running {
    /// `rows`, cancellable through [`Running::cancel`] of `ticket` until they end.
    pub(crate) fn track<S>(self: &Arc<Self>, ticket: Bytes, rows: S) -> impl Stream<Item = Result<S::Item, Status>> + Send + use<S>
    where
        S: Stream + Send + 'static,
    {
        let (handle, registration) = AbortHandle::new_pair();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.by_ticket.lock().entry(ticket.clone()).or_default().push((id, handle.clone()));
        let guard = Guard { running: Arc::clone(self), ticket, id };
        let end = futures::stream::once(async move { handle.is_aborted() })
            .filter_map(|aborted| async move { aborted.then(|| Err(Status::cancelled("the query was cancelled"))) });
        Abortable::new(rows, registration).map(Ok).chain(end).map(move |item| {
            let _ = &guard;
            item
        })
    }

    /// Cancels every stream of `ticket`; whether there was one.
    pub(crate) fn cancel(&self, ticket: &[u8]) -> bool {
        let handles = self.by_ticket.lock().remove(ticket).unwrap_or_default();
        for (_, handle) in &handles {
            handle.abort();
        }
        !handles.is_empty()
    }

    fn finished(&self, ticket: &Bytes, id: u64) {
        let mut map = self.by_ticket.lock();
        if let Some(handles) = map.get_mut(ticket) {
            handles.retain(|(i, _)| *i != id);
            if handles.is_empty() {
                map.remove(ticket);
            }
        }
    }
}

/// Takes a stream off [`Running`] when it is dropped.
struct Guard {
    running: Arc<Running>,
    ticket: Bytes,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.running.finished(&self.ticket, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancelled_stream_ends_with_cancelled_and_leaves_the_registry() {
        let running = Arc::new(Running::default());
        let ticket = Bytes::from_static(b"t");
        let mut rows = Box::pin(running.track(ticket.clone(), futures::stream::iter(0..).then(|i| async move { i })));
        assert_eq!(rows.next().await.map(|r| r.ok()), Some(Some(0)));
        assert!(running.cancel(&ticket));
        let last = rows.next().await.expect("an item after cancel");
        assert_eq!(last.expect_err("cancelled").code(), tonic::Code::Cancelled);
        assert!(rows.next().await.is_none());
        drop(rows);
        assert!(!running.cancel(&ticket), "nothing left to cancel");
    }

    #[tokio::test]
    async fn a_finished_stream_ends_cleanly() {
        let running = Arc::new(Running::default());
        let rows: Vec<_> = running.track(Bytes::from_static(b"t"), futures::stream::iter([1, 2])).collect().await;
        assert_eq!(rows.into_iter().map(|r| r.ok()).collect::<Vec<_>>(), vec![Some(1), Some(2)]);
        assert!(running.by_ticket.lock().is_empty());
    }
}
