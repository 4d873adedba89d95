"""A test kit for scheduler plugins: what every scheduler's real-job tests share.

A scheduler plugin's tests submit jobs to a real queue, here and over SSH, and check what
came back. The scheduler-specific assertions stay in the plugin; this module holds the rest:

- job functions ``add``, ``nap``, ``hog``, ``die`` and ``scaled``; the job processes import
  them from here (cloudpickle sends installed functions by reference), so they work on any
  system running the same wflp;
- ``configs(n, seed)`` (rattled Cu cells), ``wait_until`` (its deadline times
  WFLP_TEST_TIMEOUT_SCALE, as ``wflp.testing.scaled``), ``row_of`` and ``started``;
- ``project_fixture(cancel)``: a ``project`` fixture (private job store, the project folder
  as the working directory) that cancels the jobs a test left in the queue
  (``project_folder`` is its body, for fixtures written elsewhere);
- ``ssh_settings()`` and ``write_systems(...)``: the test SSH server and a systems file
  with one system here and one over SSH;
- ``check_operation_split_gives_the_local_bytes``, ``check_killed_driver_rerun_submits_nothing``
  and ``check_killed_between_submit_and_store_makes_no_duplicate``: whole tests (an
  operation split into jobs; two of resume).

The shared tests themselves, written once for every scheduler plugin, are in
``wflp.testing_scheduler``. Only the standard library is imported at the top (the job
processes import this module); pytest, numpy, ase and wflp's remote code are imported when
used.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

HOW_SSH = "bash scripts/services/sshd.sh start (needs openssh-server)"

#: Job states after which the scheduler holds nothing of a job.
ENDED = ("succeeded", "failed", "cancelled", "timeout", "out_of_memory")


# -- job functions ------------------------------------------------------------------------

def add(a, b):
    """a + b: the smallest job with a result."""
    return a + b


def nap(seconds, tag=None):
    """Sleep *seconds* and return them; *tag* makes otherwise equal jobs distinct."""
    time.sleep(seconds)
    return seconds


def hog(megabytes, seconds):
    """Hold *megabytes* of resident memory for *seconds* (for memory limits)."""
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):  # touch every page: resident, not just reserved
        block[i] = 1
    time.sleep(seconds)
    return len(block)


def die(code):
    """Exit at once with status *code*, leaving no result."""
    os._exit(code)


def scaled(at, factor):
    """*at* with positions scaled by *factor* (an operation's per-item function)."""
    at.positions *= factor
    at.info["factor"] = factor
    return at


# -- helpers --------------------------------------------------------------------------------

def configs(n, seed=7):
    """*n* rattled 4-atom fcc Cu cells, the same for the same *seed*."""
    import numpy as np
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        at = bulk("Cu", "fcc", a=3.6, cubic=True)
        at.rattle(0.05, seed=int(rng.integers(1 << 30)))
        out.append(at)
    return out


def wait_until(check: Callable[[], Any], timeout: float = 60.0, what: str = "a condition"):
    """The first true value of ``check()``, polled every 0.2 s; AssertionError naming
    *what* after *timeout* seconds times WFLP_TEST_TIMEOUT_SCALE (``wflp.testing.scaled``)."""
    from .testing import wait_until as _wait_until

    return _wait_until(check, timeout, what, interval=0.2)


def row_of(job):
    """The job store's current row of *job* (a ``wflp.remote`` job handle)."""
    from wflp.remote import manager

    return manager().store.get(job.id)


def started(job) -> bool:
    """Whether the job's process has started (its ``started`` marker exists)."""
    return Path(row_of(job).remote_dir, "started").exists()


def missing(what: str, how: str) -> None:
    """Skip the test with how to enable *what*; under CI=true fail (CI must provide it)."""
    from wflp.testing import _missing

    _missing(what, how)


# -- the project folder, the systems file ---------------------------------------------------

def project_fixture(cancel: Sequence[str], keep: Sequence[str] = ENDED, name: str = "project"):
    """A pytest fixture *name*: a fresh project folder as the working directory, a private
    WFLP_HOME (job store), no progress bars, closed transports. At the end, the scheduler ids
    of the test's jobs whose state is not in *keep* are passed to the command *cancel*
    (an argv prefix such as ``["scancel"]``), so that they hold no cores of the next test.

    Use it in a conftest.py: ``project = project_fixture(["scancel"])``."""
    import pytest

    @pytest.fixture(name=name)
    def _project(tmp_path, monkeypatch) -> Iterator[Path]:
        yield from project_folder(tmp_path, monkeypatch, cancel, keep)

    return _project


def project_folder(tmp_path: Path, monkeypatch: Any, cancel: Sequence[str],
                   keep: Sequence[str] = ENDED) -> Iterator[Path]:
    """The body of ``project_fixture``'s fixture, for a fixture written elsewhere (such as
    ``wflp.testing_scheduler.SchedulerContract.project``): yields the project folder."""
    from wflp.remote.store import JobStore
    from wflp.remote.transport import close_transports

    from .testing import scaled as scaled_timeout

    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("WFLP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WFLP_PROGRESS", "0")
    monkeypatch.delenv("WFLP_SYSTEMS", raising=False)
    monkeypatch.delenv("WFLP_NUM_PYTHON_SUBPROCESSES", raising=False)
    close_transports()
    yield folder
    close_transports()
    store = tmp_path / "home" / "jobs.sqlite"
    if store.exists():
        ids = [r.scheduler_id for r in JobStore(store).select()
               if r.scheduler_id and r.state not in keep]
        if ids:
            subprocess.run([*cancel, *ids], capture_output=True, timeout=scaled_timeout(60))


def ssh_settings() -> dict:
    """The test sshd's host, key and known_hosts (scripts/services/sshd.sh start writes
    them to $WFLP_TEST_SSHD_DIR/env; WFLP_TEST_SSH_* variables win); skips without it."""
    env_file = Path(os.environ.get("WFLP_TEST_SSHD_DIR", "/tmp/wflp-sshd")) / "env"
    values = {k: v for k, v in os.environ.items() if k.startswith("WFLP_TEST_SSH")}
    if "WFLP_TEST_SSH_HOST" not in values and env_file.is_file():
        for line in env_file.read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                values[key] = value.strip().strip('"')
    if "WFLP_TEST_SSH_HOST" not in values:
        missing("the test SSH server (127.0.0.1)", HOW_SSH)
    return {"host": values["WFLP_TEST_SSH_HOST"], "key": values["WFLP_TEST_SSH_KEY"],
            "known_hosts": values["WFLP_TEST_SSH_KNOWN_HOSTS"]}


def write_systems(folder: Path, root: Path, scheduler: str, ssh: Optional[dict] = None,
                  prefix: Optional[Sequence[str]] = None, extra: str = "") -> Path:
    """*folder*/wflp-systems.toml with system *scheduler* (this machine, jobs under
    *root*/jobs) and, given ``ssh_settings()``, *scheduler*_ssh (the same queue through
    SSH to it, jobs under *root*/ssh-jobs), both with *prefix* as command_prefix (None:
    none) and polled every second; *extra* TOML is appended."""
    words = "" if prefix is None else \
        "command_prefix = [" + ", ".join(_q(w) for w in prefix) + "]\n"
    text = (f"\n[systems.{scheduler}]\nscheduler = {_q(scheduler)}\n"
            f"python = {_q(sys.executable)}\nremote_root = {_q(str(root / 'jobs'))}\n"
            f"{words}poll_interval = 1\n")
    if ssh is not None:
        text += (f"\n[systems.{scheduler}_ssh]\nscheduler = {_q(scheduler)}\n"
                 f"host = {_q(ssh['host'])}\nidentity_file = {_q(ssh['key'])}\n"
                 f"known_hosts = {_q(ssh['known_hosts'])}\npython = {_q(sys.executable)}\n"
                 f"remote_root = {_q(str(root / 'ssh-jobs'))}\n"
                 f"{words}poll_interval = 1\nreconnect_attempts = 2\n")
    path = folder / "wflp-systems.toml"
    path.write_text(text + textwrap.dedent(extra))
    return path


def _q(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- a killed driver -------------------------------------------------------------------------

#: A driver script: ``python driver.py OUT SYSTEM`` maps ``slow`` over in.xyz in queued jobs
#: of 2 items each and writes OUT.
DRIVER = textwrap.dedent("""
    import logging, sys, time
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from wflp import AutoparaInfo, ConfigSet, OutputSpec, RemoteInfo
    from wflp.ops import map
    from wflp.testing import scaled

    def slow(at):
        time.sleep(0.2)
        at.info["slow"] = True
        return at

    if __name__ == "__main__":
        remote = RemoteInfo(system=sys.argv[2], job_name="slow", num_inputs_per_queued_job=2,
                            resources={"max_time": "10m"}, timeout=scaled(300))
        map(ConfigSet("in.xyz"), OutputSpec(sys.argv[1]), slow,
            autopara_info=AutoparaInfo(remote_info=remote))
        print("finished")
""")


def start_driver(system: str, out: str = "out.xyz") -> subprocess.Popen:
    """Start ``driver.py`` (``DRIVER``, in the working directory) for *system*, writing
    *out*; its stdout and stderr are pipes."""
    env = {**os.environ, "WFLP_PROGRESS": "0"}
    return subprocess.Popen([sys.executable, "driver.py", out, system], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def check_operation_split_gives_the_local_bytes(system: str) -> None:
    """An operation of 40 items, 5 per job: 8 distinct jobs, all succeeded, output bytes
    equal to a local run's, and one status call per poll for all of the system's jobs."""
    import ase.io

    from wflp import AutoparaInfo, ConfigSet, OutputSpec, RemoteInfo
    from wflp.ops import map
    from wflp.remote import manager
    from wflp.testing import scaled as scaled_timeout

    ase.io.write("in.xyz", configs(40))
    map(ConfigSet("in.xyz"), OutputSpec("local.xyz"), scaled, args=(1.01,))
    jm = manager()
    jm.status_calls.clear()
    polls = []
    original = jm._refresh_system

    def counting(sys_config, group):
        polls.append(len(group))
        return original(sys_config, group)

    jm._refresh_system = counting
    try:
        remote = RemoteInfo(system=system, job_name="scale", num_inputs_per_queued_job=5,
                            resources={"num_cores": 1, "max_time": "10m"},
                            timeout=scaled_timeout(300))
        out = map(ConfigSet("in.xyz"), OutputSpec("remote.xyz"), scaled, args=(1.01,),
                  autopara_info=AutoparaInfo(remote_info=remote))
    finally:
        jm._refresh_system = original
    assert Path("remote.xyz").read_bytes() == Path("local.xyz").read_bytes()
    assert len(list(out)) == 40
    rows = jm.store.select()
    assert len(rows) == 8 and {r.state for r in rows} == {"succeeded"}
    assert len({r.scheduler_id for r in rows}) == 8
    # one status call per poll for all of the system's jobs, never one per job
    assert polls and max(polls) > 1 and jm.status_calls[system] == len(polls)


def check_killed_driver_rerun_submits_nothing(system: str) -> None:
    """Kill the driver with SIGKILL once it submitted all 10 jobs of 20 items; its rerun
    submits nothing, collects the 10 jobs and writes what a local run writes."""
    import ase.io

    from wflp import ConfigSet, OutputSpec
    from wflp.ops import map
    from wflp.remote.store import JobStore
    from wflp.testing import scaled as scaled_timeout

    Path("driver.py").write_text(DRIVER)
    ase.io.write("in.xyz", configs(20))
    first = start_driver(system)
    store = JobStore()
    wait_until(lambda: first.poll() is not None or
               len([r for r in store.select() if r.scheduler_id]) >= 10, 120,
               "10 submitted jobs")
    assert first.poll() is None, first.communicate()[1]
    first.send_signal(signal.SIGKILL)  # right after the 10th job was submitted
    first.wait()
    assert not Path("out.xyz").exists()
    rerun = start_driver(system)
    _, err = rerun.communicate(timeout=scaled_timeout(300))
    assert rerun.returncode == 0, err
    assert "submitted job" not in err  # nothing submitted again
    rows = store.select()
    assert len(rows) == 10 and all(r.attempts == 1 for r in rows)
    assert {r.state for r in rows} == {"succeeded"}
    script: dict = {"__name__": "driver"}
    exec(compile(DRIVER.split("if __name__")[0], "driver", "exec"), script)
    map(ConfigSet("in.xyz"), OutputSpec("local.xyz"), script["slow"])
    assert Path("out.xyz").read_bytes() == Path("local.xyz").read_bytes()


def check_killed_between_submit_and_store_makes_no_duplicate(system: str, tmp: Path) -> None:
    """A driver that exits after the scheduler took its job but before the store has the id
    (WFLP_TEST_EXIT_AFTER_SUBMIT=1); its rerun finds that job and runs nothing twice. *tmp*
    is a folder for the job's log outside the project."""
    from wflp.remote.store import JobStore
    from wflp.testing import scaled as scaled_timeout

    log = tmp / "runs.log"
    Path("submitter.py").write_text(textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO)
        from wflp.remote import submit
        from wflp.testing import scaled

        def once(path):
            with open(path, "a") as fd:
                fd.write("ran\\n")
            return 7

        print(submit(once, args=({str(log)!r},), system={system!r}).result(timeout=scaled(120)))
    """))
    dying = subprocess.run([sys.executable, "submitter.py"], capture_output=True, text=True,
                           env={**os.environ, "WFLP_TEST_EXIT_AFTER_SUBMIT": "1"},
                           timeout=scaled_timeout(120))
    assert dying.returncode == 75, dying.stderr  # the scheduler has the job, the store no id
    [row] = JobStore().select()
    assert row.state == "submitting" and row.scheduler_id is None
    rerun = subprocess.run([sys.executable, "submitter.py"], capture_output=True, text=True,
                           timeout=scaled_timeout(180))
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip() == "7"
    assert "was submitted before" in rerun.stderr or "ran already" in rerun.stderr
    assert log.read_text() == "ran\n"  # it ran once
    assert len(JobStore().select()) == 1
