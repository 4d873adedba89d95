"""The "gap" fitter: gap_fit (from the quippy-ase package) with its parameters as a dict.

    fit(training, OutputModel("gap_model"), fitter="gap", seed=1, params={
        "descriptors": [{"type": "distance_2b", "cutoff": 5.0, "covariance_type": "ard_se",
                         "delta": 1.0, "theta_uniform": 1.0, "n_sparse": 15,
                         "sparse_method": "uniform"},
                        {"type": "soap", "l_max": 4, "n_max": 6, "cutoff": 4.0,
                         "atom_sigma": 0.5, "delta": 0.2, "covariance_type": "dot_product",
                         "zeta": 4, "n_sparse": 200, "sparse_method": "cur_points"}],
        "default_sigma": [0.002, 0.05, 0.05, 0.0], "e0": "isolated",
        "ref_prefix": "xtb_"})

The training configurations are written again, for gap_fit alone, into the run
directory (``gap_train.xyz``): only the reference energy, forces and virial (under
fixed names) and ``config_type``; molecules without a cell get a box that holds them
with the largest cutoff of vacuum around (QUIP needs a lattice); a virial is made from
the stress (-stress x volume) where only the stress is given. gap_fit runs there with
its stdout and stderr in ``gap_fit.out`` / ``gap_fit.err`` and ``cores`` OpenMP threads
(for gap_fit only). The model is ``gap.xml`` with every ``gap.xml.sparseX.*`` file it
needs, and ``gap_fit.out`` as the fit's log.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any, Optional, Union

from wflp.errors import ParameterError

E0_METHODS = ("isolated", "average")
MODEL_FILE = "gap.xml"
TRAIN_FILE = "gap_train.xyz"
LOG = "gap_fit"
# the keys gap_fit reads in gap_train.xyz (fixed names: ASE never moves them into a
# calculator, whatever the reference prefix)
ENERGY, FORCES, VIRIAL = "wflp_energy", "wflp_forces", "wflp_virial"
# options this fitter sets itself; everything else may go through extra=
OWN_OPTIONS = frozenset({"at_file", "gap", "gp_file", "default_sigma", "e0", "e0_method",
                         "config_type_sigma", "energy_parameter_name", "force_parameter_name",
                         "virial_parameter_name", "rnd_seed", "sparse_jitter"})


def fit_gap(training: Union[str, os.PathLike], workdir: Union[str, os.PathLike],
            descriptors: Sequence[Mapping], default_sigma: Sequence[float] = (0.002, 0.05,
                                                                                0.05, 0.0),
            e0: Union[str, Mapping, None] = None,
            config_type_sigma: Optional[Mapping[str, Sequence[float]]] = None,
            ref_prefix: str = "", sparse_jitter: float = 1e-8,
            extra: Optional[Mapping[str, Any]] = None, program: str = "gap_fit",
            timeout: Optional[float] = None, cores: int = 1,
            seed: Optional[int] = None) -> Any:
    """Fit a GAP with gap_fit; returns the model's files (gap.xml and its companions).

    descriptors: one dict per descriptor, ``{"type": "soap", "l_max": 4, ...}``: the
    type first, then gap_fit's own keys (True/False become T/F, lists {a b c}).
    default_sigma: expected errors of energies (eV), forces (eV/A), virials (eV) and
    Hessians. e0: None or ``"average"`` (the mean energy per atom), ``"isolated"``
    (from the training set's single-atom configurations) or {element: energy}. config_type_sigma:
    {config_type: [energy, force, virial, hessian sigmas]}. ref_prefix: the reference
    results are ``<ref_prefix>energy``, ``<ref_prefix>forces``, ``<ref_prefix>virial``
    (or ``<ref_prefix>stress``). extra: any other gap_fit option (``{"openmp_chunk_size":
    1000}``). program: gap_fit's name or path. timeout: seconds (None: no limit).
    """
    from wflp.ops.fit import FitError, ModelFiles, run_program

    workdir = Path(workdir)
    options = _check(descriptors, default_sigma, e0, config_type_sigma, ref_prefix,
                     sparse_jitter, extra)
    exe = find_program(program)
    summary = write_training(training, workdir / TRAIN_FILE, ref_prefix,
                             vacuum=max_cutoff(descriptors) + 1.0)
    if summary["energies"] == 0 and summary["forces"] == 0:
        raise FitError(f"fit gap: no configuration in the training set has {ref_prefix}energy "
                       f"or {ref_prefix}forces; set ref_prefix to the prefix the reference "
                       "results were stored under (calculate's prefix=)")
    if e0 == "isolated":
        missing = sorted(set(summary["elements"]) - set(summary["isolated"]))
        if missing:
            raise FitError(f"fit gap: e0='isolated' needs an isolated atom of every element "
                           f"in the training set; none for {', '.join(missing)} (add "
                           "isolated_atoms evaluated with the reference, or give e0 as "
                           "{element: energy})")
    argv = [exe, *command_line(options, seed, summary["virials"] > 0)]
    run_program(argv, workdir, "fit gap", threads=cores, log=LOG, timeout=timeout)
    model = workdir / MODEL_FILE
    if not model.is_file():
        raise FitError(f"fit gap: gap_fit finished but wrote no {MODEL_FILE} (see "
                       f"{workdir / (LOG + '.out')})")
    companions = sorted(p.name for p in workdir.iterdir()
                        if p.name.startswith(MODEL_FILE + ".sparseX."))
    return ModelFiles(MODEL_FILE, (MODEL_FILE, *companions, LOG + ".out"))


def _versions() -> dict:
    """What the record names besides the plugin: the version of quippy-ase (gap_fit)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"quippy-ase": version("quippy-ase")}
    except PackageNotFoundError:
        return {"quippy-ase": None}


