"""The Slurm dialect: ``#SBATCH`` headers, ``sbatch --parsable``, one ``squeue -t all`` per
poll, ``sacct`` for jobs squeue no longer lists, ``scancel``, and a look at the stderr of
failed jobs (a memory kill without cgroups is FAILED with "Exceeded job memory limit").

Everything else (job directories, the store, transport, polling, resume) is wflp's core.
"""

from __future__ import annotations

import re
from typing import Optional

from wflp.remote.config import format_dhms
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

#: Slurm's job states, as squeue (%T, and its short codes %t) and sacct print them
STATES: dict[str, JobState] = {}
for _names, _state in [
    (("PENDING", "PD", "CONFIGURING", "CF", "REQUEUED", "RQ", "REQUEUE_FED", "RF"), Q),
    (("REQUEUE_HOLD", "RH", "RESV_DEL_HOLD", "RD", "SUSPENDED", "S", "STOPPED", "ST"), H),
    (("RUNNING", "R", "COMPLETING", "CG", "RESIZING", "RS", "SIGNALING", "SI",
      "STAGE_OUT", "SO"), R),
    (("COMPLETED", "CD"), JobState.SUCCEEDED),
    (("FAILED", "F", "SPECIAL_EXIT", "SE"), JobState.FAILED),
    (("CANCELLED", "CA", "PREEMPTED", "PR", "REVOKED", "RV"), JobState.CANCELLED),
    (("TIMEOUT", "TO", "DEADLINE", "DL"), JobState.TIMEOUT),
    (("OUT_OF_MEMORY", "OOM"), JobState.OUT_OF_MEMORY),
    (("NODE_FAIL", "NF", "BOOT_FAIL", "BF"), JobState.NODE_FAILURE),
]:
    for _name in _names:
        STATES[_name] = _state

#: pending reasons that mean the job waits for a person, not for resources
HELD_REASONS = frozenset({"JobHeldUser", "JobHeldAdmin", "DependencyNeverSatisfied"})

#: what slurmstepd writes into a job's stderr when it kills the job for its memory
MEMORY_KILLED = re.compile(r"Exceeded job memory limit|exceeded memory limit|"
                           r"oom-kill event|Out Of Memory", re.IGNORECASE)
TIME_KILLED = re.compile(r"\*\*\* JOB \S+ ON \S+ CANCELLED AT \S+ DUE TO TIME LIMIT")

#: the squeue format: id (arrays: 16_3 or 16_[1-5]), array base id, state, reason
SQUEUE_FORMAT = "%i|%F|%T|%r"
_ID = re.compile(r"^(\d+)(?:;[\w.-]+)?$")  # sbatch --parsable: "123" or "123;cluster"
_SAFE_PARTITION = re.compile(r"^[A-Za-z0-9_.,+-]+$")
_RANK = {R: 0, H: 1, Q: 2}  # of several array tasks, the most active one speaks for the job


