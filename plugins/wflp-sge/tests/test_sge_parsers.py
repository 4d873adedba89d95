"""The Grid Engine dialect on its own: the header it renders, and how it reads qsub, qstat
-xml, qacct, qstat -j and qdel output, on samples in the formats Son of Grid Engine 8.1.9
prints (as seen on the test Grid Engine, and in qstat(1), qacct(1), sge_status(5)):
pending, running, held, suspended, error and zombie jobs, array tasks, qacct failed codes."""

from __future__ import annotations

import pytest
from wflp.remote.config import Resources
from wflp.remote.scheduler import CommandResult, JobScript, JobState, SchedulerError, Status
from wflp.testing_scheduler import DialectContract
from wflp_sge.scheduler import SGEScheduler, error_reasons, parse_qacct, state_of


def result(stdout="", stderr="", code=0, argv=("qstat",)):
    return CommandResult(tuple(argv), code, stdout, stderr)


def job(header=(), **resources):
    return JobScript(name="scale-0123456789", directory="/scratch/u/jobs/sge/scale-0123456789",
                     stdout="/scratch/u/jobs/sge/scale-0123456789/stdout",
                     stderr="/scratch/u/jobs/sge/scale-0123456789/stderr",
                     resources=Resources.from_dict(resources), header=tuple(header))


S = SGEScheduler()


def test_header_from_resources_then_the_systems_own_lines():
    lines = S.header(job(["#$ -P project42"], num_cores=4, max_time="1-12:00:00",
                         max_memory="8G", partition="long.q"))
    assert lines == [
        "#$ -N scale-0123456789",
        "#$ -o /scratch/u/jobs/sge/scale-0123456789/stdout",
        "#$ -e /scratch/u/jobs/sge/scale-0123456789/stderr",
        "#$ -S /bin/sh",
        "#$ -l h_rt=36:00:00",
        "#$ -l h_vmem=2048M",     # per slot: 8G over 4 slots
        "#$ -pe smp 4",
        "#$ -q long.q",
        "#$ -P project42",
    ]
    one = S.header(job())
    assert not any("-pe" in line or "h_rt" in line or "h_vmem" in line for line in one)


def test_a_sites_own_parallel_environment_replaces_smp():
    lines = S.header(job(["#$ -pe mpi-fill {slots}"], num_cores=8, num_nodes=2))
    assert "#$ -pe mpi-fill 16" in lines and not any("smp" in line for line in lines)


def test_submit_command_and_odd_paths():
    odd = JobScript(name="n", directory="/tmp/a b/n", stdout="/tmp/a b/n/stdout",
                    stderr="/tmp/a b/n/stderr", resources=Resources())
    assert not any(line.startswith(("#$ -o", "#$ -e")) for line in S.header(odd))
    assert S.submit_command("/tmp/a b/n/job.sh", odd) == [
        "qsub", "-terse", "-N", "n", "-o", "/tmp/a b/n/stdout", "-e", "/tmp/a b/n/stderr",
        "-S", "/bin/sh", "-wd", "/tmp/a b/n", "/tmp/a b/n/job.sh"]
    with pytest.raises(SchedulerError, match="queue 'a.q -l h_rt=1'"):
        S.header(job(partition="a.q -l h_rt=1"))


QSTAT_XML = """<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>3</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>scale-0123456789</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-21T23:34:12</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="running">
      <JB_job_number>5</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>ok.sh</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-21T23:34:13</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
      <tasks>1</tasks>
    </job_list>
    <job_list state="running">
      <JB_job_number>9</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>suspended</JB_name>
      <JB_owner>u1</JB_owner>
      <state>s</state>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="running">
      <JB_job_number>10</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>deleting</JB_name>
      <JB_owner>u1</JB_owner>
      <state>dr</state>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>5</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>ok.sh</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-21T23:34:12</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <tasks>2,3</tasks>
    </job_list>
    <job_list state="pending">
      <JB_job_number>6</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>broken</JB_name>
      <JB_owner>root</JB_owner>
      <state>Eqw</state>
      <JB_submission_time>2026-11-21T23:34:12</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>7</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>waiting</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-21T23:34:12</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>4</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>held</JB_name>
      <JB_owner>root</JB_owner>
      <state>hqw</state>
      <JB_submission_time>2026-11-21T23:34:12</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="zombie">
      <JB_job_number>2</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>fail.sh</JB_name>
      <JB_owner>root</JB_owner>
      <state>z</state>
      <JB_submission_time>2026-11-21T23:34:11</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="zombie">
      <JB_job_number>3</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>scale-0123456789</JB_name>
      <JB_owner>root</JB_owner>
      <state>z</state>
      <JB_submission_time>2026-11-21T23:30:00</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
  </job_info>
</job_info>
"""


