"""The Grid Engine dialect (Son of Grid Engine, Open Grid Scheduler, Univa/Altair GE):
``#$`` headers, ``qsub -terse``, one ``qstat -s prsz -u '*' -xml`` per poll (live jobs and
the zombies of finished ones), ``qacct -j`` for how a finished job ended, ``qdel``, and
``qstat -j`` for why a job is in error (``Eqw``).

Everything else (job directories, the store, transport, polling, resume) is wflp's core.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from typing import Optional

from wflp.remote.config import format_hms
from wflp.remote.scheduler import (
    CommandResult,
    JobScript,
    JobState,
    Scheduler,
    SchedulerError,
    Status,
)

#: the qacct "failed" codes with a meaning of their own (sge_status(5), qacct(1))
FAILED_LIMIT = 37      # "qmaster enforced h_rt, h_cpu, or h_vmem limit"
FAILED_DELETED = 100   # "assumedly after job": killed by a signal (qdel, or another kill)
_ID = re.compile(r"^(\d+)(?:\.\S+)?$")  # qsub -terse: "8", or "8.1-3:1" for an array
_SAFE = re.compile(r"^[A-Za-z0-9_.,+@-]+$")
_RANK = {JobState.RUNNING: 0, JobState.HELD: 1, JobState.QUEUED: 2}


class SGEScheduler(Scheduler):
    """Grid Engine (qsub, qstat, qacct, qdel)."""

    name = "sge"
    enforces_limits = True
    listing_is_complete = False  # zombies are kept for the last finished_jobs jobs only
    default_poll_interval = 30.0

    # -- the job script ------------------------------------------------------------------
    def header(self, job: JobScript) -> list[str]:
        """``#$`` lines: name, stdout/stderr, shell, h_rt, h_vmem (per slot), the parallel
        environment smp for more than one core, queue; then the system's own lines (one
        with ``-pe`` replaces wflp's, ``{slots}`` in it is the number of slots)."""
        res = job.resources
        slots = res.num_cores * res.num_nodes
        own = [line.replace("{slots}", str(slots)) for line in job.header]
        lines = [f"#$ -N {job.name}"]
        for option, path in (("-o", job.stdout), ("-e", job.stderr)):
            if re.fullmatch(r"[A-Za-z0-9_./+=,@%-]+", path):  # else on the command line only
                lines.append(f"#$ {option} {path}")
        lines.append("#$ -S /bin/sh")
        if res.max_time:
            lines.append(f"#$ -l h_rt={format_hms(res.max_time)}")
        if res.max_memory:
            lines.append(f"#$ -l h_vmem={math.ceil(res.max_memory / slots)}M")
        if slots > 1 and not any(re.search(r"(^|\s)-pe\s", line) for line in own):
            lines.append(f"#$ -pe smp {slots}")
        if res.partition:
            if not _SAFE.match(res.partition):
                raise SchedulerError(f"Grid Engine queue {res.partition!r}: a queue name has "
                                     "only letters, digits and _ . , + @ -")
            lines.append(f"#$ -q {res.partition}")
        return lines + own

    def submit_command(self, script: str, job: JobScript) -> list[str]:
        return ["qsub", "-terse", "-N", job.name, "-o", job.stdout, "-e", job.stderr,
                "-S", "/bin/sh", "-wd", job.directory, script]

    def parse_submit(self, result: CommandResult) -> str:
        lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        m = _ID.match(lines[-1]) if lines and result.returncode == 0 else None
        if m is None:
            raise SchedulerError(f"qsub did not print a job id: {result.describe()}")
        return m.group(1)

    # -- states ----------------------------------------------------------------------------
    def status_command(self, ids: list[str]) -> Optional[list[str]]:
        return ["qstat", "-s", "prsz", "-u", "*", "-xml"]

    def parse_status(self, result: CommandResult, ids: list[str]) -> dict[str, Status]:
        if result.returncode != 0:
            raise SchedulerError(f"qstat failed: {result.describe()}")
        try:
            root = ET.fromstring(result.stdout)
        except ET.ParseError as err:
            raise SchedulerError(f"qstat -xml printed something that is not XML ({err}): "
                                 f"{result.stdout[:500]!r}") from None
        wanted = set(ids)
        found: dict[str, list[Status]] = {}
        for entry in root.iter("job_list"):
            number = (entry.findtext("JB_job_number") or "").strip()
            if number not in wanted:
                continue
            status = state_of((entry.findtext("state") or "").strip())
            if status is not None:
                found.setdefault(number, []).append(status)
        return {number: _combine(statuses) for number, statuses in found.items()}

    def accounting_command(self, ids: list[str]) -> Optional[list[str]]:
        # qacct takes one -j (a second one replaces the first): one qacct per job, one
        # command in all
        return ["sh", "-c", 'for j do qacct -j "$j"; done', "sh", *ids]

    def parse_accounting(self, result: CommandResult, ids: list[str]) -> dict[str, Status]:
        records: dict[str, list[dict]] = {}
        for record in parse_qacct(result.stdout):
            number = record.get("jobnumber", "")
            if number in ids:
                records.setdefault(number, []).append(record)
        out = {}
        for number, recs in records.items():
            statuses = [accounted(r) for r in recs]
            bad = [s for s in statuses if s.state != JobState.SUCCEEDED]
            out[number] = bad[-1] if bad else statuses[-1]  # the last run of each task
        return out

    def explain_command(self, jobs: dict[str, str]) -> Optional[list[str]]:
        return ["qstat", "-j", ",".join(jobs)]

    def parse_explain(self, result: CommandResult,
                      statuses: dict[str, Status]) -> dict[str, Status]:
        reasons = error_reasons(result.stdout)
        out = {}
        for number, status in statuses.items():
            why = reasons.get(number)
            reason = (f"{status.reason}: it could not start: {why}" if why else
                      f"{status.reason}: it could not start")
            out[number] = Status(status.state, reason + f"; it stays queued in error state "
                                 f"until `qdel {number}` (or `qmod -cj {number}` once fixed)",
                                 status.exit_code)
        return out

    # -- cancel, find ------------------------------------------------------------------------
    def cancel_command(self, ids: list[str]) -> list[str]:
        return ["qdel", *ids]

    def parse_cancel(self, result: CommandResult, ids: list[str]) -> dict[str, str]:
        said = result.stdout + "\n" + result.stderr
        problems = {}
        for m in re.finditer(r'denied: job "?([^"\s]+)"? does not exist', said):
            if m.group(1) in ids:
                problems[m.group(1)] = ("Grid Engine does not know it (it has ended, or never "
                                        "existed)")
        for m in re.finditer(r"job (\d+) is already in deletion", said):
            if m.group(1) in ids:
                problems[m.group(1)] = "it is already being deleted"
        if result.returncode != 0 and not problems:
            return {i: result.describe() for i in ids}
        return problems

    def find_command(self, name: str) -> Optional[list[str]]:
        return ["qstat", "-s", "prsz", "-u", "*", "-xml"]

    def parse_find(self, result: CommandResult, name: str) -> Optional[str]:
        try:
            root = ET.fromstring(result.stdout)
        except ET.ParseError:
            return None
        found = [int(e.findtext("JB_job_number") or 0) for e in root.iter("job_list")
                 if (e.findtext("JB_name") or "").strip() == name]
        return str(max(found)) if found else None  # the newest, if it was resubmitted


