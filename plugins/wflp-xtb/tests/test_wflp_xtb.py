"""The xtb plugin, installed: discovered, lazy, and equal to tblite called directly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from wflp.testing import require_module, scaled  # noqa: E402

if sys.version_info >= (3, 10):
    from importlib.metadata import PackageNotFoundError, distribution
else:  # pragma: no cover
    from importlib_metadata import PackageNotFoundError, distribution

require_module("tblite.ase", "pip install tblite (or bash scripts/dev-install.sh)")
try:
    distribution("wflp-xtb")
except PackageNotFoundError:  # pragma: no cover
    require_module("wflp_xtb_not_installed", "pip install -e plugins/wflp-xtb")

from wflp import AutoparaInfo, OutputSpec, shutdown_pool  # noqa: E402
from wflp.errors import ParameterError  # noqa: E402
from wflp.ops import calculate  # noqa: E402
from wflp.plugins import get_calculator, plugin_report, reset_plugin_manager  # noqa: E402


@pytest.fixture
def fresh_registry():
    """Discover installed plugins afresh, as a new process would."""
    reset_plugin_manager()
    yield
    reset_plugin_manager()


def test_report_lists_the_plugin_as_ok(fresh_registry):
    records = [r for r in plugin_report() if r.distribution == "wflp-xtb"]
    assert len(records) == 1
    record = records[0]
    assert record.status == "ok", record.error
    assert record.version == "0.1.0"
    assert record.entry_point == "xtb = wflp_xtb"
    assert record.registered == {"calculators": ["xtb"]}
    spec = get_calculator("XTB")
    assert spec.picklable is False
    assert spec.factory == "wflp_xtb.calculator:xtb_calculator"


def test_discovery_does_not_import_tblite():
    code = (
        "import sys\n"
        "from wflp.plugins import get_calculator, plugin_report\n"
        "assert [r.status for r in plugin_report() if r.distribution == 'wflp-xtb'] == ['ok']\n"
        "get_calculator('xtb')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tblite', 'torch')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.fixture
def spawned_pool(monkeypatch):
    """Worker processes started fresh (spawn): each discovers the plugin by itself, and
    none inherits tblite's OpenMP state from this process."""
    shutdown_pool()
    monkeypatch.setenv("WFLP_MP_START_METHOD", "spawn")
    yield
    shutdown_pool()


@pytest.mark.parametrize("method", ["GFN2-xTB", "GFN1-xTB"])
def test_calculate_by_name_in_two_processes_matches_tblite(method, molecules, spawned_pool,
                                                           fresh_registry):
    from tblite.ase import TBLite

    out = list(calculate([m.copy() for m in molecules], OutputSpec(),
                         calculator=("xtb", [], {"method": method}),
                         autopara_info=AutoparaInfo(num_python_subprocesses=2)))
    assert len(out) == len(molecules)

    energies, forces = [], []
    for mol in molecules:
        mol.calc = TBLite(method=method, verbosity=0)
        energies.append(mol.get_potential_energy())
        forces.append(mol.get_forces())
    got = [at.info["xtb_energy"] for at in out]
    assert np.allclose(got, energies, rtol=0, atol=1e-8)
    for at, f in zip(out, forces):
        assert np.allclose(at.arrays["xtb_forces"], f, rtol=0, atol=1e-8)
    assert [at.get_chemical_formula() for at in out] == [
        m.get_chemical_formula() for m in molecules]


def test_gfn1_and_gfn2_differ(molecules):
    factory = get_calculator("xtb").load()
    water = molecules[0]
    e = {}
    for method in ("gfn2-xtb", "GFN1-xTB"):
        water.calc = factory(method=method)
        e[method] = water.get_potential_energy()
    assert abs(e["gfn2-xtb"] - e["GFN1-xTB"]) > 1e-3


def test_unknown_method_names_the_choices():
    factory = get_calculator("xtb").load()
    with pytest.raises(ParameterError, match="GFN2-xTB, GFN1-xTB"):
        factory(method="GFN0-xTB")


def test_results_never_depend_on_what_a_process_computed_before(tmp_path, spawned_pool,
                                                                fresh_registry):
    """tblite starts each SCF from the previous result; calculate resets it before every
    configuration (xtb declares no reset interval), so serial, parallel and reordered
    runs give the same bytes."""
    import ase.io
    from ase.build import molecule
    from wflp import ConfigSet

    rng = np.random.default_rng(3)
    frames = []
    for _ in range(12):  # nearby geometries, as from MD: a reused SCF guess would matter
        mol = molecule("CH3CH2OH")
        mol.positions += rng.normal(0, 0.05, mol.positions.shape)
        frames.append(mol)
    ase.io.write(tmp_path / "in.xyz", frames)
    ase.io.write(tmp_path / "reversed.xyz", frames[::-1])
    runs = {"serial": AutoparaInfo(),
            "parallel": AutoparaInfo(num_python_subprocesses=2,
                                     num_inputs_per_python_subprocess=5)}
    for name, info in runs.items():
        calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / f"{name}.xyz"),
                  calculator=("xtb", [], {}), autopara_info=info)
    calculate(ConfigSet(tmp_path / "reversed.xyz"), OutputSpec(tmp_path / "backwards.xyz"),
              calculator=("xtb", [], {}))
    assert (tmp_path / "serial.xyz").read_bytes() == (tmp_path / "parallel.xyz").read_bytes()
    forward = ase.io.read(tmp_path / "serial.xyz", ":")
    backward = ase.io.read(tmp_path / "backwards.xyz", ":")[::-1]
    for a, b in zip(forward, backward):
        assert a.info["xtb_energy"] == b.info["xtb_energy"]
        assert np.array_equal(a.arrays["xtb_forces"], b.arrays["xtb_forces"])