fit_gap.__wflp_provenance__ = _versions  # type: ignore[attr-defined]


def find_program(program: str) -> str:
    """The path of gap_fit: on PATH, or beside this Python (a virtual environment's bin/,
    where pip puts it, need not be on PATH)."""
    from wflp.ops.fit import FitError

    if os.sep in program:
        if os.access(program, os.X_OK):
            return program
        raise FitError(f"fit gap: {program!r} is not an executable file")
    found = shutil.which(program) or shutil.which(program, path=os.path.dirname(sys.executable))
    if found is None:
        raise FitError(f"fit gap: cannot find {program!r}; install it with `pip install "
                       "quippy-ase` (it puts gap_fit beside python), or give program= its path")
    return found


# -- parameters ------------------------------------------------------------------------------

def _numbers(value: Any, n: int, what: str) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != n \
            or not all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
                       and v >= 0 for v in value):
        raise ParameterError(f"fit gap: {what} must be {n} numbers >= 0, got {value!r}")
    return [float(v) for v in value]


def _check(descriptors: Any, default_sigma: Any, e0: Any, config_type_sigma: Any,
           ref_prefix: Any, sparse_jitter: Any, extra: Any) -> dict:
    if isinstance(descriptors, Mapping) or not isinstance(descriptors, Sequence) \
            or not descriptors:
        raise ParameterError("fit gap: descriptors must be a non-empty list of dicts such as "
                             "{'type': 'soap', 'l_max': 4, 'n_max': 6, 'cutoff': 4.0, ...}")
    rendered = []
    for i, desc in enumerate(descriptors):
        if not isinstance(desc, Mapping) or not isinstance(desc.get("type"), str) \
                or not desc["type"].strip():
            raise ParameterError(f"fit gap: descriptors[{i}] must be a dict with a 'type' "
                                 f"(soap, distance_2b, ...), got {desc!r}")
        words = [desc["type"].strip()]
        for key, value in desc.items():
            if key != "type":
                words.append(f"{_key(key, f'descriptors[{i}]')}={render(value)}")
        rendered.append(" ".join(words))
    sigma = _numbers(default_sigma, 4, "default_sigma (energy, force, virial, hessian)")
    if e0 is not None and not (isinstance(e0, str) and e0 in E0_METHODS):
        if not isinstance(e0, Mapping) or not e0:
            raise ParameterError(f"fit gap: e0 must be 'average', 'isolated' or {{element: "
                                 f"energy}}, got {e0!r}")
        from ase.data import atomic_numbers

        for symbol, energy in e0.items():
            if symbol not in atomic_numbers or not isinstance(energy, Real) \
                    or isinstance(energy, bool):
                raise ParameterError(f"fit gap: e0[{symbol!r}] must map an element to its "
                                     f"energy in eV, got {energy!r}")
    types = {}
    for name, sigmas in (config_type_sigma or {}).items():
        _key(name, "config_type_sigma")
        types[name] = _numbers(sigmas, 4, f"config_type_sigma[{name!r}]")
    if not isinstance(ref_prefix, str):
        raise ParameterError(f"fit gap: ref_prefix must be a string such as 'xtb_', got "
                             f"{ref_prefix!r}")
    if isinstance(sparse_jitter, bool) or not isinstance(sparse_jitter, Real) \
            or not sparse_jitter >= 0:
        raise ParameterError(f"fit gap: sparse_jitter must be a number >= 0, got "
                             f"{sparse_jitter!r}")
    extra = dict(extra or {})
    for key in extra:
        _key(key, "extra")
        if key in OWN_OPTIONS:
            raise ParameterError(f"fit gap: {key!r} is set by the fitter itself; use its own "
                                 "parameter (descriptors, default_sigma, e0, "
                                 "config_type_sigma, ref_prefix, sparse_jitter, seed)")
    return {"gap": rendered, "default_sigma": sigma, "e0": e0, "config_type_sigma": types,
            "sparse_jitter": float(sparse_jitter), "extra": extra}


def _key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key or any(c in key for c in " ={}:'\""):
        raise ParameterError(f"fit gap: {where}: {key!r} is not a gap_fit option name")
    return key


