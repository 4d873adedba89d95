"""Which Python runs a job: a local system defaults to the driver's own interpreter, and a job
whose Python cannot import wflp fails saying so (not "killed, or out of memory?")."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
from wflp.remote import submit
from wflp.remote.config import SystemConfig
from wflp.remote.jobs import RemoteJobError


def _add(a, b):
    return a + b


def test_a_local_system_runs_jobs_with_the_drivers_interpreter():
    local = SystemConfig(name="ws", scheduler="local", source="test")
    assert local.interpreter == sys.executable
    remote = SystemConfig(name="far", scheduler="slurm", source="test", host="me@far")
    assert remote.interpreter == "python3"
    chosen = SystemConfig(name="ws", scheduler="local", source="test", python="/opt/py3")
    assert chosen.interpreter == "/opt/py3"


def test_a_local_system_without_python_runs_a_job(remote_env, tmp_path):
    (remote_env / "wflp-systems.toml").write_text(  # no python = ...: the driver's is used
        f'[systems.ws]\nscheduler = "local"\nremote_root = "{tmp_path}/jobs"\n')
    assert submit(_add, args=(2, 3), system="ws").result(timeout="2m") == 5


def test_a_job_whose_python_lacks_wflp_says_so(remote_env, tmp_path):
    fake = tmp_path / "python-without-wflp"
    # an interpreter without wflp: what `python3` from PATH gave before (a Python of the
    # system, not the virtual environment's)
    fake.write_text("#!/bin/sh\necho \"Traceback (most recent call last):\" >&2\n"
                    "echo \"ModuleNotFoundError: No module named 'wflp'\" >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    (remote_env / "wflp-systems.toml").write_text(
        f'[systems.ws]\nscheduler = "local"\npython = "{fake}"\n'
        f'remote_root = "{tmp_path}/jobs"\n')
    job = submit(_add, args=(2, 3), system="ws")
    with pytest.raises(RemoteJobError, match=r"could not import what it needs "
                                             r"\(ModuleNotFoundError: No module named 'wflp'\)"
                                             r".*set `python = \.\.\.` of system 'ws'"):
        job.result(timeout="2m")
    assert Path(fake).exists()
