"""The "ace" fitter: atomic cluster expansion with python-ace (pyace).

    fit(training, OutputModel("ace_model"), fitter="ace", params={
        "cutoff": 5.0, "nradmax_by_orders": [8, 3, 2], "lmax_by_orders": [0, 2, 1],
        "e0": "isolated", "ref_prefix": "xtb_"})

``method="linear"`` (the default) fits the linear ACE model of ``pyace.linearacefit``:
the B-basis functions are computed for every configuration (a design matrix of one
row per energy per atom and per force component), then their coefficients are fitted by
weighted ridge regression. It takes about a second for 100 small molecules.
``method="pacemaker"`` runs pacemaker's full nonlinear fit (radial functions and
embeddings too) with its TensorFlow backend (``backend="tensorpot"``; pip install
tensorpotential), or with the pyace backend, which needs no TensorFlow but takes 25-55 s
per BFGS iteration for 100 molecules on 2 cores.

Either way the model is fitted to energies minus the isolated-atom energies E0
(``e0``: ``"isolated"`` from the training set's single-atom configurations,
``"average"`` from a least-squares fit of energies to compositions, or {element:
energy}); pyace predicts without E0, so the calculator "ace" adds them back (they are
part of the model: ``model.calculator`` passes them). The fit runs as its own Python
process with ``cores`` threads, its output in ``ace_fit.out`` (``pacemaker.out``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Optional, Union

from wflp.errors import ParameterError

METHODS = ("linear", "pacemaker")
BACKENDS = ("tensorpot", "pyace")
E0_METHODS = ("isolated", "average")
MODEL_FILE = "ace.yaml"
JOB_FILE = "ace_job.json"


def fit_ace(training: Union[str, os.PathLike], workdir: Union[str, os.PathLike],
            method: str = "linear", cutoff: float = 5.0,
            nradmax_by_orders: Sequence[int] = (8, 3, 2),
            lmax_by_orders: Sequence[int] = (0, 2, 1), basis: Optional[Mapping] = None,
            elements: Optional[Sequence[str]] = None, e0: Union[str, Mapping, None] = None,
            ref_prefix: str = "", energy_weight: float = 1.0, forces_weight: float = 1.0,
            ridge: float = 1e-5, max_iterations: int = 200, backend: str = "tensorpot",
            timeout: Optional[float] = None, cores: int = 1,
            seed: Optional[int] = None) -> Any:
    """Fit an ACE potential; returns ``ace.yaml`` (the B-basis) with the E0s for the
    calculator.

    method: ``"linear"`` or ``"pacemaker"`` (see the module docstring). cutoff,
    nradmax_by_orders, lmax_by_orders: the basis (radial functions and angular momenta
    per body order, the same for every element combination); basis: a whole pyace
    potential configuration instead (``elements``, ``embeddings``, ``bonds``,
    ``functions``). elements: default those of the training set. e0: ``"isolated"``
    (None: the default), ``"average"`` or {element: energy}, see above.
    ref_prefix: the reference results are ``<ref_prefix>energy`` and
    ``<ref_prefix>forces``. energy_weight, forces_weight: relative weights of the
    energy-per-atom rows and the force rows. ridge: the ridge regularisation (linear).
    max_iterations, backend: pacemaker's BFGS iterations and evaluator. timeout: seconds.
    """
    from wflp.ops.fit import FitError, ModelFiles, run_program

    workdir = Path(workdir)
    e0 = "isolated" if e0 is None else e0
    _check(method, cutoff, nradmax_by_orders, lmax_by_orders, basis, elements, e0,
           ref_prefix, energy_weight, forces_weight, ridge, max_iterations, backend)
    data = read_training(training, ref_prefix)
    if not data["configs"]:
        raise FitError(f"fit ace: no configuration of 2 atoms or more in the training set "
                       f"has both {ref_prefix}energy and {ref_prefix}forces; set ref_prefix "
                       "to the prefix the reference results were stored under")
    energies = e0_energies(e0, data)
    species = sorted(elements or data["elements"], key=_atomic_number)
    unknown = sorted(set(data["elements"]) - set(species))
    if unknown:
        raise FitError(f"fit ace: the training set has {', '.join(unknown)}, which elements= "
                       "leaves out")
    potential = dict(basis) if basis is not None else basis_config(
        species, cutoff, nradmax_by_orders, lmax_by_orders)
    job = {"method": method, "training": os.fspath(Path(training).resolve()),
           "ref_prefix": ref_prefix, "e0": energies, "potential": potential,
           "energy_weight": float(energy_weight), "forces_weight": float(forces_weight),
           "ridge": float(ridge), "cores": int(cores), "seed": seed,
           "max_iterations": int(max_iterations), "backend": backend,
           "output": MODEL_FILE}
    (workdir / JOB_FILE).write_text(json.dumps(job, indent=1))
    if method == "linear":
        run_program([sys.executable, "-m", "wflp_ace.run", JOB_FILE], workdir, "fit ace",
                    threads=cores, log="ace_fit", timeout=timeout)
        log_file = "ace_fit.out"
    else:
        run_program([sys.executable, "-m", "wflp_ace.run", JOB_FILE], workdir, "fit ace",
                    threads=cores, log="ace_data", timeout=timeout)
        program = shutil.which("pacemaker") or shutil.which(
            "pacemaker", path=os.path.dirname(sys.executable))
        if program is None:
            raise FitError("fit ace: cannot find pacemaker; it comes with python-ace "
                           "(pip install python-ace)")
        run_program([program, "input.yaml", "-o", MODEL_FILE, "--no-predict"], workdir,
                    "fit ace (pacemaker)", threads=cores, log="pacemaker", timeout=timeout)
        log_file = "pacemaker.out"
    if not (workdir / MODEL_FILE).is_file():
        raise FitError(f"fit ace: the fit finished but wrote no {MODEL_FILE} (see "
                       f"{workdir / log_file})")
    return ModelFiles(MODEL_FILE, (MODEL_FILE, log_file), {"e0": energies})


def _versions() -> dict:
    """What the record names besides the plugin: the version of python-ace."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"python-ace": version("python-ace")}
    except PackageNotFoundError:
        return {"python-ace": None}


