//! InfluxDB line protocol: the text Telegraf, Node-RED, Home Assistant and most device SDKs
//! write, one point per line:
//!
//! ```text
//! weather,station_id=st1,sensor=temp sensor_value=21.5,ok=true 1700000000000000000
//! ```
//!
//! The measurement becomes the table, tags the series key and fields the columns; a line
//! without a timestamp takes the time of the write. Parsing follows InfluxDB's rules: in the
//! measurement `\,` and `\ ` are a comma and a space; in tag keys, tag values and field keys
//! also `\=`; a backslash before any other character stays, and the character after it never
//! ends the element. String field values are in double quotes, where `\"` and `\\` are a quote
//! and a backslash. Numbers are floats unless they end in `i` (integer) or `u` (unsigned, kept
//! as isobar's 64-bit integers when they fit); `t`, `T`, `true`, `True`, `TRUE` and the same
//! forms of false are booleans. Lines starting with `#` and blank lines are skipped. A field
//! named twice keeps the last value; a tag named twice is an error, as in InfluxDB. Each line
//! parses on its own: a bad line is reported with its number and never affects its neighbours.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use isobar_storage::fxhash::FxHashMap;
use isobar_storage::{Columns, FieldValue, Point, TIME_COLUMN};

/// Characters a backslash escapes in a measurement.
const MEASUREMENT_ESCAPES: &[u8] = b", ";
/// Characters a backslash escapes in tag keys, tag values and field keys.
const KEY_ESCAPES: &[u8] = b",= ";
/// The longest line shown back in an error.
const SHOWN_LINE_BYTES_MAX: usize = 200;

/// The unit of the timestamps of a write (`precision=` on `/write` and `/api/v2/write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

impl Precision {
    /// The precision a request names, in either API's spelling (`ns`, `n`, `us`, `u`, `µ`,
    /// `ms`, `s`, and v1's `m` and `h`); `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "" | "n" | "ns" => Self::Nanoseconds,
            "u" | "us" | "µ" | "µs" => Self::Microseconds,
            "ms" => Self::Milliseconds,
            "s" => Self::Seconds,
            "m" => Self::Minutes,
            "h" => Self::Hours,
            _ => return None,
        })
    }

    fn ns_per_unit(self) -> i64 {
        match self {
            Self::Nanoseconds => 1,
            Self::Microseconds => 1_000,
            Self::Milliseconds => 1_000_000,
            Self::Seconds => 1_000_000_000,
            Self::Minutes => 60_000_000_000,
            Self::Hours => 3_600_000_000_000,
        }
    }
}

/// One line's point and the table it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// 1-based, counting every line of the body.
    pub line_number: usize,
    pub table: String,
    pub point: Point,
}

/// A line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based, counting every line of the body.
    pub line_number: usize,
    /// The line as written, cut after 200 bytes.
    pub line: String,
    pub reason: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unable to parse '{}' (line {}): {}", self.line, self.line_number, self.reason)
    }
}

/// Each line of `body` that holds a point, parsed, in order: its point, or why it does not
/// parse. Timestamps are in `precision`; a line without one is at `now_ns`.
pub fn parse(body: &str, precision: Precision, now_ns: i64) -> Vec<Result<Line, LineError>> {
    let mut out = Vec::new();
    for (i, line, content) in point_lines(body) {
        out.push(match parse_line(content, precision, now_ns) {
            Ok((table, point)) => Ok(Line { line_number: i + 1, table, point }),
            Err(reason) => Err(LineError { line_number: i + 1, line: shown(line), reason }),
        });
    }
    out
}

