//! InfluxDB 1's `/query` endpoint, as far as writers use it: Telegraf's `outputs.influxdb` and
//! the `influxdb` Python client send `CREATE DATABASE "name"` before writing. isobar keeps
//! every table in its one database, so creating one succeeds and changes nothing. Any other
//! InfluxQL is refused with InfluxDB's error shape and a pointer to SQL over the Postgres wire
//! protocol, which is how isobar is queried.
//!
//! The statements come in the `q` parameter, in the query string or in a form-encoded body
//! (Telegraf posts a form), several separated by `;`.

use std::collections::HashMap;

use axum::Form;
use axum::extract::Query;
use axum::extract::rejection::FormRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Statements one request may carry.
const STATEMENTS_MAX: usize = 100;

/// `GET /query` and `POST /query`.
pub(super) async fn query(
    Query(params): Query<HashMap<String, String>>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let from_form = form.ok().and_then(|Form(mut form)| form.remove("q"));
    let Some(text) = params.get("q").cloned().or(from_form) else {
        return error(StatusCode::BAD_REQUEST, "missing required parameter \"q\"");
    };
    let statements: Vec<&str> = text.split(';').map(str::trim).filter(|s| !s.is_empty()).collect();
    if statements.is_empty() {
        return error(StatusCode::BAD_REQUEST, "error parsing query: found EOF, expected statement");
    }
    if statements.len() > STATEMENTS_MAX {
        return error(StatusCode::BAD_REQUEST, &format!("more than {STATEMENTS_MAX} statements in one request"));
    }
    let mut results = Vec::with_capacity(statements.len());
    for (statement_id, statement) in statements.iter().enumerate() {
        match database_created(statement) {
            Some(Ok(_name)) => results.push(json!({ "statement_id": statement_id })),
            Some(Err(message)) => return error(StatusCode::BAD_REQUEST, &format!("error parsing query: {message}")),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "isobar does not answer InfluxQL ({statement:?}); /query takes CREATE DATABASE only. \
                         Query isobar with SQL over the Postgres wire protocol"
                    ),
                );
            }
        }
    }
    let body = json!({ "results": results }).to_string();
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], json!({ "error": message }).to_string()).into_response()
}

/// For `CREATE DATABASE <name> [WITH ...]`, the name (an identifier, or double-quoted with
/// `\"` and `\\` escapes), or why it is not one; `None` for any other statement.
fn database_created(statement: &str) -> Option<Result<String, String>> {
    let rest = keyword(statement.trim_start(), "create").and_then(|rest| keyword(rest, "database"))?;
    Some(identifier(rest))
}

/// What follows keyword `word` (any case) at the start of `text`, blanks skipped.
fn keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let rest = text.get(word.len()..).filter(|_| text[..word.len()].eq_ignore_ascii_case(word))?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim_start())
}

/// The identifier `text` starts with.
fn identifier(text: &str) -> Result<String, String> {
    let Some(quoted) = text.strip_prefix('"') else {
        let name: String = text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        return match name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            true => Err(format!("expected database name at {text:?}")),
            false => Ok(name),
        };
    };
    let mut name = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' if name.is_empty() => return Err("database name required".to_owned()),
            '"' => return Ok(name),
            '\\' => name.push(chars.next().ok_or("unterminated escape in database name")?),
            c => name.push(c),
        }
    }
    Err("unterminated quoted database name".to_owned())
}

#[cfg(test)]
mod tests {
    use super::database_created;

    #[test]
    fn create_database_names_are_read_as_influxql_writes_them() {
        let name = |s: &str| database_created(s).map(|r| r.map_err(|_| ()));
        assert_eq!(name("CREATE DATABASE \"telegraf\""), Some(Ok("telegraf".to_owned())));
        assert_eq!(name("create database fleet_1 WITH DURATION 1d"), Some(Ok("fleet_1".to_owned())));
        assert_eq!(name("CREATE  DATABASE \"a \\\"b\\\\c\""), Some(Ok("a \"b\\c".to_owned())));
        assert_eq!(name("CREATE DATABASE \"\""), Some(Err(())));
        assert_eq!(name("CREATE DATABASE \"open"), Some(Err(())));
        assert_eq!(name("CREATE DATABASE 1x"), Some(Err(())));
        assert_eq!(name("CREATE DATABASE"), Some(Err(())));
        assert_eq!(name("SHOW DATABASES"), None);
        assert_eq!(name("DROP DATABASE x"), None);
        assert_eq!(name("CREATE DATABASES"), None);
        assert_eq!(name("SELECT * FROM weather"), None);
    }
}
