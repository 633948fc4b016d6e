"""Resource actors: durable timers and subprocess execution.

`TimerActor` fires sleeps. The due times live in the store (written in the same
transaction as the sleeping flow's checkpoint), so a restarted runtime re-reads them
and fires them at their original due time — at once if it has passed. The actor's
heap is only a cache of what the store says. With a virtual clock it fires the
earliest timer as soon as nothing else can run, advancing the clock to its due time.

`ExecActor` runs commands for `fctx.actions.exec`, each in its own thread (a
command may run for minutes; the actor's mailbox must not wait for it), with a
timeout, capped output, and ``FLOWMETAL_ACTION_ID=<flow id>:<seq>`` in the
environment so commands can deduplicate re-issued actions. Secret values in ``env``
(by name in the request) are revealed only for the command, and redacted from its
output. A cancelled flow's running commands are stopped: SIGTERM to the command's
process group (it runs in a session of its own), SIGKILL if it is still there
`KILL_GRACE` seconds later.
"""

from __future__ import annotations

import heapq
import os
import signal
import subprocess
import threading
import time
from typing import Any, Callable

import pykka

from flowmetal.starlark import struct

DEFAULT_OUTPUT_CAP = 1 << 20  # bytes kept of each of stdout and stderr
KILL_GRACE = 5.0               # seconds between SIGTERM and SIGKILL on cancel


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


def _read_capped(stream: Any, cap: int, sink: list) -> None:
    total = 0
    truncated = False
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        if total < cap:
            keep = chunk[:cap - total]
            sink.append(keep)
            total += len(keep)
            truncated = truncated or len(keep) < len(chunk)
        else:
            truncated = True  # keep draining so the command never blocks on a full pipe
    if truncated:
        sink.append(b"\n[output truncated]\n")


def run_command(request: dict, action_id: str, cap: int = DEFAULT_OUTPUT_CAP,
                started: Callable[[subprocess.Popen], None] | None = None) -> tuple:
    """Run one exec request; the outcome ("ok", struct) or ("err", message).
    `started(proc)` is called once the process exists (to be able to stop it)."""
    from flowmetal.secrets import Redactor, SecretError, process_source, reveal
    argv = request["argv"]
    env = dict(os.environ)
    used: list[str] = []
    if request.get("env"):
        # Secrets travel by name ({"$secret": NAME}); their values exist only here.
        try:
            env.update(reveal(request["env"], process_source(), used))
        except SecretError as e:
            return ("err", f"exec: {e}")
    redact = Redactor(used)
    env["FLOWMETAL_ACTION_ID"] = action_id
    timeout = request.get("timeout")
    data = request.get("input")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if data is not None else
                                subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=request.get("cwd"),
                                start_new_session=True)
    except FileNotFoundError:
        where = f" in {request['cwd']}" if request.get("cwd") else ""
        return ("err", f"exec: command not found: {argv[0]}{where}")
    except PermissionError:
        return ("err", f"exec: permission denied: {argv[0]}")
    except OSError as e:
        return ("err", f"exec: cannot run {argv[0]}: {e.strerror or e}")
    if started is not None:
        started(proc)
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [threading.Thread(target=_read_capped, args=(proc.stdout, cap, out), daemon=True),
               threading.Thread(target=_read_capped, args=(proc.stderr, cap, err), daemon=True)]
    for r in readers:
        r.start()
    if data is not None:
        try:
            proc.stdin.write(data.encode("utf-8"))
        except (BrokenPipeError, OSError):
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            proc.kill()
        proc.wait()
        for r in readers:
            r.join(1)
        return ("err", f"exec: {argv[0]} timed out after {timeout:g} s")
    for r in readers:
        r.join()
    # A command may print the secrets it was given; its result is journaled.
    return ("ok", struct(exit_code=code,
                         stdout=redact.text(b"".join(out).decode("utf-8", "replace")),
                         stderr=redact.text(b"".join(err).decode("utf-8", "replace"))))


class ExecActor(pykka.ThreadingActor):
    """Runs exec requests; replies by calling ``reply(flow_id, seq, outcome)``.

    Messages: ("exec", flow_id, seq, request_dict); ("cancel", flow_id) stops the
    flow's running commands (their outcome is still replied; a cancelled flow's
    runtime ignores it).
    """

    use_daemon_thread = True

    def __init__(self, reply: Callable[[str, int, tuple], None], cap: int = DEFAULT_OUTPUT_CAP,
                 kill_grace: float = KILL_GRACE):
        super().__init__()
        self.reply = reply
        self.cap = cap
        self.kill_grace = kill_grace
        # flow id -> its running commands. Shared with the command threads.
        self.running: dict[str, set[_Command]] = {}
        self.lock = threading.Lock()
        self.cancelled: dict[str, None] = {}   # recently cancelled flows, oldest first

    def on_receive(self, message: Any) -> Any:
        if message[0] == "exec":
            _, flow_id, seq, request = message
            threading.Thread(target=self._run, args=(flow_id, seq, request),
                             name=f"exec-{flow_id}:{seq}", daemon=True).start()
        elif message[0] == "cancel":
            self.cancel(message[1])
        return None

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
                late = flow_id in self.cancelled
            if late:  # cancelled while it was being started
                command.stop(self.kill_grace)
        with self.lock:
            refused = flow_id in self.cancelled
        if refused:
            outcome = ("err", "exec: cancelled")
        else:
            try:
                outcome = run_command(request, f"{flow_id}:{seq}", self.cap, started)
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
        pgid = self.proc.pid   # the command runs in a session (and group) of its own

        def signal_group(sig: int) -> None:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass

        signal_group(signal.SIGTERM)

        def finish() -> None:
            if not self.done.wait(grace):
                signal_group(signal.SIGKILL)
        threading.Thread(target=finish, name=f"stop-{pgid}", daemon=True).start()


def wall_clock() -> float:
    return time.time()