fit_ace.__wflp_provenance__ = _versions  # type: ignore[attr-defined]


def basis_config(elements: Sequence[str], cutoff: float, nradmax_by_orders: Sequence[int],
                 lmax_by_orders: Sequence[int]) -> dict:
    """A pyace potential configuration: one basis for all element combinations,
    Finnis-Sinclair-like embedding, simplified Bessel radial functions."""
    return {"deltaSplineBins": 0.001, "elements": list(elements),
            "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled",
                                   "fs_parameters": [1, 1], "ndensity": 1}},
            "bonds": {"ALL": {"radbase": "SBessel", "radparameters": [5.25],
                              "rcut": float(cutoff), "dcut": 0.01}},
            "functions": {"ALL": {"nradmax_by_orders": [int(n) for n in nradmax_by_orders],
                                  "lmax_by_orders": [int(n) for n in lmax_by_orders]}}}


# -- parameters ------------------------------------------------------------------------------

def _positive(value: Any, name: str, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ParameterError(f"fit ace: {name} must be a number > 0, got {value!r}")


def _integers(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value or \
            not all(isinstance(v, Integral) and not isinstance(v, bool) and v >= minimum
                    for v in value):
        raise ParameterError(f"fit ace: {name} must be a list of whole numbers >= {minimum}, "
                             f"one per body order, got {value!r}")


def _check(method: Any, cutoff: Any, nradmax: Any, lmax: Any, basis: Any, elements: Any,
           e0: Any, ref_prefix: Any, energy_weight: Any, forces_weight: Any, ridge: Any,
           max_iterations: Any, backend: Any) -> None:
    if method not in METHODS:
        raise ParameterError(f"fit ace: method must be one of {', '.join(METHODS)}, got "
                             f"{method!r}")
    _positive(cutoff, "cutoff")
    _integers(nradmax, "nradmax_by_orders", 1)
    _integers(lmax, "lmax_by_orders", 0)
    if len(nradmax) != len(lmax):
        raise ParameterError(f"fit ace: nradmax_by_orders and lmax_by_orders need one entry "
                             f"per body order each, got {len(nradmax)} and {len(lmax)}")
    if basis is not None and (not isinstance(basis, Mapping) or "elements" not in basis
                              or "functions" not in basis):
        raise ParameterError("fit ace: basis must be a pyace potential configuration (a dict "
                             "with elements, embeddings, bonds and functions)")
    if elements is not None:
        from ase.data import atomic_numbers

        if isinstance(elements, str) or not all(e in atomic_numbers for e in elements):
            raise ParameterError(f"fit ace: elements must be a list of chemical symbols, got "
                                 f"{elements!r}")
    if not (isinstance(e0, str) and e0 in E0_METHODS):
        if not isinstance(e0, Mapping) or not all(
                isinstance(v, Real) and not isinstance(v, bool) for v in e0.values()):
            raise ParameterError(f"fit ace: e0 must be 'isolated', 'average' or {{element: "
                                 f"energy}}, got {e0!r}")
    if not isinstance(ref_prefix, str):
        raise ParameterError(f"fit ace: ref_prefix must be a string such as 'xtb_', got "
                             f"{ref_prefix!r}")
    _positive(energy_weight, "energy_weight", allow_zero=True)
    _positive(forces_weight, "forces_weight", allow_zero=True)
    if energy_weight == 0 and forces_weight == 0:
        raise ParameterError("fit ace: energy_weight and forces_weight cannot both be 0")
    _positive(ridge, "ridge", allow_zero=True)
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, Integral) \
            or max_iterations < 1:
        raise ParameterError(f"fit ace: max_iterations must be a whole number >= 1, got "
                             f"{max_iterations!r}")
    if backend not in BACKENDS:
        raise ParameterError(f"fit ace: backend must be one of {', '.join(BACKENDS)}, got "
                             f"{backend!r}")
    if method == "pacemaker" and backend == "tensorpot" and \
            importlib.util.find_spec("tensorflow") is None:
        raise ParameterError("fit ace: pacemaker's tensorpot backend needs TensorFlow, which "
                             "is not installed (pip install tensorpotential); "
                             "backend='pyace' needs nothing more but takes 25-55 s per BFGS "
                             "iteration for 100 molecules; or use method='linear'")


# -- training data and E0 -------------------------------------------------------------------------

def _atomic_number(symbol: str) -> int:
    from ase.data import atomic_numbers

    return atomic_numbers.get(symbol, 0)


def reference_frames(training: Union[str, os.PathLike], prefix: str) -> Any:
    """(atoms, energy, forces) of each configuration of the training file, None where a
    result is missing."""
    import ase.io
    from wflp.analysis import reference_value

    for atoms in ase.io.iread(os.fspath(training), index=":", format="extxyz"):
        energy = reference_value(atoms, prefix, "energy", False)
        forces = reference_value(atoms, prefix, "forces", True)
        yield (atoms, None if energy is None or energy.size != 1 else float(energy.reshape(())),
               forces)


def read_training(training: Union[str, os.PathLike], prefix: str) -> dict:
    """What the driver needs to know of the training set: elements, isolated-atom
    energies, and (compositions, energies) of the configurations that are fitted."""
    from collections import Counter

    out: dict = {"elements": set(), "isolated": {}, "configs": []}
    for atoms, energy, forces in reference_frames(training, prefix):
        symbols = atoms.get_chemical_symbols()
        out["elements"].update(symbols)
        if len(atoms) == 1:
            if energy is not None:
                out["isolated"][symbols[0]] = energy
        elif energy is not None and forces is not None:
            out["configs"].append((Counter(symbols), energy))
    out["elements"] = sorted(out["elements"], key=_atomic_number)
    return out


def e0_energies(e0: Union[str, Mapping], data: dict) -> dict:
    """{element: E0} for every element of the training set (see the module docstring)."""
    import numpy as np
    from wflp.ops.fit import FitError

    elements = data["elements"]
    if isinstance(e0, Mapping):
        energies = {str(k): float(v) for k, v in e0.items()}
    elif e0 == "isolated":
        energies = dict(data["isolated"])
    else:
        counts = np.array([[c[s] for s in elements] for c, _ in data["configs"]], dtype=float)
        targets = np.array([e for _, e in data["configs"]])
        solution, *_ = np.linalg.lstsq(counts, targets, rcond=None)
        energies = {s: float(v) for s, v in zip(elements, solution)}
    missing = [s for s in elements if s not in energies]
    if missing:
        how = ("isolated atoms of them evaluated with the reference (isolated_atoms)"
               if e0 == "isolated" else "them to e0")
        raise FitError(f"fit ace: no E0 for {', '.join(missing)}; add {how}, or use "
                       "e0='average'")
    return {s: energies[s] for s in elements}
