//! Rule expressions: compiled from SQL once, evaluated per message over its JSON payload.
//!
//! Values follow AWS IoT SQL: a missing key, an out-of-range `topic(n)` or a failed cast is
//! Undefined (`None`), which drops the output key and makes a `WHERE` false. JSON numbers are
//! doubles; only `cast(x AS int)` and integer literals make integers, so a column's type never
//! depends on whether one reading happened to be whole (`10.0` arrives as `10`).

use serde_json::Value as Json;
use sqlparser::ast::{self, BinaryOperator, DataType, UnaryOperator};

use crate::error::{Error, Result};
use crate::rule::StreamRecord;

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A number from the payload, kept as written so a nanosecond time keeps its digits; it is
    /// a double everywhere else.
    Num(serde_json::Number),
    Str(String),
    /// A JSON object or array, kept whole.
    Json(Json),
}

impl std::fmt::Display for Val {
    /// As JSON would write it, for messages about a value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Num(n) => write!(f, "{n}"),
            Self::Str(s) => write!(f, "{}", Json::String(s.clone())),
            Self::Json(j) => write!(f, "{j}"),
        }
    }
}

impl Val {
    pub(crate) fn from_json(json: &Json) -> Self {
        match json {
            Json::Null => Self::Null,
            Json::Bool(b) => Self::Bool(*b),
            Json::Number(n) => Self::Num(n.clone()),
            Json::String(s) => Self::Str(s.clone()),
            other => Self::Json(other.clone()),
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            Self::Num(n) => n.as_f64(),
            _ => None,
        }
    }
}

/// What an expression may read besides the payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// None for a stream record: it has no topic.
    pub(crate) topic: Option<&'a str>,
    pub(crate) stream: Option<StreamRecord<'a>>,
    pub(crate) client_id: &'a str,
    pub(crate) arrival_ms: i64,
    pub(crate) payload: &'a Json,
}

/// Types `cast` converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CastType {
    Int,
    Double,
    String,
    Bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

/// A compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Literal(Val),
    /// A key path into the payload: `a.b.c`.
    Path(Vec<String>),
    /// `topic()` (None) or `topic(n)`, 1-based.
    Topic(Option<usize>),
    Timestamp,
    ClientId,
    /// A stream record's `partition_key()`, `sequence_number()`, `shard_id()` and
    /// `approximate_arrival_timestamp()`; Undefined for an MQTT message.
    PartitionKey,
    SequenceNumber,
    ShardId,
    ApproximateArrival,
    Cast(Box<Expr>, CastType),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(Box<Expr>, Op, Box<Expr>),
}

fn unsupported(what: impl std::fmt::Display) -> Error {
    Error::Rule(format!("unsupported in rules: {what}"))
}

impl Expr {
    /// Compiles a parsed SQL expression.
    pub(crate) fn compile(expr: &ast::Expr) -> Result<Self> {
        Ok(match expr {
            ast::Expr::Identifier(ident) => Self::Path(vec![ident.value.clone()]),
            ast::Expr::CompoundIdentifier(idents) => Self::Path(idents.iter().map(|i| i.value.clone()).collect()),
            ast::Expr::Value(v) => Self::Literal(match &v.value {
                ast::Value::Number(n, _) => match n.parse::<i64>() {
                    Ok(i) => Val::Int(i),
                    Err(_) => Val::Float(n.parse().map_err(|_| Error::Rule(format!("bad number {n}")))?),
                },
                ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => Val::Str(s.clone()),
                ast::Value::Boolean(b) => Val::Bool(*b),
                ast::Value::Null => Val::Null,
                other => return Err(unsupported(other)),
            }),
            ast::Expr::Nested(inner) => Self::compile(inner)?,
            ast::Expr::Cast { expr, data_type, .. } => Self::Cast(Box::new(Self::compile(expr)?), cast_type(data_type)?),
            ast::Expr::UnaryOp { op: UnaryOperator::Not, expr } => Self::Not(Box::new(Self::compile(expr)?)),
            ast::Expr::UnaryOp { op: UnaryOperator::Minus, expr } => Self::Neg(Box::new(Self::compile(expr)?)),
            ast::Expr::UnaryOp { op: UnaryOperator::Plus, expr } => Self::compile(expr)?,
            ast::Expr::BinaryOp { left, op, right } => {
                let op = match op {
                    BinaryOperator::Plus => Op::Add,
                    BinaryOperator::Minus => Op::Sub,
                    BinaryOperator::Multiply => Op::Mul,
                    BinaryOperator::Divide => Op::Div,
                    BinaryOperator::Modulo => Op::Rem,
                    BinaryOperator::Eq => Op::Eq,
                    BinaryOperator::NotEq => Op::Ne,
                    BinaryOperator::Lt => Op::Lt,
                    BinaryOperator::LtEq => Op::Le,
                    BinaryOperator::Gt => Op::Gt,
                    BinaryOperator::GtEq => Op::Ge,
                    BinaryOperator::And => Op::And,
                    BinaryOperator::Or => Op::Or,
                    other => return Err(unsupported(format!("operator {other}"))),
                };
                Self::Binary(Box::new(Self::compile(left)?), op, Box::new(Self::compile(right)?))
            }
            ast::Expr::Function(f) => function(f)?,
            other => return Err(unsupported(other)),
        })
    }

