"""The "mace" fitter: ``mace_run_train`` from mace-torch, on the CPU.

    fit(training, OutputModel("mace_model"), fitter="mace", seed=1, params={
        "max_num_epochs": 50, "num_channels": 16, "max_L": 0, "r_max": 4.0,
        "energy_weight": 100.0, "forces_weight": 100.0, "ref_prefix": "xtb_"})

The training configurations are written again for MACE (``mace_train.xyz`` in the run
directory: the reference energy and forces under fixed names, ``config_type``), without
the isolated atoms, whose energies become MACE's ``--E0s`` (``e0="isolated"``, the
default; ``"average"`` lets MACE fit them to the compositions; or {element: energy}).
mace_run_train runs in the fresh run directory the core gives every fit (a reused one
would make MACE silently restart from its old checkpoint), with ``cores`` threads for
it alone, its output in ``mace_run_train.out`` / ``.err``. MACE's default loss weights
(energy 1 : forces 100) leave energies off by eV/atom after a few epochs on a small
set, so both weights are parameters and the default is 100 : 100.

The model is ``mace.model`` (the trained model, float64 by default), with the training
log ``mace_run_train.out``.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Mapping
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Optional, Union

from wflp.errors import ParameterError

E0_METHODS = ("isolated", "average")
MODELS = ("MACE", "ScaleShiftMACE")
NAME = "mace"
MODEL_FILE = f"{NAME}.model"
TRAIN_FILE = "mace_train.xyz"
LOG = "mace_run_train"
ENERGY, FORCES = "wflp_energy", "wflp_forces"
# options this fitter sets itself; everything else may go through extra=
OWN_OPTIONS = frozenset({"name", "train_file", "E0s", "energy_key", "forces_key", "seed",
                         "device", "work_dir", "log_dir", "model_dir", "checkpoints_dir",
                         "results_dir", "downloads_dir", "model", "num_channels", "max_L",
                         "r_max", "num_interactions", "correlation", "max_num_epochs",
                         "batch_size", "energy_weight", "forces_weight", "lr",
                         "valid_fraction", "default_dtype", "restart_latest"})


def fit_mace(training: Union[str, os.PathLike], workdir: Union[str, os.PathLike],
             e0: Union[str, Mapping, None] = None, ref_prefix: str = "",
             model: str = "ScaleShiftMACE", num_channels: int = 16, max_L: int = 0,
             r_max: float = 4.0, num_interactions: int = 2, correlation: int = 2,
             max_num_epochs: int = 30, batch_size: int = 5, energy_weight: float = 100.0,
             forces_weight: float = 100.0, lr: float = 0.01, valid_fraction: float = 0.1,
             default_dtype: str = "float64", extra: Optional[Mapping[str, Any]] = None,
             program: str = "mace_run_train", timeout: Optional[float] = None,
             cores: int = 1, seed: Optional[int] = None) -> Any:
    """Train a MACE model with mace_run_train on the CPU; returns ``mace.model``.

    e0: ``"isolated"`` (None: the default) takes the training set's single-atom
    configurations as the E0s (and leaves them out of the training data);
    ``"average"`` or {element: energy}. ref_prefix: the reference results are
    ``<ref_prefix>energy`` and ``<ref_prefix>forces``. model, num_channels, max_L, r_max,
    num_interactions, correlation: the architecture. max_num_epochs, batch_size, lr,
    valid_fraction: the training. energy_weight, forces_weight: the loss weights.
    extra: any other mace_run_train option ({"ema": True, "patience": 20}; True gives a
    bare flag). seed: MACE's seed (0 when not given). timeout: seconds.
    """
    from wflp.ops.fit import FitError, ModelFiles, run_program

    workdir = Path(workdir)
    e0 = "isolated" if e0 is None else e0
    options = _check(e0, ref_prefix, model, num_channels, max_L, r_max, num_interactions,
                     correlation, max_num_epochs, batch_size, energy_weight, forces_weight, lr,
                     valid_fraction, default_dtype, extra)
    exe = find_program(program)
    summary = write_training(training, workdir / TRAIN_FILE, ref_prefix)
    if summary["configs"] < 2:
        raise FitError(f"fit mace: {summary['configs']} configuration(s) of 2 atoms or more "
                       f"have {ref_prefix}energy and {ref_prefix}forces; MACE needs at least "
                       "2 (one for validation); set ref_prefix to the prefix the reference "
                       "results were stored under")
    if e0 == "isolated":
        missing = [s for s in summary["elements"] if s not in summary["isolated"]]
        if missing:
            raise FitError(f"fit mace: e0='isolated' needs an isolated atom of every element; "
                           f"none for {', '.join(missing)} (add isolated atoms evaluated with "
                           "the reference, or use e0='average' or {element: energy})")
        energies: Any = summary["isolated"]
    elif isinstance(e0, Mapping):
        missing = [s for s in summary["elements"] if s not in e0]
        if missing:
            raise FitError(f"fit mace: e0 has no energy for {', '.join(missing)}")
        energies = {str(k): float(v) for k, v in e0.items()}
    else:
        energies = "average"
    argv = [exe, *command_line(options, energies, seed)]
    run_program(argv, workdir, "fit mace", threads=cores, log=LOG, timeout=timeout)
    if not (workdir / MODEL_FILE).is_file():
        raise FitError(f"fit mace: mace_run_train finished but wrote no {MODEL_FILE} (see "
                       f"{workdir / (LOG + '.out')})")
    return ModelFiles(MODEL_FILE, (MODEL_FILE, LOG + ".out"))


def _versions() -> dict:
    """What the record names besides the plugin: mace-torch and torch."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in ("mace-torch", "torch"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = None
    return found


