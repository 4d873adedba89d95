"""One test kit for scheduler plugins: what every queue must do, written once.

A scheduler plugin's tests subclass two contracts and say only what is its own:

``SchedulerContract`` (real jobs on the real queue, here and over SSH)
    Subclass it as ``Test<Name>Jobs`` and set how to reach the queue (``scheduler``,
    ``prefix``, ``programs``, ``probe``, ``how``, ...), what the scheduler prints where
    the shared tests check it (``says``, ``cancelled_message``, ``timeout_message``, ...)
    and a few methods (``scheduler_says``, ``block_all_cores``, ``check_cancel_problems``).
    pytest then runs every shared behaviour: a result comes back and is found again, an
    operation split into jobs gives the local bytes, the real status and find commands
    read, cancel by wflp and by the scheduler's own command, what cannot be cancelled,
    a failed job, a job that cannot start Python, a memory kill, the time limit, a killed
    driver (two ways), held and suspended jobs, failing scheduler commands, a missing
    service (a skip saying how to start it; a failure under CI=true) and the services
    script. What only one scheduler has stays in the subclass as its own test methods;
    they get the same ``project``, ``system`` and ``both`` fixtures.

``DialectContract`` (the dialect on its own, on sample outputs)
    Subclass it as ``Test<Name>Dialect`` with samples of the scheduler's real outputs:
    registration, commands, submit output (ids and failures), every state code, cancel
    output and find by name. Listings, accounting and explanations are the scheduler's
    own and stay plugin tests.

A shared behaviour a scheduler does not have is switched off by setting the test to None
in the subclass, with a comment saying why (``test_memory_kill_is_out_of_memory = None``).
The job functions, ``wait_until``, ``row_of``, ``started``, the systems file and the whole
resume tests come from ``wflp.testing_remote``.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import pytest

from . import testing_remote
from .plugins import get_scheduler
from .remote import manager, submit
from .remote.config import Resources
from .remote.jobs import RemoteJobError, scheduler_for
from .remote.scheduler import CommandResult, JobScript, JobState, SchedulerError
from .testing import require_program, scaled
from .testing_remote import (
    ENDED,
    add,
    check_killed_between_submit_and_store_makes_no_duplicate,
    check_killed_driver_rerun_submits_nothing,
    check_operation_split_gives_the_local_bytes,
    die,
    hog,
    missing,
    nap,
    row_of,
    ssh_settings,
    started,
    wait_until,
)

#: what the job of ``test_nonzero_exit_is_failed_with_the_stderr_path`` exits with
FAILED_EXIT_STATUS = 3


class SchedulerContract:
    """The shared real-job tests of a scheduler plugin (see the module docstring).

    Class attributes say how to reach the queue and what to expect; the methods that
    raise NotImplementedError are the scheduler's own words and must be written."""

    # -- how to reach the queue ---------------------------------------------------------------
    #: the registered scheduler name; the systems are "<scheduler>" (here) and
    #: "<scheduler>_ssh" (the same queue over SSH to 127.0.0.1)
    scheduler: str = ""
    #: the systems' command_prefix, also put before every command the tests run themselves
    prefix: Sequence[str] = ()
    #: what to run to start the test service (skip messages say it)
    how: str = ""
    #: programs that must be on PATH, then a probe (run with the prefix) whose output
    #: ``probe_ok`` checks, naming ``service`` when it fails
    programs: Sequence[str] = ()
    probe: Sequence[str] = ()
    service: str = "the scheduler"
    #: scripts/services/<name>.sh of the checkout: `status` exits 0 and prints this
    services_script: Optional[Path] = None
    services_status_says: str = ""
    #: the scheduler's own command to cancel jobs (the ids follow)
    cancel_argv: Sequence[str] = ()
    #: jobs of a test in these states are left alone at its end; the rest are cancelled
    keep: Sequence[str] = ENDED

    # -- what the scheduler does ---------------------------------------------------------------
    #: a scheduler id (re.fullmatch)
    id_pattern: str = r"\d+"
    #: resources of the first job, and lines its job.sh must hold ({name}: the job's name)
    result_resources: Mapping[str, Any] = {"max_time": "5m"}
    script_lines: Sequence[str] = ()
    #: what ``scheduler_says(id)`` gives (the scheduler's own word) for a job "running" and
    #: one that ended "succeeded", "failed" (its call exited with status 3), "cancelled",
    #: "timeout" or "out_of_memory"; a state left out is not checked
    says: Mapping[str, str] = {}
    #: an id the scheduler does not know; the exit status of its status command for that
    #: id alone (None: not checked)
    unknown_id: str = "999999991"
    unknown_status_exit: Optional[int] = None
    #: how wflp reports a job cancelled with ``cancel_argv`` (re.search)
    cancelled_message: str = ""
    #: how wflp reports a job whose python does not exist (its stderr says "not found")
    no_python_message: str = ""
    #: how wflp reports a job killed for its memory, and what its stderr then holds
    memory_message: str = ""
    memory_stderr: str = "xceeded"
    #: the time limit of the timeout test, and how many seconds after submitting the
    #: scheduler has killed it (at least, at most before scaling)
    time_limit: str = "1m"
    killed_after: tuple = (55, 200)
    timeout_message: str = r"ended as timeout"
    #: whether the job gets SIGTERM at its time limit (the runner leaves "terminated")
    sigterm_at_time_limit: bool = False
    #: the scheduler's commands (the id follows) to hold, release, suspend, resume a job
    hold_argv: Sequence[str] = ()
    release_argv: Sequence[str] = ()
    suspend_argv: Sequence[str] = ()
    resume_argv: Sequence[str] = ()
    #: wflp's reason for a queued, a held and a suspended job (re.fullmatch)
    queued_reason: str = ".*"
    held_reason: str = ".*"
    suspended_reason: str = ".*suspended.*"
    #: words that break the scheduler's commands when put before the prefix, and how wflp
    #: then reports a failing submit and a failing status command (re.search)
    broken_env: Sequence[str] = ()
    broken_submit_message: str = ""
    broken_status_message: str = ""

    # -- the scheduler's own words (write these) -----------------------------------------------
    def scheduler_says(self, scheduler_id: str) -> str:
        """The scheduler's own word for the job's state now ("" if it has none)."""
        raise NotImplementedError

    def block_all_cores(self) -> str:
        """Submit (with the scheduler's own command) a job that takes every core, so that
        the next job waits; its scheduler id."""
        raise NotImplementedError

    def check_cancel_problems(self, problems: dict, finished: str, unknown: str,
                              system: str) -> None:
        """Assert what ``parse_cancel`` said of cancelling a *finished* and an *unknown* id
        on the real queue (``cancel_problems`` asks again, say for one id alone)."""
        raise NotImplementedError

    def probe_ok(self, result: subprocess.CompletedProcess) -> bool:
        """Whether the probe's output says the service answers."""
        return result.returncode == 0

    def given(self, attribute: str) -> Any:
        """The class attribute a test needs; a test failure naming it when it is empty (an
        empty pattern would match anything, so the test could not fail)."""
        value = getattr(self, attribute)
        if not value:
            pytest.fail(f"{type(self).__name__}.{attribute} is not set: the test needs it (or "
                        "set the test to None if the scheduler cannot do this)", pytrace=False)
        return value

    # -- helpers -------------------------------------------------------------------------------
    def command(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess:
        """A scheduler command run here, with the prefix."""
        return subprocess.run([*self.prefix, *argv], capture_output=True, text=True,
                              timeout=scaled(60), check=check)

    def require_service(self) -> None:
        """Skip the test, saying how to start the service, if it does not answer (fail
        under CI=true)."""
        for program in self.programs:
            require_program(program, self.how)
        try:
            probe = self.command(*self.given("probe"))
        except (OSError, subprocess.TimeoutExpired):
            probe = None
        if probe is None or not self.probe_ok(probe):
            said = (probe.stderr or probe.stdout).strip()[-300:] if probe else ""
            missing(f"{self.service} (`{shlex.join([*self.prefix, *self.probe])}` said: "
                    f"{said or 'nothing'})", self.how)

    def write_systems(self, folder: Path, root: Path, ssh: Optional[dict] = None,
                      prefix: Optional[Sequence[str]] = None, extra: str = "") -> Path:
        """wflp-systems.toml with the scheduler here and, given SSH settings, over SSH
        (``wflp.testing_remote.write_systems``); *prefix* replaces the class's."""
        words = list(self.prefix if prefix is None else prefix)
        return testing_remote.write_systems(folder, root, self.given("scheduler"), ssh=ssh,
                                            prefix=words or None, extra=extra)

    def cancel_problems(self, system: str, ids: list) -> dict:
        """What the dialect reads from its real cancel command for *ids* on *system*."""
        config = manager().system(system)
        sched = scheduler_for(config)
        return sched.parse_cancel(manager()._run(config, sched.cancel_command(ids)), ids)

    def check_says(self, scheduler_id: str, state: str) -> None:
        """Wait until the scheduler's own word for the job is ``says[state]`` (if given):
        wflp may know from the job's markers a moment before the scheduler ends it."""
        if state in self.says:
            word = self.says[state]
            wait_until(lambda: self.scheduler_says(scheduler_id) == word, 60,
                       f"{self.scheduler} to say {word!r} of job {scheduler_id} "
                       f"(it says {self.scheduler_says(scheduler_id)!r})")

    @contextlib.contextmanager
    def blocked(self) -> Iterator[str]:
        """Every core taken by a job of the scheduler's own (its id) while inside."""
        blocker = self.block_all_cores()
        try:
            self.check_says(blocker, "running")
            yield blocker
        finally:
            self.command(*self.cancel_argv, blocker)

    # -- fixtures ------------------------------------------------------------------------------
    @pytest.fixture
    def project(self, tmp_path, monkeypatch) -> Iterator[Path]:
        """A fresh project folder as the working directory with a private job store; the
        test's jobs still queued at its end are cancelled (``cancel_argv``)."""
        yield from testing_remote.project_folder(
            tmp_path, monkeypatch, [*self.prefix, *self.cancel_argv], self.keep)

    @pytest.fixture(params=["local", "ssh"])
    def system(self, request, project, tmp_path) -> str:
        """The test queue as a system: "<scheduler>" here or "<scheduler>_ssh" over SSH."""
        self.require_service()
        ssh = ssh_settings() if request.param == "ssh" else None
        self.write_systems(project, tmp_path, ssh=ssh)
        return f"{self.scheduler}_ssh" if ssh else self.scheduler

    @pytest.fixture
    def both(self, project, tmp_path) -> list:
        """Both systems at once (for slow tests that run a job on each concurrently)."""
        self.require_service()
        self.write_systems(project, tmp_path, ssh=ssh_settings())
        return [self.scheduler, f"{self.scheduler}_ssh"]

    # -- the basics ----------------------------------------------------------------------------
    def test_function_job_result_comes_back(self, system):
        job = submit(add, args=(20, 22), system=system, resources=dict(self.result_resources))
        assert job.result(timeout=scaled(120)) == 42
        row = row_of(job)
        assert re.fullmatch(self.id_pattern, row.scheduler_id)
        script = Path(row.remote_dir, "job.sh").read_text().splitlines()
        for line in self.script_lines:
            assert line.format(name=row.name) in script
        # the scheduler ran it: the result comes with the job's marker, a moment before
        # the scheduler sees the job end
        self.check_says(row.scheduler_id, "succeeded")
        again = submit(add, args=(20, 22), system=system,
                       resources=dict(self.result_resources))
        assert again.id == job.id and again.result() == 42  # found, not submitted again
        assert len(manager().store.select()) == 1

    def test_operation_of_40_items_5_per_job_gives_the_local_bytes(self, system):
        check_operation_split_gives_the_local_bytes(system)

    def test_unknown_ids_do_not_hide_the_known_ones(self, system):
        """The real status and find commands, read by the dialect: an id the scheduler
        does not know is left out, the running job beside it is read."""
        job = submit(nap, args=(300, "known"), system=system, resources={"max_time": "10m"})
        wait_until(lambda: started(job), 60, "the job to start")
        config = manager().system(system)
        sched = scheduler_for(config)
        known, unknown = row_of(job).scheduler_id, self.unknown_id
        alone = manager()._run(config, sched.status_command([unknown]))
        if self.unknown_status_exit is not None:
            assert alone.returncode == self.unknown_status_exit, alone.describe()
        assert sched.parse_status(alone, [unknown]) == {}
        mixed = manager()._run(config, sched.status_command([known, unknown]))
        got = sched.parse_status(mixed, [known, unknown])
        assert list(got) == [known] and got[known].state.value == "running"
        name = row_of(job).name
        assert sched.parse_find(manager()._run(config, sched.find_command(name)), name) == known
        job.cancel()

    # -- cancel --------------------------------------------------------------------------------
    def test_cancel_by_wflp_and_by_the_schedulers_own_command(self, system):
        ours = submit(nap, args=(300, "ours"), system=system, resources={"max_time": "10m"})
        theirs = submit(nap, args=(300, "theirs"), system=system, resources={"max_time": "10m"})
        wait_until(lambda: started(ours) and started(theirs), 60, "both jobs to start")
        ours.cancel()   # waits up to 10 s for the scheduler to let go; a busy one is slower
        wait_until(lambda: ours.refresh().state == "cancelled", 60, "the job to be cancelled")
        self.command(*self.given("cancel_argv"), row_of(theirs).scheduler_id, check=True)
        with pytest.raises(RemoteJobError, match=self.given("cancelled_message")):
            theirs.result(timeout=scaled(60))  # the scheduler's word: no wflp marker asked
        self.check_says(row_of(ours).scheduler_id, "cancelled")
        self.check_says(row_of(theirs).scheduler_id, "cancelled")

    def test_cancelling_jobs_the_scheduler_cannot_cancel_is_reported(self, system):
        done = submit(add, args=(1, 2), system=system)
        done.result(timeout=scaled(120))
        finished = row_of(done).scheduler_id
        self.check_says(finished, "succeeded")  # the scheduler too has seen it end
        problems = self.cancel_problems(system, [finished, self.unknown_id])
        self.check_cancel_problems(problems, finished, self.unknown_id, system)

    # -- failures and limits -------------------------------------------------------------------
    def test_nonzero_exit_is_failed_with_the_stderr_path(self, system):
        job = submit(die, args=(FAILED_EXIT_STATUS,), system=system,
                     resources={"max_time": "5m"})
        row = row_of(job)
        with pytest.raises(RemoteJobError, match=rf"ended as failed \(the job's process exited "
                                                 rf"with status {FAILED_EXIT_STATUS}\).*stderr "
                                                 rf"{re.escape(row.remote_dir)}/stderr"):
            job.result(timeout=scaled(120))
        self.check_says(row.scheduler_id, "failed")

    def test_a_job_that_cannot_start_python_is_failed_with_its_stderr(self, system):
        text = Path("wflp-systems.toml").read_text()
        Path("wflp-systems.toml").write_text(
            text.replace(f'python = "{sys.executable}"', 'python = "/nonexistent/python3"'))
        job = submit(add, args=(1, 2), system=system, resources={"max_time": "5m"})
        with pytest.raises(RemoteJobError, match=self.given("no_python_message")):
            job.result(timeout=scaled(120))
        assert "not found" in Path(row_of(job).remote_dir, "stderr").read_text()

    def test_memory_kill_is_out_of_memory(self, system):
        job = submit(hog, args=(800, 30), system=system,
                     resources={"max_time": "5m", "max_memory": "200M"})
        with pytest.raises(RemoteJobError, match=self.given("memory_message")):
            job.result(timeout=scaled(120))
        row = row_of(job)
        assert self.memory_stderr in Path(row.remote_dir, "stderr").read_text()
        self.check_says(row.scheduler_id, "out_of_memory")

    @pytest.mark.slow
    def test_job_over_its_time_limit_is_a_timeout(self, both):
        soonest, latest = self.killed_after
        start = time.monotonic()
        jobs = [submit(nap, args=(600, name), system=name,
                       resources={"max_time": self.time_limit})
                for name in both]  # here and over SSH at once: the wait is the scheduler's
        for job in jobs:
            with pytest.raises(RemoteJobError, match=self.given("timeout_message")):
                job.result(timeout=scaled(latest + 60))
            row = row_of(job)
            self.check_says(row.scheduler_id, "timeout")
            if self.sigterm_at_time_limit:
                assert Path(row.remote_dir, "terminated").exists()  # SIGTERM reached it
        # the scheduler's kill comes past the limit
        assert soonest < time.monotonic() - start < scaled(latest)

    # -- a killed driver -----------------------------------------------------------------------
    def test_driver_killed_after_submitting_10_jobs_rerun_submits_nothing(self, system):
        check_killed_driver_rerun_submits_nothing(system)

    def test_driver_killed_between_submit_and_storing_the_id_makes_no_duplicate(self, system,
                                                                                tmp_path):
        check_killed_between_submit_and_store_makes_no_duplicate(system, tmp_path)

    # -- held and suspended --------------------------------------------------------------------
    def test_held_job_is_held_until_released(self, system):
        with self.blocked():
            job = submit(nap, args=(600, "held"), system=system, resources={"max_time": "10m"})
            assert job.refresh().state == "queued"  # waits for the cores the blocker holds
            assert re.fullmatch(self.queued_reason, row_of(job).reason)
            self.command(*self.given("hold_argv"), row_of(job).scheduler_id, check=True)
            assert job.refresh().state == "held"
            assert re.fullmatch(self.held_reason, row_of(job).reason)
            self.command(*self.given("release_argv"), row_of(job).scheduler_id, check=True)
            assert job.refresh().state == "queued"
        wait_until(lambda: job.state == "running" and started(job), 60, "the job to run")
        job.cancel()

    def test_suspended_job_is_held_until_resumed(self, system):
        job = submit(nap, args=(600, "suspended"), system=system,
                     resources={"max_time": "10m"})
        wait_until(lambda: job.state == "running" and started(job), 60, "the job to run")
        self.command(*self.given("suspend_argv"), row_of(job).scheduler_id, check=True)
        assert job.refresh().state == "held"
        assert re.fullmatch(self.suspended_reason, row_of(job).reason)
        self.command(*self.given("resume_argv"), row_of(job).scheduler_id, check=True)
        assert job.refresh().state == "running"
        job.cancel()

    # -- the scheduler's commands failing, the service missing ---------------------------------
    def test_a_failing_submit_command_is_a_clear_error(self, project, tmp_path):
        self.require_service()
        self.write_systems(project, tmp_path, prefix=[*self.given("broken_env"), *self.prefix])
        with pytest.raises(SchedulerError, match=self.given("broken_submit_message")):
            submit(add, args=(1, 2), system=self.scheduler)
        # the job is failed, with no scheduler id: `wflp jobs resubmit` sends it again
        assert [(r.state, r.scheduler_id) for r in manager().store.select()] == [
            ("failed", None)]

    def test_a_failing_status_command_is_a_clear_error(self, project, tmp_path):
        self.require_service()
        self.write_systems(project, tmp_path)
        job = submit(nap, args=(60, "x"), system=self.scheduler, resources={"max_time": "5m"})
        self.write_systems(project, tmp_path, prefix=[*self.broken_env, *self.prefix])
        manager()._systems.clear()
        with pytest.raises(SchedulerError, match=self.given("broken_status_message")):
            job.result(timeout=scaled(60))

    def test_a_missing_service_skips_saying_how_to_start_it_or_fails_under_ci(
            self, monkeypatch, tmp_path):
        empty = tmp_path / "empty-path"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))  # none of the scheduler's commands is there
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception) as skipped:
            self.require_service()
        assert "is not available; to run this test: " + self.given("how") in str(skipped.value)
        monkeypatch.setenv("CI", "true")
        with pytest.raises(pytest.fail.Exception) as failed:
            self.require_service()
        assert str(failed.value).startswith("CI=true but ") and self.how in str(failed.value)

    def test_the_services_script_reports_the_service_alive(self):
        self.require_service()
        out = subprocess.run(["bash", str(self.given("services_script")), "status"],
                             capture_output=True, text=True, timeout=scaled(60))
        assert out.returncode == 0, out.stderr
        assert self.services_status_says in out.stdout


