"""The Slurm dialect on its own: the header it renders, and how it reads sbatch, squeue, sacct
and scancel output, on samples in the formats Slurm 22.05 prints (as seen on the test
Slurm, and in the sbatch/squeue/sacct/scancel manuals): array jobs (16_[1-5], 16_3), every
state code, "CANCELLED by 0", exit codes with signals, held and suspended jobs."""

from __future__ import annotations

import pytest
from wflp.remote.config import Resources
from wflp.remote.scheduler import CommandResult, JobScript, JobState, SchedulerError, Status
from wflp.testing_scheduler import DialectContract
from wflp_slurm.scheduler import STATES, SlurmScheduler


def result(stdout="", stderr="", code=0, argv=("squeue",)):
    return CommandResult(tuple(argv), code, stdout, stderr)


def job(**resources):
    return JobScript(name="scale-0123456789", directory="/scratch/u/jobs/slurm/scale-0123456789",
                     stdout="/scratch/u/jobs/slurm/scale-0123456789/stdout",
                     stderr="/scratch/u/jobs/slurm/scale-0123456789/stderr",
                     resources=Resources.from_dict(resources),
                     header=("#SBATCH --account=abc123", "#SBATCH --qos=short"))


S = SlurmScheduler()


def test_header_from_resources_then_the_systems_own_lines():
    lines = S.header(job(num_cores=4, num_nodes=2, max_time="1-12:00:00", max_memory="4G",
                         partition="standard"))
    assert lines == [
        "#SBATCH --job-name=scale-0123456789",
        "#SBATCH --output=/scratch/u/jobs/slurm/scale-0123456789/stdout",
        "#SBATCH --error=/scratch/u/jobs/slurm/scale-0123456789/stderr",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --time=1-12:00:00",
        "#SBATCH --mem=4096M",
        "#SBATCH --partition=standard",
        "#SBATCH --account=abc123",
        "#SBATCH --qos=short",
    ]
    assert "#SBATCH --time=0-00:01:30" in S.header(job(max_time="90s"))
    assert not any("--time" in line or "--mem" in line for line in S.header(job()))


def test_odd_paths_are_quoted_in_the_header_and_exact_on_the_command_line():
    odd = JobScript(name="n", directory="/tmp/a b/100%/n", stdout="/tmp/a b/100%/n/stdout",
                    stderr='/tmp/a "b"/n/stderr', resources=Resources())
    lines = S.header(odd)
    assert '#SBATCH --output="/tmp/a b/100%%/n/stdout"' in lines
    assert not any("--error" in line for line in lines)  # cannot be quoted: command line only
    argv = S.submit_command("/tmp/a b/100%/n/job.sh", odd)
    assert argv == ["sbatch", "--parsable", "--job-name=n", "--output=/tmp/a b/100%%/n/stdout",
                    '--error=/tmp/a "b"/n/stderr', "--chdir=/tmp/a b/100%/n",
                    "/tmp/a b/100%/n/job.sh"]


def test_a_partition_that_could_break_the_script_is_refused():
    with pytest.raises(SchedulerError, match="partition 'std\\\\n#SBATCH --x'"):
        S.header(job(partition="std\n#SBATCH --x"))


SQUEUE = """\
16_[4-5]|16|PENDING|Resources
16_3|16|RUNNING|None
16_1|16|COMPLETED|None
16_2|16|COMPLETED|None
20|20|PENDING|Priority
21|21|PENDING|JobHeldUser
22|22|PENDING|JobHeldAdmin
23|23|SUSPENDED|None
24|24|COMPLETING|None
25|25|COMPLETED|None
26|26|FAILED|NonZeroExitCode
27|27|CANCELLED|None
28|28|TIMEOUT|TimeLimit
29|29|OUT_OF_MEMORY|OutOfMemory
30|30|NODE_FAIL|NodeDown
31|31|PREEMPTED|None
32|32|REQUEUE_HOLD|JobHeldUser
33|33|CONFIGURING|None
34|34|BOOT_FAIL|None
35|35|DEADLINE|None
36|36|FAILED|JobLaunchFailure
"""


