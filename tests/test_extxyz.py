"""wflp.io.extxyz writes exactly the bytes ASE's extxyz writer writes, only faster."""
from __future__ import annotations

import io

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms, FixBondLength
from ase.io.extxyz import write_extxyz
from wflp.io import extxyz
from wflp.io.extxyz import frame_texts, write_frames

SPECIAL_FLOATS = [0.0, -0.0, 1.0, -2.5, 1e-300, 1e300, 1e16, 1e-5, 0.1 + 0.2, np.pi,
                  float("inf"), float("-inf"), float("nan"), 123456789.0]
SYMBOLS = ["H", "C", "Cu", "O", "Au", "Si"]


def ase_text(frames) -> str:
    buf = io.StringIO()
    write_extxyz(buf, list(frames))
    return buf.getvalue()


def wflp_text(frames) -> str:
    buf = io.StringIO()
    write_frames(buf, frames)
    return buf.getvalue()


def random_info_value(rng: np.random.Generator):
    choice = rng.integers(14)
    if choice == 0:
        return float(rng.choice(SPECIAL_FLOATS))
    if choice == 1:
        return float(rng.normal() * 10.0 ** rng.integers(-8, 9))
    if choice == 2:
        return int(rng.integers(-10**12, 10**12))
    if choice == 3:
        return bool(rng.integers(2))
    if choice == 4:
        return np.bool_(rng.integers(2))
    if choice == 5:
        return np.float64(rng.choice(SPECIAL_FLOATS + [rng.normal(), rng.normal() * 1e-7]))
    if choice == 6:
        return np.float32(rng.normal())
    if choice == 7:
        return str(rng.choice(["plain", "with space", 'with "quote"', "it's", "{brace}",
                               "[bracket]", "a=b", "T", "", "ünïcode"]))
    if choice == 8:
        return rng.normal(size=int(rng.integers(1, 7))) * rng.choice([1e-9, 1.0, 1e9])
    if choice == 9:
        return rng.integers(-5, 5, size=int(rng.integers(1, 5)))
    if choice == 10:
        return rng.integers(2, size=3).astype(bool)
    if choice == 11:
        return rng.normal(size=(3, 3))
    if choice == 12:
        return rng.normal(size=2).astype(np.float32)
    return [1, 2.5, "x"]  # not a common type: handed to ASE's writer


def random_frame(rng: np.random.Generator, n_keys: int) -> Atoms:
    natoms = int(rng.integers(0, 6))
    atoms = Atoms(symbols=[str(s) for s in rng.choice(SYMBOLS, natoms)],
                  positions=rng.normal(size=(natoms, 3)) * 5)
    cell_kind = rng.integers(3)
    if cell_kind == 1:
        atoms.cell = np.diag(rng.uniform(3, 9, size=3))
    elif cell_kind == 2:
        atoms.cell = rng.normal(size=(3, 3)) * 4
    atoms.pbc = [bool(x) for x in rng.integers(2, size=3)]
    for k in range(n_keys):
        key = str(rng.choice(["energy", "E_energy", "my key", "stress", "virial", "n",
                              "config_type", "flag", "Lattice_x"])) + str(k)
        atoms.info[key] = random_info_value(rng)
    if rng.integers(2):
        atoms.arrays["forces"] = rng.normal(size=(natoms, 3))
    if rng.integers(3) == 0:
        atoms.arrays["tags_int"] = rng.integers(-3, 300, size=natoms)
    if rng.integers(3) == 0:
        atoms.arrays["mask"] = rng.integers(2, size=natoms).astype(bool)
    if rng.integers(4) == 0:
        atoms.arrays["column"] = rng.normal(size=(natoms, 1))
    if rng.integers(4) == 0:
        atoms.arrays["label"] = np.array([str(x) for x in rng.choice(["a", "bb", "ccc"],
                                                                      natoms)])
    if rng.integers(5) == 0:
        atoms.set_initial_magnetic_moments(rng.normal(size=natoms))
    return atoms