def test_one_qstat_for_all_jobs_in_the_common_states():
    got = S.parse_status(result(QSTAT_XML), ["2", "3", "4", "5", "6", "7", "9", "10", "11"])
    assert {k: v.state for k, v in got.items()} == {
        "3": JobState.RUNNING,   # (an older zombie of the same number does not hide it)
        "4": JobState.HELD, "5": JobState.RUNNING,  # task 1 runs, 2 and 3 wait
        "6": JobState.FAILED, "7": JobState.QUEUED, "9": JobState.HELD,
        "10": JobState.RUNNING}  # 2 is a zombie, 11 is not listed: qacct decides
    assert got["6"].explain and got["6"].reason == "Eqw (error state)"
    assert got["9"].reason == "s (suspended)" and got["10"].reason == "dr (being deleted)"


def test_a_zombie_is_left_to_qacct():
    assert state_of("z") is None


def test_qstat_failures_are_clear():
    with pytest.raises(SchedulerError, match="qstat failed: .*can't unpack"):
        S.parse_status(result("", "error: can't unpack gdi request", 1), ["1"])
    with pytest.raises(SchedulerError, match="not XML"):
        S.parse_status(result("job-ID  prior   name\n"), ["1"])


QACCT = """\
==============================================================
qname        all.q
hostname     vm
group        root
owner        root
project      NONE
department   defaultdepartment
jobname      ok.sh
jobnumber    1
taskid       undefined
account      sge
priority     0
qsub_time    Sat Nov 21 23:34:11 2026
start_time   Sat Nov 21 23:34:11 2026
end_time     Sat Nov 21 23:34:13 2026
granted_pe   NONE
slots        1
failed       0
exit_status  0
ru_wallclock 2s
maxvmem      3.367MB
category     -l h_rt=300
==============================================================
jobname      fail.sh
jobnumber    2
taskid       undefined
failed       0
exit_status  3
ru_wallclock 0s
category     NONE
==============================================================
jobname      long.sh
jobnumber    3
taskid       undefined
failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit
exit_status  137                  (Killed)
ru_wallclock 6s
maxvmem      3.367MB
category     -l h_rt=5
==============================================================
jobname      hog.sh
jobnumber    4
taskid       undefined
failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit
exit_status  137                  (Killed)
ru_wallclock 12s
maxvmem      1.002GB
category     -l h_rt=600,h_vmem=1G
==============================================================
jobname      deleted.sh
jobnumber    7
taskid       undefined
failed       100 : assumedly after job
exit_status  137                  (Killed)
ru_wallclock 1s
category     NONE
==============================================================
jobname      noshell.sh
jobnumber    8
taskid       undefined
failed       27  : searching requested shell
exit_status  0
ru_wallclock 0s
category     NONE
==============================================================
jobname      arr.sh
jobnumber    5
taskid       1
failed       0
exit_status  0
==============================================================
jobname      arr.sh
jobnumber    5
taskid       2
failed       0
exit_status  1
==============================================================
jobname      oom.sh
jobnumber    12
taskid       undefined
failed       0
exit_status  137                  (Killed)
category     NONE
"""


def test_qacct_records():
    records = parse_qacct(QACCT)
    assert [r["jobnumber"] for r in records] == ["1", "2", "3", "4", "7", "8", "5", "5", "12"]
    assert records[2]["failed"] == "37  : qmaster enforced h_rt, h_cpu, or h_vmem limit"


def test_how_finished_jobs_ended_from_qacct():
    ids = ["1", "2", "3", "4", "5", "7", "8", "12", "99"]
    got = S.parse_accounting(result(QACCT, "error: job id 99 not found\n", 1), ids)
    assert got["1"] == Status(JobState.SUCCEEDED, "qacct: failed 0, exit_status 0", 0)
    assert got["2"] == Status(JobState.FAILED, "qacct: failed 0, exit_status 3", 3)
    assert got["3"].state == JobState.TIMEOUT and "ran 6 s, h_rt 5" in got["3"].reason
    assert got["4"].state == JobState.OUT_OF_MEMORY  # failed 37 well within its h_rt
    assert "maxvmem 1.002GB, h_vmem 1G" in got["4"].reason
    assert got["5"].state == JobState.FAILED  # an array: one of its tasks failed
    assert got["7"].state == JobState.CANCELLED and "qdel" in got["7"].reason
    assert got["8"] == Status(JobState.FAILED, "qacct: failed 27 (searching requested "
                                               "shell), exit_status 0", 0)
    assert got["12"].state == JobState.FAILED and "killed by signal 9" in got["12"].reason
    assert "99" not in got  # qacct does not know it: the job's markers decide


