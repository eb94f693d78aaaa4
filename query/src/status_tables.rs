//! Tables of schema `system` made from state kept in memory: `system.rollups` from storage's,
//! and those of other parts of the server, such as ingest's `system.kinesis_shards`. Each is a
//! function giving the table's rows as they are now, called when a query is planned. The server
//! registers its own (`QueryEngine::register_status_table`), so `query` needs no dependency on
//! the part that keeps the state.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::Result;
use parking_lot::RwLock;

/// The type of a status table's time columns: UTC nanoseconds, as every table's `time`.
pub(crate) fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// A time column of a status table, from nanoseconds since 1970.
pub(crate) fn time_column(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(values).with_timezone("UTC"))
}

/// Gives a status table's rows as they are now.
pub type StatusFn = Arc<dyn Fn() -> Result<RecordBatch> + Send + Sync>;

/// The registered status tables, by their name in schema `system`.
#[derive(Clone, Default)]
pub(crate) struct StatusTables {
    tables: Arc<RwLock<BTreeMap<String, StatusFn>>>,
}

impl std::fmt::Debug for StatusTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tables.read().keys()).finish()
    }
}

impl StatusTables {
    pub(crate) fn register(&self, name: &str, rows: StatusFn) {
        self.tables.write().insert(name.to_owned(), rows);
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.tables.read().keys().cloned().collect()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.tables.read().contains_key(name)
    }

    /// The table `name` with its rows as they are now.
    pub(crate) fn table(&self, name: &str) -> Option<Result<Arc<dyn TableProvider>>> {
        let rows = self.tables.read().get(name).cloned()?;
        Some(rows().and_then(|batch| Ok(Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?) as Arc<dyn TableProvider>)))
    }
}
