"""dask-jobqueue clusters from systems of wflp-systems.toml: the job script a system gives
(no scheduler needed), systems that cannot start Dask workers, and a real SLURMCluster
whose workers are Slurm jobs on this machine (the CI's Slurm, on loopback)."""

from __future__ import annotations

import sys
from pathlib import Path

import ase.io
import pytest
from ase.calculators.emt import EMT
from dask_helpers import rattled_cu
from wflp import AutoparaInfo, ConfigSet, OutputSpec
from wflp.errors import ParameterError
from wflp.ops import calculate
from wflp.remote.config import get_system
from wflp.testing import scaled
from wflp_dask.executor import close_clusters, jobqueue_arguments

ROOT = Path(__file__).resolve().parents[3]  # the wflp checkout
HOW = ("start the test Slurm as root: bash scripts/services/slurm.sh install && "
       "bash scripts/services/slurm.sh start")

SYSTEMS = f"""
[systems.hpc]
scheduler = "slurm"
python = "/opt/venv/bin/python"
commands = ["module load foo"]
header = ["#SBATCH --account=abc", "--qos=short"]

[systems.hpc.partitions.short]
cores = 8
max_time = "2h"
max_memory = "16G"

[systems.far]
scheduler = "slurm"
host = "me@login.example.org"

[systems.ws]
scheduler = "local"
python = "{sys.executable}"
"""


@pytest.fixture
def systems(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wflp-systems.toml").write_text(SYSTEMS)


def test_a_system_gives_the_worker_jobs_its_python_header_and_resources(systems, tmp_path):
    system = get_system("hpc")
    name, kwargs, jobs = jobqueue_arguments(
        system, 5, {"num_cores": 2, "partition": "short"}, {"log_directory": str(tmp_path)})
    assert (name, jobs) == ("SLURMCluster", 3)  # 5 workers, 2 per job
    assert kwargs["python"] == "/opt/venv/bin/python"
    assert kwargs["memory"] == "16384MiB" and kwargs["walltime"] == "2:00:00"
    import dask_jobqueue

    cluster = getattr(dask_jobqueue, name)(**kwargs)  # a real one: its job script
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    assert "#SBATCH --account=abc" in lines and "#SBATCH --qos=short" in lines
    assert "#SBATCH -p short" in lines and "#SBATCH -t 2:00:00" in lines
    assert "module load foo" in lines
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert worker.startswith("/opt/venv/bin/python ") and "--nworkers 2" in worker
    assert "--nthreads 1" in worker


@pytest.mark.parametrize("name, resources, message", [
    ("far", None, "reached over SSH"),
    ("hpc", {"partition": "long"}, "has no partition 'long'"),
    ("hpc", {"num_cores": 9, "partition": "short"}, "9 cores asked"),
])
def test_systems_that_cannot_start_workers_are_refused(systems, name, resources, message):
    with pytest.raises(ParameterError, match=message):
        jobqueue_arguments(get_system(name), 2, resources, None)


@pytest.mark.slow
def test_a_local_system_gives_a_local_cluster(systems, tmp_path):
    ase.io.write(tmp_path / "in.xyz", rattled_cu(40))
    calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "serial.xyz"),
              calculator=EMT(), prefix="E_")
    info = AutoparaInfo(num_python_subprocesses=2, executor="dask",
                        executor_options={"system": "ws"})
    calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "dask.xyz"),
              calculator=EMT(), prefix="E_", autopara_info=info)
    assert (tmp_path / "dask.xyz").read_bytes() == (tmp_path / "serial.xyz").read_bytes()


def _require_slurm() -> None:
    """The CI's Slurm (scripts/services/slurm.sh): skip with how to start it; under CI=true
    fail, since CI starts it."""
    import subprocess

    from wflp.testing import require_program
    from wflp.testing_remote import missing

    for program in ("sbatch", "squeue", "scancel", "scontrol"):
        require_program(program, HOW)
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        ping = None
    if ping is None or ping.returncode != 0 or "is UP" not in ping.stdout:
        missing("a running Slurm controller (`scontrol ping`)", HOW)


@pytest.mark.slow
def test_a_slurm_cluster_runs_chunks_in_slurm_jobs(tmp_path, monkeypatch):
    """Two dask workers, each a Slurm job of one core, reach the scheduler on loopback and
    compute the chunks; the output is a serial run's bytes."""
    _require_slurm()
    from wflp.testing_remote import write_systems

    monkeypatch.chdir(tmp_path)
    write_systems(tmp_path, tmp_path, "slurm")
    ase.io.write(tmp_path / "in.xyz", rattled_cu(64))
    calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "serial.xyz"),
              calculator=EMT(), prefix="E_")
    info = AutoparaInfo(num_python_subprocesses=2, executor="dask",
                        num_inputs_per_python_subprocess=32, executor_options={
                            "system": "slurm", "worker_timeout": scaled(300),
                            "resources": {"num_cores": 1, "max_time": "10m",
                                          "max_memory": "500M"},
                            "cluster_options": {"interface": "lo",
                                                "log_directory": str(tmp_path / "logs")}})
    try:
        calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "dask.xyz"),
                  calculator=EMT(), prefix="E_", autopara_info=info)
        from wflp_dask.executor import _clusters

        entry = next(e for k, e in _clusters._entries.items() if k[0] == "system")
        hosts = entry.client.run(lambda: __import__("os").environ.get("SLURM_JOB_ID"))
        assert hosts and all(job_id for job_id in hosts.values()), hosts  # in Slurm jobs
    finally:
        close_clusters()  # cancels the worker jobs
    assert (tmp_path / "dask.xyz").read_bytes() == (tmp_path / "serial.xyz").read_bytes()
