//! `COPY table [(columns)] FROM STDIN`, in text and CSV format: how psql's `\copy` and
//! psycopg's `cursor.copy()` bulk-load.
//!
//! The hook answers the statement with CopyInResponse and leaves a [`CopyIn`] in the
//! session; CopyData messages are parsed into rows as they arrive (`copy/rows.rs`) and written every
//! `rows::COPY_ROWS_PER_WRITE` rows, so memory stays bounded however large the load. A bad value
//! fails the COPY with the line it is on; rows of earlier writes stay written, as for every
//! isobar source. CopyDone writes the rest and answers `COPY n`.

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
use isobar_query::QueryEngine;

use crate::pg::user_error;

mod rows;

pub(crate) use rows::{CopyFormat, CopyIn};
#[cfg(test)]
use rows::{record_end, split_csv, split_text};

/// Options a COPY statement sets; the rest come from its format's defaults.
#[derive(Debug, Default)]
struct CopyOptions {
    csv: bool,
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
                    "csv" => o.csv = true,
                    "text" => o.csv = false,
                    other => return Err(format!("COPY format {other} is not supported (text and csv are)")),
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
                CopyLegacyOption::Csv(csv_options) => {
                    o.csv = true;
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
        // PostgreSQL's defaults: tab and `\N` for text, comma and the empty string for CSV.
        let (delimiter, null) = if o.csv { (',', String::new()) } else { ('\t', "\\N".to_owned()) };
        let quote = o.quote.unwrap_or('"');
        Ok(Self {
            csv: o.csv,
            delimiter: o.delimiter.unwrap_or(delimiter),
            null: o.null.unwrap_or(null),
            header: o.header,
            quote,
            escape: o.escape.unwrap_or(quote),
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
            columns.iter().map(|c| if c.quote_style.is_some() { c.value.clone() } else { c.value.to_lowercase() }).collect()
        };
        let format = CopyFormat::from_options(options, legacy_options)?;
        Ok(CopyIn::new(table, columns, format))
    })())
}

/// Receives the rows of a `COPY ... FROM STDIN` the hook started.
#[derive(Debug)]
pub(crate) struct IsobarCopy {
    engine: QueryEngine,
}

impl IsobarCopy {
    pub(crate) fn new(engine: QueryEngine) -> Self {
        Self { engine }
    }

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

    /// Writes the parsed rows if there are enough (or all of them); remembers the first error.
    async fn write(&self, copy: &mut CopyIn, all: bool) {
        if copy.error.is_some() {
            return;
        }
        if let Some((rows, lines_before)) = copy.ready_rows(all) {
            match self.engine.insert_text_rows(&copy.table, &copy.columns, &rows, lines_before).await {
                Ok(n) => copy.written += n,
                Err(e) => copy.error = Some(format!("{e} (rows before line {} are written)", lines_before + 1)),
            }
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
        if copy.error.is_none()
            && let Err(e) = copy.feed(&copy_data.data)
        {
            copy.error = Some(e);
        }
        self.write(&mut copy, false).await;
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
        if copy.error.is_none()
            && let Err(e) = copy.finish()
        {
            copy.error = Some(e);
        }
        self.write(&mut copy, true).await;
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
        let written = Self::take(client).map_or(0, |c| c.written);
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
        CopyFormat { csv: true, delimiter: ',', null: String::new(), ..text() }
    }

    #[test]
    fn text_rows_unescape_and_know_null() {
        let f = text();
        assert_eq!(
            split_text("a\\tb\t\\N\tc\\\\d\t", &f).expect("valid"),
            [Some("a\tb".into()), None, Some("c\\d".into()), Some(String::new())]
        );
        assert!(split_text("bad\\", &f).is_err());
    }

    #[test]
    fn csv_rows_honour_quotes_and_tell_null_from_empty() {
        let f = csv();
        assert_eq!(
            split_csv("1,\"x, \"\"y\"\"\",,\"\"", &f).expect("valid"),
            [Some("1".into()), Some("x, \"y\"".into()), None, Some(String::new())]
        );
        assert!(split_csv("\"open", &f).is_err());
        assert_eq!(record_end(b"\"a\nb\",c\nnext", &f), Some(7), "a quoted newline does not end the record");
    }

    #[test]
    fn rows_split_across_messages_join_up_and_the_header_is_skipped() {
        let mut copy = CopyIn::new("t".into(), vec!["time".into(), "v".into()], CopyFormat { header: true, ..csv() });
        copy.feed(b"time,v\r\n2024-01-01T00:00:00Z,1").expect("feed");
        copy.feed(b".5\n2024-01-01T00:00:01Z,2\n2024-01-01T00:00:02Z").expect("feed");
        copy.feed(b",3").expect("feed");
        copy.finish().expect("finish");
        let (rows, lines_before) = copy.ready_rows(true).expect("rows");
        assert_eq!(lines_before, 1, "the header");
        assert_eq!(rows.iter().map(|r| r[1].clone().unwrap_or_default()).collect::<Vec<_>>(), ["1.5", "2", "3"]);
        let err = copy.feed(b"2024-01-01T00:00:03Z\n").expect_err("one value short");
        assert_eq!(err, "line 5: 1 values for 2 columns");
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
            CopyFormat { csv: false, delimiter: '\t', null: "\\N".into(), header: false, quote: '"', escape: '"' }
        );
        assert_eq!(format("COPY t FROM STDIN WITH (FORMAT csv, HEADER true)").expect("csv"), CopyFormat { header: true, ..csv() });
        assert_eq!(format("COPY t FROM STDIN csv header").expect("legacy csv"), CopyFormat { header: true, ..csv() });
        assert_eq!(format("COPY t FROM STDIN WITH (DELIMITER ';', FORMAT csv)").expect("csv").delimiter, ';');
        assert!(format("COPY t FROM STDIN WITH (FORMAT binary)").expect_err("binary").contains("binary"));
    }
}
