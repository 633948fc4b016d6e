"""Where a user's Flowmetal state lives: ``--home``, else ``$FLOWMETAL_HOME``, else
``$XDG_STATE_HOME/flowmetal``, else ``~/.local/state/flowmetal`` (mode 0700)."""

from __future__ import annotations

import os
from pathlib import Path


def home_dir(explicit: str | os.PathLike | None = None, *, create: bool = True) -> Path:
    """The home directory to use (created with mode 0700 if missing, unless
    ``create`` is false: commands that only read make nothing). An explicit home
    that is empty is an error (ValueError), never the default home."""
    if explicit is not None:
        if not os.fspath(explicit).strip():
            raise ValueError("the home directory must not be an empty path")
        home = Path(explicit)
    elif os.environ.get("FLOWMETAL_HOME"):
        home = Path(os.environ["FLOWMETAL_HOME"])
    elif os.environ.get("XDG_STATE_HOME"):
        home = Path(os.environ["XDG_STATE_HOME"]) / "flowmetal"
    else:
        home = Path.home() / ".local" / "state" / "flowmetal"
    home = home.expanduser()
    if create:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home
