#!/usr/bin/env python3
"""A stand-in for the query service's release endpoints, for working on the dashboard and
self-testing tests/browser/dashboard_test.py without building the Rust server. Stdlib only.

Serves:
  GET /dashboard           server/assets/dashboard.html (read on every request, so edits show at once)
  GET /v1/releases         {"releases": [summary]} derived from the fixture release
  GET /v1/releases/{id}    the fixture release (tests/browser/fixture_release.json)
The /v1 endpoints need `Authorization: Bearer <token>` (default test-token) and answer 401 in
the service's error shape, {"error": {"code": ..., "message": ...}}, otherwise.

    python3 tests/browser/mock_server.py [--port 0] [--token test-token] [--fixture PATH]

Prints `listening on http://127.0.0.1:PORT` (flushed) once it accepts connections; with
--port 0 (the default) the port is a free one.
"""

import argparse
import json
import pathlib
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
# What GET /v1/releases lists of each release.
SUMMARY_FIELDS = ["id", "name", "created_at", "created_by", "period", "from", "to", "missions", "cost"]


def summary(release):
    s = {k: release.get(k) for k in SUMMARY_FIELDS}
    s["indicators"] = [i["id"] for i in release.get("indicators", [])]
    return s


def make_handler(token, fixture_path, html_path, quiet):
    class Handler(BaseHTTPRequestHandler):
        server_version = "ctstats-mock"

        def log_message(self, fmt, *args):
            if not quiet:
                sys.stderr.write("mock: " + (fmt % args) + "\n")

        def send_body(self, status, body, content_type, extra=None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def send_json(self, status, value, extra=None):
            self.send_body(status, json.dumps(value).encode(), "application/json", extra)

        def send_error_json(self, status, code, message, extra=None):
            self.send_json(status, {"error": {"code": code, "message": message}}, extra)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/dashboard":
                self.send_body(200, html_path.read_bytes(), "text/html; charset=utf-8")
                return
            if not path.startswith("/v1/"):
                self.send_error_json(404, "not_found", f"no route for GET {path}")
                return
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                self.send_error_json(401, "unauthenticated",
                                     "send a bearer token: `Authorization: Bearer cts_...`",
                                     {"WWW-Authenticate": "Bearer"})
                return
            if auth[len("Bearer "):] != token:
                self.send_error_json(401, "invalid_token", "the bearer token is unknown or revoked",
                                     {"WWW-Authenticate": "Bearer"})
                return
            release = json.loads(fixture_path.read_text())
            if path == "/v1/releases":
                self.send_json(200, {"releases": [summary(release)]})
                return
            m = re.fullmatch(r"/v1/releases/(\d+)", path)
            if m and int(m.group(1)) == release["id"]:
                self.send_json(200, release)
                return
            if m:
                self.send_error_json(404, "no_such_release", f"no release with id {m.group(1)}")
                return
            self.send_error_json(404, "not_found", f"no route for GET {path}")

        do_HEAD = do_GET

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    ap.add_argument("--token", default="test-token")
    ap.add_argument("--fixture", type=pathlib.Path, default=HERE / "fixture_release.json")
    ap.add_argument("--html", type=pathlib.Path, default=REPO / "server" / "assets" / "dashboard.html")
    ap.add_argument("--quiet", action="store_true", help="no request log")
    args = ap.parse_args()
    server = ThreadingHTTPServer((args.host, args.port),
                                 make_handler(args.token, args.fixture, args.html, args.quiet))
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
