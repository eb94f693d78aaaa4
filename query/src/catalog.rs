//! The SQL catalog: schema `public` lists storage's tables as they are now, so tables that
//! ingest creates are queryable at once; schema `system` lists isobar's own tables (storage
//! tables named `system.<name>`, such as `system.ingest_errors`, and status tables made from
//! state kept in memory: `system.rollups` from storage's, others from the server's).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result};
use isobar_storage::{SYSTEM_TABLE_PREFIX, Storage};

use crate::status_tables::StatusTables;
use crate::table::StorageTable;

/// The schema of isobar's own tables.
pub(crate) const SYSTEM_SCHEMA: &str = "system";

/// Storage's tables, as a DataFusion schema: the users' tables, or isobar's own.
#[derive(Debug)]
pub(crate) struct StorageSchema {
    storage: Storage,
    system: bool,
    /// Whether scans take the fast paths (`QueryConfig::fast_paths`).
    fast_paths: bool,
    /// Tables other parts of the server keep (only in `system`).
    status: StatusTables,
}

impl StorageSchema {
    /// The users' tables (`public`).
    pub(crate) fn new(storage: Storage, fast_paths: bool) -> Self {
        Self { storage, system: false, fast_paths, status: StatusTables::default() }
    }

    /// isobar's own tables (`system`), with `status`'s.
    pub(crate) fn system(storage: Storage, fast_paths: bool, status: StatusTables) -> Self {
        Self { storage, system: true, fast_paths, status }
    }

    /// The storage name of the table SQL calls `name` in this schema.
    fn storage_name(&self, name: &str) -> Option<String> {
        match self.system {
            true => Some(format!("{SYSTEM_TABLE_PREFIX}{name}")),
            false => (!name.starts_with(SYSTEM_TABLE_PREFIX)).then(|| name.to_owned()),
        }
    }

    /// The name SQL calls storage's `table` in this schema, if it is in it.
    fn sql_name(&self, table: String) -> Option<String> {
        match table.strip_prefix(SYSTEM_TABLE_PREFIX) {
            Some(name) => self.system.then(|| name.to_owned()),
            None => (!self.system).then_some(table),
        }
    }
}

#[async_trait]
impl SchemaProvider for StorageSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.storage.tables().into_iter().filter_map(|t| self.sql_name(t.name)).collect();
        if self.system {
            names.extend(self.status.names());
        }
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if self.system
            && let Some(table) = self.status.table(name)
        {
            return table.map(Some);
        }
        let table = self.storage_name(name).and_then(|name| self.storage.table(&name));
        Ok(table.map(|t| Arc::new(StorageTable::new(self.storage.clone(), t, self.fast_paths)) as Arc<dyn TableProvider>))
    }

    fn register_table(&self, name: String, _table: Arc<dyn TableProvider>) -> Result<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::Plan(format!(
            "cannot create {name} here: isobar tables are made by CREATE TABLE with a time column and a PRIMARY KEY of tags, or by ingest"
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        (self.system && self.status.contains(name)) || self.storage_name(name).is_some_and(|name| self.storage.table(&name).is_some())
    }
}
