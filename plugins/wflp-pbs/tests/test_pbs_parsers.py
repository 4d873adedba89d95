"""The PBS dialects on their own: the headers they render, and how they read qsub, qstat -f
(PBS Pro and Torque: attributes indented by 4 spaces, long values wrapped onto lines that
start with a tab; the Slurm wrappers: attributes indented by a tab), qstat -x -f -F json
(PBS Pro >= 14), and qdel, on samples written from each scheduler's documentation
(qstat(1B), the PBS Pro Reference Guide's job states and JOB_EXEC_* exit codes, Torque's
"Job exit status" page) and from the wrappers over the test Slurm."""

from __future__ import annotations

import json

import pytest
from wflp.remote.config import Resources
from wflp.remote.scheduler import CommandResult, JobScript, JobState, SchedulerError, Status
from wflp.testing_scheduler import DialectContract
from wflp_pbs.scheduler import (
    PBSProScheduler,
    PBSScheduler,
    ended,
    parse_full,
    parse_json,
    status_of,
)

P = PBSScheduler()
PRO = PBSProScheduler()
D = "/scratch/alice/wflp-jobs/cluster/relax-0a1b2c3d4e"


def result(stdout="", stderr="", code=0, argv=("qstat",)):
    return CommandResult(tuple(argv), code, stdout, stderr)


def job(header=(), directory=D, **resources):
    return JobScript(name="relax-0a1b2c3d4e", directory=directory, stdout=f"{directory}/stdout",
                     stderr=f"{directory}/stderr", resources=Resources.from_dict(resources),
                     header=tuple(header))


def test_torque_syntax_header():
    lines = P.header(job(["#PBS -A abc123"], num_cores=4, num_nodes=2, max_time="36h",
                         max_memory="8G", partition="batch"))
    assert lines == [
        "#PBS -N relax-0a1b2c3d4e", f"#PBS -o {D}/stdout", f"#PBS -e {D}/stderr",
        "#PBS -S /bin/sh", "#PBS -l nodes=2:ppn=4", "#PBS -l walltime=36:00:00",
        "#PBS -l mem=8192mb", "#PBS -q batch", "#PBS -A abc123"]


def test_pbs_pro_header_asks_for_select_chunks():
    lines = PRO.header(job(num_cores=4, num_nodes=2, max_time="90m", max_memory="8G"))
    assert "#PBS -l select=2:ncpus=4:mem=4096mb" in lines   # mem per chunk (node)
    assert "#PBS -l place=scatter" in lines and "#PBS -l walltime=1:30:00" in lines
    assert not any("nodes=" in line for line in lines)
    assert "#PBS -l select=1:ncpus=1" in PRO.header(job())


def test_paths_pbs_cannot_take_are_refused():
    for bad in ("/tmp/a b", "/tmp/host:dir", "/tmp/$(touch x)", "/tmp/it's"):
        with pytest.raises(SchedulerError, match="PBS cannot take the job's output path"):
            P.header(job(directory=bad))
    with pytest.raises(SchedulerError, match="queue 'q;rm'"):
        P.header(job(partition="q;rm"))


