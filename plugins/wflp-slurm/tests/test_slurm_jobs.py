"""Queued jobs on a real Slurm (scripts/services/slurm.sh), from this machine and over SSH to
127.0.0.1: every behaviour of wflp.testing_scheduler.SchedulerContract in Slurm's words,
then what is Slurm's own: what decides when squeue no longer lists a job (sacct, then the
job's markers). Faults are injected for real."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from wflp.remote import submit
from wflp.remote.jobs import RemoteJobError
from wflp.testing import scaled
from wflp.testing_remote import add, die, missing, nap, row_of, started, wait_until
from wflp.testing_scheduler import SchedulerContract

ROOT = Path(__file__).resolve().parents[3]  # the wflp checkout
HOW = ("start the test Slurm as root: bash scripts/services/slurm.sh install && "
       "WITH_DBD=1 bash scripts/services/slurm.sh start")
HOW_SACCT = ("start the test Slurm with accounting: WITH_DBD=1 bash scripts/services/slurm.sh "
             "install && WITH_DBD=1 bash scripts/services/slurm.sh start")


class TestSlurmJobs(SchedulerContract):
    scheduler = "slurm"
    how = HOW
    programs = ("sbatch", "squeue", "scancel", "scontrol")
    probe = ("scontrol", "ping")
    service = "a running Slurm controller"
    services_script = ROOT / "scripts" / "services" / "slurm.sh"
    services_status_says = "is UP"
    cancel_argv = ("scancel",)

    id_pattern = r"\d+"
    result_resources = {"max_time": "5m", "max_memory": "500M"}
    script_lines = ("#SBATCH --time=0-00:05:00", "#SBATCH --mem=500M",
                    "#SBATCH --job-name={name}")
    # without cgroups Slurm calls a memory kill FAILED too
    says = {"running": "RUNNING", "succeeded": "COMPLETED", "failed": "FAILED",
            "cancelled": "CANCELLED", "timeout": "TIMEOUT", "out_of_memory": "FAILED"}
    unknown_id = "999999991"
    unknown_status_exit = 0  # the id twice: nothing listed (once, squeue would exit 1)
    cancelled_message = r"ended as cancelled \(CANCELLED"
    no_python_message = (r"ended as failed \(FAILED \(NonZeroExitCode\); its stderr ends: "
                         r".*/nonexistent/python3.*not found")
    memory_message = r"ended as out_of_memory \(FAILED.*Slurm killed it for its memory"
    memory_stderr = "xceeded"  # slurmstepd said so
    time_limit, killed_after = "1m", (55, 200)  # Slurm checks time limits every 30 s or so
    sigterm_at_time_limit = True
    hold_argv, release_argv = ("scontrol", "hold"), ("scontrol", "release")
    suspend_argv, resume_argv = ("scontrol", "suspend"), ("scontrol", "resume")
    held_reason = r".*JobHeld.*"  # JobHeldAdmin, as root
    broken_env = ("env", "SLURM_CONF=/dev/null")
    broken_submit_message = (r"sbatch did not print a job id: `env SLURM_CONF=/dev/null sbatch "
                             r"--parsable .*` exited with 1: .*")
    broken_status_message = r"squeue failed: `env SLURM_CONF=/dev/null squeue .*` exited with"

    def probe_ok(self, result):
        return result.returncode == 0 and "is UP" in result.stdout

    def scheduler_says(self, scheduler_id):
        return squeue(scheduler_id)

    def block_all_cores(self):
        cpus = int(self.command("sinfo", "-h", "-o", "%c", check=True).stdout.split()[0])
        return self.command("sbatch", "--parsable", "-n", str(cpus), "-o", "/dev/null",
                            "--wrap", f"sleep {scaled(600):.0f}", check=True).stdout.strip()

    def check_cancel_problems(self, problems, finished, unknown, system):
        assert set(problems) == {finished, unknown}
        assert "already completing or completed" in problems[finished]
        assert "Invalid job id specified" in problems[unknown]
        assert "does not know it" in problems[unknown]

    # -- Slurm's own ---------------------------------------------------------------------------
    def test_jobs_squeue_forgot_are_decided_by_sacct_then_by_markers(self, project, tmp_path,
                                                                       register_wflp_plugin):
        """squeue lists finished jobs for MinJobAge seconds only; after that sacct decides,
        and without accounting the job's markers. A dialect whose squeue asks only for live
        jobs (the real squeue, with -t PD,R,CG,S) puts finished jobs there at once."""
        from wflp import SchedulerSpec, hookimpl
        from wflp_slurm.scheduler import SlurmScheduler

        self.require_service()
        probe = self.command("sacct", "-n", "-X", "-S", "now")
        if probe.returncode != 0:
            missing("Slurm accounting (sacct through slurmdbd)", HOW_SACCT)

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
        self.write_systems(project, tmp_path, extra=f"""
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
        self.command("scancel", row_of(killed).scheduler_id, check=True)
        with pytest.raises(RemoteJobError, match=r"ended as cancelled \(CANCELLED by \d+"):
            killed.result(timeout=scaled(60))  # from sacct: squeue was not asked
        crashed = submit(die, args=(5,), system="acct")
        with pytest.raises(RemoteJobError, match=r"ended as failed \(the job's process exited "
                                                 r"with status 5\)"):
            crashed.result(timeout=scaled(60))
        # no accounting: the markers decide, and a job that left none is unknown, not done
        lost = submit(nap, args=(300, "noacct"), system="noacct", resources={"max_time": "10m"})
        wait_until(lambda: started(lost), 60, "the job to start")
        self.command("scancel", "--signal=KILL", row_of(lost).scheduler_id, check=True)
        wait_until(lambda: squeue(row_of(lost).scheduler_id) == "CANCELLED", 60, "the kill")
        assert lost.state == "unknown"
        assert "no longer lists it" in row_of(lost).reason
        done = submit(add, args=(2, 2), system="noacct")
        assert done.result(timeout=scaled(120)) == 4


def squeue(job_id: str) -> str:
    """Slurm's state of the job (squeue -t all: finished ones for MinJobAge seconds)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", f"{job_id},{job_id}", "-o", "%T"],
                         capture_output=True, text=True, timeout=scaled(60))
    return out.stdout.strip()
