"""The second round of generators: normal modes, supercells, atoms and dimers, minima hopping.

Each is checked for its physics or contents, and for the engine's contract: serial and
two-process runs write the same bytes, a rerun reuses the output without computing, and
a changed parameter is refused (RecordMismatchError) unless overwrite=True, which
recomputes.
"""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.data import covalent_radii
from ase.optimize import BFGS
from wflp import OutputSpec
from wflp.errors import ParameterError
from wflp.ops import (
    atoms_and_dimers,
    minima_hopping,
    normal_modes,
    sample_normal_modes,
    supercells,
)
from wflp.ops.normal_modes import eigenvector_key, rigid_body_mode_count
from wflp.records import read_record, record_path
from wflp.testing import check_engine_contract

# -- normal modes ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def relaxed_water():
    atoms = molecule("H2O")
    atoms.calc = EMT()
    BFGS(atoms, logfile=None).run(fmax=1e-5, steps=1000)
    atoms.calc = None
    return atoms


def test_normal_modes_match_ase_vibrations_and_have_six_zero_modes(relaxed_water, tmp_path):
    from ase.vibrations import Vibrations

    [out] = list(normal_modes([relaxed_water], OutputSpec(), calculator=EMT()))
    freqs = out.info["nm_frequencies"]
    assert freqs.shape == (9,)

    direct = relaxed_water.copy()
    direct.calc = EMT()
    vib = Vibrations(direct, name=str(tmp_path / "vib"))
    vib.run()
    energies, cartesian = vib.get_vibrations().get_energies_and_modes()
    expected = np.where(energies.imag != 0, -np.abs(energies.imag), energies.real)
    np.testing.assert_allclose(freqs, expected, atol=1e-10)

    # six rigid-body modes near zero, three real vibrations well above them
    assert rigid_body_mode_count(out) == 6
    order = np.argsort(np.abs(freqs))
    assert np.all(np.abs(freqs[order[:6]]) < 0.01)
    assert np.all(freqs[order[6:]] > 0.02)
    # orthonormal mass-weighted eigenvectors; Cartesian modes as ASE's
    vectors = np.array([out.arrays[eigenvector_key("nm_", k)].ravel() for k in range(9)])
    np.testing.assert_allclose(vectors @ vectors.T, np.eye(9), atol=1e-10)
    sqrt_mass = np.sqrt(out.get_masses())[None, :, None]
    np.testing.assert_allclose(vectors.reshape(9, 3, 3) / sqrt_mass, cartesian, atol=1e-10)


def test_sampled_energy_is_the_classical_harmonic_average(relaxed_water):
    """The EMT energy of the displaced molecules averages (3N-6) kT/2 above the minimum:
    the displacements follow the Boltzmann distribution of the modes. EMT's water bend
    (24 meV) is strongly anharmonic, so all modes are checked at 1 K, and the two stiff
    stretches alone at 300 K."""
    modes = normal_modes([relaxed_water], OutputSpec(), calculator=EMT())
    calc = EMT()
    e0 = calc.get_potential_energy(relaxed_water.copy())
    for temperature, chosen, n_modes in ((1.0, None, 3), (300.0, [7, 8], 2)):
        samples = list(sample_normal_modes(modes, OutputSpec(), temperature_K=temperature,
                                           n_samples=500, seed=3, modes=chosen))
        assert len(samples) == 500
        assert [s.info["nm_sample"] for s in samples[:3]] == [0, 1, 2]
        assert not any(k.startswith("nm_eigen") for k in samples[0].arrays)
        expected = n_modes * units.kB * temperature / 2
        harmonic = np.array([s.info["nm_harmonic_energy"] for s in samples])
        actual = np.array([calc.get_potential_energy(s) - e0 for s in samples])
        # the mean of 500 draws of kT/2 * chi2(n) has a relative spread of 0.04-0.045
        assert abs(harmonic.mean() / expected - 1) < 0.15
        assert abs(actual.mean() / expected - 1) < 0.15
        # the potential's energy follows the harmonic estimate sample by sample
        assert np.corrcoef(actual, harmonic)[0, 1] > 0.95
    # no rigid-body motion: the centre of mass stays
    com0 = relaxed_water.get_center_of_mass()
    assert max(np.linalg.norm(s.get_center_of_mass() - com0) for s in samples) < 1e-6