# PBS Pro 2022, `qstat -x -f 1234.pbs01 1235.pbs01 ...`: attributes indented by 4 spaces,
# long values wrapped onto lines that start with a tab (qstat(1B), PBS Pro Reference Guide)
PBSPRO_FULL = f"""\
Job Id: 1234.pbs01
    Job_Name = relax-0a1b2c3d4e
    Job_Owner = alice@login01.cluster.org
    resources_used.cpupercent = 98
    resources_used.cput = 00:09:52
    resources_used.mem = 212584kb
    resources_used.ncpus = 4
    resources_used.vmem = 1530912kb
    resources_used.walltime = 00:10:03
    job_state = F
    queue = workq
    server = pbs01
    Checkpoint = u
    ctime = Tue Mar  5 10:00:01 2024
    Error_Path = login01.cluster.org:{D}/stderr
    exec_host = cn042/0*4
    exec_vnode = (cn042:ncpus=4:mem=8388608kb)
    Hold_Types = n
    Join_Path = n
    Keep_Files = n
    Mail_Points = a
    mtime = Tue Mar  5 10:10:05 2024
    Output_Path = login01.cluster.org:{D}/stdout
    Priority = 0
    qtime = Tue Mar  5 10:00:01 2024
    Rerunable = True
    Resource_List.mem = 8gb
    Resource_List.ncpus = 4
    Resource_List.nodect = 1
    Resource_List.place = pack
    Resource_List.select = 1:ncpus=4:mem=8gb
    Resource_List.walltime = 00:10:00
    stime = Tue Mar  5 10:00:02 2024
    session_id = 28119
    jobdir = /home/alice
    substate = 93
    Variable_List = PBS_O_HOME=/home/alice,PBS_O_LANG=en_US.UTF-8,PBS_O_LOGNAM
\tE=alice,PBS_O_PATH=/usr/local/bin:/usr/bin:/bin,PBS_O_MAIL=/var/spool/ma
\til/alice,PBS_O_SHELL=/bin/bash,PBS_O_WORKDIR=/home/alice,PBS_O_SYSTEM=Li
\tnux,PBS_O_QUEUE=workq,PBS_O_HOST=login01.cluster.org
    comment = Job run at Tue Mar 05 at 10:00 on (cn042:ncpus=4:mem=8388608kb) a
\tnd finished
    etime = Tue Mar  5 10:00:01 2024
    run_count = 1
    Exit_status = -29
    Submit_arguments = -N relax-0a1b2c3d4e -o {D}/stdout -e {D}/stderr
\t {D}/job.sh
    history_timestamp = 1709633405
    project = _pbs_project_default

Job Id: 1235.pbs01
    Job_Name = scale-9f8e7d6c5b
    Job_Owner = alice@login01.cluster.org
    job_state = Q
    queue = workq
    server = pbs01
    Hold_Types = n
    Resource_List.select = 1:ncpus=1
    Resource_List.walltime = 01:00:00
    comment = Not Running: Insufficient amount of resource: ncpus (R: 1 A: 0 T: 256)
    substate = 10

Job Id: 1236.pbs01
    Job_Name = held-1122334455
    job_state = H
    Hold_Types = u
    comment = Job held by alice on Tue Mar  5 10:02:11 2024

Job Id: 1237.pbs01
    Job_Name = run-5566778899
    job_state = R
    comment = Job run at Tue Mar 05 at 10:03 on (cn001:ncpus=1)
    exec_host = cn001/0

Job Id: 1238.pbs01
    Job_Name = sus-0000000000
    job_state = S

Job Id: 1239.pbs01
    Job_Name = oom-0000000001
    job_state = F
    Exit_status = -27

Job Id: 1240.pbs01
    Job_Name = ok-0000000002
    job_state = F
    Exit_status = 0

Job Id: 1241.pbs01
    Job_Name = sig-0000000003
    job_state = F
    Exit_status = 271

Job Id: 1242.pbs01
    Job_Name = exit-0000000004
    job_state = F
    Exit_status = 3

Job Id: 1243.pbs01
    Job_Name = exiting-000005
    job_state = E

Job Id: 1244.pbs01
    Job_Name = mom-0000000006
    job_state = F
    Exit_status = -20

Job Id: 1245.pbs01
    Job_Name = waiting-0000007
    job_state = W
"""


