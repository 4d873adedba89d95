"""What calculate, md and optimize store under a prefix is this run's outcome, nothing else.

- A configuration that fails leaves no trace on the others: EMT keeps a neighbour list
  across a block of 32 configurations, and a failure used to leave it broken, so the good
  configurations after it in the block were marked failed too.
- Nothing stale survives under the prefix: old results next to a new failure, or an old
  failure next to new results.
- A prefix that extended XYZ cannot hold as the start of a key is refused before
  anything is computed.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from click.testing import CliRunner
from helpers import rattled_cu
from wflp import AutoparaInfo, OutputSpec
from wflp.cli import cli
from wflp.errors import ParameterError
from wflp.ops import calculate, md, optimize

RESULT_KEYS = ("C_energy", "C_free_energy", "C_stress")


class _FragileEMT(EMT):
    """EMT that a failure leaves broken until it is reset, as a NaN position left ASE's
    EMT (its neighbour list half-built): the injected fault, on configurations marked
    info["fault"]."""

    wflp_reset_interval = 32
    broken = False

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if self.broken:
            raise AttributeError("left broken by an earlier failure")
        if atoms is not None and atoms.info.get("fault"):
            self.broken = True
            raise RuntimeError("injected fault")
        super().calculate(atoms, properties, system_changes)

    def reset(self):
        self.broken = False
        super().reset()


def _nan_position(atoms: Atoms) -> Atoms:
    bad = atoms.copy()
    bad.positions[1] = np.nan
    return bad


def _unknown_element(atoms: Atoms) -> Atoms:
    bad = atoms.copy()
    bad.symbols[0] = "U"
    return bad


def _marked(atoms: Atoms) -> Atoms:
    bad = atoms.copy()
    bad.info["fault"] = True
    return bad


FAULTS = {  # how a configuration fails: (make it fail, calculator, words of its error)
    "nan-position": (_nan_position, EMT, "positions are not finite"),
    "unknown-element": (_unknown_element, EMT, "No EMT-potential for U"),
    "injected": (_marked, _FragileEMT, "injected fault"),
}


def _reference(configs: list, bad_at: int, calculator: type) -> list:
    """Each block of 32 configurations evaluated by a run without the failing one."""
    out = []
    for start in range(0, len(configs), 32):
        block = [a.copy() for k, a in enumerate(configs[start:start + 32], start)
                 if k != bad_at]
        out += list(calculate(block, OutputSpec(), calculator=calculator(), prefix="C_"))
    return out


def _assert_same_results(got: Atoms, expected: Atoms) -> None:
    assert "C_calc_failed" not in got.info and "C_calc_error" not in got.info
    assert np.array_equal(got.positions, expected.positions)
    assert np.array_equal(got.arrays["C_forces"], expected.arrays["C_forces"])  # bit for bit
    for key in RESULT_KEYS:
        assert np.array_equal(got.info[key], expected.info[key]), key


RUNS = [AutoparaInfo(), AutoparaInfo(num_python_subprocesses=2)]


@pytest.mark.parametrize("info", RUNS, ids=["serial", "2-processes"])
@pytest.mark.parametrize("bad_at", [0, 15, 31, 32],
                         ids=["block-start", "block-middle", "block-end", "2nd-block-start"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failure_leaves_no_trace_on_the_other_configurations(fault, bad_at, info):
    """EMT is reset every 32 configurations. The good ones' results are those of a run
    without the failing one, bit for bit, wherever in its block it fails."""
    make_bad, calculator, error = FAULTS[fault]
    good = rattled_cu(40, seed=5)
    configs = good[:bad_at] + [make_bad(good[bad_at])] + good[bad_at:]
    got = list(calculate([a.copy() for a in configs], OutputSpec(), calculator=calculator(),
                         prefix="C_", autopara_info=info))
    assert len(got) == 41
    assert got[bad_at].info["C_calc_failed"] is True
    assert error in got[bad_at].info["C_calc_error"]
    assert not any(k in got[bad_at].info for k in RESULT_KEYS)
    assert "C_forces" not in got[bad_at].arrays
    expected = _reference(configs, bad_at, calculator)
    for atoms, ref in zip(got[:bad_at] + got[bad_at + 1:], expected):
        _assert_same_results(atoms, ref)


def test_a_nan_position_fails_whatever_came_before():
    """ASE's EMT fails on it with a fresh neighbour list, but with one kept from the
    configuration before gives finite numbers for it; calculate never asks it."""
    good = rattled_cu(2, seed=5)
    calc = EMT()
    first = good[0].copy()
    first.calc = calc
    first.get_potential_energy()
    bad = _nan_position(good[1])
    bad.calc = calc
    assert np.isfinite(bad.get_potential_energy())  # the wrong answer calculate avoids
    got = list(calculate([good[0].copy(), _nan_position(good[1])], OutputSpec(),
                         calculator=EMT(), prefix="C_"))
    assert got[1].info["C_calc_failed"] is True and "C_energy" not in got[1].info


def test_the_state_a_failure_would_have_changed_matters():
    """Why the failed configuration's neighbours are given the block's state back, not
    just a reset: a fresh neighbour list gives other last bits for at least one of them."""
    good = rattled_cu(40, seed=5)
    in_block = list(calculate([a.copy() for a in good[:31]], OutputSpec(), calculator=EMT(),
                              prefix="C_"))
    fresh = []
    for atoms in good[15:31]:
        atoms = atoms.copy()
        atoms.calc = EMT()
        fresh.append(atoms.get_forces())
    assert any(not np.array_equal(f, a.arrays["C_forces"])
               for f, a in zip(fresh, in_block[15:31]))


def _frames(path: Path) -> list:
    """The text of each 4-atom frame of an extended XYZ file."""
    lines = path.read_text().splitlines(keepends=True)
    return ["".join(lines[k:k + 6]) for k in range(0, len(lines), 6)]


def test_a_failure_leaves_no_trace_in_a_file(tmp_path):
    good = rattled_cu(40, seed=6)
    configs = good[:20] + [_unknown_element(good[20])] + good[20:]
    out = tmp_path / "x.xyz"
    calculate([a.copy() for a in configs], OutputSpec(out), calculator=EMT(), prefix="C_",
              autopara_info=AutoparaInfo(num_python_subprocesses=2))
    back = ase.io.read(out, ":")
    assert len(back) == 41 and back[20].info["C_calc_failed"] is True
    expected = []
    for k, start in enumerate((0, 32)):  # each block, in a run without the failing one
        block = [a.copy() for j, a in enumerate(configs[start:start + 32], start) if j != 20]
        calculate(block, OutputSpec(tmp_path / f"ref{k}.xyz"), calculator=EMT(), prefix="C_")
        expected += _frames(tmp_path / f"ref{k}.xyz")
    got = _frames(out)
    assert got[:20] + got[21:] == expected  # byte for byte


# -- nothing stale under the prefix ---------------------------------------------------------

def _with_old_results(atoms: Atoms, prefix: str = "C_") -> Atoms:
    atoms = atoms.copy()
    atoms.info[f"{prefix}energy"] = 123.0
    atoms.info[f"{prefix}free_energy"] = 123.0
    atoms.info[f"{prefix}stress"] = np.ones(6)
    atoms.info[f"{prefix}virial"] = np.ones(9)   # a key calculate itself never writes
    atoms.info[f"{prefix}rundir"] = "/old/run"
    atoms.arrays[f"{prefix}forces"] = np.ones((len(atoms), 3))
    atoms.arrays[f"{prefix}energies"] = np.ones(len(atoms))
    atoms.info["note"] = "kept"                   # not under the prefix
    atoms.info["D_energy"] = 7.0
    atoms.arrays["D_forces"] = np.zeros((len(atoms), 3))
    return atoms


def _with_old_failure(atoms: Atoms, prefix: str = "C_") -> Atoms:
    atoms = atoms.copy()
    atoms.info[f"{prefix}calc_failed"] = True
    atoms.info[f"{prefix}calc_error"] = "RuntimeError: the old run failed"
    atoms.info["note"] = "kept"
    return atoms


def _keys(atoms: Atoms) -> set:
    return set(atoms.info) | set(atoms.arrays)


def test_a_failure_keeps_no_old_results_under_the_prefix():
    atoms = _with_old_results(_nan_position(rattled_cu(1, seed=1)[0]))
    (out,) = calculate([atoms], OutputSpec(), calculator=EMT(), prefix="C_")
    assert _keys(out) == {"numbers", "positions", "note", "D_energy", "D_forces",
                          "C_calc_failed", "C_calc_error"}
    assert out.info["D_energy"] == 7.0 and out.info["note"] == "kept"


def test_results_keep_no_old_failure_or_results_under_the_prefix():
    atoms = _with_old_results(_with_old_failure(rattled_cu(1, seed=1)[0]))
    (out,) = calculate([atoms], OutputSpec(), calculator=EMT(), prefix="C_",
                       properties=["energy", "forces"])
    assert _keys(out) == {"numbers", "positions", "note", "D_energy", "D_forces",
                          "C_energy", "C_forces"}
    fresh = atoms.copy()
    fresh.calc = EMT()
    assert out.info["C_energy"] == pytest.approx(fresh.get_potential_energy(), abs=1e-12)


def test_a_prefix_never_removes_what_ase_owns():
    """'pos' starts 'positions' and 'mass' starts 'masses': ASE's own arrays stay."""
    atoms = rattled_cu(1, seed=2)[0]
    atoms.set_masses(np.full(len(atoms), 60.0))
    atoms.set_initial_magnetic_moments(np.ones(len(atoms)))
    for prefix in ("pos", "mass", "initial_"):
        (out,) = calculate([atoms.copy()], OutputSpec(), calculator=EMT(), prefix=prefix,
                           properties=["energy"])
        assert np.array_equal(out.positions, atoms.positions)
        assert np.array_equal(out.get_masses(), atoms.get_masses())
        assert np.array_equal(out.get_initial_magnetic_moments(), np.ones(len(atoms)))
        assert f"{prefix}energy" in out.info