def test_sampling_is_seeded_and_refuses_non_minima(relaxed_water):
    modes = list(normal_modes([relaxed_water], OutputSpec(), calculator=EMT()))
    a = list(sample_normal_modes(modes, OutputSpec(), 100.0, 3, seed=1))
    b = list(sample_normal_modes(modes, OutputSpec(), 100.0, 3, seed=1))
    c = list(sample_normal_modes(modes, OutputSpec(), 100.0, 3, seed=2))
    assert np.array_equal(a[2].positions, b[2].positions)
    assert not np.allclose(a[2].positions, c[2].positions)
    with pytest.raises(ParameterError, match="pass seed="):
        sample_normal_modes(modes, OutputSpec(), 100.0, 3)
    with pytest.raises(Exception, match="no info\\['nm_frequencies'\\]"):
        list(sample_normal_modes([relaxed_water], OutputSpec(), 100.0, 3, seed=1))
    # CH4 is unstable with EMT: its imaginary modes fail the item with advice
    ch4 = list(normal_modes([molecule("CH4")], OutputSpec(), calculator=EMT()))
    with pytest.raises(Exception, match="not a minimum"):
        list(sample_normal_modes(ch4, OutputSpec(), 100.0, 3, seed=1))


@pytest.mark.parametrize("kwargs, message", [
    ({"delta": 0}, "delta must be"), ({"nfree": 3}, "nfree must be 2"),
    ({"prefix": "a b"}, "prefix must be"),
])
def test_normal_modes_bad_parameters(relaxed_water, kwargs, message):
    with pytest.raises(ParameterError, match=message):
        normal_modes([relaxed_water], OutputSpec(), calculator=EMT(), **kwargs)


def test_normal_modes_engine_contract(relaxed_water, tmp_path):
    import ase.vibrations

    inputs = [relaxed_water, molecule("H2O"), molecule("NH3")]
    (tmp_path / "modes").mkdir()
    out = check_engine_contract(normal_modes, inputs, tmp_path / "modes",
                                dict(calculator=EMT()), ("delta", 0.02),
                                forbid=(ase.vibrations.Vibrations, "run"))
    assert len(out) == 3 and len(out[2].info["nm_frequencies"]) == 12
    (tmp_path / "samples").mkdir()
    samples = check_engine_contract(sample_normal_modes, out[:2], tmp_path / "samples",
                                    dict(temperature_K=200.0, n_samples=4, seed=5, modes=[7, 8]),
                                    ("temperature_K", 300.0))
    assert [s.info["nm_sample"] for s in samples] == [0, 1, 2, 3] * 2
    rec = read_record(record_path(tmp_path / "samples" / "serial.xyz"))
    assert rec.name == "sample_normal_modes"


# -- supercells --------------------------------------------------------------------------------

def test_supercells_by_number_diagonal_and_matrix():
    prim = bulk("Cu", "fcc", a=3.6)
    prim.info["config_type"] = "bulk"
    calc = EMT()
    e_prim = calc.get_potential_energy(prim.copy())
    cubic_p = [[-1, 1, 1], [1, -1, 1], [1, 1, -1]]
    out = list(supercells([prim], OutputSpec(), matrix=cubic_p))
    [cubic] = out
    assert len(cubic) == 4
    np.testing.assert_allclose(cubic.cell.cellpar(), [3.6, 3.6, 3.6, 90, 90, 90], atol=1e-9)
    assert np.array_equal(cubic.info["supercell_matrix"], cubic_p)
    assert cubic.info["config_type"] == "bulk"
    assert abs(calc.get_potential_energy(cubic) - 4 * e_prim) < 1e-8
    for matrix, count in ((2, 8), ((1, 2, 3), 6)):
        [cell] = list(supercells([prim], OutputSpec(), matrix=matrix))
        assert len(cell) == count
        assert abs(cell.get_volume() - count * prim.get_volume()) < 1e-8
        assert abs(calc.get_potential_energy(cell) - count * e_prim) < 1e-8
    [rect] = list(supercells([bulk("Cu", cubic=True)], OutputSpec(), matrix=(1, 2, 3)))
    np.testing.assert_allclose(rect.cell.lengths(), 3.61 * np.array([1, 2, 3]))