def test_pbs_pro_full_listing():
    jobs = parse_full(PBSPRO_FULL)
    first = jobs["1234.pbs01"]
    assert first["Exit_status"] == "-29" and first["Resource_List.walltime"] == "00:10:00"
    assert first["Variable_List"].endswith("PBS_O_QUEUE=workq,PBS_O_HOST=login01.cluster.org")
    assert "PBS_O_LOGNAME=alice" in first["Variable_List"]  # a word cut by the wrapping
    assert first["comment"].endswith("and finished")
    ids = [f"{n}.pbs01" for n in range(1234, 1247)]
    got = P.parse_status(result(PBSPRO_FULL), ids)
    assert {k.split(".")[0]: v.state for k, v in got.items()} == {
        "1234": JobState.TIMEOUT, "1235": JobState.QUEUED, "1236": JobState.HELD,
        "1237": JobState.RUNNING, "1238": JobState.HELD, "1239": JobState.OUT_OF_MEMORY,
        "1240": JobState.SUCCEEDED, "1241": JobState.FAILED, "1242": JobState.FAILED,
        "1243": JobState.RUNNING, "1244": JobState.NODE_FAILURE, "1245": JobState.QUEUED}
    assert "JOB_EXEC_KILL_WALLTIME" in got["1234.pbs01"].reason
    assert got["1235.pbs01"].reason.startswith("Q: Not Running: Insufficient amount")
    assert got["1236.pbs01"].reason.startswith("H (held: u): Job held by alice")
    assert got["1238.pbs01"].reason == "S (suspended)"
    assert got["1241.pbs01"].reason == "F, exit status 271 (killed by signal 15)"
    assert got["1241.pbs01"].explain and got["1242.pbs01"].explain
    assert not got["1234.pbs01"].explain and got["1239.pbs01"].exit_code == -27


# Torque 6, `qstat -f`: the same layout, `exit_status` in lower case, `C` when completed
TORQUE_FULL = f"""\
Job Id: 5678.torque01.cluster.org
    Job_Name = relax-0a1b2c3d4e
    Job_Owner = bob@login01.cluster.org
    resources_used.cput = 00:00:00
    resources_used.energy_used = 0
    resources_used.mem = 3512kb
    resources_used.vmem = 28436kb
    resources_used.walltime = 00:01:05
    job_state = C
    queue = batch
    server = torque01.cluster.org
    Checkpoint = u
    ctime = Tue Mar  5 10:00:01 2024
    Error_Path = login01.cluster.org:{D}/stderr
    exec_host = node07/0-3
    Hold_Types = n
    Join_Path = n
    Keep_Files = n
    Mail_Points = a
    mtime = Tue Mar  5 10:01:07 2024
    Output_Path = login01.cluster.org:{D}/stdout
    Priority = 0
    qtime = Tue Mar  5 10:00:01 2024
    Rerunable = True
    Resource_List.nodect = 1
    Resource_List.nodes = 1:ppn=4
    Resource_List.walltime = 00:01:00
    session_id = 31415
    Variable_List = PBS_O_QUEUE=batch,PBS_O_HOME=/home/bob,
\tPBS_O_LOGNAME=bob,PBS_O_PATH=/usr/bin:/bin,PBS_O_SHELL=/bin/bash,
\tPBS_O_LANG=en_US.UTF-8,PBS_O_WORKDIR=/home/bob,PBS_O_HOST=login01
    euser = bob
    egroup = bob
    queue_type = E
    etime = Tue Mar  5 10:00:01 2024
    exit_status = -11
    submit_args = -N relax-0a1b2c3d4e -o {D}/stdout -e {D}/stderr {D}/job.sh
    start_time = Tue Mar  5 10:00:02 2024
    start_count = 1
    fault_tolerant = False
    comp_time = Tue Mar  5 10:01:07 2024
    job_radix = 0
    total_runtime = 66.120000
    submit_host = login01.cluster.org
    init_work_dir = /home/bob
    request_version = 1

Job Id: 5679.torque01.cluster.org
    Job_Name = a-1
    job_state = C
    exit_status = -10

Job Id: 5680.torque01.cluster.org
    Job_Name = a-2
    job_state = C
    exit_status = 0

Job Id: 5681.torque01.cluster.org
    Job_Name = a-3
    job_state = C
    exit_status = 265

Job Id: 5682.torque01.cluster.org
    Job_Name = a-4
    job_state = H
    Hold_Types = s
"""


