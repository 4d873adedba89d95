"""Bad input, round 2 (issue 15, defects 5, 6, 8 and 9).

- output formats the stage cannot assemble (pdb, json, xsf, db) are refused before any work;
- a plugin that calls sys.exit() or raises KeyboardInterrupt at import (or sys.exit() in a
  hook) is isolated like any broken plugin, in Python and on the command line;
- output = input is refused even with overwrite=True; an integer index beyond the end of a
  file is an InputError; a one-file list for several input groups is an OutputError;
- a chunk file deleted from the stage during a run is reported as such.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.calculators.emt import EMT
from helpers import rattled_cu
from wflp import AutoparaInfo, ConfigSet, OutputSpec, operation
from wflp.errors import OutputError
from wflp.ops import calculate

FIXTURES = Path(__file__).parent / "plugin_fixtures"


def _listing(folder: Path) -> list[str]:
    """Every name under *folder*, hidden ones included, relative and sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _positions(configs) -> list:
    return [np.round(at.positions, 8).tolist() for at in configs]


def _emt_energies(configs) -> list[float]:
    out = []
    for at in configs:
        at = at.copy()
        at.calc = EMT()
        out.append(at.get_potential_energy())
    return out


@pytest.fixture
def counted(tmp_path):
    """An operation that logs each call (the item's index), to tell whether work was done."""
    log = tmp_path / "calls.log"

    @operation("scaled_r2", version="1")
    def scaled(at, factor=1.0, index=None):
        with open(log, "a") as fd:
            fd.write(f"{index}\n")
        at.positions *= factor
        return at

    def calls() -> list[int]:
        return [int(x) for x in log.read_text().split()] if log.exists() else []

    return scaled, calls


# -- 5. formats the stage cannot write are refused before any work -------------------------------

@pytest.mark.parametrize("name, format, shown", [
    ("e.pdb", None, "proteindatabank"),
    ("e.json", None, "json"),
    ("e.xsf", None, "xsf"),
    ("e.db", None, "db"),
    ("e.out", "proteindatabank", "proteindatabank"),
])
def test_formats_the_stage_cannot_assemble_are_refused_at_once(tmp_path, counted, name, format,
                                                                 shown):
    scaled, calls = counted
    inputs = tmp_path / "in.xyz"
    ase.io.write(inputs, rattled_cu(3))
    before = _listing(tmp_path)
    with pytest.raises(OutputError) as err:
        scaled(ConfigSet(inputs), OutputSpec(tmp_path / name, format=format), 1.1)
    message = str(err.value)
    assert name in message and repr(shown) in message
    assert "extxyz" in message and "traj" in message  # the formats that do work
    assert calls() == []
    assert _listing(tmp_path) == before  # no output, no stage, no lock, no record


def test_cli_refuses_an_unwritable_format_before_running(tmp_path):
    ase.io.write(tmp_path / "in.xyz", rattled_cu(2))
    before = _listing(tmp_path)
    done = subprocess.run([sys.executable, "-m", "wflp.cli", "run", "calculator", "emt",
                           "-i", "in.xyz", "-o", "e.pdb"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, WFLP_PROGRESS="0"))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "e.pdb" in line and "'proteindatabank'" in line and "extxyz" in line
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("name, format", [
    ("o.cif", None), ("o.traj", None), ("o.txt", "xyz"), ("o.extxyz", None)])
def test_accepted_formats_are_assembled_and_read_back(tmp_path, name, format):
    ats = rattled_cu(3, seed=4)
    spec = OutputSpec(tmp_path / name, format=format)
    out = calculate(ats, spec, calculator=EMT(),
                    autopara_info=AutoparaInfo(num_inputs_per_python_subprocess=2))
    back = ase.io.read(tmp_path / name, ":", format=spec.format)
    assert len(back) == 3 and len(list(out)) == 3
    for b, a in zip(back, ats):  # the same atoms, up to lattice vectors (cif wraps them)
        shift = np.linalg.solve(a.cell.array.T, (b.positions - a.positions).T)
        assert np.abs(shift - np.round(shift)).max() < 1e-5
    if spec.format in ("traj", "extxyz"):  # formats that keep the results
        got = [b.get_potential_energy() if b.calc is not None else b.info["EMT_energy"]
               for b in back]
        assert np.allclose(got, _emt_energies(ats), rtol=0, atol=1e-10)
