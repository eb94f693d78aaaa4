//! One Postgres connection's session: its settings (`isobar_query::SessionState`), the names
//! of its prepared statements (bounded; its cursors are `pg_cursor`'s), and how statements about the session are
//! answered on the wire (ParameterStatus for changed settings, notices, transaction status).
//!
//! Everything here lives in the connection's own session extensions; nothing one client does
//! reaches another's session or the engine's shared DataFusion session.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{DFSchema, ToDFSchema};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{ClientInfo, Type};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::response::{NoticeResponse, TransactionStatus};
use datafusion_postgres::pgwire::messages::startup::ParameterStatus;
use isobar_query::{QueryConfig, SessionReply, SessionState};

use crate::pg::user_error;

/// Named prepared statements one connection may hold at once.
pub(crate) const PREPARED_STATEMENTS_MAX: usize = 1_000;

/// Where datafusion-postgres reads a session's statement timeout when it plans.
const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";

/// Settings whose value the wire encoder reads from the connection's metadata.
const FORMAT_SETTINGS: &[&str] = &["datestyle", "intervalstyle", "bytea_output", "extra_float_digits"];

/// One connection's session.
#[derive(Debug)]
pub(crate) struct PgSession {
    state: Mutex<SessionState>,
    prepared: Mutex<BTreeSet<String>>,
}

/// Locks a mutex, whether or not a panic poisoned it: the data behind these stays consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PgSession {
    /// The session of `client`, made with the server's limits on first use.
    pub(crate) fn of(client: &(impl ClientInfo + ?Sized), config: &QueryConfig) -> Arc<Self> {
        client
            .session_extensions()
            .get_or_insert_with(|| Self { state: Mutex::new(SessionState::new(config)), prepared: Mutex::new(BTreeSet::new()) })
    }

    /// The session's settings.
    pub(crate) fn state(&self) -> MutexGuard<'_, SessionState> {
        lock(&self.state)
    }

    /// Notes a named prepared statement; refused past [`PREPARED_STATEMENTS_MAX`].
    pub(crate) fn add_prepared(&self, name: &str) -> PgWireResult<()> {
        let mut prepared = lock(&self.prepared);
        if !prepared.contains(name) && prepared.len() >= PREPARED_STATEMENTS_MAX {
            return Err(user_error(
                "54000",
                format!(
                    "this session holds {PREPARED_STATEMENTS_MAX} prepared statements, the most isobar keeps; close or DEALLOCATE some"
                ),
            ));
        }
        prepared.insert(name.to_owned());
        Ok(())
    }

    /// Forgets a prepared statement closed by the protocol.
    pub(crate) fn remove_prepared(&self, name: &str) {
        lock(&self.prepared).remove(name);
    }

    /// `DEALLOCATE name` or `DEALLOCATE ALL`: removes the session's prepared statements.
    pub(crate) fn deallocate(&self, client: &dyn HookClient, name: &str) -> PgWireResult<Response> {
        let store = client.portal_store();
        let mut prepared = lock(&self.prepared);
        if name.eq_ignore_ascii_case("all") {
            for statement in std::mem::take(&mut *prepared) {
                store.rm_statement(&statement);
            }
            return Ok(Response::Execution(Tag::new("DEALLOCATE ALL")));
        }
        if !prepared.remove(name) {
            return Err(user_error("26000", format!("prepared statement \"{name}\" does not exist")));
        }
        store.rm_statement(name);
        Ok(Response::Execution(Tag::new("DEALLOCATE")))
    }

    /// Copies the settings the wire encoder and datafusion-postgres read into the connection's
    /// metadata.
    fn mirror(&self, client: &mut dyn HookClient) {
        let state = self.state();
        let metadata = client.metadata_mut();
        metadata.insert(STATEMENT_TIMEOUT_KEY.to_owned(), state.statement_timeout_ms().to_string());
        for name in FORMAT_SETTINGS {
            if let Some(value) = state.value(name) {
                metadata.insert((*name).to_owned(), value);
            }
        }
    }

    /// Sends what a session statement's reply says on the wire and returns its response.
    pub(crate) async fn respond(&self, client: &mut dyn HookClient, reply: SessionReply) -> PgWireResult<Response> {
        match reply {
            SessionReply::Show { columns, rows } => show_response(&columns, rows),
            SessionReply::Command { tag, changed, notice } => {
                self.mirror(client);
                for (name, value) in changed {
                    client.send_message(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(name, value))).await?;
                }
                if let Some(n) = notice {
                    let info = ErrorInfo::new(n.severity.to_owned(), n.code.to_owned(), n.message);
                    client.send_message(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(info))).await?;
                }
                let response = match tag {
                    "BEGIN" if client.transaction_status() == TransactionStatus::Idle => Response::TransactionStart(Tag::new(tag)),
                    // PostgreSQL ends an aborted block with ROLLBACK, whatever the client asked.
                    "COMMIT" if client.transaction_status() == TransactionStatus::Error => Response::TransactionEnd(Tag::new("ROLLBACK")),
                    "COMMIT" | "ROLLBACK" => Response::TransactionEnd(Tag::new(tag)),
                    _ => Response::Execution(Tag::new(tag)),
                };
                // The wire library sets the status from the responses once every statement of a
                // query string has run; the next statement of the same string (`ROLLBACK; BEGIN`
                // after an error) must already see it.
                match response {
                    Response::TransactionStart(_) => client.set_transaction_status(TransactionStatus::Transaction),
                    Response::TransactionEnd(_) => client.set_transaction_status(TransactionStatus::Idle),
                    _ => {}
                }
                Ok(response)
            }
        }
    }
}

/// The plan the extended protocol describes for a session statement: its result columns
/// (text) for `SHOW`, none otherwise.
pub(crate) fn reply_plan(reply: &SessionReply) -> PgWireResult<LogicalPlan> {
    let schema = match reply {
        SessionReply::Show { columns, .. } => {
            let fields: Vec<Field> = columns.iter().map(|c| Field::new(c, DataType::Utf8, false)).collect();
            Schema::new(fields).to_dfschema().map_err(|e| PgWireError::ApiError(Box::new(e)))?
        }
        SessionReply::Command { .. } => DFSchema::empty(),
    };
    Ok(LogicalPlan::EmptyRelation(EmptyRelation { produce_one_row: false, schema: Arc::new(schema) }))
}

/// Rows of text. A text value's binary form is its text form, so this suits either format.
fn show_response(columns: &[String], rows: Vec<Vec<String>>) -> PgWireResult<Response> {
    let fields: Arc<Vec<FieldInfo>> =
        Arc::new(columns.iter().map(|c| FieldInfo::new(c.clone(), None, None, Type::TEXT, FieldFormat::Text)).collect());
    let mut encoded = Vec::with_capacity(rows.len());
    for row in rows {
        let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
        for value in row {
            encoder.encode_field(&Some(value))?;
        }
        encoded.push(Ok(encoder.take_row()));
    }
    Ok(Response::Query(QueryResponse::new(fields, Box::pin(futures::stream::iter(encoded)))))
}
