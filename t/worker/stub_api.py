"""A scripted stand-in for PhantomBuster, for answers the simulator never gives.

The simulator (scripts/pb-simulator.py) behaves like PhantomBuster; some of
the worker's paths need PhantomBuster to misbehave in one precise way (a
launch answered 200 without a containerId, a stop that fails after a fetch
that worked, a save that does not stick).  Each route gets a list of answers,
used in order, the last one repeated:

    api = StubAPI()                      # listens on 127.0.0.1, a free port
    api.answer("GET /containers/fetch", (200, {"status": "running"}))
    api.answer("POST /agents/stop", (500, {"error": "internalServerError"}))
    ... api.url ...                      # PHANTOMBUSTER_API_URL
    api.calls                            # [(method, path, query, body), ...]
    api.close()

An unscripted route answers 404 {"error": "notFound"}.
"""
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubAPI:
    def __init__(self):
        self.routes = {}
        self.calls = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self, method):
                u = urllib.parse.urlsplit(self.path)
                path = u.path[len("/api/v2"):] if u.path.startswith("/api/v2") else u.path
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                status, answer = stub.next_answer(method, path, dict(
                    urllib.parse.parse_qsl(u.query)), body)
                out = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self):
                self.handle_one("GET")

            def do_POST(self):
                self.handle_one("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, route, *answers):
        with self.lock:
            self.routes[route] = list(answers)

    def next_answer(self, method, path, query, body):
        route = "%s %s" % (method, path)
        with self.lock:
            self.calls.append((method, path, query, body))
            answers = self.routes.get(route)
            if not answers:
                return 404, {"status": "error", "error": "notFound"}
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def called(self, route):
        return sum(1 for m, p, _, _ in self.calls if "%s %s" % (m, p) == route)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
