"""The PBS dialects: ``pbs`` (Torque, OpenPBS/PBS Pro through their common syntax, and the
PBS-syntax wrappers over Slurm) and ``pbspro`` (PBS Pro / OpenPBS: ``select`` chunks, and
``qstat -x -f -F json``, which also lists finished jobs with their ``Exit_status``).

``#PBS`` headers, ``qsub`` (the id with or without ``.server``), one ``qstat`` per poll,
``qdel``, and a look at the stderr of jobs that ended without saying why (PBS writes
``=>> PBS: job killed: walltime ... exceeded limit ...`` there). Everything else (job
directories, the store, transport, polling, resume) is wflp's core.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from wflp.remote.config import format_hms
from wflp.remote.scheduler import (
    CommandResult,
    JobScript,
    JobState,
    Scheduler,
    SchedulerError,
    Status,
    parse_tails,
    tail_command,
)

Q, H, R = JobState.QUEUED, JobState.HELD, JobState.RUNNING

#: job_state letters of Torque and PBS Pro (qstat(1B)); C, F and X have ended: their exit
#: status decides
STATES: dict[str, JobState] = {
    "Q": Q, "W": Q, "T": Q, "M": Q,   # queued; waiting for its start time; in transit; moved
    "H": H,                           # held
    "S": H, "U": H,                   # suspended (U: the workstation's user is busy)
    "R": R, "E": R, "B": R,           # running; exiting (not final); an array has begun
}
ENDED = frozenset({"C", "F", "X"})    # Torque: completed; PBS Pro: finished (X: a subjob)

#: PBS Pro's negative Exit_status values (JOB_EXEC_* of its job.h)
PBSPRO_CODES: dict[int, tuple[JobState, str]] = {
    -1: (JobState.FAILED, "JOB_EXEC_FAIL1: it could not start (before its files were set up)"),
    -2: (JobState.FAILED, "JOB_EXEC_FAIL2: it could not start (after its files were set up)"),
    -3: (JobState.FAILED, "JOB_EXEC_RETRY: it could not start"),
    -4: (JobState.NODE_FAILURE, "JOB_EXEC_INITABT: its MoM aborted it at start-up"),
    -5: (JobState.NODE_FAILURE, "JOB_EXEC_INITRST: its MoM aborted it at start-up"),
    -6: (JobState.NODE_FAILURE, "JOB_EXEC_INITRMG: its MoM aborted it at start-up"),
    -7: (JobState.FAILED, "JOB_EXEC_BADRESRT: its restart failed"),
    -10: (JobState.FAILED, "JOB_EXEC_FAILUID: invalid user or group"),
    -11: (JobState.FAILED, "JOB_EXEC_RERUN: rerun"),
    -12: (JobState.FAILED, "JOB_EXEC_CHKP: checkpointed and killed"),
    -13: (JobState.FAILED, "JOB_EXEC_FAIL_PASSWORD: a bad password"),
    -14: (JobState.NODE_FAILURE, "JOB_EXEC_RERUN_SIS_FAIL: a sister node failed"),
    -15: (JobState.FAILED, "JOB_EXEC_QUERST: requeued for a restart"),
    -16: (JobState.FAILED, "JOB_EXEC_FAILHOOK_RERUN: a hook rejected it"),
    -17: (JobState.FAILED, "JOB_EXEC_FAILHOOK_DELETE: a hook rejected it"),
    -18: (JobState.FAILED, "JOB_EXEC_HOOK_RERUN: a hook requeued it"),
    -19: (JobState.CANCELLED, "JOB_EXEC_HOOK_DELETE: a hook deleted it"),
    -20: (JobState.NODE_FAILURE, "JOB_EXEC_RERUN_MS_FAIL: its mother superior failed"),
    -21: (JobState.FAILED, "JOB_EXEC_FAIL_SECURITY: a security problem in PBS's folder"),
    -22: (JobState.FAILED, "JOB_EXEC_HOOKERROR: a hook failed"),
    -23: (JobState.FAILED, "JOB_EXEC_FAIL_KRB5: no Kerberos credentials"),
    -24: (JobState.FAILED, "JOB_EXEC_KILL_NCPUS_BURST: it used more cores than it asked for"),
    -25: (JobState.FAILED, "JOB_EXEC_KILL_NCPUS_SUM: it used more cores than it asked for"),
    -26: (JobState.OUT_OF_MEMORY, "JOB_EXEC_KILL_VMEM: over its vmem"),
    -27: (JobState.OUT_OF_MEMORY, "JOB_EXEC_KILL_MEM: over its mem"),
    -28: (JobState.TIMEOUT, "JOB_EXEC_KILL_CPUT: over its cput"),
    -29: (JobState.TIMEOUT, "JOB_EXEC_KILL_WALLTIME: over its walltime"),
}

#: Torque's negative exit_status values (its "Job exit status" documentation, 6.x)
TORQUE_CODES: dict[int, tuple[JobState, str]] = {
    -1: (JobState.FAILED, "JOB_EXEC_FAIL1: it could not start (before its files were set up)"),
    -2: (JobState.FAILED, "JOB_EXEC_FAIL2: it could not start (after its files were set up)"),
    -3: (JobState.FAILED, "JOB_EXEC_RETRY: it could not start"),
    -4: (JobState.NODE_FAILURE, "JOB_EXEC_INITABT: its MOM aborted it at start-up"),
    -5: (JobState.NODE_FAILURE, "JOB_EXEC_INITRST: its MOM aborted it at start-up"),
    -6: (JobState.NODE_FAILURE, "JOB_EXEC_INITRMG: its MOM aborted it at start-up"),
    -7: (JobState.FAILED, "JOB_EXEC_BADRESRT: its restart failed"),
    -8: (JobState.FAILED, "JOB_EXEC_CMDFAIL: its command could not be run"),
    -9: (JobState.FAILED, "JOB_EXEC_STDOUTFAIL: its stdout or stderr could not be opened"),
    -10: (JobState.OUT_OF_MEMORY, "JOB_EXEC_OVERLIMIT_MEM: over its memory limit"),
    -11: (JobState.TIMEOUT, "JOB_EXEC_OVERLIMIT_WT: over its walltime"),
    -12: (JobState.TIMEOUT, "JOB_EXEC_OVERLIMIT_CPUT: over its cput"),
}

#: what PBS MoMs (and Slurm under the PBS wrappers) write into a job's stderr when they kill it
KILLED_FOR = [
    (re.compile(r"PBS: job killed: walltime|DUE TO TIME LIMIT"), JobState.TIMEOUT),
    (re.compile(r"PBS: job killed: cput"), JobState.TIMEOUT),
    (re.compile(r"PBS: job killed: p?v?mem|Exceeded job memory limit|exceeded memory limit|"
                r"oom-kill event"), JobState.OUT_OF_MEMORY),
    (re.compile(r"\*\*\* JOB \S+ ON \S+ CANCELLED AT"), JobState.CANCELLED),
]

_ID = re.compile(r"^\d+(?:\[\d*\])?(?:\.[A-Za-z0-9_.-]+)?$")  # 12, 12.server, 12[].server.org
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+,=@%-]+$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.,+@-]+$")
_RANK = {R: 0, H: 1, Q: 2}


class PBSScheduler(Scheduler):
    """PBS in the syntax Torque, PBS Pro and OpenPBS share (``-l nodes=N:ppn=C``,
    ``qstat -f ID...``)."""

    name = "pbs"
    enforces_limits = True
    listing_is_complete = False  # finished jobs are kept for keep_completed / job history
    default_poll_interval = 30.0

    # -- the job script ------------------------------------------------------------------
    def resource_lines(self, job: JobScript) -> list[str]:
        res = job.resources
        lines = [f"#PBS -l nodes={res.num_nodes}:ppn={res.num_cores}"]
        if res.max_time:
            lines.append(f"#PBS -l walltime={format_hms(res.max_time)}")
        if res.max_memory:
            lines.append(f"#PBS -l mem={res.max_memory}mb")
        return lines

    def header(self, job: JobScript) -> list[str]:
        """#PBS lines: name, stdout/stderr, resources, queue; then the system's own lines."""
        for path in (job.stdout, job.stderr):
            if not _SAFE_PATH.match(path):
                raise SchedulerError(
                    f"PBS cannot take the job's output path {path!r}: PBS reads 'host:path' "
                    "in -o/-e, and the PBS wrappers over Slurm pass it through a shell; "
                    "choose a remote_root of letters, digits and _ . / + , = @ % -")
        lines = [f"#PBS -N {job.name}", f"#PBS -o {job.stdout}", f"#PBS -e {job.stderr}",
                 "#PBS -S /bin/sh", *self.resource_lines(job)]
        if job.resources.partition:
            if not _SAFE_NAME.match(job.resources.partition):
                raise SchedulerError(f"PBS queue {job.resources.partition!r}: a queue name has "
                                     "only letters, digits and _ . , + @ -")
            lines.append(f"#PBS -q {job.resources.partition}")
        return lines + list(job.header)

    def submit_command(self, script: str, job: JobScript) -> list[str]:
        # -o/-e on the command line too: the PBS wrappers over Slurm ignore #PBS -o/-e
        return ["qsub", "-N", job.name, "-o", job.stdout, "-e", job.stderr, script]

    def parse_submit(self, result: CommandResult) -> str:
        lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        if result.returncode != 0 or not lines or not _ID.match(lines[-1]):
            raise SchedulerError(f"qsub did not print a job id: {result.describe()}")
        return lines[-1]

    # -- states ----------------------------------------------------------------------------
    def status_command(self, ids: list[str]) -> Optional[list[str]]:
        return ["qstat", "-f", *ids]

    def parse_status(self, result: CommandResult, ids: list[str]) -> dict[str, Status]:
        # exit 153 (PBSE_UNKJOBID): some ids are unknown; the known ones are still listed
        if result.returncode not in (0, 153) and "Job Id:" not in result.stdout:
            raise SchedulerError(f"qstat failed: {result.describe()}")
        return match_ids(parse_full(result.stdout), ids)

    def explain_command(self, jobs: dict[str, str]) -> Optional[list[str]]:
        return tail_command(jobs, 4096)

    def parse_explain(self, result: CommandResult,
                      statuses: dict[str, Status]) -> dict[str, Status]:
        tails = parse_tails(result)
        out = {}
        for job_id, status in statuses.items():
            text = tails.get(job_id, "")
            state = status.state
            for pattern, killed in KILLED_FOR:
                m = pattern.search(text)
                if m:
                    state = killed
                    line = next(x for x in text.splitlines() if m.group(0) in x)
                    reason = f"{status.reason}; its stderr says: {line.strip()[-300:]}"
                    break
            else:
                last = next((x.strip() for x in reversed(text.splitlines()) if x.strip()), "")
                reason = f"{status.reason}; its stderr ends: {last[-300:]}" if last \
                    else status.reason
            out[job_id] = Status(state, reason, status.exit_code)
        return out

    # -- cancel, find ------------------------------------------------------------------------
    def cancel_command(self, ids: list[str]) -> list[str]:
        return ["qdel", *ids]

    def parse_cancel(self, result: CommandResult, ids: list[str]) -> dict[str, str]:
        said = result.stdout + "\n" + result.stderr
        problems = {}
        for m in re.finditer(r"qdel: (Unknown Job Id|Request invalid for state of job|"
                             r"Job has finished)[:\s]+(\S+)", said, re.IGNORECASE):
            job_id = _known(m.group(2), ids)
            if job_id:
                problems[job_id] = ("PBS does not know it (it has ended, or never existed)"
                                    if "unknown" in m.group(1).lower() else
                                    f"{m.group(1)} (it has ended)")
        if result.returncode != 0 and not problems:
            if len(ids) == 1:
                return {ids[0]: result.describe() + " (it may have ended already)"}
            # the PBS wrappers over Slurm exit with the number of ids they could not
            # cancel and name none of them: the next poll tells which ended how
        return problems

    def find_command(self, name: str) -> Optional[list[str]]:
        # every job in full: the PBS wrappers over Slurm have no qselect, and a qselect on
        # PATH may be Grid Engine's. Only run after a driver died between qsub and storing
        # the id, so its size does not matter much
        return ["qstat", "-f"]

    def parse_find(self, result: CommandResult, name: str) -> Optional[str]:
        if "Job Id:" in result.stdout:
            found = [job_id for job_id, attrs in parse_full(result.stdout).items()
                     if attrs.get("Job_Name") == name]
        else:
            found = [line.strip() for line in result.stdout.splitlines()
                     if _ID.match(line.strip())]
        return max(found, key=_sequence) if found else None  # the newest


