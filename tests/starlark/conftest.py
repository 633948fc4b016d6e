"""Shared fixtures of the Starlark conformance, sandbox and fuzz suites.

The helpers are fixtures (not importable functions) so that the test modules
need no import of this file. Every program a test runs goes through
`textwrap.dedent`, so programs may be written as indented triple-quoted
strings.
"""

from __future__ import annotations

import inspect
import math
import textwrap

import pytest

import flowmetal.starlark as _sl

SMALL_BUDGET = 2_000_000
"""Step budget the suites pass when `exec_file` accepts `max_steps`."""


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


HAS_MAX_STEPS = _accepts(_sl.exec_file, "max_steps")


def budget_kw(steps: int = SMALL_BUDGET) -> dict:
    """`{"max_steps": steps}` when the API supports a step budget, else `{}`."""
    return {"max_steps": steps} if HAS_MAX_STEPS else {}


def _same(got, want, path="value"):
    """Strict structural equality: types must match too (True is not 1, 1.0 is not 1)."""
    if want is None:
        assert got is None, f"{path}: got {got!r}, want None"
    elif isinstance(want, bool):
        assert isinstance(got, bool) and got == want, f"{path}: got {got!r}, want {want!r}"
    elif isinstance(want, int):
        assert type(got) is int or (isinstance(got, int) and not isinstance(got, bool)), \
            f"{path}: got {got!r} ({type(got).__name__}), want int {want!r}"
        assert got == want, f"{path}: got {got!r}, want {want!r}"
    elif isinstance(want, float):
        assert isinstance(got, float), f"{path}: got {got!r} ({type(got).__name__}), want float {want!r}"
        if math.isnan(want):
            assert math.isnan(got), f"{path}: got {got!r}, want nan"
        else:
            assert got == want, f"{path}: got {got!r}, want {want!r}"
            if want == 0.0:
                assert math.copysign(1, got) == math.copysign(1, want), f"{path}: sign of zero differs"
    elif isinstance(want, str):
        assert isinstance(got, str) and got == want, f"{path}: got {got!r}, want {want!r}"
    elif isinstance(want, bytes):
        assert isinstance(got, bytes) and got == want, f"{path}: got {got!r}, want {want!r}"
    elif isinstance(want, tuple):
        assert isinstance(got, tuple), f"{path}: got {got!r} ({type(got).__name__}), want tuple {want!r}"
        assert len(got) == len(want), f"{path}: got {got!r}, want {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{path}[{i}]")
    elif isinstance(want, list):
        assert isinstance(got, list), f"{path}: got {got!r} ({type(got).__name__}), want list {want!r}"
        assert len(got) == len(want), f"{path}: got {got!r}, want {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{path}[{i}]")
    elif isinstance(want, dict):
        assert isinstance(got, dict), f"{path}: got {got!r} ({type(got).__name__}), want dict {want!r}"
        assert list(got.keys()) == list(want.keys()), f"{path}: keys/order: got {list(got)!r}, want {list(want)!r}"
        for k in want:
            _same(got[k], want[k], f"{path}[{k!r}]")
    elif isinstance(want, range):
        assert isinstance(got, range) and got == want, f"{path}: got {got!r}, want {want!r}"
    else:  # pragma: no cover - a table entry of an unexpected type
        assert got == want, f"{path}: got {got!r}, want {want!r}"


@pytest.fixture
def budget():
    """Keyword arguments that give exec_file a small step budget, when it supports one."""
    return budget_kw()


@pytest.fixture
def sl():
    """The module under test."""
    return _sl


@pytest.fixture
def same():
    return _same


@pytest.fixture
def run():
    """exec_file(dedented source) -> globals dict; keyword arguments pass through."""

    def _run(src: str, filename: str = "test.star", **kw):
        return _sl.exec_file(textwrap.dedent(src), filename, **kw)

    return _run


@pytest.fixture
def ev():
    """eval_expr(source) -> value."""

    def _ev(src: str, **kw):
        return _sl.eval_expr(src, **kw)

    return _ev


@pytest.fixture
def out(capsys):
    """Run a program and return what it printed to stdout."""

    def _out(src: str, **kw):
        capsys.readouterr()
        _sl.exec_file(textwrap.dedent(src), "test.star", **kw)
        return capsys.readouterr().out

    return _out


@pytest.fixture
def fails(capsys):
    """Run a program that must fail; returns the StarlarkError (of class `cls`).

    Any other exception type escapes and fails the test.
    """

    def _fails(src: str, cls=None, *, expr: bool = False, **kw):
        cls = cls or _sl.StarlarkError
        with pytest.raises(_sl.StarlarkError) as info:
            if expr:
                _sl.eval_expr(src, **kw)
            else:
                _sl.exec_file(textwrap.dedent(src), "test.star", **kw)
        assert isinstance(info.value, cls), \
            f"want {cls.__name__}, got {type(info.value).__name__}: {info.value}"
        return info.value

    return _fails
