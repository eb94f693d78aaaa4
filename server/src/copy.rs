//! `COPY table [(columns)] FROM STDIN`, in text, CSV and binary format: how psql's `\copy`,
//! psycopg's `cursor.copy()` and bulk loaders load isobar.
//!
//! The hook answers the statement with CopyInResponse and leaves a [`CopyIn`] in the
//! session. CopyData messages are parsed row by row (`copy/rows.rs`) straight into storage's
//! columns (`isobar_query::RowColumns`: no SQL values, no plan), and every
//! `rows::COPY_ROWS_PER_WRITE` rows are handed to storage while the next rows are parsed: one
//! write in flight at a time, so parsing overlaps the WAL write and its fsync, and memory stays
//! bounded however large the load. A bad row fails the COPY with its line; the rows before it
//! are written, nothing from it on (as for every isobar source). CopyDone writes the rest and
//! answers `COPY n` once every row is durable.

use std::fmt::Debug;
use std::sync::Mutex;

use async_trait::async_trait;
use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, Statement};
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::copy::CopyHandler;
use datafusion_postgres::pgwire::api::results::Tag;
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use futures::{Sink, SinkExt};
use isobar_query::{QueryEngine, RowColumns, Target, Value};
use isobar_storage::{FieldType, Storage, WriteBatch, WriteReceipt};
use tokio::task::JoinHandle;

use crate::pg::user_error;

mod rows;

pub(crate) use rows::{CopyFormat, CopyKind, Field, RowParser};
#[cfg(test)]
use rows::{Fields, csv_record, split_text};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01), where binary timestamps count from.
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;

/// Options a COPY statement sets; the rest come from its format's defaults.
#[derive(Debug, Default)]
struct CopyOptions {
    kind: Option<CopyKind>,
    delimiter: Option<char>,
    null: Option<String>,
    header: bool,
    quote: Option<char>,
    escape: Option<char>,
}