def test_torque_full_listing_and_its_own_exit_codes():
    got = P.parse_status(result(TORQUE_FULL),
                         ["5678.torque01", "5679.torque01", "5680.torque01", "5681.torque01",
                          "5682.torque01"])  # qsub's id may be shorter than qstat's
    states = {k: v.state for k, v in got.items()}
    assert states == {"5678.torque01": JobState.TIMEOUT,      # -11: JOB_EXEC_OVERLIMIT_WT
                      "5679.torque01": JobState.OUT_OF_MEMORY,  # -10: JOB_EXEC_OVERLIMIT_MEM
                      "5680.torque01": JobState.SUCCEEDED,
                      "5681.torque01": JobState.FAILED,         # killed by signal 9
                      "5682.torque01": JobState.HELD}
    assert "JOB_EXEC_OVERLIMIT_WT" in got["5678.torque01"].reason
    assert got["5681.torque01"].reason == "C, exit status 265 (killed by signal 9)"
    # -11 means something else to PBS Pro (a rerun): the attribute's case tells them apart
    assert ended("F", -11, pro=True).state == JobState.FAILED


# the PBS-syntax wrappers over Slurm (slurm-wlm-torque 22.05): attributes after a tab, every
# finished job `C` with no exit status
WRAPPER_FULL = """\
Job Id:\t88
\tJob_Name = pname
\tJob_Owner = root@localhost
\tjob_state = C
\tqueue = debug
\tqtime = Sat Nov 21 23:57:50 2026
\tmtime = Sat Nov 21 23:57:51 2026
\tctime = Sat Nov 21 23:57:54 2026
\tAccount_Name = root
\texec_host = vm/2
\tPriority = 4294901671
\teuser = root(0)
\tegroup = root(0)
\tResource_List.walltime = 00:05:00
\tResource_List.nodect = 1
\tResource_List.ncpus = 2

Job Id:\t89
\tJob_Name = long
\tJob_Owner = root@localhost
\tjob_state = R
\tqueue = debug
\tResource_List.walltime = 00:05:00

"""


def test_the_slurm_wrappers_listing():
    jobs = parse_full(WRAPPER_FULL)
    assert jobs["88"]["Job_Name"] == "pname" and jobs["88"]["Resource_List.ncpus"] == "2"
    got = P.parse_status(result(WRAPPER_FULL), ["88", "89"])
    assert got["89"].state == JobState.RUNNING
    assert got["88"] == Status(JobState.FAILED, "C (ended; PBS gives no exit status)",
                               explain=True)  # its stderr decides


def test_exit_153_still_yields_the_known_jobs():
    said = "qstat: Unknown Job Id 1299.pbs01\n"
    got = P.parse_status(result(PBSPRO_FULL, said, 153), ["1240.pbs01", "1299.pbs01"])
    assert list(got) == ["1240.pbs01"] and got["1240.pbs01"].state == JobState.SUCCEEDED
    assert P.parse_status(result("", said, 153), ["1299.pbs01"]) == {}
    with pytest.raises(SchedulerError, match="(?s)qstat failed: .*cannot connect to server"):
        P.parse_status(result("", "Connection refused\nqstat: cannot connect to server pbs01 "
                                  "(errno=111)", 2), ["1240.pbs01"])


# PBS Pro >= 14: `qstat -x -f -F json ...` (PP-483): timestamp, pbs_version, pbs_server, Jobs
PBSPRO_JSON = {
    "timestamp": 1709633500, "pbs_version": "2022.1.3", "pbs_server": "pbs01",
    "Jobs": {
        "1234.pbs01": {
            "Job_Name": "relax-0a1b2c3d4e", "Job_Owner": "alice@login01.cluster.org",
            "resources_used": {"cpupercent": 98, "cput": "00:09:52", "mem": "212584kb",
                               "ncpus": 4, "vmem": "1530912kb", "walltime": "00:10:03"},
            "job_state": "F", "queue": "workq", "server": "pbs01",
            "Error_Path": f"login01.cluster.org:{D}/stderr",
            "Resource_List": {"mem": "8gb", "ncpus": 4, "nodect": 1, "place": "pack",
                              "select": "1:ncpus=4:mem=8gb", "walltime": "00:10:00"},
            "Variable_List": {"PBS_O_HOME": "/home/alice", "PBS_O_WORKDIR": "/home/alice"},
            "comment": "Job run at Tue Mar 05 at 10:00 on (cn042:ncpus=4) and finished",
            "run_count": 1, "Exit_status": -29, "history_timestamp": 1709633405},
        "1235.pbs01": {"Job_Name": "scale", "job_state": "Q",
                       "comment": "Not Running: Insufficient amount of resource: ncpus"},
        "1236.pbs01": {"Job_Name": "held", "job_state": "H", "Hold_Types": "u"},
        "1237.pbs01": {"Job_Name": "run", "job_state": "R"},
        "1238[].pbs01": {"Job_Name": "array", "job_state": "B"},
        "1239.pbs01": {"Job_Name": "oom", "job_state": "F", "Exit_status": -26},
        "1240.pbs01": {"Job_Name": "ok", "job_state": "F", "Exit_status": 0},
        "1241.pbs01": {"Job_Name": "sus", "job_state": "U"},
        "1242.pbs01": {"Job_Name": "moved", "job_state": "M"},
        "1243.pbs01": {"Job_Name": "in transit", "job_state": "T"},
    }}


