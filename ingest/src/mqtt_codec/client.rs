//! The client's side of MQTT 3.1.1: the packets isobar sends as a client (to publish, as the
//! fleet simulator does, or to subscribe to an external broker) and the ones a broker answers
//! with. Decoding follows the same rules as the listener's: whole packets only, every length
//! checked.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Body, CodecError, LEVEL_V311, Packet, Publish, decode, err, fixed_header, header, read_oversize, take_packet};

/// A packet a broker sends to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerPacket {
    /// `session_present`, and the return code (0: accepted).
    ConnAck {
        session_present: bool,
        code: u8,
    },
    PubAck {
        pkid: u16,
    },
    PubRec {
        pkid: u16,
    },
    PubRel {
        pkid: u16,
    },
    PubComp {
        pkid: u16,
    },
    /// One return code per filter: the granted QoS, or 0x80 for a refusal.
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    Publish(Publish),
    PingResp,
    /// A PUBLISH above the packet limit, read in part: the reader discards the next
    /// `skip_bytes` bytes.
    Oversize {
        publish: Publish,
        body_bytes: usize,
        skip_bytes: usize,
    },
}

/// The next whole packet from a broker in `buf` (consumed), `Ok(None)` when more bytes are
/// needed.
pub fn read(buf: &mut BytesMut, packet_bytes_max: usize) -> Result<Option<BrokerPacket>, CodecError> {
    let Some((header_len, body_len)) = fixed_header(buf)? else { return Ok(None) };
    if body_len > packet_bytes_max {
        // Read in part and acknowledged, or the broker would deliver it again at every reconnect.
        return Ok(match read_oversize(buf, header_len, body_len, packet_bytes_max, false)? {
            Some(Packet::Oversize { publish, body_bytes, skip_bytes }) => Some(BrokerPacket::Oversize { publish, body_bytes, skip_bytes }),
            _ => None,
        });
    }
    let Some((first, body)) = take_packet(buf, header_len, body_len) else { return Ok(None) };
    let pkid = |body: &Bytes| Body(body.clone()).u16();
    Ok(Some(match first >> 4 {
        2 => {
            let mut b = Body(body);
            BrokerPacket::ConnAck { session_present: b.u8()? & 0x01 != 0, code: b.u8()? }
        }
        3 => match decode(first, body, false)? {
            Packet::Publish(p) => BrokerPacket::Publish(p),
            _ => return err("a PUBLISH that does not decode as one"),
        },
        4 => BrokerPacket::PubAck { pkid: pkid(&body)? },
        5 => BrokerPacket::PubRec { pkid: pkid(&body)? },
        6 => BrokerPacket::PubRel { pkid: pkid(&body)? },
        7 => BrokerPacket::PubComp { pkid: pkid(&body)? },
        9 => {
            let mut b = Body(body);
            BrokerPacket::SubAck { pkid: b.u16()?, codes: b.0.to_vec() }
        }
        13 => BrokerPacket::PingResp,
        t => return err(format!("packet type {t} from a broker")),
    }))
}

/// How a client connects.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub client_id: String,
    /// Start a new session (true) or resume the broker's session for `client_id` (false).
    pub clean_session: bool,
    pub keep_alive_s: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

fn put_string(out: &mut BytesMut, s: &[u8]) {
    out.put_u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
    out.put_slice(&s[..s.len().min(usize::from(u16::MAX))]);
}

/// CONNECT, MQTT 3.1.1.
pub fn connect(out: &mut BytesMut, options: &ConnectOptions) {
    let mut body = BytesMut::new();
    put_string(&mut body, b"MQTT");
    body.put_u8(LEVEL_V311);
    let mut flags = 0u8;
    if options.clean_session {
        flags |= 0x02;
    }
    if options.username.is_some() {
        flags |= 0x80;
    }
    if options.password.is_some() {
        flags |= 0x40;
    }
    body.put_u8(flags);
    body.put_u16(options.keep_alive_s);
    put_string(&mut body, options.client_id.as_bytes());
    for field in [&options.username, &options.password].into_iter().flatten() {
        put_string(&mut body, field.as_bytes());
    }
    header(out, 0x10, body.len());
    out.put_slice(&body);
}