class PBSProScheduler(PBSScheduler):
    """PBS Pro / OpenPBS: ``-l select=N:ncpus=C:mem=M``, and ``qstat -x -f -F json``, which
    lists finished jobs too (with job history on) with their ``Exit_status``."""

    name = "pbspro"

    def resource_lines(self, job: JobScript) -> list[str]:
        res = job.resources
        chunk = f"{res.num_nodes}:ncpus={res.num_cores}"
        if res.max_memory:
            chunk += f":mem={-(-res.max_memory // res.num_nodes)}mb"  # per chunk (node)
        lines = [f"#PBS -l select={chunk}"]
        if res.num_nodes > 1:
            lines.append("#PBS -l place=scatter")
        if res.max_time:
            lines.append(f"#PBS -l walltime={format_hms(res.max_time)}")
        return lines

    def status_command(self, ids: list[str]) -> Optional[list[str]]:
        return ["qstat", "-x", "-f", "-F", "json", *ids]

    def find_command(self, name: str) -> Optional[list[str]]:
        return ["qselect", "-x", "-N", name]  # ids, one a line; -x: finished ones too

    def parse_status(self, result: CommandResult, ids: list[str]) -> dict[str, Status]:
        text = result.stdout.strip()
        if not text:
            if result.returncode in (0, 153):
                return {}  # none of them known (any more)
            raise SchedulerError(f"qstat failed: {result.describe()}")
        return match_ids(parse_json(text), ids)


