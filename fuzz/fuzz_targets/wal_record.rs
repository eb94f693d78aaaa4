//! Fuzzes the WAL record decoder: any bytes give a record or an error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isobar_storage::fuzzing::decode_wal_record(data);
});
