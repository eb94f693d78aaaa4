"""A fault-injecting HTTP proxy in front of a local Kinesis server, for isobar's Kinesis tests.

    kinesis_proxy.py PORT UPSTREAM LOG [--pages-of N]

Forwards every request to UPSTREAM, except that of the GetRecords calls, every 4th is refused
as throttled (HTTP 400 ProvisionedThroughputExceededException, as Kinesis refuses a shard's
sixth call in a second) and every 7th answered ExpiredIteratorException, neither reaching the
server. Appends one line per GetRecords call to LOG: its time (seconds, monotonic), the shard
(followed from the iterators GetShardIterator and GetRecords hand out) and what it got
("throttled", "expired" or the upstream's status). Local servers never throttle, so this is
how a test sees isobar back off. With `--pages-of N`, every ListShards asks for at most N
shards (`MaxResults`), so a consumer must follow `NextToken` to see them all.
"""

import http.client
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

PORT, UPSTREAM, LOG = int(sys.argv[1]), urlparse(sys.argv[2]), sys.argv[3]
PAGE = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--pages-of" else None
lock = threading.Lock()
calls = 0
# The shard of every iterator handed out.
shard_of = {}


def log(shard, outcome):
    with lock, open(LOG, "a") as f:
        f.write(f"{time.monotonic():.6f} {shard} {outcome}\n")


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type="application/x-amz-json-1.1"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        global calls
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        target = self.headers.get("X-Amz-Target", "")
        request = json.loads(body or b"{}")
        shard = request.get("ShardId") or shard_of.get(request.get("ShardIterator"), "unknown")
        if target.endswith(".GetRecords"):
            with lock:
                calls += 1
                n = calls
            if n % 4 == 0:
                log(shard, "throttled")
                return self.answer(400, b'{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard"}')
            if n % 7 == 0:
                log(shard, "expired")
                return self.answer(400, b'{"__type":"ExpiredIteratorException","message":"Iterator expired"}')
        if PAGE and target.endswith(".ListShards"):
            request["MaxResults"] = PAGE
            body = json.dumps(request).encode()
        upstream = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "content-length")}
        headers["Content-Length"] = str(len(body))
        upstream.request("POST", self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        if response.status == 200 and (target.endswith(".GetRecords") or target.endswith(".GetShardIterator")):
            out = json.loads(data)
            next_iterator = out.get("NextShardIterator") or out.get("ShardIterator")
            if next_iterator:
                with lock:
                    shard_of[next_iterator] = shard
        if target.endswith(".GetRecords"):
            log(shard, str(response.status))
        self.answer(response.status, data, response.getheader("Content-Type", "application/x-amz-json-1.1"))
        upstream.close()


ThreadingHTTPServer(("127.0.0.1", PORT), Proxy).serve_forever()