def test_the_empty_prefix_clears_only_the_names_calculate_writes():
    atoms = _nan_position(rattled_cu(1, seed=1)[0])
    atoms.info.update(energy=1.0, calc_failed=False, calc_error="old", note="kept")
    atoms.arrays["forces"] = np.ones((len(atoms), 3))
    (out,) = calculate([atoms], OutputSpec(), calculator=EMT(), prefix="")
    assert _keys(out) == {"numbers", "positions", "note", "calc_failed", "calc_error"}
    assert out.info["calc_failed"] is True


def _molecule() -> Atoms:
    """A non-periodic Cu3: md and optimize store no stress for it, so an old one stays
    visible unless it is removed."""
    return Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [1.2, 2.2, 0.1]])


@pytest.mark.parametrize("run", [
    lambda a: md([a], OutputSpec(), calculator=EMT(), steps=2, dt=1.0,
                 integrator="velocityverlet", results_prefix="C_"),
    lambda a: optimize([a], OutputSpec(), calculator=EMT(), steps=3, keep_trajectory="all",
                       results_prefix="C_"),
], ids=["md", "optimize"])
def test_md_and_optimize_frames_keep_nothing_old_under_the_prefix(run):
    atoms = _with_old_results(_with_old_failure(_molecule()))
    frames = list(run(atoms))
    assert len(frames) >= 2
    for frame in frames:
        under = {k for k in _keys(frame) if k.startswith("C_")}
        assert under == {"C_energy", "C_forces"}, under
        assert frame.info["note"] == "kept" and frame.info["D_energy"] == 7.0
        assert np.all(frame.arrays["C_forces"] != 1.0)