class SlurmScheduler(Scheduler):
    """Slurm (sbatch, squeue, sacct, scancel)."""

    name = "slurm"
    enforces_limits = True
    listing_is_complete = False  # squeue forgets finished jobs after MinJobAge
    default_poll_interval = 30.0

    # -- the job script ------------------------------------------------------------------
    def header(self, job: JobScript) -> list[str]:
        """#SBATCH lines: name, stdout/stderr, nodes, tasks per node (cores), time, memory,
        partition, then the system's own header lines."""
        res = job.resources
        lines = [f"#SBATCH --job-name={job.name}"]
        for option, path in (("--output", job.stdout), ("--error", job.stderr)):
            word = _header_word(_pattern_safe(path))
            if word is not None:  # else only on the sbatch command line
                lines.append(f"#SBATCH {option}={word}")
        lines += [f"#SBATCH --nodes={res.num_nodes}",
                  f"#SBATCH --ntasks-per-node={res.num_cores}"]
        if res.max_time:
            lines.append(f"#SBATCH --time={format_dhms(res.max_time)}")
        if res.max_memory:
            lines.append(f"#SBATCH --mem={res.max_memory}M")
        if res.partition:
            if not _SAFE_PARTITION.match(res.partition):
                raise SchedulerError(f"Slurm partition {res.partition!r}: a partition name "
                                     "has only letters, digits and _ . , + -")
            lines.append(f"#SBATCH --partition={res.partition}")
        return lines + list(job.header)

    def submit_command(self, script: str, job: JobScript) -> list[str]:
        # name and paths on the command line too: they win over the header, and need no
        # quoting there (the core quotes each word)
        return ["sbatch", "--parsable", f"--job-name={job.name}",
                f"--output={_pattern_safe(job.stdout)}", f"--error={_pattern_safe(job.stderr)}",
                f"--chdir={job.directory}", script]

    def parse_submit(self, result: CommandResult) -> str:
        lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        m = _ID.match(lines[-1]) if lines and result.returncode == 0 else None
        if m is None:
            raise SchedulerError(f"sbatch did not print a job id: {result.describe()}")
        return m.group(1)

    # -- states ----------------------------------------------------------------------------
    def status_command(self, ids: list[str]) -> Optional[list[str]]:
        # squeue exits 1 for a single id it no longer knows ("Invalid job id specified"),
        # and 0 for two or more: so a single id is given twice
        listed = list(ids) * 2 if len(ids) == 1 else list(ids)
        return ["squeue", "-h", "-t", "all", "-j", ",".join(listed), "-o", SQUEUE_FORMAT]

    def parse_status(self, result: CommandResult, ids: list[str]) -> dict[str, Status]:
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:
                return {}
            raise SchedulerError(f"squeue failed: {result.describe()}")
        found: dict[str, list[Status]] = {}
        wanted = set(ids)
        for line in result.stdout.splitlines():
            parts = line.strip().split("|", 3)
            if len(parts) < 3:
                continue
            job_id, base = parts[0], parts[1]
            state, reason = parts[2], parts[3] if len(parts) > 3 else ""
            status = _status(state, reason)
            for key in {job_id, base, job_id.split("_")[0]} & wanted:
                found.setdefault(key, []).append(status)
        return {key: _combine(statuses) for key, statuses in found.items()}

    def accounting_command(self, ids: list[str]) -> Optional[list[str]]:
        return ["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", "JobID,State,ExitCode"]

    def parse_accounting(self, result: CommandResult, ids: list[str]) -> dict[str, Status]:
        if result.returncode != 0:  # no accounting ("accounting storage is disabled")
            return {}
        found: dict[str, list[Status]] = {}
        wanted = set(ids)
        for line in result.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 3:
                continue
            job_id, state, exit_code = parts[0], parts[1], parts[2]
            status = _status(state, "", exit_code)
            for key in {job_id, job_id.split("_")[0]} & wanted:
                found.setdefault(key, []).append(status)
        return {key: _combine(statuses) for key, statuses in found.items()}

    def explain_command(self, jobs: dict[str, str]) -> Optional[list[str]]:
        return tail_command(jobs, 4096)

    def parse_explain(self, result: CommandResult,
                      statuses: dict[str, Status]) -> dict[str, Status]:
        tails = parse_tails(result)
        out = {}
        for job_id, status in statuses.items():
            text = tails.get(job_id, "")
            last = next((line.strip() for line in reversed(text.splitlines())
                         if line.strip()), "")
            if MEMORY_KILLED.search(text):
                out[job_id] = Status(JobState.OUT_OF_MEMORY,
                                     f"{status.reason}: Slurm killed it for its memory "
                                     f"({last[-300:]})", status.exit_code)
            elif TIME_KILLED.search(text):
                out[job_id] = Status(JobState.TIMEOUT, f"{status.reason}: its time limit",
                                     status.exit_code)
            elif last:
                out[job_id] = Status(status.state, f"{status.reason}; its stderr ends: "
                                     f"{last[-300:]}", status.exit_code)
            else:
                out[job_id] = Status(status.state, status.reason, status.exit_code)
        return out

    # -- cancel, find ------------------------------------------------------------------------
    def cancel_command(self, ids: list[str]) -> list[str]:
        return ["scancel", "-v", *ids]  # -v: without it, scancel says nothing of unknown ids

    def parse_cancel(self, result: CommandResult, ids: list[str]) -> dict[str, str]:
        problems = {}
        for m in re.finditer(r"Kill job error on job id (\S+): (.+)", result.stderr):
            if m.group(1) in ids:
                said = m.group(2).strip()
                if "Invalid job id" in said:
                    said += " (Slurm does not know it: it ended long ago, or never existed)"
                problems[m.group(1)] = said
        if result.returncode != 0 and not problems:
            return {i: result.describe() for i in ids}
        return problems

    def find_command(self, name: str) -> Optional[list[str]]:
        return ["squeue", "-h", "-t", "all", f"--name={name}", "-o", "%A|%j"]

    def parse_find(self, result: CommandResult, name: str) -> Optional[str]:
        found = []
        for line in result.stdout.splitlines():
            job_id, _, job_name = line.strip().partition("|")
            if job_name == name and job_id.isdigit():
                found.append(int(job_id))
        return str(max(found)) if found else None  # the newest, if it was resubmitted


def _status(state: str, reason: str, exit_code: str = "") -> Status:
    """One squeue or sacct line as a Status ("CANCELLED by 0" is CANCELLED)."""
    word = state.split()[0] if state.split() else state
    common = STATES.get(word, JobState.UNKNOWN)
    reason = reason.strip()
    if common == Q and reason in HELD_REASONS:
        common = H
    said = state.strip()
    if word in ("SUSPENDED", "S", "STOPPED", "ST"):
        said += " (suspended)"
    if reason and reason != "None":
        said += f" ({reason})"
    code = None
    if exit_code:
        first, _, signal = exit_code.partition(":")
        if first.isdigit():
            code = int(first)
        if signal.isdigit() and int(signal):
            said += f", killed by signal {signal}"
        elif code:
            said += f", exit code {code}"
    return Status(common, said, code, explain=common == JobState.FAILED)


def _combine(statuses: list[Status]) -> Status:
    """The state of a job from those of its array tasks (one, for a plain job)."""
    if len(statuses) == 1:
        return statuses[0]
    live = [s for s in statuses if not s.state.final and s.state != JobState.UNKNOWN]
    if live:
        return min(live, key=lambda s: _RANK.get(s.state, 9))
    bad = [s for s in statuses if s.state != JobState.SUCCEEDED]
    return bad[0] if bad else statuses[0]


def _pattern_safe(path: str) -> str:
    """*path* for --output/--error, where Slurm replaces %j, %u ...: '%' is written '%%'."""
    return path.replace("%", "%%")


def _header_word(text: str) -> Optional[str]:
    """*text* as one word of an #SBATCH line (sbatch reads "..." quoting), or None."""
    if re.fullmatch(r"[A-Za-z0-9_./%+=:,@-]+", text):
        return text
    if '"' in text or "\\" in text or "\n" in text:
        return None
    return f'"{text}"'


__all__ = ["HELD_REASONS", "STATES", "SlurmScheduler"]
