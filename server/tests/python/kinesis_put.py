"""Fills a local Kinesis stream for isobar's Kinesis tests, with boto3 as producers use it.

    kinesis_put.py ENDPOINT create STREAM SHARDS
    kinesis_put.py ENDPOINT put STREAM FROM TO           plain JSON readings FROM..TO
    kinesis_put.py ENDPOINT aggregate STREAM FROM TO N   readings FROM..TO in KPL aggregates of N
    kinesis_put.py ENDPOINT bad STREAM                   a record that is not JSON, one whose time
                                                         fails its cast, a corrupt KPL aggregate
    kinesis_put.py ENDPOINT split STREAM                 splits the first open shard in two
    kinesis_put.py ENDPOINT merge STREAM                 merges the first two adjacent open shards
    kinesis_put.py ENDPOINT last STREAM                  prints a line per shard: its id, whether it
                                                         is closed, its last sequence number (if any)

Reading i is sensor `s{i % 8}` at 1,700,000,000,000 ms + i s with value i, its partition key the
sensor id. The KPL format is built here from its specification (magic, protobuf, MD5).
"""

import hashlib
import json
import sys
import time

import boto3

MAGIC = b"\xf3\x89\x9a\xc2"


def client(endpoint):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="isobar",
        aws_secret_access_key="isobar",
    )


def reading(i):
    sensor = f"s{i % 8}"
    body = {"sensor_id": sensor, "station_id": f"st{i % 4}", "sensor_timestamp": 1_700_000_000_000 + i * 1000, "sensor_value": i}
    return sensor, json.dumps(body).encode()


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def aggregate(records):
    keys = []
    body = b""
    for key, _ in records:
        if key not in keys:
            keys.append(key)
            body += field(1, key.encode())
    for key, data in records:
        body += field(3, varint(1 << 3) + varint(keys.index(key)) + field(3, data))
    return MAGIC + body + hashlib.md5(body).digest()


def wait_active(k, stream):
    for _ in range(200):
        if k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.05)
    raise SystemExit(f"stream {stream} did not become active")


def open_shards(k, stream):
    shards = k.list_shards(StreamName=stream)["Shards"]
    return [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]


def main():
    endpoint, command, stream, *args = sys.argv[1:]
    k = client(endpoint)
    if command == "create":
        k.create_stream(StreamName=stream, ShardCount=int(args[0]))
        wait_active(k, stream)
    elif command == "put":
        for i in range(int(args[0]), int(args[1])):
            key, data = reading(i)
            k.put_record(StreamName=stream, PartitionKey=key, Data=data)
    elif command == "aggregate":
        start, end, per = int(args[0]), int(args[1]), int(args[2])
        for first in range(start, end, per):
            records = [reading(i) for i in range(first, min(first + per, end))]
            k.put_record(StreamName=stream, PartitionKey=records[0][0], Data=aggregate(records))
    elif command == "bad":
        k.put_record(StreamName=stream, PartitionKey="bad", Data=b"not json")
        _, data = reading(0)
        k.put_record(StreamName=stream, PartitionKey="bad", Data=data.replace(b'"sensor_timestamp": 1700000000000', b'"sensor_timestamp": "soon"'))
        body = field(1, b"k") + field(3, varint(1 << 3) + varint(0) + field(3, b"{}"))
        broken = body[:-2]
        k.put_record(StreamName=stream, PartitionKey="bad", Data=MAGIC + broken + hashlib.md5(broken).digest())
    elif command == "split":
        shard = open_shards(k, stream)[0]
        r = shard["HashKeyRange"]
        middle = (int(r["StartingHashKey"]) + int(r["EndingHashKey"])) // 2
        k.split_shard(StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str(middle))
        wait_active(k, stream)
    elif command == "merge":
        shards = sorted(open_shards(k, stream), key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
        for a, b in zip(shards, shards[1:]):
            if int(a["HashKeyRange"]["EndingHashKey"]) + 1 == int(b["HashKeyRange"]["StartingHashKey"]):
                k.merge_shards(StreamName=stream, ShardToMerge=a["ShardId"], AdjacentShardToMerge=b["ShardId"])
                wait_active(k, stream)
                break
        else:
            raise SystemExit("no adjacent open shards to merge")
    elif command == "last":
        for shard in k.list_shards(StreamName=stream)["Shards"]:
            it = k.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            last = ""
            while it:
                out = k.get_records(ShardIterator=it, Limit=10000)
                if not out["Records"]:
                    break
                last = out["Records"][-1]["SequenceNumber"]
                it = out.get("NextShardIterator")
            closed = "EndingSequenceNumber" in shard["SequenceNumberRange"]
            print(shard["ShardId"], "closed" if closed else "open", last)
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
