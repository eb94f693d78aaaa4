//! COPY's rows: `COPY ... FROM STDIN` data in text or CSV format, split into records (CSV
//! quotes may hold newlines) and fields, whatever message boundaries the client chose. Plain
//! Rust with no dependencies, so the fuzz target `copy_rows` compiles this file as it is.

/// Rows parsed before they are written.
pub(crate) const COPY_ROWS_PER_WRITE: usize = 10_000;
/// Bytes of one unfinished row held while waiting for its end.
pub(crate) const COPY_ROW_BYTES_MAX: usize = 16 << 20;

/// How the rows are spelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyFormat {
    pub(crate) csv: bool,
    pub(crate) delimiter: char,
    pub(crate) null: String,
    pub(crate) header: bool,
    pub(crate) quote: char,
    pub(crate) escape: char,
}

/// A COPY in progress on one connection.
#[derive(Debug)]
pub(crate) struct CopyIn {
    pub(crate) table: String,
    pub(crate) columns: Vec<String>,
    format: CopyFormat,
    /// Bytes after the last complete row.
    pending: Vec<u8>,
    rows: Vec<Vec<Option<String>>>,
    /// Lines consumed so far (for error messages and the header).
    lines: usize,
    /// Rows written so far.
    pub(crate) written: u64,
    /// The first error; later data is read and dropped until CopyDone.
    pub(crate) error: Option<String>,
}

impl CopyIn {
    /// A COPY of `columns` of `table` in `format`, before any data.
    pub(crate) fn new(table: String, columns: Vec<String>, format: CopyFormat) -> Self {
        Self { table, columns, format, pending: Vec::new(), rows: Vec::new(), lines: 0, written: 0, error: None }
    }

    /// Takes a CopyData payload; returns the rows ready to write, if enough have arrived.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(end) = record_end(&self.pending[start..], &self.format).map(|e| start + e) {
            let line = std::str::from_utf8(&self.pending[start..end]).map_err(|_| format!("line {}: not UTF-8", self.lines + 1))?;
            let line = line.strip_suffix('\r').unwrap_or(line).to_owned();
            start = end + 1;
            self.take_line(&line)?;
        }
        self.pending.drain(..start);
        if self.pending.len() > COPY_ROW_BYTES_MAX {
            return Err(format!("line {}: a row longer than {COPY_ROW_BYTES_MAX} bytes", self.lines + 1));
        }
        Ok(())
    }

    /// Ends the input: the last line may lack its newline.
    pub(crate) fn finish(&mut self) -> Result<(), String> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let line = std::str::from_utf8(&rest).map_err(|_| format!("line {}: not UTF-8", self.lines + 1))?;
            self.take_line(line.strip_suffix('\r').unwrap_or(line))?;
        }
        Ok(())
    }

    fn take_line(&mut self, line: &str) -> Result<(), String> {
        self.lines += 1;
        if (self.format.header && self.lines == 1) || line == "\\." {
            return Ok(());
        }
        let fields = if self.format.csv { split_csv(line, &self.format) } else { split_text(line, &self.format) };
        let fields = fields.map_err(|e| format!("line {}: {e}", self.lines))?;
        if fields.len() != self.columns.len() {
            return Err(format!("line {}: {} values for {} columns", self.lines, fields.len(), self.columns.len()));
        }
        self.rows.push(fields);
        Ok(())
    }

    /// Rows parsed and not yet written, when there are enough (or `all`), with the number of
    /// lines before the first of them.
    pub(crate) fn ready_rows(&mut self, all: bool) -> Option<(Vec<Vec<Option<String>>>, usize)> {
        if self.rows.is_empty() || (!all && self.rows.len() < COPY_ROWS_PER_WRITE) {
            return None;
        }
        // Lines before this batch's first row (its rows are numbered from there in errors).
        let lines_before = self.lines - self.rows.len();
        Some((std::mem::take(&mut self.rows), lines_before))
    }
}

/// Where the first complete record in `bytes` ends (its `\n`), honouring CSV quotes.
pub(crate) fn record_end(bytes: &[u8], format: &CopyFormat) -> Option<usize> {
    if !format.csv {
        return bytes.iter().position(|b| *b == b'\n');
    }
    let quote = u8::try_from(format.quote).unwrap_or(b'"');
    let mut quoted = false;
    for (i, b) in bytes.iter().enumerate() {
        if *b == quote {
            quoted = !quoted; // a doubled quote toggles twice
        } else if *b == b'\n' && !quoted {
            return Some(i);
        }
    }
    None
}

/// Text format: delimiter-separated, `\N` for NULL, backslash escapes.
pub(crate) fn split_text(line: &str, format: &CopyFormat) -> Result<Vec<Option<String>>, String> {
    line.split(format.delimiter)
        .map(|raw| {
            if raw == format.null {
                return Ok(None);
            }
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('t') => out.push('\t'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('v') => out.push('\u{b}'),
                    Some(other) => out.push(other),
                    None => return Err("a backslash ends the line".into()),
                }
            }
            Ok(Some(out))
        })
        .collect()
}

/// CSV: quoted fields may hold delimiters, quotes (doubled) and newlines; an unquoted empty
/// field (or the NULL string) is NULL, a quoted empty one is an empty string.
pub(crate) fn split_csv(line: &str, format: &CopyFormat) -> Result<Vec<Option<String>>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == format.escape && chars.peek() == Some(&format.quote) {
                // `""` (or the escape then a quote) inside quotes is one quote.
                chars.next();
                field.push(format.quote);
            } else if c == format.quote {
                quoted = false;
            } else {
                field.push(c);
            }
        } else if c == format.quote {
            quoted = true;
            was_quoted = true;
        } else if c == format.delimiter {
            fields.push(csv_value(std::mem::take(&mut field), was_quoted, format));
            was_quoted = false;
        } else {
            field.push(c);
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(csv_value(field, was_quoted, format));
    Ok(fields)
}

fn csv_value(field: String, was_quoted: bool, format: &CopyFormat) -> Option<String> {
    (was_quoted || field != format.null).then_some(field)
}
