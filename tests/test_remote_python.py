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


def test_a_refused_connection_leaves_no_job_row_behind(remote_env, tmp_path):
    import socket

    from wflp.remote import manager
    from wflp.remote.transport import TransportError

    with socket.socket() as s:  # a port nothing listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "known_hosts").write_text("")
    (remote_env / "wflp-systems.toml").write_text(
        f'[systems.far]\nscheduler = "local"\nhost = "me@127.0.0.1:{port}"\n'
        f'remote_root = "/tmp/never"\nknown_hosts = "{tmp_path / "known_hosts"}"\n'
        "reconnect_attempts = 1\nconnect_timeout = 5\n")
    with pytest.raises(TransportError):
        submit(_add, args=(1, 2), system="far")
    assert manager().store.select() == []  # nothing in "preparing" forever


def test_rows_left_in_preparing_can_be_cancelled_and_cleaned(remote_env, tmp_path):
    from wflp.remote import manager
    from wflp.remote.store import PREPARING

    (remote_env / "wflp-systems.toml").write_text(
        f'[systems.ws]\nscheduler = "local"\nremote_root = "{tmp_path}/jobs"\n')
    jm = manager()
    stuck, _ = jm.store.get_or_create(   # as an older wflp left it after a refused SSH
        "k1", name="stuck-1", kind="call", system="ws", scheduler="local",
        remote_dir=str(tmp_path / "jobs/ws/stuck-1"), local_dir=str(tmp_path / "jobs/ws/stuck-1"),
        resources={})
    assert stuck.state == PREPARING
    assert jm.cancel([stuck]) == {}
    assert jm.store.get(stuck.id).state == "cancelled"
    other, _ = jm.store.get_or_create(
        "k2", name="stuck-2", kind="call", system="ws", scheduler="local",
        remote_dir=str(tmp_path / "jobs/ws/stuck-2"), local_dir=str(tmp_path / "jobs/ws/stuck-2"),
        resources={})
    assert jm.clean([jm.store.get(other.id)]) == [other.id]
    assert jm.store.get(other.id) is None