@pytest.mark.parametrize("matrix", [0, (1, 2), [[1, 0, 0], [0, 1, 0], [0, 0, -1]],
                                    (1.5, 1, 1), True, "2"])
def test_supercells_bad_matrix(matrix):
    with pytest.raises(ParameterError, match="matrix must be"):
        supercells([bulk("Cu")], OutputSpec(), matrix=matrix)


def test_supercells_of_a_molecule_fail_naming_the_cell():
    with pytest.raises(Exception, match="no full 3D cell"):
        supercells([molecule("H2O")], OutputSpec(), matrix=2)


def test_supercells_engine_contract(tmp_path):
    inputs = [bulk("Cu", "fcc", a=a) for a in (3.5, 3.6, 3.7)]
    out = check_engine_contract(supercells, inputs, tmp_path, dict(matrix=(2, 1, 1)),
                                ("matrix", 2))
    assert [len(a) for a in out] == [2, 2, 2]


# -- atoms and dimers --------------------------------------------------------------------------

def test_atoms_and_dimers_contents():
    out = list(atoms_and_dimers([molecule("H2O")], OutputSpec(), dimer_n_steps=5,
                                dimer_factor_range=(0.5, 2.0), box=15.0))
    kinds = [(a.info["config_type"], a.get_chemical_formula()) for a in out]
    assert kinds[:2] == [("isolated_atom", "H"), ("isolated_atom", "O")]
    assert [k[1] for k in kinds[2:]] == ["H2"] * 5 + ["HO"] * 5 + ["O2"] * 5
    assert all(k[0] == "dimer" for k in kinds[2:])
    assert [a.info["multiplicity"] for a in out[:2]] == [2, 3]
    h_o = out[7:12]
    bond = covalent_radii[1] + covalent_radii[8]
    distances = [a.get_distance(0, 1) for a in h_o]
    np.testing.assert_allclose(distances, np.linspace(0.5 * bond, 2.0 * bond, 5))
    np.testing.assert_allclose([a.info["dimer_distance"] for a in h_o], distances)
    assert [a.get_chemical_symbols() for a in h_o[:1]] == [["H", "O"]]
    np.testing.assert_allclose(h_o[0].get_initial_magnetic_moments(), [1.0, 2.0])
    for a in out:
        assert np.allclose(a.cell.lengths(), 15.0) and not a.pbc.any()
        assert np.allclose(a.positions.mean(axis=0), 7.5)
    # EMT's dimer curves are repulsive at short distances
    calc = EMT()
    energies = [calc.get_potential_energy(a) for a in out[2:7]]
    assert energies[0] > energies[1] > energies[2]


def test_atoms_and_dimers_given_elements_bond_lengths_and_no_atoms():
    out = list(atoms_and_dimers(None, OutputSpec(), elements=["Cu", "C"], isolated_atoms=False,
                                bond_lengths={"Cu": 2.5, "C": 1.5}, dimer_n_steps=3,
                                dimer_factor_range=(1.0, 2.0)))
    assert [a.get_chemical_formula() for a in out] == ["C2"] * 3 + ["CCu"] * 3 + ["Cu2"] * 3
    np.testing.assert_allclose([a.info["dimer_distance"] for a in out],
                               [1.5, 2.25, 3.0, 2.0, 3.0, 4.0, 2.5, 3.75, 5.0])


@pytest.mark.parametrize("kwargs, message", [
    ({"elements": ["H", "Qq"]}, "'Qq' is not a chemical element"),
    ({"elements": ["H"], "dimer_factor_range": (2.0, 1.0)}, "dimer_factor_range must be"),
    ({"elements": ["H"], "dimer_n_steps": 1}, "dimer_n_steps must be"),
    ({"elements": ["H"], "bond_lengths": {"H": -1}}, "bond_lengths['H'] must be > 0"),
    ({}, "give inputs"),
])
def test_atoms_and_dimers_bad_values(kwargs, message):
    with pytest.raises(ParameterError) as err:
        atoms_and_dimers(None, OutputSpec(), **kwargs)
    assert message in str(err.value)


