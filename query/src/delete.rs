//! `DELETE FROM t [WHERE ...]`: removes the rows a time range and tag conditions select.
//!
//! The condition is planned as `SELECT * FROM t WHERE ...` and optimized (so `now() -
//! interval '1 day'` is a timestamp, and parameters are bound); storage must then apply all
//! of it exactly, as the scan's pushed-down filters (`pushdown.rs`): comparisons and `BETWEEN`
//! of `time`, and tag conditions, joined by `AND`. Any other condition (on a field, or an
//! `OR` across columns) leaves a filter above the scan, and the statement is refused, since
//! storage deletes whole series' time ranges (`isobar_storage::Storage::delete_rows`). The
//! reply counts the rows deleted, as PostgreSQL's `DELETE n` does.

use std::sync::Arc;

use datafusion::common::ParamValues;
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{LogicalPlan, Projection};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Delete, FromTable, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use isobar_storage::{ColumnKind, ScanRequest};

use crate::engine::QueryEngine;
use crate::error::{Error, Result};
use crate::pushdown::Pushdown;

/// `SELECT * FROM <the table> WHERE <the condition>`: what `delete` removes.
fn selecting_query(delete: &Delete) -> Result<String> {
    let unsupported = |what: &str| Err(Error::Unsupported(format!("DELETE with {what} is not supported by isobar")));
    if !delete.tables.is_empty() || delete.using.is_some() {
        return unsupported("more than one table (USING)");
    }
    if delete.returning.is_some() || delete.output.is_some() {
        return unsupported("RETURNING");
    }
    if !delete.order_by.is_empty() || delete.limit.is_some() {
        return unsupported("ORDER BY or LIMIT");
    }
    let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
    let [table] = from.as_slice() else { return unsupported("more than one table") };
    if !table.joins.is_empty() {
        return unsupported("a join");
    }
    Ok(match &delete.selection {
        Some(condition) => format!("SELECT * FROM {table} WHERE {condition}"),
        None => format!("SELECT * FROM {table}"),
    })
}

impl QueryEngine {
    /// The plan of the rows `statement` deletes, if it is a `DELETE`, under an empty projection
    /// (a `DELETE` returns no columns): what the extended protocol describes, with the types of
    /// its parameters.
    pub async fn delete_plan(&self, statement: &Statement) -> Option<Result<LogicalPlan>> {
        let Statement::Delete(delete) = statement else { return None };
        Some(
            self.selecting_plan(delete)
                .await
                .and_then(|plan| Ok(LogicalPlan::Projection(Projection::try_new(Vec::new(), Arc::new(plan)).map_err(Error::from)?))),
        )
    }

    /// Runs `statement` if it is a `DELETE`, with `params` bound to its placeholders, and
    /// returns how many rows it deleted once the delete is durable; `None` for another
    /// statement.
    pub async fn run_delete(&self, statement: &Statement, params: Option<&ParamValues>) -> Option<Result<u64>> {
        let Statement::Delete(delete) = statement else { return None };
        Some(self.delete(delete, params).await)
    }

    async fn selecting_plan(&self, delete: &Delete) -> Result<LogicalPlan> {
        let sql = selecting_query(delete)?;
        let mut statements = DFParser::parse_sql_with_dialect(&sql, &PostgreSqlDialect {})?;
        let statement: DfStatement = statements.pop_front().ok_or_else(|| Error::Unsupported("an empty DELETE".into()))?;
        Ok(self.context().state().statement_to_plan(statement).await?)
    }

    async fn delete(&self, delete: &Delete, params: Option<&ParamValues>) -> Result<u64> {
        let mut plan = self.selecting_plan(delete).await?;
        if let Some(params) = params {
            plan = plan.replace_params_with_values(params)?;
        }
        let plan = self.context().state().optimize(&plan)?;
        let Some(request) = self.delete_request(&plan, delete)? else { return Ok(0) };
        let storage = self.storage().clone();
        let deleted = tokio::task::spawn_blocking(move || storage.delete_rows(&request))
            .await
            .map_err(|e| Error::DataFusion(datafusion::error::DataFusionError::External(Box::new(e))))??;
        Ok(deleted)
    }

    /// What storage deletes for the optimized `plan` of a `DELETE`'s rows; `None` when it
    /// selects nothing (`WHERE false`). Refused unless the scan applies every condition.
    fn delete_request(&self, plan: &LogicalPlan, delete: &Delete) -> Result<Option<ScanRequest>> {
        let mut scans = Vec::new();
        let mut filtered = false;
        plan.apply(|node| {
            match node {
                LogicalPlan::TableScan(scan) => scans.push(scan.clone()),
                LogicalPlan::Filter(_) => filtered = true,
                _ => {}
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })?;
        if filtered {
            let condition = delete.selection.as_ref().map(ToString::to_string).unwrap_or_default();
            return Err(Error::Unsupported(format!(
                "DELETE ... WHERE {condition}: isobar deletes by time range and tags, so the condition must be comparisons or BETWEEN of time with constants, and tag conditions (=, <>, IN, LIKE, ~), joined by AND"
            )));
        }
        let scan = match scans.as_slice() {
            // The optimizer found that nothing matches (`WHERE false`).
            [] => return Ok(None),
            [scan] => scan,
            _ => return Err(Error::Unsupported("DELETE from this table is not supported".into())),
        };
        let table = scan.table_name.table().to_owned();
        let schema = self.storage().table(&table).ok_or_else(|| Error::Storage(isobar_storage::Error::NoSuchTable(table.clone())))?;
        let is_tag = |c: &str| schema.column(c).is_some_and(|c| c.kind == ColumnKind::Tag);
        let pushdown = Pushdown::from_filters(&scan.filters, is_tag);
        if pushdown.is_empty() {
            return Ok(None);
        }
        Ok(Some(ScanRequest {
            table,
            time_min_ns: pushdown.time_min_ns,
            time_max_ns: pushdown.time_max_ns,
            series: pushdown.series,
            columns: None,
        }))
    }
}