fit_mace.__wflp_provenance__ = _versions  # type: ignore[attr-defined]


def find_program(program: str) -> str:
    """The path of mace_run_train: on PATH, or beside this Python."""
    from wflp.ops.fit import FitError

    if os.sep in program:
        if os.access(program, os.X_OK):
            return program
        raise FitError(f"fit mace: {program!r} is not an executable file")
    found = shutil.which(program) or shutil.which(program, path=os.path.dirname(sys.executable))
    if found is None:
        raise FitError(f"fit mace: cannot find {program!r}; install mace-torch (pip install "
                       "torch==2.13.0 first for a CPU build, then pip install mace-torch), or "
                       "give program= its path")
    return found


# -- parameters ------------------------------------------------------------------------------

def _whole(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ParameterError(f"fit mace: {name} must be a whole number >= {minimum}, got "
                             f"{value!r}")
    return int(value)


def _number(value: Any, name: str, low: float = 0.0, high: float = math.inf,
            allow_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
            or not (value > low or (allow_low and value == low)) or value > high:
        raise ParameterError(f"fit mace: {name} must be a number {'>=' if allow_low else '>'} "
                             f"{low}{f' and <= {high}' if high < math.inf else ''}, got "
                             f"{value!r}")
    return float(value)


def _check(e0: Any, ref_prefix: Any, model: Any, num_channels: Any, max_L: Any, r_max: Any,
           num_interactions: Any, correlation: Any, max_num_epochs: Any, batch_size: Any,
           energy_weight: Any, forces_weight: Any, lr: Any, valid_fraction: Any,
           default_dtype: Any, extra: Any) -> dict:
    if not (isinstance(e0, str) and e0 in E0_METHODS):
        if not isinstance(e0, Mapping) or not e0 or not all(
                isinstance(v, Real) and not isinstance(v, bool) for v in e0.values()):
            raise ParameterError(f"fit mace: e0 must be 'isolated', 'average' or {{element: "
                                 f"energy}}, got {e0!r}")
    if not isinstance(ref_prefix, str):
        raise ParameterError(f"fit mace: ref_prefix must be a string such as 'xtb_', got "
                             f"{ref_prefix!r}")
    if model not in MODELS:
        raise ParameterError(f"fit mace: model must be one of {', '.join(MODELS)}, got "
                             f"{model!r}")
    if default_dtype not in ("float32", "float64"):
        raise ParameterError(f"fit mace: default_dtype must be 'float32' or 'float64', got "
                             f"{default_dtype!r}")
    options = {
        "model": model, "num_channels": _whole(num_channels, "num_channels", 1),
        "max_L": _whole(max_L, "max_L", 0), "r_max": _number(r_max, "r_max"),
        "num_interactions": _whole(num_interactions, "num_interactions", 1),
        "correlation": _whole(correlation, "correlation", 1),
        "max_num_epochs": _whole(max_num_epochs, "max_num_epochs", 1),
        "batch_size": _whole(batch_size, "batch_size", 1),
        "energy_weight": _number(energy_weight, "energy_weight", allow_low=True),
        "forces_weight": _number(forces_weight, "forces_weight", allow_low=True),
        "lr": _number(lr, "lr"), "valid_fraction": _number(valid_fraction, "valid_fraction",
                                                           high=0.5),
        "default_dtype": default_dtype}
    extra = dict(extra or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not key.replace("_", "").isalnum():
            raise ParameterError(f"fit mace: extra: {key!r} is not a mace_run_train option "
                                 "name")
        if key in OWN_OPTIONS:
            raise ParameterError(f"fit mace: {key!r} is set by the fitter itself; use its "
                                 "own parameter (or it cannot be changed: run directories, "
                                 "device, keys)")
        if not isinstance(value, (bool, int, float, str)):
            raise ParameterError(f"fit mace: extra[{key!r}] must be a number, a string or "
                                 f"True (a flag), got {value!r}")
    options["extra"] = extra
    return options


def command_line(options: dict, e0: Any, seed: Optional[int]) -> list:
    """mace_run_train's arguments for checked *options* and E0s (a dict or "average")."""
    from ase.data import atomic_numbers

    if isinstance(e0, Mapping):
        e0_text = "{" + ", ".join(f"{atomic_numbers[s]}: {float(e)!r}"
                                  for s, e in sorted(e0.items(),
                                                     key=lambda kv: atomic_numbers[kv[0]])) + "}"
    else:
        e0_text = e0
    args = [f"--name={NAME}", f"--train_file={TRAIN_FILE}",
            f"--valid_fraction={options['valid_fraction']!r}", f"--E0s={e0_text}",
            f"--energy_key={ENERGY}", f"--forces_key={FORCES}", f"--model={options['model']}",
            f"--num_channels={options['num_channels']}", f"--max_L={options['max_L']}",
            f"--r_max={options['r_max']!r}",
            f"--num_interactions={options['num_interactions']}",
            f"--correlation={options['correlation']}",
            f"--max_num_epochs={options['max_num_epochs']}",
            f"--batch_size={options['batch_size']}",
            f"--energy_weight={options['energy_weight']!r}",
            f"--forces_weight={options['forces_weight']!r}", f"--lr={options['lr']!r}",
            "--device=cpu", f"--default_dtype={options['default_dtype']}",
            f"--seed={int(seed) if seed is not None else 0}"]
    for key, value in options["extra"].items():
        if value is True:
            args.append(f"--{key}")
        elif value is not False:
            args.append(f"--{key}={value}")
    return args


# -- the training file -------------------------------------------------------------------------

def write_training(source: Union[str, os.PathLike], dest: Path, prefix: str) -> dict:
    """Write the configurations with a reference energy and forces to *dest*; returns
    counts, the elements, and the isolated atoms' energies."""
    import ase.io
    from ase import Atoms
    from ase.data import atomic_numbers
    from wflp.analysis import reference_value

    out: dict = {"configs": 0, "elements": set(), "isolated": {}}
    with open(dest, "w") as fd:
        for atoms in ase.io.iread(os.fspath(source), index=":", format="extxyz"):
            energy = reference_value(atoms, prefix, "energy", False)
            symbols = atoms.get_chemical_symbols()
            if len(atoms) == 1:
                if energy is not None:
                    out["isolated"][symbols[0]] = float(energy.reshape(()))
                continue
            forces = reference_value(atoms, prefix, "forces", True)
            if energy is None or forces is None:
                continue
            clean = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                          pbc=atoms.pbc)
            clean.info[ENERGY] = float(energy.reshape(()))
            clean.arrays[FORCES] = forces.reshape(len(atoms), 3)
            if "config_type" in atoms.info:
                clean.info["config_type"] = str(atoms.info["config_type"])
            ase.io.write(fd, clean, format="extxyz")
            out["configs"] += 1
            out["elements"].update(symbols)
    out["elements"] = sorted(out["elements"], key=lambda s: atomic_numbers[s])
    return out