def test_atoms_and_dimers_engine_contract(tmp_path):
    out = check_engine_contract(atoms_and_dimers, None, tmp_path,
                                dict(elements=["H", "C", "O"], dimer_n_steps=4), ("box", 12.0))
    assert len(out) == 3 + 6 * 4
    assert read_record(record_path(tmp_path / "serial.xyz")).parameters["elements"] == \
        ["H", "C", "O"]


# -- minima hopping ----------------------------------------------------------------------------

def cu_cluster(seed: int, n: int = 4):
    """A random compact Cu cluster in a vacuum box."""
    rng = np.random.default_rng(seed)
    atoms = Atoms(f"Cu{n}", positions=rng.normal(size=(n, 3)) * 1.1)
    atoms.center(vacuum=6.0)
    return atoms


MH = dict(calculator=EMT(), totalsteps=3, T0=2000.0, Ediff0=2.0, seed=4)


def test_minima_hopping_visits_minima_in_order(tmp_path):
    out_file = tmp_path / "mh.xyz"
    minima = list(minima_hopping([cu_cluster(0)], OutputSpec(out_file), **MH))
    assert [m.info["mh_hop"] for m in minima] == [0, 1, 2]
    assert minima[0].info["mh_outcome"] == "accepted"
    assert all(m.info["mh_outcome"] in ("accepted", "rejected", "refound_last",
                                        "previously_found") for m in minima)
    calc = EMT()
    for m in minima:
        # each is a local minimum of EMT with the stored energy
        assert abs(calc.get_potential_energy(m) - m.info["mh_energy"]) < 1e-8
        assert np.abs(calc.get_forces(m)).max() < 0.05 * 1.01
    # the initial optimisation relaxed the random cluster: its energy went down
    start = cu_cluster(0)
    assert minima[0].info["mh_energy"] < calc.get_potential_energy(start)
    # the run folders are removed after success
    assert not (tmp_path / "mh.xyz.rundirs").exists()


