"""Resource actors: durable timers and subprocess execution.

`TimerActor` fires sleeps. The due times live in the store (written in the same
transaction as the sleeping flow's checkpoint), so a restarted runtime re-reads them
and fires them at their original due time — at once if it has passed. The actor's
heap is only a cache of what the store says. With a virtual clock it fires the
earliest timer as soon as nothing else can run, advancing the clock to its due time.

`ExecActor` runs commands for `fctx.actions.exec`, each in its own thread (a
command may run for minutes; the actor's mailbox must not wait for it), with a
timeout, capped output, and ``FLOWMETAL_ACTION_ID=<flow id>:<seq>`` in the
environment so commands can deduplicate re-issued actions. The timeout bounds the
whole command, including any background child that keeps its output open; with no
timeout, such a child is killed (with the rest of the command's process group)
`DRAIN_GRACE` seconds after the command exits, so that a daemonised grandchild
cannot hold a flow forever. Secret values in ``env``
(by name in the request) are revealed only for the command, and redacted from its
output. A cancelled flow's running commands are stopped: SIGTERM to the command's
process group (it runs in a session of its own), SIGKILL if it is still there
`KILL_GRACE` seconds later. Commands stop with the process that runs them, even
one killed by SIGKILL (see `actors.warden`).
"""

from __future__ import annotations

import heapq
import os
import selectors
import signal
import subprocess
import threading
import time
from typing import Any, Callable

import pykka

from flowmetal.starlark import struct

from .codec import UNAVAILABLE
from .warden import CommandWarden

DEFAULT_OUTPUT_CAP = 1 << 20  # bytes kept of each of stdout and stderr
KILL_GRACE = 5.0               # seconds between SIGTERM and SIGKILL on cancel
STOP_GRACE = 2.0               # the same when the process stops (see ExecActor.shutdown)
DRAIN_GRACE = 2.0              # seconds output may stay open after the command exits
EXIT_POLL = 0.1                # how often a command with no timeout is checked for exit
MAX_SELECT_WAIT = 3600.0       # longest single wait for output (timeouts go up to 1e9 s)


class TimerActor(pykka.ThreadingActor):
    """Fires due timers by calling ``fire(flow_id, seq)``.

    Messages: ("schedule", due, flow_id, seq), ("tick",), ("advance",).
    `now` and `advance_to` come from the runtime's clock; `idle()` says whether
    nothing else can run (virtual time only advances then).
    """

    use_daemon_thread = True

    def __init__(self, fire: Callable[[str, int], None], now: Callable[[], float],
                 *, virtual: bool = False, idle: Callable[[], bool] | None = None,
                 advance_to: Callable[[float], None] | None = None):
        super().__init__()
        self.fire = fire
        self.now = now
        self.virtual = virtual
        self.idle = idle
        self.advance_to = advance_to
        self.heap: list[tuple[float, str, int]] = []
        self.known: set[tuple[str, int]] = set()
        self.alarm: threading.Timer | None = None
        self.alarm_due = float("inf")

    def on_stop(self) -> None:
        if self.alarm is not None:
            self.alarm.cancel()

    def on_receive(self, message: Any) -> Any:
        kind = message[0]
        if kind == "schedule":
            _, due, flow_id, seq = message
            if (flow_id, seq) not in self.known:
                self.known.add((flow_id, seq))
                heapq.heappush(self.heap, (due, flow_id, seq))
            self._fire_due()
        elif kind == "tick":
            self.alarm_due = float("inf")
            self._fire_due()
        elif kind == "advance" and self.virtual:
            self._advance()
        elif kind == "pending":
            return len(self.heap)
        return None

    def _fire_due(self) -> None:
        now = self.now()
        while self.heap and self.heap[0][0] <= now:
            due, flow_id, seq = heapq.heappop(self.heap)
            self.known.discard((flow_id, seq))
            self.fire(flow_id, seq)
        if self.virtual:
            self._advance()
        self._arm()

    def _advance(self) -> None:
        # Only when nothing can run: then the next timer is the next thing to happen.
        if not self.heap or self.idle is None or not self.idle():
            return
        due = self.heap[0][0]
        if due > self.now():
            self.advance_to(due)
        while self.heap and self.heap[0][0] <= due:
            _, flow_id, seq = heapq.heappop(self.heap)
            self.known.discard((flow_id, seq))
            self.fire(flow_id, seq)

    def _arm(self) -> None:
        if not self.heap:
            return
        due = self.heap[0][0]
        if due >= self.alarm_due:
            return
        if self.alarm is not None:
            self.alarm.cancel()
        ref = self.actor_ref
        self.alarm_due = due
        self.alarm = threading.Timer(max(0.0, due - self.now()), ref.tell, (("tick",),))
        self.alarm.daemon = True
        self.alarm.start()


