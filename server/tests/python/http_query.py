"""The HTTP query API (POST /api/v1/query) against a running isobar, with Python's own HTTP
client and pyarrow.

Run by server/tests/python.rs with the HTTP port, and a user and password when the server has
users; exits non-zero with the failing check on the first mismatch.
"""

import base64
import http.cookiejar
import json
import sys
import urllib.error
import urllib.request

import pyarrow as pa

port = int(sys.argv[1])
user, password = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else (None, None)
base = f"http://127.0.0.1:{port}"
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))


def post(path, body, content_type="application/json", headers=None, client=opener):
    data = body if isinstance(body, bytes) else (json.dumps(body) if content_type == "application/json" else body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": content_type, **(headers or {})}, method="POST")
    try:
        with client.open(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def query(sql, params=None, headers=None, client=opener, **extra):
    status, head, body = post("/api/v1/query", {"sql": sql, **({"params": params} if params else {}), **extra}, headers=headers, client=client)
    return status, head, body


def ok_json(sql, params=None):
    status, _, body = query(sql, params)
    assert status == 200, f"{sql}: {status} {body!r}"
    return json.loads(body)


if user:
    # Without credentials, and with a wrong password, the API refuses; a login sets the cookie.
    status, _, body = query("SELECT 1")
    assert status == 401 and json.loads(body)["error"]["code"] == "28000", f"no credentials: {status} {body!r}"
    status, _, body = post("/api/v1/login", {"user": user, "password": "wrong"})
    assert status == 401, f"wrong password: {status} {body!r}"
    basic = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    stateless = urllib.request.build_opener()
    status, _, body = query("SELECT 41 + 1 AS answer", headers=basic, client=stateless)
    assert status == 200 and json.loads(body)["rows"] == [[42]], f"basic credentials: {status} {body!r}"
    status, head, body = post("/api/v1/login", {"user": user, "password": password})
else:
    status, head, body = post("/api/v1/login", {})
assert status == 200, f"login: {status} {body!r}"
cookie = head["Set-Cookie"]
assert "isobar_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie

assert ok_json("CREATE TABLE readings (time TIMESTAMPTZ NOT NULL, station TEXT, v DOUBLE PRECISION, n BIGINT, PRIMARY KEY (station, time))") \
    == {"command": "CREATE TABLE"}
inserted = ok_json("INSERT INTO readings VALUES ('2024-01-01T00:00:00Z', 'a', 1.5, 1), ('2024-01-01T00:00:01Z', 'a', 'NaN', 2), "
                   "('2024-01-01T00:00:00Z', 'b', NULL, 3)")
assert inserted == {"command": "INSERT", "rows": 3}, inserted

answer = ok_json("SELECT time, station, v, n FROM readings ORDER BY station, time")
assert [c["name"] for c in answer["columns"]] == ["time", "station", "v", "n"], answer
assert [c["type"] for c in answer["columns"]] == ["timestamp with time zone", "text", "double precision", "bigint"], answer
assert answer["rows"] == [
    ["2024-01-01T00:00:00Z", "a", 1.5, 1],
    ["2024-01-01T00:00:01Z", "a", None, 2],
    ["2024-01-01T00:00:00Z", "b", None, 3],
], answer
assert answer["row_count"] == 3, answer

# Parameters, cast to their placeholders' types.
answer = ok_json("SELECT count(*) FROM readings WHERE station = $1 AND n >= $2", ["a", 2])
assert answer["rows"] == [[1]], answer

# CSV by the query string, Arrow by the Accept header.
status, head, body = post("/api/v1/query?format=csv", "SELECT station, n FROM readings ORDER BY n", content_type="text/plain")
assert status == 200 and head["Content-Type"].startswith("text/csv"), (status, head)
assert body.decode().splitlines() == ["station,n", "a,1", "a,2", "b,3"], body
status, head, body = query("SELECT station, n FROM readings ORDER BY n", headers={"Accept": "application/vnd.apache.arrow.stream"})
table = pa.ipc.open_stream(body).read_all()
assert table.column("n").to_pylist() == [1, 2, 3] and table.column("station").to_pylist() == ["a", "a", "b"], table

# A session keeps its settings between calls, as a Postgres connection does.
ok_json("SET statement_timeout = '7s'")
assert ok_json("SHOW statement_timeout")["rows"] == [["7000ms"]], "the session's setting"

# Errors: a status for the kind, the SQLSTATE and the server's message.
for sql, want_status, want_code in [
    ("SELECT nope FROM readings", 400, "42703"),
    ("SELECT * FROM nope", 404, "42P01"),
    ("SELECT 1 / 0", 400, "22012"),
    ("SELEC 1", 400, "42601"),
    ("COPY readings TO '/etc/passwd'", 403, "42501"),
    ("SELECT 1; SELECT 2", 400, "0A000"),
]:
    status, _, body = query(sql)
    error = json.loads(body)["error"]
    assert (status, error["code"]) == (want_status, want_code), f"{sql}: {status} {body!r}"
    assert error["message"], sql
status, _, body = query("SELECT 1", format="xml")
assert status == 400 and "json, csv or arrow" in json.loads(body)["error"]["message"], body
status, _, body = query("SELECT $1", ["a", "b"])
assert status == 400 and "parameters" in json.loads(body)["error"]["message"], body

# After logout the cookie's session is gone.
status, _, _ = post("/api/v1/logout", b"", content_type="text/plain")
assert status == 200
if user:
    status, _, body = query("SELECT 1")
    assert status == 401, f"after logout: {status} {body!r}"
print("http query api ok")
