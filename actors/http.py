"""The HTTP action: ``fctx.actions.http(method, url, headers=None, body=None,
timeout=None)`` → ``struct(status, headers, body)``.

Performed with the standard library's `http.client`, one thread per request (a slow
server must not hold an actor's mailbox). Any HTTP status is a *result*, not an
error — a flow decides what a 404 means. Errors are what prevented an answer
(bad URL, unknown host, refused connection, timeout, TLS failure) and come back as
one-line messages naming the method and URL, which the flow sees as a failed action.

The request arrives as its intent (`flowmetal.actor_prelude.HttpRequest.to_json`:
plain data, checked where the flow called the action). Header values may be
secrets, by name: they are revealed here, right before the request
leaves, and any revealed plaintext the server echoes back (in headers or body) is
replaced by ``<secret>`` before the result is journaled. Redirects are not followed
(a redirect could carry an Authorization header to another host); the 3xx status and
its ``location`` header are returned instead.

Every request carries ``Flowmetal-Action-Id: <flow id>:<seq>`` so
that servers can deduplicate a request re-issued after a crash (actions are
at-least-once).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import urllib.parse
from typing import Any, Callable

import pykka

from flowmetal.secrets import Redactor, SecretError, SecretSource, process_source, reveal
from .codec import UNAVAILABLE

__all__ = ["HttpActor", "perform", "DEFAULT_TIMEOUT", "MAX_BODY", "ACTION_ID_HEADER"]

DEFAULT_TIMEOUT = 30.0
MAX_BODY = 16 << 20      # response bytes kept; a longer body is an error, not a cut
ACTION_ID_HEADER = "Flowmetal-Action-Id"


def _describe(e: BaseException) -> str:
    if isinstance(e, socket.timeout) or isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve the host ({e.strerror or e})"
    if isinstance(e, ssl.SSLError):
        return f"TLS error: {e.reason or e}"
    if isinstance(e, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(e, http.client.HTTPException):
        return f"bad HTTP response ({type(e).__name__}: {e})"
    if isinstance(e, OSError):
        return e.strerror or str(e) or type(e).__name__
    return f"{type(e).__name__}: {e}"


def perform(request: dict, action_id: str | None, secrets: SecretSource | None,
            *, max_body: int = MAX_BODY) -> tuple:
    """Perform one HTTP request; the outcome ("ok", struct(status, headers, body)) or
    ("err", message). `body` is text (UTF-8, invalid bytes replaced) unless the
    request body was bytes, in which case the response body is bytes too."""
    from flowmetal.starlark import struct
    method = request["method"]
    url = request["url"]
    where = f"http: {method} {url}"
    used: list[str] = []
    try:
        headers = reveal(request.get("headers") or {}, secrets or process_source(), used)
    except SecretError as e:
        return (UNAVAILABLE, f"{where}: {e}")   # as for exec (see actors.resources)
    redact = Redactor(used)
    p = urllib.parse.urlsplit(url)
    path = p.path or "/"
    if p.query:
        path += "?" + p.query
    body = request.get("body")
    want_bytes = isinstance(body, bytes)
    data = body.encode("utf-8") if isinstance(body, str) else body
    timeout = request.get("timeout") or DEFAULT_TIMEOUT
    conn_cls = http.client.HTTPSConnection if p.scheme == "https" else http.client.HTTPConnection
    conn = None
    try:
        conn = conn_cls(p.hostname, p.port, timeout=timeout)
        conn.putrequest(method, path, skip_accept_encoding=True)
        sent = {k.lower() for k in headers}
        for k, v in headers.items():
            conn.putheader(k, v)
        if action_id is not None and ACTION_ID_HEADER.lower() not in sent:
            conn.putheader(ACTION_ID_HEADER, action_id)
        if data is not None and "content-length" not in sent:
            conn.putheader("Content-Length", str(len(data)))
        if "user-agent" not in sent:
            conn.putheader("User-Agent", "flowmetal")
        conn.endheaders(data)
        resp = conn.getresponse()
        raw = resp.read(max_body + 1)
        if len(raw) > max_body:
            return ("err", f"{where}: response body larger than {max_body} bytes")
        rheaders: dict[str, str] = {}
        for k, v in resp.getheaders():
            k = k.lower()
            # Repeated headers (set-cookie) join as the HTTP spec allows for most.
            rheaders[k] = f"{rheaders[k]}, {v}" if k in rheaders else v
        raw = redact.data(raw)
        out_body: Any = raw if want_bytes else raw.decode("utf-8", "replace")
        return ("ok", struct(status=resp.status, headers=redact.any(rheaders),
                             body=out_body))
    except ValueError as e:  # http.client's checks of header names/values, ports
        return ("err", f"{where}: {redact.text(str(e))}")
    except Exception as e:  # noqa: BLE001 - every failure is the flow's error
        return ("err", f"{where}: {redact.text(_describe(e))}")
    finally:
        if conn is not None:
            conn.close()


class HttpActor(pykka.ThreadingActor):
    """Performs HTTP requests; replies by calling ``reply(flow_id, seq, outcome)``.

    Message: ("http", flow_id, seq, request_dict). `secrets` resolves secret header
    values (the home's `SecretSource`)."""

    use_daemon_thread = True

    def __init__(self, reply: Callable[[str, int, tuple], None],
                 secrets: SecretSource | None = None):
        super().__init__()
        self.reply = reply
        self.secrets = secrets

    def on_receive(self, message: Any) -> Any:
        if message[0] == "http":
            _, flow_id, seq, request = message
            threading.Thread(target=self._run, args=(flow_id, seq, request),
                             name=f"http-{flow_id}:{seq}", daemon=True).start()
        return None

    def _run(self, flow_id: str, seq: int, request: dict) -> None:
        try:
            outcome = perform(request, f"{flow_id}:{seq}", self.secrets)
        except Exception as e:  # noqa: BLE001 - a bug here must still answer the flow
            outcome = ("err", f"http: {type(e).__name__}: {e}")
        self.reply(flow_id, seq, outcome)
