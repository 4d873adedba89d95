"""Queued jobs through PBS-syntax qsub/qstat/qdel (Slurm's Torque wrappers over the real test
Slurm: scripts/services/pbs.sh), from this machine and over SSH to 127.0.0.1: results, an
operation split into jobs, cancel (wflp's and qdel), failures, walltime and memory limits,
a killed driver, suspended jobs, unknown ids. Faults are injected for real.

The wrappers show every finished job as `C` with no exit status, so the dialect reads the
stderr of jobs that ended without their result (as it does for PBS's own
"=>> PBS: job killed: walltime ..." lines)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from pbs_helpers import ROOT, pbs
from wflp.remote import manager, submit
from wflp.remote.jobs import RemoteJobError, scheduler_for
from wflp.testing import scaled
from wflp.testing_remote import (
    add,
    check_killed_between_submit_and_store_makes_no_duplicate,
    check_killed_driver_rerun_submits_nothing,
    check_operation_split_gives_the_local_bytes,
    die,
    hog,
    nap,
    row_of,
    started,
    wait_until,
)


def job_state(job_id):
    m = re.search(r"job_state = (\w)", pbs("qstat", "-f", job_id).stdout)
    return m.group(1) if m else ""


# -- the basics ---------------------------------------------------------------------------

def test_function_job_result_comes_back(system):
    job = submit(add, args=(20, 22), system=system,
                 resources={"max_time": "5m", "max_memory": "500M"})
    assert job.result(timeout=scaled(120)) == 42
    row = row_of(job)
    assert re.fullmatch(r"\d+(\.\S+)?", row.scheduler_id)
    script = Path(row.remote_dir, "job.sh").read_text()
    assert "#PBS -l walltime=0:05:00" in script and "#PBS -l nodes=1:ppn=1" in script
    assert "#PBS -l mem=500mb" in script and f"#PBS -N {row.name}" in script
    wait_until(lambda: job_state(row.scheduler_id) == "C", 60, "qstat to say C")
    again = submit(add, args=(20, 22), system=system,
                   resources={"max_time": "5m", "max_memory": "500M"})
    assert again.id == job.id and again.result() == 42  # found, not submitted again
    assert len(manager().store.select()) == 1


def test_operation_of_40_items_5_per_job_gives_the_local_bytes(system):
    check_operation_split_gives_the_local_bytes(system)


def test_unknown_ids_do_not_hide_the_known_ones(system):
    job = submit(nap, args=(300, "known"), system=system, resources={"max_time": "10m"})
    wait_until(lambda: started(job), 60, "the job to start")
    config = manager().system(system)
    sched = scheduler_for(config)
    known = row_of(job).scheduler_id
    alone = manager()._run(config, sched.status_command(["999999992"]))
    assert alone.returncode == 153 and sched.parse_status(alone, ["999999992"]) == {}
    mixed = manager()._run(config, sched.status_command([known, "999999992"]))
    got = sched.parse_status(mixed, [known, "999999992"])
    assert list(got) == [known] and got[known].state.value == "running"
    job.cancel()


# -- cancel ---------------------------------------------------------------------------------

def test_cancel_by_wflp_and_by_qdel(system):
    ours = submit(nap, args=(300, "ours"), system=system, resources={"max_time": "10m"})
    theirs = submit(nap, args=(300, "theirs"), system=system, resources={"max_time": "10m"})
    wait_until(lambda: started(ours) and started(theirs), 60, "both jobs to start")
    ours.cancel()
    assert row_of(ours).state == "cancelled"
    pbs("qdel", row_of(theirs).scheduler_id, check=True)
    with pytest.raises(RemoteJobError, match=r"ended as cancelled \(C \(ended; PBS gives no "
                                             r"exit status\); its stderr says: .*CANCELLED AT"):
        theirs.result(timeout=scaled(60))  # from its stderr: no wflp marker asked for it


def test_cancelling_an_id_pbs_does_not_know_is_reported(system):
    config = manager().system(system)
    sched = scheduler_for(config)
    problems = sched.parse_cancel(manager()._run(config, sched.cancel_command(["999999993"])),
                                  ["999999993"])
    assert "exited with 1" in problems["999999993"]
    assert "it may have ended already" in problems["999999993"]


# -- failures and limits -------------------------------------------------------------------

def test_nonzero_exit_is_failed_with_the_stderr_path(system):
    job = submit(die, args=(3,), system=system, resources={"max_time": "5m"})
    row = row_of(job)
    with pytest.raises(RemoteJobError, match=rf"ended as failed \(the job's process exited "
                                             rf"with status 3\).*stderr "
                                             rf"{re.escape(row.remote_dir)}/stderr"):
        job.result(timeout=scaled(120))


def test_memory_kill_is_out_of_memory(system):
    job = submit(hog, args=(800, 30), system=system,
                 resources={"max_time": "5m", "max_memory": "200M"})
    with pytest.raises(RemoteJobError, match=r"ended as out_of_memory \(C \(ended; PBS gives "
                                             r"no exit status\); its stderr says: .*xceeded"):
        job.result(timeout=scaled(120))


@pytest.mark.slow
def test_job_over_a_one_minute_walltime_is_a_timeout(both):
    start = time.monotonic()
    jobs = [submit(nap, args=(600, name), system=name, resources={"max_time": "1m"})
            for name in both]
    for job in jobs:
        with pytest.raises(RemoteJobError, match=r"ended as timeout \(C .*DUE TO TIME LIMIT"):
            job.result(timeout=scaled(240))
    assert 55 < time.monotonic() - start < scaled(200)  # Slurm's kill comes past the 1m


def test_an_output_path_pbs_cannot_take_is_refused_before_submitting(project, tmp_path):
    from pbs_helpers import require_pbs, write_systems
    from wflp.remote.scheduler import SchedulerError

    require_pbs()
    write_systems(project, tmp_path / "a b $(touch PWNED)")
    with pytest.raises(SchedulerError, match=r"PBS cannot take the job's output path "
                                             r"'.*a b \$\(touch PWNED\).*/stdout'"):
        submit(add, args=(1, 2), system="pbs")
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    assert manager().store.select() == []  # nothing reached qsub, and no row is left


# -- a killed driver --------------------------------------------------------------------------

def test_driver_killed_after_submitting_10_jobs_rerun_submits_nothing(system):
    check_killed_driver_rerun_submits_nothing(system)


def test_driver_killed_between_submit_and_storing_the_id_makes_no_duplicate(system, tmp_path):
    check_killed_between_submit_and_store_makes_no_duplicate(system, tmp_path)


# -- suspended ----------------------------------------------------------------------------------

def test_a_suspended_job_is_held(system):
    job = submit(nap, args=(600, "suspended"), system=system, resources={"max_time": "10m"})
    wait_until(lambda: job.state == "running" and started(job), 60, "the job to run")
    sequence = row_of(job).scheduler_id.split(".")[0]
    subprocess.run(["scontrol", "suspend", sequence], check=True,
                   timeout=scaled(60))  # Slurm beneath
    assert job.refresh().state == "held" and row_of(job).reason == "S (suspended)"
    subprocess.run(["scontrol", "resume", sequence], check=True, timeout=scaled(60))
    assert job.refresh().state == "running"
    job.cancel()


def test_the_services_script_reports_the_pbs_commands_alive():
    from pbs_helpers import require_pbs

    require_pbs()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "services" / "pbs.sh"), "status"],
                         capture_output=True, text=True, timeout=scaled(60))
    assert out.returncode == 0
