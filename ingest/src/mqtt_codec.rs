//! The MQTT packets isobar's listener reads and writes, for MQTT 3.1.1 (level 4) and 5;
//! [`client`] has the other side's, for when isobar is the client.
//!
//! Decoding never panics and never trusts a length: a packet is decoded only once all of it is
//! buffered, its size is checked against a limit first, and every field is bounds-checked.
//! MQTT 5 properties are skipped (isobar needs none of them yet), so a v5 client gets the same
//! service as a 3.1.1 one.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub mod client;

/// Protocol levels isobar speaks.
pub const LEVEL_V311: u8 = 4;
pub const LEVEL_V5: u8 = 5;

/// A decoded packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    Publish(Publish),
    PubRel {
        pkid: u16,
    },
    /// PUBACK, PUBREC or PUBCOMP from a client (it has nothing isobar waits for yet).
    Ack,
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    Disconnect,
    /// A PUBLISH above the packet limit: its topic, id and flags, and the head of its payload.
    /// The reader must discard the next `skip_bytes` bytes, the rest of the packet.
    Oversize {
        publish: Publish,
        body_bytes: usize,
        skip_bytes: usize,
    },
}

/// Bytes of an oversize PUBLISH decoded before the rest is discarded: enough for any topic
/// (at most 65,535 bytes), the packet id and the head of the payload.
const OVERSIZE_HEAD_BYTES: usize = 70_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub level: u8,
    pub client_id: String,
    pub clean_session: bool,
    pub keep_alive_s: u16,
    pub username: Option<String>,
    pub password: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub qos: u8,
    pub dup: bool,
    pub retain: bool,
    pub topic: String,
    pub pkid: u16,
    pub payload: Bytes,
}

/// Why bytes are not a packet; the connection is closed with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

fn err<T>(reason: impl Into<String>) -> Result<T, CodecError> {
    Err(CodecError(reason.into()))
}

/// Throws away what `buf` holds of the `remaining` bytes of an oversize packet (see
/// [`Packet::Oversize`]); true while more of it is still to come from the socket.
pub fn skip(buf: &mut BytesMut, remaining: &mut usize) -> bool {
    let n = (*remaining).min(buf.len());
    buf.advance(n);
    *remaining -= n;
    *remaining > 0
}

/// The next whole packet in `buf` (consumed), `Ok(None)` when more bytes are needed.
/// `level` is the connection's protocol level once CONNECT has been read.
pub fn read(buf: &mut BytesMut, level: Option<u8>, packet_bytes_max: usize) -> Result<Option<Packet>, CodecError> {
    let Some((header_len, body_len)) = fixed_header(buf)? else { return Ok(None) };
    if body_len > packet_bytes_max {
        return read_oversize(buf, header_len, body_len, packet_bytes_max, level == Some(LEVEL_V5));
    }
    let Some((first, body)) = take_packet(buf, header_len, body_len) else { return Ok(None) };
    decode(first, body, level == Some(LEVEL_V5)).map(Some)
}

/// A packet above the limit: a publish is read in part, so that it can be acknowledged and kept
/// as a dead letter, and its reader discards the rest; any other packet that large ends the
/// connection.
fn read_oversize(buf: &mut BytesMut, header_len: usize, body_len: usize, limit: usize, v5: bool) -> Result<Option<Packet>, CodecError> {
    if buf[0] >> 4 != 3 {
        return err(format!("a packet of {body_len} bytes, above the {limit} limit"));
    }
    let head = body_len.min(OVERSIZE_HEAD_BYTES);
    let Some((first, body)) = take_packet(buf, header_len, head) else { return Ok(None) };
    let Packet::Publish(publish) = decode(first, body, v5)? else {
        return err("a publish that does not decode as one");
    };
    Ok(Some(Packet::Oversize { publish, body_bytes: body_len, skip_bytes: body_len - head }))
}

/// The first byte and the next `body_len` bytes after a `header_len`-byte fixed header,
/// consumed from `buf`; `None` (with room reserved) until all of them are there.
fn take_packet(buf: &mut BytesMut, header_len: usize, body_len: usize) -> Option<(u8, Bytes)> {
    if buf.len() < header_len + body_len {
        buf.reserve(header_len + body_len - buf.len());
        return None;
    }
    let first = buf[0];
    buf.advance(header_len);
    Some((first, buf.split_to(body_len).freeze()))
}

