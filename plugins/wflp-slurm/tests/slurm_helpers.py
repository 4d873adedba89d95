"""Set-up shared by the wflp-slurm tests: is the test Slurm up (and its accounting), the
systems file (the rest, the test SSH server included, is wflp.testing_remote). A missing
service skips a test with how to start it; under CI=true it fails instead (CI starts every
service these tests use)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

from wflp import testing_remote
from wflp.testing_remote import missing

ROOT = Path(__file__).resolve().parents[3]  # the wflp checkout
HOW = ("start the test Slurm as root: bash scripts/services/slurm.sh install && "
       "WITH_DBD=1 bash scripts/services/slurm.sh start")
HOW_SACCT = ("start the test Slurm with accounting: WITH_DBD=1 bash scripts/services/slurm.sh "
             "install && WITH_DBD=1 bash scripts/services/slurm.sh start")


def _run(argv: list[str]) -> Optional[subprocess.CompletedProcess]:
    try:
        from wflp.testing import scaled

        return subprocess.run(argv, capture_output=True, text=True, timeout=scaled(60))
    except (OSError, subprocess.TimeoutExpired):
        return None


def require_slurm() -> None:
    from wflp.testing import require_program

    for program in ("sbatch", "squeue", "scancel", "scontrol"):
        require_program(program, HOW)
    ping = _run(["scontrol", "ping"])
    if ping is None or ping.returncode != 0 or "is UP" not in ping.stdout:
        missing("a running Slurm controller (`scontrol ping`)", HOW)


def require_sacct() -> None:
    require_slurm()
    probe = _run(["sacct", "-n", "-X", "-S", "now"])
    if probe is None or probe.returncode != 0:
        missing("Slurm accounting (sacct through slurmdbd)", HOW_SACCT)


def write_systems(folder: Path, root: Path, ssh: Optional[dict] = None,
                  extra: str = "") -> Path:
    """wflp-systems.toml with "slurm" (this machine) and, given SSH settings, "slurm_ssh"
    (the same Slurm through SSH to 127.0.0.1)."""
    return testing_remote.write_systems(folder, root, "slurm", ssh=ssh, extra=extra)
