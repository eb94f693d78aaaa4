"""isobar against DuckDB: random writes, table changes and deletes, the same rows after each.

Run by server/tests/python.rs with the server's port, a seed, a number of steps and, to go on
from an earlier run (the server killed and started again in between), the DuckDB file that run
left: the run then first checks that isobar still holds what DuckDB holds. Each step
goes to isobar over psycopg and to an in-memory DuckDB holding the same table with a primary
key of (station, time), where `INSERT OR REPLACE` is isobar's last write wins. After every step
the raw rows of both are compared, and every final window of isobar's 1-minute rollup against
DuckDB's GROUP BY over the raw rows. Values are multiples of 1/4, so sums are exact in any order.
Exits non-zero with the seed, the step and the difference on the first mismatch.
"""

import datetime
import random
import sys

import duckdb
import psycopg

port, seed, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
duck_path = sys.argv[4] if len(sys.argv) > 4 else ":memory:"
rng = random.Random(seed)
dsn = f"host=127.0.0.1 port={port} user=isobar dbname=isobar"
BASE = datetime.datetime(2024, 3, 1, tzinfo=datetime.timezone.utc)
TYPES = {"DOUBLE PRECISION": "DOUBLE", "BIGINT": "BIGINT", "TEXT": "VARCHAR"}
NAMES = ["v", "w", "gust", "temp", "hum", "note", "count_x", "level"]


class Table:
    """What both engines hold: the table's name and its fields, in order, with their types."""

    def __init__(self):
        self.name = "t"
        self.fields = []

    def resume(self, duck):
        """Takes the table an earlier run left in DuckDB's file; false when there is none."""
        names = [r[0] for r in duck.execute("SELECT table_name FROM information_schema.tables WHERE table_name IN ('t', 'u')").fetchall()]
        if not names:
            return False
        self.name = names[0]
        sql_type = {duck_type: iso_type for iso_type, duck_type in TYPES.items()}
        columns = duck.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [self.name]
        ).fetchall()
        self.fields = [(n, sql_type[ty]) for n, ty in columns if n not in ("time", "station")]
        return True

    def create(self, iso, duck):
        self.fields = [(n, rng.choice(list(TYPES))) for n in rng.sample(NAMES, rng.randint(1, 3))]
        columns = ", ".join(f"{n} {ty}" for n, ty in self.fields)
        iso.execute(f"CREATE TABLE {self.name} (time TIMESTAMPTZ, station TEXT, {columns}, PRIMARY KEY (station, time))")
        duck_columns = ", ".join(f"{n} {TYPES[ty]}" for n, ty in self.fields)
        duck.execute(f"CREATE TABLE {self.name} (time TIMESTAMPTZ, station VARCHAR, {duck_columns}, PRIMARY KEY (station, time))")


def value(ty):
    if ty == "TEXT":
        return rng.choice(["a", "b", "c", "it's"])
    if ty == "BIGINT":
        return rng.randint(-1000, 1000)
    return rng.randint(-4000, 4000) / 4


def literal(v):
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


def insert(table, iso, duck):
    rows = {}
    for _ in range(rng.randint(1, 30)):
        key = (rng.choice(["a", "b", "c"]), rng.randint(0, 600))
        rows[key] = [value(ty) for _, ty in table.fields]
    names = ", ".join(["time", "station"] + [n for n, _ in table.fields])
    values = ", ".join(
        "(" + ", ".join([f"'{(BASE + datetime.timedelta(seconds=t)).isoformat()}'", literal(s)] + [literal(v) for v in vals]) + ")"
        for (s, t), vals in rows.items()
    )
    iso.execute(f"INSERT INTO {table.name} ({names}) VALUES {values}")
    duck.execute(f"INSERT OR REPLACE INTO {table.name} ({names}) VALUES {values}")
    return f"insert {len(rows)} rows"


def add_column(table, iso, duck):
    free = [n for n in NAMES if n not in dict(table.fields)]
    if not free:
        return None
    name, ty = rng.choice(free), rng.choice(list(TYPES))
    iso.execute(f"ALTER TABLE {table.name} ADD COLUMN {name} {ty}")
    duck.execute(f"ALTER TABLE {table.name} ADD COLUMN {name} {TYPES[ty]}")
    table.fields.append((name, ty))
    return f"add column {name} {ty}"


def drop_column(table, iso, duck):
    if len(table.fields) < 2:
        return None
    name, _ = rng.choice(table.fields)
    iso.execute(f"ALTER TABLE {table.name} DROP COLUMN {name}")
    duck.execute(f"ALTER TABLE {table.name} DROP COLUMN {name}")
    table.fields = [f for f in table.fields if f[0] != name]
    return f"drop column {name}"


def rename_column(table, iso, duck):
    free = [n for n in NAMES if n not in dict(table.fields)]
    if not free:
        return None
    i = rng.randrange(len(table.fields))
    old, new = table.fields[i][0], rng.choice(free)
    iso.execute(f"ALTER TABLE {table.name} RENAME COLUMN {old} TO {new}")
    duck.execute(f"ALTER TABLE {table.name} RENAME COLUMN {old} TO {new}")
    table.fields[i] = (new, table.fields[i][1])
    return f"rename column {old} to {new}"


def rename_table(table, iso, duck):
    new = "u" if table.name == "t" else "t"
    iso.execute(f"ALTER TABLE {table.name} RENAME TO {new}")
    duck.execute(f"ALTER TABLE {table.name} RENAME TO {new}")
    table.name = new
    return f"rename to {new}"


