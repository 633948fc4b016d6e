"""Per-user quotas: how much of the host one user's flows may take.

Limits live in ``HOME/quotas.toml``::

    # every user not listed below
    [default]
    concurrent_flows = 200          # live (running or waiting) flows at once
    steps_per_flow = 50_000_000     # Starlark steps (loop iterations) over a flow's life
    output_bytes_per_run = "16M"    # what one run may print (k, M, G suffixes allowed)

    [users.alice]
    concurrent_flows = 10

A limit left out (or set to ``"unlimited"``) is not enforced. Without the file
nothing is limited. The file is re-read when it changes, so the daemon picks up
edits without a restart.

Exceeding a limit ends the flow that exceeded it with ``Err("quota exceeded: …")``
— a clean, ordinary flow failure: the daemon, the user's other flows and other
users' flows go on. `UsageLedger` is the runtime's bookkeeping of current usage;
it is a cache rebuilt from the store after a restart (flows that were admitted
before the restart are re-admitted even if the limits have been lowered since, so
a restart never kills flows that were running fine).

`fctx.quota` (a `QuotaInfo`) shows the running flow its submitting user and limits.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import threading
import time
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["Limits", "QuotaConfig", "QuotaConfigError", "QuotaExceeded", "QuotaInfo",
           "UsageLedger", "QuotaBook", "FILE_NAME", "username_of", "current_username",
           "set_process_book", "process_quota_info"]

FILE_NAME = "quotas.toml"

# Problems with the quotas file found while a runtime runs (the daemon sends these to
# its log). Silent unless someone listens: `run` and `resume` check the file
# themselves before they start and say so on stderr.
log = logging.getLogger("flowmetal.quotas")
log.addHandler(logging.NullHandler())

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*(\d+)\s*([kmgt]?)i?b?\s*\Z", re.I)


class QuotaConfigError(Exception):
    """The quotas file is unreadable or malformed (one-line message naming it)."""


class QuotaExceeded(Exception):
    """A flow went past one of its user's limits; str() is the flow's error text."""

    def __init__(self, what: str, limit: int, user: str):
        self.what = what
        self.limit = limit
        self.user = user
        super().__init__(f"quota exceeded: {what} (limit {limit} for user {user})")


@dataclass(frozen=True)
class Limits:
    """One user's limits; None means unlimited."""
    concurrent_flows: int | None = None
    steps_per_flow: int | None = None
    output_bytes_per_run: int | None = None

    def merged(self, over: dict[str, Any]) -> "Limits":
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(over)
        return Limits(**d)


_KEYS = {f.name for f in fields(Limits)}


def _limit(path: Path, where: str, key: str, value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("unlimited", "none", ""):
        return None
    if isinstance(value, bool):
        raise QuotaConfigError(f"{path}: [{where}] {key} must be a number, got {value}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and key == "output_bytes_per_run":
        m = _SIZE.match(value)
        if m is None:
            raise QuotaConfigError(f"{path}: [{where}] {key}: not a size: {value!r} "
                                   "(e.g. 1048576, \"512k\", \"16M\")")
        n = int(m.group(1)) * _UNITS[m.group(2).lower()]
    else:
        raise QuotaConfigError(f"{path}: [{where}] {key} must be a whole number, "
                               f"got {value!r}")
    if n < 0:
        raise QuotaConfigError(f"{path}: [{where}] {key} must not be negative")
    return n


def _section(path: Path, where: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise QuotaConfigError(f"{path}: [{where}] must be a table of limits")
    out = {}
    for k, v in table.items():
        if k not in _KEYS:
            raise QuotaConfigError(f"{path}: [{where}] unknown limit {k!r} (known: "
                                   f"{', '.join(sorted(_KEYS))})")
        out[k] = _limit(path, where, k, v)
    return out


class QuotaConfig:
    """The parsed quotas file."""

    def __init__(self, default: Limits | None = None,
                 users: dict[str, Limits] | None = None):
        self.default = default or Limits()
        self.users = users or {}

    @classmethod
    def parse(cls, text: str, path: Path = Path(FILE_NAME)) -> "QuotaConfig":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise QuotaConfigError(f"{path}: {e}") from None
        unknown = set(data) - {"default", "users"}
        if unknown:
            raise QuotaConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} "
                                   "(expected [default] and [users.NAME])")
        default = Limits().merged(_section(path, "default", data.get("default", {})))
        users_t = data.get("users", {})
        if not isinstance(users_t, dict):
            raise QuotaConfigError(f"{path}: [users] must hold [users.NAME] tables")
        users = {name: default.merged(_section(path, f"users.{name}", t))
                 for name, t in users_t.items()}
        return cls(default, users)

    @classmethod
    def load(cls, home: str | os.PathLike) -> "QuotaConfig":
        path = Path(home) / FILE_NAME
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError) as e:
            raise QuotaConfigError(f"cannot read {path}: "
                                   f"{getattr(e, 'strerror', None) or e}") from None
        return cls.parse(text, path)

    def limits_for(self, user: str) -> Limits:
        return self.users.get(user, self.default)


