"""The model panel of a GAP fitted by wflp (``wflp browse``): what gap.xml holds.

Read from the model's own files with the standard library (no quippy): the gap_fit
version, each descriptor with its sparse points and covariance, the isolated-atom
energies the model subtracts, the training configurations and the files.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Optional

from ase.data import chemical_symbols


def model_panels(folder: Path, record: Any) -> list[dict]:
    """[the panel] for a folder a ``fit(..., fitter="gap")`` made, else []."""
    if (record is None or getattr(record, "kind", None) != "fit"
            or getattr(record, "name", None) != "gap"):
        return []
    main = folder / "gap.xml"
    if not main.is_file():
        return []
    root = ET.parse(main).getroot()
    params = root.find("GAP_params")
    rows: list[list[Any]] = [["descriptor", "sparse points", "covariance", "delta"]]
    for coords, descriptor in zip(root.iter("gpCoordinates"), root.iter("descriptor")):
        words = dict(w.split("=", 1) for w in (descriptor.text or "").split()[1:] if "=" in w)
        name = (descriptor.text or "").split()[0] if descriptor.text else "?"
        species = " ".join(chemical_symbols[int(words[z])] for z in ("Z", "Z1", "Z2")
                           if words.get(z, "").isdigit())
        rows.append([f"{name} {species}".strip(), coords.get("n_sparseX", "?"),
                     words.get("covariance_type", "?"), words.get("delta", "?")])
    e0 = [[chemical_symbols[int(e.get("Z", 0))], f"{float(e.get('value', 0)):.6f}"]
          for e in root.iter("e0") if _nonzero(e.get("value"))]
    lines = [f"gap_fit version {params.get('gap_version')}" if params is not None else "",
             _training(record, folder),
             "isolated-atom energies (eV): " + ", ".join(f"{s} {v}" for s, v in e0)
             if e0 else "",
             "files: " + ", ".join(f"{p.name} ({p.stat().st_size:,} bytes)"
                                   for p in sorted(folder.iterdir()) if p.is_file())]
    return [{"title": "GAP model", "text": "\n".join(line for line in lines if line),
             "table": rows}]


def _nonzero(text: Optional[str]) -> bool:
    try:
        return float(text or 0) != 0.0
    except ValueError:
        return False


def _training(record: Any, folder: Path) -> str:
    """What the model was fitted to, as its record says: a count or the files."""
    inputs = getattr(record, "inputs", None) or {}
    if not isinstance(inputs, dict):
        return ""
    if isinstance(inputs.get("count"), int):
        return f"fitted to {inputs['count']} configurations"
    files = [os.path.relpath(str(f), folder) for f in inputs.get("files") or []]
    return "fitted to " + ", ".join(files) if files else ""
