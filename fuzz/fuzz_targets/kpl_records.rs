//! Fuzzes the KPL de-aggregation of Kinesis records: arbitrary bytes as a record's data, and the
//! same bytes behind the magic with a valid MD5 (so the protobuf parser sees them). Either gives
//! user records whose data lies inside the input, or an error; never a panic.
#![no_main]

use isobar_ingest::kpl::{checksummed, user_records};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(records) = user_records("key", data) {
        assert!(records.iter().all(|r| r.data.len() <= data.len()));
    }
    let aggregate = checksummed(data);
    if let Ok(records) = user_records("key", &aggregate) {
        assert!(records.iter().all(|r| r.data.len() <= data.len()));
    }
});
