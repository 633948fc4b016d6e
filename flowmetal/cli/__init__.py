"""The `flowmetal` command line: one click group, one module per command family."""

from __future__ import annotations

import click

from . import eval_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowmetal")
def main() -> None:
    """Flowmetal: durable flows written in Starlark."""


main.add_command(eval_cmd.eval_command)

try:  # the runtime's commands register themselves when the runtime is present
    from . import runtime_cmds
    runtime_cmds.register(main)
except ImportError as _e:  # pragma: no cover - only while the runtime is absent
    if "runtime_cmds" not in str(_e):
        raise
