"""File-based calculators (DFT codes): the public names, in one place.

Quantum ESPRESSO, VASP, ORCA, CASTEP, FHI-aims ... are programs: ASE's calculators for
them write input files into a directory, run the program there and read its output.
wflp runs each calculation in its own private run directory and reports failures and
provenance the same way for every code. The machinery is split by concern, like ASE's
own ``genericfileio`` (a *profile*: how to run a program; a *template*: what to write
and read), with the directory as a factory:

- :mod:`.codespec`: :class:`CodeSpec`, what a code is, declared as data;
- :mod:`.rundir`: one run directory per calculation, scratch, the keep-files policy;
- :mod:`.process`: command lines, environment, running and killing the program;
- :mod:`.asecalc`: driving ASE's calculator objects (``FileIOCalculator``, profile and
  template), and :func:`quiet` for their warnings and prints;
- :mod:`.diagnosis`: :class:`CalculationError` and reading what the output says;
- :mod:`.provenance`: what records describe a calculator by (digests, versions);
- :mod:`.context`: where the running operation writes (the one question to the engine);
- :mod:`.filecalc`: :class:`FileCalculator`, which joins them, and
  :class:`GenericFileCalculator`.

See docs/fileio.md for users and plugin authors.
"""

from __future__ import annotations

from .asecalc import quiet, run_profile_template, run_with_ase
from .codespec import CodeSpec, is_gamma
from .context import RunPlace, current_place
from .diagnosis import (
    DEFAULT_REASONS,
    FAILED,
    MESSAGE_LINES,
    TAIL_LINES,
    UNPREPARED,
    UNREADABLE,
    CalculationError,
    find_error,
    tail,
)
from .filecalc import FileCalculator, GenericFileCalculator
from .process import env_prefix, run_program
from .provenance import file_sha256, folder_sha256, program_version
from .rundir import (
    DEFAULT_ROOT,
    ITEM_PROTOCOL,
    KEEP_CHOICES,
    RUNDIRS_SUFFIX,
    RunDirs,
    check_keep,
    fresh_dir,
    private_dir,
    prune,
    remove_empty_dirs,
)

__all__ = ["DEFAULT_REASONS", "DEFAULT_ROOT", "FAILED", "ITEM_PROTOCOL", "KEEP_CHOICES",
           "MESSAGE_LINES", "RUNDIRS_SUFFIX", "TAIL_LINES", "UNPREPARED", "UNREADABLE",
           "CalculationError", "CodeSpec", "FileCalculator", "GenericFileCalculator",
           "RunDirs", "RunPlace", "check_keep", "current_place", "env_prefix",
           "file_sha256", "find_error", "folder_sha256", "fresh_dir", "is_gamma",
           "private_dir", "program_version", "prune", "quiet", "remove_empty_dirs",
           "run_profile_template", "run_program", "run_with_ase", "tail"]
