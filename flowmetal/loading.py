"""Serving `load()` for Flowmetal files: relative paths and package modules.

`FileLoader` resolves `load("lib.star", ...)` relative to the loading file,
and package-qualified names (`pkg.flowmetal.io/...`) from a table of built-in
modules. Each module runs once per loader, printing where the program that loads it
prints; a cycle of loads is an error.
"""

from __future__ import annotations

import os
from typing import Callable

from .starlark import Done, context, start
from .starlark.syntax import load_statements, parse
from .starlark.thread import get_compiled


class LoadError(Exception):
    """A module named by load() cannot be found or read."""


def module_path(base: str, name: str, packages: dict) -> str | None:
    """The file a load() of `name` from a module in directory `base` reads; None for
    a package module (built in, or unknown: an error when it is loaded)."""
    if name in packages or name.startswith("pkg.") or "://" in name:
        return None
    return os.path.normpath(os.path.join(base, name))


def check_loads(source: str, filename: str, predeclared: dict,
                packages: dict[str, Callable[[], dict]] | None = None) -> None:
    """Check, without running anything, that every module `source` loads (and each
    of those loads, on down) can be read and compiled: a `StarlarkSyntaxError` at
    the failing load() (a module missing, unreadable, in a cycle) or inside the
    loaded file (its syntax). So a bad program is refused before a run is made of
    it, as a syntax error of the file itself is."""
    if "load" not in source:
        return   # the common case, without a second parse
    packages = packages or {}
    names = frozenset(predeclared)
    done: set[str] = set()

    def visit(source: str, filename: str, chain: tuple[str, ...]) -> None:
        parsed = parse(source, filename)
        base = os.path.dirname(os.path.abspath(filename))
        for name, node in load_statements(parsed):
            path = module_path(base, name, packages)
            if path is None:
                continue
            if path in chain:
                raise parsed.error(node, f"cannot load {name}: cycle in load graph")
            if path in done:
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except UnicodeDecodeError:
                raise parsed.error(node, f"cannot load {name}: not UTF-8 text") from None
            except OSError as e:
                raise parsed.error(node, f"cannot read {name}: {e.strerror or e}") from None
            get_compiled(text, path, names)   # its own syntax errors name its lines
            visit(text, path, chain + (path,))
            done.add(path)

    visit(source, filename, (os.path.abspath(filename),))


class FileLoader:
    """Loads Starlark modules for one run; usable as the `loader` argument."""

    def __init__(self, filename: str, predeclared: dict | None = None,
                 packages: dict[str, Callable[[], dict]] | None = None):
        self.base = os.path.dirname(os.path.abspath(filename))
        self.predeclared = predeclared or {}
        self.packages = packages or {}
        self._done: dict[str, dict] = {}
        self._loading: set[str] = set()

    def __call__(self, name: str) -> dict:
        path = module_path(self.base, name, self.packages)
        if path is None:
            if name in self.packages:
                return self.packages[name]()
            raise LoadError(f"unknown package module {name}")
        if path in self._done:
            return self._done[path]
        if path in self._loading:
            raise LoadError(f"cycle in load graph at {name}")
        try:
            with open(path, encoding="utf-8") as f:
                source = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise LoadError(f"cannot read {name}: {getattr(e, 'strerror', None) or e}") from None
        self._loading.add(path)
        try:
            child = FileLoader(path, self.predeclared, self.packages)
            child._done, child._loading = self._done, self._loading
            # Its top level prints where the loading program prints (a run's output),
            # not to this process's stdout.
            outcome = start(source, path, predeclared=self.predeclared, loader=child,
                            print=context.current().print).run()
            if not isinstance(outcome, Done):
                if hasattr(outcome, "error"):
                    raise outcome.error
                raise LoadError(f"{name}: a loaded module may not perform actions at top level")
            result = outcome.value
        finally:
            self._loading.discard(path)
        self._done[path] = result
        return result