/// `(fixed header bytes, remaining length)`, or `None` when the header is incomplete.
fn fixed_header(buf: &[u8]) -> Result<Option<(usize, usize)>, CodecError> {
    let mut len = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else { return Ok(None) };
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((2 + i, len)));
        }
    }
    err("a remaining length longer than four bytes")
}

struct Body(Bytes);

impl Body {
    fn u8(&mut self) -> Result<u8, CodecError> {
        if self.0.is_empty() {
            return err("a packet ends early");
        }
        Ok(self.0.get_u8())
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        if self.0.len() < 2 {
            return err("a packet ends early");
        }
        Ok(self.0.get_u16())
    }
    fn bytes(&mut self) -> Result<Bytes, CodecError> {
        let n = usize::from(self.u16()?);
        if self.0.len() < n {
            return err("a field runs past its packet");
        }
        Ok(self.0.split_to(n))
    }
    /// A UTF-8 string; MQTT forbids U+0000 in one (MQTT-1.5.3-2), and the connection closes.
    fn string(&mut self) -> Result<String, CodecError> {
        let s = String::from_utf8(self.bytes()?.to_vec()).or_else(|_| err("a string that is not UTF-8"))?;
        if s.contains('\0') {
            return err("a string containing U+0000");
        }
        Ok(s)
    }
    /// Skips MQTT 5 properties (a variable-length size, then that many bytes).
    fn skip_properties(&mut self) -> Result<(), CodecError> {
        let mut len = 0usize;
        for i in 0..4 {
            let b = self.u8()?;
            len |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if self.0.len() < len {
                    return err("properties run past their packet");
                }
                self.0.advance(len);
                return Ok(());
            }
        }
        err("a property length longer than four bytes")
    }
}

fn decode(first: u8, body: Bytes, v5: bool) -> Result<Packet, CodecError> {
    let flags = first & 0x0f;
    let mut b = Body(body);
    Ok(match first >> 4 {
        1 => {
            let protocol = b.string()?;
            let level = b.u8()?;
            if protocol != "MQTT" || !(level == LEVEL_V311 || level == LEVEL_V5) {
                return err(format!("protocol {protocol:?} level {level}; isobar speaks MQTT 3.1.1 and 5"));
            }
            let connect_flags = b.u8()?;
            let keep_alive_s = b.u16()?;
            if level == LEVEL_V5 {
                b.skip_properties()?;
            }
            let client_id = b.string()?;
            if connect_flags & 0x04 != 0 {
                if level == LEVEL_V5 {
                    b.skip_properties()?;
                }
                b.bytes()?;
                b.bytes()?;
            }
            let username = if connect_flags & 0x80 != 0 { Some(b.string()?) } else { None };
            let password = if connect_flags & 0x40 != 0 { Some(b.bytes()?) } else { None };
            Packet::Connect(Connect { level, client_id, clean_session: connect_flags & 0x02 != 0, keep_alive_s, username, password })
        }
        3 => {
            let qos = (flags >> 1) & 0x03;
            if qos == 3 {
                return err("PUBLISH with QoS 3");
            }
            let topic = b.string()?;
            if topic.is_empty() || topic.contains(['+', '#']) {
                return err(format!("PUBLISH to {topic:?}, which is not a topic name"));
            }
            let pkid = if qos > 0 { b.u16()? } else { 0 };
            if v5 {
                b.skip_properties()?;
            }
            Packet::Publish(Publish { qos, dup: flags & 0x08 != 0, retain: flags & 0x01 != 0, topic, pkid, payload: b.0 })
        }
        4 | 5 | 7 => Packet::Ack,
        6 => Packet::PubRel { pkid: b.u16()? },
        8 => {
            let pkid = b.u16()?;
            if v5 {
                b.skip_properties()?;
            }
            let mut filters = Vec::new();
            while !b.0.is_empty() {
                // The low two bits are the QoS; v5 keeps subscription options above them.
                filters.push((b.string()?, b.u8()? & 0x03));
            }
            if filters.is_empty() {
                return err("SUBSCRIBE without a topic filter");
            }
            Packet::Subscribe { pkid, filters }
        }
        10 => {
            let pkid = b.u16()?;
            if v5 {
                b.skip_properties()?;
            }
            let mut filters = Vec::new();
            while !b.0.is_empty() {
                filters.push(b.string()?);
            }
            Packet::Unsubscribe { pkid, filters }
        }
        12 => Packet::PingReq,
        14 => Packet::Disconnect,
        t => return err(format!("packet type {t} from a client")),
    })
}

