"""minima_hopping: ASE's minima hopping global search from each input; the visited minima.

Each input runs :class:`ase.optimize.minimahopping.MinimaHopping` (Goedecker's method:
MD at a temperature that adapts, then a local optimisation, accepting a new minimum if
its energy is below the last one plus a threshold that adapts) for ``totalsteps`` steps:
the initial optimisation is step 0, each hop one more. The output is every minimum the
search reached, in order (one per step, including minima found again and rejected
ones), a copy of the input at the minimum's positions with

- ``info["mh_hop"]``: the step (0 for the initial optimisation);
- ``info["mh_energy"]``: its potential energy in eV;
- ``info["mh_outcome"]``: "accepted" (a new minimum, recorded in minima.traj),
  "rejected" (new, but too high in energy: the search went back), "refound_last"
  (the hop came back to the previous minimum) or "previously_found".

**Run folder and resuming.** MinimaHopping keeps its state in files of the current
folder (hop.log, minima.traj, md*.traj, qn*.traj) and resumes from them. Each item runs
in a private folder of its own, ``<workdir>/minima_hopping-<item:06d>`` (``workdir``
default: beside the output, ``<output>.rundirs``; for an in-memory output a folder of
this run under ``./wflp-rundirs``, which no later run finds). A run that was killed
resumes from that folder when run again with the same inputs and parameters (a
larger ``totalsteps`` continues a finished search too). A file ``wflp-state.json`` in
the folder names the input, seed and settings it belongs to; a folder of anything else
is emptied first. The folder is removed after the item succeeded unless
``keep_files=True``.

**Randomness.** MD velocities of hop k come from a generator seeded by the item's random
stream of the call's ``seed`` and k, so the search is the same in serial and parallel
runs and a resumed hop draws what it would have drawn without the interruption (up to
the four decimals in which hop.log keeps the temperature).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Optional

import numpy as np
from ase import Atoms

from ..calculators import construct_calculator
from ..engine import operation
from ..errors import ParameterError

log = logging.getLogger("wflp")
STATE_FILE = "wflp-state.json"
FOLDER_PREFIX = "minima_hopping-"
OUTCOMES = {
    "Accepted new minimum.": "accepted",
    "Rejected new minimum due to energy. Restoring last minimum.": "rejected",
    "Re-found last minimum.": "refound_last",
    "Found previously found minimum.": "previously_found",
}


def _last_frame(path: str) -> Atoms:
    """The last configuration of the trajectory file *path*."""
    from ase.io import read

    frame = read(path, index=-1)
    assert isinstance(frame, Atoms)  # one index reads one configuration
    return frame


def _positive(name: str, value: Any, integral: bool = False) -> None:
    kind = Integral if integral else Real
    if isinstance(value, bool) or not isinstance(value, kind) or not float(value) > 0:
        what = "a whole number >= 1" if integral else "> 0"
        raise ParameterError(f"minima_hopping: {name} must be {what}, got {value!r}")


def _check(params: dict, seed: Optional[int]) -> None:
    _positive("totalsteps", params["totalsteps"], integral=True)
    _positive("mdmin", params["mdmin"], integral=True)
    for name in ("T0", "Ediff0", "minima_threshold", "timestep", "fmax"):
        _positive(name, params[name])
    workdir = params["workdir"]
    if workdir is not None and not isinstance(workdir, (str, os.PathLike)):
        raise ParameterError(f"minima_hopping: workdir must be a folder path or None, got "
                             f"{workdir!r}")
    if not isinstance(params["keep_files"], bool):
        raise ParameterError(f"minima_hopping: keep_files must be true or false, got "
                             f"{params['keep_files']!r}")
    if seed is None:
        raise ParameterError("minima_hopping: the MD velocities are random; pass seed=<int> "
                             "(e.g. seed=1) so that the search is reproducible")


def item_folder(workdir: Any, index: int) -> tuple[Path, Path]:
    """(root, the item's run folder path) for the running operation (not created)."""
    from ..calculators.fileio import DEFAULT_ROOT, RUNDIRS_SUFFIX
    from ..engine import current_run

    ctx = current_run()
    if workdir is not None:
        root = Path(workdir).absolute()
    elif ctx is not None and ctx.outputs:
        first = Path(ctx.outputs[0])
        beside = Path(ctx.stage).parent if ctx.stage else first.parent
        root = beside / f"{first.name}{RUNDIRS_SUFFIX}"
    elif ctx is not None:
        root = Path(DEFAULT_ROOT).absolute() / f"minima_hopping-{ctx.run_id}"
    else:
        root = Path(tempfile.mkdtemp(prefix="wflp-minima-hopping-"))
    return root, root / f"{FOLDER_PREFIX}{index:06d}"


def _calculator_identity(calculator: Any, calc: Any) -> str:
    """The calculator as records describe it (its class and parameters), as text."""
    from ..calculators import describe_calculator
    from ..records.describe import Describer, canonical_json

    try:
        return canonical_json(describe_calculator(calculator, Describer()))
    except Exception:  # noqa: BLE001 - a calculator records cannot describe: its type
        return f"{type(calc).__module__}.{type(calc).__qualname__}"


def _state_digest(atoms: Atoms, settings: dict, hop_seed: int, calculator_identity: str) -> str:
    text = json.dumps({"numbers": atoms.numbers.tolist(),
                       "positions": atoms.positions.tolist(),
                       "cell": atoms.cell.array.tolist(), "pbc": atoms.pbc.tolist(),
                       "settings": settings, "seed": hop_seed,
                       "calculator": calculator_identity}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _trajectories_readable(folder: Path) -> bool:
    """False if a run killed while it wrote a step's trajectory left it empty or cut
    short: ASE's resume then fails (StopIteration, or a missing file if it is removed)."""
    from ase.io import Trajectory

    for path in sorted(folder.glob("*.traj")):
        try:
            with Trajectory(str(path)) as traj:
                if len(traj) == 0 or traj[-1] is None:
                    return False
        except Exception:
            return False
    return True


def _prepare_folder(folder: Path, digest: str) -> bool:
    """Make *folder* hold this search's state; True if it resumes an earlier one."""
    from ..calculators.fileio import fresh_dir, private_dir

    state = folder / STATE_FILE
    with contextlib.suppress(OSError, ValueError):
        if json.loads(state.read_text()).get("digest") == digest:
            if _trajectories_readable(folder):
                return True
            log.warning("minima_hopping: %s holds a trajectory cut short by a killed run, "
                        "which ASE cannot resume from; the search starts again", folder)
    private_dir(folder.parent)
    fresh_dir(folder)
    state.write_text(json.dumps({"digest": digest}) + "\n")
    return False


def hop_outcomes(log_text: str) -> dict[int, str]:
    """{step: outcome} from MinimaHopping's hop.log (the last word on each step counts)."""
    outcomes: dict[int, str] = {}
    step = None
    for line in log_text.splitlines():
        if line.startswith("msg: Optimization: qn"):
            step = int(line.rsplit("qn", 1)[1])
        elif step is not None and line.startswith("msg: "):
            outcome = OUTCOMES.get(line[5:].strip())
            if outcome is not None:
                outcomes[step] = outcome
    return outcomes


@operation("minima_hopping", version="1", check=_check)
def minima_hopping(atoms: Atoms, calculator: Any, totalsteps: int = 10, T0: float = 1000.0,
                   Ediff0: float = 0.5, mdmin: int = 2, minima_threshold: float = 0.5,
                   timestep: float = 1.0, fmax: float = 0.05, workdir: Any = None,
                   keep_files: bool = False, rng: Optional[np.random.Generator] = None,
                   index: Optional[int] = None) -> list[Atoms]:
    """Minima hopping from each input; every minimum reached, in order (module docstring).

    calculator: an ASE calculator, a (constructor, args, kwargs) tuple or a registered name.
    totalsteps: steps of the search (the initial optimisation and totalsteps - 1 hops).
    T0 (K), Ediff0 (eV), mdmin, minima_threshold (A), timestep (fs), fmax (eV/A): as
    ase.optimize.minimahopping.MinimaHopping. workdir: root of the items' run folders.
    keep_files: keep each item's run folder after it succeeded.
    """
    from ase.optimize.minimahopping import MinimaHopping

    if rng is None:  # pragma: no cover - the parameter check requires a seed
        raise ParameterError("minima_hopping needs seed=<int>")
    if not isinstance(atoms, Atoms) or len(atoms) < 2:
        raise ValueError("minima_hopping takes configurations of at least two atoms")

    class SeededHopping(MinimaHopping):
        """MinimaHopping whose MD velocities of hop k come from (seed, k)."""

        def _molecular_dynamics(self, resume=None):
            self._rng = np.random.default_rng([hop_seed, int(self._counter)])
            return super()._molecular_dynamics(resume=resume)

    hop_seed = int(rng.integers(0, 2 ** 63 - 1))
    calc = construct_calculator(calculator)
    reset = getattr(calc, "reset", None)
    if callable(reset):
        reset()
    settings = dict(T0=float(T0), Ediff0=float(Ediff0), mdmin=int(mdmin),
                    minima_threshold=float(minima_threshold), timestep=float(timestep),
                    fmax=float(fmax))
    root, folder = item_folder(workdir, int(index or 0))
    digest = _state_digest(atoms, settings, hop_seed, _calculator_identity(calculator, calc))
    resumed = _prepare_folder(folder, digest)
    here = os.getcwd()
    for attempt in (1, 2):
        work = atoms.copy()
        work.calc = calc
        os.chdir(folder)
        try:
            SeededHopping(work, **settings)(totalsteps=int(totalsteps))
            outcomes = hop_outcomes(Path("hop.log").read_text())
            minima: list[Atoms] = [_last_frame(f"qn{step:05d}.traj")
                                   for step in range(int(totalsteps))]
            break
        except (OSError, StopIteration, ValueError) as err:
            if not resumed or attempt == 2:
                raise
            # the files a killed run left cannot be resumed from: start the search again
            log.warning("minima_hopping: cannot resume from %s (%s: %s); the search starts "
                        "again", folder, type(err).__name__, err)
        finally:
            os.chdir(here)
            work.calc = None
        _prepare_folder(folder, digest + "-restart")  # a different digest: a fresh folder
        _prepare_folder(folder, digest)
        resumed = False
    out = []
    for step, minimum in enumerate(minima):
        frame = atoms.copy()
        frame.calc = None
        if "momenta" in frame.arrays:
            del frame.arrays["momenta"]
        frame.positions = minimum.positions
        frame.info["mh_hop"] = step
        frame.info["mh_energy"] = float(minimum.get_potential_energy())
        frame.info["mh_outcome"] = outcomes.get(step, "unknown")
        out.append(frame)
    if not keep_files:
        shutil.rmtree(folder, ignore_errors=True)
        from ..calculators.fileio import DEFAULT_ROOT

        for empty in (root, root.parent):  # the last one out removes the empty roots
            if empty == root or empty == Path(DEFAULT_ROOT).absolute():
                with contextlib.suppress(OSError):
                    os.rmdir(empty)
    return out


__all__ = ["hop_outcomes", "item_folder", "minima_hopping"]
