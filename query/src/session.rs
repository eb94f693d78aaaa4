//! One client's session: the settings it may change, and what isobar answers to the statements
//! that are about the session itself (`SET`, `SHOW`, `RESET`, `DISCARD`, transactions).
//!
//! Settings are an allow-list, matched on the normalised name (every part lower case, quotes
//! and case ignored, `SHOW TIME ZONE` as `timezone`), so no spelling reaches a setting that is
//! not on it. The server's statement timeout and query memory limit are maximums: a session
//! may lower them, never raise them. Nothing here touches the engine's shared DataFusion
//! session, so nothing one client sets changes another's.
//!
//! isobar has no multi-statement transactions: every statement is durable when it completes.
//! `BEGIN`, `COMMIT` and `ROLLBACK` are accepted, as drivers send them, and say so: `BEGIN`
//! comes with a notice, and a `ROLLBACK` after writes warns that it undid nothing. A read-only
//! session or transaction is enforced.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectType, Reset, Set, Statement, TransactionAccessMode, TransactionIsolationLevel, TransactionMode,
    UnaryOperator, Value,
};

use crate::engine::QueryConfig;
use crate::error::{Error, Result};

/// The setting a client may lower: the longest a statement may run.
pub const STATEMENT_TIMEOUT: &str = "statement_timeout";
/// The setting a client may lower: the memory one query may hold.
pub const QUERY_MEMORY_LIMIT: &str = "isobar.query_memory_limit";

/// Settings a client may change, with their defaults. Values are checked by [`check_value`].
const SETTABLE: &[(&str, &str)] = &[
    ("application_name", ""),
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("intervalstyle", "postgres"),
    ("search_path", "\"$user\", public"),
    ("standard_conforming_strings", "on"),
    ("timezone", "UTC"),
];

/// Settings a client may read but not change, with the values isobar runs with.
const READ_ONLY: &[(&str, &str)] = &[
    ("integer_datetimes", "on"),
    ("is_superuser", "off"),
    ("lc_collate", "C.UTF-8"),
    ("lc_ctype", "C.UTF-8"),
    ("max_identifier_length", "63"),
    ("server_encoding", "UTF8"),
    ("server_version", "16.6"),
    ("server_version_num", "160006"),
];

/// Longest `application_name` kept, in bytes, as in PostgreSQL.
const APPLICATION_NAME_BYTES_MAX: usize = 63;

/// What a statement about the session answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionReply {
    /// A command's tag; the settings whose value changed (which a Postgres client is told of
    /// with ParameterStatus); and a notice or warning to show the user.
    Command { tag: &'static str, changed: Vec<(String, String)>, notice: Option<Notice> },
    /// Rows of text: `SHOW name` (one column named after the setting) or `SHOW ALL`.
    Show { columns: Vec<String>, rows: Vec<Vec<String>> },
}

/// A message for the user that is not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `NOTICE` or `WARNING`.
    pub severity: &'static str,
    /// SQLSTATE: `00000` for a notice, `25P01` when no transaction is in progress.
    pub code: &'static str,
    pub message: String,
}

/// What a transaction block has seen since `BEGIN`.
#[derive(Debug, Clone, Copy, Default)]
struct Block {
    read_only: bool,
    writes: u64,
}

/// One client's settings and transaction block.
#[derive(Debug, Clone)]
pub struct SessionState {
    statement_timeout_ms_max: u64,
    memory_limit_bytes_max: usize,
    statement_timeout_ms: u64,
    memory_limit_bytes: usize,
    values: BTreeMap<&'static str, String>,
    block: Option<Block>,
}

impl SessionState {
    /// A new session under the server's limits.
    pub fn new(config: &QueryConfig) -> Self {
        Self {
            statement_timeout_ms_max: config.timeout_ms,
            memory_limit_bytes_max: config.memory_limit_bytes,
            statement_timeout_ms: config.timeout_ms,
            memory_limit_bytes: config.memory_limit_bytes,
            values: SETTABLE.iter().map(|(name, value)| (*name, (*value).to_owned())).collect(),
            block: None,
        }
    }

    /// How long this session's statements may run, in milliseconds.
    pub fn statement_timeout_ms(&self) -> u64 {
        self.statement_timeout_ms
    }