/// Appends a fixed header for a packet of `body_len` bytes.
fn header(out: &mut BytesMut, first: u8, mut body_len: usize) {
    out.put_u8(first);
    loop {
        let mut b = (body_len & 0x7f) as u8;
        body_len >>= 7;
        if body_len > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if body_len == 0 {
            break;
        }
    }
}

/// CONNACK; `code` is 0 for accepted (the v5 reason codes for refusals differ from 3.1.1's).
pub fn connack(out: &mut BytesMut, level: u8, code: u8) {
    let v5 = level == LEVEL_V5;
    header(out, 0x20, if v5 { 3 } else { 2 });
    out.put_u8(0);
    out.put_u8(code);
    if v5 {
        out.put_u8(0);
    }
}

/// PUBACK, PUBREC or PUBCOMP: the short form both versions accept (reason: success).
pub fn ack(out: &mut BytesMut, packet_type: u8, pkid: u16) {
    header(out, packet_type << 4, 2);
    out.put_u16(pkid);
}

/// PUBACK or PUBREC with a reason code: MQTT 5's way to refuse a publish (0x87, not
/// authorized). A 3.1.1 client, which has no reason codes, gets the plain acknowledgement.
pub fn ack_with_reason(out: &mut BytesMut, level: u8, packet_type: u8, pkid: u16, reason: u8) {
    if level != LEVEL_V5 || reason == 0 {
        return ack(out, packet_type, pkid);
    }
    header(out, packet_type << 4, 3);
    out.put_u16(pkid);
    out.put_u8(reason);
}

/// MQTT 5's reason code for what a client may not do.
pub const NOT_AUTHORIZED: u8 = 0x87;

/// PUBLISH to a subscriber; `pkid` is ignored at QoS 0.
pub fn publish(out: &mut BytesMut, level: u8, topic: &str, payload: &[u8], qos: u8, retain: bool, pkid: u16) {
    let v5 = level == LEVEL_V5;
    let body_len = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + usize::from(v5) + payload.len();
    header(out, 0x30 | (qos.min(2) << 1) | u8::from(retain), body_len);
    out.put_u16(u16::try_from(topic.len()).unwrap_or(u16::MAX));
    out.put_slice(topic.as_bytes());
    if qos > 0 {
        out.put_u16(pkid);
    }
    if v5 {
        out.put_u8(0); // no properties
    }
    out.put_slice(payload);
}

pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBCOMP: u8 = 7;

/// SUBACK with one return code per filter.
pub fn suback(out: &mut BytesMut, level: u8, pkid: u16, codes: &[u8]) {
    let v5 = level == LEVEL_V5;
    header(out, 0x90, 2 + usize::from(v5) + codes.len());
    out.put_u16(pkid);
    if v5 {
        out.put_u8(0);
    }
    out.put_slice(codes);
}

/// UNSUBACK for `filters` filters.
pub fn unsuback(out: &mut BytesMut, level: u8, pkid: u16, filters: usize) {
    if level == LEVEL_V5 {
        header(out, 0xb0, 3 + filters);
        out.put_u16(pkid);
        out.put_u8(0);
        out.put_bytes(0, filters);
    } else {
        header(out, 0xb0, 2);
        out.put_u16(pkid);
    }
}