/// The lines of `body` that hold a point: each one's index, the line without trailing
/// blanks (as errors show it), and its content without leading ones.
fn point_lines(body: &str) -> impl Iterator<Item = (usize, &str, &str)> {
    // `body.split('\n')`, with the newlines found by SIMD rather than a word at a time.
    let mut rest = Some(body);
    let lines = std::iter::from_fn(move || {
        let text = rest?;
        match memchr::memchr(b'\n', text.as_bytes()) {
            Some(end) => {
                rest = Some(&text[end + 1..]);
                Some(&text[..end])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    });
    lines.enumerate().filter_map(|(i, line)| {
        let line = line.trim_end_matches(['\r', ' ', '\t']);
        let content = line.trim_start_matches([' ', '\t']);
        (!content.is_empty() && !content.starts_with('#')).then_some((i, line, content))
    })
}

/// Line `line_number` (1-based) of `body` as an error shows it.
pub fn line_text(body: &str, line_number: usize) -> String {
    shown(body.split('\n').nth(line_number.saturating_sub(1)).unwrap_or_default().trim_end_matches(['\r', ' ', '\t']))
}

/// `line` cut at a character boundary after at most [`SHOWN_LINE_BYTES_MAX`] bytes.
fn shown(line: &str) -> String {
    let mut end = line.len().min(SHOWN_LINE_BYTES_MAX);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_owned()
}

/// One line without leading or trailing whitespace, neither blank nor a comment: its table and
/// point, or why it does not parse.
pub fn parse_line(line: &str, precision: Precision, now_ns: i64) -> Result<(String, Point), String> {
    let (key, at) = parse_key(line)?;
    let mut fields = Vec::new();
    let time = parse_fields(line, at, precision, now_ns, &mut fields)?;
    check_time_names(key.tags.iter().map(|(k, _)| k.as_str()).chain(fields.iter().map(|(_, k, _)| k.as_ref())))?;
    let fields = fields.into_iter().map(|(_, k, v)| (k.into_owned(), v)).collect();
    Ok((key.table, Point { time: isobar_storage::TimestampNs(time), tags: key.tags, fields }))
}

/// A line's series key: its measurement and tags.
struct Key {
    table: String,
    tags: Vec<(String, String)>,
}

/// The measurement and tags `line` starts with, and where they end: at the first blank not
/// escaped, or the end. Nothing after that is read, so lines that start alike parse alike.
fn parse_key(line: &str) -> Result<(Key, usize), String> {
    let bytes = line.as_bytes();
    let (measurement, mut at) = scan(line, 0, |b| matches!(b, b',' | b' '));
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }
    let table = unescape(measurement, MEASUREMENT_ESCAPES).into_owned();
    let mut tags: Vec<(String, String)> = Vec::new();
    while bytes.get(at) == Some(&b',') {
        let (key, next) = scan(line, at + 1, |b| matches!(b, b',' | b'=' | b' '));
        let key = unescape(key, KEY_ESCAPES);
        if key.is_empty() {
            return Err("missing tag key".into());
        }
        if bytes.get(next) != Some(&b'=') {
            return Err(format!("missing tag value of tag {key:?}"));
        }
        let (value, next) = scan(line, next + 1, |b| matches!(b, b',' | b' '));
        let value = unescape(value, KEY_ESCAPES);
        if value.is_empty() {
            return Err(format!("missing tag value of tag {key:?}"));
        }
        if tags.iter().any(|(k, _)| *k == key) {
            return Err(format!("duplicate tags: {key:?}"));
        }
        tags.push((key.into_owned(), value.into_owned()));
        at = next;
    }
    Ok((Key { table, tags }, at))
}

/// One field of a line: its key as written (escapes and all), its name and its value.
type Field<'a> = (&'a str, Cow<'a, str>, FieldValue);

/// The fields after the key (which ends at `at`) into `fields`, a field named twice keeping
/// its last value, and the line's time in nanoseconds.
fn parse_fields<'a>(line: &'a str, mut at: usize, precision: Precision, now_ns: i64, fields: &mut Vec<Field<'a>>) -> Result<i64, String> {
    let bytes = line.as_bytes();
    at = skip_blanks(bytes, at);
    if at >= bytes.len() {
        return Err("missing fields".into());
    }
    loop {
        let (raw, next) = scan(line, at, |b| matches!(b, b',' | b'=' | b' '));
        let key = unescape(raw, KEY_ESCAPES);
        if key.is_empty() {
            return Err("missing field key".into());
        }
        if bytes.get(next) != Some(&b'=') {
            return Err(format!("missing field value of field {key:?}"));
        }
        let (value, next) = field_value(line, next + 1).map_err(|reason| format!("field {key:?}: {reason}"))?;
        match fields.iter_mut().find(|(_, k, _)| *k == key) {
            Some(field) => field.2 = value,
            None => fields.push((raw, key, value)),
        }
        at = next;
        match bytes.get(at) {
            Some(b',') => at += 1,
            _ => break,
        }
    }
    line_time(line, at, precision, now_ns)
}

