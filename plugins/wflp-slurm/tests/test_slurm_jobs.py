"""Queued jobs on a real Slurm (scripts/services/slurm.sh), from this machine and over SSH to
127.0.0.1: results, an operation split into jobs, cancel (wflp's and scancel), failures,
time and memory limits, a killed driver, held and suspended jobs, and what decides when
squeue no longer lists a job (sacct, then the job's markers). Faults are injected for real."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_helpers import ROOT, require_sacct, require_slurm, write_systems
from wflp.remote import manager, submit
from wflp.remote.jobs import RemoteJobError
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


def squeue(job_id):
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", f"{job_id},{job_id}", "-o", "%T"],
                         capture_output=True, text=True, timeout=scaled(60))
    return out.stdout.strip()


# -- the basics ---------------------------------------------------------------------------

def test_function_job_result_comes_back(system):
    job = submit(add, args=(20, 22), system=system,
                 resources={"max_time": "5m", "max_memory": "500M"})
    assert job.result(timeout=scaled(120)) == 42
    row = row_of(job)
    assert re.fullmatch(r"\d+", row.scheduler_id)
    # the result comes with the job's marker, a moment before Slurm sees the job end
    wait_until(lambda: squeue(row.scheduler_id) == "COMPLETED", 60, "Slurm to say COMPLETED")
    script = Path(row.remote_dir, "job.sh").read_text()
    assert "#SBATCH --time=0-00:05:00" in script and "#SBATCH --mem=500M" in script
    assert f"#SBATCH --job-name={row.name}" in script
    again = submit(add, args=(20, 22), system=system,
                   resources={"max_time": "5m", "max_memory": "500M"})
    assert again.id == job.id and again.result() == 42  # found, not submitted again
    assert len(manager().store.select()) == 1


def test_operation_of_40_items_5_per_job_gives_the_local_bytes(system):
    check_operation_split_gives_the_local_bytes(system)


# -- cancel ---------------------------------------------------------------------------------

def test_cancel_by_wflp_and_by_scancel(system):
    ours = submit(nap, args=(300, "ours"), system=system, resources={"max_time": "10m"})
    theirs = submit(nap, args=(300, "theirs"), system=system, resources={"max_time": "10m"})
    wait_until(lambda: started(ours) and started(theirs), 60, "both jobs to start")
    ours.cancel()
    assert row_of(ours).state == "cancelled"
    subprocess.run(["scancel", row_of(theirs).scheduler_id], check=True, timeout=scaled(60))
    with pytest.raises(RemoteJobError, match=r"ended as cancelled \(CANCELLED"):
        theirs.result(timeout=scaled(60))  # Slurm's word: no wflp marker asked for it
    assert squeue(row_of(ours).scheduler_id) == "CANCELLED"


def test_cancelling_jobs_slurm_cannot_cancel_is_reported(system):
    from wflp.remote.jobs import scheduler_for

    done = submit(add, args=(1, 2), system=system)
    done.result(timeout=scaled(120))
    finished = row_of(done).scheduler_id
    # the result comes with the job's marker, a moment before Slurm sees the job end
    wait_until(lambda: squeue(finished) in ("COMPLETING", "COMPLETED"), 60, "the job's end")
    config = manager().system(system)
    sched = scheduler_for(config)
    ids = [finished, "999999991"]
    problems = sched.parse_cancel(manager()._run(config, sched.cancel_command(ids)), ids)
    assert "already completing or completed" in problems[finished]
    assert "Invalid job id specified" in problems["999999991"]
    assert "does not know it" in problems["999999991"]


# -- failures and limits -------------------------------------------------------------------

def test_nonzero_exit_is_failed_with_the_stderr_path(system):
    job = submit(die, args=(3,), system=system, resources={"max_time": "5m"})
    row = row_of(job)
    with pytest.raises(RemoteJobError, match=rf"ended as failed \(the job's process exited "
                                             rf"with status 3\).*stderr "
                                             rf"{re.escape(row.remote_dir)}/stderr"):
        job.result(timeout=scaled(120))
    wait_until(lambda: squeue(row.scheduler_id) == "FAILED", 60, "Slurm to say FAILED")


def test_a_job_that_cannot_start_python_is_failed_with_its_stderr(system, tmp_path):
    text = Path("wflp-systems.toml").read_text()
    Path("wflp-systems.toml").write_text(
        text.replace(f'python = "{sys.executable}"', 'python = "/nonexistent/python3"'))
    job = submit(add, args=(1, 2), system=system, resources={"max_time": "5m"})
    with pytest.raises(RemoteJobError, match=r"ended as failed \(FAILED \(NonZeroExitCode\); "
                                             r"its stderr ends: .*/nonexistent/python3.*"
                                             r"not found"):
        job.result(timeout=scaled(120))


def test_memory_kill_is_out_of_memory(system):
    job = submit(hog, args=(800, 30), system=system,
                 resources={"max_time": "5m", "max_memory": "200M"})
    with pytest.raises(RemoteJobError, match=r"ended as out_of_memory \(FAILED.*Slurm killed "
                                             r"it for its memory"):
        job.result(timeout=scaled(120))
    row = row_of(job)
    assert "xceeded" in Path(row.remote_dir, "stderr").read_text()  # slurmstepd said so
    assert squeue(row.scheduler_id) == "FAILED"  # what Slurm itself calls it, without cgroups


@pytest.mark.slow
def test_job_over_a_one_minute_walltime_is_a_timeout(both):
    start = time.monotonic()
    jobs = [submit(nap, args=(600, name), system=name, resources={"max_time": "1m"})
            for name in both]  # here and over SSH at once: the wait is Slurm's
    for job in jobs:
        with pytest.raises(RemoteJobError, match=r"ended as timeout"):
            job.result(timeout=scaled(240))
        row = row_of(job)
        assert squeue(row.scheduler_id) == "TIMEOUT"
        assert Path(row.remote_dir, "terminated").exists()  # SIGTERM reached the runner
    assert 55 < time.monotonic() - start < scaled(200)  # Slurm's kill comes past the 1m


# -- a killed driver --------------------------------------------------------------------------

def test_driver_killed_after_submitting_10_jobs_rerun_submits_nothing(system):
    check_killed_driver_rerun_submits_nothing(system)


def test_driver_killed_between_submit_and_storing_the_id_makes_no_duplicate(system, tmp_path):
    check_killed_between_submit_and_store_makes_no_duplicate(system, tmp_path)


# -- held and suspended ---------------------------------------------------------------------

def test_held_and_suspended_jobs(system):
    cpus = int(subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True,
                              timeout=scaled(60)).stdout.split()[0])
    blocker = subprocess.run(["sbatch", "--parsable", "-n", str(cpus), "-o", "/dev/null",
                              "--wrap", f"sleep {scaled(600):.0f}"], capture_output=True, text=True,
                             check=True, timeout=scaled(60)).stdout.strip()
    try:
        wait_until(lambda: squeue(blocker) == "RUNNING", 60, "the blocker to run")
        job = submit(nap, args=(600, "held"), system=system, resources={"max_time": "10m"})
        assert job.refresh().state == "queued"  # waits for the cores the blocker holds
        subprocess.run(["scontrol", "hold", row_of(job).scheduler_id], check=True,
                       timeout=scaled(60))
        assert job.refresh().state == "held" and "JobHeld" in row_of(job).reason  # Admin, as root
        subprocess.run(["scontrol", "release", row_of(job).scheduler_id], check=True,
                       timeout=scaled(60))
        assert job.refresh().state == "queued"
    finally:
        subprocess.run(["scancel", blocker], timeout=scaled(60))
    wait_until(lambda: job.state == "running" and started(job), 60, "the job to run")
    subprocess.run(["scontrol", "suspend", row_of(job).scheduler_id], check=True,
                   timeout=scaled(60))
    assert job.refresh().state == "held" and "suspended" in row_of(job).reason
    subprocess.run(["scontrol", "resume", row_of(job).scheduler_id], check=True,
                   timeout=scaled(60))
    assert job.refresh().state == "running"
    job.cancel()


# -- when squeue no longer lists a job -------------------------------------------------------

def test_jobs_squeue_forgot_are_decided_by_sacct_then_by_markers(project, tmp_path,
                                                                   register_wflp_plugin):
    """squeue lists finished jobs for MinJobAge seconds only; after that sacct decides, and
    without accounting the job's markers. A dialect whose squeue asks only for live jobs
    (the real squeue, with -t PD,R,CG,S) puts finished jobs in that situation at once."""
    from wflp import SchedulerSpec, hookimpl
    from wflp_slurm.scheduler import SlurmScheduler

    require_sacct()

    class LiveOnly(SlurmScheduler):
        name = "slurm_live_only"

        def status_command(self, ids):
            argv = super().status_command(ids)
            argv[argv.index("all")] = "PD,R,CG,S"
            return argv

    class Plugin:
        @hookimpl
        def wflp_schedulers(self):
            return [SchedulerSpec(name="slurm_live_only", summary="squeue of live jobs only",
                                  factory=LiveOnly)]

    register_wflp_plugin(Plugin())
    no_acct = tmp_path / "slurm-no-accounting.conf"
    conf = Path("/etc/slurm/slurm.conf").read_text()
    no_acct.write_text(re.sub(r"(?m)^AccountingStorage\w+=.*$", "", conf) +
                       "\nAccountingStorageType=accounting_storage/none\n")
    write_systems(project, tmp_path, extra=f"""
        [systems.acct]
        scheduler = "slurm_live_only"
        python = "{sys.executable}"
        remote_root = "{tmp_path / 'acct-jobs'}"
        poll_interval = 1
        [systems.noacct]
        scheduler = "slurm_live_only"
        python = "{sys.executable}"
        remote_root = "{tmp_path / 'noacct-jobs'}"
        poll_interval = 1
        command_prefix = ["env", "SLURM_CONF={no_acct}"]
    """)
    fine = submit(add, args=(1, 1), system="acct")
    assert fine.result(timeout=scaled(120)) == 2   # its marker says so
    killed = submit(nap, args=(300, "acct"), system="acct", resources={"max_time": "10m"})
    wait_until(lambda: started(killed), 60, "the job to start")
    subprocess.run(["scancel", row_of(killed).scheduler_id], check=True, timeout=scaled(60))
    with pytest.raises(RemoteJobError, match=r"ended as cancelled \(CANCELLED by \d+"):
        killed.result(timeout=scaled(60))  # from sacct: squeue was not asked about finished jobs
    crashed = submit(die, args=(5,), system="acct")
    with pytest.raises(RemoteJobError, match=r"ended as failed \(the job's process exited "
                                             r"with status 5\)"):
        crashed.result(timeout=scaled(60))
    # no accounting: the markers decide, and a job that left none is unknown, not done
    lost = submit(nap, args=(300, "noacct"), system="noacct", resources={"max_time": "10m"})
    wait_until(lambda: started(lost), 60, "the job to start")
    subprocess.run(["scancel", "--signal=KILL", row_of(lost).scheduler_id], check=True,
                   timeout=scaled(60))
    wait_until(lambda: squeue(row_of(lost).scheduler_id) == "CANCELLED", 60, "the kill")
    assert lost.state == "unknown"
    assert "no longer lists it" in row_of(lost).reason
    done = submit(add, args=(2, 2), system="noacct")
    assert done.result(timeout=scaled(120)) == 4


def test_a_failing_sbatch_is_a_clear_error(project, tmp_path):
    require_slurm()
    write_systems(project, tmp_path, extra="""
        [systems.broken]
        scheduler = "slurm"
        command_prefix = ["env", "SLURM_CONF=/dev/null"]
        poll_interval = 1
    """)
    from wflp.remote.scheduler import SchedulerError

    with pytest.raises(SchedulerError, match=r"sbatch did not print a job id: `env "
                                             r"SLURM_CONF=/dev/null sbatch "
                                             r"--parsable .*` exited with 1: .*"):
        submit(add, args=(1, 2), system="broken")


def test_the_services_script_reports_slurm_alive():
    require_slurm()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "services" / "slurm.sh"), "status"],
                         capture_output=True, text=True, timeout=scaled(60))
    assert out.returncode == 0 and "is UP" in out.stdout
