"""The phonopy plugin: Si (Tersoff) phonons through wflp match phonopy run directly; the
displacement sets travel through files and calculate; serial == two processes; reuse
and parameter changes follow the records."""

from __future__ import annotations

import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.tersoff import Tersoff, TersoffParameters
from wflp.testing import check_engine_contract, require_module

require_module("phonopy", "pip install phonopy (or pip install -e 'plugins/wflp-phonopy[test]')")

from wflp import OutputSpec  # noqa: E402
from wflp.errors import ParameterError  # noqa: E402
from wflp.ops import calculate  # noqa: E402
from wflp.plugins import get_generator  # noqa: E402

# Tersoff, Phys. Rev. B 37, 6991 (1988), as in ASE's own Tersoff tests
SI = {("Si", "Si", "Si"): TersoffParameters(
    A=3264.7, B=95.373, lambda1=3.2394, lambda2=1.3258, lambda3=1.3258, beta=0.33675,
    gamma=1.0, m=3.0, n=22.956, c=4.8381, d=2.0417, h=0.0, R=3.0, D=0.2)}
QPOINTS = [[0, 0, 0], [0.5, 0, 0.5], [0.5, 0.5, 0.5]]


def ops():
    return (get_generator("phonon_displacements").load(),
            get_generator("phonon_frequencies").load())


def silicon(a=5.432):
    return bulk("Si", "diamond", a=a)