/// The time of a line whose last field value ends at `at`: the timestamp after it, or
/// `now_ns` when there is none.
fn line_time(line: &str, at: usize, precision: Precision, now_ns: i64) -> Result<i64, String> {
    // A field value ends at a blank or the end of the line.
    match &line[skip_blanks(line.as_bytes(), at)..] {
        "" => Ok(now_ns),
        digits => timestamp(digits, precision),
    }
}

/// The fields of the line before, for the next line of the same table: each one's key as
/// written and its field column in the table's [`Columns`]. A fleet writes the same fields in
/// the same order on every line, so most lines match it and are read without scanning,
/// unescaping and looking up their keys.
#[derive(Default)]
struct FieldTemplate<'a> {
    table: usize,
    fields: Vec<(&'a str, usize)>,
}

impl<'a> FieldTemplate<'a> {
    /// The values and time of `line`, whose key ends at `at`, when its fields are exactly the
    /// template's keys, as written and in order, each value well-formed: what
    /// [`parse_fields`] reads from such a line. `None` for any other line, which
    /// [`parse_fields`] then reads or refuses. An empty template (no line read yet) reads none.
    fn read(&self, line: &str, mut at: usize, precision: Precision, now_ns: i64, values: &mut Vec<FieldValue>) -> Option<i64> {
        if self.fields.is_empty() {
            return None;
        }
        let bytes = line.as_bytes();
        values.clear();
        at = skip_blanks(bytes, at);
        for (i, (raw, _)) in self.fields.iter().enumerate() {
            // The same bytes before a `=` scan the same way: the key ends there again.
            let value_at = at + raw.len() + 1;
            if bytes.get(at..value_at - 1) != Some(raw.as_bytes()) || bytes.get(value_at - 1) != Some(&b'=') {
                return None;
            }
            let (value, next) = field_value(line, value_at).ok()?;
            values.push(value);
            let last = i + 1 == self.fields.len();
            match bytes.get(next) {
                Some(b',') if !last => at = next + 1,
                // More fields than the template's, or fewer.
                Some(b',') => return None,
                _ if !last => return None,
                _ => at = next,
            }
        }
        line_time(line, at, precision, now_ns).ok()
    }
}

/// Refuses a tag or field named `time`, the timestamp's column.
fn check_time_names<'a>(mut names: impl Iterator<Item = &'a str>) -> Result<(), String> {
    match names.find(|k| *k == TIME_COLUMN) {
        Some(name) => Err(format!("invalid field or tag name {name:?}: time is the timestamp's column")),
        None => Ok(()),
    }
}

/// What a body of line protocol holds, in columns per table, for one write: each line's
/// measurement and tags are parsed once per distinct spelling, not once per line.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Per table: its rows, and the line number of each row.
    pub tables: Vec<(String, Columns, Vec<usize>)>,
    /// The lines that do not parse, in order.
    pub errors: Vec<LineError>,
}

/// Line keys (measurement and tags) parsed by earlier writes, by their text, for
/// [`parse_columns`]: a fleet writes the same series in every body, so each key is parsed once
/// rather than once per write. Bounded: at [`KEYS_CACHED_MAX`] keys it starts over. Keys that
/// do not parse are not kept.
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: Mutex<FxHashMap<Box<str>, Arc<ParsedKey>>>,
}