def test_squeue_listing_in_the_common_states():
    ids = [str(i) for i in range(20, 38)] + ["16"]
    got = S.parse_status(result(SQUEUE), ids)
    states = {k: v.state for k, v in got.items()}
    assert states == {
        "16": JobState.RUNNING,   # an array: a task still runs
        "20": JobState.QUEUED, "21": JobState.HELD, "22": JobState.HELD,
        "23": JobState.HELD, "24": JobState.RUNNING,   # COMPLETING is not final
        "25": JobState.SUCCEEDED, "26": JobState.FAILED, "27": JobState.CANCELLED,
        "28": JobState.TIMEOUT, "29": JobState.OUT_OF_MEMORY, "30": JobState.NODE_FAILURE,
        "31": JobState.CANCELLED, "32": JobState.HELD, "33": JobState.QUEUED,
        "34": JobState.NODE_FAILURE, "35": JobState.TIMEOUT, "36": JobState.FAILED,
    }  # 37 is not listed: left out, so accounting and markers decide
    assert got["23"].reason == "SUSPENDED (suspended)"
    assert got["21"].reason == "PENDING (JobHeldUser)"
    assert got["26"].explain and got["36"].explain  # FAILED: its stderr is looked at
    assert not got["29"].explain and not got["25"].explain


def test_array_tasks_one_by_one_and_as_a_whole():
    finished = "16_1|16|COMPLETED|None\n16_2|16|FAILED|NonZeroExitCode\n"
    got = S.parse_status(result(finished), ["16", "16_1", "16_2"])
    assert got["16_1"].state == JobState.SUCCEEDED and got["16_2"].state == JobState.FAILED
    assert got["16"].state == JobState.FAILED  # all ended, one failed
    pending = S.parse_status(result("16_[1-5]|16|PENDING|Resources\n"), ["16"])
    assert pending["16"].state == JobState.QUEUED


def test_squeue_failures():
    assert S.parse_status(result("", "slurm_load_jobs error: Invalid job id specified", 1),
                          ["12"]) == {}
    with pytest.raises(SchedulerError, match="squeue failed: .*Unable to contact slurm "
                                             "controller"):
        S.parse_status(result("", "slurm_load_jobs error: Unable to contact slurm controller "
                                  "(connect failure)", 1), ["12"])


SACCT = """\
40|COMPLETED|0:0
41|FAILED|3:0
42|CANCELLED by 0|0:15
43|CANCELLED by 1000|0:0
44|TIMEOUT|0:0
45|FAILED|0:9
46|OUT_OF_MEMORY|0:125
47|NODE_FAIL|1:0
16_1|COMPLETED|0:0
16_2|COMPLETED|0:0
16_3|CANCELLED by 0|0:0
"""


def test_sacct_lines():
    ids = [str(i) for i in range(40, 48)] + ["16"]
    got = S.parse_accounting(result(SACCT), ids)
    assert got["40"] == Status(JobState.SUCCEEDED, "COMPLETED", 0)
    assert got["41"] == Status(JobState.FAILED, "FAILED, exit code 3", 3, explain=True)
    assert got["42"].state == JobState.CANCELLED
    assert got["42"].reason == "CANCELLED by 0, killed by signal 15"
    assert got["43"].state == JobState.CANCELLED and got["44"].state == JobState.TIMEOUT
    assert got["45"] == Status(JobState.FAILED, "FAILED, killed by signal 9", 0, explain=True)
    assert got["46"].state == JobState.OUT_OF_MEMORY
    assert got["47"].state == JobState.NODE_FAILURE
    assert got["16"].state == JobState.CANCELLED  # one task of the array was cancelled


def test_no_accounting_leaves_it_to_the_markers():
    said = "Slurm accounting storage is disabled"
    assert S.parse_accounting(result("", said, 1), ["40"]) == {}


