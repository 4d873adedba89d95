"""Queued jobs on a real Grid Engine (scripts/services/sge.sh: Son of Grid Engine 8.1.9 in a
loopback-only network namespace, reached with the command prefix `ip netns exec sge`), from
this machine and over SSH to 127.0.0.1: results, an operation split into jobs, cancel
(wflp's and qdel), failures, the h_rt limit, a killed driver, held, suspended and error
(Eqw) jobs. Faults are injected for real; qacct says how finished jobs ended."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sge_helpers import ROOT, require_sge, sge
from wflp.remote import manager, submit
from wflp.remote.jobs import RemoteJobError
from wflp.testing import scaled
from wflp.testing_remote import (
    add,
    check_killed_between_submit_and_store_makes_no_duplicate,
    check_killed_driver_rerun_submits_nothing,
    check_operation_split_gives_the_local_bytes,
    die,
    nap,
    row_of,
    started,
    wait_until,
)


def qstat_state(job_id):
    """The job's state letters in qstat (z: finished), "" when it is not listed."""
    xml = sge("qstat", "-s", "prsz", "-u", "*", "-xml").stdout
    for block in xml.split("<job_list")[1:]:
        if f"<JB_job_number>{job_id}</JB_job_number>" in block:
            return re.search(r"<state>(\w*)</state>", block).group(1)
    return ""


def qacct(job_id):
    out = sge("qacct", "-j", str(job_id)).stdout
    return {line.split()[0]: line.split(None, 1)[1].strip() for line in out.splitlines()
            if len(line.split(None, 1)) == 2}


# -- the basics ---------------------------------------------------------------------------

def test_function_job_result_comes_back(system):
    job = submit(add, args=(20, 22), system=system, resources={"max_time": "5m"})
    assert job.result(timeout=scaled(120)) == 42
    row = row_of(job)
    assert re.fullmatch(r"\d+", row.scheduler_id)
    script = Path(row.remote_dir, "job.sh").read_text()
    assert "#$ -l h_rt=0:05:00" in script and f"#$ -N {row.name}" in script
    # Grid Engine ran it, and its accounting says it ended well
    record = wait_until(lambda: qacct(row.scheduler_id).get("exit_status"), 60, "qacct")
    assert record.startswith("0") and qacct(row.scheduler_id)["failed"].startswith("0")
    again = submit(add, args=(20, 22), system=system, resources={"max_time": "5m"})
    assert again.id == job.id and again.result() == 42  # found, not submitted again
    assert len(manager().store.select()) == 1


def test_operation_of_40_items_5_per_job_gives_the_local_bytes(system):
    check_operation_split_gives_the_local_bytes(system)


# -- cancel ---------------------------------------------------------------------------------

def test_cancel_by_wflp_and_by_qdel(system):
    ours = submit(nap, args=(300, "ours"), system=system, resources={"max_time": "10m"})
    theirs = submit(nap, args=(300, "theirs"), system=system, resources={"max_time": "10m"})
    wait_until(lambda: started(ours) and started(theirs), 60, "both jobs to start")
    ours.cancel()
    assert row_of(ours).state == "cancelled"
    sge("qdel", row_of(theirs).scheduler_id, check=True)
    with pytest.raises(RemoteJobError, match=r"ended as cancelled \(qacct: failed 100 "
                                             r"\(assumedly after job\), exit_status 137"):
        theirs.result(timeout=scaled(60))  # qacct's word: no wflp marker asked for it


def test_cancelling_jobs_grid_engine_cannot_cancel_is_reported(system):
    from wflp.remote.jobs import scheduler_for

    done = submit(add, args=(1, 2), system=system)
    done.result(timeout=scaled(120))
    finished = row_of(done).scheduler_id
    wait_until(lambda: qstat_state(finished) in ("z", ""), 60, "the job to end")
    config = manager().system(system)
    sched = scheduler_for(config)
    ids = [finished, "999991"]
    problems = sched.parse_cancel(manager()._run(config, sched.cancel_command(ids)), ids)
    assert set(problems) == {finished, "999991"}
    assert all("does not know it" in p for p in problems.values())


# -- failures and limits -------------------------------------------------------------------

def test_nonzero_exit_is_failed_with_the_stderr_path(system):
    job = submit(die, args=(3,), system=system, resources={"max_time": "5m"})
    row = row_of(job)
    with pytest.raises(RemoteJobError, match=rf"ended as failed \(the job's process exited "
                                             rf"with status 3\).*stderr "
                                             rf"{re.escape(row.remote_dir)}/stderr"):
        job.result(timeout=scaled(120))


