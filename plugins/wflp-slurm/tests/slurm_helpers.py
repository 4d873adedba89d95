"""Set-up shared by the wflp-slurm tests: is the test Slurm up (and its accounting), the
systems file, the test SSH server. A missing service skips a test with how to start it;
under CI=true it fails instead (CI starts every service these tests use)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parents[3]  # the wflp checkout
HOW = ("start the test Slurm as root: bash scripts/services/slurm.sh install && "
       "WITH_DBD=1 bash scripts/services/slurm.sh start")
HOW_SACCT = ("start the test Slurm with accounting: WITH_DBD=1 bash scripts/services/slurm.sh "
             "install && WITH_DBD=1 bash scripts/services/slurm.sh start")
HOW_SSH = "bash scripts/services/sshd.sh start (needs openssh-server)"


def missing(what: str, how: str) -> None:
    """Skip with how to enable *what*; under CI=true fail (CI must provide it)."""
    message = f"{what} is not available; to run this test: {how}"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


def _run(argv: list[str]) -> Optional[subprocess.CompletedProcess]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)
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


def ssh_settings() -> dict:
    """The test sshd's settings (scripts/services/sshd.sh start writes them)."""
    env_file = Path(os.environ.get("WFLP_TEST_SSHD_DIR", "/tmp/wflp-sshd")) / "env"
    values = {k: v for k, v in os.environ.items() if k.startswith("WFLP_TEST_SSH")}
    if "WFLP_TEST_SSH_HOST" not in values and env_file.is_file():
        for line in env_file.read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                values[key] = value.strip().strip('"')
    if "WFLP_TEST_SSH_HOST" not in values:
        missing("the test SSH server (127.0.0.1)", HOW_SSH)
    return {"host": values["WFLP_TEST_SSH_HOST"], "key": values["WFLP_TEST_SSH_KEY"],
            "known_hosts": values["WFLP_TEST_SSH_KNOWN_HOSTS"]}


def write_systems(folder: Path, root: Path, ssh: Optional[dict] = None,
                  extra: str = "") -> Path:
    """wflp-systems.toml with "slurm" (this machine) and, given SSH settings, "slurm_ssh"
    (the same Slurm through SSH to 127.0.0.1). Jobs poll every second."""
    text = textwrap.dedent(f"""
        [systems.slurm]
        scheduler = "slurm"
        python = {q(sys.executable)}
        remote_root = {q(str(root / "jobs"))}
        poll_interval = 1
    """)
    if ssh is not None:
        text += textwrap.dedent(f"""
            [systems.slurm_ssh]
            scheduler = "slurm"
            host = {q(ssh["host"])}
            identity_file = {q(ssh["key"])}
            known_hosts = {q(ssh["known_hosts"])}
            python = {q(sys.executable)}
            remote_root = {q(str(root / "ssh-jobs"))}
            poll_interval = 1
            reconnect_attempts = 2
        """)
    path = folder / "wflp-systems.toml"
    path.write_text(text + textwrap.dedent(extra))
    return path


def q(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
