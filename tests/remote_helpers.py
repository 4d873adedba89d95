"""Shared set-up of the remote-execution tests: systems files, the SSH test server."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path


def ssh_settings() -> dict:
    """The test sshd's settings (scripts/services/sshd.sh start writes them), or skip
    with how to enable it (a failure under CI=true: CI starts it)."""
    from wflp.testing import _missing

    host = os.environ.get("WFLP_TEST_SSH_HOST")
    env_file = Path(os.environ.get("WFLP_TEST_SSHD_DIR", "/tmp/wflp-sshd")) / "env"
    if not host and env_file.is_file():
        values = {}
        for line in env_file.read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                values[key] = value.strip().strip('"')
        host = values.get("WFLP_TEST_SSH_HOST")
        if host:
            return {"host": host, "key": values["WFLP_TEST_SSH_KEY"],
                    "known_hosts": values["WFLP_TEST_SSH_KNOWN_HOSTS"],
                    "dir": values.get("WFLP_TEST_SSHD_DIR", str(env_file.parent))}
    if not host:
        _missing("the test SSH server (127.0.0.1)",
                 "bash scripts/services/sshd.sh start (needs openssh-server)")
    return {"host": host, "key": os.environ["WFLP_TEST_SSH_KEY"],
            "known_hosts": os.environ["WFLP_TEST_SSH_KNOWN_HOSTS"],
            "dir": os.environ.get("WFLP_TEST_SSHD_DIR", "/tmp/wflp-sshd")}


def write_systems(folder: Path, root: Path, ssh: dict | None = None, extra: str = "") -> Path:
    """A project-local wflp-systems.toml: system "ws" (local), and "remote" (local
    scheduler over SSH to 127.0.0.1) when *ssh* settings are given."""
    text = textwrap.dedent(f"""
        [systems.ws]
        scheduler = "local"
        python = {_q(sys.executable)}
        remote_root = {_q(str(root / "ws-jobs"))}
    """)
    if ssh is not None:
        text += textwrap.dedent(f"""
            [systems.remote]
            scheduler = "local"
            host = {_q(ssh["host"])}
            identity_file = {_q(ssh["key"])}
            known_hosts = {_q(ssh["known_hosts"])}
            python = {_q(sys.executable)}
            remote_root = {_q(str(root / "ssh-jobs"))}
            reconnect_attempts = 2
        """)
    path = folder / "wflp-systems.toml"
    path.write_text(text + textwrap.dedent(extra))
    return path


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