def test_a_job_that_cannot_start_python_is_failed_by_its_accounting(system):
    text = Path("wflp-systems.toml").read_text()
    Path("wflp-systems.toml").write_text(
        text.replace(f'python = "{sys.executable}"', 'python = "/nonexistent/python3"'))
    job = submit(add, args=(1, 2), system=system, resources={"max_time": "5m"})
    with pytest.raises(RemoteJobError, match=r"ended as failed \(qacct: failed 0, "
                                             r"exit_status 127\)"):
        job.result(timeout=scaled(120))
    assert "not found" in Path(row_of(job).remote_dir, "stderr").read_text()


@pytest.mark.slow
def test_job_over_its_h_rt_is_a_timeout(both):
    start = time.monotonic()
    jobs = [submit(nap, args=(600, name), system=name, resources={"max_time": "30s"})
            for name in both]  # here and over SSH at once
    for job in jobs:
        with pytest.raises(RemoteJobError, match=r"ended as timeout \(qacct: failed 37 "
                                                 r"\(qmaster enforced h_rt.*h_rt 30"):
            job.result(timeout=scaled(180))
    assert 28 < time.monotonic() - start < scaled(120)  # qmaster's kill comes past the 30s


# -- a killed driver --------------------------------------------------------------------------

def test_driver_killed_after_submitting_10_jobs_rerun_submits_nothing(system):
    check_killed_driver_rerun_submits_nothing(system)


def test_driver_killed_between_submit_and_storing_the_id_makes_no_duplicate(system, tmp_path):
    check_killed_between_submit_and_store_makes_no_duplicate(system, tmp_path)


# -- held, suspended, error ------------------------------------------------------------------

def test_held_suspended_and_error_jobs(system, tmp_path):
    slots = sge("qconf", "-sq", "all.q", check=True).stdout
    n = int(re.search(r"(?m)^slots\s+(\d+)", slots).group(1))
    blocker = sge("qsub", "-terse", "-b", "y", "-pe", "smp", str(n), "-o", "/dev/null",
                  "-e", "/dev/null", "sleep", f"{scaled(600):.0f}", check=True).stdout.strip()
    try:
        wait_until(lambda: qstat_state(blocker) == "r", 60, "the blocker to run")
        job = submit(nap, args=(600, "held"), system=system, resources={"max_time": "10m"})
        broken = submit(nap, args=(1, "broken"), system=system, resources={"max_time": "10m"})
        assert job.refresh().state == "queued" and row_of(job).reason == "qw"
        sge("qhold", row_of(job).scheduler_id, check=True)
        assert job.refresh().state == "held" and row_of(job).reason == "hqw"
        sge("qrls", row_of(job).scheduler_id, check=True)
        assert job.refresh().state == "queued"
        # a job whose working directory is gone: Grid Engine puts it in error (Eqw)
        folder = Path(row_of(broken).remote_dir)
        folder.rename(tmp_path / "moved-away")
    finally:
        sge("qdel", blocker)
    with pytest.raises(RemoteJobError, match=r"ended as failed \(Eqw \(error state\): it could "
                                             r"not start: error: can't chdir to .*No such "
                                             r"file or directory.*"
                                             rf"qdel {row_of(broken).scheduler_id}"):
        broken.result(timeout=scaled(60))
    assert qstat_state(row_of(broken).scheduler_id) == "Eqw"  # still queued, in error
    wait_until(lambda: job.state == "running" and started(job), 60, "the job to run")
    sge("qmod", "-sj", row_of(job).scheduler_id, check=True)
    assert job.refresh().state == "held" and "suspended" in row_of(job).reason
    sge("qmod", "-usj", row_of(job).scheduler_id, check=True)
    assert job.refresh().state == "running"
    job.cancel()


def test_a_failing_qstat_is_a_clear_error(project, tmp_path):
    require_sge()
    from sge_helpers import write_systems
    from wflp.remote.scheduler import SchedulerError

    write_systems(project, tmp_path)
    job = submit(nap, args=(60, "x"), system="sge", resources={"max_time": "5m"})
    text = Path("wflp-systems.toml").read_text()
    Path("wflp-systems.toml").write_text(text.replace('command_prefix = [', 'command_prefix = '
                                                      '["env", "SGE_CELL=nonexistent", '))
    manager()._systems.clear()
    with pytest.raises(SchedulerError, match=r"qstat failed: `.*SGE_CELL=nonexistent.*qstat "
                                             r"-s prsz -u '\*' -xml` exited with 1: .*"):
        job.result(timeout=scaled(60))


def test_the_services_script_reports_grid_engine_alive():
    require_sge()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "services" / "sge.sh"), "status"],
                         capture_output=True, text=True, timeout=scaled(60))
    assert out.returncode == 0
