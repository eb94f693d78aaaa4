//! The rows of a multi-row `INSERT INTO t (columns) VALUES (...), (...)` read straight from
//! its text, for the simple query protocol: a bulk loader's 5,000-row statement costs more to
//! parse into a syntax tree (and for the Postgres-compatibility rewrites to walk) than to
//! write. Only the head, up to `VALUES`, goes through the SQL parser (for the table, the
//! columns and the session's checks); the rows are read by the small lexer here, which knows
//! literals (numbers, `'strings'` with doubled quotes, `NULL`, `TRUE`, `FALSE`), a minus
//! sign, and casts to a column's own type. Anything else (an expression, a comment, a second
//! statement, an `E'...'` string) makes it give up, and the statement takes the general path.

use std::borrow::Cow;

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use isobar_storage::FieldType;

use crate::row_columns::{RowColumns, Target, Value};

/// Bytes of a statement's head (up to `VALUES`) the lexer looks through, at most.
const HEAD_BYTES_MAX: usize = 4096;

/// A statement split at its `VALUES` keyword, if it is `INSERT ... VALUES` with a head of
/// plain words, identifiers and parentheses.
pub(crate) fn split(sql: &str) -> Option<(&str, &str)> {
    let sql = sql.trim_start();
    if !sql.get(..6)?.eq_ignore_ascii_case("insert") {
        return None;
    }
    let bytes = sql.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len().min(HEAD_BYTES_MAX) {
        let b = bytes[i];
        match b {
            b'"' => quoted = !quoted,
            b'\'' | b'-' | b'/' | b';' | b'$' if !quoted => return None,
            _ if !quoted && word_at(bytes, i, b"values") => return Some((&sql[..i + 6], &sql[i + 6..])),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether the word `word` (lower case) starts at `at`, on word boundaries.
fn word_at(bytes: &[u8], at: usize, word: &[u8]) -> bool {
    let boundary = |b: Option<&u8>| b.is_none_or(|b| !(b.is_ascii_alphanumeric() || *b == b'_'));
    bytes.get(at..at + word.len()).is_some_and(|w| w.eq_ignore_ascii_case(word))
        && (at == 0 || boundary(bytes.get(at - 1)))
        && boundary(bytes.get(at + word.len()))
}

/// The head parsed as a one-row `INSERT` (its row a `NULL` per column, never written): what
/// the session's checks and the table lookup read.
pub(crate) fn head_statement(head: &str) -> Option<Statement> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &format!("{head} (NULL)")).ok()?;
    (statements.len() == 1).then(|| statements.pop())?
}

/// One value as written in the text.
#[derive(Debug, Clone)]
enum Literal<'a> {
    Null,
    Bool(bool),
    /// A number's text, with its sign.
    Number(Cow<'a, str>),
    Text(Cow<'a, str>),
}

/// Reads `rows` (the text after `VALUES`) into `builder`; `None` if it is not literals only,
/// or a value does not convert (the general path then says why).
pub(crate) fn read_rows(rows: &str, builder: &mut RowColumns) -> Option<()> {
    let targets = builder.targets().to_vec();
    let mut lexer = Lexer { s: rows.as_bytes(), text: rows, i: 0 };
    let mut row: Vec<Literal<'_>> = Vec::with_capacity(targets.len());
    loop {
        lexer.expect(b'(')?;
        row.clear();
        for (n, target) in targets.iter().enumerate() {
            if n > 0 {
                lexer.expect(b',')?;
            }
            let literal = lexer.literal()?;
            if lexer.peek() == Some(b':') {
                let ty = lexer.cast()?;
                if !same_kind(&ty, *target) {
                    return None;
                }
            }
            row.push(literal);
        }
        lexer.expect(b')')?;
        let values = row.iter().map(|l| value(l).ok_or_else(|| "not a number".to_owned()));
        builder.push_row(values).ok()?;
        match lexer.peek() {
            Some(b',') => lexer.i += 1,
            Some(b';') => {
                lexer.i += 1;
                return lexer.peek().is_none().then_some(());
            }
            None => return Some(()),
            Some(_) => return None,
        }
    }
}

fn value<'a>(literal: &'a Literal<'_>) -> Option<Value<'a>> {
    Some(match literal {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Text(s) => Value::Text(s),
        Literal::Number(n) => match n.parse::<i64>() {
            Ok(i) => Value::I64(i),
            Err(_) => Value::F64(n.parse::<f64>().ok()?),
        },
    })
}

/// Whether a cast to the type named `ty` (lower case, single spaces) leaves a value for
/// `target` as the column's own conversion would.
fn same_kind(ty: &str, target: Target) -> bool {
    match target {
        Target::Time => matches!(ty, "timestamptz" | "timestamp" | "timestamp with time zone" | "timestamp without time zone"),
        Target::Tag(_) | Target::Field(_, FieldType::String) => matches!(ty, "text" | "varchar"),
        Target::Field(_, FieldType::F64) => matches!(ty, "double precision" | "float8" | "float"),
        Target::Field(_, FieldType::I64) => matches!(ty, "bigint" | "int8"),
        Target::Field(_, FieldType::Bool) => matches!(ty, "boolean" | "bool"),
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl<'a> Lexer<'a> {
    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    fn literal(&mut self) -> Option<Literal<'a>> {
        match self.peek()? {
            b'\'' => self.string().map(Literal::Text),
            b'-' | b'+' | b'.' | b'0'..=b'9' => self.number(),
            b if b.is_ascii_alphabetic() => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(u8::is_ascii_alphabetic) {
                    self.i += 1;
                }
                let word = &self.text[start..self.i];
                if word.eq_ignore_ascii_case("null") {
                    Some(Literal::Null)
                } else if word.eq_ignore_ascii_case("true") {
                    Some(Literal::Bool(true))
                } else if word.eq_ignore_ascii_case("false") {
                    Some(Literal::Bool(false))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// A `'...'` string; a doubled quote inside is one quote.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.i + 1;
        let mut i = start;
        let mut doubled = false;
        loop {
            match self.s.get(i)? {
                b'\'' if self.s.get(i + 1) == Some(&b'\'') => {
                    doubled = true;
                    i += 2;
                }
                b'\'' => break,
                _ => i += 1,
            }
        }
        self.i = i + 1;
        let raw = &self.text[start..i];
        Some(if doubled { Cow::Owned(raw.replace("''", "'")) } else { Cow::Borrowed(raw) })
    }

    /// A number with an optional sign: digits, a point, an exponent.
    fn number(&mut self) -> Option<Literal<'a>> {
        let mut sign = None;
        if let Some(&s @ (b'-' | b'+')) = self.s.get(self.i) {
            sign = Some(s);
            self.i += 1;
            // `- 5` is an expression to the general path.
        }
        let start = self.i;
        while let Some(&b) = self.s.get(self.i) {
            let exponent_sign = (b == b'-' || b == b'+') && matches!(self.s.get(self.i.wrapping_sub(1)), Some(b'e' | b'E'));
            if !(b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || exponent_sign) {
                break;
            }
            self.i += 1;
        }
        let digits = &self.text[start..self.i];
        if !digits.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.') {
            return None;
        }
        Some(Literal::Number(match sign {
            Some(b'-') => Cow::Owned(format!("-{digits}")),
            _ => Cow::Borrowed(digits),
        }))
    }

    /// `::type name`, lower case with single spaces.
    fn cast(&mut self) -> Option<String> {
        if self.s.get(self.i..self.i + 2)? != b"::" {
            return None;
        }
        self.i += 2;
        let start = self.i;
        while self.s.get(self.i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b' ') {
            self.i += 1;
        }
        let name = self.text[start..self.i].split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
        (!name.is_empty()).then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_values_outside_quotes() {
        assert_eq!(split("  insert into t (a, b) VALUES (1, 2)"), Some(("insert into t (a, b) VALUES", " (1, 2)")));
        assert_eq!(split("INSERT INTO \"values\" (a) values(1)"), Some(("INSERT INTO \"values\" (a) values", "(1)")));
        assert_eq!(split("INSERT INTO t (my_values) VALUES (1)").map(|s| s.0), Some("INSERT INTO t (my_values) VALUES"));
        assert_eq!(split("INSERT INTO t -- c\n VALUES (1)"), None, "comments go to the parser");
        assert_eq!(split("SELECT 'values'"), None);
        assert_eq!(split("INSERT INTO t SELECT 1"), None);
    }

    #[test]
    fn literals_read_as_sql_spells_them() {
        let read = |text: &str| {
            let mut lexer = Lexer { s: text.as_bytes(), text, i: 0 };
            let literal = lexer.literal();
            (literal.map(|l| format!("{l:?}")), lexer.i)
        };
        assert_eq!(read(" 'it''s'"), (Some("Text(\"it's\")".into()), 8));
        assert_eq!(read("-1.5e-3,"), (Some("Number(\"-1.5e-3\")".into()), 7));
        assert_eq!(read("+7)"), (Some("Number(\"7\")".into()), 2));
        assert_eq!(read("NULL"), (Some("Null".into()), 4));
        assert_eq!(read("tRuE"), (Some("Bool(true)".into()), 4));
        assert_eq!(read("now()").0, None);
        assert_eq!(read("- 5").0, None);
        assert_eq!(read("'open").0, None);
    }
}
