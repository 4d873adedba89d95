"""Queued jobs through PBS-syntax qsub/qstat/qdel, from this machine and over SSH to
127.0.0.1: every behaviour of wflp.testing_scheduler.SchedulerContract in PBS's words, then
what is PBS's own: an output path PBS cannot take. Faults are injected for real.

There is no PBS server package for Debian: these tests drive Slurm's PBS/Torque-syntax
wrappers (qsub, qstat, qdel; scripts/services/pbs.sh) over the real test Slurm. They live in
a private prefix, put first in PATH by the systems' command prefix
(``env PATH=$WFLP_TEST_PBS_PREFIX/usr/bin:...``; $WFLP_TEST_PBS_PREFIX="" for a real PBS on
PATH). The wrappers show every finished job as `C` with no exit status, so the dialect reads
the stderr of jobs that ended without their result (as it does for PBS's own
"=>> PBS: job killed: walltime ..." lines)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from wflp.remote import manager, submit
from wflp.testing_remote import add, missing
from wflp.testing_scheduler import SchedulerContract

ROOT = Path(__file__).resolve().parents[3]  # the wflp checkout
PBS_PREFIX = os.environ.get("WFLP_TEST_PBS_PREFIX", "/opt/wflp-pbs")
HOW = ("install and start the PBS-syntax commands over the test Slurm, as root: "
       "bash scripts/services/slurm.sh install && bash scripts/services/pbs.sh install && "
       "WITH_DBD=1 bash scripts/services/pbs.sh start")


class TestPBSJobs(SchedulerContract):
    scheduler = "pbs"
    prefix = (["env", f"PATH={PBS_PREFIX}/usr/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
              if PBS_PREFIX else [])
    how = HOW
    probe = ("qstat",)
    service = "a PBS that answers"
    services_script = ROOT / "scripts" / "services" / "pbs.sh"
    cancel_argv = ("qdel",)

    id_pattern = r"\d+(\.\S+)?"
    result_resources = {"max_time": "5m", "max_memory": "500M"}
    script_lines = ("#PBS -l walltime=0:05:00", "#PBS -l nodes=1:ppn=1", "#PBS -l mem=500mb",
                    "#PBS -N {name}")
    # the wrappers show every finished job as C
    says = {"running": "R", "succeeded": "C", "failed": "C", "cancelled": "C", "timeout": "C",
            "out_of_memory": "C"}
    unknown_id = "999999992"
    unknown_status_exit = 153  # PBSE_UNKJOBID
    cancelled_message = (r"ended as cancelled \(C \(ended; PBS gives no exit status\); its "
                         r"stderr says: .*CANCELLED AT")  # no wflp marker asked for it
    no_python_message = (r"ended as failed \(C \(ended; PBS gives no exit status\); its stderr "
                         r"ends: .*/nonexistent/python3.*not found")
    memory_message = (r"ended as out_of_memory \(C \(ended; PBS gives no exit status\); its "
                      r"stderr says: .*xceeded")
    time_limit, killed_after = "1m", (55, 200)  # Slurm's kill comes past the 1m
    timeout_message = r"ended as timeout \(C .*DUE TO TIME LIMIT"
    sigterm_at_time_limit = True
    # the wrappers' qstat shows a held job as Q: wflp cannot see a hold through them
    test_held_job_is_held_until_released = None
    suspend_argv, resume_argv = ("scontrol", "suspend"), ("scontrol", "resume")  # Slurm beneath
    suspended_reason = r"S \(suspended\)"
    broken_env = ("env", "SLURM_CONF=/dev/null")  # the wrappers' Slurm beneath
    broken_submit_message = r"qsub did not print a job id: `env .*SLURM_CONF=/dev/null.* qsub "
    broken_status_message = r"qstat failed: `env .*SLURM_CONF=/dev/null.* qstat -f "

    def require_service(self):
        qsub = Path(PBS_PREFIX, "usr", "bin", "qsub") if PBS_PREFIX else None
        if qsub is not None and not qsub.exists():
            missing(f"the PBS-syntax commands in {PBS_PREFIX}", HOW)
        super().require_service()

    def probe_ok(self, result):
        return result.returncode in (0, 153)  # 153: no job to list

    def scheduler_says(self, scheduler_id):
        m = re.search(r"job_state = (\w)", self.command("qstat", "-f", scheduler_id).stdout)
        return m.group(1) if m else ""

    def check_cancel_problems(self, problems, finished, unknown, system):
        # the wrappers exit with the number of ids they could not cancel, naming none
        assert problems == {}
        [said] = self.cancel_problems(system, [unknown]).values()
        assert "exited with 1" in said and "it may have ended already" in said

    # -- PBS's own ------------------------------------------------------------------------------
    def test_an_output_path_pbs_cannot_take_is_refused_before_submitting(self, project,
                                                                         tmp_path):
        from wflp.remote.scheduler import SchedulerError

        self.require_service()
        self.write_systems(project, tmp_path / "a b $(touch PWNED)")
        with pytest.raises(SchedulerError, match=r"PBS cannot take the job's output path "
                                                 r"'.*a b \$\(touch PWNED\).*/stdout'"):
            submit(add, args=(1, 2), system="pbs")
        assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
        assert manager().store.select() == []  # nothing reached qsub, and no row is left
