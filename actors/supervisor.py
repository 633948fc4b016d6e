"""The Supervisor: OTP-style restarts of flows whose *infrastructure* failed.

Strategy one_for_one: a crashed flow (its actor died, its worker process died, its
checkpoint could not be written) is restarted alone, from its last checkpoint, after
an exponential backoff. Restart intensity: more than ``max_restarts`` restarts of one
flow within ``window`` seconds and the flow is given up: its run is marked `crashed`
with the error (resumable by hand with `flowmetal resume`). Escalation: more than
``max_total`` crashes within ``window`` across everything this supervisor watches means
the runtime itself is sick, so the supervisor gives up on every run it serves.

A flow whose Starlark code failed is not a crash: that is its `Err` result.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

import pykka


class Supervisor(pykka.ThreadingActor):
    """Messages: ("crashed", flow_id, error), ("restart", flow_id)."""

    use_daemon_thread = True

    def __init__(self, restart: Callable[[str], None], give_up: Callable[[str, str], None],
                 escalate: Callable[[str], None], *, max_restarts: int = 3,
                 window: float = 10.0, backoff: float = 0.05, backoff_max: float = 2.0,
                 max_total: int = 50):
        super().__init__()
        self.restart = restart
        self.give_up = give_up
        self.escalate = escalate
        self.max_restarts = max_restarts
        self.window = window
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.max_total = max_total
        self.history: dict[str, collections.deque] = {}
        self.all: collections.deque = collections.deque()
        self.timers: list[threading.Timer] = []
        self.escalated = False

    def on_stop(self) -> None:
        for t in self.timers:
            t.cancel()

    def on_receive(self, message: Any) -> Any:
        kind = message[0]
        if kind == "crashed":
            _, flow_id, error = message
            self._crashed(flow_id, error)
        elif kind == "restart":
            self.restart(message[1])
        elif kind == "restarts":
            return {k: len(v) for k, v in self.history.items()}
        return None

    def _crashed(self, flow_id: str, error: str) -> None:
        if self.escalated:
            return
        now = time.monotonic()
        self.all.append(now)
        while self.all and now - self.all[0] > self.window:
            self.all.popleft()
        if len(self.all) > self.max_total:
            self.escalated = True
            self.escalate(f"{len(self.all)} crashes within {self.window:g} s; last: "
                          f"flow {flow_id}: {error}")
            return
        h = self.history.setdefault(flow_id, collections.deque())
        while h and now - h[0] > self.window:
            h.popleft()
        if len(h) >= self.max_restarts:
            self.history.pop(flow_id, None)
            self.give_up(flow_id, f"{error} (restarted {len(h)} times within "
                                  f"{self.window:g} s)")
            return
        h.append(now)
        delay = min(self.backoff_max, self.backoff * (2 ** (len(h) - 1)))
        t = threading.Timer(delay, self.actor_ref.tell, (("restart", flow_id),))
        t.daemon = True
        self.timers = [x for x in self.timers if x.is_alive()]
        self.timers.append(t)
        t.start()
