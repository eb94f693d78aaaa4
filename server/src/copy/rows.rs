//! COPY's rows: `COPY ... FROM STDIN` data in text, CSV or binary format, split into records
//! (CSV quotes may hold newlines; binary tuples are length-prefixed) and fields, whatever
//! message boundaries the client chose. Rows are pulled one at a time into one reused buffer,
//! so parsing allocates nothing per row. Plain Rust with no dependencies, so the fuzz target
//! `copy_rows` compiles this file as it is.

/// Rows parsed before they are written.
pub(crate) const COPY_ROWS_PER_WRITE: usize = 16_384;
/// Bytes of one unfinished row held while waiting for its end.
pub(crate) const COPY_ROW_BYTES_MAX: usize = 16 << 20;
/// What a binary COPY starts with.
const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// The three formats of COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyKind {
    Text,
    Csv,
    Binary,
}

/// How the rows are spelled. Delimiter, quote and escape are single ASCII characters, as
/// PostgreSQL requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyFormat {
    pub(crate) kind: CopyKind,
    pub(crate) delimiter: u8,
    pub(crate) null: String,
    pub(crate) header: bool,
    pub(crate) quote: u8,
    pub(crate) escape: u8,
}

/// One field of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field<'a> {
    Null,
    /// A text or CSV field (the record was valid UTF-8 and the field is cut on characters).
    Text(&'a str),
    /// A binary field, or a text field that is not UTF-8 on its own.
    Bytes(&'a [u8]),
}

impl<'a> Field<'a> {
    /// The field's bytes; `None` for NULL. (What the tests and the fuzz target compare.)
    #[allow(dead_code)]
    pub(crate) fn bytes(self) -> Option<&'a [u8]> {
        match self {
            Self::Null => None,
            Self::Text(s) => Some(s.as_bytes()),
            Self::Bytes(b) => Some(b),
        }
    }
}

/// One row's fields, in a buffer reused from row to row: bytes while they are parsed, text
/// once a text or CSV record is checked to be UTF-8 (once per record, not per field).
#[derive(Debug, Default)]
pub(crate) struct Fields {
    bytes: Vec<u8>,
    text: String,
    /// Whether `text` holds the fields (else `bytes` does).
    is_text: bool,
    spans: Vec<Option<(usize, usize)>>,
}

impl Fields {
    /// Number of fields.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Field `i`.
    pub(crate) fn get(&self, i: usize) -> Field<'_> {
        let Some((start, end)) = self.spans.get(i).copied().flatten() else { return Field::Null };
        if !self.is_text {
            return self.bytes.get(start..end).map_or(Field::Null, Field::Bytes);
        }
        match self.text.get(start..end) {
            Some(s) => Field::Text(s),
            None => self.text.as_bytes().get(start..end).map_or(Field::Null, Field::Bytes),
        }
    }

    fn clear(&mut self) {
        if self.is_text {
            self.bytes = std::mem::take(&mut self.text).into_bytes();
            self.is_text = false;
        }
        self.bytes.clear();
        self.spans.clear();
    }

    /// Checks the parsed bytes are UTF-8 and makes them the fields' text.
    fn seal_text(&mut self) -> Result<(), String> {
        match String::from_utf8(std::mem::take(&mut self.bytes)) {
            Ok(text) => {
                self.text = text;
                self.is_text = true;
                Ok(())
            }
            Err(e) => {
                self.bytes = e.into_bytes();
                Err("not UTF-8".into())
            }
        }
    }

    fn start(&self) -> usize {
        self.bytes.len()
    }

    fn end_field(&mut self, start: usize, null: bool) {
        self.spans.push((!null).then_some((start, self.bytes.len())));
    }
}

/// The rows of a COPY in progress, parsed as its data arrives.
#[derive(Debug)]
pub(crate) struct RowParser {
    format: CopyFormat,
    columns: usize,
    /// Bytes received and not yet parsed start at `start`.
    pending: Vec<u8>,
    start: usize,
    /// Records consumed so far, the header included (for error messages).
    records: usize,
    /// Bytes after `start` already tried without finding a record's end: a record is only
    /// tried again once a newline arrives after them, so a long row sent in many messages is
    /// not parsed again for each.
    tried: usize,
    /// No more data comes: the last record may lack its newline.
    finished: bool,
    /// The data said it ended (`\.`, the binary trailer); the rest is ignored.
    ended: bool,
    /// A binary COPY's header is read.
    header_read: bool,
    fields: Fields,
}

