"""Schedulers: the dialect of one queueing system, and nothing else.

A scheduler plugin provides only what differs between queueing systems: how to
render a job's header from its resources, the command that submits a job script
and how to read the job id from its output, the one status command for all of a
system's jobs and how to read it into the common :class:`JobState`, accounting
for finished jobs, cancelling, and finding a job by its unique name. The core
owns everything else: job directories, the job store, transport (local or SSH,
with the system's command prefix), polling and resume (see wflp.remote.jobs).

Every method that names a command returns an argv list; the core runs it through
the system's transport, with the system's ``command_prefix`` in front, quoting each
word. :class:`Scheduler` is an abstract base class: a dialect must implement
submit_command, parse_submit and cancel_command; every other method has a default that
says "this scheduler cannot" (None, or no states), which the core handles.
:class:`LocalScheduler` is the first implementation.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import re
import shlex
from typing import TYPE_CHECKING, Optional

from ..errors import WflpError

if TYPE_CHECKING:
    from .config import Resources


class SchedulerError(WflpError):
    """A scheduler command failed or said something that is not what was expected."""


class JobState(str, enum.Enum):
    """The common states of a queued job, whatever the scheduler."""

    QUEUED = "queued"
    HELD = "held"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    NODE_FAILURE = "node_failure"
    UNKNOWN = "unknown"

    @property
    def final(self) -> bool:
        """True for a state a job never leaves (succeeded, failed, cancelled, ...)."""
        return self in FINAL_STATES

    def __str__(self) -> str:
        return self.value


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED,
                          JobState.TIMEOUT, JobState.OUT_OF_MEMORY, JobState.NODE_FAILURE})


@dataclasses.dataclass(frozen=True)
class Status:
    """What a scheduler says of one job: a common state, and its own words for it."""

    state: JobState
    reason: str = ""                   # the scheduler's state code or reason, for people
    exit_code: Optional[int] = None
    #: the dialect wants a closer look (Scheduler.explain_command) before the core decides,
    #: e.g. a memory kill that the scheduler reports as a plain failure
    explain: bool = False


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """The outcome of one command run through a transport."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        """The command and what it said, for error messages (the last 2000 characters)."""
        said = (self.stderr.strip() or self.stdout.strip() or "(no output)")[-2000:]
        return f"`{shlex.join(self.argv)}` exited with {self.returncode}: {said}"


@dataclasses.dataclass(frozen=True)
class JobScript:
    """What a scheduler needs to know of a job to render and submit it."""

    name: str                 # unique, already sanitized for schedulers
    directory: str            # the job directory on the system (absolute)
    stdout: str               # absolute paths on the system
    stderr: str
    resources: Resources
    header: tuple[str, ...] = ()   # the system's extra header lines


def sanitize_job_name(name: str, limit: int = 48) -> str:
    """Letters, digits, '_', '-' and '.', starting with a letter: every scheduler takes it."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-") or "job"
    if not text[0].isalpha():
        text = "j" + text
    return text[:limit]


class Scheduler(abc.ABC):
    """The dialect of a queueing system (see the module docstring)."""

    name: str = "scheduler"
    #: whether the scheduler itself enforces max_time and cores (else the job runner does)
    enforces_limits: bool = True
    #: True if a job missing from the status listing has certainly ended
    listing_is_complete: bool = False
    #: seconds between status calls when the system does not set poll_interval
    default_poll_interval: float = 30.0

    def header(self, job: JobScript) -> list[str]:
        """The job script's header lines (``#SBATCH ...``) from the job's resources."""
        return list(job.header)

    @abc.abstractmethod
    def submit_command(self, script: str, job: JobScript) -> list[str]:
        """The command that submits the job script *script* (a path on the system)."""

    @abc.abstractmethod
    def parse_submit(self, result: CommandResult) -> str:
        """The job id from the submit command's output; SchedulerError if there is none."""

    def status_command(self, ids: list[str]) -> Optional[list[str]]:
        """One command that lists the state of all these jobs (None: no such command)."""
        return None

    def parse_status(self, result: CommandResult, ids: list[str]) -> dict[str, Status]:
        """States of the jobs the status command listed (jobs it does not know are left
        out: the core then asks accounting, and the job's markers)."""
        return {}

    def accounting_command(self, ids: list[str]) -> Optional[list[str]]:
        """One command that tells how these finished jobs ended (None: no accounting)."""
        return None

    def parse_accounting(self, result: CommandResult, ids: list[str]) -> dict[str, Status]:
        """How the jobs the accounting command knew ended (others are left out)."""
        return {}

    def explain_command(self, jobs: dict[str, str]) -> Optional[list[str]]:
        """One command that tells more about the jobs whose Status asked for it
        (``explain=True``): *jobs* maps their ids to their stderr paths (None: nothing to
        run). Run once, when such a job is first seen, not at every poll."""
        return None

    def parse_explain(self, result: CommandResult,
                      statuses: dict[str, Status]) -> dict[str, Status]:
        """The statuses of those jobs, refined by what explain_command said."""
        return statuses

    @abc.abstractmethod
    def cancel_command(self, ids: list[str]) -> list[str]:
        """One command that cancels all these jobs."""

    def parse_cancel(self, result: CommandResult, ids: list[str]) -> dict[str, str]:
        """{id: why it could not be cancelled} (an unknown id, ...); empty if all were."""
        if result.returncode != 0:
            return {i: result.describe() for i in ids}
        return {}

    def find_command(self, name: str) -> Optional[list[str]]:
        """One command that finds a job by its unique name (None: the scheduler cannot)."""
        return None

    def parse_find(self, result: CommandResult, name: str) -> Optional[str]:
        """The id of the job named *name* in the find command's output (None: not there)."""
        return None

    def runner_options(self, job: JobScript, max_cores: Optional[int]) -> list[str]:
        """Options for the job runner (limits the scheduler does not enforce itself)."""
        return []


