//! isobar's query layer: DataFusion over storage snapshots.
//!
//! [`QueryEngine`] owns one DataFusion session whose catalog `isobar`, schema `public`, lists
//! storage's tables as they are at planning time. Each table is a provider that pushes time
//! ranges and tag equalities down to storage (pruning chunks and series), decodes only the
//! projected columns, and accepts `INSERT`. Each query runs under its own memory budget within
//! one pool for all (`memory.rs`). `CREATE TABLE` maps a SQL definition with a
//! `PRIMARY KEY` of tags onto a storage table. Statements that would reach the server's files
//! or engine settings are refused before DataFusion sees them.
//!
//! It reads and writes only through `isobar_storage::Storage`; protocol code lives in the
//! server.

mod bulk;
mod catalog;
mod ddl;
mod delete;
mod engine;
mod error;
#[cfg(test)]
mod fast_paths_tests;
mod first_last;
mod functions;
mod information_schema;
mod insert;
mod insert_values;
mod latest;
mod memory;
mod plan_cache;
#[cfg(test)]
mod plan_cache_tests;
mod plan_chain;
mod policy;
mod prepared;
mod pushdown;
mod rollup_rewrite;
mod row_columns;
mod scan_exec;
mod session;
mod status_tables;
mod subquery;
mod system_chunks;
mod system_rollups;
mod system_storage;
mod table;
mod table_changes;
#[cfg(test)]
mod tag_filter_tests;
mod time_order;
mod values_text;

pub use ddl::{DEFAULT_SCHEMA, TableDefinition, identifier_name, table_definition, table_name};
pub use engine::{CATALOG, Output, QueryConfig, QueryEngine, Session};
pub use error::{Error, Result};
pub use insert::rejections;
pub use memory::{BudgetedStream, QueryBudget, with_budget};
pub use policy::{check_df_statement, check_statement, check_writable};
pub use prepared::{Outcome, Prepared};
pub use row_columns::{RowColumns, Target, Value};
pub use session::{Notice, QUERY_MEMORY_LIMIT, STATEMENT_TIMEOUT, SessionReply, SessionState};
pub use status_tables::StatusFn;
pub use subquery::aggregate_scalar_subqueries;
pub use table::column_names;