    /// How much memory one of this session's queries may hold, in bytes.
    pub fn memory_limit_bytes(&self) -> usize {
        self.memory_limit_bytes
    }

    /// The current value of a setting a client may read, by its normalised name.
    pub fn value(&self, name: &str) -> Option<String> {
        match name {
            STATEMENT_TIMEOUT => Some(format!("{}ms", self.statement_timeout_ms)),
            QUERY_MEMORY_LIMIT => Some(format_bytes(self.memory_limit_bytes)),
            "transaction_isolation" => Some("read committed".to_owned()),
            "transaction_read_only" => Some(on_off(self.read_only())),
            _ => self.values.get(name).cloned().or_else(|| READ_ONLY.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())),
        }
    }

    /// Whether writes are refused: a read-only session, or a read-only transaction block.
    pub fn read_only(&self) -> bool {
        self.block.map_or(self.values.get("default_transaction_read_only").is_some_and(|v| v == "on"), |b| b.read_only)
    }

    /// Whether a transaction block is open.
    pub fn in_block(&self) -> bool {
        self.block.is_some()
    }

    /// Called before a statement runs: refuses a write in a read-only session or transaction
    /// (`25006` in PostgreSQL's words), and counts writes inside a transaction block.
    pub fn before(&mut self, statement: &Statement) -> Result<()> {
        if !is_write(statement) {
            return Ok(());
        }
        if self.read_only() {
            return Err(Error::ReadOnly(format!("cannot execute {} in a read-only transaction", command_name(statement))));
        }
        if let Some(block) = &mut self.block {
            block.writes += 1;
        }
        Ok(())
    }

    /// Answers `statement` if it is about the session (`SET`, `SHOW`, `RESET`, `DISCARD ALL`,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`); `None` otherwise.
    pub fn apply(&mut self, statement: &Statement) -> Option<Result<SessionReply>> {
        let command = |tag| Ok(SessionReply::Command { tag, changed: Vec::new(), notice: None });
        Some(match statement {
            Statement::Set(set) => self.set(set),
            Statement::ShowVariable { variable } => self.show(variable),
            Statement::Reset(reset) => match &reset.reset {
                Reset::ALL => Ok(self.reset_all("RESET")),
                Reset::ConfigurationParameter(name) => self.reset(&normalise(name)),
            },
            Statement::Discard { object_type } if object_type.to_string().eq_ignore_ascii_case("ALL") => Ok(self.reset_all("DISCARD ALL")),
            Statement::StartTransaction { modes, statements, exception, .. } if statements.is_empty() && exception.is_none() => {
                self.begin(modes)
            }
            Statement::Commit { chain: false, .. } => Ok(self.end("COMMIT")),
            Statement::Rollback { chain: false, savepoint: None } => Ok(self.end("ROLLBACK")),
            // Savepoints (which psycopg and SQLAlchemy wrap around work) have nothing to undo.
            Statement::Savepoint { .. } => command("SAVEPOINT"),
            Statement::ReleaseSavepoint { .. } => command("RELEASE"),
            Statement::Rollback { chain: false, savepoint: Some(_) } => command("ROLLBACK"),
            _ => return None,
        })
    }

    fn begin(&mut self, modes: &[TransactionMode]) -> Result<SessionReply> {
        let mut notice = Notice {
            severity: "NOTICE",
            code: "00000",
            message: "isobar runs each statement on its own: every statement is durable when it completes, and ROLLBACK cannot undo it"
                .to_owned(),
        };
        if self.block.is_some() {
            notice = Notice { severity: "WARNING", code: "25001", message: "there is already a transaction in progress".to_owned() };
        }
        let mut read_only = self.read_only();
        for mode in modes {
            read_only = transaction_mode(mode)?.unwrap_or(read_only);
        }
        self.block = Some(Block { read_only, writes: self.block.map_or(0, |b| b.writes) });
        Ok(SessionReply::Command { tag: "BEGIN", changed: Vec::new(), notice: Some(notice) })
    }

    fn end(&mut self, tag: &'static str) -> SessionReply {
        let notice = match self.block.take() {
            None => Some(Notice { severity: "WARNING", code: "25P01", message: "there is no transaction in progress".to_owned() }),
            Some(Block { writes, .. }) if tag == "ROLLBACK" && writes > 0 => Some(Notice {
                severity: "WARNING",
                code: "01000",
                message: format!("ROLLBACK undid nothing: the {writes} writing statement(s) since BEGIN were durable when they completed"),
            }),
            Some(_) => None,
        };
        SessionReply::Command { tag, changed: Vec::new(), notice }
    }

    fn set(&mut self, set: &Set) -> Result<SessionReply> {
        let (name, values) = match set {
            Set::SingleAssignment { scope, variable, values, hivevar: false } => {
                if scope.as_ref().is_some_and(|s| s.to_string().eq_ignore_ascii_case("LOCAL")) {
                    return Err(Error::Unsupported(
                        "SET LOCAL is not supported: isobar has no multi-statement transactions; use SET".into(),
                    ));
                }
                (normalise(variable), values.as_slice())
            }
            Set::SetTimeZone { local: false, value } => ("timezone".to_owned(), std::slice::from_ref(value)),
            Set::SetTransaction { modes, snapshot: None, session } => {
                for mode in modes {
                    if let Some(read_only) = transaction_mode(mode)? {
                        match (session, &mut self.block) {
                            (false, Some(block)) => block.read_only = read_only,
                            // Outside a block, SET TRANSACTION has no transaction to change.
                            (false, None) => {}
                            (true, _) => {
                                self.values.insert("default_transaction_read_only", on_off(read_only));
                            }
                        }
                    }
                }
                return Ok(SessionReply::Command { tag: "SET", changed: Vec::new(), notice: None });
            }
            other => return Err(Error::Refused(format!("{other} is not a setting isobar lets a client change"))),
        };
        let value = setting_value(&name, values)?;
        if value.eq_ignore_ascii_case("default") {
            return self.reset(&name);
        }
        match name.as_str() {
            STATEMENT_TIMEOUT => {
                let ms = duration_ms(&value).ok_or_else(|| invalid(&name, &value, "a duration such as 500, '30s' or '5min'"))?;
                if ms == 0 || ms > self.statement_timeout_ms_max {
                    return Err(Error::Refused(format!(
                        "statement_timeout may be at most {} ms, the server's limit; a session can lower it but not raise or remove it",
                        self.statement_timeout_ms_max
                    )));
                }
                self.statement_timeout_ms = ms;
            }
            QUERY_MEMORY_LIMIT => {
                let bytes = memory_bytes(&value).ok_or_else(|| invalid(&name, &value, "a size such as '64MB' or '1GB'"))?;
                if bytes == 0 || bytes > self.memory_limit_bytes_max {
                    return Err(Error::Refused(format!(
                        "{QUERY_MEMORY_LIMIT} may be at most {}, the server's limit; a session can lower it but not raise it",
                        format_bytes(self.memory_limit_bytes_max)
                    )));
                }
                self.memory_limit_bytes = bytes;
            }
            _ => {
                let Some(stored) = SETTABLE.iter().find(|(n, _)| *n == name).map(|(n, _)| *n) else {
                    return Err(refused_setting(&name));
                };
                let value = check_value(stored, &value)?;
                self.values.insert(stored, value);
            }
        }
        let changed = self.value(&name).map(|v| vec![(reported_name(&name).to_owned(), v)]).unwrap_or_default();
        Ok(SessionReply::Command { tag: "SET", changed, notice: None })
    }

    fn reset(&mut self, name: &str) -> Result<SessionReply> {
        match name {
            "all" => return Ok(self.reset_all("RESET")),
            STATEMENT_TIMEOUT => self.statement_timeout_ms = self.statement_timeout_ms_max,
            QUERY_MEMORY_LIMIT => self.memory_limit_bytes = self.memory_limit_bytes_max,
            _ => match SETTABLE.iter().find(|(n, _)| *n == name) {
                Some((stored, default)) => {
                    self.values.insert(stored, (*default).to_owned());
                }
                None => return Err(refused_setting(name)),
            },
        }
        let changed = self.value(name).map(|v| vec![(reported_name(name).to_owned(), v)]).unwrap_or_default();
        Ok(SessionReply::Command { tag: "RESET", changed, notice: None })
    }

    fn reset_all(&mut self, tag: &'static str) -> SessionReply {
        let before = self.values.clone();
        let block = self.block;
        *self = Self {
            statement_timeout_ms: self.statement_timeout_ms_max,
            memory_limit_bytes: self.memory_limit_bytes_max,
            values: SETTABLE.iter().map(|(name, value)| (*name, (*value).to_owned())).collect(),
            block: if tag == "RESET" { block } else { None },
            ..self.clone()
        };
        let changed = self.values.iter().filter(|(n, v)| before.get(*n) != Some(v)).map(|(n, v)| (reported_name(n).to_owned(), v.clone()));
        SessionReply::Command { tag, changed: changed.collect(), notice: None }
    }

    fn show(&self, variable: &[Ident]) -> Result<SessionReply> {
        let name = normalise_parts(variable);
        if name == "all" {
            let mut names: Vec<&str> = SETTABLE.iter().chain(READ_ONLY).map(|(n, _)| *n).collect();
            names.extend([STATEMENT_TIMEOUT, QUERY_MEMORY_LIMIT, "transaction_isolation", "transaction_read_only"]);
            names.sort_unstable();
            let rows = names.into_iter().filter_map(|n| Some(vec![n.to_owned(), self.value(n)?])).collect();
            return Ok(SessionReply::Show { columns: vec!["name".into(), "setting".into()], rows });
        }
        let value = self.value(&name).ok_or_else(|| refused_setting(&name))?;
        Ok(SessionReply::Show { columns: vec![name], rows: vec![vec![value]] })
    }
}

