#!/usr/bin/env python3
"""Dashboard-like query clients for isobar's ingest-under-query benchmark.

Opens N connections over the Postgres wire protocol; each runs the queries below in turn, back to
back (or --pause-ms apart), for --seconds, then prints how many queries ran and their latencies.
The queries are what a fleet dashboard asks of the seed fleet's `weather` table while it fills:
a row count, the last minute per station, when each sensor last reported, and one sensor's
last five minutes in 10-second buckets.
"""

import argparse
import statistics
import sys
import threading
import time

import psycopg

QUERIES = [
    "SELECT count(*) FROM weather",
    "SELECT station_id, avg(sensor_value), max(sensor_value) FROM weather"
    " WHERE time > now() - interval '1 minute' GROUP BY station_id",
    "SELECT sensor_id, max(time) FROM weather WHERE time > now() - interval '1 minute' GROUP BY sensor_id",
    "SELECT date_bin(interval '10 seconds', time) AS t, avg(sensor_value) FROM weather"
    " WHERE sensor_id = %s AND time > now() - interval '5 minutes' GROUP BY 1 ORDER BY 1",
]


def wait_for_table(dsn: str, deadline: float) -> str:
    """Waits until the first rows arrived and returns a sensor id to chart."""
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                row = conn.execute("SELECT sensor_id FROM weather LIMIT 1").fetchone()
                if row:
                    return row[0]
        except psycopg.Error:
            pass
        time.sleep(0.1)
    sys.exit("query_clients: no rows arrived in the weather table")


def client(dsn: str, sensor: str, until: float, pause_s: float, latencies: list, errors: list) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        i = 0
        while time.monotonic() < until:
            sql = QUERIES[i % len(QUERIES)]
            started = time.monotonic()
            try:
                conn.execute(sql, (sensor,) if "%s" in sql else None).fetchall()
                latencies.append(time.monotonic() - started)
            except psycopg.Error as e:
                errors.append(str(e))
            i += 1
            if pause_s:
                time.sleep(pause_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--pause-ms", type=float, default=0)
    args = parser.parse_args()
    dsn = f"host=127.0.0.1 port={args.port} user=isobar dbname=isobar"
    sensor = wait_for_table(dsn, time.monotonic() + 60)
    until = time.monotonic() + args.seconds
    latencies: list = []
    errors: list = []
    threads = [
        threading.Thread(target=client, args=(dsn, sensor, until, args.pause_ms / 1000, latencies, errors))
        for _ in range(args.clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not latencies:
        sys.exit(f"query_clients: no query succeeded: {errors[:3]}")
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"query clients: {args.clients} ran {len(ms)} queries ({len(ms) / args.seconds:.1f}/s), "
        f"p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, {len(errors)} errors"
    )
    if errors:
        print(f"query clients: first error: {errors[0]}")


if __name__ == "__main__":
    main()