class _Capped:
    """The first `cap` bytes of one output stream (the rest is read and dropped, so the
    command never blocks on a full pipe)."""

    __slots__ = ("cap", "chunks", "total", "truncated")

    def __init__(self, cap: int):
        self.cap = cap
        self.chunks: list[bytes] = []
        self.total = 0
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        if self.total < self.cap:
            keep = chunk[:self.cap - self.total]
            self.chunks.append(keep)
            self.total += len(keep)
            self.truncated = self.truncated or len(keep) < len(chunk)
        else:
            self.truncated = True

    def text(self) -> str:
        data = b"".join(self.chunks)
        if self.truncated:
            data += b"\n[output truncated]\n"
        return data.decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the command's process group (it runs in a session of its own, so the
    group id is the command's pid; the id is not reused while the group has members)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        try:
            proc.kill()
        except OSError:
            pass


def _close(f: Any) -> None:
    try:
        f.close()
    except OSError:
        pass


def _pump(proc: subprocess.Popen, data: bytes | None, out: _Capped, err: _Capped,
          deadline: float | None, drain_grace: float) -> str:
    """Feed `data` to the command's stdin and read its stdout and stderr, in this
    thread, until both reach end of file: "eof". Two things stop it earlier:

    * `deadline` (a monotonic time) passes: "timeout". The timeout covers everything
      the command does, feeding its input and draining its output included, so a
      command that leaves a background child holding its output open times out
      like a command that runs too long.
    * with no deadline, the main process exits and its output is still held open
      `drain_grace` seconds later (by a background or daemonised child — the pipe
      stays open as long as any process holds it): "held". Waiting for such a
      child could take forever and stall the flow, and the command the flow asked
      for is over; so the command's process group is killed, and what is still
      buffered in the pipes is read (for at most one more second).
    """
    sel = selectors.DefaultSelector()
    for f, sink in ((proc.stdout, out), (proc.stderr, err)):
        os.set_blocking(f.fileno(), False)
        sel.register(f.fileno(), selectors.EVENT_READ, sink)
    view = memoryview(data) if data else None
    if proc.stdin is not None:
        if view is not None:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE, None)
        else:
            _close(proc.stdin)
    exited_at: float | None = None
    give_up: float | None = None    # set once the group has been killed for holding on
    try:
        while sel.get_map():
            now = time.monotonic()
            if deadline is not None:
                if now >= deadline:
                    return "timeout"
                # In steps: the selector cannot wait longer than ~24 days at once.
                wait: float | None = min(deadline - now, MAX_SELECT_WAIT)
            elif give_up is not None:
                if now >= give_up:
                    return "held"
                wait = give_up - now
            else:
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is None:
                    wait = EXIT_POLL    # no deadline: only the exit can stop the wait
                elif now >= exited_at + drain_grace:
                    _kill_group(proc)
                    give_up = now + 1.0
                    continue
                else:
                    wait = exited_at + drain_grace - now
            for key, _ in sel.select(wait):
                if key.data is None:    # stdin is writable
                    try:
                        n = os.write(key.fd, view[:65536])
                    except BlockingIOError:
                        continue
                    except OSError:     # the command closed its stdin or exited
                        n = len(view)
                    view = view[n:]
                    if not len(view):
                        sel.unregister(key.fd)
                        _close(proc.stdin)
                    continue
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if chunk:
                    key.data.add(chunk)
                else:
                    sel.unregister(key.fd)
        return "eof" if give_up is None else "held"
    finally:
        sel.close()


def _null_byte(argv: list, env: dict, cwd: str | None) -> str | None:
    """What in the request cannot be passed to the OS because it holds a NUL byte (or
    is an impossible environment variable name); None if nothing."""
    for i, a in enumerate(argv, 1):
        if "\0" in a:
            return f"argument {i} contains a NUL byte"
    for k, v in env.items():
        if "\0" in k:
            return f"environment variable name {k!r} contains a NUL byte"
        if "=" in k:
            return f"environment variable name {k!r} contains '='"
        if "\0" in v:  # (never show the value: it may be a secret)
            return f"environment variable {k} contains a NUL byte"
    if cwd is not None and "\0" in cwd:
        return "cwd contains a NUL byte"
    return None


