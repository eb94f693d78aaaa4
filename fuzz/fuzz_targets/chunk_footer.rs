//! Fuzzes the chunk footer decoder with any footer bytes and data length.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let blocks_end = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let _ = isobar_storage::fuzzing::decode_chunk_footer(&data[8..], blocks_end);
});
