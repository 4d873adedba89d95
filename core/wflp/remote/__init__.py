"""Remote execution: any picklable function, and any operation, as queued jobs.

    from wflp import AutoparaInfo, RemoteInfo, OutputSpec
    from wflp.remote import submit

    remote = RemoteInfo(system="cluster", job_name="REF_eval", num_inputs_per_queued_job=10,
                        resources={"num_cores": 4, "max_time": "1h"})
    calculate(inputs, OutputSpec("ref.xyz"), calculator=dft,
              autopara_info=AutoparaInfo(remote_info=remote, num_python_subprocesses=4))

    job = submit(cap_bonds, args=(atoms,), system="cluster",
                 resources={"num_cores": 1, "max_time": "10m"})
    capped = job.result()   # waits; re-raises a remote exception with its traceback

Systems are configured in a TOML file (wflp.remote.config); jobs are kept in a
store (wflp.remote.store) so that a driver run again finds, waits for and collects
the jobs it submitted before (wflp.remote.jobs). See docs/remote.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

from ..errors import ParameterError

_managers: dict = {}
# final states of a job (wflp.remote.scheduler.FINAL_STATES, by value: no import needed)
_FINAL = frozenset({"succeeded", "failed", "cancelled", "timeout", "out_of_memory",
                    "node_failure"})


def manager() -> Any:
    """The process's JobManager for the current $WFLP_HOME (created when first needed)."""
    from .jobs import JobManager
    from .store import wflp_home

    key = str(wflp_home())
    if key not in _managers:
        _managers[key] = JobManager()
    return _managers[key]


@dataclasses.dataclass
class RemoteInfo:
    """Where and how an operation runs as queued jobs (``AutoparaInfo(remote_info=...)``).

    system: a system of the systems configuration (see docs/remote.md).
    job_name: a label for the jobs (made unique with a digest).
    num_inputs_per_queued_job: inputs per job (fixed, so 10 000 items at 10 per job
        make 1000 jobs, whatever the speed); inside a job the local engine uses the
        job's cores (AutoparaInfo.num_python_subprocesses, else resources num_cores)
        with its own adaptive chunks.
    resources: num_cores, num_nodes, max_time ("1h"), max_memory ("4G"), partition.
    input_files: local files copied into every job's directory (its working folder).
    timeout: how long to wait for the jobs ("6h"); a rerun after a timeout waits on.
    wait_for_results: False: submit and return (the operation returns None); rerun
        to collect.
    resubmit_failed: run failed (cancelled, timed out ...) jobs again instead of
        reporting them.
    poll_interval: seconds between status calls (default: the system's).
    """

    system: str
    job_name: str = "wflp"
    num_inputs_per_queued_job: int = 10
    resources: dict = dataclasses.field(default_factory=dict)
    input_files: Sequence = ()
    timeout: Any = None
    wait_for_results: bool = True
    resubmit_failed: bool = False
    poll_interval: Optional[float] = None

    def checked(self) -> RemoteInfo:
        """Values checked; resources and timeout parsed (ParameterError otherwise)."""
        from .config import Resources, parse_duration

        if not isinstance(self.system, str) or not self.system:
            raise ParameterError(f"RemoteInfo.system must be a system name, got "
                                 f"{self.system!r}")
        n = self.num_inputs_per_queued_job
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ParameterError(f"RemoteInfo.num_inputs_per_queued_job must be a whole "
                                 f"number >= 1, got {n!r}")
        Resources.from_dict(self.resources, "RemoteInfo.resources")
        if self.timeout is not None:
            parse_duration(self.timeout, "RemoteInfo.timeout")
        for path in self.input_files:
            if not Path(path).is_file():
                raise ParameterError(f"RemoteInfo.input_files: {str(path)!r} is not a file")
        return self

    def timeout_seconds(self) -> Optional[float]:
        """``timeout`` in seconds (None: wait without limit)."""
        from .config import parse_duration

        return float(parse_duration(self.timeout)) if self.timeout is not None else None


