"""Queued jobs: directories, idempotent submission, polling, collection, cancel, resubmit.

A job is a cloudpickled call ``func(*args, **kwargs)`` run on a system by its
scheduler. Its **key** is a digest of what it computes (the function as records
describe it, its arguments, resources, input files' content, the system), so a
driver that is run again finds the jobs it submitted before instead of submitting
them twice:

1. the job's row is written to the store (state ``preparing``);
2. its directory (0700) is written: ``call.pkl``, ``job.sh``, input files;
3. the row becomes ``submitting``, then the scheduler is asked;
4. the scheduler's id is stored and the job is ``queued``.

A driver killed between 3 and 4 leaves a row without an id: the rerun first asks
the scheduler for a job of that unique name (and looks at the job's markers), and
submits again only if there is none. A job directory is never deleted because a
submit command failed (the job may exist).

Polling makes one status call per system for all of that system's jobs (plus, for
jobs the scheduler no longer lists, one accounting call and one listing of their
markers); a job missing from the listing is done only when its success marker
says so.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Optional

import cloudpickle

from ..errors import PluginError, WflpError
from . import runner
from .config import Resources, SystemConfig, get_system
from .scheduler import (
    CommandResult,
    JobScript,
    JobState,
    Scheduler,
    SchedulerError,
    Status,
    sanitize_job_name,
)
from .store import PREPARING, SUBMITTING, JobRow, JobStore, wflp_home
from .transport import Transport, transport_for

# the states of submitted jobs that a status call may still change
_ACTIVE = [s.value for s in JobState if not s.final]

log = logging.getLogger("wflp")

TEST_EXIT_AFTER_SUBMIT = "WFLP_TEST_EXIT_AFTER_SUBMIT"  # fault tests: die before storing the id


class RemoteJobError(WflpError):
    """A queued job did not succeed (failed, cancelled, timed out, out of memory ...)."""

    def __init__(self, message: str, row: Optional[JobRow] = None):
        super().__init__(message)
        self.job = row


class RemoteTimeoutError(WflpError):
    """Jobs were still outstanding when the waiting time ran out."""

    def __init__(self, message: str, outstanding: list):
        super().__init__(message)
        self.outstanding = outstanding


@dataclasses.dataclass
class JobSpec:
    """Everything needed to submit one job."""

    key: str
    name: str                  # unique, sanitized: the scheduler's job name
    kind: str                  # "function" or "batch"
    system: SystemConfig
    resources: Resources
    call: bytes                # cloudpickle of (func, args, kwargs)
    input_files: tuple = ()    # local paths copied into the job directory


def dumps_portable(obj: Any) -> bytes:
    """cloudpickle *obj* so that it loads where only installed code exists: functions and
    classes of modules that are not installed (the user's script and the modules beside
    it) travel by value, not as a reference to a module the job could not import."""
    from ..records.provenance import installed_code

    registered = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (not path or name in ("__main__", "__mp_main__") or "." in name
                or installed_code(name) is not None):
            continue
        try:
            cloudpickle.register_pickle_by_value(module)
            registered.append(module)
        except (ValueError, TypeError):
            continue
    try:
        return cloudpickle.dumps(obj)
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def scheduler_for(system: SystemConfig) -> Scheduler:
    """The dialect of *system*'s scheduler, built by the factory its plugin registers."""
    from ..plugins import get_scheduler

    spec = get_scheduler(system.scheduler)
    scheduler = spec.load()()
    if not isinstance(scheduler, Scheduler):
        raise PluginError(
            f"scheduler {spec.name!r}: its factory returned {type(scheduler).__name__}, "
            "not a wflp.remote.scheduler.Scheduler; the plugin must subclass Scheduler "
            "(implementing submit_command, parse_submit and cancel_command)")
    return scheduler


def job_name(label: str, key: str) -> str:
    """A job's unique name: *label* made safe for every scheduler, and the start of
    its *key*."""
    return f"{sanitize_job_name(label, 36)}-{key[:10]}"