impl RowParser {
    /// Rows of `columns` fields in `format`, before any data.
    pub(crate) fn new(columns: usize, format: CopyFormat) -> Self {
        Self {
            format,
            columns,
            pending: Vec::new(),
            start: 0,
            records: 0,
            tried: 0,
            finished: false,
            ended: false,
            header_read: false,
            fields: Fields::default(),
        }
    }

    /// Takes a CopyData payload.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        if self.ended {
            return Ok(());
        }
        self.pending.drain(..self.start);
        self.start = 0;
        self.pending.extend_from_slice(data);
        if self.pending.len() > COPY_ROW_BYTES_MAX {
            return Err(format!("{}: a row longer than {COPY_ROW_BYTES_MAX} bytes", self.position(1)));
        }
        Ok(())
    }

    /// Ends the input: the last record may lack its newline. Rows are still pulled with
    /// [`RowParser::next_row`].
    pub(crate) fn finish(&mut self) {
        self.finished = true;
    }

    /// "line N" (or "row N" in binary) of the record `ahead` records after the last one read.
    pub(crate) fn position(&self, ahead: usize) -> String {
        let unit = if self.format.kind == CopyKind::Binary { "row" } else { "line" };
        format!("{unit} {}", self.records + ahead)
    }

    /// Records read so far, the header included.
    pub(crate) fn records(&self) -> usize {
        self.records
    }

    /// The next complete row, if one has arrived.
    pub(crate) fn next_row(&mut self) -> Result<Option<&Fields>, String> {
        let found = match self.format.kind {
            CopyKind::Binary => self.next_tuple()?,
            CopyKind::Text | CopyKind::Csv => self.next_record()?,
        };
        Ok(found.then_some(&self.fields))
    }

    fn next_record(&mut self) -> Result<bool, String> {
        loop {
            let rest = &self.pending[self.start..];
            if self.ended || rest.is_empty() {
                return Ok(false);
            }
            if !self.finished && !rest.get(self.tried..).unwrap_or_default().contains(&b'\n') {
                self.tried = rest.len();
                return Ok(false);
            }
            let at = self.records + 1;
            if end_marker(rest, self.finished) {
                self.records = at;
                self.ended = true;
                return Ok(false);
            }
            self.fields.clear();
            let read = match self.format.kind {
                CopyKind::Csv => csv_record(rest, &self.format, self.finished, &mut self.fields),
                _ => text_record(rest, &self.format, self.finished, &mut self.fields),
            };
            let Some(read) = read.map_err(|e| format!("line {at}: {e}"))? else {
                self.tried = rest.len();
                return Ok(false);
            };
            self.start += read;
            self.tried = 0;
            self.records = at;
            if self.format.header && at == 1 {
                continue;
            }
            self.fields.seal_text().map_err(|e| format!("line {at}: {e}"))?;
            if self.fields.len() != self.columns {
                return Err(format!("line {at}: {} values for {} columns", self.fields.len(), self.columns));
            }
            return Ok(true);
        }
    }

    fn next_tuple(&mut self) -> Result<bool, String> {
        if self.ended {
            return Ok(false);
        }
        if !self.header_read {
            let Some(read) = binary_header(&self.pending[self.start..])? else {
                return if self.finished { Err("the binary COPY header is cut short".into()) } else { Ok(false) };
            };
            self.start += read;
            self.header_read = true;
        }
        let rest = &self.pending[self.start..];
        let at = self.records + 1;
        self.fields.clear();
        let read = match binary_tuple(rest, self.columns, &mut self.fields).map_err(|e| format!("row {at}: {e}"))? {
            Tuple::Row(read) => read,
            Tuple::Trailer => {
                self.ended = true;
                return Ok(false);
            }
            Tuple::Incomplete if self.finished && !rest.is_empty() => return Err(format!("row {at}: cut short")),
            Tuple::Incomplete => return Ok(false),
        };
        self.start += read;
        self.records += 1;
        Ok(true)
    }
}