def truncate(table, iso, duck):
    iso.execute(f"TRUNCATE {table.name}")
    duck.execute(f"DELETE FROM {table.name}")
    return "truncate"


def delete(table, iso, duck):
    """DELETE of a time range, of one station, some or all: with bound parameters or literals."""
    first = rng.randint(-10, 600)
    last = first + rng.choice([0, 1, 30, 59, 60, 61, 200, 700])
    t0, t1 = (BASE + datetime.timedelta(seconds=t) for t in (first, last))
    stations = rng.choice([None, ["a"], ["b"], ["a", "c"]])
    where, params = "time >= %s AND time <= %s", [t0, t1]
    if stations:
        where += " AND station IN (" + ", ".join(["%s"] * len(stations)) + ")"
        params += stations
    if rng.random() < 0.5:
        deleted = iso.execute(f"DELETE FROM {table.name} WHERE {where}", params).rowcount
    else:
        text = where.replace("%s", "{}").format(*(literal(p.isoformat() if isinstance(p, datetime.datetime) else p) for p in params))
        deleted = iso.execute(f"DELETE FROM {table.name} WHERE {text}").rowcount
    expected = duck.execute(f"DELETE FROM {table.name} WHERE {where.replace('%s', '?')}", params).fetchall()[0][0]
    if deleted != expected:
        sys.exit(f"seed {seed}: DELETE {where} {params} deleted {deleted} rows in isobar, {expected} in DuckDB")
    return f"delete {deleted} rows where {where} {params}"


def drop_and_create(table, iso, duck):
    iso.execute(f"DROP TABLE {table.name}")
    duck.execute(f"DROP TABLE {table.name}")
    table.create(iso, duck)
    return f"drop and create with {table.fields}"


STEPS = [
    (insert, 8),
    (add_column, 2),
    (drop_column, 2),
    (rename_column, 2),
    (rename_table, 1),
    (truncate, 1),
    (delete, 3),
    (drop_and_create, 1),
]


def query(iso, sql, params=None):
    """Rows of `sql` over psycopg, which prepares a query it runs often: a prepared query whose
    table changed is planned again by isobar, as by PostgreSQL, and refused as by PostgreSQL if
    its result columns changed type; then it runs unprepared."""
    try:
        return iso.execute(sql, params).fetchall()
    except psycopg.errors.FeatureNotSupported as e:
        if "cached plan must not change result type" not in str(e):
            raise
        return iso.execute(sql, params, prepare=False).fetchall()


compared = {"rows": 0, "windows": 0}


def compare(table, iso, duck, what):
    columns = ", ".join(["time", "station"] + [n for n, _ in table.fields])
    got = query(iso, f"SELECT {columns} FROM {table.name} ORDER BY station, time")
    want = duck.execute(f"SELECT {columns} FROM {table.name} ORDER BY station, time").fetchall()
    if got != want:
        diff = [(g, w) for g, w in zip(got, want) if g != w][:3]
        sys.exit(f"seed {seed}, after {what}: {len(got)} rows in isobar, {len(want)} in DuckDB; first differences {diff}")
    compared["rows"] += len(got)
    rollup = f"{table.name}_1m"
    exists = query(iso, "SELECT count(*) FROM information_schema.tables WHERE table_name = %s", (rollup,))[0][0]
    if not exists:
        # A table gets its rollups with its first rows.
        if got:
            sys.exit(f"seed {seed}, after {what}: {table.name} has rows and no {rollup}")
        return
    for name, ty in table.fields:
        if ty == "TEXT":
            continue
        final = query(
            iso,
            f"SELECT station, time, {name}_count, {name}_sum, {name}_min, {name}_max FROM {rollup} "
            f"WHERE final AND {name}_count > 0 ORDER BY station, time",
        )
        windows = {
            (r[0], r[1]): r[2:]
            for r in duck.execute(
                f"SELECT station, time_bucket(INTERVAL '1 minute', time) AS window_start_, count({name}), sum({name}), min({name}), max({name}) "
                f"FROM {table.name} WHERE {name} IS NOT NULL GROUP BY station, window_start_"
            ).fetchall()
        }
        compared["windows"] += len(final)
        for station, start, *aggregates in final:
            expected = windows.get((station, start))
            if expected is None or tuple(aggregates) != tuple(expected):
                sys.exit(f"seed {seed}, after {what}: final window {station} {start} of {name} is {aggregates} in isobar, {expected} in DuckDB")


with psycopg.connect(dsn, autocommit=True) as iso:
    iso.execute("SET TIME ZONE 'UTC'")
    duck = duckdb.connect(duck_path)
    duck.execute("SET TimeZone = 'UTC'")
    table = Table()
    if table.resume(duck):
        compare(table, iso, duck, "a restart")
    else:
        table.create(iso, duck)
    done = 0
    for step in range(steps):
        kind = rng.choices([s for s, _ in STEPS], weights=[w for _, w in STEPS])[0]
        what = kind(table, iso, duck)
        if what is None:
            continue
        print(f"step {step}: {what}", file=sys.stderr)
        compare(table, iso, duck, f"step {step}: {what}")
        done += 1
    # Over a long run the rollup must have been compared too (a short one may end empty).
    if steps >= 100 and compared["windows"] == 0:
        sys.exit(f"seed {seed}: no final rollup window was compared")
    print(f"seed {seed}: {done} steps, the same rows in isobar and DuckDB after each ({compared['rows']} rows, {compared['windows']} final windows compared)")
