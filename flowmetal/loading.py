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


class LoadError(Exception):
    """A module named by load() cannot be found or read."""


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
        if name in self.packages:
            return self.packages[name]()
        if name.startswith("pkg.") or "://" in name:
            raise LoadError(f"unknown package module {name}")
        path = os.path.normpath(os.path.join(self.base, name))
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
