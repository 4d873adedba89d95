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


@hookimpl
def wflp_panels(output: Any, record: Any) -> list:
    """The parity plots of a fitted model (wflp browse): PNGs beside its folder, drawn by
    this plugin, whose names contain the fitter's name (the demo's 08_parity_gap.png)."""
    from pathlib import Path

    from .parity import png_text

    folder = Path(output)
    if record is None or getattr(record, "kind", None) != "fit" or not folder.is_dir():
        return []
    panels = []
    for png in sorted(folder.parent.glob("*.png")):
        text = png_text(png)
        if not text.get("Software", "").startswith("wflp-plots") or record.name not in png.name:
            continue
        import json

        rmse = (json.loads(text.get("wflp:summary") or "{}") or {}).get("rmse") or {}
        table = [["property", "RMSE"]] + [[k, f"{v:.4g}"] for k, v in sorted(rmse.items())]
        panels.append({"title": f"Parity: {png.name}", "images": [png],
                       "table": table if rmse else None})
    return panels