# -- the prefix itself ----------------------------------------------------------------------

class _Counting(Calculator):
    """Counts calculations, to show that a refused prefix computes nothing."""

    implemented_properties = ["energy", "forces"]
    calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        type(self).calls += 1
        self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}


BAD_PREFIXES = ["x y", "x\ny", "x\t", 'x"', "x'", "x=", "x,y", "x:y_", "x[", "é_", "x/"]


@pytest.mark.parametrize("prefix", BAD_PREFIXES)
def test_a_prefix_extended_xyz_cannot_hold_is_refused_before_computing(tmp_path, prefix):
    _Counting.calls = 0
    out = tmp_path / "out.xyz"
    with pytest.raises(ParameterError) as err:
        calculate(rattled_cu(2), OutputSpec(out), calculator=_Counting(), prefix=prefix)
    message = str(err.value)
    assert "prefix" in message and "letters, digits, '_', '-' and '.'" in message
    assert "\n" not in message
    assert _Counting.calls == 0 and not out.exists()


@pytest.mark.parametrize("op,kwargs", [
    (md, dict(steps=1, dt=1.0, integrator="velocityverlet")),
    (optimize, dict(steps=1)),
])
@pytest.mark.parametrize("prefix", ["x y", "x=", "x\n"])
def test_md_and_optimize_refuse_such_a_results_prefix(op, kwargs, prefix):
    _Counting.calls = 0
    with pytest.raises(ParameterError, match="results_prefix"):
        op(rattled_cu(1), OutputSpec(), calculator=_Counting(), results_prefix=prefix,
           **kwargs)
    assert _Counting.calls == 0


