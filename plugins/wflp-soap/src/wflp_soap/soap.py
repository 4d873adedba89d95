"""The soap descriptor: SOAP descriptors (dscribe) added to every configuration.

- ``per_atom=False`` (the default): one vector per configuration in
  ``info[key]``, the average over its atoms. ``average="outer"`` (the default)
  averages the atoms' power spectra, so the vector is exactly the mean of the
  per-atom vectors; ``average="inner"`` averages the expansion coefficients over
  the atoms before taking the power spectrum (dscribe's two averagings).
- ``per_atom=True``: one row per atom in ``arrays[key]`` (n_atoms x features).
- ``normalize=True`` (the default) scales each vector (each row, per atom) to unit
  length, after averaging, so dot products are cosine similarities.

``species``: the elements the descriptor distinguishes. Given, or (``None``)
derived from the whole input before anything is computed: one pass reads every
configuration and collects its elements. Either way the list used (in order of
atomic number) is a parameter of the run, so the output's record names it, and
a run given that same list explicitly is the same computation.

A configuration is described as periodic when any of its ``pbc`` is set (its
cell must then be a real one), as a cluster otherwise. dscribe runs with
``n_jobs=1`` and at most one BLAS thread: wflp's worker processes give the
parallelism (for small configurations dscribe's own processes are slower).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, Optional

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from wflp import Operation
from wflp.errors import ParameterError, PluginError

AVERAGES = ("outer", "inner")
RBFS = ("gto", "polynomial")
_soaps: dict = {}  # dscribe SOAP objects of this process, by parameters and periodicity


def _dscribe_soap() -> Any:
    try:
        from dscribe.descriptors import SOAP
    except ImportError as err:
        raise PluginError(f"the soap descriptor needs dscribe, which cannot be imported "
                          f"({err}); install it with `pip install dscribe`") from err
    return SOAP


def _symbols(species: Any, where: str) -> list[str]:
    if isinstance(species, (str, bytes)) or not isinstance(species, Sequence) or not species:
        raise ParameterError(f"{where} must be a non-empty list of chemical symbols (e.g. "
                             f"['H', 'C', 'O']) or None to take them from the inputs, got "
                             f"{species!r}")
    out = []
    for s in species:
        if isinstance(s, str) and s in atomic_numbers and s != "X":
            out.append(chemical_symbols[atomic_numbers[s]])
        elif isinstance(s, Integral) and not isinstance(s, bool) and \
                0 < s < len(chemical_symbols):
            out.append(chemical_symbols[int(s)])
        else:
            raise ParameterError(f"{where}: {s!r} is not a chemical element")
    return sorted(set(out), key=lambda x: atomic_numbers[x])


def _check(params: dict, seed: Optional[int]) -> None:
    for name in ("n_max", "l_max"):
        value = params[name]
        low = 1 if name == "n_max" else 0
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise ParameterError(f"soap: {name} must be a whole number >= {low}, got "
                                 f"{value!r}")
    for name in ("r_cut", "sigma"):
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
            raise ParameterError(f"soap: {name} must be a positive length in Angstrom, got "
                                 f"{value!r}")
    if params["average"] not in AVERAGES:
        raise ParameterError(f"soap: average must be 'outer' (mean of the atoms' power "
                             f"spectra) or 'inner' (power spectrum of the mean coefficients), "
                             f"got {params['average']!r}")
    if params["rbf"] not in RBFS:
        raise ParameterError(f"soap: rbf must be 'gto' or 'polynomial', got {params['rbf']!r}")
    for name in ("per_atom", "normalize"):
        if not isinstance(params[name], bool):
            raise ParameterError(f"soap: {name} must be true or false, got {params[name]!r}")
    if not isinstance(params["key"], str) or not params["key"]:
        raise ParameterError(f"soap: key must be the name to store the descriptor under, got "
                             f"{params['key']!r}")
    weighting = params["weighting"]
    if weighting is not None and not isinstance(weighting, dict):
        raise ParameterError(f"soap: weighting must be a dict of dscribe's weighting options "
                             f"(e.g. {{'function': 'poly', 'r0': 4, 'c': 1, 'm': 1}}) or None, "
                             f"got {weighting!r}")
    if params["l_max"] > 20:
        raise ParameterError(f"soap: l_max must be at most 20 (dscribe's limit), got "
                             f"{params['l_max']!r}")
    if params["rbf"] == "gto" and params["r_cut"] <= 1:
        raise ParameterError(f"soap: with rbf='gto', r_cut must be more than 1 Angstrom "
                             f"(dscribe's limit), got {params['r_cut']!r}")
    species = ["H"] if params["species"] is None else _symbols(params["species"],
                                                                 "soap: species")
    if weighting is not None:  # dscribe's own checks of a weighting (importing it costs 2 s)
        try:
            _make(species, params, periodic=False)
        except (ValueError, TypeError) as err:
            raise ParameterError(f"soap: dscribe refuses these parameters: {err}") from None


def _make(species: list[str], params: dict, periodic: bool) -> Any:
    key = (tuple(species), periodic, params["r_cut"], params["n_max"], params["l_max"],
           params["sigma"], params["rbf"], params["average"], params["per_atom"],
           repr(sorted((params["weighting"] or {}).items())))
    soap = _soaps.get(key)
    if soap is None:
        SOAP = _dscribe_soap()
        soap = SOAP(species=list(species), r_cut=float(params["r_cut"]),
                    n_max=int(params["n_max"]), l_max=int(params["l_max"]),
                    sigma=float(params["sigma"]), rbf=params["rbf"],
                    weighting=params["weighting"], periodic=periodic,
                    average="off" if params["per_atom"] else params["average"],
                    sparse=False, dtype="float64")
        if len(_soaps) > 32:
            _soaps.clear()
        _soaps[key] = soap
    return soap


def soap_descriptors(items: list, r_cut: float = 5.0, n_max: int = 6, l_max: int = 4,
                     sigma: float = 0.5, species: Optional[Sequence[str]] = None,
                     per_atom: bool = False, average: str = "outer", normalize: bool = True,
                     key: str = "soap", rbf: str = "gto",
                     weighting: Optional[dict] = None) -> list:
    """SOAP vectors of a chunk of configurations (see the module docstring)."""
    from wflp.ops.selection import blas_threads

    params = {"r_cut": r_cut, "n_max": n_max, "l_max": l_max, "sigma": sigma,
              "rbf": rbf, "average": average, "per_atom": per_atom, "weighting": weighting}
    if species is None:  # the operation derives them first; a direct call gets them here
        species = sorted({s for at in items for s in at.get_chemical_symbols()},
                         key=lambda x: atomic_numbers[x])
    species = _symbols(species, "soap: species")
    known = set(species)
    out = []
    with blas_threads(1):
        for atoms in items:
            if not isinstance(atoms, Atoms):
                raise ValueError(f"soap: an item must be a configuration (Atoms), got "
                                 f"{type(atoms).__name__}")
            if len(atoms) == 0:
                raise ValueError("soap: a configuration without atoms has no descriptor")
            missing = sorted(set(atoms.get_chemical_symbols()) - known,
                             key=lambda x: atomic_numbers[x])
            if missing:
                raise ValueError(f"soap: the configuration has {', '.join(missing)}, not in "
                                 f"species={species}; add them, or pass species=None to "
                                 "take the species from the inputs")
            periodic = bool(np.any(atoms.pbc))
            if periodic and atoms.cell.rank < 3:
                raise ValueError(f"soap: the configuration is periodic (pbc="
                                 f"{atoms.pbc.tolist()}) but has no full cell; set its cell "
                                 "or atoms.pbc = False")
            values = np.asarray(_make(species, params, periodic).create(atoms, n_jobs=1),
                                dtype=float)
            if normalize:
                norms = np.linalg.norm(values, axis=-1, keepdims=True)
                values = values / np.where(norms > 0, norms, 1.0)
            if per_atom:
                atoms.arrays[key] = values.reshape(len(atoms), -1)
            else:
                atoms.info[key] = values.ravel()
            out.append(atoms)
    return out


def _species_chunk(items: list) -> list:
    """The elements of each configuration, as one comma-separated string per item."""
    out = []
    for atoms in items:
        if not isinstance(atoms, Atoms):
            raise ValueError(f"soap: an item must be a configuration (Atoms), got "
                             f"{type(atoms).__name__}")
        out.append(",".join(sorted(set(atoms.get_chemical_symbols()))))
    return out


_species_pass = Operation(_species_chunk, "soap (finding the species)", per="chunk")


def species_of(inputs: Any, autopara_info: Any = None) -> list[str]:
    """Every element in *inputs*, in order of atomic number (one pass over them, run by the
    engine: in worker processes if asked)."""
    from wflp import ConfigSet, OutputSpec

    if not isinstance(inputs, ConfigSet):
        inputs = ConfigSet(inputs)
    found: set = set()
    for text in _species_pass(inputs, OutputSpec(), autopara_info=autopara_info):
        found.update(s for s in text.split(",") if s)
    return sorted(found, key=lambda x: atomic_numbers[x])


class SoapOperation(Operation):
    """soap(inputs, outputs, ...): with species=None, the species are found in the inputs
    first and passed on explicitly, so the record names them."""

    def __call__(self, inputs: Any, outputs: Any, *args: Any, autopara_info: Any = None,
                 seed: int | None = None, **kwargs: Any) -> Any:
        from wflp import ConfigSet

        params = self.validate(args, kwargs, seed)
        if not isinstance(inputs, ConfigSet):
            inputs = ConfigSet(inputs)
        if params["species"] is None:
            params["species"] = species_of(inputs, autopara_info)
            if not params["species"]:
                raise ParameterError("soap: the inputs hold no atoms, so there are no species "
                                     "to describe")
        else:
            params["species"] = _symbols(params["species"], "soap: species")
        return super().__call__(inputs, outputs, autopara_info=autopara_info, **params)

    def __reduce__(self):
        return (_rebuild, (self.func, self.name, self.version, self.summary, self.check))


def _rebuild(func, name, version, summary, check):
    return SoapOperation(func, name, version=version, per="chunk", summary=summary,
                         check=check)


soap = SoapOperation(soap_descriptors, "soap", version="1", per="chunk", check=_check,
                     summary="SOAP descriptors (dscribe) per configuration or per atom")

__all__ = ["AVERAGES", "SoapOperation", "soap", "soap_descriptors", "species_of"]
