"""Set-up shared by the wflp-sge tests: is the test Grid Engine up, the systems file (the
rest, the test SSH server included, is wflp.testing_remote). A missing service skips a test
with how to start it; under CI=true it fails instead (CI starts every service these tests
use).

The test Grid Engine runs in a network namespace: its commands need the prefix
``ip netns exec sge`` ($WFLP_TEST_SGE_PREFIX, words split on spaces; empty for a Grid
Engine reached directly)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Optional

from wflp import testing_remote
from wflp.testing_remote import missing

ROOT = Path(__file__).resolve().parents[3]  # the wflp checkout
HOW = ("start the test Grid Engine as root: bash scripts/services/sge.sh install && "
       "bash scripts/services/sge.sh start")
PREFIX = shlex.split(os.environ.get("WFLP_TEST_SGE_PREFIX", "ip netns exec sge"))


def sge(*argv: str, check: bool = False) -> subprocess.CompletedProcess:
    """A Grid Engine command with the test prefix."""
    from wflp.testing import scaled

    return subprocess.run([*PREFIX, *argv], capture_output=True, text=True,
                          timeout=scaled(60), check=check)


def require_sge() -> None:
    from wflp.testing import require_program

    for program in ("qsub", "qstat", "qacct", "qdel"):
        require_program(program, HOW)
    try:
        probe = sge("qstat", "-s", "prsz", "-u", "*", "-xml")
    except (OSError, subprocess.TimeoutExpired):
        probe = None
    if probe is None or probe.returncode != 0 or "<job_info" not in probe.stdout:
        missing(f"a running Grid Engine (`{shlex.join([*PREFIX, 'qstat'])}`)", HOW)


def write_systems(folder: Path, root: Path, ssh: Optional[dict] = None,
                  extra: str = "") -> Path:
    """wflp-systems.toml with "sge" (this machine) and, given SSH settings, "sge_ssh"
    (the same Grid Engine through SSH to 127.0.0.1), both with the test prefix."""
    return testing_remote.write_systems(folder, root, "sge", ssh=ssh, prefix=PREFIX,
                                        extra=extra)