class JobManager:
    """Submits, polls, collects and cancels jobs through the store (one per driver)."""

    def __init__(self, store: Optional[JobStore] = None):
        self.store = store or JobStore()
        self.status_calls: dict[str, int] = {}     # system -> scheduler status calls made
        self._last_poll: dict[str, float] = {}
        self.polls: dict[str, int] = {}            # system -> polls (each one status call)
        self._systems: dict[str, SystemConfig] = {}

    # -- systems ------------------------------------------------------------------------------
    def system(self, name: str) -> SystemConfig:
        """The system called *name*, read from the systems file once."""
        if name not in self._systems:
            self._systems[name] = get_system(name)
        return self._systems[name]

    def _run(self, system: SystemConfig, argv: list[str]) -> CommandResult:
        return transport_for(system).run([*system.command_prefix, *argv])

    # -- submitting -----------------------------------------------------------------------------
    def submit(self, spec: JobSpec, resubmit_failed: bool = False) -> JobRow:
        """Submit *spec*, or find it: a job with the same key is never submitted twice
        (unless it failed and resubmit_failed)."""
        transport = transport_for(spec.system)
        root = transport.expand(spec.system.remote_root)
        remote_dir = f"{root.rstrip('/')}/{spec.system.name}/{spec.name}"
        local_dir = remote_dir if not spec.system.is_remote else str(
            wflp_home() / "jobs" / spec.system.name / spec.name)
        row, created = self.store.get_or_create(
            spec.key, name=spec.name, kind=spec.kind, system=spec.system.name,
            scheduler=spec.system.scheduler, remote_dir=remote_dir, local_dir=local_dir,
            resources=spec.resources.to_dict())
        if not created:
            if row.state in (PREPARING, SUBMITTING) and not row.scheduler_id:
                return self._recover(row, spec)
            if resubmit_failed and row.state in _RETRYABLE:
                return self.resubmit(row, spec)
            return row
        try:
            self._prepare(row, spec)
        except BaseException:  # nothing was submitted (e.g. the SSH connection was refused):
            self.store.delete(row.id)  # no row is left behind in "preparing"
            raise
        return self._launch(row, spec)

    def _prepare(self, row: JobRow, spec: JobSpec) -> None:
        transport = transport_for(spec.system)
        local = Path(row.local_dir)
        local.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(local, 0o700)
        (local / runner.CALL).write_bytes(spec.call)
        script = self._script(row, spec)
        (local / "job.sh").write_text(script)
        for path in spec.input_files:
            data = Path(path).read_bytes()
            (local / Path(path).name).write_bytes(data)
        if spec.system.is_remote:
            transport.makedirs(row.remote_dir)
            for name in [runner.CALL, "job.sh", *(Path(p).name for p in spec.input_files)]:
                transport.put(local / name, f"{row.remote_dir}/{name}")

    def _script(self, row: JobRow, spec: JobSpec) -> str:
        system = spec.system
        sched = scheduler_for(system)
        job = self._job_script(row, spec.resources, system)
        runner_cmd = [system.interpreter, "-m", "wflp.remote.runner", row.remote_dir,
                      *sched.runner_options(job, system.max_cores)]
        lines = ["#!/bin/sh", *sched.header(job),
                 f"# wflp job {row.name} (key {row.key})",
                 f"cd {shlex.quote(row.remote_dir)} || exit 1",
                 *system.commands,
                 "exec " + shlex.join(runner_cmd), ""]
        return "\n".join(lines)

    def _job_script(self, row: JobRow, resources: Resources, system: SystemConfig) -> JobScript:
        return JobScript(name=row.name, directory=row.remote_dir,
                         stdout=f"{row.remote_dir}/stdout", stderr=f"{row.remote_dir}/stderr",
                         resources=resources, header=system.header)

    def _launch(self, row: JobRow, spec: JobSpec) -> JobRow:
        system = spec.system
        sched = scheduler_for(system)
        job = self._job_script(row, spec.resources, system)
        self.store.update(row.id, state=SUBMITTING, attempts=row.attempts + 1)
        result = self._run(system, sched.submit_command(f"{row.remote_dir}/job.sh", job))
        if os.environ.get(TEST_EXIT_AFTER_SUBMIT):
            os._exit(75)  # a fault test: the scheduler has the job, the store does not
        try:
            scheduler_id = sched.parse_submit(result)
        except SchedulerError as err:
            self.store.update(row.id, state=JobState.FAILED.value, reason=str(err)[:2000],
                              finished=time.time())
            raise SchedulerError(f"submitting job {row.id} ({row.name}) to {system.name!r}: "
                                 f"{err}; fix the cause, then `wflp jobs resubmit {row.id}`"
                                 ) from None
        self.store.update(row.id, scheduler_id=scheduler_id, state=JobState.QUEUED.value,
                          submitted=time.time(), reason="")
        log.info("submitted job %d (%s) to %s as %s", row.id, row.name, system.name,
                 scheduler_id)
        return self.store.require(row.id)

    def _recover(self, row: JobRow, spec: JobSpec) -> JobRow:
        """A row without a scheduler id: find the job before submitting it again."""
        system = spec.system
        sched = scheduler_for(system)
        if row.state == SUBMITTING:
            command = sched.find_command(row.name)
            if command is not None:
                found = sched.parse_find(self._run(system, command), row.name)
                if found:
                    log.info("job %d (%s) was submitted before as %s; not submitting it again",
                             row.id, row.name, found)
                    self.store.update(row.id, scheduler_id=found, state=JobState.QUEUED.value,
                                      submitted=time.time())
                    return self.store.require(row.id)
            markers = transport_for(system).list_markers([row.remote_dir])[row.remote_dir]
            if markers & {runner.STARTED, *runner.FINAL_MARKERS}:
                log.info("job %d (%s) ran already; collecting it", row.id, row.name)
                self.store.update(row.id, state=JobState.UNKNOWN.value, submitted=time.time())
                return self.refresh([self.store.require(row.id)])[0]
        if row.state == PREPARING:
            self._prepare(row, spec)
        return self._launch(self.store.require(row.id), spec)

    # -- states ---------------------------------------------------------------------------------
    def refresh(self, rows: Iterable[JobRow]) -> list[JobRow]:
        """Ask each system of *rows* once about all its unfinished jobs in the store (one
        status call updates every one of them, so other waiters find theirs decided);
        update and return the rows."""
        rows = list(rows)
        asked = [r for r in rows if not _is_final(r.state) and r.state != PREPARING]
        for name in sorted({r.system for r in asked}):
            # the given rows, and every other submitted, unfinished job of the system
            group = {r.id: r for r in self.store.select(states=_ACTIVE, system=name)
                     if r.scheduler_id}
            group.update({r.id: r for r in asked if r.system == name})
            if group:
                self._refresh_system(self.system(name), list(group.values()))
            self._last_poll[name] = time.monotonic()
            self.polls[name] = self.polls.get(name, 0) + 1
        return [self.store.require(r.id) for r in rows]

    def polled_recently(self, system: str, poll_interval: Optional[float] = None) -> bool:
        """True if *system* was asked about its jobs less than an interval ago."""
        last = self._last_poll.get(system)
        interval = poll_interval or self.interval(self.system(system))
        return last is not None and time.monotonic() - last < interval

    def _refresh_system(self, system: SystemConfig, rows: list[JobRow]) -> None:
        sched = scheduler_for(system)
        transport = transport_for(system)
        ids = [r.scheduler_id for r in rows if r.scheduler_id]
        listed: dict[str, Status] = {}
        command = sched.status_command(ids) if ids else None
        if command is not None:
            result = self._run(system, command)
            self.status_calls[system.name] = self.status_calls.get(system.name, 0) + 1
            listed = sched.parse_status(result, ids)
        markers = transport.list_markers([r.remote_dir for r in rows])
        unlisted = [r.scheduler_id for r in rows if r.scheduler_id and r.scheduler_id not in
                    listed and not markers.get(r.remote_dir, set()) & set(runner.FINAL_MARKERS)]
        accounted: dict[str, Status] = {}
        command = sched.accounting_command(unlisted) if unlisted else None
        if command is not None:
            accounted = sched.parse_accounting(self._run(system, command), unlisted)
        self._explain(system, sched, rows, markers, listed, accounted)
        for r in rows:
            state, reason, code = _decide(r, sched, listed.get(r.scheduler_id or ""),
                                          accounted.get(r.scheduler_id or ""),
                                          markers.get(r.remote_dir, set()), transport)
            if state.value != r.state or reason != r.reason:
                values: dict[str, Any] = {"state": state.value, "reason": reason}
                if code is not None:
                    values["exit_code"] = code
                if state.final:
                    values["finished"] = time.time()
                self.store.update(r.id, **values)

    def _explain(self, system: SystemConfig, sched: Scheduler, rows: list[JobRow],
                 markers: dict[str, set], listed: dict[str, Status],
                 accounted: dict[str, Status]) -> None:
        """Let the dialect look closer (one command) at the jobs whose status asked for it
        (Status.explain), e.g. at their stderr; refines *listed* / *accounted* in place."""
        wanted: dict[str, str] = {}
        for r in rows:
            sid = r.scheduler_id or ""
            status = listed.get(sid, accounted.get(sid))
            if status is not None and status.explain and \
                    runner.SUCCEEDED not in markers.get(r.remote_dir, set()):
                wanted[sid] = f"{r.remote_dir}/stderr"
        command = sched.explain_command(dict(wanted)) if wanted else None
        if command is None:
            return
        before = {sid: status for sid in wanted
                  if (status := listed.get(sid, accounted.get(sid))) is not None}
        for sid, status in sched.parse_explain(self._run(system, command), before).items():
            if sid in listed:
                listed[sid] = status
            elif sid in accounted:
                accounted[sid] = status

    # -- waiting ------------------------------------------------------------------------------
    def wait(self, rows: Iterable[JobRow], timeout: Optional[float] = None,
             poll_interval: Optional[float] = None) -> Iterator[JobRow]:
        """Yield each job as it reaches a final state (polling each system at most every
        poll_interval seconds); RemoteTimeoutError listing the others after *timeout*."""
        pending = {r.id: r for r in rows}
        deadline = time.monotonic() + timeout if timeout else None
        while pending:
            # another wait, or a poll made for other jobs, may have decided them already
            for job_id in list(pending):
                row = self.store.get(job_id) or pending[job_id]
                pending[job_id] = row
                if _is_final(row.state):
                    yield pending.pop(job_id)
            if not pending:
                return
            due = []
            for name in {r.system for r in pending.values()}:
                interval = poll_interval or self.interval(self.system(name))
                if time.monotonic() - self._last_poll.get(name, -1e9) >= interval:
                    due.append(name)
            if due:
                fresh = self.refresh([r for r in pending.values() if r.system in due])
                for r in fresh:
                    pending[r.id] = r
                    if _is_final(r.state):
                        yield pending.pop(r.id)
            if not pending:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise RemoteTimeoutError(
                    f"{len(pending)} job(s) still outstanding after waiting "
                    f"{timeout:g} s: " + "; ".join(
                        f"job {r.id} ({r.name}) on {r.system}: {r.state}"
                        for r in list(pending.values())[:10]) +
                    "; rerun the script to go on waiting (nothing is submitted twice), or "
                    "see `wflp jobs ls`", outstanding=list(pending.values()))
            waits = [max(0.0, (poll_interval or self.interval(self.system(n))) -
                         (time.monotonic() - self._last_poll.get(n, 0)))
                     for n in {r.system for r in pending.values()}]
            time.sleep(min(waits + [1.0]) if waits else 0.2)

    def interval(self, system: SystemConfig) -> float:
        """Seconds between status calls on *system*: its ``poll_interval``, else its
        scheduler's default."""
        if system.poll_interval is not None:
            return float(system.poll_interval)
        return scheduler_for(system).default_poll_interval

    # -- results -----------------------------------------------------------------------------
    def result(self, row: JobRow) -> Any:
        """The value the job's call returned; re-raises its exception (with the remote
        traceback) or raises RemoteJobError for a job that did not succeed."""
        system = self.system(row.system)
        transport = transport_for(system)
        if row.state != JobState.SUCCEEDED.value:
            raise self._failure(row, transport)
        try:
            data = self._fetch(row, runner.RESULT, transport)
        except (FileNotFoundError, OSError) as err:
            raise RemoteJobError(
                f"job {row.id} ({row.name}) succeeded, but its result is gone from "
                f"{row.remote_dir} ({err}); run it again with `wflp jobs resubmit {row.id}`",
                row) from None
        self.store.update(row.id, collected=1)
        return cloudpickle.loads(data)

    def fetch_file(self, row: JobRow, name: str) -> Path:
        """A file of the job directory, available locally (fetched over SSH if needed)."""
        system = self.system(row.system)
        local = Path(row.local_dir) / name
        if system.is_remote:
            local.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            transport_for(system).get(f"{row.remote_dir}/{name}", local)
        return local

    def _fetch(self, row: JobRow, name: str, transport: Transport) -> bytes:
        return transport.read_bytes(f"{row.remote_dir}/{name}")

    def _failure(self, row: JobRow, transport: Transport) -> BaseException:
        where = (f"job {row.id} ({row.name}) on {row.system}"
                 f"{' as ' + row.scheduler_id if row.scheduler_id else ''}")
        paths = f"stdout {row.remote_dir}/stdout, stderr {row.remote_dir}/stderr"
        if row.state == JobState.FAILED.value:
            try:
                remote_tb = transport.read_bytes(f"{row.remote_dir}/{runner.TRACEBACK}"
                                                 ).decode(errors="replace")
                err = cloudpickle.loads(transport.read_bytes(f"{row.remote_dir}/{runner.ERROR}"))
            except Exception:
                remote_tb, err = None, None
            if isinstance(err, BaseException) and remote_tb:
                note = f"raised in {where}; remote traceback:\n{remote_tb}"
                if hasattr(err, "add_note"):
                    err.add_note(note)
                # the job's own exception, of any class: tagged with where it was raised
                err.remote_traceback = remote_tb  # type: ignore[attr-defined]
                err.remote_job = row  # type: ignore[attr-defined]
                return err
        hint = {JobState.TIMEOUT.value: "it ran past its max_time",
                JobState.OUT_OF_MEMORY.value: "it ran out of memory",
                JobState.CANCELLED.value: "it was cancelled",
                JobState.NODE_FAILURE.value: "its node failed"}.get(row.state, "")
        reason = row.reason or hint or "no reason given"
        return RemoteJobError(
            f"{where} ended as {row.state} ({reason}); see {paths}; "
            f"`wflp jobs resubmit {row.id}` (or RemoteInfo(resubmit_failed=True)) runs it "
            "again", row)

    # -- cancel, resubmit, clean ---------------------------------------------------------------
    def cancel(self, rows: Iterable[JobRow]) -> dict[int, str]:
        """Cancel jobs (one command per system); {id: problem} for those that could not be."""
        problems: dict[int, str] = {}
        by_system: dict[str, list[JobRow]] = {}
        rows = list(rows)
        for r in rows:
            if _is_final(r.state):
                problems[r.id] = f"already {r.state}"
            elif not r.scheduler_id and r.state == PREPARING:
                # never submitted (its preparation failed): nothing runs, so it is cancelled
                self.store.update(r.id, state=JobState.CANCELLED.value,
                                  reason="cancelled before it was submitted",
                                  finished=time.time())
            elif not r.scheduler_id:
                problems[r.id] = "it has no scheduler id (not submitted)"
            else:
                by_system.setdefault(r.system, []).append(r)
        for name, group in by_system.items():
            system = self.system(name)
            sched = scheduler_for(system)
            transport = transport_for(system)
            for r in group:
                try:
                    transport.write_bytes(f"{r.remote_dir}/{runner.CANCEL_REQUESTED}", b"{}")
                except Exception:  # the folder may be gone; the scheduler decides
                    pass
            ids = [r.scheduler_id for r in group if r.scheduler_id]
            result = self._run(system, sched.cancel_command(ids))
            failed = sched.parse_cancel(result, ids)
            for r in group:
                if r.scheduler_id in failed:
                    problems[r.id] = failed[r.scheduler_id]
        # give the scheduler a moment to take them off (the caller sees "cancelled")
        asked = [r for g in by_system.values() for r in g if r.id not in problems]
        deadline = time.monotonic() + 10
        while asked and time.monotonic() < deadline:
            asked = [r for r in self.refresh(asked) if not _is_final(r.state)]
            if asked:
                time.sleep(0.2)
        return problems

    def resubmit(self, row: JobRow, spec: Optional[JobSpec] = None) -> JobRow:
        """Run a job again (its directory's old markers and results are removed first)."""
        if not _is_final(row.state) and row.state not in (PREPARING, SUBMITTING):
            raise WflpError(f"job {row.id} is {row.state}; only a finished job can be "
                            "resubmitted (cancel it first)")
        system = self.system(row.system)
        transport = transport_for(system)
        for name in (runner.SUCCEEDED, runner.FAILED, runner.TIMEOUT, runner.TERMINATED,
                     runner.CANCEL_REQUESTED, runner.STARTED, runner.WAITING, runner.RESULT,
                     runner.ERROR, runner.TRACEBACK):
            path = f"{row.remote_dir}/{name}"
            if transport.exists(path):
                transport.run(["rm", "-f", path])
        self.store.update(row.id, scheduler_id=None, state=SUBMITTING, reason="",
                          finished=None, collected=0)
        row = self.store.require(row.id)
        if spec is None:
            spec = JobSpec(row.key, row.name, row.kind, system,
                           Resources(**row.resources), b"")
        return self._launch(row, spec)

    def clean(self, rows: Iterable[JobRow]) -> list[int]:
        """Remove finished jobs: their directories (on the system and here) and rows."""
        removed = []
        for r in rows:
            never_submitted = r.state == PREPARING and not r.scheduler_id
            if not _is_final(r.state) and not never_submitted:
                continue
            system = self.system(r.system)
            try:
                transport_for(system).remove_tree(r.remote_dir)
            except Exception:
                if not never_submitted:
                    raise
                # a row left in "preparing" by a refused connection: nothing is there
            if r.local_dir != r.remote_dir:
                import shutil

                shutil.rmtree(r.local_dir, ignore_errors=True)
            self.store.delete(r.id)
            removed.append(r.id)
        return removed


