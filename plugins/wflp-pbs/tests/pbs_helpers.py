"""Set-up shared by the wflp-pbs tests: are the PBS-syntax commands up, the systems file, the
test SSH server. A missing service skips a test with how to start it; under CI=true it fails
instead (CI starts every service these tests use).

There is no PBS server package for Debian: the real tests drive Slurm's PBS/Torque-syntax
wrappers (qsub, qstat, qdel; scripts/services/pbs.sh) over the test Slurm. They live in a
private prefix, put first in PATH by the system's command prefix
(``env PATH=$WFLP_TEST_PBS_PREFIX/usr/bin:...``; $WFLP_TEST_PBS_PREFIX="" for a real PBS
on PATH)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parents[3]  # the wflp checkout
HOW = ("install and start the PBS-syntax commands over the test Slurm, as root: "
       "bash scripts/services/slurm.sh install && bash scripts/services/pbs.sh install && "
       "WITH_DBD=1 bash scripts/services/pbs.sh start")
HOW_SSH = "bash scripts/services/sshd.sh start (needs openssh-server)"
PBS_PREFIX = os.environ.get("WFLP_TEST_PBS_PREFIX", "/opt/wflp-pbs")
PREFIX = (["env", f"PATH={PBS_PREFIX}/usr/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
          if PBS_PREFIX else [])


def missing(what: str, how: str) -> None:
    """Skip with how to enable *what*; under CI=true fail (CI must provide it)."""
    message = f"{what} is not available; to run this test: {how}"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


def pbs(*argv: str, check: bool = False) -> subprocess.CompletedProcess:
    """A PBS command with the test prefix."""
    return subprocess.run([*PREFIX, *argv], capture_output=True, text=True, timeout=60,
                          check=check)


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
    """wflp-systems.toml with "pbs" (this machine) and, given SSH settings, "pbs_ssh"
    (the same commands through SSH to 127.0.0.1). Jobs poll every second."""
    prefix = "[" + ", ".join(q(w) for w in PREFIX) + "]"
    text = textwrap.dedent(f"""
        [systems.pbs]
        scheduler = "pbs"
        python = {q(sys.executable)}
        remote_root = {q(str(root / "jobs"))}
        command_prefix = {prefix}
        poll_interval = 1
    """)
    if ssh is not None:
        text += textwrap.dedent(f"""
            [systems.pbs_ssh]
            scheduler = "pbs"
            host = {q(ssh["host"])}
            identity_file = {q(ssh["key"])}
            known_hosts = {q(ssh["known_hosts"])}
            python = {q(sys.executable)}
            remote_root = {q(str(root / "ssh-jobs"))}
            command_prefix = {prefix}
            poll_interval = 1
            reconnect_attempts = 2
        """)
    if not PREFIX:
        text = text.replace("command_prefix = []\n", "")
    path = folder / "wflp-systems.toml"
    path.write_text(text + textwrap.dedent(extra))
    return path


def q(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