def test_pbs_pro_json_listing():
    assert PRO.status_command(["1234.pbs01", "1235.pbs01"]) == [
        "qstat", "-x", "-f", "-F", "json", "1234.pbs01", "1235.pbs01"]
    ids = ["1234.pbs01", "1235.pbs01", "1236.pbs01", "1237.pbs01", "1238[].pbs01",
           "1239.pbs01", "1240.pbs01", "1241.pbs01", "1242.pbs01", "1243.pbs01"]
    got = PRO.parse_status(result(json.dumps(PBSPRO_JSON, indent=4)), ids)
    assert {k: v.state for k, v in got.items()} == {
        "1234.pbs01": JobState.TIMEOUT, "1235.pbs01": JobState.QUEUED,
        "1236.pbs01": JobState.HELD, "1237.pbs01": JobState.RUNNING,
        "1238[].pbs01": JobState.RUNNING, "1239.pbs01": JobState.OUT_OF_MEMORY,
        "1240.pbs01": JobState.SUCCEEDED, "1241.pbs01": JobState.HELD,
        "1242.pbs01": JobState.QUEUED, "1243.pbs01": JobState.QUEUED}
    assert got["1234.pbs01"].exit_code == -29


def test_pbs_pro_json_with_unescaped_backslashes_is_mended():
    broken = ('{"pbs_version":"19.1.3","Jobs":{"7.s":{"job_state":"F","Exit_status":0,'
              '"Variable_List":"PBS_O_PATH=C:\\Program Files\\x,TAB=\t"}}}')
    with pytest.raises(ValueError):
        json.loads(broken)
    assert parse_json(broken)["7.s"]["Exit_status"] == 0
    assert PRO.parse_status(result(broken), ["7.s"])["7.s"].state == JobState.SUCCEEDED
    with pytest.raises(SchedulerError, match="not JSON"):
        PRO.parse_status(result("qstat: illegal -F value"), ["7.s"])
    assert PRO.parse_status(result("", "qstat: Unknown Job Id 7.s", 153), ["7.s"]) == {}


def test_explaining_jobs_that_ended_without_saying_how():
    out = ("\n==wflp-tail== 88\nslurmstepd-vm: error: *** JOB 88 ON vm CANCELLED AT "
           "2026-11-21T23:57:59 DUE TO TIME LIMIT ***\n"
           "\n==wflp-tail== 89\nslurmstepd-vm: error: *** JOB 89 ON vm CANCELLED AT "
           "2026-11-21T23:57:59 ***\n"
           "\n==wflp-tail== 90\nslurmstepd-vm: error: Exceeded job memory limit\n"
           "\n==wflp-tail== 5681.t\n=>> PBS: job killed: walltime 65 exceeded limit 60\n"
           "\n==wflp-tail== 5683.t\n=>> PBS: job killed: mem 9437184kb exceeded limit "
           "8388608kb\n"
           "\n==wflp-tail== 91\nTraceback (most recent call last):\nValueError: bad\n"
           "\n==wflp-tail== 92\n\n")
    unclear = Status(JobState.FAILED, "C (ended; PBS gives no exit status)", explain=True)
    killed = Status(JobState.FAILED, "C, exit status 271 (killed by signal 15)", 271, True)
    got = P.parse_explain(result(out), {"88": unclear, "89": unclear, "90": unclear,
                                        "5681.t": killed, "5683.t": killed, "91": unclear,
                                        "92": unclear})
    assert got["88"].state == JobState.TIMEOUT and got["89"].state == JobState.CANCELLED
    assert got["90"].state == JobState.OUT_OF_MEMORY
    assert got["5681.t"].state == JobState.TIMEOUT and got["5681.t"].exit_code == 271
    assert got["5681.t"].reason.endswith("its stderr says: =>> PBS: job killed: walltime 65 "
                                         "exceeded limit 60")
    assert got["5683.t"].state == JobState.OUT_OF_MEMORY
    assert got["91"] == Status(JobState.FAILED, "C (ended; PBS gives no exit status); its "
                                                "stderr ends: ValueError: bad")
    assert got["92"] == Status(JobState.FAILED, "C (ended; PBS gives no exit status)")