@pytest.mark.parametrize("prefix", ["a-b.c_", "DFT_", "1_", ""])
def test_the_allowed_prefixes_round_trip_through_a_file(tmp_path, prefix):
    out = tmp_path / "out.xyz"
    calculate(rattled_cu(2), OutputSpec(out), calculator=EMT(), prefix=prefix)
    back = ase.io.read(out, ":")
    assert len(back) == 2
    if prefix:
        assert {f"{prefix}energy", f"{prefix}stress"} <= set(back[0].info)
        assert f"{prefix}forces" in back[0].arrays
    else:  # ASE reads unprefixed results back as the calculator's
        assert set(back[0].calc.results) >= {"energy", "forces", "stress"}


def _invoke(*args: str, cwd: Path):
    kwargs = {"mix_stderr": False} if "mix_stderr" in inspect.signature(
        CliRunner.__init__).parameters else {}
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner(**kwargs).invoke(cli, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.mark.parametrize("prefix", ["x y", "x\ny", "x=1"])
def test_cli_refuses_such_a_prefix_with_one_line(tmp_path, prefix, wflp_plugin_manager):
    ase.io.write(tmp_path / "in.xyz", rattled_cu(2))
    result = _invoke("run", "calculator", "emt", "-i", "in.xyz", "-o", "out.xyz",
                     "--prefix", prefix, cwd=tmp_path)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "prefix" in lines[0] and "letters, digits" in lines[0]
    assert not (tmp_path / "out.xyz").exists()


def test_a_chain_file_with_such_a_prefix_runs_no_step(tmp_path, wflp_plugin_manager):
    ase.io.write(tmp_path / "in.xyz", rattled_cu(2))
    (tmp_path / "chain.toml").write_text(
        '[chain]\ninputs = "in.xyz"\n\n[[step]]\nkind = "calculator"\nname = "emt"\n'
        'output = "out.xyz"\nprefix = "E,"\n')
    result = _invoke("run", "chain.toml", cwd=tmp_path)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "step 1" in lines[0] and "prefix 'E,'" in lines[0]
    assert not list(tmp_path.rglob("out.xyz"))