def _cwd_problem(cwd: str) -> str | None:
    """Why `cwd` cannot be a command's working directory; None if it can."""
    if not os.path.exists(cwd):
        return f"working directory does not exist: {cwd}"
    if not os.path.isdir(cwd):
        return f"working directory is not a directory: {cwd}"
    if not os.access(cwd, os.X_OK):
        return f"permission denied: working directory {cwd}"
    return None


def run_command(request: dict, action_id: str, cap: int = DEFAULT_OUTPUT_CAP,
                started: Callable[[subprocess.Popen], None] | None = None,
                drain_grace: float = DRAIN_GRACE, extra_env: dict | None = None) -> tuple:
    """Run one exec request; the outcome ("ok", struct) or ("err", message), or
    (UNAVAILABLE, message) when a secret it names is missing from this process.
    `started(proc)` is called once the process exists (to be able to stop it).

    The timeout, if any, bounds the whole command: feeding its input, its run, and
    reading its output to the end (a background child that keeps the output open
    counts). Past it the command's process group is killed and the outcome is the
    timeout error. With no timeout, a command whose output is still held open
    `drain_grace` seconds after its main process exited has its process group
    killed, and the outcome is the main process's exit code and the output read by
    then (see `_pump`). `extra_env` goes into the command's environment last (the
    warden's token, see `actors.warden`)."""
    from flowmetal.secrets import (Redactor, SecretError, environ_without_secrets,
                                   process_source, reveal)
    argv = request["argv"]
    env = environ_without_secrets()
    used: list[str] = []
    if request.get("env"):
        # Secrets travel by name ({"$secret": NAME}); their values exist only here.
        try:
            env.update(reveal(request["env"], process_source(), used))
        except SecretError as e:
            # Declared by the flow and present when it started: the environment
            # changed (a resume without it), which the flow cannot mend.
            return (UNAVAILABLE, f"exec: {e}")
    redact = Redactor(used)
    env["FLOWMETAL_ACTION_ID"] = action_id
    if extra_env:
        env.update(extra_env)
    timeout = request.get("timeout")
    data = request.get("input")
    cwd = request.get("cwd")
    bad = _null_byte(argv, env, cwd)
    if bad is not None:
        return ("err", f"exec: {bad}")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if data is not None else
                                subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=cwd,
                                start_new_session=True)
    except OSError as e:
        # The child changes directory before it looks for the program: a bad cwd
        # fails first, and is reported as such (not as a missing command).
        problem = _cwd_problem(cwd) if cwd else None
        if problem is not None:
            return ("err", f"exec: {problem}")
        if isinstance(e, FileNotFoundError):
            where = f" in {cwd}" if cwd else ""
            return ("err", f"exec: command not found: {argv[0]}{where}")
        if isinstance(e, PermissionError):
            return ("err", f"exec: permission denied: {argv[0]}")
        return ("err", f"exec: cannot run {argv[0]}: {e.strerror or e}")
    if started is not None:
        started(proc)
    out, err = _Capped(cap), _Capped(cap)
    deadline = time.monotonic() + timeout if timeout is not None else None
    try:
        how = _pump(proc, data.encode("utf-8") if data is not None else None, out, err,
                    deadline, drain_grace)
        if how == "eof":   # the main process may still run, its output closed
            try:
                proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                how = "timeout"
        if how == "timeout":
            _kill_group(proc)
            proc.wait()
            return ("err", f"exec: {argv[0]} timed out after {timeout:g} s")
        code = proc.wait()
    finally:
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                _close(f)
    stderr = err.text()
    if how == "held":
        stderr += (f"\n[exec: output still held open {drain_grace:g} s after the command "
                   "exited; the rest of its process group was killed]\n")
    # A command may print the secrets it was given; its result is journaled.
    return ("ok", struct(exit_code=code, stdout=redact.text(out.text()),
                         stderr=redact.text(stderr)))