impl CopyFormat {
    /// The format a statement's options (new or pre-9.0 syntax) describe.
    pub(crate) fn from_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Self, String> {
        let mut o = CopyOptions::default();
        for option in options {
            match option {
                CopyOption::Format(name) => match name.value.to_lowercase().as_str() {
                    "csv" => o.kind = Some(CopyKind::Csv),
                    "text" => o.kind = Some(CopyKind::Text),
                    "binary" => o.kind = Some(CopyKind::Binary),
                    other => return Err(format!("COPY format {other} is not supported (text, csv and binary are)")),
                },
                CopyOption::Delimiter(c) => o.delimiter = Some(*c),
                CopyOption::Null(n) => o.null = Some(n.clone()),
                CopyOption::Header(h) => o.header = *h,
                CopyOption::Quote(c) => o.quote = Some(*c),
                CopyOption::Escape(c) => o.escape = Some(*c),
                CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                other => return Err(format!("COPY option {other} is not supported")),
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Binary => o.kind = Some(CopyKind::Binary),
                CopyLegacyOption::Csv(csv_options) => {
                    o.kind = Some(CopyKind::Csv);
                    for c in csv_options {
                        match c {
                            CopyLegacyCsvOption::Header => o.header = true,
                            CopyLegacyCsvOption::Quote(q) => o.quote = Some(*q),
                            CopyLegacyCsvOption::Escape(e) => o.escape = Some(*e),
                            other => return Err(format!("COPY option {other} is not supported")),
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => o.delimiter = Some(*c),
                CopyLegacyOption::Null(n) => o.null = Some(n.clone()),
                other => return Err(format!("COPY option {other} is not supported")),
            }
        }
        let kind = o.kind.unwrap_or(CopyKind::Text);
        if kind == CopyKind::Binary && (o.delimiter.is_some() || o.null.is_some() || o.header || o.quote.is_some() || o.escape.is_some()) {
            return Err("COPY in binary format takes no DELIMITER, NULL, HEADER, QUOTE or ESCAPE".into());
        }
        // PostgreSQL's defaults: tab and `\N` for text, comma and the empty string for CSV.
        let (delimiter, null) = if kind == CopyKind::Csv { (',', String::new()) } else { ('\t', "\\N".to_owned()) };
        let ascii = |what: &str, c: char| {
            u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| format!("COPY {what} must be one ASCII character"))
        };
        let quote = ascii("QUOTE", o.quote.unwrap_or('"'))?;
        Ok(Self {
            kind,
            delimiter: ascii("DELIMITER", o.delimiter.unwrap_or(delimiter))?,
            null: o.null.unwrap_or(null),
            header: o.header,
            quote,
            escape: o.escape.map(|e| ascii("ESCAPE", e)).transpose()?.unwrap_or(quote),
        })
    }
}

/// The session's COPY, if one is in progress.
#[derive(Debug, Default)]
pub(crate) struct CopySlot(pub(crate) Mutex<Option<CopyIn>>);

/// Starts a COPY for `statement` if it is a `COPY ... FROM STDIN`.
pub(crate) fn start(engine: &QueryEngine, statement: &Statement) -> Option<Result<CopyIn, String>> {
    let Statement::Copy { source, to: false, options, legacy_options, .. } = statement else { return None };
    let CopySource::Table { table_name, columns } = source else {
        return Some(Err("COPY FROM needs a table, not a query".into()));
    };
    Some((|| {
        let table = isobar_query::table_name(table_name).map_err(|e| e.to_string())?;
        let schema = engine.storage().table(&table).ok_or_else(|| format!("table {table} does not exist"))?;
        let columns: Vec<String> = if columns.is_empty() {
            isobar_query::column_names(&schema)
        } else {
            columns.iter().map(isobar_query::identifier_name).collect()
        };
        let format = CopyFormat::from_options(options, legacy_options)?;
        let rows = RowColumns::new(&schema, &columns).map_err(|e| e.to_string())?;
        Ok(CopyIn::new(table, rows, format, engine.storage().clone()))
    })())
}

/// A COPY in progress on one connection.
#[derive(Debug)]
pub(crate) struct CopyIn {
    pub(crate) table: String,
    parser: RowParser,
    rows: RowColumns,
    /// What each column is, as `rows` says.
    targets: Vec<Target>,
    binary: bool,
    storage: Storage,
    /// Records before the first row in `rows`.
    batch_start: usize,
    /// The write in flight, with the records before its first row.
    in_flight: Option<(usize, JoinHandle<isobar_storage::Result<WriteReceipt>>)>,
    /// Rows written (durable) so far.
    pub(crate) written: u64,
    /// The first error; later data is dropped until CopyDone.
    pub(crate) error: Option<String>,
}

impl CopyIn {
    fn new(table: String, rows: RowColumns, format: CopyFormat, storage: Storage) -> Self {
        let binary = format.kind == CopyKind::Binary;
        Self {
            table,
            parser: RowParser::new(rows.targets().len(), format),
            targets: rows.targets().to_vec(),
            rows,
            binary,
            storage,
            batch_start: 0,
            in_flight: None,
            written: 0,
            error: None,
        }
    }

    /// Number of columns each row has.
    pub(crate) fn columns(&self) -> usize {
        self.targets.len()
    }

    /// Whether the rows come in binary format.
    pub(crate) fn binary(&self) -> bool {
        self.binary
    }

    /// Takes a CopyData payload, writing each batch of rows it completes.
    pub(crate) async fn feed(&mut self, data: &[u8]) {
        if self.error.is_none() {
            match self.parser.feed(data) {
                Ok(()) => self.take_rows(false).await,
                Err(e) => self.fail(e).await,
            }
        }
    }

    /// Ends the data: writes the rest and waits until every row is durable.
    pub(crate) async fn finish(&mut self) {
        if self.error.is_none() {
            self.parser.finish();
            self.take_rows(true).await;
        }
        self.settle().await;
    }

    /// Parses the rows that have arrived, handing storage each full batch (the rest too when
    /// `all`); a bad row ends the COPY after the rows before it are written.
    async fn take_rows(&mut self, all: bool) {
        // Once a write has refused rows, the rest of the data is dropped.
        while self.error.is_none() {
            match self.parse_batch() {
                Err(e) => return self.fail(e).await,
                Ok(true) => self.submit().await,
                Ok(false) => {
                    if all {
                        self.submit().await;
                    }
                    return;
                }
            }
        }
    }

    /// Parses rows until a batch is full (true) or no whole row is left (false).
    fn parse_batch(&mut self) -> Result<bool, String> {
        while self.rows.len() < rows::COPY_ROWS_PER_WRITE {
            if self.rows.is_empty() {
                self.batch_start = self.parser.records();
            }
            let Some(fields) = self.parser.next_row()? else { return Ok(false) };
            let (targets, binary) = (&self.targets, self.binary);
            let values = (0..fields.len()).map(|i| match fields.get(i) {
                Field::Null => Ok(Value::Null),
                Field::Bytes(bytes) if binary => binary_value(bytes, targets[i]),
                Field::Text(s) => Ok(Value::Text(s)),
                Field::Bytes(_) => Err("not UTF-8".to_owned()),
            });
            self.rows.push_row(values).map_err(|e| format!("{}: {e}", self.parser.position(0)))?;
        }
        Ok(true)
    }

    /// Waits for the write in flight, then hands storage the rows gathered.
    async fn submit(&mut self) {
        self.settle().await;
        if self.error.is_some() || self.rows.is_empty() {
            return;
        }
        let mut batch = WriteBatch::new();
        batch.push_columns(&self.table, self.rows.take());
        let storage = self.storage.clone();
        self.in_flight = Some((self.batch_start, tokio::task::spawn_blocking(move || storage.write(&batch))));
    }

    /// Waits for the write in flight; its rejections end the COPY.
    async fn settle(&mut self) {
        let Some((records_before, write)) = self.in_flight.take() else { return };
        let receipt = match write.await {
            Ok(Ok(receipt)) => receipt,
            Ok(Err(e)) => return self.set_error(format!("{e}")),
            Err(e) => return self.set_error(format!("the write stopped: {e}")),
        };
        self.written += receipt.rows_written;
        if !receipt.rejected.is_empty() {
            let unit = if self.binary { "row" } else { "line" };
            let message =
                isobar_query::rejections(&receipt.rejected, self.written, |index| format!("{unit} {}", records_before + index + 1));
            self.set_error(message);
        }
    }

    /// Ends the COPY at a bad row: the rows before it are written, then the error stays.
    async fn fail(&mut self, reason: String) {
        self.submit().await;
        self.settle().await;
        let written = self.written;
        self.set_error(format!("{reason} ({written} rows before it are written)"));
    }

    fn set_error(&mut self, reason: String) {
        self.error.get_or_insert(reason);
    }
}

/// A binary COPY field in the send format of the column's PostgreSQL type.
fn binary_value(bytes: &[u8], target: Target) -> Result<Value<'_>, String> {
    let int = |bytes: &[u8]| -> Option<i64> {
        Some(match bytes.len() {
            2 => i64::from(i16::from_be_bytes(bytes.try_into().ok()?)),
            4 => i64::from(i32::from_be_bytes(bytes.try_into().ok()?)),
            8 => i64::from_be_bytes(bytes.try_into().ok()?),
            _ => return None,
        })
    };
    let wrong = |what: &str| format!("{} bytes are not a binary {what}", bytes.len());
    match target {
        Target::Time => {
            let micros = <[u8; 8]>::try_from(bytes).map(i64::from_be_bytes).map_err(|_| wrong("timestamp"))?;
            micros
                .checked_add(POSTGRES_EPOCH_US)
                .and_then(|us| us.checked_mul(1000))
                .map(Value::TimestampNs)
                .ok_or_else(|| "a timestamp out of range (nanoseconds from 1677 to 2262)".to_owned())
        }
        Target::Tag(_) | Target::Field(_, FieldType::String) => {
            std::str::from_utf8(bytes).map(Value::Text).map_err(|_| "not UTF-8".to_owned())
        }
        Target::Field(_, FieldType::F64) => {
            <[u8; 8]>::try_from(bytes).map(|b| Value::F64(f64::from_be_bytes(b))).map_err(|_| wrong("double precision"))
        }
        Target::Field(_, FieldType::I64) => int(bytes).map(Value::I64).ok_or_else(|| wrong("integer")),
        Target::Field(_, FieldType::Bool) => match bytes {
            [b] => Ok(Value::Bool(*b != 0)),
            _ => Err(wrong("boolean")),
        },
    }
}

/// Receives the rows of a `COPY ... FROM STDIN` the hook started.
#[derive(Debug)]
pub(crate) struct IsobarCopy;

impl IsobarCopy {
    fn take<C: ClientInfo>(client: &C) -> Option<CopyIn> {
        client.session_extensions().get::<CopySlot>().and_then(|slot| slot.0.lock().ok()?.take())
    }