def test_registered_without_importing_phonopy():
    code = ("import sys; from wflp.plugins import get_generator; "
            "get_generator('phonon_displacements'); get_generator('phonon_frequencies'); "
            "print('phonopy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_si_phonons_match_phonopy_run_directly(tmp_path):
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    displacements, frequencies = ops()
    displaced = displacements([silicon()], OutputSpec(tmp_path / "disp.xyz"),
                              supercell_matrix=2)
    cells = list(displaced)
    assert len(cells) == 1 and len(cells[0]) == 16  # one symmetry-inequivalent displacement
    assert cells[0].info["phonopy_n_displacements"] == 1
    calculated = calculate(displaced, OutputSpec(tmp_path / "calc.xyz"), calculator=Tersoff(SI),
                           prefix="tersoff_")
    [result] = list(frequencies(calculated, OutputSpec(tmp_path / "phonons.xyz"),
                                qpoints=QPOINTS))
    freqs = result.info["phonon_frequencies_THz"]
    assert freqs.shape == (3, 6)
    # three acoustic modes vanish at Gamma; the optical ones near Tersoff's 16.6 THz
    assert np.all(np.abs(freqs[0, :3]) < 1e-3)
    assert np.all((freqs[0, 3:] > 14) & (freqs[0, 3:] < 18))
    assert np.all(freqs[1:] > 1.0) and np.all(freqs < 18)
    assert result.info["phonon_force_constants"].shape == (2, 16, 3, 3)
    assert np.allclose(result.cell, silicon().cell)

    # phonopy by hand, with the same displacement and Tersoff
    unit = silicon()
    phonon = Phonopy(PhonopyAtoms(symbols=unit.get_chemical_symbols(), cell=unit.cell[:],
                                  scaled_positions=unit.get_scaled_positions(),
                                  masses=unit.get_masses()),  # ASE's masses, as wflp
                     supercell_matrix=np.eye(3, dtype=int) * 2)
    phonon.generate_displacements(distance=0.01)
    forces = []
    for sc in phonon.supercells_with_displacements:
        atoms = ase_atoms(sc)
        atoms.calc = Tersoff(SI)
        forces.append(atoms.get_forces())
    phonon.forces = forces
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    phonon.run_qpoints(QPOINTS)
    direct = phonon.qpoints.frequencies
    # compact and full force constants are symmetrized slightly differently: 2e-7 relative
    np.testing.assert_allclose(freqs, direct, rtol=1e-6, atol=1e-5)


def test_band_structure_along_a_path_meets_the_qpoints(tmp_path):
    displacements, frequencies = ops()
    calculated = calculate(displacements([silicon()], OutputSpec(), supercell_matrix=2),
                           OutputSpec(), calculator=Tersoff(SI))
    gamma_x_l = [[0, 0, 0], [0.5, 0, 0.5]], [[0, 0, 0], [0.5, 0.5, 0.5]]
    [si] = list(frequencies(calculated, OutputSpec(tmp_path / "bands.xyz"), qpoints=QPOINTS,
                            band_path=[gamma_x_l[0], gamma_x_l[1]], band_npoints=11))
    bands = si.info["phonon_band_frequencies_THz"]
    assert bands.shape == (22, 6) and si.info["phonon_band_qpoints"].shape == (22, 3)
    np.testing.assert_allclose(si.info["phonon_band_qpoints"][[0, 10, 21]],
                               [[0, 0, 0], [0.5, 0, 0.5], [0.5, 0.5, 0.5]], atol=1e-12)
    points = si.info["phonon_frequencies_THz"]
    np.testing.assert_allclose(bands[[0, 10, 21]], points, atol=1e-6)
    assert np.all(np.diff(si.info["phonon_band_distances"][:11]) > 0)
    # the acoustic branches rise from zero along Gamma-X
    assert np.all(np.diff(bands[:11, 0]) > 0)
    [back] = ase.io.read(tmp_path / "bands.xyz", ":")
    np.testing.assert_allclose(back.info["phonon_band_frequencies_THz"], bands)
    with pytest.raises(ParameterError, match="band_path must be"):
        frequencies(calculated, OutputSpec(), band_path=[[[0, 0, 0]]])
    with pytest.raises(ParameterError, match="give qpoints"):
        frequencies(calculated, OutputSpec())


def ase_atoms(cell):
    from ase import Atoms

    return Atoms(numbers=cell.numbers, cell=cell.cell, scaled_positions=cell.scaled_positions,
                 pbc=True)


def test_sets_are_kept_apart_and_must_be_complete(tmp_path):
    displacements, frequencies = ops()
    # fcc Cu with EMT (two sets of different cells in one file)
    from ase.calculators.emt import EMT

    disp = list(displacements([bulk("Cu", a=3.6), bulk("Cu", a=3.7)], OutputSpec(),
                              supercell_matrix=(2, 2, 2)))
    assert len({a.info["phonopy_id"] for a in disp}) == 2
    calc = list(calculate(disp, OutputSpec(tmp_path / "c.xyz"), calculator=EMT()))
    out = list(frequencies(calc, OutputSpec(), qpoints=[[0, 0, 0], [0.5, 0.5, 0]]))
    assert len(out) == 2
    # the compressed cell is stiffer
    assert out[0].info["phonon_frequencies_THz"][1].max() > \
        out[1].info["phonon_frequencies_THz"][1].max()
    with pytest.raises(ParameterError, match="forces_key"):
        frequencies(disp, OutputSpec(), qpoints=[[0, 0, 0]])
    incomplete = [a for a in ase.io.read(tmp_path / "c.xyz", ":")
                  if a.info["phonopy_displacement"] != 0]
    if incomplete:  # only when symmetry needs more than one displacement
        with pytest.raises(ParameterError, match="lacks displacement"):
            frequencies(incomplete, OutputSpec(), qpoints=[[0, 0, 0]])
    with pytest.raises(ParameterError, match="qpoints must be"):
        frequencies(calc, OutputSpec(), qpoints=[0, 0, 0])
    with pytest.raises(ParameterError, match="supercell_matrix"):
        displacements([bulk("Cu")], OutputSpec(), supercell_matrix=(2, 2))


@pytest.mark.slow  # fresh worker pools import phonopy: 5-9 s each
@pytest.mark.parametrize("which", ["displacements", "frequencies"])
def test_serial_parallel_reuse_and_changed_parameters(tmp_path, which):
    from phonopy import Phonopy

    displacements, frequencies = ops()
    cells = [silicon(5.40), silicon(5.432), silicon(5.46)]
    if which == "displacements":
        op, inputs, kw, changed = displacements, cells, dict(supercell_matrix=2), \
            ("distance", 0.02)
        forbid = "generate_displacements"
    else:
        disp = displacements(cells, OutputSpec(), supercell_matrix=2)
        inputs = list(calculate(disp, OutputSpec(), calculator=Tersoff(SI), prefix="t_"))
        op, kw, changed = frequencies, dict(qpoints=QPOINTS), ("qpoints", [[0, 0, 0]])
        forbid = "produce_force_constants"
    check_engine_contract(op, inputs, tmp_path, kw, changed, forbid=(Phonopy, forbid))