/// A setting's name as isobar matches it: every part lower case, however it was quoted, and
/// PostgreSQL's spellings with spaces (`TIME ZONE`, `TRANSACTION ISOLATION LEVEL`) folded.
pub(crate) fn normalise(name: &ObjectName) -> String {
    let parts: Vec<String> = name.0.iter().map(|p| p.as_ident().map_or_else(|| p.to_string(), |i| i.value.clone())).collect();
    let name = parts.join(".").to_lowercase();
    fold(name.clone()).unwrap_or(name)
}

/// The name `SHOW` gives as words: PostgreSQL's phrases (`TIME ZONE`), or the parts of a
/// dotted name, whose dots the parser drops.
fn normalise_parts(parts: &[Ident]) -> String {
    let words: Vec<String> = parts.iter().map(|p| p.value.to_lowercase()).collect();
    match fold(words.join(" ")) {
        Some(name) => name,
        None => words.join("."),
    }
}

fn fold(name: String) -> Option<String> {
    Some(
        match name.as_str() {
            "time zone" | "time.zone" => "timezone",
            "transaction isolation level" => "transaction_isolation",
            "session authorization" => "session_authorization",
            _ if !name.contains(' ') => return Some(name),
            _ => return None,
        }
        .to_owned(),
    )
}

/// The name a Postgres client knows a setting by in ParameterStatus.
fn reported_name(name: &str) -> &str {
    match name {
        "timezone" => "TimeZone",
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        other => other,
    }
}

