"""Arrow Flight SQL against the Postgres wire protocol on one started isobar: bulk loads
(ADBC's adbc_ingest against COPY FROM STDIN of the same rows as CSV) and a full scan of the
loaded table (to an ADBC client as Arrow; to psycopg as Python rows; to psql, libpq's C client,
as text thrown away). Run by scripts/bench-flight, which starts the server.

Usage: flight_bench.py <flight port> <postgres port> [rows]

Rows: 1,000 sensors, one reading a second each (time, sensor_id, value), 10 M by default.
Loads run once (each into a fresh table); scans are the median of 3 runs. Every scan's row
count and value sum are checked against the rows loaded.
"""

import io
import statistics
import subprocess
import sys
import time

import adbc_driver_flightsql.dbapi as flightsql
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

flight_port, pg_port = int(sys.argv[1]), int(sys.argv[2])
rows = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000_000
sensors = 1_000
start_ns = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z

index = pa.array(range(rows), pa.int64())
second = pc.divide(index, sensors)
sensor = pc.subtract(index, pc.multiply(second, sensors))
data = pa.table(
    {
        "time": pc.add(pc.multiply(second, 1_000_000_000), start_ns).cast(pa.timestamp("ns", tz="UTC")),
        "sensor_id": pc.binary_join_element_wise("sensor-", pc.cast(sensor, pa.string()), ""),
        "value": pc.multiply(pc.cast(index, pa.float64()), 0.25),
    }
)
expected_sum = float(pc.sum(data.column("value")).as_py())
batch_rows = 262_144  # about 8 MiB of Arrow per message, under flight.message_bytes_max
dsn = f"host=127.0.0.1 port={pg_port} user=isobar dbname=isobar"
scan = "SELECT time, sensor_id, value FROM {} "


def rate(n, seconds):
    return f"{n / seconds:,.0f} rows/s ({seconds:.2f} s)"


conn = flightsql.connect(f"grpc://127.0.0.1:{flight_port}", autocommit=True)
cur = conn.cursor()

# Bulk load through adbc_ingest: the table made from the Arrow schema, then every batch.
reader = pa.RecordBatchReader.from_batches(data.schema, data.to_batches(max_chunksize=batch_rows))
began = time.perf_counter()
loaded = cur.adbc_ingest("flight_load", reader, mode="create")
ingest_s = time.perf_counter() - began
assert loaded == rows, loaded
print(f"adbc_ingest (Flight SQL)        {rate(rows, ingest_s)}")

# The same rows through COPY FROM STDIN (CSV), as psql's \copy sends them.
with psycopg.connect(dsn, autocommit=True) as pg:
    pg.execute("CREATE TABLE copy_load (time TIMESTAMPTZ NOT NULL, sensor_id TEXT, value DOUBLE PRECISION, PRIMARY KEY (sensor_id, time))")
    chunks = []
    for batch in data.to_batches(max_chunksize=batch_rows):
        out = io.BytesIO()
        pacsv.write_csv(pa.Table.from_batches([batch]), out, pacsv.WriteOptions(include_header=False))
        chunks.append(out.getvalue())
    began = time.perf_counter()
    with pg.cursor() as c:
        with c.copy("COPY copy_load (time, sensor_id, value) FROM STDIN (FORMAT CSV)") as copy:
            for chunk in chunks:
                copy.write(chunk)
    copy_s = time.perf_counter() - began
    n = pg.execute("SELECT count(*) FROM copy_load").fetchone()[0]
    assert n == rows, n
print(f"COPY FROM STDIN (pgwire, CSV)   {rate(rows, copy_s)}")
print(f"  adbc_ingest / COPY: {copy_s / ingest_s:.2f}x")


def check(n, total):
    assert n == rows, f"{n} rows scanned"
    assert abs(total - expected_sum) <= 1e-9 * abs(expected_sum), f"sum {total} != {expected_sum}"


def flight_scan():
    began = time.perf_counter()
    cur.execute(scan.format("flight_load"))
    table = cur.fetch_arrow_table()
    took = time.perf_counter() - began
    check(table.num_rows, pc.sum(table.column("value")).as_py())
    return took


def psycopg_scan():
    # A client-side cursor, psycopg's fastest: the whole result reaches the client at once.
    with psycopg.connect(dsn) as pg, pg.cursor() as c:
        began = time.perf_counter()
        c.execute(scan.format("flight_load"))
        n, total = 0, 0.0
        while batch := c.fetchmany(100_000):
            n += len(batch)
            total += sum(row[2] for row in batch)
        took = time.perf_counter() - began
    check(n, total)
    return took


def psql_scan():
    command = ["psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "isobar", "-d", "isobar",
               "-v", "FETCH_COUNT=100000", "-c", scan.format("flight_load")]
    began = time.perf_counter()
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE).stdout
    took = time.perf_counter() - began
    check(out.count(b"\n"), expected_sum)
    return took


results = {}
for name, run in (("Flight SQL -> ADBC (Arrow)", flight_scan), ("pgwire -> psycopg (rows)", psycopg_scan), ("pgwire -> psql (libpq, text)", psql_scan)):
    times = [run() for _ in range(3)]
    results[name] = statistics.median(times)
    print(f"scan {rows:,} rows, {name:30} {rate(rows, results[name])}, runs {', '.join(f'{t:.2f}' for t in times)} s")
flight = results["Flight SQL -> ADBC (Arrow)"]
print(f"  Flight SQL / psycopg: {results['pgwire -> psycopg (rows)'] / flight:.1f}x;"
      f" Flight SQL / psql: {results['pgwire -> psql (libpq, text)'] / flight:.1f}x")
cur.close()
conn.close()
