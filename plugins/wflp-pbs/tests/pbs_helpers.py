"""Set-up shared by the wflp-pbs tests: are the PBS-syntax commands up, the systems file
(the rest, the test SSH server included, is wflp.testing_remote). A missing service skips
a test with how to start it; under CI=true it fails instead (CI starts every service these
tests use).

There is no PBS server package for Debian: the real tests drive Slurm's PBS/Torque-syntax
wrappers (qsub, qstat, qdel; scripts/services/pbs.sh) over the test Slurm. They live in a
private prefix, put first in PATH by the system's command prefix
(``env PATH=$WFLP_TEST_PBS_PREFIX/usr/bin:...``; $WFLP_TEST_PBS_PREFIX="" for a real PBS
on PATH)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Optional

from wflp import testing_remote
from wflp.testing_remote import missing

ROOT = Path(__file__).resolve().parents[3]  # the wflp checkout
HOW = ("install and start the PBS-syntax commands over the test Slurm, as root: "
       "bash scripts/services/slurm.sh install && bash scripts/services/pbs.sh install && "
       "WITH_DBD=1 bash scripts/services/pbs.sh start")
PBS_PREFIX = os.environ.get("WFLP_TEST_PBS_PREFIX", "/opt/wflp-pbs")
PREFIX = (["env", f"PATH={PBS_PREFIX}/usr/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
          if PBS_PREFIX else [])


def pbs(*argv: str, check: bool = False) -> subprocess.CompletedProcess:
    """A PBS command with the test prefix."""
    from wflp.testing import scaled

    return subprocess.run([*PREFIX, *argv], capture_output=True, text=True,
                          timeout=scaled(60), check=check)


def require_pbs() -> None:
    qsub = Path(PBS_PREFIX, "usr", "bin", "qsub") if PBS_PREFIX else None
    if qsub is not None and not qsub.exists():
        missing(f"the PBS-syntax commands in {PBS_PREFIX}", HOW)
    try:
        probe = pbs("qstat")
    except (OSError, subprocess.TimeoutExpired):
        probe = None
    if probe is None or probe.returncode not in (0, 153):  # 153: no job to list
        said = (probe.stderr or probe.stdout).strip()[-300:] if probe else ""
        missing(f"a PBS that answers `{shlex.join([*PREFIX, 'qstat'])}` ({said})", HOW)


def write_systems(folder: Path, root: Path, ssh: Optional[dict] = None,
                  extra: str = "") -> Path:
    """wflp-systems.toml with "pbs" (this machine) and, given SSH settings, "pbs_ssh"
    (the same commands through SSH to 127.0.0.1), both with the test prefix, if any."""
    return testing_remote.write_systems(folder, root, "pbs", ssh=ssh, prefix=PREFIX or None,
                                        extra=extra)
