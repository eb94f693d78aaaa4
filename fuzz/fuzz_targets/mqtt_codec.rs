//! Fuzzes the MQTT codec: any bytes read as packets, by the listener (before CONNECT, as 3.1.1
//! and as 5) and by the client side, give packets or an error, never a panic or an allocation
//! beyond the packet limit.
#![no_main]

use bytes::BytesMut;
use isobar_ingest::mqtt_codec::{self, client};

/// The listener's packet limit.
const PACKET_BYTES_MAX: usize = 1 << 20;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let level = match selector % 3 {
        0 => None,
        1 => Some(mqtt_codec::LEVEL_V311),
        _ => Some(mqtt_codec::LEVEL_V5),
    };
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(_)) = mqtt_codec::read(&mut buf, level, PACKET_BYTES_MAX) {}
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(_)) = client::read(&mut buf, PACKET_BYTES_MAX) {}
});
