"""The `flowmetal` command line: one click group, one module per command family."""

from __future__ import annotations

import click

from . import eval_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowmetal")
def main() -> None:
    """Flowmetal: durable flows written in Starlark."""


main.add_command(eval_cmd.eval_command)

from . import runtime_cmds  # noqa: E402

runtime_cmds.register(main)

from . import send_cmd  # noqa: E402

send_cmd.register(main)

try:  # the daemon's client commands register themselves once they exist
    from . import daemon_cmds
except ImportError as _e:  # pragma: no cover - only while the daemon is absent
    if "daemon_cmds" not in str(_e):
        raise
else:
    daemon_cmds.register(main)