# -- reading qstat ------------------------------------------------------------------------------

def parse_full(text: str) -> dict[str, dict[str, str]]:
    """{job id: {attribute: value}} from ``qstat -f``. Attributes are indented by 4 spaces
    (Torque, PBS Pro) or a tab (the wrappers over Slurm), long values go on in lines that
    start with a tab (PBS Pro, Torque) and are joined as they are."""
    jobs: dict[str, dict[str, str]] = {}
    current: Optional[dict[str, str]] = None
    indent: Optional[str] = None
    last: Optional[str] = None
    for line in text.splitlines():
        m = re.match(r"Job Id:\s*(\S+)", line)
        if m:
            current, indent, last = jobs.setdefault(m.group(1), {}), None, None
            continue
        if current is None or not line.strip():
            continue
        m = re.match(r"^([ \t]+)([A-Za-z_][\w.]*) = ?(.*)$", line)
        if m and (indent is None or m.group(1) == indent):
            indent = m.group(1)
            last = m.group(2)
            current[last] = m.group(3).rstrip()
        elif last is not None:
            current[last] += line.strip("\r\n").lstrip("\t").rstrip()
    return jobs


def parse_json(text: str) -> dict[str, dict[str, Any]]:
    """{job id: attributes} from ``qstat -f -F json`` (PBS Pro >= 14). Some versions print
    unescaped backslashes or control characters in values: those are mended first."""
    try:
        data = json.loads(text, strict=False)
    except ValueError:
        mended = re.sub(r'\\(?!["\\/bfnrtu])', r"\\\\", text)
        try:
            data = json.loads(mended, strict=False)
        except ValueError as err:
            raise SchedulerError(f"qstat -F json printed something that is not JSON ({err}): "
                                 f"{text[:500]!r}") from None
    jobs = data.get("Jobs", {}) if isinstance(data, dict) else {}
    return {str(k): v for k, v in jobs.items() if isinstance(v, dict)}