class QuotaBook:
    """The quotas of one home, re-read when the file changes. A broken file keeps the
    last good configuration (and `error` says why), so a typo never lifts or
    tightens limits by accident while the daemon runs."""

    # Seconds between looks at the file: limits are consulted on every print, and a
    # stat() per print would cost more than the print.
    RECHECK = 1.0

    def __init__(self, home: str | os.PathLike):
        self.path = Path(home) / FILE_NAME
        self.home = Path(home)
        self._key: Any = ()
        self._config = QuotaConfig()
        self._checked = float("-inf")
        self.error: str | None = None
        self._good = False   # whether a configuration was ever read (or no file)
        self._lock = threading.Lock()

    def config(self) -> QuotaConfig:
        now = time.monotonic()
        if now - self._checked < self.RECHECK:
            return self._config
        self._checked = now
        try:
            st = self.path.stat()
            key: Any = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            key = None
        with self._lock:
            if key != self._key:
                try:
                    self._config = QuotaConfig.load(self.home)
                    if self.error is not None:
                        log.info("%s: read again; its limits apply", self.path)
                    self.error = None
                    self._good = True
                except QuotaConfigError as e:
                    if str(e) != self.error:
                        log.warning("%s; %s", e, "keeping the previous limits"
                                    if self._good else "no quotas are enforced")
                    self.error = str(e)
                self._key = key
            return self._config

    def limits_for(self, user: str) -> Limits:
        return self.config().limits_for(user)


def username_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"  # a uid without a passwd entry (containers)


def current_username() -> str:
    """The user submitting from this process."""
    return username_of(os.getuid())


class QuotaInfo:
    """`fctx.quota`: the submitting user and the limits that apply to the flow."""

    __slots__ = ("username", "limits")
    starlark_type = "quota"

    def __init__(self, username: str, limits: Limits | None = None):
        self.username = username
        self.limits = limits or Limits()

    def starlark_getattr(self, name: str) -> Any:
        if name == "username":
            return self.username
        if name in _KEYS:
            return getattr(self.limits, name)
        raise AttributeError(name)

    def starlark_attrs(self) -> list[str]:
        return ["username"] + sorted(_KEYS)

    def starlark_freeze(self) -> None:
        pass

    def starlark_repr(self) -> str:
        return f"<quota {self.username}>"

    def __eq__(self, other: Any) -> bool:
        return (type(other) is QuotaInfo and other.username == self.username
                and other.limits == self.limits)

    def __hash__(self) -> int:
        return hash(("QuotaInfo", self.username))

    def __reduce__(self):
        lim = self.limits
        return (_quota_info, (self.username, lim.concurrent_flows, lim.steps_per_flow,
                              lim.output_bytes_per_run))


def _quota_info(user: str, c: int | None, s: int | None, o: int | None) -> QuotaInfo:
    return QuotaInfo(user, Limits(c, s, o))


class UsageLedger:
    """Current usage per user and run, checked against a `QuotaBook`. Thread-safe."""

    def __init__(self, book: QuotaBook | QuotaConfig | None = None):
        self.book = book
        self._lock = threading.Lock()
        self._live: dict[str, set[str]] = {}      # user -> live flow ids
        self._owner: dict[str, str] = {}          # flow id -> user
        self._output: dict[str, int] = {}         # run id -> bytes printed

    def limits(self, user: str) -> Limits:
        if self.book is None:
            return Limits()
        return self.book.limits_for(user)

    # ---------------------------------------------------------------- concurrent flows
    def admit(self, user: str, flow_id: str) -> None:
        """Count `flow_id` as one of `user`'s live flows, or raise `QuotaExceeded`."""
        limit = self.limits(user).concurrent_flows
        with self._lock:
            live = self._live.setdefault(user, set())
            if flow_id in live:
                return
            if limit is not None and len(live) >= limit:
                raise QuotaExceeded("concurrent flows", limit, user)
            live.add(flow_id)
            self._owner[flow_id] = user

    def restore(self, user: str, flow_id: str) -> None:
        """Re-count a flow that was live before a restart (never refused)."""
        with self._lock:
            self._live.setdefault(user, set()).add(flow_id)
            self._owner[flow_id] = user

    def release(self, flow_id: str) -> None:
        with self._lock:
            user = self._owner.pop(flow_id, None)
            if user is not None:
                live = self._live.get(user)
                if live is not None:
                    live.discard(flow_id)
                    if not live:
                        del self._live[user]

    def flows_with_prefix(self, prefix: str) -> list[str]:
        """The counted flows whose ids start with `prefix` (a run's: ``RUN.``)."""
        with self._lock:
            return [f for f in self._owner if f.startswith(prefix)]

    def live_count(self, user: str) -> int:
        with self._lock:
            return len(self._live.get(user, ()))

    # ---------------------------------------------------------------- output bytes
    def seed_output(self, run_id: str, size: int) -> None:
        """What a run had printed before this runtime started (from the store)."""
        with self._lock:
            self._output[run_id] = max(self._output.get(run_id, 0), size)

    def add_output(self, user: str, run_id: str, nbytes: int) -> None:
        """Account `nbytes` more output for the run, or raise `QuotaExceeded` (the
        bytes are not counted then: the caller drops them)."""
        limit = self.limits(user).output_bytes_per_run
        with self._lock:
            total = self._output.get(run_id, 0) + nbytes
            if limit is not None and total > limit:
                raise QuotaExceeded("output bytes per run", limit, user)
            self._output[run_id] = total

    def forget_run(self, run_id: str) -> None:
        with self._lock:
            self._output.pop(run_id, None)

    # ---------------------------------------------------------------- steps
    def steps_for(self, user: str, default: int | None) -> int | None:
        """The step budget a new flow of `user` gets: the quota, or the runtime's
        default when that is smaller (or when no quota is set)."""
        q = self.limits(user).steps_per_flow
        if q is None:
            return default
        return q if default is None else min(q, default)


# ---------------------------------------------------------------- this process's quotas

_process_book: QuotaBook | None = None


def set_process_book(book: QuotaBook | None) -> None:
    """The quotas of the home this process's runtime serves (for `fctx.quota`)."""
    global _process_book
    _process_book = book


def process_quota_info() -> QuotaInfo:
    """`fctx.quota` of a flow run by this process: the user and the limits."""
    user = current_username()
    limits = _process_book.limits_for(user) if _process_book is not None else Limits()
    return QuotaInfo(user, limits)
