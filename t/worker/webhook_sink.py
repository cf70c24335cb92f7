#!/usr/bin/env python3
"""A stand-in for the nginx module in the worker's own tests.

Receives the simulator's webhook POSTs and LPUSHes the module's envelope
({"id","received_at","queue","payload":<body verbatim>}) onto the Redis
queue, byte for byte the way the module writes it, then answers 202.  Talks
RESP over a plain socket: no Python Redis client needed.

    webhook_sink.py --port P --redis-port R [--db N] [--queue NAME]
"""
import argparse
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Redis:
    def __init__(self, port, db):
        self.port = port
        self.db = db
        self.lock = threading.Lock()
        self.sock = None

    def command(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        with self.lock:
            for attempt in (0, 1):
                try:
                    if self.sock is None:
                        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                        self.file = self.sock.makefile("rb")
                        if self.db:
                            self.sock.sendall(b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%d\r\n"
                                              % (len(str(self.db)), self.db))
                            self.file.readline()
                    self.sock.sendall(out)
                    line = self.file.readline()
                    if not line:
                        raise OSError("connection closed")
                    return line
                except OSError:
                    self.sock = None
                    if attempt:
                        raise


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--queue", default="phantombuster:webhooks")
    p.add_argument("--db", type=int, default=0)
    a = p.parse_args()
    redis = Redis(a.redis_port, a.db)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            head = '{"id":%s,"received_at":%d,"queue":%s,"payload":' % (
                json.dumps(uuid.uuid4().hex), int(time.time() * 1000), json.dumps(a.queue))
            try:
                redis.command("LPUSH", a.queue, head.encode() + body + b"}")
                code = 202
            except OSError:
                code = 503
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
