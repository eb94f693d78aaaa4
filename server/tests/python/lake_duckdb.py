"""DuckDB reads isobar's Parquet lake: 200 sensors, a reading every 30 s for 50 hours (1.2 M
rows) copied into isobar over psycopg; once the two closed days are in the lake, DuckDB's
`read_parquet(..., hive_partitioning=1)` computes per sensor and day the same count, sum, min
and max as isobar's SQL over the same days. Values are multiples of 1/4, so sums are exact.
Arguments: the server's Postgres port and the lake's directory (the cold store's `lake/`)."""

import datetime
import sys
import time

import duckdb
import psycopg

port, lake = int(sys.argv[1]), sys.argv[2]
BASE = datetime.datetime(2024, 3, 1, tzinfo=datetime.timezone.utc)
SENSORS, READINGS, STEP_S = 200, 6000, 30

with psycopg.connect(f"host=127.0.0.1 port={port} user=isobar dbname=isobar", autocommit=True) as conn:
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute(
        "CREATE TABLE weather (time TIMESTAMPTZ, station_id TEXT, sensor_id TEXT, v DOUBLE PRECISION, "
        "PRIMARY KEY (station_id, sensor_id, time))"
    )
    started = time.time()
    with conn.cursor().copy("COPY weather (time, station_id, sensor_id, v) FROM STDIN") as copy:
        lines = []
        for r in range(READINGS):
            at = (BASE + datetime.timedelta(seconds=r * STEP_S)).isoformat()
            for s in range(SENSORS):
                lines.append(f"{at}\tst{s // 5:02d}\ts{s:03d}\t{((r * 7 + s * 13) % 400) / 4}\n")
            if len(lines) >= 50_000:
                copy.write("".join(lines))
                lines = []
        copy.write("".join(lines))
    print(f"copied {SENSORS * READINGS} rows in {time.time() - started:.1f} s", file=sys.stderr)

    closed_days = ("2024-03-01", "2024-03-02")
    want = sorted(
        (sensor, day.date().isoformat(), n, s, lo, hi)
        for sensor, day, n, s, lo, hi in conn.execute(
            "SELECT sensor_id, date_bin(INTERVAL '1 day', time), count(*), sum(v), min(v), max(v) FROM weather "
            "WHERE time < '2024-03-03T00:00:00Z' GROUP BY 1, 2"
        ).fetchall()
    )
    assert sum(r[2] for r in want) >= 1_000_000, f"{sum(r[2] for r in want)} rows in the closed days"
    query = (
        f"SELECT sensor_id, CAST(date AS VARCHAR), count(*), sum(v), min(v), max(v) "
        f"FROM read_parquet('{lake}/weather/*/*.parquet', hive_partitioning=1) GROUP BY ALL"
    )
    deadline = time.time() + 120
    while True:
        try:
            got = sorted(tuple(r) for r in duckdb.sql(query).fetchall())
        except duckdb.Error as e:
            got = str(e)
        if got == want:
            break
        if time.time() > deadline:
            diff = got if isinstance(got, str) else [(g, w) for g, w in zip(got, want) if g != w][:3] or (len(got), len(want))
            sys.exit(f"the lake does not hold what isobar answers after 120 s: {diff}")
        time.sleep(0.5)
    days = sorted(r[0] for r in duckdb.sql(f"SELECT DISTINCT CAST(date AS VARCHAR) FROM read_parquet('{lake}/weather/*/*.parquet', hive_partitioning=1)").fetchall())
    assert tuple(days) == closed_days, days
    print(f"DuckDB read {sum(r[2] for r in got)} rows of {len(days)} days from the lake, the same per-sensor daily aggregates as isobar")