fn refused_setting(name: &str) -> Error {
    if name.starts_with("datafusion.") {
        return Error::Refused(format!("SET {name} is refused: engine settings come from isobar's configuration file"));
    }
    Error::Refused(format!("{name} is not a setting isobar lets a client read or change"))
}

fn invalid(name: &str, value: &str, expected: &str) -> Error {
    Error::InvalidSetting(format!("invalid value for parameter \"{name}\": \"{value}\"; expected {expected}"))
}

/// The value of `SET name = a, b`: literals and bare words, joined by `, ` as PostgreSQL lists
/// them.
fn setting_value(name: &str, values: &[Expr]) -> Result<String> {
    let one = |e: &Expr| -> Option<String> {
        Some(match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n.to_string(),
                Value::Boolean(b) => on_off(*b),
                other => other.clone().into_string()?,
            },
            Expr::Identifier(ident) => ident.value.clone(),
            Expr::UnaryOp { op: UnaryOperator::Minus, expr } => match expr.as_ref() {
                Expr::Value(v) => match &v.value {
                    Value::Number(n, _) => format!("-{n}"),
                    _ => return None,
                },
                _ => return None,
            },
            _ => return None,
        })
    };
    let parts: Option<Vec<String>> = values.iter().map(one).collect();
    match parts {
        Some(parts) if !parts.is_empty() => Ok(parts.join(", ")),
        _ => Err(Error::InvalidSetting(format!("SET {name} takes a literal value"))),
    }
}