QSTAT_J = """\
==============================================================
job_number:                 6
exec_file:                  job_scripts/6
submission_time:            Sat Nov 21 23:34:12 2026
owner:                      root
job_name:                   broken
stdout_path_list:           NONE:NONE:/nonexistent/dir/x.out
script_file:                ok.sh
error reason          1:      11/21/2026 23:34:20 [0:14508]: error: can't open output file \
"/nonexistent/dir/x.out": No such file or directory
scheduling info:            Job is in error state
==============================================================
job_number:                 16
job_name:                   other
error reason    1-3:        11/21/2026 23:40:00 [1000:200]: error: can't chdir to /gone: \
No such file or directory
"""


def test_why_a_job_is_in_error_from_qstat_j():
    assert error_reasons(QSTAT_J) == {
        "6": 'error: can\'t open output file "/nonexistent/dir/x.out": No such file or '
             'directory',
        "16": "error: can't chdir to /gone: No such file or directory"}
    before = {"6": Status(JobState.FAILED, "Eqw (error state)", explain=True)}
    got = S.parse_explain(result(QSTAT_J), before)["6"]
    assert got.state == JobState.FAILED and not got.explain
    assert got.reason.startswith("Eqw (error state): it could not start: error: can't open")
    assert got.reason.endswith("until `qdel 6` (or `qmod -cj 6` once fixed)")


class TestSGEDialect(DialectContract):
    dialects = {"sge": SGEScheduler}
    dialect = S
    commands = [
        ("status_command", (["3", "4"],), ["qstat", "-s", "prsz", "-u", "*", "-xml"]),
        ("accounting_command", (["1", "2"],),
         ["sh", "-c", 'for j do qacct -j "$j"; done', "sh", "1", "2"]),
        ("explain_command", ({"6": "/x/stderr", "16": "/y/stderr"},), ["qstat", "-j", "6,16"]),
    ]
    submit_outputs = [("8\n", "8"), ("8.1-3:1\n", "8")]
    submit_failures = [
        ("", 'Unable to run job: Job was rejected because job requests unknown queue "nope.q".'
             "\nExiting.", 1,
         r"qsub did not print a job id: `qsub` exited with 1: Unable to run job: Job was "
         r'rejected because job requests unknown queue "nope\.q"\.'),
        ('Your job 8 ("x") has been submitted\n', "", 0, r"Your job 8 .* has been submitted"),
    ]
    # the state combinations of qstat(1), OUTPUT FORMATS
    state_codes = {
        "qw": JobState.QUEUED, "hqw": JobState.HELD, "hRwq": JobState.HELD,
        "r": JobState.RUNNING, "t": JobState.RUNNING, "Rr": JobState.RUNNING,
        "Rt": JobState.RUNNING, "s": JobState.HELD, "ts": JobState.HELD,
        "S": JobState.HELD, "tS": JobState.HELD, "T": JobState.HELD, "tT": JobState.HELD,
        "Rs": JobState.HELD, "Rts": JobState.HELD, "RS": JobState.HELD,
        "RtS": JobState.HELD, "RT": JobState.HELD, "RtT": JobState.HELD,
        "Eqw": JobState.FAILED, "Ehqw": JobState.FAILED, "EhRqw": JobState.FAILED,
        "dr": JobState.RUNNING, "dt": JobState.RUNNING, "dRr": JobState.RUNNING,
        "dRt": JobState.RUNNING, "ds": JobState.HELD, "dS": JobState.HELD,
        "dT": JobState.HELD, "dRs": JobState.HELD, "dRS": JobState.HELD,
        "dRT": JobState.HELD, "dqw": JobState.QUEUED}
    cancel_outputs = [
        ('root has registered the job 7 for deletion\ndenied: job "999" does not exist\n'
         'denied: job "1" does not exist\n', "", 1, ["7", "999", "1"],
         {"999": "does not know it", "1": "does not know it"}),
        ("root has deleted job 4\n", "", 0, ["4"], {}),
        ("", "error: commlib error: can't connect", 1, ["4"], {"4": "can't connect"}),
    ]
    find_outputs = [(QSTAT_XML, "scale-0123456789", "3"), (QSTAT_XML, "nothing", None),
                    ("not xml", "scale-0123456789", None)]

    def common_state(self, code):
        return state_of(code).state
