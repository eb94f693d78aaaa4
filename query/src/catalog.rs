//! The SQL catalog: schema `public` lists storage's tables as they are now, so tables that
//! ingest creates are queryable at once.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result};
use isobar_storage::Storage;

use crate::table::StorageTable;

/// Storage's tables, as a DataFusion schema.
#[derive(Debug)]
pub(crate) struct StorageSchema {
    storage: Storage,
}

impl StorageSchema {
    pub(crate) fn new(storage: Storage) -> Self {
        Self { storage }
    }
}

#[async_trait]
impl SchemaProvider for StorageSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.storage.tables().into_iter().map(|t| t.name).collect();
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.storage.table(name).map(|t| Arc::new(StorageTable::new(self.storage.clone(), t)) as Arc<dyn TableProvider>))
    }

    fn register_table(&self, name: String, _table: Arc<dyn TableProvider>) -> Result<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::Plan(format!(
            "cannot create {name} here: isobar tables are made by CREATE TABLE with a time column and a PRIMARY KEY of tags, or by ingest"
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.storage.table(name).is_some()
    }
}
