//! Fuzzes COPY's row parser (`server/src/copy/rows.rs`, compiled here as it is): any bytes, in
//! text or CSV format and split into messages anywhere, give rows or an error naming the line,
//! never a panic.
#![no_main]

#[path = "../../server/src/copy/rows.rs"]
#[allow(dead_code)]
mod rows;

use rows::{CopyFormat, CopyIn};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let csv = selector & 1 == 1;
    let format = CopyFormat {
        csv,
        delimiter: if csv { ',' } else { '\t' },
        null: if csv { String::new() } else { "\\N".into() },
        header: selector & 2 == 2,
        quote: '"',
        escape: if selector & 4 == 4 { '\\' } else { '"' },
    };
    let mut copy = CopyIn::new("t".into(), vec!["time".into(), "s".into(), "v".into()], format);
    // The next byte says where the input splits into two CopyData messages.
    let cut = rest.first().map_or(0, |b| usize::from(*b)).min(rest.len());
    let fed = copy.feed(&rest[..cut]).and_then(|()| copy.feed(&rest[cut..])).and_then(|()| copy.finish());
    if fed.is_ok() {
        let _ = copy.ready_rows(true);
    }
});
