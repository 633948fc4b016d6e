"""Unit tests of the HTTP action (`actors.http`) against servers on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest

from actors.http import perform
from flowmetal.actor_prelude import HttpRequest, action_http
from flowmetal.secrets import Secret, SecretSource
from flowmetal.starlark import EvalError, Suspend

PLAIN = "tok-very-secret-9"


class _Echo(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):  # keep test output clean
        pass

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path == "/slow":
            import time
            time.sleep(2)
        status = 404 if self.path == "/missing" else 200
        out = json.dumps({"method": self.command, "path": self.path,
                          "headers": dict(self.headers), "body": body.decode()}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo-Auth", self.headers.get("Authorization", ""))
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        try:
            self.wfile.write(out)
        except OSError:
            pass  # the client gave up (the timeout test)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def request(*a, **kw) -> dict:
    try:
        action_http(*a, **kw)
    except Suspend as s:
        assert isinstance(s.request, HttpRequest)
        return s.request.to_json()
    raise AssertionError("http did not suspend")


class R:
    """A result struct's fields as attributes."""

    def __init__(self, s):
        self.__dict__.update(s._fields)


def perform_ok(*a):
    kind, r = perform(*a)
    assert kind == "ok", r
    return kind, R(r)


def test_get_and_post(server):
    kind, r = perform_ok(request("GET", server + "/a?x=1"), "f:1", None)
    assert kind == "ok" and r.status == 200
    echoed = json.loads(r.body)
    assert echoed["path"] == "/a?x=1"
    assert echoed["headers"]["Flowmetal-Action-Id"] == "f:1"
    kind, r = perform_ok(request("post", server + "/p", headers={"X-A": "1"}, body="hello"),
                      None, None)
    assert json.loads(r.body)["body"] == "hello"
    assert r.headers["content-type"] == "application/json"


def test_status_is_a_result(server):
    kind, r = perform_ok(request("GET", server + "/missing"), None, None)
    assert (kind, r.status) == ("ok", 404)


def test_secret_header_is_revealed_and_redacted(server, tmp_path):
    (tmp_path / "secrets").write_text(f"API_TOKEN={PLAIN}\n")
    (tmp_path / "secrets").chmod(0o600)
    req = request("GET", server + "/s", headers={"Authorization": Secret("API_TOKEN")})
    assert PLAIN not in json.dumps(req)
    kind, r = perform_ok(req, None, SecretSource(tmp_path, environ={}))
    assert kind == "ok"
    # The server saw the plaintext; the flow's result never holds it.
    assert PLAIN not in r.body and "<secret>" in r.body
    assert r.headers["x-echo-auth"] == "<secret>"


def test_errors_are_clear_messages(server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kind, msg = perform(request("GET", f"http://127.0.0.1:{port}/"), None, None)
    assert kind == "err" and "connection refused" in msg and f"127.0.0.1:{port}" in msg
    kind, msg = perform(request("GET", server + "/slow", timeout=0.3), None, None)
    assert kind == "err" and msg.endswith("timed out")
    kind, msg = perform(request("GET", server + "/", headers={"A": Secret("NOPE")}), None,
                        SecretSource(None, environ={}))
    # Not the flow's error: the run crashes (resumable) rather than ends Err.
    assert kind == "unavailable" and "missing secret NOPE" in msg


@pytest.mark.parametrize("args, msg", [
    (("FETCH", "http://x/"), "method must be one of"),
    (("GET", "ftp://x/"), "not an http"),
    (("GET", "http://x/", {"A": 1}), "headers must be a dict"),
    (("GET", "http://x/", {"A": "a\nb"}), "no line breaks"),
    (("GET", "http://x/", None, 3), "body must be a string"),
])
def test_bad_requests_fail_at_the_call(args, msg):
    with pytest.raises(EvalError, match=msg):
        action_http(*args)