def state_of(code: str) -> Optional[Status]:
    """The common state of a qstat state code (qw, hqw, r, t, Rr, s, S, T, Eqw, dr, z ...);
    None for a zombie (z: finished, qacct says how)."""
    if not code:
        return Status(JobState.UNKNOWN, "no state")
    if "z" in code:
        return None
    if "E" in code:
        return Status(JobState.FAILED, f"{code} (error state)", explain=True)
    deleting = " (being deleted)" if "d" in code else ""
    if any(c in code for c in "sST"):
        return Status(JobState.HELD, f"{code} (suspended){deleting}")
    if "r" in code or "t" in code:
        return Status(JobState.RUNNING, code + deleting)
    if "h" in code:
        return Status(JobState.HELD, code + deleting)
    if "q" in code or "w" in code:
        return Status(JobState.QUEUED, code + deleting)
    return Status(JobState.UNKNOWN, code)


def _combine(statuses: list[Status]) -> Status:
    live = [s for s in statuses if not s.state.final]
    if live:
        return min(live, key=lambda s: _RANK.get(s.state, 9))
    return statuses[0]


def parse_qacct(text: str) -> list[dict]:
    """The records of ``qacct -j`` output, as {field: value} (values stripped)."""
    records: list[dict] = []
    current: Optional[dict] = None
    for line in text.splitlines():
        if line.startswith("====="):
            current = {}
            records.append(current)
            continue
        if current is None or not line.strip():
            continue
        key, _, value = line.partition(" ")
        current[key.strip()] = value.strip()
    return [r for r in records if r]