pub fn pingresp(out: &mut BytesMut) {
    header(out, 0xd0, 0);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }

    fn packet(first: u8, body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        header(&mut out, first, body.len());
        out.put_slice(body);
        out
    }

    fn connect_body(level: u8) -> Vec<u8> {
        let mut body = Vec::new();
        string(&mut body, b"MQTT");
        body.extend_from_slice(&[level, 0xc2, 0, 60]);
        if level == LEVEL_V5 {
            body.extend_from_slice(&[3, 0x21, 0, 10]); // receive maximum 10
        }
        string(&mut body, b"dev-1");
        string(&mut body, b"user");
        string(&mut body, b"secret");
        body
    }

    #[test]
    fn connect_in_both_versions() {
        for level in [LEVEL_V311, LEVEL_V5] {
            let mut buf = packet(0x10, &connect_body(level));
            let Some(Packet::Connect(c)) = read(&mut buf, None, 1024).expect("decodes") else { panic!("not CONNECT") };
            assert_eq!((c.level, c.client_id.as_str(), c.keep_alive_s, c.clean_session), (level, "dev-1", 60, true));
            assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("user"), Some(&b"secret"[..])));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn publishes_arrive_whole_or_not_at_all() {
        let mut body = Vec::new();
        string(&mut body, b"weather/wa/st-1");
        body.extend_from_slice(&7u16.to_be_bytes());
        body.extend_from_slice(b"{\"v\":1}");
        let whole = packet(0x32, &body);
        let mut buf = BytesMut::new();
        for byte in &whole[..whole.len() - 1] {
            buf.put_u8(*byte);
            assert_eq!(read(&mut buf, Some(LEVEL_V311), 1024), Ok(None));
        }
        buf.put_u8(whole[whole.len() - 1]);
        let expected = Publish {
            qos: 1,
            dup: false,
            retain: false,
            topic: "weather/wa/st-1".into(),
            pkid: 7,
            payload: Bytes::from_static(b"{\"v\":1}"),
        };
        assert_eq!(read(&mut buf, Some(LEVEL_V311), 1024), Ok(Some(Packet::Publish(expected))));
    }

    #[test]
    fn an_oversize_publish_is_read_in_part_and_the_rest_skipped() {
        let mut body = Vec::new();
        string(&mut body, b"weather/big");
        body.extend_from_slice(&9u16.to_be_bytes());
        body.extend(std::iter::repeat_n(b'x', 3 * OVERSIZE_HEAD_BYTES));
        let mut buf = packet(0x32, &body);
        buf.put_slice(&packet(0xc0, &[])); // a PINGREQ after it
        let Ok(Some(Packet::Oversize { publish, body_bytes, skip_bytes })) = read(&mut buf, Some(LEVEL_V311), 1024) else {
            panic!("an oversize publish");
        };
        assert_eq!((publish.topic.as_str(), publish.pkid, publish.qos), ("weather/big", 9, 1));
        assert_eq!(body_bytes, body.len());
        assert_eq!(OVERSIZE_HEAD_BYTES + skip_bytes, body.len());
        buf.advance(skip_bytes);
        assert_eq!(read(&mut buf, Some(LEVEL_V311), 1024), Ok(Some(Packet::PingReq)));
    }

    #[test]
    fn refusals() {
        let mut body = Vec::new();
        string(&mut body, b"a/+");
        body.extend_from_slice(b"x");
        assert!(read(&mut packet(0x30, &body), Some(LEVEL_V311), 1024).is_err(), "wildcard topic");
        assert!(read(&mut packet(0x36, &body), Some(LEVEL_V311), 1024).is_err(), "QoS 3");
        assert!(read(&mut packet(0x82, &[0; 100]), Some(LEVEL_V311), 50).is_err(), "a subscribe over the limit");
        let mut old = connect_body(LEVEL_V311);
        old[6] = 3;
        assert!(read(&mut packet(0x10, &old), None, 1024).is_err(), "MQTT 3.1");
        assert!(read(&mut BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01][..]), None, 1024).is_err(), "five-byte length");
    }

    #[test]
    fn acks_encode_as_the_spec_says() {
        let mut out = BytesMut::new();
        connack(&mut out, LEVEL_V311, 0);
        ack(&mut out, PUBACK, 0x0102);
        suback(&mut out, LEVEL_V5, 9, &[0x80]);
        pingresp(&mut out);
        assert_eq!(&out[..], &[0x20, 2, 0, 0, 0x40, 2, 1, 2, 0x90, 4, 0, 9, 0, 0x80, 0xd0, 0]);
    }

    proptest! {
        #[test]
        fn any_bytes_give_a_packet_an_error_or_a_wait(bytes in prop::collection::vec(any::<u8>(), 0..300), v5 in any::<bool>()) {
            let mut buf = BytesMut::from(&bytes[..]);
            let level = if v5 { LEVEL_V5 } else { LEVEL_V311 };
            while let Ok(Some(_)) = read(&mut buf, Some(level), 256) {}
        }
    }
}