def match_ids(jobs: dict[str, dict[str, Any]], ids: list[str]) -> dict[str, Status]:
    """The statuses of the asked-for ids: an id matches its job exactly, or by sequence
    number (``12`` and ``12.server.domain.org`` are the same job of one server)."""
    by_sequence: dict[str, list[str]] = {}
    for job_id in ids:
        by_sequence.setdefault(_sequence_text(job_id), []).append(job_id)
    found: dict[str, list[Status]] = {}
    for listed, attrs in jobs.items():
        status = status_of(attrs)
        targets = [listed] if listed in ids else by_sequence.get(_sequence_text(listed), [])
        for job_id in targets:
            found.setdefault(job_id, []).append(status)
    out = {}
    for job_id, statuses in found.items():
        live = [s for s in statuses if not s.state.final]
        out[job_id] = min(live, key=lambda s: _RANK.get(s.state, 9)) if live else statuses[0]
    return out


def status_of(attrs: dict[str, Any]) -> Status:
    """A job's Status from its qstat attributes (text or JSON)."""
    state = str(attrs.get("job_state", "")).strip()
    if state in ENDED:
        pro = "Exit_status" in attrs
        code = attrs.get("Exit_status", attrs.get("exit_status"))
        return ended(state, _int(code), pro)
    common = STATES.get(state, JobState.UNKNOWN)
    said = state
    if state in ("S", "U"):
        said += " (suspended)"
    elif state == "H":
        said += f" (held: {attrs['Hold_Types']})" if attrs.get("Hold_Types") else " (held)"
    comment = str(attrs.get("comment", "")).strip()
    if comment and common != R:
        said += f": {comment[:200]}"
    return Status(common, said)