/// Checks a value for one of the [`SETTABLE`] settings and returns it as `SHOW` gives it.
fn check_value(name: &str, value: &str) -> Result<String> {
    let lower = value.to_lowercase();
    let one_of = |allowed: &[&str], expected: &str| match allowed.contains(&lower.as_str()) {
        true => Ok(lower.clone()),
        false => Err(invalid(name, value, expected)),
    };
    match name {
        "application_name" => {
            let mut end = value.len().min(APPLICATION_NAME_BYTES_MAX);
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            Ok(value[..end].to_owned())
        }
        "bytea_output" => one_of(&["hex", "escape"], "hex or escape"),
        "client_encoding" => match lower.replace(['-', '_'], "").as_str() {
            "utf8" | "unicode" => Ok("UTF8".to_owned()),
            _ => Err(Error::Unsupported(format!("client_encoding {value} is not supported: isobar speaks UTF8"))),
        },
        "client_min_messages" => one_of(
            &["debug5", "debug4", "debug3", "debug2", "debug1", "debug", "log", "notice", "warning", "error"],
            "a message level such as notice or warning",
        ),
        "datestyle" => match lower.starts_with("iso") {
            true => Ok(value.to_uppercase()),
            false => Err(Error::Unsupported(format!("DateStyle {value} is not supported: isobar writes dates in ISO"))),
        },
        "default_transaction_isolation" => match lower.as_str() {
            "read committed" | "read uncommitted" => Ok("read committed".to_owned()),
            _ => Err(isolation_unsupported()),
        },
        "default_transaction_read_only" => match parse_bool(&lower) {
            Some(b) => Ok(on_off(b)),
            None => Err(invalid(name, value, "on or off")),
        },
        "extra_float_digits" => match lower.parse::<i8>() {
            Ok(n) if (-15..=3).contains(&n) => Ok(n.to_string()),
            _ => Err(invalid(name, value, "an integer from -15 to 3")),
        },
        "intervalstyle" => {
            one_of(&["postgres", "postgres_verbose", "sql_standard", "iso_8601"], "postgres, postgres_verbose, sql_standard or iso_8601")
        }
        "search_path" => {
            let schemas: Vec<String> = lower.split(',').map(|s| s.trim().trim_matches('"').to_owned()).collect();
            match schemas.iter().all(|s| matches!(s.as_str(), "public" | "$user" | "pg_catalog")) && schemas.iter().any(|s| s == "public") {
                true => Ok(value.to_owned()),
                false => Err(Error::Unsupported(format!(
                    "search_path {value} is not supported: isobar resolves unqualified names in public; qualify others (system.ingest_errors)"
                ))),
            }
        }
        "standard_conforming_strings" => match parse_bool(&lower) {
            Some(true) => Ok("on".to_owned()),
            _ => Err(Error::Unsupported("standard_conforming_strings is always on in isobar".into())),
        },
        "timezone" => match lower.trim_matches('\'') {
            "utc" | "etc/utc" | "gmt" | "etc/gmt" | "z" | "zulu" | "+00:00" | "+00" | "0" | "utc0" | "local" => Ok("UTC".to_owned()),
            _ => Err(Error::Unsupported(format!("time zone {value} is not supported yet: isobar sessions run in UTC"))),
        },
        _ => Err(refused_setting(name)),
    }
}

/// A transaction mode's effect: `Some(read_only)` for an access mode; isolation levels are
/// checked (isobar gives each statement its own snapshot, as READ COMMITTED does).
fn transaction_mode(mode: &TransactionMode) -> Result<Option<bool>> {
    match mode {
        TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => Ok(Some(true)),
        TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => Ok(Some(false)),
        TransactionMode::IsolationLevel(TransactionIsolationLevel::ReadCommitted | TransactionIsolationLevel::ReadUncommitted) => Ok(None),
        TransactionMode::IsolationLevel(_) => Err(isolation_unsupported()),
    }
}