/// Whether `rest` starts with the end-of-data line `\.`.
fn end_marker(rest: &[u8], finished: bool) -> bool {
    let Some(after) = rest.strip_prefix(b"\\.") else { return false };
    let after = after.strip_prefix(b"\r").unwrap_or(after);
    after.first() == Some(&b'\n') || (finished && after.is_empty())
}

/// Reads a text-format record from `rest` into `out`: the bytes it took (its newline too), or
/// `None` if its newline has not arrived (and more data may come).
pub(crate) fn text_record(rest: &[u8], format: &CopyFormat, finished: bool, out: &mut Fields) -> Result<Option<usize>, String> {
    let (line, read) = match rest.iter().position(|b| *b == b'\n') {
        Some(end) => (&rest[..end], end + 1),
        None if finished => (rest, rest.len()),
        None => return Ok(None),
    };
    split_text(line.strip_suffix(b"\r").unwrap_or(line), format, out)?;
    Ok(Some(read))
}

/// Text format: delimiter-separated, `\N` for NULL, backslash escapes (`\t`, `\n`, octal
/// `\NNN`, hex `\xHH`; any other escaped character stands for itself).
pub(crate) fn split_text(line: &[u8], format: &CopyFormat, out: &mut Fields) -> Result<(), String> {
    for raw in line.split(|b| *b == format.delimiter) {
        let start = out.start();
        if raw == format.null.as_bytes() {
            out.end_field(start, true);
            continue;
        }
        if !raw.contains(&b'\\') {
            out.bytes.extend_from_slice(raw);
            out.end_field(start, false);
            continue;
        }
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            i += 1;
            if b != b'\\' {
                out.bytes.push(b);
                continue;
            }
            let Some(&e) = raw.get(i) else { return Err("a backslash ends the line".into()) };
            i += 1;
            let byte = match e {
                b't' => b'\t',
                b'n' => b'\n',
                b'r' => b'\r',
                b'b' => 8,
                b'f' => 12,
                b'v' => 11,
                b'0'..=b'7' => escaped_number(raw, &mut i, u32::from(e - b'0'), 8),
                b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => escaped_number(raw, &mut i, 0, 16),
                other => other,
            };
            out.bytes.push(byte);
        }
        out.end_field(start, false);
    }
    Ok(())
}

/// The byte an octal (`\NNN`, up to three digits) or hex (`\xHH`, up to two) escape spells,
/// reading its digits from `raw[*i..]` after `first`; PostgreSQL keeps the low eight bits.
fn escaped_number(raw: &[u8], i: &mut usize, first: u32, radix: u32) -> u8 {
    let (mut value, mut digits) = (first, if radix == 8 { 1 } else { 0 });
    while digits < if radix == 8 { 3 } else { 2 } {
        let Some(d) = raw.get(*i).and_then(|d| char::from(*d).to_digit(radix)) else { break };
        value = value * radix + d;
        digits += 1;
        *i += 1;
    }
    u8::try_from(value & 0xff).unwrap_or(0)
}