/// Keys a [`KeyCache`] holds at most.
const KEYS_CACHED_MAX: usize = 1 << 16;

/// A line key, parsed.
#[derive(Debug)]
struct ParsedKey {
    table: String,
    tags: Arc<[(String, String)]>,
    /// Whether a tag is named `time`, which the line's error names.
    time_tag: bool,
}

impl KeyCache {
    /// The key `text` (a line's measurement and tags, nothing after them), parsed.
    fn parse(&self, text: &str) -> Result<Arc<ParsedKey>, String> {
        if let Some(key) = self.lock().get(text) {
            return Ok(key.clone());
        }
        let (key, _) = parse_key(text)?;
        let time_tag = key.tags.iter().any(|(k, _)| k == TIME_COLUMN);
        let key = Arc::new(ParsedKey { table: key.table, tags: key.tags.into(), time_tag });
        let mut keys = self.lock();
        if keys.len() >= KEYS_CACHED_MAX {
            keys.clear();
        }
        keys.insert(text.into(), key.clone());
        Ok(key)
    }

    fn lock(&self) -> MutexGuard<'_, FxHashMap<Box<str>, Arc<ParsedKey>>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Parses `body` as [`parse`] does (the same rows, the same errors), into columns; keys come
/// from `cache` when an earlier write parsed them, and a line with the fields of the line
/// before it is read by them (`FieldTemplate`).
pub fn parse_columns(body: &str, precision: Precision, now_ns: i64, cache: &KeyCache) -> Parsed {
    let mut parsed = Parsed::default();
    // By the text of a line's key: its table's index, tag set, and whether a tag is `time`.
    let mut keys: FxHashMap<&str, Result<(usize, u32, bool), String>> = FxHashMap::default();
    let mut fields = Vec::new();
    let (mut template, mut values) = (FieldTemplate::default(), Vec::new());
    // Room for every line in the first table: most bodies are of one.
    let lines_max = newlines(body.as_bytes()) + 1;
    for (i, line, content) in point_lines(body) {
        let key_end = key_end(content);
        let key = keys.entry(&content[..key_end]).or_insert_with_key(|text| {
            let key = cache.parse(text)?;
            let table = match parsed.tables.iter().position(|(t, _, _)| *t == key.table) {
                Some(table) => table,
                None => {
                    let mut columns = Columns::new();
                    columns.reserve(lines_max);
                    parsed.tables.push((key.table.clone(), columns, Vec::with_capacity(lines_max)));
                    parsed.tables.len() - 1
                }
            };
            Ok((table, parsed.tables[table].1.add_tag_set(key.tags.clone()), key.time_tag))
        });
        let (table, tag_set, time_tag) = match key {
            Ok(key) => *key,
            Err(reason) => {
                parsed.errors.push(LineError { line_number: i + 1, line: shown(line), reason: reason.clone() });
                continue;
            }
        };
        let (_, columns, lines) = &mut parsed.tables[table];
        if template.table == table
            && !time_tag
            && let Some(time) = template.read(content, key_end, precision, now_ns, &mut values)
        {
            let row = columns.push_row(tag_set, time);
            for ((_, field), value) in template.fields.iter().zip(values.drain(..)) {
                columns.set(row, *field, value);
            }
            lines.push(i + 1);
            continue;
        }
        fields.clear();
        let row = parse_fields(content, key_end, precision, now_ns, &mut fields).and_then(|time| {
            check_time_names(time_tag.then_some(TIME_COLUMN).into_iter().chain(fields.iter().map(|(_, k, _)| k.as_ref())))?;
            Ok(time)
        });
        match row {
            Ok(time) => {
                let row = columns.push_row(tag_set, time);
                template.table = table;
                template.fields.clear();
                for (raw, name, value) in fields.drain(..) {
                    let field = columns.field(&name);
                    columns.set(row, field, value);
                    template.fields.push((raw, field));
                }
                lines.push(i + 1);
            }
            Err(reason) => parsed.errors.push(LineError { line_number: i + 1, line: shown(line), reason }),
        }
    }
    parsed
}

/// How many newlines `bytes` holds, counted in bytes 255 at a time, which vectorizes.
fn newlines(bytes: &[u8]) -> usize {
    bytes.chunks(255).map(|chunk| usize::from(chunk.iter().fold(0u8, |n, b| n + u8::from(*b == b'\n')))).sum()
}

/// Where a line's key (its measurement and tags) ends: at its first blank that no backslash
/// escapes, or the end.
fn key_end(content: &str) -> usize {
    match memchr::memchr2(b' ', b'\\', content.as_bytes()) {
        Some(end) if content.as_bytes()[end] == b' ' => end,
        Some(_) => scan(content, 0, |b| b == b' ').1,
        None => content.len(),
    }
}

/// The element from `start` up to the first byte that `stop` accepts and no backslash escapes
/// (a backslash always takes the byte after it into the element), and where it ended.
#[inline]
fn scan(line: &str, start: usize, stop: impl Fn(u8) -> bool) -> (&str, usize) {
    let bytes = line.as_bytes();
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if stop(b) => break,
            _ => i += 1,
        }
    }
    let end = i.min(bytes.len());
    // Cut at an ASCII stop byte or the end, so on character boundaries.
    (line.get(start..end).unwrap_or_default(), end)
}

