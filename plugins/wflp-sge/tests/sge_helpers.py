"""Set-up shared by the wflp-sge tests: is the test Grid Engine up, the systems file, the test
SSH server. A missing service skips a test with how to start it; under CI=true it fails
instead (CI starts every service these tests use).

The test Grid Engine runs in a network namespace: its commands need the prefix
``ip netns exec sge`` ($WFLP_TEST_SGE_PREFIX, words split on spaces; empty for a Grid
Engine reached directly)."""

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
HOW = ("start the test Grid Engine as root: bash scripts/services/sge.sh install && "
       "bash scripts/services/sge.sh start")
HOW_SSH = "bash scripts/services/sshd.sh start (needs openssh-server)"
PREFIX = shlex.split(os.environ.get("WFLP_TEST_SGE_PREFIX", "ip netns exec sge"))


def missing(what: str, how: str) -> None:
    """Skip with how to enable *what*; under CI=true fail (CI must provide it)."""
    message = f"{what} is not available; to run this test: {how}"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


def sge(*argv: str, check: bool = False) -> subprocess.CompletedProcess:
    """A Grid Engine command with the test prefix."""
    return subprocess.run([*PREFIX, *argv], capture_output=True, text=True, timeout=60,
                          check=check)


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
    """wflp-systems.toml with "sge" (this machine) and, given SSH settings, "sge_ssh"
    (the same Grid Engine through SSH to 127.0.0.1). Jobs poll every second."""
    prefix = "[" + ", ".join(q(w) for w in PREFIX) + "]"
    text = textwrap.dedent(f"""
        [systems.sge]
        scheduler = "sge"
        python = {q(sys.executable)}
        remote_root = {q(str(root / "jobs"))}
        command_prefix = {prefix}
        poll_interval = 1
    """)
    if ssh is not None:
        text += textwrap.dedent(f"""
            [systems.sge_ssh]
            scheduler = "sge"
            host = {q(ssh["host"])}
            identity_file = {q(ssh["key"])}
            known_hosts = {q(ssh["known_hosts"])}
            python = {q(sys.executable)}
            remote_root = {q(str(root / "ssh-jobs"))}
            command_prefix = {prefix}
            poll_interval = 1
            reconnect_attempts = 2
        """)
    path = folder / "wflp-systems.toml"
    path.write_text(text + textwrap.dedent(extra))
    return path


def q(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
