"""A client of the daemon's socket: connect, request, stream.

`Client.connect(home)` raises `DaemonNotRunning` (with the command that starts one)
when nothing listens on ``HOME/daemon.sock``. Replies with ``"ok": false`` raise
`DaemonError` carrying the daemon's message and error kind.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, Iterator

from . import protocol as P


class DaemonNotRunning(Exception):
    """No daemon listens on the home's socket."""

    def __init__(self, home: Path):
        super().__init__(f"no Flowmetal daemon is running for {home}; start one with: "
                         f"flowmetal daemon --home {home}")
        self.home = home


class DaemonError(Exception):
    """The daemon answered with an error."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


class Client:
    """One connection to the daemon (not thread-safe: one request at a time, or
    pipeline with `send` and `recv`)."""

    def __init__(self, sock: socket.socket, home: Path):
        self.sock = sock
        self.home = home

    @classmethod
    def connect(cls, home: str | Path, timeout: float | None = None) -> "Client":
        home = Path(home)
        path = home / P.SOCKET_NAME
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if timeout is not None:
            s.settimeout(timeout)
        try:
            s.connect(str(path))
        except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError):
            # (No home there, or a file in its place: no daemon can be serving it.)
            s.close()
            raise DaemonNotRunning(home) from None
        except OSError as e:
            s.close()
            raise DaemonError(f"cannot connect to {path}: {e.strerror or e}") from None
        s.settimeout(None)
        return cls(s, home)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ frames
    def send(self, req: dict) -> None:
        try:
            P.send_frame(self.sock, req)
        except (BrokenPipeError, ConnectionResetError):
            # Not the CLI's own stdout closing (which the commands exit on quietly).
            raise DaemonError("the daemon closed the connection (a request in flight "
                              "may or may not have been done)", "unavailable") from None

    def recv(self) -> dict:
        try:
            reply = P.recv_frame(self.sock)
        except P.PeerClosed:
            raise DaemonError("the daemon closed the connection (a request in flight "
                              "may or may not have been done)", "unavailable") from None
        except P.ProtocolError as e:
            raise DaemonError(f"bad reply from the daemon: {e}", "protocol") from None
        if not isinstance(reply, dict):
            raise DaemonError("bad reply from the daemon", "protocol")
        if not reply.get("ok"):
            raise DaemonError(str(reply.get("error", "request failed")),
                              str(reply.get("kind", "error")))
        return reply

    def call(self, op: str, **fields: Any) -> dict:
        """One request, one reply."""
        self.send({"op": op, **fields})
        return self.recv()

    def stream(self, op: str, **fields: Any) -> Iterator[dict]:
        """A streaming request: yields every frame up to and including the "end" one."""
        self.send({"op": op, **fields})
        while True:
            r = self.recv()
            yield r
            if r.get("event") == "end":
                return

    # ------------------------------------------------------------ conveniences
    def ping(self) -> dict:
        return self.call("ping")

    def submit(self, file: str, source: str, *, flow: str | None = None,
               args: dict[str, str] | None = None) -> str:
        return self.call("submit", file=file, source=source, flow=flow,
                         args=args or {})["run_id"]

    def wait(self, run_id: str, *, output: bool = False) -> dict:
        """Block until the run ends; its "end" frame (state, result, exit)."""
        end: dict = {}
        for frame in self.stream("wait", run=run_id, output=output):
            end = frame
        return end

    def submit_many(self, requests: list[dict]) -> list[str | DaemonError]:
        """Submit many runs at once, pipelined on this connection (a writer thread
        sends while this one reads, so neither side's buffer can fill up and stall)."""
        def writer() -> None:
            try:
                for r in requests:
                    self.send({"op": "submit", **r})
            except OSError:
                pass
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        out: list[str | DaemonError] = []
        for _ in requests:
            try:
                out.append(self.recv()["run_id"])
            except DaemonError as e:
                if e.kind == "unavailable":
                    raise
                out.append(e)
        t.join()
        return out
