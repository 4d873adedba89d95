"""Phonons by finite displacements with phonopy: out to the displaced supercells, and back.

``phonon_displacements(inputs, outputs, supercell_matrix, distance=0.01, ...)`` makes,
for each input (a unit cell), phonopy's symmetry-reduced set of displaced supercells.
Each carries in info:

- ``phonopy_id``: 16 hex digits naming the input's displacement set (configurations of
  one input share it);
- ``phonopy_displacement``: its position in the set (0 ... n-1) and
  ``phonopy_n_displacements``: n;
- ``phonopy_dataset``: what the way back needs, whatever happens to the other members
  of the set: the unit cell (numbers, cell, scaled positions, masses), the supercell
  matrix, symprec, and phonopy's displacement dataset (which atom, by how much).

Calculate them with any calculator (wflp's ``calculate``), then
``phonon_frequencies(inputs, outputs, qpoints=[[0, 0, 0], ...], forces_key=None)``
groups the calculated supercells by ``phonopy_id`` (every member of a set must be
there), builds the force constants and writes one configuration per set: its unit cell
with ``info["phonon_qpoints"]`` (reduced coordinates of the unit cell's reciprocal
lattice), ``info["phonon_frequencies_THz"]`` ([q][band], imaginary as negative), with
``band_path=[[q0, q1, ...], ...]`` (paths through q-points, ``band_npoints`` per
segment, 51) a band structure in ``info["phonon_band_qpoints"]``,
``info["phonon_band_distances"]`` (along the path, 1/A) and
``info["phonon_band_frequencies_THz"]``, and ``info["phonon_force_constants"]``
(phonopy's compact form, eV/A^2, [unit-cell atom][supercell atom][3][3]).
``forces_key`` is the arrays key of the forces (default: the one key ending in
"forces", e.g. calculate's "emt_forces"). The force constants are symmetrized
(translational invariance) unless ``symmetrize=False``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, Optional

import numpy as np
from ase import Atoms
from wflp import operation
from wflp.engine.operation import Operation
from wflp.errors import ParameterError

PREFIX = "phonopy_"


def _matrix(value: Any) -> list[list[int]]:
    from wflp.ops.supercells import supercell_matrix

    return supercell_matrix(value, where="phonon_displacements: supercell_matrix").tolist()


def _check_displacements(params: dict, seed: Optional[int]) -> None:
    _matrix(params["supercell_matrix"])
    distance = params["distance"]
    if isinstance(distance, bool) or not isinstance(distance, Real) or not 0 < distance < 0.5:
        raise ParameterError(f"phonon_displacements: distance must be the displacement in "
                             f"Angstrom, 0 < distance < 0.5 (typically 0.01), got {distance!r}")
    symprec = params["symprec"]
    if isinstance(symprec, bool) or not isinstance(symprec, Real) or not symprec > 0:
        raise ParameterError(f"phonon_displacements: symprec must be > 0, got {symprec!r}")
    if params["plus_minus"] not in ("auto", True, False):
        raise ParameterError(f"phonon_displacements: plus_minus must be 'auto', true or false, "
                             f"got {params['plus_minus']!r}")


def _phonopy(unitcell: dict, supercell_matrix: Any, symprec: float) -> Any:
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    cell = PhonopyAtoms(numbers=unitcell["numbers"], cell=unitcell["cell"],
                        scaled_positions=unitcell["scaled_positions"],
                        masses=unitcell["masses"])
    extra = {}
    if "lang" in inspect.signature(Phonopy).parameters:
        # phonopy >= 4 runs q-points in Rust (phonors) by default, whose thread pool does
        # not survive a fork: a worker forked after the caller had used it hangs. The C
        # backend's OpenMP follows the thread limits wflp gives its workers.
        extra["lang"] = "C"
    return Phonopy(cell, supercell_matrix=supercell_matrix, symprec=symprec, **extra)


@operation("phonon_displacements", version="1", check=_check_displacements)
def phonon_displacements(atoms: Atoms, supercell_matrix: Any, distance: float = 0.01,
                         symprec: float = 1e-5, plus_minus: Any = "auto") -> list[Atoms]:
    """phonopy's displaced supercells of each input unit cell (see the module docstring).

    supercell_matrix: n, (n1, n2, n3) or 3 x 3 integers. distance: in Angstrom.
    plus_minus: phonopy's is_plusminus ('auto': both signs only where symmetry needs them).
    """
    if not isinstance(atoms, Atoms) or len(atoms) == 0 or atoms.cell.rank < 3:
        raise ValueError("phonon_displacements takes periodic unit cells with atoms and a "
                         "full 3D cell")
    matrix = _matrix(supercell_matrix)
    unitcell = {"numbers": atoms.numbers.tolist(), "cell": atoms.cell.array.tolist(),
                "scaled_positions": atoms.get_scaled_positions(wrap=False).tolist(),
                "masses": atoms.get_masses().tolist()}
    phonon = _phonopy(unitcell, matrix, float(symprec))
    phonon.generate_displacements(distance=float(distance), is_plusminus=plus_minus)
    first_atoms = [{"number": int(d["number"]),
                    "displacement": [float(x) for x in d["displacement"]]}
                   for d in phonon.dataset["first_atoms"]]
    dataset = {"unitcell": unitcell, "supercell_matrix": matrix, "symprec": float(symprec),
               "natom": int(phonon.dataset["natom"]), "first_atoms": first_atoms}
    ident = hashlib.sha256(json.dumps(dataset, sort_keys=True).encode()).hexdigest()[:16]
    out = []
    for k, cell in enumerate(phonon.supercells_with_displacements):
        supercell = Atoms(numbers=cell.numbers, cell=cell.cell,
                          scaled_positions=cell.scaled_positions, masses=cell.masses,
                          pbc=True)
        supercell.info.update({f"{PREFIX}id": ident, f"{PREFIX}displacement": k,
                               f"{PREFIX}n_displacements": len(first_atoms),
                               f"{PREFIX}dataset": dataset})
        for key in ("config_type",):
            if key in atoms.info:
                supercell.info[key] = atoms.info[key]
        out.append(supercell)
    return out


def _qpoints(value: Any) -> np.ndarray:
    try:
        q = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        q = None
    if q is None or q.ndim != 2 or q.shape[1] != 3 or len(q) == 0 or \
            not np.all(np.isfinite(q)):
        raise ParameterError(f"phonon_frequencies: qpoints must be a list of q-points in "
                             f"reduced coordinates, e.g. [[0, 0, 0], [0.5, 0, 0.5]], got "
                             f"{value!r}")
    return q


def _band_path(value: Any) -> list[np.ndarray]:
    """[path][corner][3]: each path at least two q-points (reduced coordinates)."""
    bad = ParameterError(
        f"phonon_frequencies: band_path must be a list of paths, each a list of at least two "
        f"q-points in reduced coordinates, e.g. [[[0, 0, 0], [0.5, 0, 0.5]]], got {value!r}")
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise bad
    paths = []
    for path in value:
        try:
            corners = np.asarray(path, dtype=float)
        except (TypeError, ValueError):
            raise bad from None
        if corners.ndim != 2 or corners.shape[1] != 3 or len(corners) < 2 or \
                not np.all(np.isfinite(corners)):
            raise bad
        paths.append(corners)
    return paths


def _check_frequencies(params: dict, seed: Optional[int]) -> None:
    if params["qpoints"] is None and params["band_path"] is None:
        raise ParameterError("phonon_frequencies: give qpoints=[[0, 0, 0], ...] and/or "
                             "band_path=[[[0, 0, 0], [0.5, 0, 0.5], ...]]")
    if params["qpoints"] is not None:
        _qpoints(params["qpoints"])
    if params["band_path"] is not None:
        _band_path(params["band_path"])
    npoints = params["band_npoints"]
    if isinstance(npoints, bool) or not isinstance(npoints, Integral) or npoints < 2:
        raise ParameterError(f"phonon_frequencies: band_npoints must be a whole number >= 2, "
                             f"got {npoints!r}")
    key = params["forces_key"]
    if key is not None and not isinstance(key, str):
        raise ParameterError(f"phonon_frequencies: forces_key must be an arrays key (e.g. "
                             f"'emt_forces') or None, got {key!r}")
    if not isinstance(params["symmetrize"], bool):
        raise ParameterError(f"phonon_frequencies: symmetrize must be true or false, got "
                             f"{params['symmetrize']!r}")


def frequencies_of_set(item: Atoms, qpoints: Optional[Sequence[Sequence[float]]] = None,
                       forces_key: Optional[str] = None, symmetrize: bool = True,
                       band_path: Optional[Sequence[Any]] = None,
                       band_npoints: int = 51) -> Atoms:
    """Force constants and frequencies of one displacement set (gathered by the caller)."""
    dataset = item.info[f"{PREFIX}dataset"]
    forces = np.asarray(item.info[f"{PREFIX}forces"], dtype=float)
    phonon = _phonopy(dataset["unitcell"], dataset["supercell_matrix"], dataset["symprec"])
    phonon.dataset = {"natom": dataset["natom"],
                      "first_atoms": [{"number": d["number"],
                                       "displacement": np.array(d["displacement"])}
                                      for d in dataset["first_atoms"]]}
    phonon.forces = forces
    phonon.produce_force_constants(calculate_full_force_constants=False)
    if symmetrize:
        phonon.symmetrize_force_constants()
    out = item.copy()
    out.info = {k: v for k, v in item.info.items() if k != f"{PREFIX}forces"}
    if qpoints is not None:
        q = _qpoints(qpoints)
        phonon.run_qpoints(q)
        result = getattr(phonon, "qpoints", None)
        if result is None or not hasattr(result, "frequencies"):  # phonopy < 2.26
            freqs = np.asarray(phonon.get_qpoints_dict()["frequencies"], dtype=float)
        else:
            freqs = np.asarray(result.frequencies, dtype=float)
        out.info["phonon_qpoints"] = q
        out.info["phonon_frequencies_THz"] = freqs
    if band_path is not None:
        from phonopy.phonon.band_structure import get_band_qpoints

        segments = get_band_qpoints(_band_path(band_path), npoints=int(band_npoints))
        phonon.run_band_structure(segments)
        band = phonon.band_structure
        out.info["phonon_band_qpoints"] = np.concatenate(band.qpoints)
        out.info["phonon_band_distances"] = np.concatenate(band.distances)
        out.info["phonon_band_frequencies_THz"] = np.concatenate(band.frequencies)
    out.info["phonon_force_constants"] = np.asarray(phonon.force_constants)
    return out


class PhononFrequencies(Operation):
    """phonon_frequencies: the items are the displacement sets gathered from the inputs."""

    def __call__(self, inputs: Any, outputs: Any, *args: Any, autopara_info: Any = None,
                 seed: int | None = None, **kwargs: Any) -> Any:
        from wflp import ConfigSet

        params = self.validate(args, kwargs, seed)
        if not isinstance(inputs, ConfigSet):
            inputs = ConfigSet(inputs)
        sets = gather_sets(inputs, params["forces_key"])
        return super().__call__(sets, outputs, autopara_info=autopara_info, **params)

    def __reduce__(self):
        return (_rebuild, (self.func, self.name, self.version, self.summary, self.check))


def _rebuild(func, name, version, summary, check):
    return PhononFrequencies(func, name, version=version, summary=summary, check=check)


def _forces_key(atoms: Atoms, forces_key: Optional[str]) -> str:
    if forces_key is not None:
        if forces_key not in atoms.arrays:
            raise ParameterError(f"phonon_frequencies: a displaced supercell has no "
                                 f"arrays[{forces_key!r}]; its arrays are "
                                 f"{sorted(atoms.arrays)}")
        return forces_key
    keys = sorted(k for k in atoms.arrays if k.endswith("forces"))
    if len(keys) != 1:
        raise ParameterError(
            "phonon_frequencies: cannot tell which arrays hold the forces "
            f"({keys or 'none ends in forces'}); calculate the displaced supercells "
            "(wflp calculate) and pass forces_key='<prefix>forces'")
    return keys[0]


def gather_sets(inputs: Any, forces_key: Optional[str]) -> list[Atoms]:
    """One unit cell per displacement set, with the set's forces in
    info["phonopy_forces"] (in displacement order); ParameterError if a set is
    incomplete or its members disagree."""
    sets: dict[str, dict] = {}
    for atoms in inputs:
        ident = atoms.info.get(f"{PREFIX}id")
        if ident is None:
            raise ParameterError("phonon_frequencies: an input has no info['phonopy_id']; "
                                 "the inputs must be phonon_displacements' supercells "
                                 "(calculated)")
        key = _forces_key(atoms, forces_key)
        entry = sets.setdefault(ident, {"dataset": atoms.info[f"{PREFIX}dataset"],
                                        "n": int(atoms.info[f"{PREFIX}n_displacements"]),
                                        "forces": {}})
        entry["forces"][int(atoms.info[f"{PREFIX}displacement"])] = \
            np.asarray(atoms.arrays[key], dtype=float)
    if not sets:
        raise ParameterError("phonon_frequencies: no inputs")
    out = []
    for ident, entry in sets.items():
        missing = sorted(set(range(entry["n"])) - set(entry["forces"]))
        if missing:
            raise ParameterError(f"phonon_frequencies: displacement set {ident} lacks "
                                 f"displacement(s) {missing} of {entry['n']}; give all the "
                                 "calculated supercells of each set")
        cell = entry["dataset"]["unitcell"]
        unit = Atoms(numbers=cell["numbers"], cell=cell["cell"],
                     scaled_positions=cell["scaled_positions"], masses=cell["masses"],
                     pbc=True)
        unit.info[f"{PREFIX}id"] = ident
        unit.info[f"{PREFIX}dataset"] = entry["dataset"]
        unit.info[f"{PREFIX}forces"] = np.array([entry["forces"][k] for k in range(entry["n"])])
        out.append(unit)
    return out


phonon_frequencies = PhononFrequencies(
    frequencies_of_set, "phonon_frequencies", version="1", check=_check_frequencies,
    summary="force constants and phonon frequencies at q-points from calculated "
            "displaced supercells (phonopy)")

__all__ = ["gather_sets", "phonon_displacements", "phonon_frequencies"]
