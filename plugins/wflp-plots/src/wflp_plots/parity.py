"""Parity plots: predicted against reference, and the error below, per property.

One column per property: on top the model's value against the reference's with the
identity line, below it the absolute error (meV units, log axis) against the reference
value, so that every point shows and large errors stand out; points coloured by group
(info keys, as the error report groups them). matplotlib is imported when a plot is
made, and only its object API is used (no pyplot, no global backend change).

When every input is a file, the PNG carries a digest of those files and of the
arguments (a tEXt entry); a later call with the same digest returns at once without
drawing (nor importing matplotlib).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

PANEL_WIDTH, PANEL_HEIGHT = 4.0, 5.6      # inches per property column
LABELS = {"energy_per_atom": ("energy", "eV/atom"),
          "atomization_energy_per_atom": ("atomization energy", "eV/atom"),
          "forces": ("force component", "eV/Å"), "stress": ("stress component", "eV/Å³"),
          "virial_per_atom": ("virial component", "eV/atom")}
ERROR_UNITS = {"eV/atom": "meV/atom", "eV/Å": "meV/Å", "eV/Å³": "meV/Å³"}
DEFAULT = ("energy", "forces", "stress")


@dataclasses.dataclass(frozen=True)
class ParityPlot:
    """What parity_plot drew: the PNG, its size in pixels, one panel column per property
    (in order), the groups, and each property's overall RMSE (eV units)."""

    path: Path
    size: tuple
    properties: tuple
    groups: tuple
    rmse: dict


