"""What the benchmarks share: the machine a result was measured on, and size arguments.

Imported by the benchmark scripts from their own folder (``python benchmarks/x.py`` puts
it on sys.path; a script loaded by path adds it first).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
from pathlib import Path

import ase
import numpy as np
import wflp


def machine() -> dict:
    """CPU, cores, versions, the wflp checkout and commit, and the load before the run."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    here = Path(wflp.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=here,
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "ase": ase.__version__, "numpy": np.__version__, "wflp": wflp.__version__,
            "wflp_path": str(here), "commit": commit, "loadavg_before": list(os.getloadavg())}


def size(text: str) -> int:
    """An argparse type: a whole number >= 1, written as 100000 or 1e5."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"not a whole number >= 1: {text}")
    return int(value)
