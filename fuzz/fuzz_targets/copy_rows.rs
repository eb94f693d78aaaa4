//! Fuzzes COPY's row parser (`server/src/copy/rows.rs`, compiled here as it is): any bytes, in
//! text, CSV or binary format and split into messages anywhere, give rows or an error naming
//! the line, never a panic; and the rows do not depend on where the messages split.
#![no_main]

#[path = "../../server/src/copy/rows.rs"]
#[allow(dead_code)]
mod rows;

use rows::{CopyFormat, CopyKind, RowParser};

fn parse(format: &CopyFormat, pieces: &[&[u8]]) -> Result<Vec<Vec<Option<Vec<u8>>>>, String> {
    let mut parser = RowParser::new(3, format.clone());
    let mut rows = Vec::new();
    for piece in pieces {
        parser.feed(piece)?;
        while let Some(fields) = parser.next_row()? {
            rows.push((0..fields.len()).map(|i| fields.get(i).bytes().map(<[u8]>::to_vec)).collect());
        }
    }
    parser.finish();
    while let Some(fields) = parser.next_row()? {
        rows.push((0..fields.len()).map(|i| fields.get(i).bytes().map(<[u8]>::to_vec)).collect());
    }
    Ok(rows)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let kind = match selector & 3 {
        0 => CopyKind::Text,
        1 => CopyKind::Csv,
        _ => CopyKind::Binary,
    };
    let csv = kind == CopyKind::Csv;
    let format = CopyFormat {
        kind,
        delimiter: if csv { b',' } else { b'\t' },
        null: if csv { String::new() } else { "\\N".into() },
        header: kind != CopyKind::Binary && selector & 4 == 4,
        quote: b'"',
        escape: if selector & 8 == 8 { b'\\' } else { b'"' },
    };
    // The next byte says where the input splits into two CopyData messages.
    let cut = rest.first().map_or(0, |b| usize::from(*b)).min(rest.len());
    let split = parse(&format, &[&rest[..cut], &rest[cut..]]);
    let whole = parse(&format, &[rest]);
    assert_eq!(split, whole, "rows and errors do not depend on message boundaries");
});
