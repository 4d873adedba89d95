"""Queued jobs on a real Grid Engine (scripts/services/sge.sh: Son of Grid Engine 8.1.9 in a
loopback-only network namespace, reached with the command prefix `ip netns exec sge`), from
this machine and over SSH to 127.0.0.1: every behaviour of
wflp.testing_scheduler.SchedulerContract in Grid Engine's words (qacct says how finished
jobs ended), then what is its own: a job in error (Eqw). Faults are injected for real."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from wflp.remote import submit
from wflp.remote.jobs import RemoteJobError
from wflp.testing import scaled
from wflp.testing_remote import nap, row_of
from wflp.testing_scheduler import SchedulerContract

ROOT = Path(__file__).resolve().parents[3]  # the wflp checkout


class TestSGEJobs(SchedulerContract):
    scheduler = "sge"
    # the test Grid Engine runs in a network namespace; $WFLP_TEST_SGE_PREFIX="" for one
    # reached directly
    prefix = shlex.split(os.environ.get("WFLP_TEST_SGE_PREFIX", "ip netns exec sge"))
    how = ("start the test Grid Engine as root: bash scripts/services/sge.sh install && "
           "bash scripts/services/sge.sh start")
    programs = ("qsub", "qstat", "qacct", "qdel")
    probe = ("qstat", "-s", "prsz", "-u", "*", "-xml")
    service = "a running Grid Engine"
    services_script = ROOT / "scripts" / "services" / "sge.sh"
    cancel_argv = ("qdel",)
    # jobs in error state are deleted at the end too: wflp reports them failed, but Grid
    # Engine keeps them queued
    keep = ("succeeded",)

    id_pattern = r"\d+"
    result_resources = {"max_time": "5m"}
    script_lines = ("#$ -l h_rt=0:05:00", "#$ -N {name}")
    # qstat's letters while it lists a job, then qacct's "failed N, exit_status M" (a job
    # whose call failed exits 1: the runner's status, not the call's)
    says = {"running": "r", "succeeded": "failed 0, exit_status 0",
            "failed": "failed 0, exit_status 1", "cancelled": "failed 100, exit_status 137",
            "timeout": "failed 37, exit_status 137"}
    unknown_id = "999991"
    unknown_status_exit = 0  # qstat lists every job: the unknown one is simply not there
    cancelled_message = r"ended as cancelled \(qacct: failed 100 \(assumedly after job\), " \
                        r"exit_status 137"
    no_python_message = r"ended as failed \(qacct: failed 0, exit_status 127\)"
    # h_vmem is a limit on virtual memory (setrlimit), not a kill: a Python job over it gets
    # MemoryError and fails with its traceback (README), it is never out_of_memory
    test_memory_kill_is_out_of_memory = None
    time_limit, killed_after = "30s", (28, 120)  # qmaster's kill comes past the 30s
    timeout_message = r"ended as timeout \(qacct: failed 37 \(qmaster enforced h_rt.*h_rt 30"
    sigterm_at_time_limit = False  # h_rt is SIGKILL
    hold_argv, release_argv = ("qhold",), ("qrls",)
    suspend_argv, resume_argv = ("qmod", "-sj"), ("qmod", "-usj")
    queued_reason, held_reason = "qw", "hqw"
    broken_env = ("env", "SGE_CELL=nonexistent")
    broken_submit_message = r"qsub did not print a job id: `env SGE_CELL=nonexistent .*qsub "
    broken_status_message = (r"qstat failed: `.*SGE_CELL=nonexistent.*qstat -s prsz -u '\*' "
                             r"-xml` exited with 1: .*")

    def probe_ok(self, result):
        return result.returncode == 0 and "<job_info" in result.stdout

    def scheduler_says(self, scheduler_id):
        state = qstat_state(self, scheduler_id)
        if state and state != "z":
            return state
        record = qacct(self, scheduler_id)
        if "failed" not in record or "exit_status" not in record:
            return state
        return f"failed {record['failed'].split()[0]}, " \
               f"exit_status {record['exit_status'].split()[0]}"

    def block_all_cores(self):
        slots = self.command("qconf", "-sq", "all.q", check=True).stdout
        n = int(re.search(r"(?m)^slots\s+(\d+)", slots).group(1))
        return self.command("qsub", "-terse", "-b", "y", "-pe", "smp", str(n), "-o",
                            "/dev/null", "-e", "/dev/null", "sleep", f"{scaled(600):.0f}",
                            check=True).stdout.strip()

    def check_cancel_problems(self, problems, finished, unknown, system):
        assert set(problems) == {finished, unknown}
        assert all("does not know it" in p for p in problems.values())

    # -- Grid Engine's own -----------------------------------------------------------------
    def test_a_job_that_cannot_start_is_failed_by_its_error_state(self, system, tmp_path):
        """A job whose working directory is gone: Grid Engine puts it in error (Eqw) and
        keeps it queued; wflp reports it failed, with why and how to delete it."""
        with self.blocked():  # it must not start before its folder is gone
            broken = submit(nap, args=(1, "broken"), system=system,
                            resources={"max_time": "10m"})
            assert broken.refresh().state == "queued"
            Path(row_of(broken).remote_dir).rename(tmp_path / "moved-away")
        with pytest.raises(RemoteJobError, match=r"ended as failed \(Eqw \(error state\): it "
                                                 r"could not start: error: can't chdir to .*No "
                                                 r"such file or directory.*"
                                                 rf"qdel {row_of(broken).scheduler_id}"):
            broken.result(timeout=scaled(60))
        assert qstat_state(self, row_of(broken).scheduler_id) == "Eqw"  # queued, in error


def qstat_state(kit: SchedulerContract, job_id: str) -> str:
    """The job's state letters in qstat (z: finished), "" when it is not listed."""
    xml = kit.command("qstat", "-s", "prsz", "-u", "*", "-xml").stdout
    for block in xml.split("<job_list")[1:]:
        if f"<JB_job_number>{job_id}</JB_job_number>" in block:
            return re.search(r"<state>(\w*)</state>", block).group(1)
    return ""


def qacct(kit: SchedulerContract, job_id: str) -> dict:
    """qacct's record of a finished job ({} while it has none)."""
    out = kit.command("qacct", "-j", str(job_id)).stdout
    return {line.split()[0]: line.split(None, 1)[1].strip() for line in out.splitlines()
            if len(line.split(None, 1)) == 2}