_RETRYABLE = {JobState.FAILED.value, JobState.CANCELLED.value, JobState.TIMEOUT.value,
              JobState.OUT_OF_MEMORY.value, JobState.NODE_FAILURE.value,
              JobState.UNKNOWN.value}


def _is_final(state: str) -> bool:
    try:
        return JobState(state).final
    except ValueError:
        return False


def _decide(row: JobRow, sched: Scheduler, listed: Optional[Status],
            accounted: Optional[Status], markers: set,
            transport: Transport) -> tuple[JobState, str, Optional[int]]:
    """The job's state from the scheduler's listing, its accounting and its markers."""
    if runner.SUCCEEDED in markers:
        return JobState.SUCCEEDED, "", 0
    if runner.TIMEOUT in markers:
        return JobState.TIMEOUT, "it ran past its max_time (the job runner stopped it)", None
    if runner.CANCEL_REQUESTED in markers and (listed is None or listed.state.final):
        return JobState.CANCELLED, "cancelled on request", None
    if runner.FAILED in markers:
        info = _marker_json(transport, row, runner.FAILED)
        kind = info.get("type")
        message = info.get("message", "")
        reason = f"{kind}: {message}" if kind else message
        if listed is not None and listed.state.final and listed.state != JobState.FAILED:
            return listed.state, listed.reason or reason, listed.exit_code
        return JobState.FAILED, reason, info.get("exit_code")
    if listed is not None:
        if listed.state == JobState.RUNNING and not sched.enforces_limits \
                and runner.STARTED not in markers:
            return JobState.QUEUED, "waiting for free cores", None
        if listed.state == JobState.SUCCEEDED:  # the scheduler says so, no result: failed
            return JobState.FAILED, _no_result(transport, row,
                                               "the job ended without writing its result"), None
        return listed.state, listed.reason, listed.exit_code
    if accounted is not None:
        if accounted.state == JobState.SUCCEEDED:
            return JobState.FAILED, _no_result(transport, row,
                                               "the job ended without writing its result"), None
        return accounted.state, accounted.reason, accounted.exit_code
    if sched.listing_is_complete and row.scheduler_id:
        if runner.TERMINATED in markers:
            return JobState.FAILED, "the job was terminated (SIGTERM)", None
        return JobState.FAILED, _no_result(
            transport, row, "the job's process ended without writing a result (killed, or "
            "out of memory?)"), None
    return JobState.UNKNOWN, "the scheduler no longer lists it and it left no result", None


def _no_result(transport: Transport, row: JobRow, reason: str) -> str:
    """Why a job left no result: an import error in its stderr (the job's Python lacks
    wflp or a package the call needs) is said as one, with what to do."""
    try:
        text = transport.read_bytes(f"{row.remote_dir}/stderr")[-8000:].decode(
            errors="replace")
    except Exception:
        return reason
    for line in reversed(text.splitlines()):
        if "ModuleNotFoundError" in line or "ImportError" in line:
            return (f"the job's Python could not import what it needs ({line.strip()}); set "
                    f"`python = ...` of system {row.system!r} to an interpreter where wflp and "
                    "the packages of the call are installed")
    return reason


def _marker_json(transport: Transport, row: JobRow, name: str) -> dict:
    import json

    try:
        return json.loads(transport.read_bytes(f"{row.remote_dir}/{name}"))
    except Exception:
        return {}


__all__ = ["JobManager", "JobSpec", "RemoteJobError", "RemoteTimeoutError", "dumps_portable",
           "job_name", "scheduler_for"]
