"""ADBC's Flight SQL driver (adbc-driver-flightsql, the Go driver behind Python's DB-API)
against a started isobar.

Usage: flight_adbc.py <flight port> [<user> <password>]

With a user, connecting without credentials and with a wrong password must be refused. Then:
queries with and without parameters (`?` and `$1`), fetched to Arrow and pandas; tables and
columns listed with adbc_get_objects and adbc_get_table_schema; INSERT through execute(); and a
bulk load of 1 M rows with adbc_ingest (create, then append) read back exactly.
"""

import datetime
import sys

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.compute as pc

port = int(sys.argv[1])
user, password = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else (None, None)
uri = f"grpc://127.0.0.1:{port}"


def connect(username=None, secret=None):
    kwargs = {}
    if username is not None:
        kwargs = {"username": username, "password": secret}
    return flightsql.connect(uri, db_kwargs=kwargs, autocommit=True)


def refused(username, secret):
    try:
        conn = connect(username, secret)
        cur = conn.cursor()
        cur.execute("SELECT 1")
        cur.fetchall()
    except adbc_driver_manager.Error as e:
        text = str(e)
        assert "UNAUTHENTICATED" in text or "Unauthenticated" in text, text
        return
    raise AssertionError(f"{username!r} got in")


if user is not None:
    refused(None, None)
    refused(user, "wrong")
    refused("nobody", password)

conn = connect(user, password)
cur = conn.cursor()

# Statements, with rows counted.
cur.execute(
    "CREATE TABLE readings (time TIMESTAMPTZ NOT NULL, station TEXT, sensor TEXT, value DOUBLE PRECISION, "
    "PRIMARY KEY (station, sensor, time))"
)
cur.execute(
    "INSERT INTO readings VALUES ('2026-03-01T00:00:00Z', 's1', 'temp', 21.5), "
    "('2026-03-01T00:01:00Z', 's1', 'temp', 22.0), ('2026-03-01T00:00:00Z', 's2', 'temp', 19.25)"
)
assert cur.rowcount == 3, cur.rowcount

# Queries: Arrow, pandas, parameters in both styles.
cur.execute("SELECT time, station, value FROM readings ORDER BY station, time")
table = cur.fetch_arrow_table()
assert table.column_names == ["time", "station", "value"], table.column_names
assert table.column("station").to_pylist() == ["s1", "s1", "s2"]
assert table.column("value").to_pylist() == [21.5, 22.0, 19.25]
assert table.schema.field("time").type == pa.timestamp("ns", tz="UTC"), table.schema

cur.execute("SELECT station, count(*) AS n, max(value) AS top FROM readings GROUP BY station ORDER BY station")
frame = cur.fetch_df()
assert frame["station"].tolist() == ["s1", "s2"] and frame["n"].tolist() == [2, 1], frame
assert frame["top"].tolist() == [22.0, 19.25], frame

cur.execute("SELECT value FROM readings WHERE station = ? AND time > ? ORDER BY time", ("s1", datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)))
assert cur.fetchall() == [(22.0,)]
cur.execute("SELECT count(*) FROM readings WHERE value > $1", (20.0,))
assert cur.fetchall() == [(2,)]
# The same prepared statement with other parameters.
for station, expected in (("s1", 2), ("s2", 1), ("s3", 0)):
    cur.execute("SELECT count(*) FROM readings WHERE station = ?", (station,))
    assert cur.fetchall() == [(expected,)], station

# An error says what is wrong.
try:
    cur.execute("SELECT nope FROM readings")
    raise AssertionError("an unknown column was taken")
except adbc_driver_manager.Error as e:
    assert "nope" in str(e), e

# Catalog calls.
schema = conn.adbc_get_table_schema("readings")
assert schema.names == ["time", "station", "sensor", "value"], schema
assert schema.field("value").type == pa.float64()
objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
assert [c["catalog_name"] for c in objects] == ["isobar"], objects
schemas = {s["db_schema_name"]: s["db_schema_tables"] for s in objects[0]["catalog_db_schemas"]}
assert {"public", "system", "information_schema"} <= set(schemas), schemas.keys()
tables = {t["table_name"]: t for t in schemas["public"]}
assert tables["readings"]["table_type"] == "BASE TABLE", tables["readings"]
assert [c["column_name"] for c in tables["readings"]["table_columns"]] == ["time", "station", "sensor", "value"]
assert "readings_1m" in tables, tables.keys()
assert "BASE TABLE" in conn.adbc_get_table_types()
info = conn.adbc_get_info()
assert info["vendor_name"] == "isobar", info

# Bulk load: 1 M rows, created then appended, read back exactly.
rows = 1_000_000
half = rows // 2
start = datetime.datetime(2026, 3, 2, tzinfo=datetime.timezone.utc)
# 100 stations, one row each per second: every (station, time) once.
times = pa.array(range(rows), pa.int64())
seconds = pc.divide(times, 100)
load = pa.table(
    {
        "time": pc.add(pa.scalar(int(start.timestamp() * 1e9), pa.int64()), pc.multiply(seconds, 1_000_000_000)).cast(
            pa.timestamp("ns", tz="UTC")
        ),
        "station": pc.cast(pc.subtract(times, pc.multiply(seconds, 100)), pa.string()),
        "reading": pc.multiply(times.cast(pa.float64()), 0.5),
        "count": times,
    }
)
assert cur.adbc_ingest("bulk", load.slice(0, half), mode="create") == half
assert cur.adbc_ingest("bulk", load.slice(half), mode="append") == rows - half
try:
    cur.adbc_ingest("bulk", load.slice(0, 10), mode="create")
    raise AssertionError("create over an existing table was taken")
except adbc_driver_manager.Error as e:
    assert "exists" in str(e), e
cur.execute("SELECT time, station, reading, count FROM bulk ORDER BY count")
back = cur.fetch_arrow_table()
assert back.num_rows == rows, back.num_rows
for name in ("station", "reading", "count"):
    assert back.column(name).equals(load.column(name)), name
assert pc.all(pc.equal(back.column("time").cast(pa.int64()), load.column("time").cast(pa.int64()))).as_py()

# A row storage refuses fails the load and names the row.
bad = pa.table({"time": pa.array([None], pa.timestamp("ns", tz="UTC")), "station": ["x"], "reading": [1.0], "count": [1]})
try:
    cur.adbc_ingest("bulk", bad, mode="append")
    raise AssertionError("a null time was taken")
except adbc_driver_manager.Error as e:
    assert "row 1" in str(e) and "time is null" in str(e), e

cur.close()
conn.close()
print("ok")
