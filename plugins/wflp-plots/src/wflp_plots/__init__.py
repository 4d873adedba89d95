"""wflp plugin: parity plots of a model against its reference (matplotlib).

``wflp_plots.parity_plot(inputs, "xtb_", "gap_", "parity.png")`` and, from the shell,
``wflp parity REF MODEL FILE... -o parity.png``. Discovering this plugin imports only
this module; matplotlib is imported when a plot is made.
"""

from __future__ import annotations

from typing import Any

from wflp import hookimpl

__version__ = "0.1.0"
__all__ = ["parity_plot"]


def parity_plot(*args: Any, **kwargs: Any) -> Any:
    """See :func:`wflp_plots.parity.parity_plot` (imported on first use)."""
    from .parity import parity_plot as draw

    return draw(*args, **kwargs)


@hookimpl
def wflp_commands(cli: Any) -> None:
    from .cli import parity_command

    cli.add_command(parity_command)
