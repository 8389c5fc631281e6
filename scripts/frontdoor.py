"""The local API Gateway: what answers on port 8080 under `make run`.

`cargo lambda watch` runs the functions (building them when first called),
but its own HTTP server answers some requests without reaching them: a body
that is not UTF-8 gets a text/plain 500, a method or path outside its router
its own page listing every binary of the workspace, HEAD an empty 404, and
the same port serves its function-invoke API to anything local. So, as API
Gateway does in AWS, this front door turns every request into a payload 2.0
event and invokes the function the route names through cargo-lambda's
invoke API, which listens only on a private loopback port. Every answer on
8080 is then our functions' own JSON. The exceptions are documented in
docs/local-stack.md: a function that fails answers 500
`{"message":"Internal Server Error"}`, as API Gateway does.

The routes are read from `[workspace.metadata.lambda.watch.router]` in
Cargo.toml, which tests/tests/infra_consistency.rs holds equal to the
template's routes (docs/decisions/0026-local-front-door.md).
"""

import base64
import json
import re
import threading
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

DEFAULT_FUNCTION = "not-found"
# Building a function on its first call can take minutes on two cores.
INVOKE_TIMEOUT_SECONDS = 600
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


def load_routes(cargo_toml):
    """[(regex, pattern, {method: function})] from the workspace router,
    most specific first; a catch-all pattern becomes the default route."""
    router = tomllib.loads(Path(cargo_toml).read_text())["workspace"]["metadata"]["lambda"]["watch"]["router"]
    routes = []
    for pattern, target in router.items():
        if "{*" in pattern:
            continue  # the catch-all: $default
        methods = {entry["method"]: entry["function"] for entry in target}
        regex = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern)) + "$"
        routes.append((re.compile(regex), pattern, methods))
    return routes


def route(routes, method, path):
    """(function, routeKey, path parameters) for a request."""
    for regex, pattern, methods in routes:
        match = regex.match(path)
        if match and method in methods:
            return methods[method], f"{method} {pattern}", match.groupdict()
    return DEFAULT_FUNCTION, "$default", {}


def event_for(method, target, headers, body, client_ip, route_key, path_parameters):
    """The API Gateway HTTP API payload 2.0 event for one request."""
    url = urlsplit(target)
    joined = {}
    cookies = []
    for name, value in headers:
        name = name.lower()
        if name == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    query = {}
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        # API Gateway hands a body it cannot pass as text base64-encoded; the
        # function decides what to make of it.
        text, encoded = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    host = joined.get("host", "localhost")
    event = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": joined,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": method,
                "path": url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": client_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = text
    return event


def answer_from(result):
    """(status, [(header, value)], body bytes) from a function's response."""
    if not isinstance(result, dict) or "statusCode" not in result:
        raise ValueError(f"not an HTTP response: {str(result)[:200]}")
    headers = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, str(v)) for v in values)
    headers.extend(("set-cookie", c) for c in result.get("cookies") or [])
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    return int(result["statusCode"]), headers, data


class FrontDoor:
    """The front door on `port`, invoking functions at `invoke_url`, in a
    thread of its own until `stop()`."""

    def __init__(self, port, invoke_url, cargo_toml):
        routes = load_routes(cargo_toml)
        door = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self):
                # Every method, whatever its spelling, goes to a function.
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline:
                    self.close_connection = True
                    return
                if not self.parse_request():
                    return
                self.serve()
                self.wfile.flush()

            def serve(self):
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_BODY_BYTES:
                    self.reply(413, [("content-type", "application/json")], b'{"message":"Request Entity Too Large"}')
                    return
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                function, route_key, parameters = route(routes, self.command, path)
                event = event_for(
                    self.command, self.path, self.headers.items(), body,
                    self.client_address[0], route_key, parameters,
                )
                try:
                    status, headers, data = answer_from(door.invoke(invoke_url, function, event))
                except (OSError, ValueError, urllib.error.URLError) as problem:
                    self.log_message("invoking %s failed: %s", function, problem)
                    status, headers, data = 500, [("content-type", "application/json")], b'{"message":"Internal Server Error"}'
                self.reply(status, headers, data)

            def reply(self, status, headers, data):
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def invoke(invoke_url, function, event):
        request = urllib.request.Request(
            f"{invoke_url}/2015-03-31/functions/{function}/invocations",
            data=json.dumps(event).encode("utf-8"),
            headers={"content-type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=INVOKE_TIMEOUT_SECONDS) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as failure:  # the function failed
            raise ValueError(failure.read()[:200].decode("utf-8", "replace")) from failure

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
