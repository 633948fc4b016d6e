"""`flowmetal daemon`: the single-host service that owns the runtime.

Start-up, in this order: take the home's lock file (one daemon per home; a second
one exits non-zero), open the store and the `Runtime` (its workers), reload the live
batches, recover every live run from its checkpoints, and only then bind
``HOME/daemon.sock`` — a socket left by a killed daemon is replaced, which is safe
because we hold the lock. Clients whose uid differs from ours are refused.

Each connection gets a thread that reads request frames and answers them in order
(see `protocol`). A bad frame earns an error reply — or, when the stream cannot be
resynchronised, a closed connection — and never harms the daemon or other clients.

SIGTERM/SIGINT: stop accepting, stop the batch supervisor, close the runtime (flows
finish the step they are in and commit their checkpoint; workers stop), close the
store, exit 0 — within a bounded time, since anything unfinished resumes from its
checkpoint at the next start anyway.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from . import protocol as P
from .batches import BatchSupervisor

log = logging.getLogger("flowmetal.daemon")

LIVE = ("pending", "running", "waiting")
ENDED = ("ok", "err", "cancelled", "crashed")


class DaemonError(Exception):
    """The daemon cannot start (another one runs, the socket cannot be bound, ...)."""


class _Refused(Exception):
    def __init__(self, message: str, kind: str = "usage"):
        super().__init__(message)
        self.kind = kind


@contextlib.contextmanager
def _refusing_bad_programs():
    """Turn a program's syntax, Starlark and run-setup errors into error replies
    whose kind picks the client's exit status."""
    from actors import RunError
    from flowmetal.starlark import StarlarkError, StarlarkSyntaxError
    try:
        yield
    except StarlarkSyntaxError as e:
        raise _Refused(str(e), "syntax") from None
    except StarlarkError as e:
        raise _Refused(str(e), "err") from None
    except RunError as e:
        raise _Refused(str(e), "usage") from None


# Replies to pipelined submissions a connection holds back at most (see `_serve_conn`).
MAX_ACKS = 256
ORPHAN_SCAN = 1.0   # seconds between looks for runs whose process died
ADOPT_AFTER = 5.0   # s a claim must lie free before its run is adopted (STOP_GRACE + slack)


class _Created:
    """A submitted run until it is durable: `reply()` waits for that and returns the
    submission's reply (the run id, or why the run could not be stored)."""

    __slots__ = ("run_id", "error", "_done")

    def __init__(self) -> None:
        self.run_id = ""
        self.error: BaseException | None = None
        self._done = threading.Event()

    def set(self, error: BaseException | None) -> None:
        self.error = error
        self._done.set()

    def reply(self) -> dict:
        self._done.wait()
        if self.error is not None:
            log.error("run %s could not be stored: %s", self.run_id, self.error)
            return P.error_reply(f"the run could not be stored: {self.error}")
        return {"ok": True, "run_id": self.run_id}


def _ready(*files: Any, timeout: float | None = 0) -> set[int]:
    """The descriptors among `files` that are readable (or at end of file) within
    `timeout` s (None: until one is). poll(2), not select(2): with its open-files
    limit raised (`_raise_fd_limit`) the daemon has descriptors past select's 1,024."""
    p = select.poll()
    for f in files:
        p.register(f, select.POLLIN)
    ms = None if timeout is None else int(timeout * 1000)
    return {fd for fd, _ in p.poll(ms)}


def _readable(conn: socket.socket) -> bool:
    """Whether the client has sent more (without waiting for it)."""
    try:
        return bool(_ready(conn))
    except (OSError, ValueError):
        return False


def _setup_logging(home: Path, verbose: bool) -> None:
    path = home / P.LOG_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setFormatter(fmt)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    log.handlers[:] = [fh, sh]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