def parity_plot(inputs: Any, ref_prefix: str, model_prefix: str,
                output: Union[str, os.PathLike], properties: Optional[Sequence[str]] = None,
                group_by: Union[str, Sequence[str], None] = "config_type",
                isolated_atoms: Any = None, title: Optional[str] = None,
                dpi: int = 100) -> ParityPlot:
    """Draw the parity plots of *model_prefix* results against *ref_prefix* ones to a PNG.

    inputs: anything ConfigSet takes, or {label: inputs} (coloured by label first).
    properties: among ``energy``, ``atomization_energy``, ``forces``, ``stress``,
    ``virial`` (default: energy, or atomization energy when *isolated_atoms* is given,
    forces and stress, those present). group_by: info key(s) colouring the points.
    """
    from wflp.analysis import compare, natural_key
    from wflp.analysis.errors import NAMES
    from wflp.errors import InputError, ParameterError

    path = Path(output)
    if path.suffix.lower() != ".png":
        raise ParameterError(f"parity_plot writes PNG files; name it *.png, got {str(path)!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 20:
        raise ParameterError(f"parity_plot: dpi must be a whole number >= 20, got {dpi!r}")
    if properties is None:
        wanted = [("atomization_energy" if p == "energy" and isolated_atoms is not None else p)
                  for p in DEFAULT]
        explicit = False
    else:
        wanted = [properties] if isinstance(properties, str) else list(properties)
        explicit = True
    arguments = {"ref": ref_prefix, "model": model_prefix, "properties": wanted,
                 "group_by": group_by, "title": title, "dpi": dpi}
    key = _content_key(inputs, isolated_atoms, arguments)
    if key is not None and path.is_file():
        stored = png_text(path)
        if stored.get("wflp:key") == key:
            import json

            summary = json.loads(stored["wflp:summary"])
            return ParityPlot(path, tuple(summary["size"]), tuple(summary["properties"]),
                              tuple(summary["groups"]), summary["rmse"])
    points: dict = {}
    for item in compare(inputs, ref_prefix, model_prefix, group_by, wanted, isolated_atoms):
        ref, model = points.setdefault(item.property, {}).setdefault(item.group, ([], []))
        ref.append(np.ravel(item.reference))
        model.append(np.ravel(item.model))
    order = [NAMES[p] for p in wanted]
    drawn = [p for p in order if p in points]
    if not drawn:
        raise InputError(f"nothing to plot: no configuration has {ref_prefix} and "
                         f"{model_prefix} results for {', '.join(wanted)}")
    missing = [p for p in order if p not in points]
    if explicit and missing:
        raise InputError(f"no configuration has {ref_prefix} and {model_prefix} results for "
                         f"{', '.join(missing)}")
    groups = sorted({g for p in drawn for g in points[p]}, key=natural_key)
    size = (int(round(PANEL_WIDTH * len(drawn) * dpi)), int(round(PANEL_HEIGHT * dpi)))
    summary = {"size": list(size), "properties": drawn, "groups": groups}
    summary["rmse"] = _draw(path, points, drawn, groups, dpi, title
                            or f"{model_prefix.rstrip('_') or 'model'} against "
                               f"{ref_prefix.rstrip('_') or 'reference'}", key, summary)
    return ParityPlot(path, size, tuple(drawn), tuple(groups), summary["rmse"])


def _content_key(inputs: Any, isolated_atoms: Any, arguments: dict) -> Optional[str]:
    """A digest of everything the plot shows, when every input is a file (None otherwise:
    then the plot is always drawn)."""
    import hashlib
    import json
    from collections.abc import Mapping

    from wflp import ConfigSet
    from wflp.records import sha256_file

    def files(value: Any) -> Optional[list]:
        if value is None:
            return []
        if isinstance(value, Mapping) and all(isinstance(v, (int, float)) for v in
                                              value.values()):
            return [sorted((str(k), float(v)) for k, v in value.items())]
        sets = value.values() if isinstance(value, Mapping) else [value]
        out = []
        for item in sets:
            if isinstance(item, (str, os.PathLike)):
                item = ConfigSet(item)
            if not isinstance(item, ConfigSet) or not item.files or not all(
                    group.files for group in item.groups()):  # some configurations in memory
                return None
            out.append([[str(f), sha256_file(f)] for f in item.files])
        return out

    inputs_files, isolated_files = files(inputs), files(isolated_atoms)
    if inputs_files is None or isolated_files is None:
        return None
    labels = list(inputs) if isinstance(inputs, Mapping) else None
    text = json.dumps({"plugin": _version(), "arguments": arguments, "labels": labels,
                       "inputs": inputs_files, "isolated_atoms": isolated_files},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wflp-plots")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "unknown"


def png_text(path: Union[str, os.PathLike]) -> dict:
    """The tEXt entries of a PNG file (read up to the image data; {} if it is no PNG)."""
    import struct

    found: dict = {}
    try:
        with open(path, "rb") as fd:
            if fd.read(8) != b"\x89PNG\r\n\x1a\n":
                return {}
            while True:
                head = fd.read(8)
                if len(head) < 8:
                    return found
                length, kind = struct.unpack(">I4s", head)
                if kind in (b"IDAT", b"IEND"):
                    return found
                data = fd.read(length)
                fd.read(4)  # CRC
                if kind == b"tEXt" and b"\0" in data:
                    name, _, value = data.partition(b"\0")
                    found[name.decode("latin-1")] = value.decode("latin-1")
    except OSError:
        return {}


def _draw(path: Path, points: dict, drawn: list, groups: list, dpi: int, title: str,
          key: Optional[str], summary: dict) -> dict:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(drawn)
    fig = Figure(figsize=(PANEL_WIDTH * n, PANEL_HEIGHT), dpi=dpi)
    FigureCanvasAgg(fig)
    columns = min(len(groups), 4)
    rows = -(-len(groups) // columns) if groups != ["all"] else 0
    grid = fig.add_gridspec(2, n, height_ratios=(3, 2), left=0.6 / (PANEL_WIDTH * n) + 0.05,
                            right=0.97, top=0.87 - 0.035 * max(rows - 1, 0), bottom=0.1,
                            hspace=0.08, wspace=0.35)
    cmap = _colours(len(groups))
    rmse = {}
    for col, prop in enumerate(drawn):
        name, unit = LABELS[prop]
        err_unit = ERROR_UNITS.get(unit, unit)
        scale = 1000.0 if err_unit.startswith("meV") else 1.0
        top = fig.add_subplot(grid[0, col])
        bottom = fig.add_subplot(grid[1, col], sharex=top)
        all_ref, all_model, per_group = [], [], []
        present = [g for g in groups if g in points[prop]]
        arrays = {g: (np.concatenate(points[prop][g][0]), np.concatenate(points[prop][g][1]))
                  for g in present}
        # the largest group first, so that smaller ones (a test set) stay visible on top
        for group in sorted(present, key=lambda g: -arrays[g][0].size):
            ref, model = arrays[group]
            all_ref.append(ref)
            all_model.append(model)
            colour = cmap[groups.index(group)]
            style = dict(s=9 if ref.size > 200 else 16, alpha=0.7, color=colour,
                         linewidths=0, label=group, rasterized=True)
            top.scatter(ref, model, **style)
            bottom.scatter(ref, np.abs(model - ref) * scale, **style)
        for group in present:  # each group's RMSE, in its colour, in the legend's order
            ref, model = arrays[group]
            per_group.append((group, float(np.sqrt(np.mean((model - ref) ** 2))) * scale,
                              cmap[groups.index(group)]))
        if 1 < len(per_group) <= 6:
            for i, (group, value, colour) in enumerate(per_group):
                top.text(0.03, 0.97 - 0.07 * i, f"{group}: {value:.3g}", color=colour,
                         transform=top.transAxes, ha="left", va="top", fontsize=8.5)
        ref, model = np.concatenate(all_ref), np.concatenate(all_model)
        errors = np.abs(model - ref)
        rmse[prop] = float(np.sqrt(np.mean(errors ** 2)))
        low = float(min(ref.min(), model.min()))
        high = float(max(ref.max(), model.max()))
        pad = 0.05 * (high - low or 1.0)
        top.plot([low - pad, high + pad], [low - pad, high + pad], color="0.3", lw=0.8,
                 zorder=0)
        top.set_xlim(low - pad, high + pad)
        top.set_ylim(low - pad, high + pad)
        top.set_ylabel(f"model {name} / {unit}")
        top.set_title(f"{name}\nRMSE {rmse[prop] * scale:.3g} {err_unit}, "
                      f"{ref.size} values", fontsize=10)
        top.tick_params(labelbottom=False)
        positive = errors[errors > 0] * scale
        floor = float(positive.min()) / 2 if positive.size else 1e-3
        bottom.set_yscale("log")
        bottom.set_ylim(bottom=floor, top=float(positive.max()) * 2 if positive.size else 1)
        bottom.axhline(rmse[prop] * scale, color="0.3", lw=0.8, ls="--", zorder=0)
        bottom.set_xlabel(f"reference {name} / {unit}")
        bottom.set_ylabel(f"|error| / {err_unit}")
        for ax in (top, bottom):
            ax.grid(True, color="0.9", lw=0.6)
            ax.set_axisbelow(True)
    if len(groups) > 1 or groups != ["all"]:
        handles, labels = fig.axes[0].get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: groups.index(labels[i]))
        handles, labels = [handles[i] for i in order], [labels[i] for i in order]
        fig.legend(handles, labels, loc="upper right", ncol=columns, fontsize=8,
                   markerscale=1.5, frameon=False, bbox_to_anchor=(0.99, 0.995))
    fig.suptitle(title, x=0.02, y=0.985, ha="left", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    metadata = {"Software": f"wflp-plots {_version()}"}
    if key is not None:  # a rerun with the same inputs and arguments reuses the file
        import json

        metadata["wflp:key"] = key
        metadata["wflp:summary"] = json.dumps({**summary, "rmse": rmse})
    fig.savefig(tmp, format="png", dpi=dpi, metadata=metadata)
    os.replace(tmp, path)
    return rmse


def _colours(n: int) -> list:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]
