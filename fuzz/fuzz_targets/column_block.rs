//! Fuzzes the column block decoders (validity, pco, decimal, dictionary, zstd) of every type.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let rows = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let _ = isobar_storage::fuzzing::decode_column_block(&data[2..], rows);
});