fn skip_blanks(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t')) {
        at += 1;
    }
    at
}

/// `raw` with a backslash before each of `escapes` removed; other backslashes stay. Borrowed
/// when there is no backslash.
fn unescape<'a>(raw: &'a str, escapes: &[u8]) -> Cow<'a, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let raw = raw.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1)) {
            (b'\\', Some(next)) if escapes.contains(next) => {
                out.push(*next);
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII bytes were removed, at character boundaries of valid UTF-8.
    Cow::Owned(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// The field value starting at `start`, and where it ended (a comma, a blank or the end).
fn field_value(line: &str, start: usize) -> Result<(FieldValue, usize), String> {
    let bytes = line.as_bytes();
    if bytes.get(start) == Some(&b'"') {
        let mut value = String::new();
        let mut i = start + 1;
        let mut plain = i;
        loop {
            match bytes.get(i) {
                None => return Err("unterminated string".into()),
                Some(b'"') => break,
                Some(b'\\') if matches!(bytes.get(i + 1), Some(b'"' | b'\\')) => {
                    value.push_str(&line[plain..i]);
                    plain = i + 1;
                    i += 2;
                }
                Some(_) => i += 1,
            }
        }
        value.push_str(&line[plain..i]);
        let end = i + 1;
        if !matches!(bytes.get(end), None | Some(b',' | b' ' | b'\t')) {
            return Err("text after the closing quote of a string".into());
        }
        return Ok((FieldValue::String(value.into()), end));
    }
    if let Some(number) = plain_number(line, start) {
        return Ok(number);
    }
    let end = bytes[start..].iter().position(|b| matches!(b, b',' | b' ' | b'\t')).map_or(bytes.len(), |n| start + n);
    Ok((unquoted_value(&line[start..end])?, end))
}

/// A field value that is not a string: a number or a boolean.
fn unquoted_value(raw: &str) -> Result<FieldValue, String> {
    Ok(match raw {
        "" => return Err("missing value".into()),
        "t" | "T" | "true" | "True" | "TRUE" => FieldValue::Bool(true),
        "f" | "F" | "false" | "False" | "FALSE" => FieldValue::Bool(false),
        _ if raw.ends_with('i') => {
            let digits = &raw[..raw.len() - 1];
            if !is_integer(digits) {
                return Err(format!("invalid integer {raw:?}"));
            }
            FieldValue::I64(digits.parse().map_err(|_| format!("integer {raw:?} is out of range"))?)
        }
        _ if raw.ends_with('u') => {
            let digits = &raw[..raw.len() - 1];
            if digits.starts_with('-') || !is_integer(digits) {
                return Err(format!("invalid unsigned integer {raw:?}"));
            }
            let n: u64 = digits.parse().map_err(|_| format!("unsigned integer {raw:?} is out of range"))?;
            FieldValue::I64(
                i64::try_from(n).map_err(|_| format!("unsigned integer {raw:?} is above isobar's integer maximum {}", i64::MAX))?,
            )
        }
        _ if is_float(raw) => FieldValue::F64(raw.parse().map_err(|_| format!("invalid number {raw:?}"))?),
        _ => return Err(format!("invalid field value {raw:?} (a string must be in double quotes)")),
    })
}

/// Powers of ten that a plain decimal's fraction divides by: each is an exact double.
const POW10: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];

/// The numbers sensors send, read without the general path: a float in plain decimal notation
/// (`-12.375`) or an integer with its `i` (`42i`), of at most 19 digits, ending where a field
/// value ends; and where it ended. A float of at most 15 digits is their integer divided by a
/// power of ten, both exact doubles, so one division rounds as `str::parse` does; a longer one
/// goes to `str::parse` without the general path's checks. `None` for anything else, which
/// the general path reads or refuses.
fn plain_number(line: &str, start: usize) -> Option<(FieldValue, usize)> {
    let bytes = line.as_bytes();
    let negative = bytes.get(start) == Some(&b'-');
    let mut i = start + usize::from(negative);
    let (mut mantissa, mut digits, mut dot) = (0u64, 0usize, None);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'0'..=b'9' if digits < 19 => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                digits += 1;
            }
            b'.' if dot.is_none() => dot = Some(digits),
            _ => break,
        }
        i += 1;
    }
    let integer = bytes.get(i) == Some(&b'i');
    let end = i + usize::from(integer);
    if digits == 0 || !matches!(bytes.get(end), None | Some(b',' | b' ' | b'\t')) {
        return None;
    }
    if integer {
        let n = i64::try_from(mantissa).ok().filter(|_| dot.is_none())?;
        return Some((FieldValue::I64(if negative { -n } else { n }), end));
    }
    let value = match digits <= 15 {
        true => mantissa as f64 / POW10[digits - dot.unwrap_or(digits)],
        false => line[start + usize::from(negative)..i].parse().ok()?,
    };
    Some((FieldValue::F64(if negative { -value } else { value }), end))
}

