"""Python clients against a running isobar: psycopg 3, SQLAlchemy 2 and pandas.

Run by server/tests/python.rs with the server's port as the only argument; exits non-zero with
the failing check on the first mismatch.
"""

import datetime
import sys

import pandas
import psycopg
import sqlalchemy

port = int(sys.argv[1])
dsn = f"host=127.0.0.1 port={port} user=isobar dbname=isobar"

with psycopg.connect(dsn, autocommit=True) as conn:
    conn.execute(
        "CREATE TABLE weather (time TIMESTAMPTZ NOT NULL, station_id TEXT, sensor_id TEXT, "
        "sensor_value DOUBLE PRECISION, direction BIGINT, PRIMARY KEY (station_id, sensor_id, time))"
    )
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    with conn.cursor() as cur:
        # Untyped parameters (psycopg sends OID 0 for strings): the server infers them.
        for i in range(10):
            cur.execute(
                "INSERT INTO weather (time, station_id, sensor_id, sensor_value, direction) VALUES (%s, %s, %s, %s, %s)",
                (start + datetime.timedelta(seconds=i), "st-1", f"s-{i % 2}", i * 0.5, 1 if i % 2 else -1),
            )
        cur.execute("SELECT count(*), sum(sensor_value) FROM weather WHERE station_id = %s", ("st-1",))
        assert cur.fetchone() == (10, 22.5), "count and sum over psycopg"
        cur.execute("SELECT time, sensor_value FROM weather WHERE sensor_id = %s ORDER BY time LIMIT 1", ("s-1",))
        first = cur.fetchone()
        assert first == (start + datetime.timedelta(seconds=1), 0.5), f"typed row: {first}"
        # COPY FROM STDIN through psycopg's copy API.
        with cur.copy("COPY weather (time, station_id, sensor_id, sensor_value) FROM STDIN") as copy:
            for i in range(100):
                copy.write_row((start + datetime.timedelta(minutes=1, seconds=i), "st-2", "s-0", float(i)))
        cur.execute("SELECT count(*) FROM weather WHERE station_id = 'st-2'")
        assert cur.fetchone() == (100,), "rows loaded by COPY"
        # Binary COPY, with the types psycopg is told.
        with cur.copy("COPY weather (time, station_id, sensor_id, sensor_value, direction) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["timestamptz", "text", "text", "float8", "int8"])
            for i in range(50):
                copy.write_row((start + datetime.timedelta(hours=1, seconds=i), "st-3", "s-0", i / 4, -i))
        cur.execute("SELECT count(*), sum(sensor_value), sum(direction), min(time) FROM weather WHERE station_id = 'st-3'")
        got = cur.fetchone()
        assert got == (50, sum(i / 4 for i in range(50)), -sum(range(50)), start + datetime.timedelta(hours=1)), f"binary COPY: {got}"
        # executemany, then the same in pipeline mode: the fast INSERT path with parameters.
        rows = [(start + datetime.timedelta(hours=2, seconds=i), "st-4", f"s-{i % 3}", i * 1.5, i) for i in range(200)]
        cur.executemany("INSERT INTO weather (time, station_id, sensor_id, sensor_value, direction) VALUES (%s, %s, %s, %s, %s)", rows)
        with conn.pipeline():
            cur.executemany(
                "INSERT INTO weather (time, station_id, sensor_id, sensor_value, direction) VALUES (%s, %s, %s, %s, %s)",
                [(t + datetime.timedelta(hours=1), "st-5", s, v, d) for t, _, s, v, d in rows],
            )
        cur.execute("SELECT station_id, count(*), sum(sensor_value), sum(direction) FROM weather "
                    "WHERE station_id IN ('st-4', 'st-5') GROUP BY station_id ORDER BY station_id")
        want = [(st, 200, sum(i * 1.5 for i in range(200)), sum(range(200))) for st in ("st-4", "st-5")]
        assert cur.fetchall() == want, "executemany and pipeline rows"
        # A multi-row INSERT of literals, and one with a value the fast path leaves to the general one.
        cur.execute("INSERT INTO weather (time, station_id, sensor_id, sensor_value) VALUES "
                    "('2024-01-02T00:00:00Z', 'st-6', 's-0', 1.5), ('2024-01-02 00:00:01+00', 'st-6', 's-0', -2)")
        assert cur.rowcount == 2, f"INSERT rowcount {cur.rowcount}"
        cur.execute("INSERT INTO weather (time, station_id, sensor_id, sensor_value) VALUES "
                    "('2024-01-02T00:00:02Z'::timestamptz + INTERVAL '1 second', 'st-6', 's-0', 1 + 1)")
        cur.execute("SELECT sensor_value FROM weather WHERE station_id = 'st-6' ORDER BY time")
        assert [r[0] for r in cur.fetchall()] == [1.5, -2.0, 2.0], "literal INSERTs"

engine = sqlalchemy.create_engine(f"postgresql+psycopg://isobar@127.0.0.1:{port}/isobar")
with engine.connect() as conn:
    value = conn.execute(sqlalchemy.text("SELECT max(sensor_value) FROM weather WHERE station_id = 'st-2'")).scalar()
    assert value == 99.0, f"SQLAlchemy scalar: {value}"
inspector = sqlalchemy.inspect(engine)
assert inspector.has_table("weather"), "SQLAlchemy sees the table"
columns = [(c["name"], type(c["type"]).__name__) for c in inspector.get_columns("weather")]
assert columns == [
    ("time", "TIMESTAMP"),
    ("station_id", "TEXT"),
    ("sensor_id", "TEXT"),
    ("sensor_value", "DOUBLE_PRECISION"),
    ("direction", "BIGINT"),
], f"SQLAlchemy columns: {columns}"
assert inspector.get_pk_constraint("weather")["constrained_columns"] == ["station_id", "sensor_id", "time"], "primary key"
assert inspector.get_indexes("weather") == [] and inspector.get_unique_constraints("weather") == [], "no other indexes"
assert inspector.get_foreign_keys("weather") == [], "no foreign keys"
metadata = sqlalchemy.MetaData()
metadata.reflect(engine)
assert "weather" in metadata.tables and not {"chunks", "ingest_errors"} & set(metadata.tables), f"reflected {sorted(metadata.tables)}"
weather = metadata.tables["weather"]
assert [c.name for c in weather.primary_key] == ["station_id", "sensor_id", "time"], f"reflected key {weather.primary_key}"
with engine.connect() as conn:
    statement = sqlalchemy.select(sqlalchemy.func.count()).select_from(weather).where(weather.c.station_id == "st-4")
    assert conn.execute(statement).scalar() == 200, "a query built on the reflected table"
    # stream_results: SQLAlchemy pages through a server-side cursor, here for pandas' chunks.
    chunks = pandas.read_sql(
        "SELECT sensor_value FROM weather WHERE station_id = 'st-2' ORDER BY time",
        conn.execution_options(stream_results=True, max_row_buffer=40),
        chunksize=30,
    )
    assert [len(c) for c in chunks] == [30, 30, 30, 10], "pandas chunks over a server-side cursor"

# psycopg's server-side cursors: DECLARE with a parameter, then FETCHes in text and binary.
with psycopg.connect(dsn) as conn:
    for binary in (False, True):
        with conn.cursor(name="scan", binary=binary) as cur:
            cur.itersize = 7
            cur.execute("SELECT time, sensor_value FROM weather WHERE station_id = %s ORDER BY time", ("st-2",))
            assert [d.name for d in cur.description] == ["time", "sensor_value"], f"described {cur.description}"
            got = list(cur)
            want = [(start + datetime.timedelta(minutes=1, seconds=i), float(i)) for i in range(100)]
            assert got == want, f"named cursor rows (binary={binary}): {got[:3]}"
frame = pandas.read_sql(
    "SELECT time_bucket(INTERVAL '1 minute', time) AS minute, count(*) AS n FROM weather "
    "WHERE station_id IN ('st-1', 'st-2') GROUP BY 1 ORDER BY 1",
    engine,
)
assert frame["n"].tolist() == [10, 60, 40], f"pandas frame:\n{frame}"
print(f"python clients ok: psycopg {psycopg.__version__}, SQLAlchemy {sqlalchemy.__version__}, pandas {pandas.__version__}")