def render(value: Any) -> str:
    """A value as gap_fit reads it: T/F, numbers, {a b c} for lists and spaced strings."""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, Real):
        return repr(float(value)) if isinstance(value, float) else str(int(value))
    if isinstance(value, str):
        if any(c in value for c in "{}") or not value:
            raise ParameterError(f"fit gap: the value {value!r} cannot be given to gap_fit")
        return "{" + value + "}" if any(c.isspace() for c in value) else value
    if isinstance(value, Sequence):
        return "{" + " ".join(render(v) for v in value) + "}"
    raise ParameterError(f"fit gap: cannot give {value!r} ({type(value).__name__}) to gap_fit; "
                         "use numbers, strings, True/False or lists of them")


def command_line(options: dict, seed: Optional[int], virials: bool) -> list:
    """gap_fit's arguments (one per option) for checked *options*."""
    args = [f"at_file={TRAIN_FILE}", "gap={" + " : ".join(options["gap"]) + "}",
            f"default_sigma={render(options['default_sigma'])}"]
    e0 = options["e0"]
    if isinstance(e0, Mapping):
        args.append("e0={" + ":".join(f"{k}:{float(v)!r}" for k, v in e0.items()) + "}")
    else:  # gap_fit's own default is "isolated"; None means "average" here, as documented
        args.append(f"e0_method={e0 or 'average'}")
    if options["config_type_sigma"]:
        parts = [":".join([name, *(repr(s) for s in sigmas)])
                 for name, sigmas in options["config_type_sigma"].items()]
        args.append("config_type_sigma={" + ":".join(parts) + "}")
    args += [f"energy_parameter_name={ENERGY}", f"force_parameter_name={FORCES}"]
    if virials:
        args.append(f"virial_parameter_name={VIRIAL}")
    args += [f"sparse_jitter={options['sparse_jitter']!r}", f"gp_file={MODEL_FILE}"]
    if seed is not None:
        args.append(f"rnd_seed={int(seed)}")
    extra = {"do_copy_at_file": False, **options["extra"]}
    args += [f"{key}={render(value)}" for key, value in extra.items()]
    return args


def max_cutoff(descriptors: Sequence[Mapping]) -> float:
    """The largest ``cutoff`` of the descriptors (5 A if none says)."""
    cutoffs = [float(d["cutoff"]) for d in descriptors
               if isinstance(d, Mapping) and isinstance(d.get("cutoff"), Real)]
    return max(cutoffs, default=5.0)


# -- the training file -------------------------------------------------------------------------

def write_training(source: Union[str, os.PathLike], dest: Path, prefix: str,
                   vacuum: float) -> dict:
    """Write what gap_fit needs of each configuration to *dest* (see the module
    docstring); returns counts (energies, forces, virials, elements, isolated)."""
    import ase.io
    import numpy as np
    from ase import Atoms
    from wflp.analysis import reference_value

    counts = {"configs": 0, "energies": 0, "forces": 0, "virials": 0, "elements": set(),
              "isolated": set()}
    with open(dest, "w") as fd:
        for atoms in ase.io.iread(os.fspath(source), index=":", format="extxyz"):
            out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                        pbc=atoms.pbc)
            symbols = atoms.get_chemical_symbols()
            counts["configs"] += 1
            counts["elements"].update(symbols)
            if "config_type" in atoms.info:
                out.info["config_type"] = str(atoms.info["config_type"])
            energy = reference_value(atoms, prefix, "energy", False)
            if energy is not None and energy.size == 1:
                out.info[ENERGY] = float(energy.reshape(()))
                counts["energies"] += 1
                if len(atoms) == 1:
                    counts["isolated"].add(symbols[0])
            forces = reference_value(atoms, prefix, "forces", True)
            if forces is not None and len(atoms) > 1:
                out.arrays[FORCES] = forces.reshape(len(atoms), 3)
                counts["forces"] += 1
            virial = _virial(atoms, prefix)
            if virial is not None:
                out.info[VIRIAL] = virial.ravel()
                counts["virials"] += 1
            if atoms.cell.rank < 3:
                if any(atoms.pbc):
                    from wflp.ops.fit import FitError

                    raise FitError(f"fit gap: configuration {counts['configs'] - 1} is "
                                   "periodic but has no full cell")
                out.center(vacuum=vacuum)
                out.cell = np.diag(np.maximum(out.cell.lengths(), 2 * vacuum))
                out.center()
            ase.io.write(fd, out, format="extxyz")
    counts["elements"] = sorted(counts["elements"])
    counts["isolated"] = sorted(counts["isolated"])
    return counts


def _virial(atoms: Any, prefix: str) -> Any:
    import numpy as np
    from wflp.analysis import reference_value

    virial = reference_value(atoms, prefix, "virial", False)
    if virial is not None:
        if virial.size == 6:
            xx, yy, zz, yz, xz, xy = virial
            virial = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        return virial.reshape(3, 3)
    stress = reference_value(atoms, prefix, "stress", False)
    if stress is None or atoms.cell.rank < 3 or not all(atoms.pbc):
        return None
    if stress.size == 6:
        xx, yy, zz, yz, xz, xy = stress
        stress = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return -stress.reshape(3, 3) * atoms.get_volume()