class DialectContract:
    """The shared tests of a scheduler dialect on sample outputs (see the module docstring).

    Every sample is a real output (seen on the test service, or in the scheduler's manual);
    each sample is its own test (``pytest_generate_tests`` below hands a test taking
    ``submit_output`` one item of ``submit_outputs`` at a time)."""

    #: {registered name: class}: what the plugin registers
    dialects: Mapping[str, type] = {}
    #: the dialect the samples are read with
    dialect: Any = None
    #: (method name, its arguments, the argv it must return)
    commands: Sequence[tuple] = ()
    #: (submit stdout, the job id read from it)
    submit_outputs: Sequence[tuple] = ()
    #: (stdout, stderr, exit status, what the SchedulerError must say (re.search))
    submit_failures: Sequence[tuple] = ()
    #: {state code: its common state, or None for any but unknown}
    state_codes: Mapping[str, Any] = {}
    #: (stdout, stderr, exit status, ids, {id: what its problem says (re.search)}): the
    #: problems are exactly those ids
    cancel_outputs: Sequence[tuple] = ()
    #: (find stdout, the name, the id found or None)
    find_outputs: Sequence[tuple] = ()

    def common_state(self, code: str) -> Any:
        """The common JobState the dialect gives the state *code* (write this)."""
        raise NotImplementedError

    def pytest_generate_tests(self, metafunc: Any) -> None:
        """A test argument ``x`` takes, one at a time, the items of the attribute ``xs``
        (a mapping gives its (key, value) pairs); none is an error naming the attribute."""
        for arg in metafunc.fixturenames:
            samples = getattr(self, arg + "s", None)
            if arg == "dialect" or samples is None:
                continue
            items = list(samples.items() if isinstance(samples, Mapping) else samples)
            if not items:
                pytest.fail(f"{type(self).__name__}.{arg}s is empty: give the samples the "
                            f"test {metafunc.function.__name__} checks", pytrace=False)
            metafunc.parametrize(arg, items, ids=[_sample_id(x) for x in items])

    @staticmethod
    def result(stdout: str = "", stderr: str = "", code: int = 0,
               argv: Sequence[str] = ("cmd",)) -> Any:
        """A CommandResult as the core's transport gives it."""
        return CommandResult(tuple(argv), code, stdout, stderr)

    def test_the_plugin_registers_the_dialects(self):
        assert self.dialects, "set dialects: {registered name: class}"
        for name, cls in self.dialects.items():
            assert type(get_scheduler(name).load()()) is cls

    def test_commands(self, command):
        method, args, argv = command
        assert getattr(self.dialect, method)(*args) == argv

    def test_submit_output_gives_the_job_id(self, submit_output):
        stdout, expected = submit_output
        assert self.dialect.parse_submit(self.result(stdout)) == expected

    def test_submit_output_that_is_not_a_job_id_quotes_the_scheduler(self, submit_failure):
        stdout, stderr, code, said = submit_failure
        argv = self.dialect.submit_command("/j/job.sh", _sample_job())[:1]
        with pytest.raises(SchedulerError, match=said):
            self.dialect.parse_submit(self.result(stdout, stderr, code, argv))

    def test_every_state_code_has_a_common_state(self, state_code):
        code, expected = state_code
        got = self.common_state(code)
        assert got != JobState.UNKNOWN
        assert expected is None or got == expected

    def test_cancel_reports_what_could_not_be_cancelled(self, cancel_output):
        stdout, stderr, code, ids, problems = cancel_output
        argv = self.dialect.cancel_command(["1"])[:1]
        got = self.dialect.parse_cancel(self.result(stdout, stderr, code, argv), ids)
        assert set(got) == set(problems), got
        for job_id, said in problems.items():
            assert re.search(said, got[job_id]), (job_id, got[job_id], said)

    def test_find_by_name_takes_the_newest(self, find_output):
        stdout, name, expected = find_output
        assert self.dialect.parse_find(self.result(stdout), name) == expected


def _sample_id(sample: Any) -> str:
    """A short test id for a sample: the first words of its first non-empty text."""
    parts = sample if isinstance(sample, tuple) else (sample,)
    text = next((" ".join(str(x).split()) for x in parts if str(x).strip()), "empty")
    return text[:30].replace("[", "(").replace("]", ")")


def _sample_job() -> Any:
    return JobScript(name="n", directory="/j", stdout="/j/stdout", stderr="/j/stderr",
                     resources=Resources())
