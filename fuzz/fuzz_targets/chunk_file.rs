//! Fuzzes whole chunk files: open, check the footer and read every block. Checksums reject
//! most mutations early; the footer and block decoders have their own targets.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fuzz.chunk");
    std::fs::write(&path, data).expect("write");
    let _ = isobar_storage::fuzzing::read_chunk_file(&path);
});