fn isolation_unsupported() -> Error {
    Error::Unsupported(
        "isobar gives each statement its own snapshot (READ COMMITTED); REPEATABLE READ and SERIALIZABLE transactions are not supported"
            .into(),
    )
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

fn on_off(b: bool) -> String {
    if b { "on" } else { "off" }.to_owned()
}

/// Statements that write: refused in a read-only session.
fn is_write(statement: &Statement) -> bool {
    match statement {
        Statement::Insert(_) | Statement::CreateTable(_) | Statement::Copy { to: false, .. } | Statement::Truncate(_) => true,
        Statement::AlterTable(_) | Statement::Delete(_) => true,
        Statement::Drop { object_type: ObjectType::Table, .. } => true,
        Statement::Explain { statement, analyze: true, .. } => is_write(statement),
        _ => false,
    }
}

fn command_name(statement: &Statement) -> &'static str {
    match statement {
        Statement::Insert(_) => "INSERT",
        Statement::CreateTable(_) => "CREATE TABLE",
        Statement::Drop { .. } => "DROP TABLE",
        Statement::Truncate(_) => "TRUNCATE TABLE",
        Statement::AlterTable(_) => "ALTER TABLE",
        Statement::Delete(_) => "DELETE",
        Statement::Copy { .. } => "COPY FROM",
        Statement::Explain { statement, .. } => command_name(statement),
        _ => "this statement",
    }
}

/// PostgreSQL's duration syntax: a number of milliseconds, or a number with a unit.
fn duration_ms(value: &str) -> Option<u64> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// A size in bytes: a number of bytes, or a number with a unit (`kB`, `MB`, `GB`, `TB`).
fn memory_bytes(value: &str) -> Option<usize> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: usize = number.parse().ok()?;
    let factor: usize = match unit.trim().to_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// A size in the largest unit that states it exactly, as PostgreSQL shows memory settings.