    /// The value of the expression for one message; `None` is Undefined.
    pub(crate) fn eval(&self, cx: &Context<'_>) -> Option<Val> {
        match self {
            Self::Literal(v) => Some(v.clone()),
            Self::Path(keys) => {
                let mut at = cx.payload;
                for key in keys {
                    at = at.as_object()?.get(key)?;
                }
                Some(Val::from_json(at))
            }
            Self::Topic(None) => Some(Val::Str(cx.topic?.to_owned())),
            Self::Topic(Some(n)) => cx.topic?.split('/').nth(n.checked_sub(1)?).map(|s| Val::Str(s.to_owned())),
            Self::PartitionKey => Some(Val::Str(cx.stream?.partition_key.to_owned())),
            Self::SequenceNumber => Some(Val::Str(cx.stream?.sequence_number.to_owned())),
            Self::ShardId => Some(Val::Str(cx.stream?.shard_id.to_owned())),
            Self::ApproximateArrival => Some(Val::Int(cx.stream?.arrival_ms)),
            Self::Timestamp => Some(Val::Int(cx.arrival_ms)),
            Self::ClientId => Some(Val::Str(cx.client_id.to_owned())),
            Self::Cast(e, to) => cast(e.eval(cx)?, *to),
            Self::Not(e) => match e.eval(cx)? {
                Val::Bool(b) => Some(Val::Bool(!b)),
                _ => None,
            },
            Self::Neg(e) => match e.eval(cx)? {
                Val::Int(i) => i.checked_neg().map(Val::Int),
                v => v.as_f64().map(|f| Val::Float(-f)),
            },
            Self::Binary(l, op, r) => binary(l.eval(cx), *op, r.eval(cx)),
        }
    }
}

fn function(f: &ast::Function) -> Result<Expr> {
    let name = f.name.to_string().to_lowercase();
    let args: Vec<&ast::Expr> = match &f.args {
        ast::FunctionArguments::None => Vec::new(),
        ast::FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
                other => Err(unsupported(format!("argument {other}"))),
            })
            .collect::<Result<_>>()?,
        ast::FunctionArguments::Subquery(_) => return Err(unsupported("subqueries")),
    };
    Ok(match (name.as_str(), args.as_slice()) {
        ("topic", []) => Expr::Topic(None),
        ("topic", [ast::Expr::Value(v)]) => match &v.value {
            ast::Value::Number(n, _) => match n.parse::<usize>() {
                Ok(n) if n >= 1 => Expr::Topic(Some(n)),
                _ => return Err(Error::Rule(format!("topic({n}): levels count from 1"))),
            },
            other => return Err(Error::Rule(format!("topic({other}): the level must be a number"))),
        },
        ("timestamp", []) => Expr::Timestamp,
        ("clientid", []) => Expr::ClientId,
        ("partition_key", []) => Expr::PartitionKey,
        ("sequence_number", []) => Expr::SequenceNumber,
        ("shard_id", []) => Expr::ShardId,
        ("approximate_arrival_timestamp", []) => Expr::ApproximateArrival,
        _ => return Err(unsupported(format!("function {f}"))),
    })
}

fn cast_type(data_type: &DataType) -> Result<CastType> {
    let name = data_type.to_string().to_lowercase();
    Ok(match name.as_str() {
        "int" | "integer" | "bigint" | "smallint" => CastType::Int,
        // `float` is not AWS IoT SQL; isobar accepts it as the seed's rule uses it.
        "double" | "float" | "real" | "decimal" | "numeric" | "double precision" => CastType::Double,
        "string" | "text" | "varchar" | "nvarchar" | "ntext" => CastType::String,
        "bool" | "boolean" => CastType::Bool,
        _ => return Err(unsupported(format!("cast to {data_type}"))),
    })
}

/// A decimal number as AWS IoT parses one from a string: `-?\d+(\.\d+)?([eE]-?\d+)?`.
fn parse_decimal(s: &str) -> Option<f64> {
    let t = s.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(i) => (&digits[..i], Some(&digits[i + 1..])),
        None => (digits, None),
    };
    let (whole, fraction) = mantissa.split_once('.').map_or((mantissa, None), |(w, f)| (w, Some(f)));
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let ok = all_digits(whole) && fraction.is_none_or(all_digits) && exponent.is_none_or(|e| all_digits(e.strip_prefix('-').unwrap_or(e)));
    if ok { t.parse().ok() } else { None }
}