/// PUBLISH of `payload` to `topic`; `pkid` is ignored at QoS 0.
pub fn publish(out: &mut BytesMut, topic: &str, payload: &[u8], qos: u8, pkid: u16) {
    super::publish(out, LEVEL_V311, topic, payload, qos, false, pkid);
}

/// SUBSCRIBE to `filters`, each with its maximum QoS.
pub fn subscribe(out: &mut BytesMut, pkid: u16, filters: &[(String, u8)]) {
    let body_len = 2 + filters.iter().map(|(f, _)| 3 + f.len()).sum::<usize>();
    header(out, 0x82, body_len);
    out.put_u16(pkid);
    for (filter, qos) in filters {
        put_string(out, filter.as_bytes());
        out.put_u8(*qos);
    }
}

pub fn pingreq(out: &mut BytesMut) {
    header(out, 0xc0, 0);
}

pub fn disconnect(out: &mut BytesMut) {
    header(out, 0xe0, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What isobar's listener reads of what the client writes.
    fn as_listener_reads(bytes: &BytesMut, level: Option<u8>) -> Packet {
        let mut buf = bytes.clone();
        super::super::read(&mut buf, level, 1 << 20).expect("decodes").expect("whole")
    }

    #[test]
    fn the_listener_reads_what_the_client_writes() {
        let mut out = BytesMut::new();
        let options = ConnectOptions {
            client_id: "sim-1".into(),
            clean_session: false,
            keep_alive_s: 30,
            username: Some("u".into()),
            password: Some("p".into()),
        };
        connect(&mut out, &options);
        let Packet::Connect(c) = as_listener_reads(&out, None) else { panic!("a connect") };
        assert_eq!((c.client_id.as_str(), c.clean_session, c.keep_alive_s, c.username.as_deref()), ("sim-1", false, 30, Some("u")));
        assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
        for qos in [0, 1, 2] {
            let mut out = BytesMut::new();
            publish(&mut out, "weather/wa/x", b"{}", qos, 77);
            let Packet::Publish(p) = as_listener_reads(&out, Some(LEVEL_V311)) else { panic!("a publish") };
            assert_eq!((p.topic.as_str(), p.qos, p.pkid, &p.payload[..]), ("weather/wa/x", qos, if qos > 0 { 77 } else { 0 }, &b"{}"[..]));
        }
        let mut out = BytesMut::new();
        subscribe(&mut out, 5, &[("weather/#".into(), 1), ("a/+/b".into(), 0)]);
        assert_eq!(
            as_listener_reads(&out, Some(LEVEL_V311)),
            Packet::Subscribe { pkid: 5, filters: vec![("weather/#".into(), 1), ("a/+/b".into(), 0)] }
        );
    }

    #[test]
    fn the_client_reads_what_the_listener_writes() {
        let mut out = BytesMut::new();
        super::super::connack(&mut out, LEVEL_V311, 0);
        super::super::ack(&mut out, super::super::PUBACK, 9);
        super::super::suback(&mut out, LEVEL_V311, 3, &[1, 0x80]);
        super::super::pingresp(&mut out);
        let mut read_all = Vec::new();
        while let Some(p) = read(&mut out, 1024).expect("decodes") {
            read_all.push(p);
        }
        assert_eq!(
            read_all,
            [
                BrokerPacket::ConnAck { session_present: false, code: 0 },
                BrokerPacket::PubAck { pkid: 9 },
                BrokerPacket::SubAck { pkid: 3, codes: vec![1, 0x80] },
                BrokerPacket::PingResp,
            ]
        );
        assert!(read(&mut BytesMut::from(&[0x40, 0x01, 0x00][..]), 1024).is_err(), "a PUBACK without its id");
    }
}
