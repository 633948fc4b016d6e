"""Spies on the store shared by tests of several packages."""

from __future__ import annotations

from typing import Any

from store.env import Env


def count_syncs(monkeypatch: Any) -> list:
    """From now on every fsync of a store's data file (`Env.sync_file`) still happens
    and adds an entry to the list returned."""
    calls: list = []
    real = Env.sync_file

    def counting(self: Env) -> None:
        calls.append(1)
        real(self)
    monkeypatch.setattr(Env, "sync_file", counting)
    return calls