def test_random_frames_match_ase_byte_for_byte():
    rng = np.random.default_rng(20261121)
    frames = [random_frame(rng, int(rng.integers(0, 6))) for _ in range(400)]
    assert wflp_text(frames) == ase_text(frames)


def test_special_floats_in_every_place_match_ase():
    frames = []
    for value in SPECIAL_FLOATS:
        atoms = Atoms("CuH", positions=[[value, 0, 1], [0, -value, 2]],
                      cell=[[value if np.isfinite(value) else 1.0, 0, 0], [0, 3, 0], [0, 0, 4]],
                      pbc=True)
        atoms.info["x"] = value
        atoms.info["v"] = np.array([value, 1.0])
        atoms.arrays["forces"] = np.full((2, 3), value)
        frames.append(atoms)
    assert wflp_text(frames) == ase_text(frames)


def test_frames_only_ase_can_write_are_still_written_as_ase_writes_them():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1.2, 0, 0]], cell=[5, 5, 5], pbc=True)
    with_calc = atoms.copy()
    with_calc.calc = SinglePointCalculator(with_calc, energy=-1.5, forces=np.ones((2, 3)),
                                           stress=np.arange(6.0))
    fixed = atoms.copy()
    fixed.set_constraint(FixAtoms(indices=[0]))
    other_constraint = atoms.copy()
    other_constraint.set_constraint(FixBondLength(0, 1))
    voigt = atoms.copy()
    voigt.info["stress"] = np.arange(6.0)
    with_none = atoms.copy()
    with_none.info["flag"] = None
    zero_d = atoms.copy()
    zero_d.info["scalar_array"] = np.array(True)
    pbc_in_info = atoms.copy()
    pbc_in_info.info.update(a=1.0, pbc="stale", b=2.0)  # ASE writes the real pbc in its place
    frames = [with_calc, fixed, other_constraint, voigt, with_none, zero_d, pbc_in_info]
    assert wflp_text(frames) == ase_text(frames)


def test_common_frames_take_the_fast_path(monkeypatch):
    def refuse(atoms):
        raise AssertionError("handed to ASE")

    monkeypatch.setattr(extxyz, "_format_with_ase", refuse)
    atoms = Atoms("Cu4", positions=np.arange(12.0).reshape(4, 3), cell=[4, 4, 4], pbc=True)
    atoms.info.update(EMT_energy=-0.1, EMT_stress=np.arange(6.0), config_type="bulk")
    atoms.arrays["EMT_forces"] = np.ones((4, 3))
    text = "".join(frame_texts([atoms, atoms]))
    assert text == ase_text([atoms, atoms])


def test_layout_changes_between_frames_are_followed():
    a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]])
    b = a.copy()
    b.arrays["vec"] = np.zeros((2, 3))
    c = a.copy()
    c.arrays["vec"] = np.zeros((2, 3), dtype=int)
    frames = [a, b, c, a, b]
    text = wflp_text(frames)
    assert text == ase_text(frames)
    back = ase.io.read(io.StringIO(text), ":", format="extxyz")
    assert "vec" not in back[0].arrays and back[1].arrays["vec"].dtype.kind == "f"


@pytest.mark.parametrize("natoms", [1, 4, 32])
def test_written_frames_read_back_equal(natoms):
    rng = np.random.default_rng(natoms)
    atoms = Atoms(["Cu"] * natoms, positions=rng.normal(size=(natoms, 3)), cell=[9, 9, 9],
                  pbc=True)
    atoms.info["E"] = -1.25
    atoms.arrays["F"] = rng.normal(size=(natoms, 3))
    back = ase.io.read(io.StringIO(wflp_text([atoms])), format="extxyz")
    assert back.info["E"] == -1.25
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-8)
    np.testing.assert_allclose(back.arrays["F"], atoms.arrays["F"], atol=1e-8)
