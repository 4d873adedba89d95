"""Queued jobs on a system reached over SSH (a real sshd on 127.0.0.1, key-only, with a
known_hosts entry): functions, operations, host keys, a dropped connection, odd names.

Every deadline is generous for a loaded 2-core machine and scaled by WFLP_TEST_TIMEOUT_SCALE
(wflp.testing.scaled)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import ase.io
import psutil
import pytest
from helpers import rattled_cu
from remote_helpers import ssh_settings, write_systems
from wflp import AutoparaInfo, ConfigSet, OutputSpec, RemoteInfo
from wflp.remote import manager, submit
from wflp.remote.transport import TransportError, close_transports
from wflp.testing import scaled

ROOT = Path(__file__).resolve().parents[1]

#: How long a small job may take from submission to its result over SSH, times
#: WFLP_TEST_TIMEOUT_SCALE.
JOB_S = 120.0


def add(a, b):
    return a + b


def nap(seconds):
    time.sleep(seconds)
    return seconds


def _shift(at, by):
    at.positions += by
    return at


@pytest.fixture
def ssh(remote_env, tmp_path):
    settings = ssh_settings()
    write_systems(remote_env, tmp_path, ssh=settings)
    return settings


def test_function_job_over_ssh(ssh):
    job = submit(add, args=(20, 22), system="remote", resources={"max_time": "5m"})
    assert job.result(timeout=scaled(JOB_S)) == 42
    row = manager().store.get(job.id)
    assert stat.S_IMODE(os.stat(row.remote_dir).st_mode) == 0o700
    assert row.local_dir != row.remote_dir  # a local copy of what was sent


def test_operation_over_ssh_gives_the_local_bytes(ssh):
    from wflp.ops import map

    ase.io.write("in.xyz", rattled_cu(12))
    map(ConfigSet("in.xyz"), OutputSpec("local.xyz"), _shift, args=(0.01,))
    remote = RemoteInfo(system="remote", num_inputs_per_queued_job=4, timeout=scaled(300))
    map(ConfigSet("in.xyz"), OutputSpec("remote.xyz"), _shift, args=(0.01,),
        autopara_info=AutoparaInfo(remote_info=remote))
    assert Path("remote.xyz").read_bytes() == Path("local.xyz").read_bytes()
    assert len(manager().store.select()) == 3


def test_unknown_host_key_is_refused(ssh, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    text = Path("wflp-systems.toml").read_text().replace(ssh["known_hosts"], str(empty))
    Path("wflp-systems.toml").write_text(text)
    with pytest.raises(TransportError, match=r"host key of .* is not in .*empty_known_hosts.*"
                                             r"ssh-keyscan -p \d+ 127\.0\.0\.1"):
        submit(add, args=(1, 2), system="remote")


def test_changed_host_key_is_refused(ssh, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    host_port = Path(ssh["known_hosts"]).read_text().split()[0]
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"{host_port} {' '.join(Path(f'{other}.pub').read_text().split()[:2])}\n")
    text = Path("wflp-systems.toml").read_text().replace(ssh["known_hosts"], str(wrong))
    Path("wflp-systems.toml").write_text(text)
    with pytest.raises(TransportError, match="changed"):
        submit(add, args=(1, 2), system="remote")


def test_odd_names_and_paths_over_ssh(remote_env, tmp_path):
    settings = ssh_settings()
    weird = tmp_path / "a b 'q' $(touch PWNED)"
    write_systems(remote_env, weird, ssh=settings)
    job = submit(add, args=(2, 2), system="remote", job_name="n $(touch PWNED2) ';'")
    assert job.result(timeout=scaled(JOB_S)) == 4
    assert not list(tmp_path.rglob("PWNED*"))
    row = manager().store.get(job.id)
    assert row.remote_dir.startswith(str(weird))


def _sshd_processes(settings) -> list:
    pid = int(Path(settings["dir"], "sshd.pid").read_text())
    master = psutil.Process(pid)
    return [master, *master.children(recursive=True)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sshd(command: str, folder: Path, port: int) -> None:
    """scripts/services/sshd.sh COMMAND for a private sshd in *folder* on *port*."""
    env = {**os.environ, "WFLP_SSHD_DIR": str(folder), "WFLP_SSHD_PORT": str(port)}
    subprocess.run(["bash", str(ROOT / "scripts" / "services" / "sshd.sh"), command],
                   check=True, env=env, capture_output=True, timeout=scaled(JOB_S))


@pytest.fixture
def own_sshd(remote_env, tmp_path):
    """An sshd of this test's own (the services' script, another folder and port): killing
    it must not drop the connections of the suites that run beside this one (scripts/test.sh)
    through the shared test sshd."""
    ssh_settings()  # skips (or fails under CI) with how to enable sshd when it is missing
    folder, port = tmp_path / "sshd", _free_port()
    _sshd("start", folder, port)
    env = dict(line[len("export "):].split("=", 1) for line in
               (folder / "env").read_text().splitlines() if line.startswith("export "))
    settings = {"host": env["WFLP_TEST_SSH_HOST"].strip('"'),
                "key": env["WFLP_TEST_SSH_KEY"].strip('"'),
                "known_hosts": env["WFLP_TEST_SSH_KNOWN_HOSTS"].strip('"'),
                "dir": str(folder), "port": port}
    write_systems(remote_env, tmp_path, ssh=settings)
    yield settings
    close_transports()
    _sshd("stop", folder, port)


@pytest.mark.slow
def test_sshd_stopped_during_a_wait_then_restarted(own_sshd):
    job = submit(nap, args=(3,), system="remote")
    killed = _sshd_processes(own_sshd)  # the server and every open connection
    for proc in killed:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    # gone, not just signalled: on a loaded machine a killed server may not have run its
    # exit yet, and its listening socket would take (and then reset) a reconnection
    psutil.wait_procs(killed, timeout=scaled(30))
    bound = scaled(30)  # 2 attempts, one back-off; unbounded retries would go on to the wait's
    start = time.monotonic()  # end (4 x bound) and fail there
    try:
        with pytest.raises(TransportError, match=r"cannot be reached after 2 attempts.*"
                                                 r"jobs already submitted are kept"):
            job.result(timeout=4 * bound)
        assert time.monotonic() - start < bound  # bounded retries
    finally:
        _sshd("start", Path(own_sshd["dir"]), own_sshd["port"])
    close_transports()
    again = submit(nap, args=(3,), system="remote")  # the rerun: found, not resubmitted
    assert again.id == job.id
    assert again.result(timeout=scaled(JOB_S)) == 3