class Daemon:
    """One daemon serving one home directory."""

    def __init__(self, home: Path, *, workers: int = 2, sync: bool = True,
                 verbose: bool = False, shutdown_timeout: float = 10.0):
        self.home = Path(home)
        self.workers = workers
        self.sync = sync
        self.verbose = verbose
        self.shutdown_timeout = shutdown_timeout
        self.sock_path = self.home / P.SOCKET_NAME
        self.lock_path = self.home / P.LOCK_NAME
        self.uid = os.geteuid()
        self.lock_fd: int | None = None
        self.listener: socket.socket | None = None
        self.store: Any = None
        self.rt: Any = None
        self.batches: BatchSupervisor | None = None
        self.stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._waiting: dict[str, threading.Event] = {}
        self._wlock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.started = time.time()
        self.ops: dict[str, Callable[[socket.socket, dict], Any]] = {
            "ping": self.op_ping, "submit": self.op_submit, "wait": self.op_wait,
            "cancel": self.op_cancel, "resume": self.op_resume, "send": self.op_send,
            "batch_create": self.op_batch_create, "batch_retry": self.op_batch_retry,
            "batch_cancel": self.op_batch_cancel,
            "shutdown": self.op_shutdown,
        }

    # ================================================================ start-up
    def _take_lock(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            other = ""
            try:
                other = os.pread(fd, 32, 0).decode().strip()
            except OSError:
                pass
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f" (pid {other})" if other else ""
                raise DaemonError(f"another daemon is already running on {self.home}{who}")
            raise DaemonError(f"cannot lock {self.lock_path}: {e.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.lock_fd = fd

    def _bind(self) -> None:
        path = str(self.sock_path)
        if len(path.encode()) >= 104:
            raise DaemonError(f"socket path too long for a Unix socket: {path}")
        # We hold the lock, so a socket file here is a stale one of a dead daemon.
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)   # born 0600: no window where others could connect
        try:
            s.bind(path)
        except OSError as e:
            s.close()
            raise DaemonError(f"cannot bind {path}: {e.strerror}") from None
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        s.listen(128)
        self.listener = s

    def start(self) -> None:
        """Lock, open, recover, bind. Raises DaemonError."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.chmod(self.home, 0o700)
        except OSError:
            pass
        self._take_lock()
        _setup_logging(self.home, self.verbose)
        _raise_fd_limit()
        from actors import Runtime
        from actors.memory import freeze_startup_objects
        from store import Store, StoreError
        try:
            self.store = Store.open(self.home, sync=self.sync)
        except StoreError as e:
            raise DaemonError(f"cannot open the store: {e}") from None
        t0 = time.monotonic()
        self.rt = Runtime(self.store, workers=self.workers)
        freeze_startup_objects()
        self.batches = BatchSupervisor(self.store, self.rt)
        self.rt.add_run_listener(self._run_ended)
        nb = self.batches.load()
        nr = self._recover_runs()
        self.batches.start()
        threading.Thread(target=self._adopt_orphans, name="orphans", daemon=True).start()
        log.info("daemon pid %d on %s: %d workers, recovered %d runs and %d batches "
                 "in %.2f s", os.getpid(), self.home, self.workers, nr, nb,
                 time.monotonic() - t0)
        self._bind()

    def _recover_runs(self) -> int:
        ids = []
        for state in LIVE:
            ids += [r.id for r in self.store.list_runs(state, limit=1 << 30)]
        from actors import RunClaimed
        n = 0
        for rid in ids:
            try:
                self.rt.resume_run(rid)
                n += 1
            except RunClaimed as e:
                # `flowmetal run` in the foreground, say: it is that process's run.
                # Once that process is gone, `flowmetal resume` continues it here.
                log.info("not recovering run %s: %s", rid, e)
            except Exception as e:  # noqa: BLE001 - one bad run must not stop the rest
                log.error("cannot recover run %s: %s", rid, e)
        return n

    def _adopt_orphans(self) -> None:
        """Carry on the runs whose process died: a foreground `flowmetal run` or
        `resume` killed while this daemon serves the home leaves its claim file in
        ``HOME/owners`` (see `actors.ownership`), unlocked once it is gone; without
        this its run would stay `waiting` until someone resumed it by hand. A claim
        that has lain free for `ADOPT_AFTER` s is taken over."""
        from actors import RunClaimed
        from actors.ownership import RunBusy, run_owner
        owners = self.rt.owners
        free_since: dict[str, float] = {}
        while not self.stopping.wait(ORPHAN_SCAN):
            try:
                names = set(os.listdir(owners.dir))
            except OSError:
                continue
            now = time.monotonic()
            free_since = {rid: t for rid, t in free_since.items() if rid in names}
            for rid in names:
                if self.stopping.is_set() or owners.holds(rid):
                    continue
                if run_owner(self.home, rid) is not None:
                    free_since.pop(rid, None)
                    continue
                # Not at once: the dead process's command warden and worker processes
                # take a few seconds to stop its commands, which must not overlap the
                # ones the run issues again here.
                if now - free_since.setdefault(rid, now) < ADOPT_AFTER:
                    continue
                free_since.pop(rid, None)
                try:
                    run = self.store.get_run(rid)
                    if run is None or run.state not in LIVE:
                        # Never created, ended or crashed (resumed by hand): only the
                        # file is left, unless its process, still alive, holds it.
                        if owners.claim(rid):
                            owners.release(rid)
                        continue
                    self.rt.resume_run(rid)
                    log.info("adopted run %s: the process that ran it has gone", rid)
                except (RunBusy, RunClaimed):
                    continue   # its process still runs it
                except Exception as e:  # noqa: BLE001 - the scan goes on for the others
                    log.warning("cannot adopt run %s: %s", rid, e)

    def _run_ended(self, w: Any) -> None:
        # Runtime listener: called with the runtime lock held, so only hand off.
        with self._wlock:
            ev = self._waiting.pop(w.run_id, None)
        if ev is not None:
            ev.set()
        if self.batches is not None:
            self.batches.run_done(w.run_id)
        self.rt.forget_run(w.run_id)

    # ================================================================ serving
    def serve_forever(self) -> None:
        assert self.listener is not None
        self.listener.setblocking(False)
        while not self.stopping.is_set():
            try:
                ready = _ready(self.listener, self._wake_r, timeout=None)
            except InterruptedError:
                continue
            if self._wake_r in ready:
                break
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                log.warning("accept failed: %s", e)
                time.sleep(0.05)
                continue
            conn.setblocking(True)
            threading.Thread(target=self._serve_conn, args=(conn,), daemon=True,
                             name="conn").start()

    def request_stop(self) -> None:
        self.stopping.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _serve_conn(self, conn: socket.socket) -> None:
        with self._wlock:
            self.conns.add(conn)
        # Replies to submissions whose runs are not durable yet, in request order: sent
        # once the client has nothing more queued (or many are due), so that a burst
        # of pipelined submissions is created in a few shared commits.
        acks: list[_Created] = []
        try:
            if not self._check_peer(conn):
                return
            while not self.stopping.is_set():
                if acks and (len(acks) >= MAX_ACKS or not _readable(conn)):
                    self._send_acks(conn, acks)
                try:
                    req = P.recv_frame(conn)
                except P.PeerClosed:
                    # A client that half-closed after its requests (or our shutdown)
                    # still gets the replies it is owed: its runs exist.
                    self._send_acks(conn, acks)
                    return
                except P.ProtocolError as e:
                    self._send_acks(conn, acks)
                    self._reply(conn, P.error_reply(str(e), "protocol"))
                    if e.fatal:
                        self._linger(conn)
                        return
                    continue
                if not self.handle(conn, req, acks):
                    return
            self._send_acks(conn, acks)
        except OSError:
            return  # the client went away mid-reply
        finally:
            with self._wlock:
                self.conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _check_peer(self, conn: socket.socket) -> bool:
        try:
            uid = P.peer_uid(conn)
        except OSError:
            uid = None
        if P.peer_allowed(uid, self.uid):
            return True
        log.warning("refused a client with uid %s (daemon uid %d)", uid, self.uid)
        self._reply(conn, P.error_reply(
            f"permission denied: this daemon serves uid {self.uid} only", "denied"))
        self._linger(conn)
        return False

    @staticmethod
    def _linger(conn: socket.socket) -> None:
        # Closing with unread input makes the peer see a reset instead of our reply:
        # end our side, then swallow (a bounded amount of) what it already sent.
        try:
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(0.2)
            for _ in range(64):
                if not conn.recv(65536):
                    break
        except OSError:
            pass

    def _send_acks(self, conn: socket.socket, acks: list["_Created"]) -> None:
        for created in acks:
            self._reply(conn, created.reply())
        acks.clear()

    def _reply(self, conn: socket.socket, obj: dict) -> None:
        try:
            P.send_frame(conn, obj)
        except P.ProtocolError as e:
            P.send_frame(conn, P.error_reply(f"reply too large: {e}"))

    def handle(self, conn: socket.socket, req: Any, acks: list | None = None) -> bool:
        """Answer one request; False to close the connection. A reply that waits for
        a run to be durable goes to `acks` (the caller sends them in order before any
        later reply); without `acks` it is sent here."""
        mine = acks is None
        acks = [] if acks is None else acks
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            self._send_acks(conn, acks)
            self._reply(conn, P.error_reply("a request must be an object with an \"op\"",
                                            "protocol"))
            return True
        op = self.ops.get(req["op"])
        if op is None:
            self._send_acks(conn, acks)
            self._reply(conn, P.error_reply(f"unknown op {req['op'][:100]!r}", "protocol"))
            return True
        if not (op == self.op_submit and not req.get("wait")):
            self._send_acks(conn, acks)   # this op may reply (or stream) at once
        try:
            reply = op(conn, req)
        except _Refused as e:
            reply = P.error_reply(str(e), e.kind)
        except OSError as e:
            if e.errno in _PEER_GONE:
                raise   # the client went away mid-reply (a streaming op)
            # The host refused us something (open files, disk space): say what, and
            # keep the connection — it is not the client's doing.
            log.error("op %s failed: %s", req["op"], e)
            hint = " (it keeps a file open per live run: raise its `ulimit -n`)" \
                if e.errno in (errno.EMFILE, errno.ENFILE) else ""
            reply = P.error_reply(f"the daemon: {e.strerror or e}{hint}")
        except Exception as e:  # noqa: BLE001 - the daemon stays up; the log has details
            log.exception("op %s failed", req["op"])
            reply = P.error_reply(f"internal error: {type(e).__name__}: {e}")
        if isinstance(reply, _Created):
            acks.append(reply)
        elif reply is not None:
            self._send_acks(conn, acks)
            self._reply(conn, reply)
        if mine:
            self._send_acks(conn, acks)
        return True

    # ================================================================ ops
    def _str(self, req: dict, key: str, required: bool = True) -> str | None:
        v = req.get(key)
        if v is None and not required:
            return None
        if not isinstance(v, str) or not v:
            raise _Refused(f"{req['op']}: {key!r} must be a non-empty string", "protocol")
        return v

    def _run(self, req: dict) -> Any:
        rid = self._str(req, "run")
        run = self.store.get_run(rid)
        if run is None:
            raise _Refused(f"no run {rid!r}")
        return run

    def op_ping(self, conn: socket.socket, req: dict) -> dict:
        return {"ok": True, "pid": os.getpid(), "home": str(self.home),
                "workers": self.workers, "uptime": time.time() - self.started}

    def op_shutdown(self, conn: socket.socket, req: dict) -> dict:
        log.info("shutdown requested by a client")
        self.request_stop()
        return {"ok": True}

    def _args(self, req: dict) -> dict[str, str]:
        args = req.get("args") or {}
        if not isinstance(args, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in args.items()):
            raise _Refused(f"{req['op']}: 'args' must map names to strings", "protocol")
        return args

    def _create(self, file: str, source: str, flow: str | None, args: dict) -> "_Created":
        """Start a run whose creation may ride on its root's first commit: the run id
        may be told once `_Created.reply()` returns (see `actors.creation`)."""
        created = _Created()
        with _refusing_bad_programs():
            created.run_id = self.rt.create_run(file, source, flow=flow, args=args,
                                                on_created=created.set)
        return created

    def _program(self, req: dict, what: str) -> tuple[str, str, str | None, dict]:
        """The file, source, flow name and arguments of a request that starts runs."""
        if self.stopping.is_set():
            raise _Refused("the daemon is shutting down", "unavailable")
        file = self._str(req, "file")
        source = req.get("source")
        if not isinstance(source, str):
            raise _Refused(f"{what}: 'source' must be a string", "protocol")
        return file, source, self._str(req, "flow", required=False), self._args(req)

    def op_submit(self, conn: socket.socket, req: dict) -> dict | None:
        file, source, flow, args = self._program(req, "submit")
        if args and flow is None:
            raise _Refused("--arg needs --flow (the main block takes no arguments)")
        created = self._create(file, source, flow, args)
        log.debug("run %s submitted (%s)", created.run_id, file)
        if not req.get("wait"):
            # The reply waits for the run to be durable, but the connection reads on
            # meanwhile: pipelined submissions share their commits (`_serve_conn`).
            return created
        r = created.reply()
        if not r["ok"]:
            return r
        run_id = r["run_id"]
        self._reply(conn, {"ok": True, "event": "started", "run_id": run_id})
        self._stream(conn, run_id, output=bool(req.get("output", True)), offset=0)
        return None

    def op_wait(self, conn: socket.socket, req: dict) -> None:
        run = self._run(req)
        offset = req.get("offset", 0)
        if not isinstance(offset, int) or offset < 0:
            raise _Refused("wait: 'offset' must be a non-negative integer", "protocol")
        self._stream(conn, run.id, output=bool(req.get("output", True)), offset=offset)
        return None

    def _stream(self, conn: socket.socket, run_id: str, *, output: bool, offset: int) -> None:
        """Send the run's output as it is committed, then an "end" frame."""
        store = self.store
        while True:
            with self._wlock:
                ev = self._waiting.get(run_id)
                if ev is None or ev.is_set():
                    ev = self._waiting[run_id] = threading.Event()
            # The end is committed before the listener fires: reading the store after
            # registering cannot miss it.
            run = store.get_run(run_id)
            if output:
                offset = self._send_output(conn, run_id, offset)
            if run is None:
                self._reply(conn, P.error_reply(f"run {run_id!r} disappeared (pruned?)"))
                return
            if run.state in ENDED:
                if output:
                    offset = self._send_output(conn, run_id, offset)
                self._reply(conn, self._end_frame(run, offset))
                return
            if self.stopping.is_set():
                self._reply(conn, P.error_reply("the daemon is shutting down; the run "
                                                "goes on at its next start", "unavailable"))
                return
            ev.wait(0.05 if output else 1.0)
            if self._peer_gone(conn):
                return

    @staticmethod
    def _peer_gone(conn: socket.socket) -> bool:
        try:
            return bool(_ready(conn)) and conn.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _send_output(self, conn: socket.socket, run_id: str, offset: int) -> int:
        while True:
            chunks = [c for c in self.store.read_output(run_id, offset, limit=500)
                      if c.offset >= offset]
            if not chunks:
                return offset
            # One frame per stream switch keeps stdout/stderr ordering and few frames.
            cur, buf = chunks[0].stream, []
            for c in chunks:
                if c.stream != cur:
                    self._reply(conn, {"ok": True, "event": "out", "stream": cur,
                                       "text": "".join(buf), "offset": offset})
                    cur, buf = c.stream, []
                buf.append(c.text)
                offset = c.end
            self._reply(conn, {"ok": True, "event": "out", "stream": cur,
                               "text": "".join(buf), "offset": offset})

    def _end_frame(self, run: Any, offset: int) -> dict:
        from flowmetal.starlark.values import to_repr
        from flowmetal.prelude import Err
        text, ok = None, False
        if run.state == "crashed":
            cf = run.meta.get("crashed_flow", run.root_flow)
            text = to_repr(Err(f"flow {cf} crashed: {run.meta.get('error', '')}"))
        else:
            root = self.store.get_flow(run.root_flow) if run.root_flow else None
            rec = root.result if root is not None else None
            if isinstance(rec, dict):
                ok = bool(rec.get("ok"))
                err = rec.get("json")
                if not ok and isinstance(err, str) and "\n" in err:
                    # A Starlark traceback reads better as text (as `flowmetal run`).
                    text = "Err:\n" + err.rstrip("\n")
                else:
                    text = rec.get("repr")
            else:
                text = to_repr(Err("the flow left no result"))
        return {"ok": True, "event": "end", "run_id": run.id, "state": run.state,
                "result_ok": ok, "result": text, "offset": offset,
                "exit": 0 if ok else 1}

    def op_cancel(self, conn: socket.socket, req: dict) -> dict:
        run = self._run(req)
        ids = self.rt.cancel_run(run.id)
        log.info("run %s: cancelled %d flows", run.id, len(ids))
        return {"ok": True, "run_id": run.id, "cancelled": ids,
                "state": self.store.get_run(run.id).state}

    def op_send(self, conn: socket.socket, req: dict) -> dict:
        """Deliver an external message (plain JSON data) into a flow's inbox; `target`
        is a flow id or a run id (its root flow)."""
        from actors.inbox import InboxError
        target = self._str(req, "target")
        msg_id = req.get("msg_id")
        if msg_id is not None and (not isinstance(msg_id, str) or not msg_id):
            raise _Refused("send: 'msg_id' must be a non-empty string", "protocol")
        flow_id = target
        if self.store.get_flow(target) is None:
            run = self.store.get_run(target)
            if run is None or not run.root_flow:
                raise _Refused(f"no run or flow {target!r}")
            flow_id = run.root_flow
        try:
            seq = self.rt.inbox.deliver_external(flow_id, req.get("body"), msg_id)
        except InboxError as e:
            raise _Refused(str(e), "err") from None
        log.debug("message %s delivered to flow %s", seq, flow_id)
        return {"ok": True, "flow": flow_id, "seq": seq, "duplicate": seq is None}

    def op_resume(self, conn: socket.socket, req: dict) -> dict | None:
        run = self._run(req)
        offset = req.get("offset", 0)
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise _Refused("resume: 'offset' must be a non-negative integer", "protocol")
        if run.state in ("ok", "err", "cancelled"):
            if not req.get("wait"):
                raise _Refused(f"run {run.id} already ended ({run.state})")
            # Waiting on an ended run (a client that lost its daemon mid-run, say):
            # its output from `offset` and its end, as for a live one.
            resumed = False
        elif run.state != "crashed" and self.rt.owners.holds(run.id):
            # Recovered at start-up (or submitted here): being run right now.
            resumed = False
        else:
            # Crashed, or a run that another process ran when this daemon started
            # (claimed then, so not recovered): resumed here unless still claimed.
            from actors import RunError
            from store import StoreError
            try:
                self.rt.resume_run(run.id)
            except (RunError, StoreError) as e:
                raise _Refused(str(e), "err") from None
            log.info("run %s resumed", run.id)
            resumed = True
        if not req.get("wait"):
            return {"ok": True, "run_id": run.id, "resumed": resumed}
        self._reply(conn, {"ok": True, "event": "started", "run_id": run.id,
                           "resumed": resumed})
        self._stream(conn, run.id, output=bool(req.get("output", True)), offset=offset)
        return None

    def op_batch_create(self, conn: socket.socket, req: dict) -> dict:
        from actors.runtime import check_arg_names, convert_arg
        from store import Batch, code_hash
        file, source, flow, args = self._program(req, "batch")
        items = req.get("items")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise _Refused("batch: 'items' must be a list of objects", "protocol")
        conc = req.get("concurrency", 4)
        if not isinstance(conc, int) or conc < 1:
            raise _Refused("batch: 'concurrency' must be a positive integer", "protocol")
        if flow is None:
            raise _Refused("batch needs --flow (items are a flow's arguments)")
        # Check the file, the flow and the default arguments once, up front, rather
        # than per item (with the words `create_run` refuses a submission with).
        with _refusing_bad_programs():
            decl = dict(self.rt._flow_def(file, source, flow).params)
            check_arg_names(flow, decl, args)
            for k, text in args.items():
                convert_arg(k, text, decl[k])
        from actors import new_run_id
        bid = "b" + new_run_id()[1:]
        code = code_hash(source.encode("utf-8"))
        meta = {"file": os.path.abspath(file), "code": code, "flow": flow, "args": args,
                "concurrency": conc,
                "counts": {"ok": 0, "failed": 0, "running": 0, "pending": len(items)}}
        self.store.commit(Batch().put_code(source).create_batch(bid, items, meta=meta))
        self.batches.add(bid)
        log.info("batch %s: %d items of %s, concurrency %d", bid, len(items), flow, conc)
        return {"ok": True, "batch_id": bid, "size": len(items)}

    def op_batch_retry(self, conn: socket.socket, req: dict) -> dict:
        bid = self._str(req, "batch")
        return {"ok": True, "batch_id": bid, "retried": self._batch_op(self.batches.retry, bid)}

    def op_batch_cancel(self, conn: socket.socket, req: dict) -> dict:
        bid = self._str(req, "batch")
        n = self._batch_op(self.batches.cancel, bid)
        log.info("batch %s: cancelled %d items", bid, n)
        return {"ok": True, "batch_id": bid, "cancelled": n,
                "state": self.store.get_batch(bid).state}

    @staticmethod
    def _batch_op(op: Any, bid: str) -> int:
        try:
            return op(bid)
        except LookupError as e:
            # A KeyError's str() quotes its message: take the message itself.
            raise _Refused(str(e.args[0]) if e.args else str(e)) from None

    # ================================================================ shutdown
    def shutdown(self) -> None:
        """Stop accepting, let flows reach their checkpoints, stop workers, close."""
        self.stopping.set()
        deadline = time.monotonic() + self.shutdown_timeout
        if self.listener is not None:
            try:
                self.listener.close()
            except OSError:
                pass
            try:
                os.unlink(self.sock_path)
            except OSError:
                pass
        if self.batches is not None:
            self.batches.stop()
        with self._wlock:
            for ev in self._waiting.values():
                ev.set()
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        if self.rt is not None:
            self.rt.close()
            # In-process flow actors finish the step they are in (its commit) first.
            import pykka
            left = max(0.5, deadline - time.monotonic())
            try:
                pykka.ActorRegistry.stop_all(block=True, timeout=left)
            except Exception:  # noqa: BLE001 - past the bound: their checkpoints rule
                pass
        if self.store is not None:
            try:
                self.store.close()
            except Exception as e:  # noqa: BLE001
                log.warning("closing the store: %s", e)
        log.info("daemon stopped")
        if self.lock_fd is not None:
            try:
                os.ftruncate(self.lock_fd, 0)
                os.close(self.lock_fd)
            except OSError:
                pass


def run_daemon(home: Path, *, workers: int, sync: bool, verbose: bool = False) -> int:
    """Run a daemon in the foreground until SIGTERM/SIGINT; the exit status."""
    d = Daemon(home, workers=workers, sync=sync, verbose=verbose)
    try:
        d.start()
    except DaemonError as e:
        print(f"flowmetal daemon: {e}", file=sys.stderr)
        if d.lock_fd is not None:
            d.shutdown()
        return 1

    def on_signal(signum: int, frame: Any) -> None:
        log.info("%s received: shutting down", signal.Signals(signum).name)
        d.request_stop()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A watchdog bounds the whole shutdown even if something hangs.
    try:
        d.serve_forever()
    finally:
        t = threading.Timer(d.shutdown_timeout + 5, os._exit, (0,))
        t.daemon = True
        t.start()
        d.shutdown()
    return 0


# Errors of a socket whose peer is gone; any other OSError in an op is the host's.
_PEER_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED,
                        errno.ESHUTDOWN, errno.EBADF, errno.ETIMEDOUT})


def _raise_fd_limit() -> None:
    """Lift the soft limit on open files to the hard one: the daemon holds a lock file
    open per live run (actors.ownership), and desktop defaults (a soft 1,024) would
    cap it near a thousand sleeping runs."""
    import resource
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    except (OSError, ValueError) as e:
        log.warning("could not raise the open-files limit: %s", e)
        return
    log.debug("open files: at most %d", soft)