def test_explaining_a_failure_by_its_stderr():
    argv = S.explain_command({"45": "/j/a/stderr", "41": "/j/b b/stderr"})
    assert argv[:2] == ["sh", "-c"] and argv[-4:] == ["45", "/j/a/stderr", "41", "/j/b b/stderr"]
    out = ("\n==wflp-tail== 45\nTraceback ...\nslurmstepd-vm: error: StepId=45.batch exceeded "
           "memory limit (380346368 > 104857600), being killed\nslurmstepd-vm: error: Exceeded "
           "job memory limit\n"
           "\n==wflp-tail== 41\nsh: 1: exec: /opt/py/bin/python3: not found\n"
           "\n==wflp-tail== 47\n\n"
           "\n==wflp-tail== 48\nslurmstepd: error: *** JOB 48 ON n1 CANCELLED AT "
           "2024-05-01T10:00:00 DUE TO TIME LIMIT ***\n")
    before = {"45": Status(JobState.FAILED, "FAILED (JobLaunchFailure)", explain=True),
              "41": Status(JobState.FAILED, "FAILED (NonZeroExitCode)", explain=True),
              "47": Status(JobState.FAILED, "FAILED", explain=True),
              "48": Status(JobState.FAILED, "FAILED", explain=True)}
    got = S.parse_explain(result(out), before)
    assert got["45"].state == JobState.OUT_OF_MEMORY
    assert "Slurm killed it for its memory (slurmstepd-vm: error: Exceeded job memory" \
        in got["45"].reason
    assert got["41"] == Status(JobState.FAILED, "FAILED (NonZeroExitCode); its stderr ends: "
                                                "sh: 1: exec: /opt/py/bin/python3: not found")
    assert got["47"] == Status(JobState.FAILED, "FAILED")  # an empty stderr changes nothing
    assert got["48"].state == JobState.TIMEOUT
    assert not any(s.explain for s in got.values())


class TestSlurmDialect(DialectContract):
    dialects = {"slurm": SlurmScheduler}
    dialect = S
    commands = [
        # one squeue for all jobs; a single id twice, as squeue exits 1 for one purged id
        ("status_command", (["12", "13", "14"],),
         ["squeue", "-h", "-t", "all", "-j", "12,13,14", "-o", "%i|%F|%T|%r"]),
        ("status_command", (["12"],),
         ["squeue", "-h", "-t", "all", "-j", "12,12", "-o", "%i|%F|%T|%r"]),
        ("accounting_command", (["40", "41"],),
         ["sacct", "-X", "-n", "-P", "-j", "40,41", "-o", "JobID,State,ExitCode"]),
        ("cancel_command", (["12", "13"],), ["scancel", "-v", "12", "13"]),
        ("find_command", ("scale-0123456789",),
         ["squeue", "-h", "-t", "all", "--name=scale-0123456789", "-o", "%A|%j"]),
    ]
    submit_outputs = [("16\n", "16"), ("16;cluster2\n", "16"), ("sbatch: note\n1234\n", "1234")]
    submit_failures = [
        ("", "sbatch: error: Batch job submission failed: Invalid partition name specified", 1,
         r"sbatch did not print a job id: `sbatch` exited with 1: sbatch: error: Batch job "
         r"submission failed: Invalid partition name specified"),
        ("Submitted batch job 16\n", "", 0,   # not --parsable output
         r"sbatch did not print a job id: `sbatch` exited with 0: Submitted batch job 16"),
        ("", "", 0, r"sbatch did not print a job id: `sbatch` exited with 0: \(no output\)"),
    ]
    # squeue(1) JOB STATE CODES, long and short
    state_codes = dict.fromkeys(
        "BOOT_FAIL BF CANCELLED CA COMPLETED CD CONFIGURING CF COMPLETING CG DEADLINE DL "
        "FAILED F NODE_FAIL NF OUT_OF_MEMORY OOM PENDING PD PREEMPTED PR RUNNING R "
        "RESV_DEL_HOLD RD REQUEUE_FED RF REQUEUE_HOLD RH REQUEUED RQ RESIZING RS "
        "REVOKED RV SIGNALING SI SPECIAL_EXIT SE STAGE_OUT SO STOPPED ST SUSPENDED S "
        "TIMEOUT TO".split())
    cancel_outputs = [
        ("", "scancel: Terminating job 12\nscancel: Terminating job 13\nscancel: Terminating "
             "job 14\nscancel: error: Kill job error on job id 13: Job/step already completing "
             "or completed\nscancel: error: Kill job error on job id 14: Invalid job id "
             "specified\n", 0, ["12", "13", "14"],
         {"13": r"^Job/step already completing or completed$",
          "14": r"^Invalid job id specified \(Slurm does not know it"}),
        ("", "scancel: error: Unable to contact slurm controller", 1, ["12"],
         {"12": "Unable to contact"}),
    ]
    find_outputs = [
        ("61|scale-0123456789\n75|scale-0123456789\n80|scale-0123456789x\n", "scale-0123456789",
         "75"),
        ("", "scale-0123456789", None),
    ]

    def common_state(self, code):
        return STATES[code]
