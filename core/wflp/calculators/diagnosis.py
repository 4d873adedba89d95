"""What went wrong in a file-based calculation: one error type, and how it is found.

Whatever ASE raised (CalledProcessError, StopIteration, AssertionError, ParseError ...
or nothing), a failed calculation is one :class:`CalculationError`: code, run
directory, reason (the code's own error message when it wrote one), exit status,
whether the SCF converged, the last lines of the main output and of stderr. The
functions here read those from the run directory, driven by a :class:`CodeSpec`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import WflpError
from .codespec import CodeSpec

TAIL_LINES = 20
MESSAGE_LINES = 3
UNREADABLE = "its output could not be read"
UNPREPARED = "writing its input failed"
FAILED = "the calculation failed"
DEFAULT_REASONS = (UNREADABLE, UNPREPARED, FAILED)


class CalculationError(WflpError):
    """A file-based calculation failed.

    The message is one line (code, run directory, reason, exit status, the last lines of
    the output); the attributes carry the details: ``code``, ``directory`` (where its
    files are kept), ``reason``, ``returncode`` (None if the program did not run or is
    not known), ``converged`` (True, False or None if unknown), ``output_file``,
    ``output_tail`` and ``stderr_tail`` (the last lines, up to 20 each) and ``cause``
    (what ASE raised, as text, or "").
    """

    def __init__(self, code: str, directory: Optional[str], reason: str, *,
                 returncode: Optional[int] = None, converged: Optional[bool] = None,
                 output_file: str = "", output_tail: Sequence[str] = (),
                 stderr_tail: Sequence[str] = (), cause: str = ""):
        self.code = code
        self.directory = directory
        self.reason = reason
        self.returncode = returncode
        self.converged = converged
        self.output_file = output_file
        self.output_tail = list(output_tail)
        self.stderr_tail = list(stderr_tail)
        self.cause = cause
        super().__init__(self._message())

    def __reduce__(self) -> tuple[Any, ...]:  # pickles with its attributes, not only args
        return (_rebuild_error, (type(self), dict(self.__dict__)))

    def _message(self) -> str:
        where = f" in {self.directory}" if self.directory else ""
        parts = [f"{self.code} calculation failed{where}: {self.reason}"]
        notes = []
        if self.returncode is not None and f"status {self.returncode}" not in self.reason:
            notes.append(f"exit status {self.returncode}")
        if self.converged is False and "converge" not in self.reason:
            notes.append("SCF not converged")
        if notes:
            parts[0] += f" ({'; '.join(notes)})"
        if self.cause and self.cause not in self.reason:
            parts.append(f"raised {self.cause}")
        out = short(self.output_tail)
        if out:
            parts.append(f"last lines of {self.output_file or 'the output'}: {out}")
        err = short(self.stderr_tail)
        if err:
            parts.append(f"stderr: {err}")
        return one_line("; ".join(parts))

    def report(self) -> str:
        """A multi-line report: the message, then the tails of the output and stderr."""
        lines = [str(self)]
        if self.output_tail:
            lines += [f"--- last lines of {self.output_file or 'the output'} ---",
                      *self.output_tail]
        if self.stderr_tail:
            lines += ["--- last lines of stderr ---", *self.stderr_tail]
        return "\n".join(lines)


def _rebuild_error(cls: type[CalculationError], state: dict[str, Any]) -> CalculationError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, err._message())
    return err


def one_line(text: str) -> str:
    """*text* with every run of white space (newlines too) made one space."""
    return " ".join(text.split())


def short(lines: Sequence[str], n: int = MESSAGE_LINES, width: int = 160) -> str:
    """The last *n* lines that say something (not rules), quoted, for a one-line message."""
    picked = [one_line(x) for x in lines if re.search(r"[A-Za-z0-9]", x)][-n:]
    return " | ".join(f'"{x[:width]}"' for x in picked)


def describe_cause(err: Optional[BaseException]) -> str:
    """What was raised, as ``Type: message`` on one line ("" for None)."""
    if err is None:
        return ""
    text = one_line(str(err))
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def tail(path: Union[str, os.PathLike[str]], n: int = TAIL_LINES,
         max_bytes: int = 65536) -> list[str]:
    """The last *n* lines of a text file ([] if it does not exist or is empty)."""
    try:
        with open(path, "rb") as fd:
            fd.seek(0, os.SEEK_END)
            size = fd.tell()
            fd.seek(max(0, size - max_bytes))
            data = fd.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines[-n:]


def scf_verdict(spec: CodeSpec, workdir: Path) -> Optional[bool]:
    """Whether ``spec.output_file`` says the SCF converged, by the declared patterns.

    The verdict of the last line matching either pattern, except that (unless
    ``last_scf_wins``) a "converged" after a "not converged" does not undo it; None if
    the output is missing, says neither, or no pattern is declared.
    """
    converged, not_converged = spec.converged_pattern, spec.not_converged_pattern
    if (converged is None and not_converged is None) or not spec.output_file:
        return None
    path = workdir / spec.output_file
    if not path.exists():
        return None
    state = None
    with open(path, errors="replace") as fd:
        for line in fd:
            if not_converged is not None and not_converged.search(line):
                state = False
            elif converged is not None and (state is not False or spec.last_scf_wins) and \
                    converged.search(line):
                state = True
    return state


def find_error(lines: Sequence[str], patterns: Sequence[re.Pattern[str]]) -> Optional[str]:
    """The last of *lines* matching the first of *patterns* that matches any, stripped of
    spaces, ``*`` and tabs (None if none matches)."""
    for pattern in patterns:
        found = [line.strip(" *\t") for line in lines if pattern.search(line)]
        if found:
            return found[-1]
    return None


def declared_error(spec: CodeSpec, workdir: Path) -> Optional[str]:
    """The code's error message by ``spec.error_patterns``: sought in the last
    ``error_output_lines`` lines of ``output_file`` and the last 20 of ``stderr_file``."""
    if not spec.error_patterns:
        return None
    lines = tail(workdir / spec.output_file, spec.error_output_lines) \
        if spec.output_file else []
    if spec.stderr_file:
        lines += tail(workdir / spec.stderr_file, TAIL_LINES)
    return find_error(lines, spec.error_patterns)


def output_tails(spec: CodeSpec, workdir: Path) -> tuple[str, list[str], list[str]]:
    """(the output file quoted, its last lines, the last lines of stderr): the first of
    ``output_file`` and ``stdout_file`` that has lines."""
    output_file, output_tail = spec.output_file, []
    for name in (spec.output_file, spec.stdout_file):
        if name:
            output_tail = tail(workdir / name)
            if output_tail:
                output_file = name
                break
    stderr_tail = tail(workdir / spec.stderr_file) if spec.stderr_file else []
    return output_file, output_tail, stderr_tail


def failure_reason(reason: str, returncode: Optional[int], diagnosis: Optional[str]) -> str:
    """The reason given, made telling: a default reason becomes the exit status or the
    code's own message; a specific one gets the code's message appended."""
    if reason in DEFAULT_REASONS and returncode:
        reason = f"the program exited with status {returncode}"
    if diagnosis and reason in DEFAULT_REASONS:
        return diagnosis
    if diagnosis and diagnosis not in reason:
        return f"{reason}: {diagnosis}"
    return reason


def result_problem(results: dict[str, Any], properties: Sequence[str],
                   natoms: int) -> Optional[str]:
    """What is wrong with results that looked fine to ASE (None if nothing): a requested
    property missing or not finite, forces of the wrong shape."""
    import numpy as np

    for name in properties:
        value = results.get(name)
        if value is None:
            return f"its output has no {name}"
        array = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(array)):
            return (f"its {name} is not a finite number ({value!r})" if array.ndim == 0
                    else f"its {name} are not all finite")
        if name == "forces" and array.shape != (natoms, 3):
            return f"its forces have shape {array.shape}, not ({natoms}, 3)"
    return None


__all__ = ["DEFAULT_REASONS", "FAILED", "MESSAGE_LINES", "TAIL_LINES", "UNPREPARED",
           "UNREADABLE", "CalculationError", "declared_error", "describe_cause",
           "failure_reason", "find_error", "one_line", "output_tails", "result_problem",
           "scf_verdict", "short", "tail"]
