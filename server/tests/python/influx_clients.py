"""InfluxDB's official Python clients writing to a running isobar over its HTTP listener, the
rows read back over SQL with psycopg.

influxdb-client speaks the v2 API (token, org, bucket, gzip, synchronous and batched writes);
influxdb speaks v1 (database, basic auth, CREATE DATABASE before writing). Run by
server/tests/python.rs with the HTTP port, the Postgres port, and a user and password the HTTP
listener admits; exits non-zero with the failing check on the first mismatch.
"""

import datetime
import sys

import influxdb
import influxdb_client
import psycopg
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.write_api import SYNCHRONOUS, WriteOptions

http_port, pg_port, user, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
url = f"http://127.0.0.1:{http_port}"
start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
Point = influxdb_client.Point

# v2: the compatibility token is `user:password`, as InfluxDB 1.8 and 3 take it.
with influxdb_client.InfluxDBClient(url=url, token=f"{user}:{password}", org="acme", enable_gzip=True) as client:
    assert client.ping(), "v2 ping"
    write = client.write_api(write_options=SYNCHRONOUS)
    write.write(
        bucket="fleet",
        record=[
            Point("weather").tag("station", "a b").tag("sensor", "t,1").field("value", 21.5).field("count", 3).time(start),
            Point("weather").tag("station", "a b").tag("sensor", "t,1").field("value", 22.0).field("ok", True).time(
                start + datetime.timedelta(seconds=1)
            ),
        ],
    )
    # Line protocol text and dictionaries, in seconds.
    write.write(
        bucket="fleet",
        record=f"weather,station=c,sensor=h value=40.25,note=\"dry \\\"air\\\"\" {int(start.timestamp()) + 2}",
        write_precision="s",
    )
    write.write(
        bucket="fleet",
        record={"measurement": "weather", "tags": {"station": "c", "sensor": "h"}, "fields": {"value": 41.0}, "time": start + datetime.timedelta(seconds=3)},
    )
    # A type conflict: InfluxDB answers 400 and the client raises with its message.
    try:
        write.write(bucket="fleet", record=Point("weather").tag("station", "c").field("value", "wet").time(start))
        raise AssertionError("a string into a float column was accepted")
    except InfluxDBError as e:
        assert e.response.status == 400 and "partial write" in e.message, f"v2 error: {e.response.status} {e.message}"
    # A batching writer flushes on close.
    with client.write_api(write_options=WriteOptions(batch_size=50, flush_interval=10_000)) as batched:
        for i in range(120):
            batched.write(bucket="fleet", record=Point("batched").tag("sensor", f"s{i % 4}").field("value", float(i)).time(start + datetime.timedelta(seconds=i)))

# A wrong token is refused.
with influxdb_client.InfluxDBClient(url=url, token=f"{user}:wrong", org="acme") as client:
    try:
        client.write_api(write_options=SYNCHRONOUS).write(bucket="fleet", record="weather value=1")
        raise AssertionError("a wrong token was admitted")
    except InfluxDBError as e:
        assert e.response.status == 401, f"wrong token: {e.response.status}"

# v1: CREATE DATABASE first, as the client's users do, then points in seconds; gzip too.
for gzip in (False, True):
    v1 = influxdb.InfluxDBClient(host="127.0.0.1", port=http_port, username=user, password=password, database="fleet", gzip=gzip)
    assert v1.ping(), "v1 ping names a version"
    v1.create_database("fleet")
    points = [
        {
            "measurement": "v1",
            "tags": {"station": "gz" if gzip else "plain"},
            "time": int(start.timestamp()) + i,
            "fields": {"value": i * 1.5, "n": i},
        }
        for i in range(10)
    ]
    assert v1.write_points(points, time_precision="s"), "v1 write"
    try:
        v1.write_points([{"measurement": "v1", "tags": {"station": "x"}, "fields": {"value": "text"}}])
        raise AssertionError("a string into a float column was accepted over v1")
    except influxdb.exceptions.InfluxDBClientError as e:
        assert e.code == 400 and "partial write" in str(e), f"v1 error: {e}"
    v1.close()

with psycopg.connect(f"host=127.0.0.1 port={pg_port} user=isobar dbname=isobar", autocommit=True) as conn:
    rows = conn.execute('SELECT time, station, sensor, value, "count", ok, note FROM weather ORDER BY time').fetchall()
    expected = [
        (start, "a b", "t,1", 21.5, 3, None, None),
        (start + datetime.timedelta(seconds=1), "a b", "t,1", 22.0, None, True, None),
        (start + datetime.timedelta(seconds=2), "c", "h", 40.25, None, None, 'dry "air"'),
        (start + datetime.timedelta(seconds=3), "c", "h", 41.0, None, None, None),
    ]
    assert rows == expected, f"v2 rows: {rows}"
    batched = conn.execute("SELECT sensor, count(*), sum(value) FROM batched GROUP BY sensor ORDER BY sensor").fetchall()
    assert batched == [(f"s{k}", 30, float(sum(range(k, 120, 4)))) for k in range(4)], f"batched rows: {batched}"
    v1_rows = conn.execute("SELECT station, count(*), sum(n), max(value) FROM v1 GROUP BY station ORDER BY station").fetchall()
    assert v1_rows == [("gz", 10, 45, 13.5), ("plain", 10, 45, 13.5)], f"v1 rows: {v1_rows}"
print("influxdb clients ok")