_TAIL_MARK = "==wflp-tail== "


def tail_command(files: dict[str, str], nbytes: int = 8192) -> list[str]:
    """One command printing the last *nbytes* of each file of ``{key: path}`` (missing
    files print nothing), for :meth:`Scheduler.explain_command`; see :func:`parse_tails`."""
    script = ('n="$1"; shift; while [ "$#" -gt 1 ]; do '
              f'printf "\\n{_TAIL_MARK}%s\\n" "$1"; tail -c "$n" -- "$2" 2>/dev/null; '
              'shift 2; done')
    words = [w for key, path in files.items() for w in (key, path)]
    return ["sh", "-c", script, "sh", str(int(nbytes)), *words]


def parse_tails(result: CommandResult) -> dict[str, str]:
    """``{key: text}`` from the output of :func:`tail_command`."""
    out: dict[str, str] = {}
    key: Optional[str] = None
    lines: list[str] = []
    for line in result.stdout.split("\n"):
        if line.startswith(_TAIL_MARK):
            if key is not None:
                out[key] = "\n".join(lines).strip("\n")
            key, lines = line[len(_TAIL_MARK):], []
        elif key is not None:
            lines.append(line)
    if key is not None:
        out[key] = "\n".join(lines).strip("\n")
    return out


class LocalScheduler(Scheduler):
    """Jobs as detached background processes, each in its own session, on the system
    (this machine, or the SSH host). No queueing system needed: the job runner itself
    waits for free cores (``max_cores`` of the system) and enforces ``max_time``."""

    name = "local"
    enforces_limits = False
    listing_is_complete = True     # ps lists every live process
    default_poll_interval = 0.5

    def submit_command(self, script: str, job: JobScript) -> list[str]:
        """Start the script in its own session (``setsid``), detached, and print its
        process id."""
        # setsid: the job has its own session, so it outlives the shell (and the SSH
        # connection) that started it, and cancelling can kill its whole process group
        inner = (f"cd {shlex.quote(job.directory)} && setsid sh {shlex.quote(script)} "
                 f"> {shlex.quote(job.stdout)} 2> {shlex.quote(job.stderr)} < /dev/null & "
                 "echo $!")
        return ["sh", "-c", inner]

    def parse_submit(self, result: CommandResult) -> str:
        """The process id the submit command printed; SchedulerError if it printed none."""
        text = result.stdout.strip()
        if result.returncode != 0 or not text.isdigit():
            raise SchedulerError(f"the local scheduler could not start the job: "
                                 f"{result.describe()}")
        return text

    def status_command(self, ids: list[str]) -> Optional[list[str]]:
        """``ps`` of the jobs' process ids."""
        return ["ps", "-o", "pid=,stat=", "-p", ",".join(ids)]

    def parse_status(self, result: CommandResult, ids: list[str]) -> dict[str, Status]:
        """Jobs that ``ps`` lists (and not as zombies) are running; the others have
        ended, and their markers say how."""
        out: dict[str, Status] = {}
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ids and not parts[1].startswith("Z"):
                out[parts[0]] = Status(JobState.RUNNING, parts[1])
        return out

    def cancel_command(self, ids: list[str]) -> list[str]:
        """``kill -TERM`` of each job's process group."""
        return ["kill", "-TERM", "--", *[f"-{i}" for i in ids]]  # each job's process group

    def parse_cancel(self, result: CommandResult, ids: list[str]) -> dict[str, str]:
        """The jobs ``kill`` found no process for (they had ended)."""
        missing = {}
        for i in ids:
            if f"({i})" in result.stderr or f"-{i}" in result.stderr:
                missing[i] = "no such process (it had ended)"
        return missing

    def find_command(self, name: str) -> Optional[list[str]]:
        """``ps`` of every process, with its group and command line."""
        return ["ps", "-eo", "pid=,pgid=,args="]

    def parse_find(self, result: CommandResult, name: str) -> Optional[str]:
        """The process id of the session leader running the job called *name*."""
        for line in result.stdout.splitlines():
            parts = line.split(None, 2)
            if len(parts) == 3 and "wflp.remote.runner" in parts[2] and name in parts[2] \
                    and parts[0] == parts[1]:
                return parts[0]  # the session leader of that job
        return None

    def runner_options(self, job: JobScript, max_cores: Optional[int]) -> list[str]:
        """Cores, the system's ``max_cores`` and ``max_time`` for the job runner, which
        enforces them itself: no queueing system does it here."""
        opts = ["--cores", str(job.resources.num_cores)]
        if max_cores:
            opts += ["--max-cores", str(max_cores)]
        if job.resources.max_time:
            opts += ["--time-limit", str(job.resources.max_time)]
        return opts


__all__ = ["CommandResult", "FINAL_STATES", "JobScript", "JobState", "LocalScheduler",
           "Scheduler", "SchedulerError", "Status", "parse_tails", "sanitize_job_name",
           "tail_command"]