/// Reads a CSV record from `rest` into `out` in one pass: the bytes it took (its newline
/// too), or `None` if its end has not arrived (and more data may come). Quoted fields may
/// hold delimiters, quotes (doubled, or after the escape character) and newlines; an unquoted
/// field equal to the NULL string (empty by default) is NULL, a quoted one never is; a `\r`
/// before the newline is not data.
pub(crate) fn csv_record(rest: &[u8], format: &CopyFormat, finished: bool, out: &mut Fields) -> Result<Option<usize>, String> {
    let (delimiter, quote, escape) = (format.delimiter, format.quote, format.escape);
    let mut i = 0;
    loop {
        let start = out.start();
        let raw_start = i;
        let (mut quoted, mut was_quoted) = (false, false);
        // Where the field's raw text ends, and where the record goes on (None: it ends).
        let (raw_end, next) = loop {
            let Some(&b) = rest.get(i) else {
                if !finished {
                    return Ok(None);
                }
                if quoted {
                    return Err("a quoted field is not closed".into());
                }
                break (strip_cr(rest, raw_start, i, out), None);
            };
            if quoted {
                if b == escape && i + 1 == rest.len() && !finished {
                    return Ok(None); // a doubled quote or a closing one: the next byte tells
                }
                if b == escape && rest.get(i + 1).is_some_and(|n| *n == quote || *n == escape) {
                    out.bytes.push(rest[i + 1]);
                    i += 2;
                    continue;
                }
                if b == quote {
                    quoted = false;
                } else {
                    out.bytes.push(b);
                }
                i += 1;
            } else if b == quote {
                quoted = true;
                was_quoted = true;
                i += 1;
            } else if b == delimiter {
                break (i, Some(i + 1));
            } else if b == b'\n' {
                break (strip_cr(rest, raw_start, i, out), None);
            } else {
                // A run of plain bytes at once.
                let run = rest[i..].iter().position(|c| *c == delimiter || *c == quote || *c == b'\n').map_or(rest.len(), |n| i + n);
                out.bytes.extend_from_slice(&rest[i..run]);
                i = run;
            }
        };
        out.end_field(start, !was_quoted && &rest[raw_start..raw_end] == format.null.as_bytes());
        match next {
            Some(n) => i = n,
            None => return Ok(Some((i + 1).min(rest.len()))),
        }
    }
}

/// The end of a record's last field at `end` (its newline, or the end of the data), less a
/// `\r` just before it, which is taken back out of the field's bytes too.
fn strip_cr(rest: &[u8], field_start: usize, end: usize, out: &mut Fields) -> usize {
    if end > field_start && rest[end - 1] == b'\r' && out.bytes.last() == Some(&b'\r') {
        out.bytes.pop();
        return end - 1;
    }
    end
}

/// Reads a binary COPY's header; how many bytes it took, or `None` if it has not all arrived.
fn binary_header(bytes: &[u8]) -> Result<Option<usize>, String> {
    let signature = BINARY_SIGNATURE.len();
    if bytes.len() < signature + 8 {
        if !BINARY_SIGNATURE.starts_with(&bytes[..bytes.len().min(signature)]) {
            return Err("not a binary COPY: the signature is missing".into());
        }
        return Ok(None);
    }
    if &bytes[..signature] != BINARY_SIGNATURE {
        return Err("not a binary COPY: the signature is missing".into());
    }
    let flags = be_u32(&bytes[signature..]);
    if flags & (1 << 16) != 0 {
        return Err("binary COPY with OIDs is not supported".into());
    }
    let extension = be_u32(&bytes[signature + 4..]) as usize;
    let total = signature + 8 + extension;
    Ok((bytes.len() >= total).then_some(total))
}

/// One binary tuple read, or why not.
enum Tuple {
    /// A row that took this many bytes.
    Row(usize),
    /// The end of the data (a field count of -1).
    Trailer,
    /// Not all of it has arrived.
    Incomplete,
}

/// A binary tuple: a 16-bit field count, then each field as a 32-bit length (-1 for NULL)
/// and its bytes, all big-endian.
fn binary_tuple(bytes: &[u8], columns: usize, out: &mut Fields) -> Result<Tuple, String> {
    let Some(count) = bytes.get(..2) else { return Ok(Tuple::Incomplete) };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == -1 {
        return Ok(Tuple::Trailer);
    }
    if usize::try_from(count).ok() != Some(columns) {
        return Err(format!("{count} values for {columns} columns"));
    }
    let mut at = 2;
    for _ in 0..columns {
        let Some(len) = bytes.get(at..at + 4) else { return Ok(Tuple::Incomplete) };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4;
        let start = out.start();
        if len == -1 {
            out.end_field(start, true);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| format!("a field of length {len}"))?;
        let Some(value) = bytes.get(at..at + len) else { return Ok(Tuple::Incomplete) };
        out.bytes.extend_from_slice(value);
        out.end_field(start, false);
        at += len;
    }
    Ok(Tuple::Row(at))
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}