def test_pbs_pro_finds_by_name_with_qselect():
    assert PRO.find_command("relax-0a1b2c3d4e") == ["qselect", "-x", "-N", "relax-0a1b2c3d4e"]
    assert PRO.parse_find(result("1234.pbs01\n1301.pbs01\n"), "relax") == "1301.pbs01"


class TestPBSDialect(DialectContract):
    dialects = {"pbs": PBSScheduler, "pbspro": PBSProScheduler}
    dialect = P
    commands = [("submit_command", (f"{D}/job.sh", job()),
                 ["qsub", "-N", "relax-0a1b2c3d4e", "-o", f"{D}/stdout", "-e", f"{D}/stderr",
                  f"{D}/job.sh"]),  # the paths on the command line too: the wrappers need them
                ("find_command", ("relax-0a1b2c3d4e",), ["qstat", "-f"])]
    # with or without the server
    submit_outputs = [(out, out.strip()) for out in ("1234.pbs01\n", "1234.torque01.cluster.org\n",
                                                     "88\n", "1234[].pbs01\n")]
    submit_failures = [
        ("", "qsub: Unknown queue", 170, r"(?s)qsub did not print a job id: .*qsub: Unknown queue"),
        ("", "qsub: Job exceeds queue resource limits MSG=cannot satisfy queue max walltime "
             "requirement", 188,
         r"(?s)qsub did not print a job id: .*MSG=cannot satisfy queue max walltime requirement"),
        ("There was an error running the Slurm sbatch command.\nThe command was:\n'sbatch ...'\n"
         "and the output was:\n'sbatch: error: invalid partition specified: nope'\n", "", 0,
         r"(?s)qsub did not print a job id: .*'sbatch: error: invalid partition specified: "
         r"nope'"),
    ]
    # the live job_state letters (qstat(1B)); E (exiting) is not final either
    state_codes = {"Q": JobState.QUEUED, "W": JobState.QUEUED, "T": JobState.QUEUED,
                   "M": JobState.QUEUED, "H": JobState.HELD, "S": JobState.HELD,
                   "U": JobState.HELD, "R": JobState.RUNNING, "E": JobState.RUNNING,
                   "B": JobState.RUNNING}
    cancel_outputs = [
        ("", "qdel: Unknown Job Id 1299.pbs01\nqdel: Request invalid for state of job "
             "1240.pbs01\n", 153, ["1237.pbs01", "1299.pbs01", "1240.pbs01"],
         {"1299.pbs01": r"^PBS does not know it",
          "1240.pbs01": r"Request invalid for state of job"}),
        ("", "", 0, ["1237.pbs01"], {}),
        # the wrappers over Slurm exit with a count, naming nobody
        ("", "", 1, ["88", "89"], {}),
        ("", "", 1, ["88"], {"88": r"may have ended already"}),
    ]
    find_outputs = [(PBSPRO_FULL, "relax-0a1b2c3d4e", "1234.pbs01"), (WRAPPER_FULL, "pname", "88"),
                    (WRAPPER_FULL, "nothing", None)]

    def common_state(self, code):
        return status_of({"job_state": code}).state