class ExecActor(pykka.ThreadingActor):
    """Runs exec requests; replies by calling ``reply(flow_id, seq, outcome)``.

    Messages: ("exec", flow_id, seq, request_dict); ("cancel", flow_id) stops the
    flow's running commands (their outcome is still replied; a cancelled flow's
    runtime ignores it); ("shutdown", grace), asked when the process stops, stops
    every running command and replies nothing for them: their actions stay pending
    in the store and are issued again at the next start, never left running
    alongside their second run.
    """

    use_daemon_thread = True

    def __init__(self, reply: Callable[[str, int, tuple], None], cap: int = DEFAULT_OUTPUT_CAP,
                 kill_grace: float = KILL_GRACE):
        super().__init__()
        self.reply = reply
        # Stops the commands if this process dies without `shutdown` (a kill -9).
        self.warden = CommandWarden(STOP_GRACE)
        self.cap = cap
        self.kill_grace = kill_grace
        # flow id -> its running commands. Shared with the command threads.
        self.running: dict[str, set[_Command]] = {}
        self.lock = threading.Lock()
        self.cancelled: dict[str, None] = {}   # recently cancelled flows, oldest first
        self.shutting_down = False

    def on_receive(self, message: Any) -> Any:
        if message[0] == "exec":
            _, flow_id, seq, request = message
            threading.Thread(target=self._run, args=(flow_id, seq, request),
                             name=f"exec-{flow_id}:{seq}", daemon=True).start()
        elif message[0] == "cancel":
            self.cancel(message[1])
        elif message[0] == "shutdown":
            self.shutdown(message[1])
        return None

    def shutdown(self, grace: float) -> None:
        """Stop every running command: SIGTERM now, SIGKILL to what is left after
        `grace` seconds, and return once all are over (or abandoned). Their outcomes
        are not replied, and commands asked for from now on do not start."""
        with self.lock:
            self.shutting_down = True
            commands = [c for cs in self.running.values() for c in cs]
        for c in commands:
            c.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in commands:
            c.done.wait(max(0.0, deadline - time.monotonic()))
        for c in commands:
            if not c.done.is_set():
                c.signal(signal.SIGKILL)
        for c in commands:
            c.done.wait(1.0)
        self.warden.close()

    def on_stop(self) -> None:
        # Stopped without `shutdown` (a runtime torn down by hand) while commands
        # still run: the warden stays, to stop them when this process ends.
        with self.lock:
            idle = not self.running
        if idle:
            self.warden.close()

    def cancel(self, flow_id: str) -> None:
        """Stop the flow's running commands (and refuse any it starts from now on)."""
        with self.lock:
            self.cancelled[flow_id] = None
            if len(self.cancelled) > 10_000:  # only a command queued before it needs it
                del self.cancelled[next(iter(self.cancelled))]
            commands = list(self.running.get(flow_id, ()))
        for command in commands:
            command.stop(self.kill_grace)

    def _run(self, flow_id: str, seq: int, request: dict) -> None:
        command = _Command()

        def started(proc: subprocess.Popen) -> None:
            command.proc = proc
            with self.lock:
                self.running.setdefault(flow_id, set()).add(command)
                late = flow_id in self.cancelled or self.shutting_down
            if late:  # cancelled while it was being started
                command.stop(self.kill_grace)
        with self.lock:
            refused = flow_id in self.cancelled
            if self.shutting_down:
                return   # pending in the store: issued again at the next start
        if refused:
            outcome = ("err", "exec: cancelled")
        else:
            try:
                outcome = run_command(request, f"{flow_id}:{seq}", self.cap, started,
                                      extra_env=self.warden.env())
            except Exception as e:  # noqa: BLE001 - an exec failure is the flow's error
                outcome = ("err", f"exec: {type(e).__name__}: {e}")
            finally:
                command.done.set()
                with self.lock:
                    commands = self.running.get(flow_id)
                    if commands is not None:
                        commands.discard(command)
                        if not commands:
                            del self.running[flow_id]
        if self.shutting_down:
            return   # stopped by the shutdown, not finished: its action stays pending
        self.reply(flow_id, seq, outcome)


class _Command:
    """One running command: its process, and whether `run_command` has returned (its
    whole process group is gone or has let go of its output)."""

    __slots__ = ("proc", "done")

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.done = threading.Event()

    def stop(self, grace: float) -> None:
        """SIGTERM the command's process group now — its leader may have exited while
        a child of it runs on — and SIGKILL the group if the command is not over
        `grace` seconds later. The group id cannot be reused while the group has
        members, and no signal is sent once the command is over."""
        if self.proc is None or self.done.is_set():
            return
        self.signal(signal.SIGTERM)

        def finish() -> None:
            if not self.done.wait(grace):
                self.signal(signal.SIGKILL)
        threading.Thread(target=finish, name=f"stop-{self.proc.pid}", daemon=True).start()

    def signal(self, sig: int) -> None:
        """Send `sig` to the command's process group (nothing once it is over)."""
        if self.proc is None or self.done.is_set():
            return
        try:
            os.killpg(self.proc.pid, sig)   # its own session, so its own group
        except (ProcessLookupError, PermissionError):
            pass


def wall_clock() -> float:
    return time.time()
