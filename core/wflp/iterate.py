"""iterate: numbered iterations, each in its own folder, each fed the previous one's result.

An active-learning cycle (run MD with the current model, select new frames, label
them, refit) is a loop whose every step is an operation writing into one folder
per iteration::

    from wflp.iterate import iterate

    def one_round(it):                      # it.number, it.folder, it.previous
        frames = md(..., OutputSpec(it.folder / "md.xyz"), calculator=it.previous.calculator)
        ...
        return fit(..., OutputModel(it.folder / "model"), ...)

    models = iterate(one_round, start=first_model, count=3, workdir="run")
    # run/iter_01, run/iter_02, run/iter_03; models[-1] is the last fit

This is all it does: name the folders (``iter_01`` ... so that they sort; wider
numbers when there are 100 or more), create them, call the step in order and hand
each call what the one before returned. Reuse and resume come from the steps'
records, not from here: a rerun calls every step again, each operation finds its
output with a matching record and returns it at once, and after an interruption
the first step without a finished record is where work starts again.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from numbers import Integral
from pathlib import Path
from typing import Any, TypeVar, Union

from .errors import OutputError, ParameterError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Iteration:
    """One iteration: its number (1, 2, ...), its folder (created) and what the previous
    iteration returned (*start* for the first)."""

    number: int
    count: int
    folder: Path
    previous: Any

    @property
    def first(self) -> bool:
        """True for iteration 1."""
        return self.number == 1

    @property
    def last(self) -> bool:
        """True for the last iteration."""
        return self.number == self.count


def iteration_folder(workdir: Union[str, os.PathLike], number: int, count: int,
                     prefix: str = "iter_") -> Path:
    """The folder of iteration *number* of *count*: ``workdir/iter_01`` (two digits at
    least, as many as *count* has, so that the folders sort in order).

    >>> iteration_folder("run", 3, 10).as_posix(), iteration_folder("run", 7, 120).name
    ('run/iter_03', 'iter_007')
    """
    width = max(2, len(str(count)))
    return Path(workdir) / f"{prefix}{number:0{width}d}"


def _check(count: Any, prefix: Any, workdir: Path) -> None:
    if isinstance(count, bool) or not isinstance(count, Integral) or count < 1:
        raise ParameterError(f"iterate: count must be a whole number >= 1, got {count!r}")
    if not isinstance(prefix, str) or not prefix or prefix in (".", "..") or any(
            sep in prefix for sep in ("/", "\\", os.sep)):
        raise ParameterError(f"iterate: prefix must be a plain folder name prefix such as "
                             f"'iter_' (no path separators), got {prefix!r}")
    if workdir.exists() and not workdir.is_dir():
        raise OutputError(f"iterate: workdir {str(workdir)!r} is a file, not a folder; "
                          "name a folder (it is created if missing)")


def iterate(step: Callable[[Iteration], T], start: Any, count: int,
            workdir: Union[str, os.PathLike], prefix: str = "iter_") -> list[T]:
    """Call ``step(Iteration(...))`` for iterations 1 to *count*; return what each returned.

    step: does one iteration, writing its outputs under ``it.folder``, and returns what
        the next iteration starts from (e.g. the fitted model, the training files).
    start: what iteration 1 gets as ``it.previous``.
    workdir: where the iteration folders go (created if missing).
    prefix: the folders' names before the number (``iter_`` gives ``iter_01``).
    """
    root = Path(workdir)
    _check(count, prefix, root)
    if not callable(step):
        raise ParameterError(f"iterate: step must be a function of one Iteration, got "
                             f"{type(step).__name__}")
    results: list[T] = []
    previous = start
    for number in range(1, int(count) + 1):
        folder = iteration_folder(root, number, int(count), prefix)
        folder.mkdir(parents=True, exist_ok=True)
        previous = step(Iteration(number, int(count), folder, previous))
        results.append(previous)
    return results