def ended(state: str, code: Optional[int], pro: bool = True) -> Status:
    """How a finished job (C, F, X) ended, from its exit status: 0 succeeded, negative a
    PBS reason (PBS Pro's or Torque's codes), over 256 killed by signal (code - 256),
    else the job's own exit code. Anything unclear asks for its stderr (explain)."""
    if code is None:
        return Status(JobState.FAILED, f"{state} (ended; PBS gives no exit status)",
                      explain=True)
    if code == 0:
        return Status(JobState.SUCCEEDED, f"{state}, exit status 0", 0)
    if code < 0:
        table = PBSPRO_CODES if pro else TORQUE_CODES
        common, why = table.get(code, (JobState.FAILED, "a PBS error"))
        return Status(common, f"{state}, exit status {code} ({why})", code,
                      explain=common == JobState.FAILED)
    if code > 256:
        return Status(JobState.FAILED, f"{state}, exit status {code} (killed by signal "
                      f"{code - 256})", code, explain=True)
    return Status(JobState.FAILED, f"{state}, exit status {code}", code, explain=True)


def _int(value: Any) -> Optional[int]:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _sequence_text(job_id: str) -> str:
    return job_id.split(".", 1)[0]


def _sequence(job_id: str) -> int:
    m = re.match(r"\d+", job_id)
    return int(m.group(0)) if m else -1


def _known(job_id: str, ids: list[str]) -> Optional[str]:
    if job_id in ids:
        return job_id
    seq = _sequence_text(job_id)
    return next((i for i in ids if _sequence_text(i) == seq), None)


__all__ = ["ENDED", "PBSPRO_CODES", "PBSProScheduler", "PBSScheduler", "STATES",
           "TORQUE_CODES", "ended", "match_ids", "parse_full", "parse_json", "status_of"]
