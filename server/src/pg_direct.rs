//! Queries over isobar's tables, planned by isobar rather than through the catalog rewrites.
//!
//! datafusion-postgres rewrites every statement so that the catalog queries of psql, JDBC and
//! BI tools plan in DataFusion; one of those rewrites turns a correlated scalar subquery in a
//! select list into NULL. For a catalog query that is a harmless blank column; for a user's
//! `SELECT station, (SELECT max(v) FROM readings r WHERE r.station = s.station) FROM stations
//! s` it would be a wrong answer. A query with such a subquery that reads no catalog is
//! therefore parsed and planned here, with its scalar subqueries aggregated as PostgreSQL
//! allows (`query/src/subquery.rs`).

use std::fmt::Debug;
use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, ObjectName, SelectItem, SetExpr, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::{FieldInfo, Response};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::{ClientInfo, Type};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::types::format::FormatOptions;
use isobar_query::{QueryEngine, aggregate_scalar_subqueries};

use crate::pg_params::PgStatement;

/// `sql` parsed, when it is one query over isobar's tables with a scalar subquery in a select
/// list; `None` leaves it to datafusion-postgres.
pub(crate) fn direct_query(sql: &str) -> Option<Statement> {
    // Writes are never queries: a bulk INSERT is not parsed twice.
    if sql.trim_start().get(..6).is_some_and(|w| w.eq_ignore_ascii_case("insert")) {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [Statement::Query(_)] = statements.as_slice() else { return None };
    let mut statement = statements.pop()?;
    let mut finder = Finder::default();
    let _ = statement.visit(&mut finder);
    if finder.reads_catalog || !finder.selects_subquery {
        return None;
    }
    aggregate_scalar_subqueries(&mut statement);
    Some(statement)
}

#[derive(Default)]
struct Finder {
    reads_catalog: bool,
    selects_subquery: bool,
}

impl Visitor for Finder {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let name = relation.to_string().to_lowercase();
        self.reads_catalog |= name.starts_with("pg_") || name.contains("pg_catalog") || name.contains("information_schema");
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &datafusion::sql::sqlparser::ast::Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_ref() {
            self.selects_subquery |= select.projection.iter().any(|item| {
                matches!(item, SelectItem::UnnamedExpr(Expr::Subquery(_)) | SelectItem::ExprWithAlias { expr: Expr::Subquery(_), .. })
            });
        }
        ControlFlow::Continue(())
    }
}

/// Plans `statement` in isobar's session.
pub(crate) async fn plan(engine: &QueryEngine, statement: Statement) -> PgWireResult<LogicalPlan> {
    engine
        .context()
        .state()
        .statement_to_plan(DfStatement::Statement(Box::new(statement)))
        .await
        .map_err(|e| PgWireError::ApiError(Box::new(e)))
}

/// Runs a planned query, its rows encoded in `format` (text for the simple query protocol, as
/// the Bind asked for the extended one) with the session's settings.
pub(crate) async fn run(
    engine: &QueryEngine,
    plan: LogicalPlan,
    format: &Format,
    client: &(dyn ClientInfo + Send + Sync),
) -> PgWireResult<Response> {
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let batches = engine.execute_plan(plan).await.map_err(|e| crate::pg::pg_error(&e))?;
    crate::pg_rows::query_response(batches, format, options).map(Response::Query)
}

/// datafusion-postgres's parser, except for [`direct_query`]s, which isobar plans.
pub(crate) struct DirectParser<P> {
    pub(crate) inner: Arc<P>,
    pub(crate) engine: QueryEngine,
}

#[async_trait]
impl<P> QueryParser for DirectParser<P>
where
    P: QueryParser<Statement = PgStatement> + Send + Sync,
{
    type Statement = PgStatement;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let original = sql;
        let rewritten = crate::pg_compat::rewrite(&self.engine, sql);
        let sql = rewritten.as_deref().unwrap_or(sql);
        match direct_query(sql) {
            Some(statement) => {
                let plan = plan(&self.engine, statement.clone()).await.map_err(crate::pg::with_sqlstate)?;
                Ok(Some((statement.to_string(), Some((statement, plan)))))
            }
            // The statement keeps the client's text when isobar rewrote it: its placeholders
            // are the ones a Bind supplies (`pg_params` lines up those the plan kept).
            None => {
                let parsed = self.inner.parse_sql(client, sql, types).await.map_err(crate::pg::with_sqlstate)?;
                Ok(parsed.map(|(text, plan)| (if rewritten.is_some() { original.to_owned() } else { text }, plan)))
            }
        }
    }

    fn get_parameter_types(&self, statement: &PgStatement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(statement)
    }

    fn get_result_schema(&self, statement: &PgStatement, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(statement, format)
    }
}

impl<P> Debug for DirectParser<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectParser")
    }
}

#[cfg(test)]
mod tests {
    use super::direct_query;

    #[test]
    fn only_user_queries_with_selected_subqueries_are_planned_directly() {
        let direct = direct_query("SELECT s.station, (SELECT v FROM r WHERE r.station = s.station) FROM s").expect("planned by isobar");
        assert!(direct.to_string().contains("max(v)"), "{direct}");
        for sql in [
            "SELECT station FROM s",
            "SELECT coalesce((SELECT v FROM r), 0) FROM s",
            "SELECT c.relname, (SELECT 1 FROM pg_catalog.pg_attrdef d WHERE d.adrelid = c.oid) FROM pg_catalog.pg_class c",
            "INSERT INTO s VALUES (1)",
            "SELECT (SELECT 1); SELECT (SELECT 2)",
        ] {
            assert!(direct_query(sql).is_none(), "{sql}");
        }
    }
}
