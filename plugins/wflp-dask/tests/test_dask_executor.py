"""The "dask" executor on a real LocalCluster of 2 worker processes: same bytes as a serial
run, constructor-tuple calculators built once per worker, a worker SIGKILLed mid-run, a
driver SIGKILLed mid-run and its rerun computing only the missing chunks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import ase.io
import pytest
from ase.calculators.emt import EMT
from dask_helpers import CountingEMT, logged_shift, rattled_cu, read_log
from wflp import AutoparaInfo, ConfigSet, OutputSpec
from wflp.engine.executor import capability, resolve_executor
from wflp.engine.stage import Stage, parse_chunk_name
from wflp.errors import ParameterError
from wflp.ops import calculate
from wflp.testing import scaled, wait_until
from wflp_dask.executor import DaskExecutor, _clusters

HERE = Path(__file__).resolve().parent
DASK2 = AutoparaInfo(num_python_subprocesses=2, executor="dask")


def test_dask_is_registered_with_its_capabilities():
    local = resolve_executor(DASK2.resolved())
    assert isinstance(local, DaskExecutor)
    assert capability(local, "shares_files") and not capability(local, "in_process")
    remote = resolve_executor(AutoparaInfo(executor="dask", executor_options={
        "address": "tcp://10.0.0.5:8786"}).resolved())
    assert not capability(remote, "shares_files")  # results come back with each task
    told = DaskExecutor(address="tcp://10.0.0.5:8786", shares_files=True)
    assert capability(told, "shares_files")


@pytest.mark.parametrize("options, message", [
    ({"address": "tcp://a:1", "system": "x"}, "not both"),
    ({"address": "10.0.0.5"}, "'address' must be a scheduler address"),
    ({"retries": -1}, "'retries' must be a whole number"),
    ({"workers": 2}, "describe the jobs of a 'system'"),
    ({"shares_files": "yes"}, "'shares_files' must be True or False"),
    ({"resources": [1]}, "'resources' must be a dict"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(ParameterError, match=message):
        resolve_executor(AutoparaInfo(executor="dask", executor_options=options).resolved())


def _serial_bytes(tmp_path, log):
    out = tmp_path / "serial.xyz"
    logged_shift(ConfigSet(tmp_path / "in.xyz"), OutputSpec(out), log=str(log))
    return out.read_bytes()


@pytest.mark.slow
def test_local_cluster_gives_the_serial_bytes_and_builds_calculators_once_per_worker(
        tmp_path):
    ase.io.write(tmp_path / "in.xyz", rattled_cu(160))
    serial = tmp_path / "serial.xyz"
    calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(serial), calculator=EMT(),
              prefix="E_")
    built = tmp_path / "built.log"
    out = tmp_path / "dask.xyz"
    info = AutoparaInfo(num_python_subprocesses=2, executor="dask",
                        num_inputs_per_python_subprocess=32)
    calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(out),
              calculator=(CountingEMT, [str(built)], {}), prefix="E_", autopara_info=info)
    assert out.read_bytes() == serial.read_bytes()
    builders = built.read_text().split()
    # 5 chunks, but each worker process built the calculator once and kept it
    assert len(builders) == len(set(builders)) <= 2
    assert str(os.getpid()) not in builders  # built in the workers, not here
    # in memory: the results come back in input order
    got = calculate(rattled_cu(40), OutputSpec(), calculator=EMT(), prefix="E_",
                    autopara_info=info)
    want = calculate(rattled_cu(40), OutputSpec(), calculator=EMT(), prefix="E_")
    assert [a.info["E_energy"] for a in got] == [a.info["E_energy"] for a in want]
    # the cluster is reused, and its workers still hold the calculators they built
    calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "again.xyz"),
              calculator=(CountingEMT, [str(built)], {}), prefix="E_", autopara_info=info)
    assert built.read_text().split() == builders


def _worker_pids() -> set[int]:
    entry = next(e for k, e in _clusters._entries.items() if k[0] == "local")
    return set(entry.client.run(os.getpid).values())


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_a_complete_identical_output(tmp_path):
    n = 60
    ase.io.write(tmp_path / "in.xyz", rattled_cu(n))
    serial = _serial_bytes(tmp_path, tmp_path / "serial.log")
    log = tmp_path / "calls.log"
    info = AutoparaInfo(num_python_subprocesses=2, executor="dask",
                        num_inputs_per_python_subprocess=4)
    # start the cluster (or reuse it) so that its worker pids are known before the run
    logged_shift(rattled_cu(2), OutputSpec(), log=str(tmp_path / "warm.log"),
                 autopara_info=info)
    workers = _worker_pids()
    killed: list[int] = []

    def kill_one_mid_run() -> None:
        # the first worker that has logged an item of this run and not yet its last chunk
        def victim():
            seen = [pid for _i, pid in read_log(log) if pid in workers]
            return seen[-1] if len(seen) >= 6 else None
        wait_until(lambda: victim() is not None, scaled(120), "items computed by a worker",
                   interval=0.002)
        pid = victim()
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_one_mid_run, daemon=True)
    killer.start()
    out = tmp_path / "dask.xyz"
    logged_shift(ConfigSet(tmp_path / "in.xyz"), OutputSpec(out), log=str(log),
                 work=200000, autopara_info=info)
    killer.join(timeout=scaled(60))
    assert killed, "no worker was killed"
    assert out.read_bytes() == serial
    calls = read_log(log)
    assert {i for i, _ in calls} == set(range(n))
    # the nanny replaced the killed worker: two workers again, the killed one not among them
    wait_until(lambda: len(_worker_pids()) == 2, scaled(120), "a replacement worker")
    assert killed[0] not in _worker_pids()


DRIVER = textwrap.dedent("""
    import sys
    from wflp import AutoparaInfo, ConfigSet, OutputSpec
    from dask_helpers import logged_shift

    if __name__ == "__main__":
        work, log = sys.argv[1], sys.argv[2]
        logged_shift(ConfigSet(work + "/in.xyz"), OutputSpec(work + "/out.xyz"), log=log,
                     work=200000,
                     autopara_info=AutoparaInfo(num_python_subprocesses=2, executor="dask",
                                                num_inputs_per_python_subprocess=4))
