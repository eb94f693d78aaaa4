#!/usr/bin/env python3
"""The wire's floor: isobar answering a query against PostgreSQL sending the same rows.

Copies isobar's answer to SQL into a PostgreSQL table NAME, then times, through psycopg, isobar
answering SQL and PostgreSQL answering `SELECT * FROM NAME`, in text and in binary, RUNS times
each after one warm-up, and prints the medians and their ratio. Needs a running isobar (user
isobar, trust on loopback) and a PostgreSQL that user postgres can reach without a password.

    python3 benches/scripts/wire_floor.py ISOBAR_PORT PG_PORT NAME SQL [RUNS]
"""

import statistics
import sys
import time

import psycopg

TYPES = {"text": "text", "timestamptz": "timestamptz", "float8": "double precision", "int8": "bigint", "bool": "boolean"}


def timed(conn, sql, binary, runs):
    times, rows = [], 0
    for _ in range(runs + 1):
        cur = conn.cursor(binary=binary)
        start = time.perf_counter()
        rows = len(cur.execute(sql).fetchall())
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[1:]), rows


def main():
    iso_port, pg_port, name, sql = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    runs = int(sys.argv[5]) if len(sys.argv) > 5 else 20
    iso = psycopg.connect(host="127.0.0.1", port=iso_port, user="isobar", dbname="isobar", autocommit=True)
    pg = psycopg.connect(host="127.0.0.1", port=pg_port, user="postgres", dbname="postgres", autocommit=True)
    cur = iso.execute(sql)
    columns = [f"{d.name} {TYPES.get(d.type_display, 'text')}" for d in cur.description]
    rows = cur.fetchall()
    pg.execute(f"DROP TABLE IF EXISTS {name}")
    pg.execute(f"CREATE TABLE {name} ({', '.join(columns)})")
    with pg.cursor().copy(f"COPY {name} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    pg.execute(f"VACUUM ANALYZE {name}")
    for binary in (False, True):
        pg_ms, pg_rows = timed(pg, f"SELECT * FROM {name}", binary, runs)
        iso_ms, iso_rows = timed(iso, sql, binary, runs)
        kind = "binary" if binary else "text"
        print(f"{name} {kind}: PostgreSQL {pg_ms:.1f} ms ({pg_rows} rows), isobar {iso_ms:.1f} ms ({iso_rows} rows), ratio {iso_ms / pg_ms:.2f}")


if __name__ == "__main__":
    main()
