"""Normal modes of each input, and configurations sampled along them at a temperature.

Two operations, as wfl.generate.normal_modes:

- ``normal_modes(inputs, outputs, calculator, delta=0.01, nfree=2, prefix="nm_")`` runs
  ASE's finite-difference vibrational analysis (:class:`ase.vibrations.Vibrations`) on
  each input with any calculator, in a private temporary folder of the item's own, and
  stores the result on a copy of the input, an output other operations reuse:

  - ``info[prefix + "frequencies"]``: the 3N harmonic energies hbar*omega in eV, in
    ascending order of the eigenvalues of the mass-weighted Hessian; an imaginary
    frequency is stored as its negative magnitude (as wfl does);
  - ``arrays[prefix + "eigenvector_<k>"]`` (k = 0 ... 3N-1, three digits): eigenvector k of
    the mass-weighted Hessian (orthonormal over all 3N components, in sqrt(amu) units, as
    an (N, 3) array). The Cartesian displacement of mode k is eigenvector / sqrt(mass).

  The input's geometry should be a local minimum of the calculator (optimize first).

- ``sample_normal_modes(inputs, outputs, temperature_K, n_samples, prefix="nm_",
  modes=None)`` reads those modes and writes *n_samples* displaced configurations per
  input. Each mode k is displaced by a Gaussian amplitude of variance kT / lambda_k
  (lambda_k the eigenvalue), the classical harmonic Boltzmann distribution, so that the
  harmonic energy of each mode averages kT/2. By default all modes except the rigid-body
  ones (the 6, or 5 for a linear molecule, 3 for one atom or a periodic cell, with the
  smallest absolute frequencies) are displaced; an imaginary frequency among them fails
  the item (the geometry is not a minimum). The samples carry the input's info without
  the normal-mode keys, plus ``info[prefix + "sample"]`` (0 ... n_samples-1),
  ``info[prefix + "temperature_K"]`` and ``info[prefix + "harmonic_energy"]`` (eV);
  per-atom arrays other than the positions and numbers are not carried (they would
  describe the undisplaced geometry). The amplitudes come from the item's random stream
  of the call's ``seed``, so serial and parallel runs give the same samples.
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Optional

import numpy as np
from ase import Atoms, units

from ..calculators import construct_calculator
from ..engine import operation
from ..errors import ParameterError

DEFAULT_PREFIX = "nm_"
# hbar*omega [eV] = EIGENVALUE_TO_ENERGY * sqrt(lambda [eV / A^2 / amu]), as ase.vibrations
EIGENVALUE_TO_ENERGY = units._hbar * units.m / np.sqrt(units._e * units._amu)


def eigenvector_key(prefix: str, k: int) -> str:
    """The arrays key of eigenvector *k*."""
    return f"{prefix}eigenvector_{k:03d}"


def _check_prefix(where: str, prefix: Any) -> None:
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z0-9_]*", prefix):
        raise ParameterError(f"{where}: prefix must be a string of letters, digits and "
                             f"underscores (e.g. 'nm_'), got {prefix!r}")


def _check_modes(params: dict, seed: Optional[int]) -> None:
    delta = params["delta"]
    if isinstance(delta, bool) or not isinstance(delta, Real) or not 0 < float(delta) < 0.5:
        raise ParameterError(f"normal_modes: delta must be the finite-difference step in "
                             f"Angstrom, 0 < delta < 0.5 (typically 0.01), got {delta!r}")
    if params["nfree"] not in (2, 4) or isinstance(params["nfree"], bool):
        raise ParameterError(f"normal_modes: nfree must be 2 (central differences) or 4, "
                             f"got {params['nfree']!r}")
    _check_prefix("normal_modes", params["prefix"])


@operation("normal_modes", version="1", check=_check_modes)
def normal_modes(atoms: Atoms, calculator: Any, delta: float = 0.01, nfree: int = 2,
                 prefix: str = DEFAULT_PREFIX) -> Atoms:
    """Vibrational analysis of each input: frequencies in info, eigenvectors in arrays.

    calculator: an ASE calculator, a (constructor, args, kwargs) tuple or a registered name.
    delta: finite-difference displacement in Angstrom; nfree: 2 (+-delta) or 4 points.
    prefix: of the stored keys (see the module docstring).
    """
    from ase.vibrations import Vibrations

    if not isinstance(atoms, Atoms) or len(atoms) == 0:
        raise ValueError("normal_modes takes configurations with at least one atom")
    calc = construct_calculator(calculator)
    reset = getattr(calc, "reset", None)
    if callable(reset):
        reset()  # nothing of the previous item carries over (same bytes in any split)
    work = atoms.copy()
    work.calc = calc
    with tempfile.TemporaryDirectory(prefix="wflp-normal-modes-") as folder:
        vib = Vibrations(work, name=str(Path(folder) / "vib"), delta=float(delta),
                         nfree=int(nfree))
        vib.run()
        energies, cartesian = vib.get_vibrations().get_energies_and_modes(all_atoms=True)
    work.calc = None
    out = atoms.copy()
    out.calc = None
    out.info[f"{prefix}frequencies"] = _real_frequencies(energies)
    sqrt_mass = np.sqrt(atoms.get_masses())[np.newaxis, :, np.newaxis]
    eigenvectors = cartesian * sqrt_mass  # back to the orthonormal mass-weighted vectors
    for k, vector in enumerate(eigenvectors):
        out.arrays[eigenvector_key(prefix, k)] = vector
    return out


def _real_frequencies(energies: np.ndarray) -> np.ndarray:
    """ASE's complex hbar*omega as reals: imaginary ones as their negative magnitude."""
    energies = np.asarray(energies, dtype=complex)
    return np.where(energies.imag != 0, -np.abs(energies.imag), energies.real)


