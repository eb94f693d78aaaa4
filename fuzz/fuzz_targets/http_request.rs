//! Fuzzes the HTTP listener's request head parser (`server/src/http/request.rs`, compiled here
//! as it is): any bytes give a request or a refusal, never a panic.
#![no_main]

#[path = "../../server/src/http/request.rs"]
#[allow(dead_code)]
mod request;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let end = request::head_end(data).unwrap_or(data.len());
    if let Ok(head) = request::parse_head(&data[..end]) {
        let _ = head.header("authorization");
    }
});