    fn put_back<C: ClientInfo>(client: &C, copy: CopyIn) {
        if let Some(slot) = client.session_extensions().get::<CopySlot>()
            && let Ok(mut current) = slot.0.lock()
        {
            *current = Some(copy);
        }
    }
}

#[async_trait]
impl CopyHandler for IsobarCopy {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(mut copy) = Self::take(client) else { return Err(user_error("08P01", "CopyData outside a COPY".into())) };
        copy.feed(&copy_data.data).await;
        Self::put_back(client, copy);
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(mut copy) = Self::take(client) else { return Err(user_error("08P01", "CopyDone outside a COPY".into())) };
        copy.finish().await;
        if let Some(reason) = copy.error {
            return Err(user_error("22P04", format!("COPY {}: {reason}", copy.table)));
        }
        let tag = Tag::new("COPY").with_rows(usize::try_from(copy.written).unwrap_or(usize::MAX));
        client.send(PgWireBackendMessage::CommandComplete(tag.into())).await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let written = match Self::take(client) {
            Some(mut copy) => {
                copy.settle().await;
                copy.written
            }
            None => 0,
        };
        user_error("57014", format!("COPY stopped by the client: {} ({written} rows were written)", fail.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> CopyFormat {
        CopyFormat::from_options(&[], &[]).expect("defaults")
    }

    fn csv() -> CopyFormat {
        CopyFormat { kind: CopyKind::Csv, delimiter: b',', null: String::new(), ..text() }
    }

    fn strings(fields: &Fields) -> Vec<Option<String>> {
        (0..fields.len()).map(|i| fields.get(i).bytes().map(|b| String::from_utf8_lossy(b).into_owned())).collect()
    }

    fn split(line: &str, format: &CopyFormat) -> Result<Vec<Option<String>>, String> {
        let mut fields = Fields::default();
        match format.kind {
            CopyKind::Csv => {
                csv_record(line.as_bytes(), format, true, &mut fields)?;
            }
            _ => split_text(line.as_bytes(), format, &mut fields)?,
        }
        Ok(strings(&fields))
    }

    fn all_rows(parser: &mut RowParser) -> Result<Vec<Vec<Option<String>>>, String> {
        let mut rows = Vec::new();
        while let Some(fields) = parser.next_row()? {
            rows.push(strings(fields));
        }
        Ok(rows)
    }

    #[test]
    fn text_rows_unescape_and_know_null() {
        let f = text();
        assert_eq!(
            split("a\\tb\t\\N\tc\\\\d\t\\101\\x42\\q\t", &f).expect("valid"),
            [Some("a\tb".into()), None, Some("c\\d".into()), Some("ABq".into()), Some(String::new())]
        );
        assert!(split("bad\\", &f).is_err());
    }

    #[test]
    fn csv_rows_honour_quotes_and_tell_null_from_empty() {
        let f = csv();
        assert_eq!(
            split("1,\"x, \"\"y\"\"\",,\"\"", &f).expect("valid"),
            [Some("1".into()), Some("x, \"y\"".into()), None, Some(String::new())]
        );
        assert!(split("\"open", &f).is_err());
        let record_end = |bytes: &[u8], format: &CopyFormat| csv_record(bytes, format, false, &mut Fields::default()).expect("valid");
        assert_eq!(record_end(b"\"a\nb\",c\nnext", &f), Some(8), "a quoted newline does not end the record");
        assert_eq!(record_end(b"\"a\nb\",c", &f), None, "the end has not arrived");
        assert_eq!(split("a,\"b\"\r", &f).expect("valid"), [Some("a".into()), Some("b".into())], "a CR before the end is not data");
        let backslash = CopyFormat { escape: b'\\', ..csv() };
        assert_eq!(split("\"a\\\"b\",c", &backslash).expect("escaped quote"), [Some("a\"b".into()), Some("c".into())]);
        assert_eq!(record_end(b"\"a\\\"\n\",c\nnext", &backslash), Some(9), "an escaped quote does not close the quotes");
    }

    #[test]
    fn rows_split_across_messages_join_up_and_the_header_is_skipped() {
        let mut parser = RowParser::new(2, CopyFormat { header: true, ..csv() });
        parser.feed(b"time,v\r\n2024-01-01T00:00:00Z,1").expect("feed");
        let mut rows = all_rows(&mut parser).expect("rows");
        parser.feed(b".5\n2024-01-01T00:00:01Z,2\n2024-01-01T00:00:02Z").expect("feed");
        rows.extend(all_rows(&mut parser).expect("rows"));
        parser.feed(b",3").expect("feed");
        parser.finish();
        rows.extend(all_rows(&mut parser).expect("rows"));
        assert_eq!(rows.iter().map(|r| r[1].clone().unwrap_or_default()).collect::<Vec<_>>(), ["1.5", "2", "3"]);
        assert_eq!(parser.records(), 4, "the header and three rows");
        let mut parser = RowParser::new(2, csv());
        parser.feed(b"a,1\nb\n").expect("feed");
        assert_eq!(parser.next_row().expect("first").map(strings), Some(vec![Some("a".into()), Some("1".into())]));
        assert_eq!(parser.next_row().expect_err("one value short"), "line 2: 1 values for 2 columns");
    }

    #[test]
    fn end_of_data_marker_ends_the_rows() {
        let mut parser = RowParser::new(1, text());
        parser.feed(b"a\n\\.\nb\n").expect("feed");
        parser.finish();
        assert_eq!(all_rows(&mut parser).expect("rows"), [[Some("a".to_owned())]]);
    }

    /// A binary COPY of `rows`, each field `None` for NULL.
    fn binary(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for field in row {
                match field {
                    Some(bytes) => {
                        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        out.extend_from_slice(bytes);
                    }
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    #[test]
    fn binary_tuples_parse_whatever_the_message_boundaries() {
        let rows = vec![vec![Some(b"ab".to_vec()), None], vec![Some(vec![]), Some(7i64.to_be_bytes().to_vec())]];
        let data = binary(&rows);
        for cut in 0..data.len() {
            let mut parser = RowParser::new(2, CopyFormat { kind: CopyKind::Binary, ..text() });
            parser.feed(&data[..cut]).expect("feed");
            let mut got = all_rows(&mut parser).expect("rows");
            parser.feed(&data[cut..]).expect("feed");
            parser.finish();
            got.extend(all_rows(&mut parser).expect("rows"));
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(got[0], [Some("ab".to_owned()), None]);
            assert_eq!(got[1][0], Some(String::new()), "empty is not NULL");
        }
        let mut parser = RowParser::new(3, CopyFormat { kind: CopyKind::Binary, ..text() });
        parser.feed(&data).expect("feed");
        assert_eq!(parser.next_row().expect_err("width"), "row 1: 2 values for 3 columns");
        let mut parser = RowParser::new(2, CopyFormat { kind: CopyKind::Binary, ..text() });
        parser.feed(b"PGCOPY\n\xfe").expect("feed");
        assert!(parser.next_row().expect_err("signature").contains("signature"));
        let mut parser = RowParser::new(2, CopyFormat { kind: CopyKind::Binary, ..text() });
        parser.feed(&data[..data.len() - 5]).expect("feed");
        parser.finish();
        assert_eq!(all_rows(&mut parser).expect_err("cut short"), "row 2: cut short");
    }

    #[test]
    fn binary_values_follow_the_columns_types() {
        let epoch = 0i64.to_be_bytes();
        assert_eq!(binary_value(&epoch, Target::Time), Ok(Value::TimestampNs(946_684_800_000_000_000)), "2000-01-01");
        assert_eq!(binary_value(&1.5f64.to_be_bytes(), Target::Field(0, FieldType::F64)), Ok(Value::F64(1.5)));
        assert_eq!(binary_value(&(-2i32).to_be_bytes(), Target::Field(0, FieldType::I64)), Ok(Value::I64(-2)));
        assert_eq!(binary_value(&[1], Target::Field(0, FieldType::Bool)), Ok(Value::Bool(true)));
        assert_eq!(binary_value(b"st", Target::Tag(0)), Ok(Value::Text("st")));
        assert!(binary_value(&[0, 0, 0, 1], Target::Field(0, FieldType::F64)).is_err(), "a float4 is not taken as a double");
        assert!(binary_value(&i64::MAX.to_be_bytes(), Target::Time).is_err(), "infinity");
        assert!(binary_value(&[0xff], Target::Tag(0)).is_err());
    }

    #[test]
    fn options_in_both_syntaxes_pick_the_format() {
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        use datafusion::sql::sqlparser::parser::Parser;
        let format = |sql: &str| {
            let Some(Statement::Copy { options, legacy_options, .. }) =
                Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses").pop()
            else {
                panic!("not a COPY")
            };
            CopyFormat::from_options(&options, &legacy_options)
        };
        assert_eq!(
            format("COPY t FROM STDIN").expect("text"),
            CopyFormat { kind: CopyKind::Text, delimiter: b'\t', null: "\\N".into(), header: false, quote: b'"', escape: b'"' }
        );
        assert_eq!(format("COPY t FROM STDIN WITH (FORMAT csv, HEADER true)").expect("csv"), CopyFormat { header: true, ..csv() });
        assert_eq!(format("COPY t FROM STDIN csv header").expect("legacy csv"), CopyFormat { header: true, ..csv() });
        assert_eq!(format("COPY t FROM STDIN WITH (DELIMITER ';', FORMAT csv)").expect("csv").delimiter, b';');
        assert_eq!(format("COPY t FROM STDIN WITH (FORMAT binary)").expect("binary").kind, CopyKind::Binary);
        assert_eq!(format("COPY t FROM STDIN BINARY").expect("legacy binary").kind, CopyKind::Binary);
        assert!(format("COPY t FROM STDIN WITH (FORMAT binary, HEADER true)").is_err());
        let not_ascii = CopyFormat::from_options(&[CopyOption::Delimiter('\u{e9}')], &[]);
        assert!(not_ascii.expect_err("not ASCII").contains("ASCII"));
    }
}