class Job:
    """A queued job: wait for it, get its result, cancel it."""

    def __init__(self, row: Any, jobs: Any = None):
        self._row = row
        self._jobs = jobs or manager()

    @property
    def id(self) -> int:
        """The job's id in the job store (``wflp jobs`` shows it)."""
        return self._row.id

    @property
    def name(self) -> str:
        """The job's unique name on its system."""
        return self._row.name

    @property
    def state(self) -> str:
        """The current state: asks the scheduler if the job is not finished and its system
        was not asked less than a poll interval ago (one status call answers for all jobs
        of a system), else what the last answer said."""
        row = self._jobs.store.get(self._row.id) or self._row
        if row.state not in _FINAL and not self._jobs.polled_recently(row.system):
            row = self._jobs.refresh([row])[0]
        self._row = row
        return row.state

    def refresh(self) -> Job:
        """Ask the scheduler now (one status call for all unfinished jobs of the system),
        whatever the poll interval; returns the job, e.g. ``job.refresh().state``."""
        self._row = self._jobs.refresh([self._jobs.store.get(self._row.id) or self._row])[0]
        return self

    def wait(self, timeout: Any = None) -> Job:
        """Wait until the job has finished, succeeded or not (RemoteTimeoutError after
        *timeout*, "2h" or seconds); returns the job."""
        from .config import parse_duration

        seconds = parse_duration(timeout, "timeout") if timeout is not None else None
        for row in self._jobs.wait([self._row], seconds):
            self._row = row
        return self

    def result(self, timeout: Any = None) -> Any:
        """The function's return value, once the job is done (waits); re-raises the
        function's exception with the remote traceback as a note."""
        self.wait(timeout)
        return self._jobs.result(self._row)

    def cancel(self) -> None:
        """Cancel the job; ParameterError saying why if the scheduler cannot."""
        problems = self._jobs.cancel([self._row])
        if problems:
            raise ParameterError(f"job {self.id} cannot be cancelled: {problems[self.id]}")

    def __repr__(self) -> str:
        return f"<wflp job {self.id} {self.name!r} on {self._row.system}: {self._row.state}>"


def as_completed(jobs: Iterable[Job], timeout: Any = None) -> Iterator[Job]:
    """Yield each job as it finishes (succeeded or not), polling each system once per
    interval for all of its jobs; RemoteTimeoutError after *timeout* ("2h", seconds)."""
    from .config import parse_duration

    jobs = list(jobs)
    by_id = {j.id: j for j in jobs}
    seconds = parse_duration(timeout, "timeout") if timeout is not None else None
    manager_ = jobs[0]._jobs if jobs else manager()
    for row in manager_.wait([j._row for j in jobs], seconds):
        job = by_id[row.id]
        job._row = row
        yield job


def wait_all(jobs: Iterable[Job], timeout: Any = None) -> list:
    """Wait for every job (one status call per system and interval for all of them);
    returns their results in the order given, re-raising the first failure."""
    jobs = list(jobs)
    for _ in as_completed(jobs, timeout):
        pass
    return [job.result() for job in jobs]


def submit(func: Callable, args: Sequence = (), kwargs: Optional[dict] = None, *,
           system: str, resources: Optional[dict] = None, job_name: Optional[str] = None,
           input_files: Sequence = (), resubmit_failed: bool = False) -> Job:
    """Run ``func(*args, **kwargs)`` as a queued job on *system*; returns at once.

    Submitting the same call again (same function code, arguments, resources, input
    files and system) finds the job submitted before instead of running it twice.
    """
    from ..records import Describer, canonical_json, sha256_bytes, sha256_file
    from .config import Resources, get_system
    from .jobs import JobSpec, dumps_portable
    from .jobs import job_name as make_name

    if not callable(func):
        raise ParameterError(f"submit: func must be callable, got {func!r}")
    kwargs = dict(kwargs or {})
    system_config = get_system(system)
    res = Resources.from_dict(resources, "submit: resources")
    system_config.check_resources(res, "submit")
    files = [Path(p) for p in input_files]
    for path in files:
        if not path.is_file():
            raise ParameterError(f"submit: input file {str(path)!r} does not exist")
    describer = Describer()
    identity = {"function": describer.callable(func, "function"),
                "args": describer.describe(list(args), "args"),
                "kwargs": describer.describe(kwargs, "kwargs"),
                "resources": res.to_dict(), "system": system,
                "where": [system_config.host, system_config.remote_root],
                "inputs": [[p.name, sha256_file(p)] for p in files]}
    key = sha256_bytes(canonical_json(identity).encode())
    try:
        call = dumps_portable((func, tuple(args), kwargs))
    except Exception as err:
        from ..errors import NotPicklableError

        raise NotPicklableError(f"submit: the function or its arguments cannot be pickled "
                                f"({type(err).__name__}: {err})") from err
    label = job_name or str(getattr(func, "__name__", "job"))
    spec = JobSpec(key, make_name(label, key), "function", system_config, res, call,
                   tuple(str(p) for p in files))
    jobs = manager()
    return Job(jobs.submit(spec, resubmit_failed=resubmit_failed), jobs)


__all__ = ["Job", "RemoteInfo", "as_completed", "manager", "submit", "wait_all"]
