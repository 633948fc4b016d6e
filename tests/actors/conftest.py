"""Fixtures shared by the runtime tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from store import Store


@pytest.fixture
def store(tmp_path: Path):
    """A store in a fresh home (fsync off: a killed process loses nothing either way)."""
    st = Store.open(tmp_path / "home", sync=False)
    yield st
    st.close()
