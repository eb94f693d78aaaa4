//! Query results on the Postgres wire: DataRow messages encoded from Arrow record batches.
//!
//! A batch whose columns all have one of the common result types (booleans, 16/32/64-bit
//! integers, floats, text, timestamps and dates in the ISO date style) is encoded here: each
//! column is downcast once per batch, and its values are written straight into one buffer the
//! batch's rows share, as text or binary as the client asked for that column. The bytes are
//! those arrow-pg's value-at-a-time encoder gives (a property test compares the two), but for
//! floats in text, which are PostgreSQL's (`1`, not `1.0`; `Infinity`, not `inf`: what JDBC's
//! `Double.parseDouble` reads); a batch with any other column goes through arrow-pg.

use std::cell::Cell;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, LargeStringArray, RecordBatch, StringArray, StringViewArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{max, min};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::execution::SendableRecordBatchStream;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::pgwire::api::Type;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::{FieldFormat, FieldInfo, QueryResponse};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::data::DataRow;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use datafusion_postgres::pgwire::types::format::date_style::DateStyle;
use futures::{StreamExt, stream};

/// Seconds from the Unix epoch to 2000-01-01, PostgreSQL's epoch for binary timestamps.
const PG_EPOCH_UNIX_S: i64 = 946_684_800;
/// Days from the Unix epoch to 2000-01-01, PostgreSQL's epoch for binary dates.
const PG_EPOCH_UNIX_DAYS: i32 = 10_957;
/// Days from the Unix epoch to 0001-01-01 and to 9999-12-31: the dates written here; others
/// (years a `%Y` would print with a sign or five digits) go through arrow-pg.
const FIRST_DAY: i64 = -719_162;
const LAST_DAY: i64 = 2_932_896;
const SECONDS_PER_DAY: i64 = 86_400;
/// The text arrow-pg writes timestamps with in the ISO date style.
const ISO_TIMESTAMP: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// The response to a query: its fields described in `format`, its rows encoded as they come.
pub(crate) fn query_response(
    batches: SendableRecordBatchStream,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(arrow_schema_to_pg_fields(&batches.schema(), format, Some(options))?);
    let described = Arc::clone(&fields);
    let rows = batches
        .map(move |batch| {
            let rows = match batch {
                Ok(batch) => encode(&described, &batch),
                Err(e) => vec![Err(PgWireError::ApiError(Box::new(e)))],
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}

/// The rows of `batch`, described by `fields`.
pub(crate) fn encode(fields: &Arc<Vec<FieldInfo>>, batch: &RecordBatch) -> Vec<PgWireResult<DataRow>> {
    let columns: Option<Vec<Column<'_>>> =
        batch.columns().iter().zip(fields.iter()).map(|(array, field)| Column::of(array, field)).collect();
    let Some(columns) = columns.filter(|c| c.len() == fields.len()) else {
        return encode_recordbatch(Arc::clone(fields), batch.clone()).collect();
    };
    let field_count = i16::try_from(columns.len()).unwrap_or(i16::MAX);
    let bytes_per_row: usize = columns.iter().map(Column::bytes_hint).sum();
    let mut buffer = BytesMut::with_capacity(bytes_per_row.saturating_mul(batch.num_rows()));
    (0..batch.num_rows())
        .map(|row| {
            for column in &columns {
                column.write(row, &mut buffer);
            }
            Ok(DataRow::new(buffer.split(), field_count))
        })
        .collect()
}

/// One column of a batch, downcast, with how its values go on the wire.
struct Column<'a> {
    values: Values<'a>,
    nulls: Option<&'a NullBuffer>,
    binary: bool,
    /// `extra_float_digits` of the session, for floats in text.
    float_digits: i8,
    /// The day last written as text, and its text.
    last_date: Cell<(i64, [u8; 10])>,
}

enum Values<'a> {
    Bool(&'a BooleanArray),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    /// Timestamps in units of `1 / per_second` s; `zoned` ones are in UTC and say so.
    Timestamp {
        values: &'a [i64],
        per_second: i64,
        zoned: bool,
    },
    /// Days since the Unix epoch.
    Date(&'a [i32]),
}

impl<'a> Column<'a> {
    /// `array` ready to encode as `field`, or `None` when arrow-pg must encode it: a type not
    /// handled here, a wire type other than the plain mapping (catalog `oid` and `"char"`
    /// columns), a time zone other than UTC, a date style other than ISO, or a date outside
    /// years 1-9999.
    fn of(array: &'a ArrayRef, field: &FieldInfo) -> Option<Self> {
        let binary = field.format() == FieldFormat::Binary;
        let options = field.format_options();
        let iso = DateStyle::new(&options.date_style).full_format_str() == ISO_TIMESTAMP;
        let (values, wire_type) = match array.data_type() {
            DataType::Boolean => (Values::Bool(array.as_boolean()), Type::BOOL),
            DataType::Int16 => (Values::I16(array.as_primitive::<Int16Type>().values()), Type::INT2),
            DataType::Int32 => (Values::I32(array.as_primitive::<Int32Type>().values()), Type::INT4),
            DataType::Int64 => (Values::I64(array.as_primitive::<Int64Type>().values()), Type::INT8),
            DataType::Float32 => (Values::F32(array.as_primitive::<Float32Type>().values()), Type::FLOAT4),
            DataType::Float64 => (Values::F64(array.as_primitive::<Float64Type>().values()), Type::FLOAT8),
            DataType::Utf8 => (Values::Utf8(array.as_string::<i32>()), Type::TEXT),
            DataType::LargeUtf8 => (Values::LargeUtf8(array.as_string::<i64>()), Type::TEXT),
            DataType::Utf8View => (Values::Utf8View(array.as_string_view()), Type::TEXT),
            DataType::Date32 if binary || iso => {
                let dates = array.as_primitive::<Date32Type>();
                let (first, last) = (min(dates).unwrap_or(0), max(dates).unwrap_or(0));
                if i64::from(first) < FIRST_DAY || i64::from(last) > LAST_DAY {
                    return None;
                }
                (Values::Date(dates.values()), Type::DATE)
            }
            DataType::Timestamp(unit, zone) if binary || iso => {
                let zoned = match zone.as_deref() {
                    None => false,
                    Some("UTC" | "+00:00") => true,
                    Some(_) => return None,
                };
                let (values, per_second, first, last) = match unit {
                    TimeUnit::Second => time_range(array.as_primitive::<TimestampSecondType>(), 1),
                    TimeUnit::Millisecond => time_range(array.as_primitive::<TimestampMillisecondType>(), 1_000),
                    TimeUnit::Microsecond => time_range(array.as_primitive::<TimestampMicrosecondType>(), 1_000_000),
                    TimeUnit::Nanosecond => time_range(array.as_primitive::<TimestampNanosecondType>(), 1_000_000_000),
                };
                let (first_day, last_day) = (first.div_euclid(per_second * SECONDS_PER_DAY), last.div_euclid(per_second * SECONDS_PER_DAY));
                if first_day < FIRST_DAY || last_day > LAST_DAY {
                    return None;
                }
                (Values::Timestamp { values, per_second, zoned }, if zoned { Type::TIMESTAMPTZ } else { Type::TIMESTAMP })
            }
            _ => return None,
        };
        (*field.datatype() == wire_type).then_some(Self {
            values,
            nulls: array.nulls(),
            binary,
            float_digits: options.extra_float_digits,
            last_date: Cell::new((i64::MIN, [0; 10])),
        })
    }

    /// About how many bytes a value takes, with its length word.
    fn bytes_hint(&self) -> usize {
        4 + match self.values {
            Values::Bool(_) => 1,
            Values::I16(_) | Values::I32(_) | Values::I64(_) | Values::F32(_) | Values::F64(_) => 12,
            Values::Utf8(_) | Values::LargeUtf8(_) | Values::Utf8View(_) => 16,
            Values::Timestamp { .. } => 29,
            Values::Date(_) => 10,
        }
    }

    /// Writes the value of `row`, with its length word (-1 for NULL).
    fn write(&self, row: usize, out: &mut BytesMut) {
        if self.nulls.is_some_and(|nulls| nulls.is_null(row)) {
            out.put_i32(-1);
        } else if self.binary {
            self.write_binary(row, out);
        } else {
            let at = out.len();
            out.put_i32(0);
            self.write_text(row, out);
            let length = i32::try_from(out.len() - at - 4).unwrap_or(i32::MAX);
            out[at..at + 4].copy_from_slice(&length.to_be_bytes());
        }
    }

    fn write_binary(&self, row: usize, out: &mut BytesMut) {
        match &self.values {
            Values::Bool(values) => {
                out.put_i32(1);
                out.put_u8(u8::from(values.value(row)));
            }
            Values::I16(values) => {
                out.put_i32(2);
                out.put_i16(values[row]);
            }
            Values::I32(values) => {
                out.put_i32(4);
                out.put_i32(values[row]);
            }
            Values::I64(values) => {
                out.put_i32(8);
                out.put_i64(values[row]);
            }
            Values::F32(values) => {
                out.put_i32(4);
                out.put_f32(values[row]);
            }
            Values::F64(values) => {
                out.put_i32(8);
                out.put_f64(values[row]);
            }
            Values::Utf8(values) => put_bytes(out, values.value(row).as_bytes()),
            Values::LargeUtf8(values) => put_bytes(out, values.value(row).as_bytes()),
            Values::Utf8View(values) => put_bytes(out, values.value(row).as_bytes()),
            Values::Timestamp { values, per_second, .. } => {
                // Microseconds since 2000-01-01, truncated toward zero as chrono does.
                let (seconds, nanos) = split_seconds(values[row], *per_second);
                let since_epoch_ns = i128::from(seconds - PG_EPOCH_UNIX_S) * 1_000_000_000 + i128::from(nanos);
                out.put_i32(8);
                out.put_i64(i64::try_from(since_epoch_ns / 1_000).unwrap_or(i64::MAX));
            }
            Values::Date(values) => {
                out.put_i32(4);
                out.put_i32(values[row] - PG_EPOCH_UNIX_DAYS);
            }
        }
    }

    fn write_text(&self, row: usize, out: &mut BytesMut) {
        match &self.values {
            Values::Bool(values) => out.put_u8(if values.value(row) { b't' } else { b'f' }),
            Values::I16(values) => out.put_slice(itoa::Buffer::new().format(values[row]).as_bytes()),
            Values::I32(values) => out.put_slice(itoa::Buffer::new().format(values[row]).as_bytes()),
            Values::I64(values) => out.put_slice(itoa::Buffer::new().format(values[row]).as_bytes()),
            Values::F32(values) => put_float(out, values[row], self.float_digits),
            Values::F64(values) => put_float(out, values[row], self.float_digits),
            Values::Utf8(values) => out.put_slice(values.value(row).as_bytes()),
            Values::LargeUtf8(values) => out.put_slice(values.value(row).as_bytes()),
            Values::Utf8View(values) => out.put_slice(values.value(row).as_bytes()),
            Values::Timestamp { values, per_second, zoned } => {
                let (seconds, nanos) = split_seconds(values[row], *per_second);
                out.put_slice(&self.date_text(seconds.div_euclid(SECONDS_PER_DAY)));
                let of_day = seconds.rem_euclid(SECONDS_PER_DAY);
                out.put_u8(b' ');
                put_digits(out, of_day / 3_600, 2);
                out.put_u8(b':');
                put_digits(out, of_day / 60 % 60, 2);
                out.put_u8(b':');
                put_digits(out, of_day % 60, 2);
                out.put_u8(b'.');
                put_digits(out, i64::from(nanos / 1_000), 6);
                if *zoned {
                    out.put_slice(b"+00");
                }
            }
            Values::Date(values) => out.put_slice(&self.date_text(i64::from(values[row]))),
        }
    }

    /// [`date_text`], remembering the last day: the rows of a result often share their day.
    fn date_text(&self, days: i64) -> [u8; 10] {
        let (last, text) = self.last_date.get();
        if last == days {
            return text;
        }
        let text = date_text(days);
        self.last_date.set((days, text));
        text
    }
}

/// The values of a timestamp array, its units per second, and its smallest and largest value
/// (0 when it has none).
fn time_range<T>(array: &datafusion::arrow::array::PrimitiveArray<T>, per_second: i64) -> (&[i64], i64, i64, i64)
where
    T: datafusion::arrow::datatypes::ArrowPrimitiveType<Native = i64>,
{
    (array.values(), per_second, min(array).unwrap_or(0), max(array).unwrap_or(0))
}

/// Whole seconds (rounded down) and the nanoseconds past them of `value` units.
fn split_seconds(value: i64, per_second: i64) -> (i64, u32) {
    let nanos = value.rem_euclid(per_second) * (1_000_000_000 / per_second);
    (value.div_euclid(per_second), u32::try_from(nanos).unwrap_or(0))
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_i32(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
    out.put_slice(bytes);
}

/// A float as PostgreSQL writes it for `extra_float_digits`: at 1 and more (the default), the
/// shortest text that reads back as the same value; below, rounded to 15 (a `real`: 6) plus
/// `extra_float_digits` significant digits, as C's `%g`. Either in PostgreSQL's shape (`1`,
/// `0.0001`, `1e-05`, `1.234567e+06` for a `real`): exponential once the exponent is below -4
/// or reaches 15 (6) digits, or that many significant digits when rounded. `NaN`, `Infinity`
/// and `-Infinity` either way.
fn put_float<F>(out: &mut BytesMut, value: F, float_digits: i8)
where
    F: Into<f64> + std::fmt::LowerExp + Copy + ryu::Float,
{
    // Widening an f32 is exact: the checks hold for both widths.
    let wide: f64 = value.into();
    let digits_max: i32 = if std::mem::size_of::<F>() == 4 { 6 } else { 15 };
    if wide.is_nan() {
        out.put_slice(b"NaN");
    } else if wide.is_infinite() {
        out.put_slice(if wide.is_sign_positive() { b"Infinity".as_slice() } else { b"-Infinity".as_slice() });
    } else if float_digits >= 1 {
        // Ryu, as PostgreSQL: of two shortest texts equally near the value (a `real`'s
        // 515574.125 reads back from 515574.12 and .13), the even one.
        shortest_text(out, &scientific(ryu::Buffer::new().format_finite(value)), digits_max);
    } else {
        let significant = (digits_max + i32::from(float_digits)).max(1);
        let rounded = format!("{value:.*e}", (significant - 1) as usize);
        let (mantissa, exponent) = rounded.split_once('e').unwrap_or((&rounded, "0"));
        let mantissa = if mantissa.contains('.') { mantissa.trim_end_matches('0').trim_end_matches('.') } else { mantissa };
        shortest_text(out, &format!("{mantissa}e{exponent}"), significant);
    }
}

/// A decimal number's text (`-515574.12`, `0.0001`, `1e20`, `1.5e-7`) as `[-]d[.ddd]e[-]x`.
fn scientific(text: &str) -> String {
    let (sign, body) = text.strip_prefix('-').map_or(("", text), |b| ("-", b));
    let (mantissa, exponent) = body.split_once(['e', 'E']).map_or((body, 0), |(m, e)| (m, e.parse::<i32>().unwrap_or(0)));
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{whole}{fraction}");
    let Some(first) = all.find(|c| c != '0') else { return format!("{sign}0e0") };
    let exponent = exponent + whole.len() as i32 - 1 - first as i32;
    let digits = all[first..].trim_end_matches('0');
    match digits.len() {
        1 => format!("{sign}{digits}e{exponent}"),
        _ => format!("{sign}{}.{}e{exponent}", &digits[..1], &digits[1..]),
    }
}

/// `scientific` (`[-]d[.ddd]e[-]x`) in PostgreSQL's shape: positional while the exponent is
/// -4 to `exponent_digits` - 1, else `d[.ddd]e±xx`.
fn shortest_text(out: &mut BytesMut, scientific: &str, exponent_digits: i32) {
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    out.put_slice(sign.as_bytes());
    if digits == "0" {
        out.put_u8(b'0');
    } else if exponent < -4 || exponent >= exponent_digits {
        out.put_slice(mantissa.as_bytes());
        out.put_slice(format!("e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.unsigned_abs()).as_bytes());
    } else if exponent < 0 {
        out.put_slice(b"0.");
        out.put_slice("0".repeat(exponent.unsigned_abs() as usize - 1).as_bytes());
        out.put_slice(digits.as_bytes());
    } else {
        let whole = exponent as usize + 1;
        if digits.len() <= whole {
            out.put_slice(digits.as_bytes());
            out.put_slice("0".repeat(whole - digits.len()).as_bytes());
        } else {
            out.put_slice(&digits.as_bytes()[..whole]);
            out.put_u8(b'.');
            out.put_slice(&digits.as_bytes()[whole..]);
        }
    }
}

/// `YYYY-MM-DD` of the day `days` after 1970-01-01, a year 1-9999.
fn date_text(days: i64) -> [u8; 10] {
    let (year, month, day) = isobar_storage::calendar::civil_from_days(days);
    let mut text = *b"0000-00-00";
    write_digits(&mut text[..4], year);
    write_digits(&mut text[5..7], month);
    write_digits(&mut text[8..], day);
    text
}

/// `value` (not negative) in `width` decimal digits, zero-padded.
fn put_digits(out: &mut BytesMut, value: i64, width: usize) {
    let mut digits = [b'0'; 6];
    write_digits(&mut digits[..width], value);
    out.put_slice(&digits[..width]);
}

/// The last `digits.len()` decimal digits of `value` (not negative) into `digits`.
fn write_digits(digits: &mut [u8], value: i64) {
    let mut rest = value;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
}

#[cfg(test)]
#[path = "pg_rows_tests.rs"]
mod tests;