def frequencies_to_eigenvalues(frequencies: np.ndarray) -> np.ndarray:
    """hbar*omega in eV (negative: imaginary) -> eigenvalues in eV / A^2 / amu."""
    freqs = np.asarray(frequencies, dtype=float)
    return np.sign(freqs) * (freqs / EIGENVALUE_TO_ENERGY) ** 2


def rigid_body_mode_count(atoms: Atoms) -> int:
    """3 translations plus the rotations of a free molecule: 6, 5 (linear) or 3."""
    if len(atoms) == 1 or atoms.pbc.any():
        return 3
    centred = atoms.positions - atoms.positions.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    return 5 if singular[1] < 1e-3 * max(singular[0], 1e-12) else 6


def read_modes(atoms: Atoms, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies [3N], eigenvectors [3N, 3N]) stored by normal_modes under *prefix*."""
    key = f"{prefix}frequencies"
    if key not in atoms.info:
        raise ValueError(f"sample_normal_modes: the input has no info[{key!r}]; run "
                         f"normal_modes(..., prefix={prefix!r}) on it first")
    freqs = np.atleast_1d(np.asarray(atoms.info[key], dtype=float))
    n = 3 * len(atoms)
    if len(freqs) != n:
        raise ValueError(f"sample_normal_modes: info[{key!r}] has {len(freqs)} values, "
                         f"not 3N = {n}")
    try:
        vectors = np.array([np.asarray(atoms.arrays[eigenvector_key(prefix, k)]).ravel()
                            for k in range(n)])
    except KeyError as err:
        raise ValueError(f"sample_normal_modes: the input lacks arrays[{err.args[0]!r}]; "
                         "run normal_modes on it first") from None
    return freqs, vectors


def _check_sample(params: dict, seed: Optional[int]) -> None:
    temp = params["temperature_K"]
    if isinstance(temp, bool) or not isinstance(temp, Real) or not float(temp) > 0:
        raise ParameterError(f"sample_normal_modes: temperature_K must be > 0 (K), got "
                             f"{temp!r}")
    n = params["n_samples"]
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ParameterError(f"sample_normal_modes: n_samples must be a whole number >= 1, "
                             f"got {n!r}")
    _check_prefix("sample_normal_modes", params["prefix"])
    modes = params["modes"]
    if modes is not None:
        if isinstance(modes, (str, bytes)) or not isinstance(modes, Sequence) or not modes \
                or any(isinstance(m, bool) or not isinstance(m, Integral) or m < 0
                       for m in modes):
            raise ParameterError(f"sample_normal_modes: modes must be a non-empty list of "
                                 f"mode indices (>= 0), or None for all vibrations, got "
                                 f"{modes!r}")
    if seed is None:
        raise ParameterError("sample_normal_modes: the displacements are random; pass "
                             "seed=<int> (e.g. seed=1) so that the samples are reproducible")


@operation("sample_normal_modes", version="1", check=_check_sample)
def sample_normal_modes(atoms: Atoms, temperature_K: float, n_samples: int,
                        prefix: str = DEFAULT_PREFIX, modes: Optional[Sequence[int]] = None,
                        rng: Optional[np.random.Generator] = None) -> list[Atoms]:
    """n_samples configurations displaced along the stored normal modes at temperature_K.

    modes: indices of the modes to displace along (default: all but the rigid-body ones).
    Needs seed= (see the module docstring for what the samples carry).
    """
    if rng is None:  # pragma: no cover - the parameter check requires a seed
        raise ParameterError("sample_normal_modes needs seed=<int>")
    freqs, vectors = read_modes(atoms, prefix)
    n_dof = len(freqs)
    if modes is None:
        rigid = set(np.argsort(np.abs(freqs), kind="stable")[:rigid_body_mode_count(atoms)])
        chosen = [k for k in range(n_dof) if k not in rigid]
    else:
        chosen = sorted(set(int(m) for m in modes))
        if chosen[-1] >= n_dof:
            raise ValueError(f"sample_normal_modes: mode {chosen[-1]} does not exist; this "
                             f"configuration has {n_dof} modes (0 ... {n_dof - 1})")
    eigenvalues = frequencies_to_eigenvalues(freqs[chosen])
    if np.any(eigenvalues <= 0):
        bad = [k for k, lam in zip(chosen, eigenvalues) if lam <= 0]
        raise ValueError(f"sample_normal_modes: mode(s) {bad} have imaginary or zero "
                         f"frequency ({freqs[bad]} eV): the geometry is not a minimum; "
                         "optimize it first, or choose modes=[...]")
    kT = units.kB * float(temperature_K)
    sigma = np.sqrt(kT / eigenvalues)
    inverse_sqrt_mass = np.repeat(atoms.get_masses() ** -0.5, 3)
    base = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                 pbc=atoms.pbc, masses=atoms.get_masses() if atoms.has("masses") else None)
    info = {k: v for k, v in atoms.info.items() if not k.startswith(f"{prefix}")}
    out = []
    for sample in range(int(n_samples)):
        amplitudes = rng.normal(size=len(chosen)) * sigma
        shift = (amplitudes @ vectors[chosen]) * inverse_sqrt_mass
        frame = base.copy()
        frame.positions = atoms.positions + shift.reshape(-1, 3)
        frame.info.update(copy.deepcopy(info))
        frame.info[f"{prefix}sample"] = sample
        frame.info[f"{prefix}temperature_K"] = float(temperature_K)
        frame.info[f"{prefix}harmonic_energy"] = float(0.5 * np.sum(eigenvalues
                                                                   * amplitudes ** 2))
        out.append(frame)
    return out


__all__ = ["EIGENVALUE_TO_ENERGY", "eigenvector_key", "frequencies_to_eigenvalues",
           "normal_modes", "read_modes", "rigid_body_mode_count", "sample_normal_modes"]
