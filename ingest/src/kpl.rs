//! Records aggregated by the Kinesis Producer Library (KPL), taken apart into the user records
//! they carry.
//!
//! An aggregated record is the magic bytes `F3 89 9A C2`, a protobuf `AggregatedRecord`, and the
//! 16-byte MD5 of the protobuf bytes (awslabs/amazon-kinesis-producer, `aggregation-format.md`):
//!
//! ```text
//! message AggregatedRecord { repeated string partition_key_table = 1;
//!                            repeated string explicit_hash_key_table = 2;
//!                            repeated Record records = 3; }
//! message Record { required uint64 partition_key_index = 1; optional uint64 explicit_hash_key_index = 2;
//!                  required bytes data = 3; repeated Tag tags = 4; }
//! ```
//!
//! As the Kinesis Client Library does, a record without the magic, or whose MD5 does not match,
//! is one plain record. One whose checksum matches but whose protobuf is broken is an error: the
//! producer meant it as an aggregate, and guessing its records would store garbage.

use md5::{Digest, Md5};

/// The first bytes of an aggregated record.
const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Bytes of the MD5 checksum at its end.
const CHECKSUM_BYTES: usize = 16;

/// One user record of a Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord<'a> {
    pub partition_key: &'a str,
    pub data: &'a [u8],
    /// Its place in the aggregate; `None` for a record that was not aggregated.
    pub sub_sequence_number: Option<u64>,
}

/// `protobuf` as the KPL puts an aggregate: behind the magic, followed by its MD5.
pub fn checksummed(protobuf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + protobuf.len() + CHECKSUM_BYTES);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(protobuf);
    out.extend_from_slice(&Md5::digest(protobuf));
    out
}

/// The user records in `data`, a Kinesis record put with `partition_key`; or why an aggregate
/// cannot be read.
pub fn user_records<'a>(partition_key: &'a str, data: &'a [u8]) -> Result<Vec<UserRecord<'a>>, String> {
    let plain = || Ok(vec![UserRecord { partition_key, data, sub_sequence_number: None }]);
    let Some(rest) = data.strip_prefix(&MAGIC) else { return plain() };
    let Some(body_bytes) = rest.len().checked_sub(CHECKSUM_BYTES) else { return plain() };
    let (body, checksum) = rest.split_at(body_bytes);
    if Md5::digest(body).as_slice() != checksum {
        return plain();
    }
    let aggregate = parse_aggregate(body).map_err(|e| format!("KPL-aggregated record: {e}"))?;
    aggregate
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let key = aggregate.partition_keys.get(r.partition_key_index).ok_or_else(|| {
                format!(
                    "KPL-aggregated record: user record {i} names partition key {} of {}",
                    r.partition_key_index,
                    aggregate.partition_keys.len()
                )
            })?;
            Ok(UserRecord { partition_key: key, data: r.data, sub_sequence_number: Some(i as u64) })
        })
        .collect()
}

#[derive(Debug, Default)]
struct Aggregate<'a> {
    partition_keys: Vec<&'a str>,
    records: Vec<Record<'a>>,
}

#[derive(Debug)]
struct Record<'a> {
    partition_key_index: usize,
    data: &'a [u8],
}

fn parse_aggregate(bytes: &[u8]) -> Result<Aggregate<'_>, String> {
    let mut aggregate = Aggregate::default();
    let mut fields = Fields { bytes };
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Bytes(b)) => {
                aggregate.partition_keys.push(std::str::from_utf8(b).map_err(|_| "a partition key is not UTF-8".to_owned())?)
            }
            (3, Value::Bytes(b)) => aggregate.records.push(parse_record(b)?),
            // Explicit hash keys say which shard a user record was meant for; isobar reads them all.
            (2, Value::Bytes(_)) => {}
            (1..=3, _) => return Err(format!("field {number} has the wrong wire type")),
            _ => {}
        }
    }
    Ok(aggregate)
}