def test_minima_hopping_in_memory_leaves_no_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    minima = list(minima_hopping([cu_cluster(0)], OutputSpec(), **{**MH, "totalsteps": 1}))
    assert [m.info["mh_hop"] for m in minima] == [0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # several searches: about 5 s on an idle machine
def test_minima_hopping_resumes_from_its_run_folder(tmp_path):
    """A search of 2 steps, continued to 3 in the same folder (as after a kill), does not
    redo the first two steps and reaches the minima of an uninterrupted 3-step search."""
    kw = {**MH, "keep_files": True}
    first = tmp_path / "mh.xyz"
    minima_hopping([cu_cluster(1)], OutputSpec(first), **{**kw, "totalsteps": 2})
    folder = tmp_path / "mh.xyz.rundirs" / "minima_hopping-000000"
    qn0 = (folder / "qn00000.traj").stat().st_mtime_ns
    resumed = list(minima_hopping([cu_cluster(1)], OutputSpec(first, overwrite=True), **kw))
    assert (folder / "qn00000.traj").stat().st_mtime_ns == qn0
    assert "Attempting to resume stopped run" in (folder / "hop.log").read_text()
    fresh = list(minima_hopping([cu_cluster(1)], OutputSpec(tmp_path / "fresh.xyz"), **kw))
    assert len(resumed) == len(fresh) == 3
    for a, b in zip(resumed, fresh):
        assert abs(a.info["mh_energy"] - b.info["mh_energy"]) < 1e-3
    np.testing.assert_array_equal(resumed[1].positions, fresh[1].positions)
    # a different seed does not resume: the folder is emptied and the search redone
    other = list(minima_hopping([cu_cluster(1)], OutputSpec(tmp_path / "other.xyz"),
                                **{**kw, "seed": 5, "workdir": str(tmp_path / "mh.xyz.rundirs")}))
    assert "Attempting to resume" not in (folder / "hop.log").read_text()
    assert len(other) == 3


def test_minima_hopping_needs_a_seed_and_sane_values():
    with pytest.raises(ParameterError, match="pass seed="):
        minima_hopping([cu_cluster(0)], OutputSpec(), calculator=EMT())
    with pytest.raises(ParameterError, match="totalsteps must be a whole number"):
        minima_hopping([cu_cluster(0)], OutputSpec(), calculator=EMT(), totalsteps=0, seed=1)
    with pytest.raises(ParameterError, match="fmax must be > 0"):
        minima_hopping([cu_cluster(0)], OutputSpec(), calculator=EMT(), fmax=-1, seed=1)


@pytest.mark.slow  # several searches: about 5 s on an idle machine
def test_minima_hopping_engine_contract(tmp_path):
    from ase.optimize.minimahopping import MinimaHopping

    out = check_engine_contract(minima_hopping, [cu_cluster(2), cu_cluster(3)], tmp_path,
                                {**MH, "totalsteps": 2}, ("T0", 1500.0),
                                forbid=(MinimaHopping, "__call__"))
    assert [m.info["mh_hop"] for m in out] == [0, 1, 0, 1]


KILL_SCRIPT = """
import os
import sys
import time
import numpy as np
from ase import Atoms
from ase.calculators.emt import EMT
from ase.io import Trajectory
from wflp import OutputSpec
from wflp.ops import minima_hopping

if len(sys.argv) > 3:
    # held: once the third step's trajectory holds a frame, stop for good inside a force
    # call, where no file is half written, and say so in the file sys.argv[3]. (Killed
    # at a random moment, a step's trajectory may be cut short, and the search then
    # rightly starts again.) EMT is patched here, outside anything the record describes,
    # so the held run and the rerun are the same computation.
    step = os.path.join(sys.argv[1] + ".rundirs", "minima_hopping-000000", "qn00002.traj")
    calculate = EMT.calculate

    def held_calculate(self, *args, **kwargs):
        if os.path.exists(step):
            try:
                with Trajectory(step) as traj:
                    framed = len(traj) > 0
            except Exception:
                framed = False
            if framed:
                open(sys.argv[3], "w").close()
                while True:
                    time.sleep(1)
        calculate(self, *args, **kwargs)

    EMT.calculate = held_calculate

rng = np.random.default_rng(1)
cluster = Atoms("Cu4", positions=rng.normal(size=(4, 3)) * 1.1)
cluster.center(vacuum=6.0)
minima_hopping([cluster], OutputSpec(sys.argv[1]), calculator="emt", totalsteps=int(sys.argv[2]),
               T0=2000.0, Ediff0=2.0, seed=4, keep_files=True)
"""


def _has_a_frame(path) -> bool:
    """The step's trajectory holds a frame (a kill before that is the cut-short case,
    which restarts the search: see minima_hopping._trajectories_readable)."""
    from ase.io import Trajectory

    try:
        with Trajectory(str(path)) as traj:
            return len(traj) > 0
    except Exception:
        return False


@pytest.mark.slow
def test_minima_hopping_resumes_after_kill_9(tmp_path):
    """A search killed (SIGKILL) inside its third step, between two of the step's frames,
    resumes from its run folder when run again: the steps done before the kill are not
    redone (their files are untouched), and the output holds every step, each a local
    minimum."""
    import os
    import signal
    import subprocess
    import sys

    from wflp.testing import scaled, wait_until

    script = tmp_path / "mh.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "mh.xyz"
    folder = tmp_path / "mh.xyz.rundirs" / "minima_hopping-000000"
    held = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, str(script), str(out), "6", str(held)],
                            cwd=tmp_path)
    try:
        wait_until(lambda: held.exists() or proc.poll() is not None, timeout=120.0,
                   what="the third step of the search")
        assert proc.poll() is None, "the search ended before its third step"
        assert _has_a_frame(folder / "qn00002.traj")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    done = {p.name: p.stat().st_mtime_ns for p in folder.glob("qn0000[01].traj")}
    assert len(done) == 2
    subprocess.run([sys.executable, str(script), str(out), "6"], cwd=tmp_path, check=True,
                   timeout=scaled(300.0))
    assert {name: (folder / name).stat().st_mtime_ns for name in done} == done
    assert "Attempting to resume stopped run" in (folder / "hop.log").read_text()
    minima = ase.io.read(out, ":")
    assert [m.info["mh_hop"] for m in minima] == list(range(6))
    calc = EMT()
    for m in minima:
        assert np.abs(calc.get_forces(m)).max() < 0.05 * 1.01