def accounted(record: dict) -> Status:
    """How one job (task) ended, from its qacct record."""
    failed_text = record.get("failed", "0")
    m = re.match(r"(\d+)\s*(?::\s*(.*))?", failed_text)
    failed = int(m.group(1)) if m else 0
    why = (m.group(2) or "").strip() if m else failed_text
    m = re.match(r"(-?\d+)", record.get("exit_status", ""))
    exit_status = int(m.group(1)) if m else None
    said = f"qacct: failed {failed}{' (' + why + ')' if why else ''}, exit_status {exit_status}"
    if failed == 0 and exit_status == 0:
        return Status(JobState.SUCCEEDED, said, 0)
    if failed == FAILED_LIMIT:
        limits = _limits(record.get("category", ""))
        wallclock = _seconds(record.get("ru_wallclock", ""))
        h_rt = limits.get("h_rt")
        if h_rt is not None and wallclock is not None and wallclock >= _seconds(h_rt) - 1:
            return Status(JobState.TIMEOUT, said + f": ran {wallclock:g} s, h_rt {h_rt}",
                          exit_status)
        if "h_vmem" in limits:
            return Status(JobState.OUT_OF_MEMORY, said + f": maxvmem "
                          f"{record.get('maxvmem', '?')}, h_vmem {limits['h_vmem']}",
                          exit_status)
        if "h_rt" in limits or "h_cpu" in limits:
            return Status(JobState.TIMEOUT, said, exit_status)
        return Status(JobState.FAILED, said, exit_status)
    if failed == FAILED_DELETED:
        return Status(JobState.CANCELLED, said + " (deleted with qdel, or killed)", exit_status)
    if failed == 0 and exit_status is not None and exit_status > 128:
        return Status(JobState.FAILED, said + f" (killed by signal {exit_status - 128})",
                      exit_status)
    return Status(JobState.FAILED, said, exit_status)


def _limits(category: str) -> dict[str, str]:
    """{h_rt: "60", h_vmem: "100M"} from a qacct category ("-l h_rt=60,h_vmem=100M -pe ...")."""
    out = {}
    for m in re.finditer(r"-l\s+(\S+)", category):
        for item in m.group(1).split(","):
            key, _, value = item.partition("=")
            out[key] = value
    return out


def _seconds(text: str) -> Optional[float]:
    """Seconds in "6s", "6", "6.000", "0:01:00" or "1:0:0:0" (days first)."""
    text = text.strip().rstrip("s")
    if not text:
        return None
    try:
        if ":" in text:
            total = 0.0
            for part in text.split(":"):
                total = total * 60 + float(part or 0)
            return total
        return float(text)
    except ValueError:
        return None


def error_reasons(text: str) -> dict[str, str]:
    """{job number: the reasons it is in error} from ``qstat -j`` output."""
    out: dict[str, list[str]] = {}
    number = None
    for line in text.splitlines():
        m = re.match(r"job_number:\s+(\d+)", line)
        if m:
            number = m.group(1)
            continue
        m = re.match(r"error reason\s+[\d,\-]*:\s*(.*)", line)
        if m and number is not None:
            reason = re.sub(r"^\S+ \S+ \[[^\]]*\]:\s*", "", m.group(1).strip())  # date [uid:pid]
            out.setdefault(number, []).append(reason)
    return {k: "; ".join(v) for k, v in out.items()}


__all__ = ["SGEScheduler", "accounted", "error_reasons", "parse_qacct", "state_of"]
