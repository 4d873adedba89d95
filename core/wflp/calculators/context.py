"""Where the running operation writes: the one thing calculators ask the engine.

A file-based calculator names its run directories after the operation's output (so
a resumed run finds them again). It learns where that is through
:func:`current_place` only: a small read-only view (:class:`RunPlace`) of the engine's
public ``wflp.engine.current_run()``, never the engine's own module state. Code that
builds run directories outside an operation passes its own ``place`` function
(:class:`wflp.calculators.rundir.RunDirs` takes one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Optional, Protocol


class RunPlace(Protocol):
    """Where the running operation writes (the engine's ``RunContext`` is one).

    operation: its name; outputs: absolute paths of its output files (empty in memory);
    stage: its stage folder (None in memory); run_id: a token shared by every worker of
    one run of the driver.
    """

    @property
    def operation(self) -> str:
        """The running operation's name."""

    @property
    def outputs(self) -> Sequence[str]:
        """Absolute paths of the operation's output files (empty when it writes to memory)."""

    @property
    def stage(self) -> Optional[str]:
        """The output's stage folder (None when it writes to memory)."""

    @property
    def run_id(self) -> str:
        """A token shared by every worker of one run of the driver."""


PlaceGetter = Callable[[], Optional[RunPlace]]


def current_place() -> Optional[RunPlace]:
    """Where the operation whose item runs in this process writes (None outside one)."""
    from ..engine import current_run  # the engine's documented accessor, imported late

    return current_run()


__all__ = ["PlaceGetter", "RunPlace", "current_place"]