fn cast(v: Val, to: CastType) -> Option<Val> {
    let v = match v {
        Val::Num(n) => match (to, n.as_i64()) {
            (CastType::Int, Some(i)) => return Some(Val::Int(i)),
            (CastType::String, _) => return Some(Val::Str(n.to_string())),
            _ => Val::Float(n.as_f64()?),
        },
        v => v,
    };
    match (to, v) {
        (_, Val::Null) => Some(Val::Null),
        (CastType::Int, Val::Int(i)) => Some(Val::Int(i)),
        (CastType::Int, Val::Float(f)) => float_to_int(f),
        (CastType::Int, Val::Bool(b)) => Some(Val::Int(i64::from(b))),
        (CastType::Int, Val::Str(s)) => s.trim().parse::<i64>().ok().map(Val::Int).or_else(|| float_to_int(parse_decimal(&s)?)),
        (CastType::Double, Val::Int(i)) => Some(Val::Float(i as f64)),
        (CastType::Double, Val::Float(f)) => Some(Val::Float(f)),
        (CastType::Double, Val::Bool(b)) => Some(Val::Float(if b { 1.0 } else { 0.0 })),
        (CastType::Double, Val::Str(s)) => parse_decimal(&s).map(Val::Float),
        (CastType::String, Val::Str(s)) => Some(Val::Str(s)),
        (CastType::String, Val::Int(i)) => Some(Val::Str(i.to_string())),
        (CastType::String, Val::Float(f)) => Some(Val::Str(f.to_string())),
        (CastType::String, Val::Bool(b)) => Some(Val::Str(b.to_string())),
        (CastType::String, Val::Json(j)) => Some(Val::Str(j.to_string())),
        (CastType::Bool, Val::Bool(b)) => Some(Val::Bool(b)),
        (CastType::Bool, Val::Int(i)) => Some(Val::Bool(i != 0)),
        (CastType::Bool, Val::Float(f)) => Some(Val::Bool(f != 0.0)),
        (CastType::Bool, Val::Str(s)) => match s.to_lowercase().as_str() {
            "true" => Some(Val::Bool(true)),
            "false" => Some(Val::Bool(false)),
            _ => None,
        },
        (_, Val::Json(_) | Val::Num(_)) => None,
    }
}

/// Truncated toward zero; Undefined outside i64 or for NaN.
fn float_to_int(f: f64) -> Option<Val> {
    let t = f.trunc();
    (t.is_finite() && t >= i64::MIN as f64 && t < i64::MAX as f64).then_some(Val::Int(t as i64))
}

fn binary(l: Option<Val>, op: Op, r: Option<Val>) -> Option<Val> {
    if let (Op::And | Op::Or, l, r) = (op, &l, &r) {
        // Undefined or non-boolean operands count as false, as in a WHERE.
        let truth = |v: &Option<Val>| matches!(v, Some(Val::Bool(true)));
        return Some(Val::Bool(if op == Op::And { truth(l) && truth(r) } else { truth(l) || truth(r) }));
    }
    let (l, r) = (l?, r?);
    match op {
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Rem => arithmetic(&l, op, &r),
        _ => {
            let ordering = match (&l, &r) {
                (Val::Str(a), Val::Str(b)) => a.partial_cmp(b),
                (Val::Bool(a), Val::Bool(b)) => a.partial_cmp(b),
                (Val::Null, Val::Null) => Some(std::cmp::Ordering::Equal),
                _ => l.as_f64()?.partial_cmp(&r.as_f64()?),
            }?;
            Some(Val::Bool(match op {
                Op::Eq => ordering.is_eq(),
                Op::Ne => !ordering.is_eq(),
                Op::Lt => ordering.is_lt(),
                Op::Le => ordering.is_le(),
                Op::Gt => ordering.is_gt(),
                _ => ordering.is_ge(),
            }))
        }
    }
}