fn parse_record(bytes: &[u8]) -> Result<Record<'_>, String> {
    let (mut key, mut data) = (None, None);
    let mut fields = Fields { bytes };
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Varint(v)) => key = Some(usize::try_from(v).map_err(|_| "a partition key index is too large")?),
            (3, Value::Bytes(b)) => data = Some(b),
            (1 | 3, _) => return Err(format!("user record field {number} has the wrong wire type")),
            _ => {}
        }
    }
    match (key, data) {
        (Some(partition_key_index), Some(data)) => Ok(Record { partition_key_index, data }),
        _ => Err("a user record lacks its partition key index or data".into()),
    }
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one protobuf message, in order.
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "a length is too large".to_owned())?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            wire => return Err(format!("unsupported protobuf wire type {wire}")),
        };
        Ok(Some((key >> 3, value)))
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for (i, byte) in self.bytes.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                self.bytes = &self.bytes[i + 1..];
                return Ok(value);
            }
        }
        Err("the protobuf is truncated (a varint runs off its end)".into())
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if len > self.bytes.len() {
            return Err(format!("the protobuf is truncated ({len} bytes announced, {} left)", self.bytes.len()));
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes_field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        varint(out, number << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    /// The protobuf of an aggregate of `records` (partition key, data), keys deduplicated.
    fn protobuf(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut keys: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for (key, _) in records {
            if !keys.contains(key) {
                keys.push(key);
                bytes_field(&mut out, 1, key.as_bytes());
            }
        }
        for (key, data) in records {
            let mut record = Vec::new();
            varint(&mut record, 1 << 3);
            varint(&mut record, keys.iter().position(|k| k == key).expect("listed") as u64);
            bytes_field(&mut record, 3, data);
            bytes_field(&mut record, 4, b"\x0a\x01k"); // a tag, skipped
            bytes_field(&mut out, 3, &record);
        }
        out
    }

    /// What the KPL puts for `records`.
    fn aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
        checksummed(&protobuf(records))
    }

    #[test]
    fn an_aggregate_gives_its_user_records_with_their_keys_and_sub_sequence_numbers() {
        let blob = aggregate(&[("st1", b"{\"v\":1}"), ("st2", b"{\"v\":2}"), ("st1", b"{\"v\":3}")]);
        let records = user_records("outer", &blob).expect("valid");
        let seen: Vec<(&str, &[u8], Option<u64>)> = records.iter().map(|r| (r.partition_key, r.data, r.sub_sequence_number)).collect();
        assert_eq!(
            seen,
            vec![("st1", &b"{\"v\":1}"[..], Some(0)), ("st2", &b"{\"v\":2}"[..], Some(1)), ("st1", &b"{\"v\":3}"[..], Some(2))]
        );
    }

    #[test]
    fn a_record_without_the_magic_or_with_a_bad_checksum_is_one_plain_record() {
        let plain = user_records("k", b"{\"v\":1}").expect("plain");
        assert_eq!(plain, vec![UserRecord { partition_key: "k", data: b"{\"v\":1}", sub_sequence_number: None }]);
        let mut blob = aggregate(&[("a", b"1")]);
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let records = user_records("k", &blob).expect("bad checksum: plain");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].data, &blob[..]);
        assert_eq!(user_records("k", &MAGIC).expect("too short").len(), 1);
    }

    #[test]
    fn a_broken_aggregate_with_a_good_checksum_is_an_error() {
        let body = protobuf(&[("a", b"12345")]);
        for cut in [body.len() - 1, 2] {
            let blob = checksummed(&body[..cut]);
            let err = user_records("k", &blob).expect_err("truncated");
            assert!(err.contains("truncated") || err.contains("lacks"), "{err}");
        }
        // A user record naming a partition key the table does not have.
        let mut record = Vec::new();
        varint(&mut record, 1 << 3);
        varint(&mut record, 7);
        bytes_field(&mut record, 3, b"x");
        let mut body = Vec::new();
        bytes_field(&mut body, 3, &record);
        assert!(user_records("k", &checksummed(&body)).expect_err("bad index").contains("partition key 7 of 0"));
    }
}