fn format_bytes(bytes: usize) -> String {
    for (unit, shift) in [("TB", 40), ("GB", 30), ("MB", 20), ("kB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn session() -> SessionState {
        SessionState::new(&QueryConfig {
            memory_limit_bytes: 512 << 20,
            memory_pool_bytes: 1 << 30,
            timeout_ms: 300_000,
            fast_paths: true,
            threads: 0,
        })
    }

    fn run(session: &mut SessionState, sql: &str) -> Result<SessionReply> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql);
        let [statement] = statements.as_slice() else { panic!("one statement: {sql}") };
        session.apply(statement).unwrap_or_else(|| panic!("not a session statement: {sql}"))
    }

    fn show(session: &mut SessionState, sql: &str) -> String {
        match run(session, sql).expect(sql) {
            SessionReply::Show { rows, .. } => rows[0][0].clone(),
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn the_server_limits_are_maximums_a_session_can_lower_but_not_raise() {
        let mut s = session();
        run(&mut s, "SET statement_timeout = '2s'").expect("lower");
        assert_eq!(s.statement_timeout_ms(), 2_000);
        assert_eq!(show(&mut s, "SHOW statement_timeout"), "2000ms");
        for raise in ["SET statement_timeout = 0", "SET statement_timeout = '301s'", "SET statement_timeout TO '1h'"] {
            let e = run(&mut s, raise).expect_err(raise);
            assert!(e.to_string().contains("at most 300000 ms"), "{raise}: {e}");
        }
        assert_eq!(s.statement_timeout_ms(), 2_000, "a refused SET changes nothing");
        run(&mut s, "SET isobar.query_memory_limit = '64MB'").expect("lower");
        assert_eq!(s.memory_limit_bytes(), 64 << 20);
        assert!(run(&mut s, "SET \"ISOBAR\".\"QUERY_MEMORY_LIMIT\" = '1GB'").is_err());
        assert_eq!(s.memory_limit_bytes(), 64 << 20);
        run(&mut s, "RESET ALL").expect("reset");
        assert_eq!((s.statement_timeout_ms(), s.memory_limit_bytes()), (300_000, 512 << 20));
    }

    #[test]
    fn only_allow_listed_settings_are_changed_however_they_are_spelled() {
        let mut s = session();
        for sql in [
            "SET datafusion.execution.target_partitions = 1000",
            "SET \"datafusion.execution.target_partitions\" = 1000",
            "SET \"DataFusion\".\"Execution\".\"Target_Partitions\" = 1000",
            "SET DATAFUSION.EXECUTION.BATCH_SIZE TO 1",
            "SET datafusion.execution.time_zone = '+01:00'",
            "SET datafusion.runtime.memory_limit = '100G'",
            "RESET datafusion.execution.batch_size",
            "SET server_version = '1'",
            "SHOW datafusion.execution.batch_size",
        ] {
            let e = run(&mut s, sql).expect_err(sql);
            assert!(matches!(e, Error::Refused(_)), "{sql}: {e}");
        }
        run(&mut s, "SET \"Application_Name\" = 'grafana'").expect("quoted and cased");
        assert_eq!(show(&mut s, "SHOW APPLICATION_NAME"), "grafana");
        run(&mut s, "SET extra_float_digits = -2").expect("negative");
        assert_eq!(show(&mut s, "SHOW extra_float_digits"), "-2");
        run(&mut s, "SET TIME ZONE 'UTC'").expect("utc");
        assert!(run(&mut s, "SET TIME ZONE 'Europe/Berlin'").is_err(), "sessions run in UTC");
        assert_eq!(show(&mut s, "SHOW TIME ZONE"), "UTC");
        assert_eq!(show(&mut s, "SHOW transaction isolation level"), "read committed");
        run(&mut s, "SET search_path = \"public\"").expect("public");
        assert!(run(&mut s, "SET search_path = system").is_err());
        run(&mut s, "SET isobar.query_memory_limit = '1GB'").expect_err("above the limit");
        assert_eq!(show(&mut s, "SHOW isobar.query_memory_limit"), "512MB");
        assert_eq!(show(&mut s, "SHOW \"ISOBAR\".\"QUERY_MEMORY_LIMIT\""), "512MB");
    }

    #[test]
    fn a_read_only_session_or_transaction_refuses_writes() {
        let parse = |sql: &str| Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql).remove(0);
        let insert = parse("INSERT INTO t VALUES (1)");
        let mut s = session();
        run(&mut s, "BEGIN READ ONLY").expect("begin");
        assert!(matches!(s.before(&insert), Err(Error::ReadOnly(_))));
        assert!(s.before(&parse("SELECT 1")).is_ok());
        run(&mut s, "COMMIT").expect("commit");
        s.before(&insert).expect("writes again after the block");
        run(&mut s, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY").expect("session");
        assert!(s.before(&parse("CREATE TABLE t (time TIMESTAMPTZ)")).is_err());
        assert!(run(&mut s, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE").is_err());
        run(&mut s, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED").expect("metabase");
    }

    #[test]
    fn transaction_statements_say_what_they_do() {
        let parse = |sql: &str| Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql).remove(0);
        let mut s = session();
        let Ok(SessionReply::Command { tag: "BEGIN", notice: Some(n), .. }) = run(&mut s, "BEGIN") else { panic!("begin") };
        assert!(n.message.contains("durable when it completes"), "{n:?}");
        s.before(&parse("INSERT INTO t VALUES (1)")).expect("write");
        let Ok(SessionReply::Command { tag: "ROLLBACK", notice: Some(n), .. }) = run(&mut s, "ROLLBACK") else { panic!("rollback") };
        assert!(n.message.contains("undid nothing") && n.message.contains('1'), "{n:?}");
        run(&mut s, "BEGIN").expect("begin");
        let Ok(SessionReply::Command { notice: None, .. }) = run(&mut s, "ROLLBACK") else { panic!("nothing written, nothing to say") };
        let Ok(SessionReply::Command { notice: Some(n), .. }) = run(&mut s, "COMMIT") else { panic!("commit outside") };
        assert_eq!(n.code, "25P01");
        assert!(run(&mut s, "BEGIN ISOLATION LEVEL SERIALIZABLE").is_err());
    }

    #[test]
    fn units_parse_as_postgresql_reads_them() {
        assert_eq!(duration_ms("250"), Some(250));
        assert_eq!(duration_ms("30s"), Some(30_000));
        assert_eq!(duration_ms("5min"), Some(300_000));
        assert_eq!(duration_ms("5 weeks"), None);
        assert_eq!(memory_bytes("64MB"), Some(64 << 20));
        assert_eq!(memory_bytes("1gb"), Some(1 << 30));
        assert_eq!(format_bytes(512 << 20), "512MB");
        assert_eq!(format_bytes(1000), "1000B");
    }
}