fn arithmetic(l: &Val, op: Op, r: &Val) -> Option<Val> {
    if let (Val::Int(a), Val::Int(b)) = (l, r) {
        return match op {
            Op::Add => a.checked_add(*b),
            Op::Sub => a.checked_sub(*b),
            Op::Mul => a.checked_mul(*b),
            Op::Div => a.checked_div(*b),
            _ => a.checked_rem(*b),
        }
        .map(Val::Int);
    }
    let (a, b) = (l.as_f64()?, r.as_f64()?);
    let v = match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        Op::Div => a / b,
        _ => a % b,
    };
    v.is_finite().then_some(Val::Float(v))
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::GenericDialect;
    use sqlparser::parser::Parser;

    use super::*;

    fn eval_in(sql: &str, payload: &str, stream: Option<StreamRecord<'_>>) -> Option<Val> {
        let expr = Parser::new(&GenericDialect {}).try_with_sql(sql).expect("tokenizes").parse_expr().expect("parses");
        let payload: Json = serde_json::from_str(payload).expect("json");
        let topic = if stream.is_some() { None } else { Some("sensors/dev-42/telemetry") };
        let cx = Context { topic, stream, client_id: "dev-42", arrival_ms: 1_700_000_000_000, payload: &payload };
        Expr::compile(&expr).expect("compiles").eval(&cx)
    }

    fn eval(sql: &str, payload: &str) -> Option<Val> {
        eval_in(sql, payload, None)
    }

    #[test]
    fn stream_records_have_their_own_functions_and_no_topic() {
        let record = StreamRecord {
            partition_key: "st0001",
            sequence_number: "49590338271490256608559692538361571095921575989136588898",
            sub_sequence_number: Some(2),
            shard_id: "shardId-000000000001",
            arrival_ms: 1_700_000_000_123,
        };
        let on_stream = |sql: &str| eval_in(sql, "{}", Some(record));
        assert_eq!(on_stream("partition_key()"), Some(Val::Str("st0001".into())));
        assert_eq!(on_stream("sequence_number()"), Some(Val::Str(record.sequence_number.into())));
        assert_eq!(on_stream("shard_id()"), Some(Val::Str("shardId-000000000001".into())));
        assert_eq!(on_stream("approximate_arrival_timestamp()"), Some(Val::Int(1_700_000_000_123)));
        assert_eq!(on_stream("topic()"), None);
        assert_eq!(on_stream("topic(1)"), None);
        for function in ["partition_key()", "sequence_number()", "shard_id()", "approximate_arrival_timestamp()"] {
            assert_eq!(eval(function, "{}"), None, "{function} on an MQTT message");
        }
    }

    #[test]
    fn casts_follow_aws_iot() {
        assert_eq!(eval("cast('12.5' AS double)", "{}"), Some(Val::Float(12.5)));
        assert_eq!(eval("cast('abc' AS int)", "{}"), None);
        assert_eq!(eval("cast(true AS int)", "{}"), Some(Val::Int(1)));
        assert_eq!(eval("cast(v AS int)", r#"{"v": -2.7}"#), Some(Val::Int(-2)));
        assert_eq!(eval("cast(v AS float)", r#"{"v": "1e3"}"#), Some(Val::Float(1000.0)));
        assert_eq!(eval("cast(v AS double)", r#"{"v": "NaN"}"#), None);
        assert_eq!(eval("cast(v AS string)", r#"{"v": 10}"#), Some(Val::Str("10".into())));
        assert_eq!(eval("cast(v AS bool)", r#"{"v": "TRUE"}"#), Some(Val::Bool(true)));
    }

    #[test]
    fn topics_paths_and_functions() {
        assert_eq!(eval("topic(2)", "{}"), Some(Val::Str("dev-42".into())));
        assert_eq!(eval("topic(9)", "{}"), None);
        assert_eq!(eval("topic()", "{}"), Some(Val::Str("sensors/dev-42/telemetry".into())));
        assert_eq!(eval("a.b.c", r#"{"a": {"b": {"c": 3}}}"#), Some(Val::Num(3.into())));
        assert_eq!(eval("a.x", r#"{"a": {"b": 1}}"#), None);
        assert_eq!(eval("clientid()", "{}"), Some(Val::Str("dev-42".into())));
        assert_eq!(eval("timestamp()", "{}"), Some(Val::Int(1_700_000_000_000)));
    }

    #[test]
    fn operators() {
        assert_eq!(eval("v * 2 + 1", r#"{"v": 1.5}"#), Some(Val::Float(4.0)));
        assert_eq!(eval("7 / 2", "{}"), Some(Val::Int(3)));
        assert_eq!(eval("7 / 0", "{}"), None);
        assert_eq!(eval("v > 1 AND s = 'x'", r#"{"v": 2, "s": "x"}"#), Some(Val::Bool(true)));
        assert_eq!(eval("missing > 1 OR NOT (v < 0)", r#"{"v": 2}"#), Some(Val::Bool(true)));
        assert_eq!(eval("missing > 1", "{}"), None);
        assert_eq!(eval("-v", r#"{"v": 2}"#), Some(Val::Float(-2.0)));
    }

    #[test]
    fn unsupported_sql_is_a_rule_error() {
        for sql in ["upper(v)", "v LIKE 'a%'", "cast(v AS date)", "topic(0)", "(SELECT 1)"] {
            let expr = Parser::new(&GenericDialect {}).try_with_sql(sql).expect("tokenizes").parse_expr().expect("parses");
            assert!(Expr::compile(&expr).is_err(), "{sql}");
        }
    }
}
