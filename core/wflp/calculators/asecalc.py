"""The only code that drives ASE's file-based calculator objects.

ASE's calculators for file-based codes come in two shapes: the older
``FileIOCalculator`` writes, runs and reads in ``calculate`` (:func:`run_with_ase`), and
``GenericFileIOCalculator`` is made of a *profile* (how to run the program) and a
*template* (what to write and read): :func:`run_profile_template` lets the template
write and read but runs the profile's command itself, so the exit status and stderr
are known and a time limit kills the program. :func:`quiet` sends what ASE warns and
prints meanwhile to the ``wflp`` logger at debug level.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional, Protocol

log = logging.getLogger("wflp")


class Execute(Protocol):
    """Runs *argv* in *workdir* (stdout, stderr to those files there); the exit status."""

    def __call__(self, argv: Sequence[str], workdir: Path, stdout: str,
                 stderr: Optional[str] = None) -> int: ...


def run_with_ase(calc: Any, atoms: Any, properties: Sequence[str]) -> dict[str, Any]:
    """ASE writes the input, runs the program and reads the results; the results."""
    from ase.calculators.calculator import all_changes

    calc.calculate(atoms, list(properties), list(all_changes))
    return dict(calc.results)


def run_profile_template(calc: Any, atoms: Any, properties: Sequence[str], workdir: Path,
                         execute: Execute) -> dict[str, Any]:
    """A profile-and-template calculator (Espresso, ORCA, Aims ...): the template writes
    the input, *execute* runs the profile's command with the template's output and error
    files, the template reads the results."""
    template = calc.template
    calc.write_inputfiles(atoms, list(properties))
    execute(calc.profile.get_command(getattr(template, "inputname", None)), workdir,
            stdout=template.outputname, stderr=template.errorname)
    return dict(template.read_results(workdir))


@contextlib.contextmanager
def quiet(label: str) -> Iterator[None]:
    """Warnings and prints inside the block go to the wflp logger at debug level."""
    buffer = io.StringIO()
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buffer):
            warnings.simplefilter("always")
            yield
    finally:
        for w in caught:
            log.debug("%s: %s: %s", label, w.category.__name__, w.message)
        text = buffer.getvalue().strip()
        if text:
            log.debug("%s printed: %s", label, text)


__all__ = ["Execute", "quiet", "run_profile_template", "run_with_ase"]
