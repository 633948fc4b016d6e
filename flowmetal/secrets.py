"""Secrets: named values a flow may hand to actions but never see, print or persist.

A flow declares the secrets it needs, ``flow(secrets = ["API_TOKEN"])``, and reads
``fctx.secrets.API_TOKEN``: a `Secret`. A `Secret` holds only its *name*. It prints
as ``<secret>``, it pickles as its name (so a checkpoint, a journal entry or an
intent never holds the plaintext), and the value is looked up again each time an
action that accepts secrets (exec ``env``, HTTP ``headers``) is performed — by the
runtime, outside the flow's Starlark heap.

Values come from, in order of precedence:

1. the environment variable ``FLOWMETAL_SECRET_<NAME>`` of the process that
   performs the action (the daemon, or the `flowmetal run` process);
2. the secrets file ``HOME/secrets``: ``NAME=value`` lines, ``#`` comments and blank
   lines ignored, an optional ``export`` prefix accepted. The file must be private
   (mode 0600 or stricter): a group- or world-readable secrets file is refused,
   the way ssh refuses a readable private key.

Results that came back from an action performed with secrets are *redacted*: every
occurrence of a revealed plaintext in a command's output or an HTTP response is
replaced by ``<secret>`` before the result is journaled, so a command that echoes
its token cannot smuggle it into the store.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = ["Secret", "SecretError", "SecretSource", "SECRET_TEXT", "ENV_PREFIX",
           "environ_without_secrets",
           "FILE_NAME", "valid_name", "check_names", "to_plain", "from_plain",
           "reveal", "Redactor", "secrets_struct", "set_process_source",
           "process_source"]

SECRET_TEXT = "<secret>"
ENV_PREFIX = "FLOWMETAL_SECRET_"
FILE_NAME = "secrets"

# Names are environment-variable-like, so that FLOWMETAL_SECRET_<NAME> always works.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# A secret shorter than this is not redacted from outputs: replacing every "a" or
# "1" in a command's output would destroy it and protect nothing.
MIN_REDACT_LEN = 4

# How a Secret travels inside plain data (intents, resource manifests): by name.
_PLAIN_KEY = "$secret"


class SecretError(Exception):
    """A secret is missing, badly named, or its file is unusable (one-line message)."""


def valid_name(name: Any) -> bool:
    return isinstance(name, str) and bool(_NAME.match(name))


class Secret:
    """An opaque reference to a named secret. The plaintext is never an attribute of
    it: whoever holds a Secret (a Starlark value, a checkpoint) holds only the name."""

    __slots__ = ("name",)
    starlark_type = "secret"

    def __init__(self, name: str):
        if not valid_name(name):
            raise SecretError(f"invalid secret name {name!r} (letters, digits and _ only)")
        self.name = name

    # Every textual form is the same placeholder: str(), repr(), print(), %s, format.
    def starlark_repr(self) -> str:
        return SECRET_TEXT

    def __repr__(self) -> str:
        return SECRET_TEXT

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return SECRET_TEXT

    def starlark_freeze(self) -> None:
        pass

    def starlark_getattr(self, name: str) -> Any:
        # The name is not sensitive and helps in error messages and logs.
        if name == "name":
            return self.name
        raise AttributeError(name)

    def starlark_attrs(self) -> list[str]:
        return ["name"]

    def __eq__(self, other: Any) -> bool:
        return type(other) is Secret and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Secret", self.name))

    def __reduce__(self):
        # Pickles as its name only: re-resolved when an action needs the value.
        return (Secret, (self.name,))


def check_names(names: Any, what: str = "flow") -> tuple[str, ...]:
    """Validate a `secrets = [...]` declaration; the names as a tuple (no duplicates)."""
    if names is None:
        return ()
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise SecretError(f"{what}: secrets must be a list of names, like [\"API_TOKEN\"]")
    out: list[str] = []
    for n in names:
        if not valid_name(n):
            raise SecretError(f"{what}: invalid secret name {n!r} (letters, digits and _ "
                              "only, not starting with a digit)")
        if n not in out:
            out.append(n)
    return tuple(out)


def secrets_struct(names: Iterable[str]) -> Any:
    """The `fctx.secrets` value: a struct of Secrets, one field per declared name."""
    from .starlark import struct
    return struct(**{n: Secret(n) for n in names})


# ---------------------------------------------------------------- resolution

def _parse_file(path: Path) -> dict[str, str]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise SecretError(f"cannot read the secrets file {path}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"the secrets file {path} is readable by others (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}); make it private: "
                          f"chmod 600 {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SecretError(f"cannot read the secrets file {path}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("export "):
            s = s[len("export "):].lstrip()
        name, eq, value = s.partition("=")
        name = name.strip()
        if not eq or not valid_name(name):
            # Never echo the line: it may be a value pasted without its name.
            raise SecretError(f"{path}:{lineno}: expected NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[name] = value
    return out


class SecretSource:
    """Where a process looks secrets up: its environment, then ``HOME/secrets``.

    The file is re-read when its modification time changes, so editing it takes
    effect without restarting the daemon."""

    def __init__(self, home: str | os.PathLike | None,
                 environ: Mapping[str, str] | None = None):
        self.path = Path(home) / FILE_NAME if home is not None else None
        self.environ = environ if environ is not None else os.environ
        self._cache: tuple[Any, dict[str, str]] | None = None

    def _file(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            st = self.path.stat()
            key: Any = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)
        except OSError:
            key = None
        if self._cache is not None and self._cache[0] == key and key is not None:
            return self._cache[1]
        values = _parse_file(self.path)
        self._cache = (key, values)
        return values

    def lookup(self, name: str) -> str | None:
        """The plaintext of `name`, or None when it is defined nowhere."""
        v = self.environ.get(ENV_PREFIX + name)
        if v is not None:
            return v
        return self._file().get(name)

    def get(self, name: str) -> str:
        v = self.lookup(name)
        if v is None:
            raise SecretError(self.missing_message([name]))
        return v

    def missing(self, names: Iterable[str]) -> list[str]:
        """Which of `names` are defined nowhere (a bad secrets file raises)."""
        return [n for n in names if self.lookup(n) is None]

    def missing_message(self, names: list[str]) -> str:
        where = str(self.path) if self.path is not None else "the secrets file"
        if len(names) == 1:
            n = names[0]
            return (f"missing secret {n}: set {ENV_PREFIX}{n} or add a line {n}=... "
                    f"to {where}")
        listed = ", ".join(names)
        return (f"missing secrets {listed}: set {ENV_PREFIX}<NAME> or add NAME=... "
                f"lines to {where}")

    def require(self, names: Iterable[str]) -> None:
        """Raise `SecretError` naming every missing secret of `names`."""
        missing = self.missing(list(names))
        if missing:
            raise SecretError(self.missing_message(missing))


# ---------------------------------------------------------------- plain data and revealing

def to_plain(value: Any) -> Any:
    """`value` with every Secret replaced by ``{"$secret": NAME}`` (for JSON-able
    intents and manifests: the store refuses objects, and must never see a value)."""
    if isinstance(value, Secret):
        return {_PLAIN_KEY: value.name}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def _is_plain_secret(value: Any) -> bool:
    return (isinstance(value, dict) and len(value) == 1 and
            isinstance(value.get(_PLAIN_KEY), str))


def from_plain(value: Any) -> Any:
    """Inverse of `to_plain`: ``{"$secret": NAME}`` becomes `Secret(NAME)` again."""
    if _is_plain_secret(value):
        return Secret(value[_PLAIN_KEY])
    if isinstance(value, dict):
        return {k: from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_plain(v) for v in value]
    return value


def reveal(value: Any, source: SecretSource, used: list[str] | None = None) -> Any:
    """`value` (a string, a Secret, its plain form, or a dict/list of those) with every
    secret replaced by its plaintext, for the one call that needs it. Revealed
    plaintexts are appended to `used`, so that the caller can redact its result."""
    if isinstance(value, Secret) or _is_plain_secret(value):
        name = value.name if isinstance(value, Secret) else value[_PLAIN_KEY]
        text = source.get(name)
        if used is not None:
            used.append(text)
        return text
    if isinstance(value, dict):
        return {k: reveal(v, source, used) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [reveal(v, source, used) for v in value]
    return value


class Redactor:
    """Replaces revealed plaintexts with ``<secret>`` in text an action returns."""

    def __init__(self, plaintexts: Iterable[str] = ()):
        # Longest first, so a secret that contains another is replaced whole.
        self.values = sorted({p for p in plaintexts if len(p) >= MIN_REDACT_LEN},
                             key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, s: str) -> str:
        for v in self.values:
            if v in s:
                s = s.replace(v, SECRET_TEXT)
        return s

    def data(self, b: bytes) -> bytes:
        for v in self.values:
            vb = v.encode("utf-8")
            if vb in b:
                b = b.replace(vb, SECRET_TEXT.encode())
        return b

    def any(self, value: Any) -> Any:
        """Redact strings and bytes inside plain data (dicts, lists, tuples)."""
        if not self.values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.data(value)
        if isinstance(value, dict):
            return {self.any(k): self.any(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.any(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.any(v) for v in value)
        return value


# ---------------------------------------------------------------- this process's source

_process_source: SecretSource | None = None


def set_process_source(source: SecretSource | None) -> None:
    """Where actions performed in this process look secrets up (the runtime sets it to
    its home's source when it starts; a worker process likewise)."""
    global _process_source
    _process_source = source


def process_source() -> SecretSource:
    """This process's `SecretSource` (the environment only, until a runtime set one)."""
    return _process_source if _process_source is not None else SecretSource(None)


def environ_without_secrets() -> dict[str, str]:
    """This process's environment less its ``FLOWMETAL_SECRET_*`` variables: what a
    command or a resource process starts from. A secret reaches one only by name in
    its ``env`` (declared by its flow, and redacted from what it prints)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