/// An optional `-` and one or more ASCII digits.
fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// An optional `-`, digits with at most one `.` (at least one digit), and an optional
/// exponent: what InfluxDB takes as a float (no `NaN`, no infinities, no leading `+`).
fn is_float(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next().unwrap_or_default();
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(whole) && digits(fraction) && whole.len() + fraction.len() > 0;
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// A line's timestamp in `precision`, in nanoseconds.
fn timestamp(raw: &str, precision: Precision) -> Result<i64, String> {
    // Most timestamps: at most 19 digits, read in one pass; the rest, and every error, below.
    let (negative, digits) = raw.strip_prefix('-').map_or((false, raw), |d| (true, d));
    if (1..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        let n = digits.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        let time = i64::try_from(n).ok().map(|n| if negative { -n } else { n });
        if let Some(time_ns) = time.and_then(|t| t.checked_mul(precision.ns_per_unit())) {
            return Ok(time_ns);
        }
    }
    if !is_integer(raw) {
        return Err(format!("invalid timestamp {raw:?}"));
    }
    raw.parse::<i64>().ok().and_then(|t| t.checked_mul(precision.ns_per_unit())).ok_or_else(|| format!("timestamp {raw:?} is out of range"))
}

#[cfg(test)]
#[path = "line_protocol_tests.rs"]
mod tests;