""")


def _driver(tmp_path, log):
    env = {**os.environ, "WFLP_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(tmp_path),
                             str(log)], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_a_killed_driver_is_resumed_computing_only_the_missing_chunks(tmp_path):
    import psutil

    n = 48
    ase.io.write(tmp_path / "in.xyz", rattled_cu(n))
    serial = _serial_bytes(tmp_path, tmp_path / "serial.log")
    (tmp_path / "driver.py").write_text(DRIVER)
    stage = Stage.folder_for(tmp_path / "out.xyz")

    def chunks_done():
        if not stage.exists():
            return []
        return [c for c in map(parse_chunk_name, os.listdir(stage)) if c is not None]

    log = tmp_path / "calls.log"  # a parameter: the same for both runs
    proc = _driver(tmp_path, log)
    # killed once two chunks are finished and more items are under way
    wait_until(lambda: proc.poll() is not None or (
        len(chunks_done()) >= 2 and len(read_log(log)) >= 12),
        scaled(180), "two finished chunks of the first run", interval=0.005)
    assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
    workers = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # its workers end with it: nothing more is written after this
    wait_until(lambda: not [p for p in workers if _running(p)], scaled(60),
               "the killed driver's workers to end")
    done = {i for c in chunks_done() for i in range(c[2], c[3])}
    assert 8 <= len(done) < n
    assert not (tmp_path / "out.xyz").exists()

    before = len(read_log(log))
    proc = _driver(tmp_path, log)
    _out, err = proc.communicate(timeout=scaled(300))
    assert proc.returncode == 0, err.decode()[-3000:]
    assert (tmp_path / "out.xyz").read_bytes() == serial
    recomputed = sorted(i for i, _ in read_log(log)[before:])
    assert recomputed == sorted(set(range(n)) - done)  # only the missing chunks, once each


def _running(proc) -> bool:
    """Whether the psutil process *proc* still runs (a zombie, or one reaped between two
    questions, does not)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
