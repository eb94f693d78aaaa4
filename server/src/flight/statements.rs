//! Flight SQL statements: prepared statements kept between calls, the tickets `DoGet` is
//! given, and parameters bound from Arrow batches.
//!
//! A prepared statement lives in [`Statements`] under a random handle until the client closes
//! it, or until `flight.prepared_statements_max` newer ones push it out (least recently used
//! first). A plain query needs nothing kept: its ticket carries its text, and `DoGet` plans it
//! again (from isobar's plan cache when nothing changed). Writes run when the client asks for
//! their `FlightInfo`, since ADBC's `cursor.execute("INSERT ...")` never calls `DoGet`; their
//! ticket then names an empty result.
//!
//! Parameters are written `$1`, `$2`, ... or `?` (ADBC's and JDBC's style), which become `$1`,
//! `$2`, ... in order. A query binds one row of parameters; a write runs once per row bound.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use parking_lot::Mutex;
use tonic::Status;

/// A prepared statement, with the parameters last bound to it.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    pub(crate) prepared: Arc<T>,
    pub(crate) params: Option<RecordBatch>,
    /// When it was last used, in calls to [`Statements`].
    used: u64,
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Self { prepared: Arc::clone(&self.prepared), params: self.params.clone(), used: self.used }
    }
}

/// The open prepared statements of every client.
#[derive(Debug)]
pub(crate) struct Statements<T> {
    inner: Mutex<Inner<T>>,
    max: usize,
}

#[derive(Debug)]
struct Inner<T> {
    by_handle: HashMap<Bytes, Entry<T>>,
    clock: u64,
}

impl<T> Inner<T> {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn entry(&mut self, handle: &[u8]) -> Result<&mut Entry<T>, Status> {
        let now = self.tick();
        let entry = self.by_handle.get_mut(handle).ok_or_else(unknown_handle)?;
        entry.used = now;
        Ok(entry)
    }
}

impl<T> Statements<T> {
    pub(crate) fn new(max: usize) -> Self {
        Self { inner: Mutex::new(Inner { by_handle: HashMap::new(), clock: 0 }), max }
    }

    /// Keeps `prepared` and returns its new handle.
    pub(crate) fn insert(&self, prepared: T) -> Bytes {
        let handle = Bytes::from(rand::random::<[u8; 16]>().to_vec());
        let mut inner = self.inner.lock();
        if inner.by_handle.len() >= self.max {
            let oldest = inner.by_handle.iter().min_by_key(|(_, e)| e.used).map(|(h, _)| h.clone());
            if let Some(oldest) = oldest {
                inner.by_handle.remove(&oldest);
            }
        }
        let used = inner.tick();
        inner.by_handle.insert(handle.clone(), Entry { prepared: Arc::new(prepared), params: None, used });
        handle
    }

    /// The statement under `handle`.
    pub(crate) fn get(&self, handle: &[u8]) -> Result<Entry<T>, Status> {
        Ok(self.inner.lock().entry(handle)?.clone())
    }

    /// Binds `params` to the statement under `handle`.
    pub(crate) fn bind(&self, handle: &[u8], params: RecordBatch) -> Result<(), Status> {
        self.inner.lock().entry(handle)?.params = Some(params);
        Ok(())
    }

    pub(crate) fn remove(&self, handle: &[u8]) {
        self.inner.lock().by_handle.remove(handle);
    }
}

fn unknown_handle() -> Status {
    Status::not_found("no such prepared statement: it was closed, or pushed out by newer ones (flight.prepared_statements_max)")
}

/// What a `TicketStatementQuery` of isobar's asks for.
#[derive(Debug, PartialEq)]
pub(crate) enum Ticket {
    /// Plan and run this query.
    Query(String),
    /// Nothing: the statement ran when its `FlightInfo` was asked for.
    Done,
}

impl Ticket {
    const QUERY: u8 = b'Q';
    const DONE: u8 = b'D';

    pub(crate) fn encode(&self) -> Bytes {
        match self {
            Self::Query(sql) => {
                let mut bytes = Vec::with_capacity(sql.len() + 1);
                bytes.push(Self::QUERY);
                bytes.extend_from_slice(sql.as_bytes());
                Bytes::from(bytes)
            }
            Self::Done => Bytes::from_static(&[Self::DONE]),
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Status> {
        match bytes.split_first() {
            Some((&Self::QUERY, sql)) => {
                let sql = std::str::from_utf8(sql).map_err(|_| Status::invalid_argument("the ticket's query is not UTF-8"))?;
                Ok(Self::Query(sql.to_owned()))
            }
            Some((&Self::DONE, [])) => Ok(Self::Done),
            _ => Err(Status::invalid_argument("not a ticket isobar handed out")),
        }
    }
}

/// `sql` with its `?` placeholders numbered `$1`, `$2`, ... as isobar's SQL writes them;
/// unchanged when it has none (or does not tokenize: planning reports that).
pub(crate) fn numbered_placeholders(sql: &str) -> String {
    if !sql.contains('?') {
        return sql.to_owned();
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else { return sql.to_owned() };
    let mut next = 0;
    let mut out = String::with_capacity(sql.len() + 8);
    for token in tokens {
        match token {
            Token::Question => {
                next += 1;
                out.push_str(&format!("${next}"));
            }
            Token::Placeholder(p) if p == "?" => {
                next += 1;
                out.push_str(&format!("${next}"));
            }
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

/// The parameters of row `row` of `batch`, in column order.
pub(crate) fn row_params(batch: &RecordBatch, row: usize) -> Result<ParamValues, Status> {
    let values = batch
        .columns()
        .iter()
        .map(|column| ScalarValue::try_from_array(column.as_ref(), row))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Status::invalid_argument(format!("parameter row {}: {e}", row + 1)))?;
    Ok(ParamValues::from(values))
}

/// The parameter rows of `batch` (one run of a write each); a batch without columns binds
/// nothing, and a query takes one row.
pub(crate) fn param_rows(batch: Option<&RecordBatch>) -> usize {
    batch.filter(|b| b.num_columns() > 0).map_or(0, |b| b.num_rows())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_become_numbered_placeholders_outside_strings() {
        assert_eq!(numbered_placeholders("SELECT * FROM t WHERE a = ? AND b IN (?, ?)"), "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)");
        assert_eq!(numbered_placeholders("SELECT '?' FROM t WHERE a = ?"), "SELECT '?' FROM t WHERE a = $1");
        assert_eq!(numbered_placeholders("SELECT $1"), "SELECT $1");
    }

    #[test]
    fn tickets_round_trip_and_foreign_ones_are_refused() {
        for ticket in [Ticket::Query("SELECT 1".into()), Ticket::Done] {
            assert_eq!(Ticket::decode(&ticket.encode()).expect("decodes"), ticket);
        }
        assert!(Ticket::decode(b"").is_err());
        assert!(Ticket::decode(b"X").is_err());
    }

    #[test]
    fn the_least_recently_used_statement_goes_first() {
        let statements = Statements::new(2);
        let first = statements.insert("SELECT 1");
        let second = statements.insert("SELECT 2");
        statements.get(&first).expect("first is there");
        let third = statements.insert("SELECT 3");
        assert!(statements.get(&second).is_err(), "the least recently used went");
        assert!(statements.get(&first).is_ok() && statements.get(&third).is_ok());
    }
}
