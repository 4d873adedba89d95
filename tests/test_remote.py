"""Queued jobs with the built-in local scheduler: configuration, submit, operations split into
jobs, the store, states, cancel/resubmit/clean, the jobs command, and faults injected for real.

Waits poll markers, files and states (wflp.testing.wait_until); every deadline is generous
for a loaded 2-core machine and scaled by WFLP_TEST_TIMEOUT_SCALE (wflp.testing.scaled)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
from helpers import rattled_cu
from remote_helpers import write_systems
from wflp import AutoparaInfo, ConfigSet, OutputSpec, RemoteInfo
from wflp.errors import ParameterError
from wflp.remote import manager, submit
from wflp.remote.config import (
    ConfigError,
    Resources,
    format_dhms,
    format_hms,
    get_system,
    load_systems,
    parse_duration,
    parse_memory,
)
from wflp.remote.jobs import RemoteJobError, RemoteTimeoutError
from wflp.remote.store import JobStore
from wflp.testing import scaled, wait_until
from wflp.testing_remote import row_of, started

#: How long a small job may take from submission to its result (a few seconds on an idle
#: machine: a shell and two Python start-ups), times WFLP_TEST_TIMEOUT_SCALE.
JOB_S = 120.0


def add(a, b):
    return a + b


def boom(message):
    raise ValueError(message)


def nap(seconds, log=None):
    if log:
        with open(log, "a") as fd:
            fd.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return seconds


def held(gate, log, tag):
    """Log "start TAG", wait until the file *gate* exists, log "end TAG"; return *tag*."""
    with open(log, "a") as fd:
        fd.write(f"start {tag}\n")
    while not os.path.exists(gate):
        time.sleep(0.05)
    with open(log, "a") as fd:
        fd.write(f"end {tag}\n")
    return tag


@pytest.fixture
def ws(remote_env, tmp_path):
    write_systems(remote_env, tmp_path)
    return remote_env


# -- configuration --------------------------------------------------------------------------

@pytest.mark.parametrize("text,seconds", [("90m", 5400), ("1:30:00", 5400), ("1h", 3600),
                                          ("2d", 172800), ("45s", 45), ("1-12:00:00", 129600),
                                          ("90:00", 5400), (600, 600)])
def test_walltimes_in_every_usual_form(text, seconds):
    assert parse_duration(text) == seconds


def test_walltimes_are_rendered_per_scheduler():
    assert format_hms(5400) == "1:30:00" and format_hms(129600) == "36:00:00"
    assert format_dhms(129600) == "1-12:00:00" and format_dhms(59) == "0-00:00:59"
    assert parse_memory("4G") == 4096 and parse_memory("500M") == 500
    with pytest.raises(ParameterError, match="max_time.*cannot read 'soon'"):
        Resources.from_dict({"max_time": "soon"})


def test_smallest_configuration_and_which_file_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text('[systems.far]\nscheduler = "local"\n')
    monkeypatch.setenv("WFLP_SYSTEMS", str(elsewhere))
    assert set(load_systems()) == {"far"}
    (tmp_path / "wflp-systems.toml").write_text('[systems.ws]\nscheduler = "local"\n')
    system = get_system("ws")  # the project's own file wins
    assert (system.scheduler, system.host, system.is_remote) == ("local", None, False)
    with pytest.raises(ConfigError, match="no system named 'far'.*configured: ws"):
        get_system("far")


@pytest.mark.parametrize("body,message", [
    ('[systems.a]\nschedular = "local"', r"\[systems\.a\]: unknown key\(s\) \['schedular'\]"),
    ('[systems.a]\nhost = "x"', r"\[systems\.a\]: missing key 'scheduler'"),
    ('[systems.a]\nscheduler = "lsf"', r"\[systems\.a\]: scheduler: no scheduler named 'lsf'"),
    ('[systems.a]\nscheduler = "local"\npoll_interval = "fast"',
     r"\[systems\.a\]: poll_interval must be a number"),
    ('[systems.a]\nscheduler = "local"\n[systems.a.partitions.std]\nmax_time = "ages"',
     r"partitions\.std: max_time: cannot read 'ages'"),
    ('[systems.a]\nscheduler = "local"\nhost = "a b"', r"host must look like user@host"),
    ("[systems.a\n", "is not valid TOML"),
])
def test_bad_configuration_names_file_system_and_key(tmp_path, monkeypatch, body, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wflp-systems.toml").write_text(body)
    with pytest.raises(ConfigError, match=rf"wflp-systems\.toml.*{message}|{message}"):
        load_systems()


def test_resources_are_checked_against_the_partition(ws):
    (ws / "wflp-systems.toml").write_text(textwrap.dedent("""
        [systems.hpc]
        scheduler = "local"
        [systems.hpc.partitions.short]
        cores = 4
        max_time = "1h"
    """))
    with pytest.raises(ParameterError, match=r"max_time 2:00:00 is more than partition "
                                             r"'short'.*1:00:00"):
        submit(add, args=(1, 2), system="hpc", resources={"partition": "short",
                                                          "max_time": "2h"})
    with pytest.raises(ParameterError, match="has no partition 'long'"):
        submit(add, args=(1, 2), system="hpc", resources={"partition": "long"})
    assert manager().store.select() == []  # nothing was submitted


def test_configuration_is_not_read_at_import(tmp_path):
    code = ("import wflp, wflp.remote, wflp.exec.queue, wflp.remote.jobs\n"
            "print('imported')\n")
    (tmp_path / "wflp-systems.toml").write_text("this is not toml")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=scaled(60))
    assert out.returncode == 0 and out.stdout.strip() == "imported", out.stderr


# -- functions as jobs ----------------------------------------------------------------------------

def test_function_job_result_and_resubmission_is_idempotent(ws):
    job = submit(add, args=(2, 3), system="ws", resources={"num_cores": 1, "max_time": "10m"})
    assert job.result(timeout=scaled(JOB_S)) == 5
    again = submit(add, args=(2, 3), system="ws", resources={"num_cores": 1, "max_time": "10m"})
    assert again.id == job.id and again.result() == 5  # found, not submitted twice
    other = submit(add, args=(2, 4), system="ws", resources={"num_cores": 1, "max_time": "10m"})
    assert other.id != job.id and other.result() == 6
    assert len(manager().store.select()) == 2


def test_remote_exception_is_raised_here_with_the_remote_traceback(ws):
    job = submit(boom, args=("bad input 42",), system="ws")
    with pytest.raises(ValueError, match="bad input 42") as err:
        job.result(timeout=scaled(JOB_S))
    notes = "\n".join(getattr(err.value, "__notes__", []))
    assert "remote traceback" in notes and "in boom" in notes
    assert err.value.remote_job.state == "failed"


def test_job_directory_is_private_and_holds_the_call_and_markers(ws):
    job = submit(add, args=(1, 1), system="ws")
    job.result()
    row = manager().store.get(job.id)
    folder = Path(row.remote_dir)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {"call.pkl", "job.sh", "stdout", "stderr", "started", "succeeded",
            "result.pkl"} <= set(os.listdir(folder))


def test_killed_job_is_reported_failed_with_its_stderr(ws):
    job = submit(nap, args=(60,), system="ws")
    row = manager().store.get(job.id)
    wait_until(lambda: (Path(row.remote_dir) / "started").exists(), JOB_S, "the job to start")
    os.killpg(int(row.scheduler_id), signal.SIGKILL)  # the whole job, as the OOM killer would
    with pytest.raises(RemoteJobError, match=rf"ended as failed \(the job's process ended "
                                             rf"without writing a result.*stderr "
                                             rf"{row.remote_dir}/stderr"):
        job.result(timeout=scaled(JOB_S))


def test_sigterm_reaching_the_call_first_is_left_to_the_scheduler(ws, tmp_path):
    # scancel and a walltime signal every process of the job, and the call may die of it
    # before the supervisor's handler runs: that is a termination for the scheduler to
    # name (cancelled, timeout), never a "failed" marker that would decide it first.
    log = tmp_path / "pid.log"
    job = submit(nap, args=(60, str(log)), system="ws")
    row = manager().store.get(job.id)
    wait_until(lambda: log.exists() and log.read_text().endswith("\n"), JOB_S,
               "the call to log its pid")
    os.kill(int(log.read_text().split()[0]), signal.SIGTERM)  # the call only
    with pytest.raises(RemoteJobError, match=r"ended as failed \(the job was terminated"):
        job.result(timeout=scaled(JOB_S))
    markers = set(os.listdir(row.remote_dir))
    assert "terminated" in markers and "failed" not in markers


def test_job_over_its_time_limit_is_a_timeout(ws):
    bound = scaled(JOB_S)  # the job naps three times as long: only its limit can end it sooner
    job = submit(nap, args=(3 * bound,), system="ws", resources={"max_time": "2s"})
    start = time.monotonic()
    with pytest.raises(RemoteJobError, match="ended as timeout"):
        job.result(timeout=bound)
    assert time.monotonic() - start < bound
    assert manager().store.get(job.id).state == "timeout"


def test_waiting_times_out_listing_the_jobs_then_a_rerun_waits_on(ws):
    job = submit(nap, args=(4,), system="ws")
    with pytest.raises(RemoteTimeoutError, match=r"1 job\(s\) still outstanding.*nap-"):
        job.result(timeout=1)  # a 4 s nap is outstanding after 1 s on any machine
    assert submit(nap, args=(4,), system="ws").result(timeout=scaled(JOB_S)) == 4


def test_core_limit_of_the_local_scheduler(ws, tmp_path):
    (ws / "wflp-systems.toml").write_text(
        (ws / "wflp-systems.toml").read_text() + "max_cores = 2\n")
    gate, log = tmp_path / "gate", tmp_path / "held.log"
    jobs = [submit(held, args=(str(gate), str(log), i), system="ws",
                   resources={"num_cores": 1}) for i in range(3)]

    def two_run_one_waits():
        waiting = [j for j in jobs
                   if Path(row_of(j).remote_dir, "waiting").exists() and not started(j)]
        return log.exists() and log.read_text().count("start") == 2 and len(waiting) == 1

    try:  # the two jobs with a core are held at the gate until the states are checked
        wait_until(two_run_one_waits, JOB_S, "two jobs running and one waiting for a core")
        states = sorted(j.refresh().state for j in jobs)  # now, not the last poll
        assert states == ["queued", "running", "running"]  # the third waits for a free core
    finally:
        gate.touch()
    assert [j.result(timeout=scaled(JOB_S)) for j in jobs] == [0, 1, 2]
    events = log.read_text().split()[::2]  # "start" / "end", in the order they happened
    starts = [i for i, e in enumerate(events) if e == "start"]
    assert starts[2] > events.index("end"), events  # the third began once a core was free


def test_cancel_then_resubmit(ws):
    job = submit(nap, args=(60,), system="ws")
    wait_until(lambda: started(job), JOB_S, "the job to start")  # cancel a running job
    job.cancel()   # waits up to 10 s for the scheduler to let go; a busy one is slower
    wait_until(lambda: job.refresh().state == "cancelled", JOB_S, "the job to be cancelled",
               interval=0.5)
    assert manager().store.get(job.id).state == "cancelled"
    with pytest.raises(RemoteJobError, match="ended as cancelled"):
        job.result()
    row = manager().resubmit(manager().store.get(job.id))
    assert row.state == "queued" and row.attempts == 2
    manager().cancel([row])


def test_one_status_call_per_poll_for_all_jobs(ws):
    jobs = [submit(nap, args=(1 + i * 0.001,), system="ws") for i in range(6)]
    jm = manager()
    jm.status_calls.clear()
    rows = [jm.store.get(j.id) for j in jobs]
    polls = 0
    original = jm._refresh_system

    def counting(system, group):
        nonlocal polls
        polls += 1
        return original(system, group)

    jm._refresh_system = counting
    try:
        done = list(jm.wait(rows, timeout=scaled(JOB_S)))
    finally:
        jm._refresh_system = original
    assert len(done) == 6
    assert polls >= 2 and jm.status_calls["ws"] == polls  # never one call per job


# -- the store -----------------------------------------------------------------------------------

def _create(path, key, n):
    store = JobStore(Path(path))
    for i in range(n):
        store.get_or_create(f"{key}-{i % 5}", name="n", kind="function", system="s",
                            scheduler="local", remote_dir="/r", local_dir="/l", resources={})


def test_store_is_safe_for_two_processes_at_once(tmp_path):
    import multiprocessing as mp

    path = tmp_path / "jobs.sqlite"
    JobStore(path)
    procs = [mp.get_context("spawn").Process(target=_create, args=(str(path), "k", 40))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(scaled(JOB_S))
        assert p.exitcode == 0
    rows = JobStore(path).select()
    assert sorted(r.key for r in rows) == [f"k-{i}" for i in range(5)]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()[0] == "1"


def test_store_keeps_any_text_as_data(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    name = "x'); DROP TABLE jobs; --"
    row, created = store.get_or_create("k", name=name, kind="function", system="s",
                                       scheduler="local", remote_dir="/r", local_dir="/l",
                                       resources={})
    assert created and store.select(name="DROP TABLE")[0].name == name


# -- operations split into jobs ----------------------------------------------------------------

def _scaled(at, factor):
    at.positions *= factor
    at.info["factor"] = factor
    return at


def test_operation_split_into_jobs_gives_the_local_bytes(ws):
    from wflp.ops import calculate, map

    ase.io.write("in.xyz", rattled_cu(40))
    map(ConfigSet("in.xyz"), OutputSpec("local.xyz"), _scaled, args=(1.01,))
    # 8 jobs of Python start-ups, two at a time on 2 cores
    remote = RemoteInfo(system="ws", job_name="scale", num_inputs_per_queued_job=5,
                        resources={"num_cores": 1}, timeout=scaled(300))
    out = map(ConfigSet("in.xyz"), OutputSpec("remote.xyz"), _scaled, args=(1.01,),
              autopara_info=AutoparaInfo(remote_info=remote))
    assert Path("remote.xyz").read_bytes() == Path("local.xyz").read_bytes()
    assert len(list(out)) == 40
    rows = manager().store.select()
    assert len(rows) == 8 and {r.kind for r in rows} == {"batch"}
    record = json.loads(Path("remote.xyz.record.json").read_text())
    assert record["providers"]["executor"]["name"] == "queue"
    # the record is that of a local run: a local rerun reuses the remote output
    before = Path("remote.xyz.record.json").stat().st_mtime_ns
    map(ConfigSet("in.xyz"), OutputSpec("remote.xyz"), _scaled, args=(1.01,))
    assert Path("remote.xyz.record.json").stat().st_mtime_ns == before
    # in memory, with the pool of 2 processes inside each job
    mem = calculate(rattled_cu(6), OutputSpec(), calculator=("lj", [], {"rc": 5.0}),
                    autopara_info=AutoparaInfo(remote_info=remote, num_python_subprocesses=2))
    here = calculate(rattled_cu(6), OutputSpec(), calculator=("lj", [], {"rc": 5.0}))
    assert [a.info["lj_energy"] for a in mem] == [a.info["lj_energy"] for a in here]


def test_wait_for_results_false_submits_and_returns(ws):
    from wflp.ops import map

    ase.io.write("in.xyz", rattled_cu(6))
    remote = RemoteInfo(system="ws", num_inputs_per_queued_job=3, wait_for_results=False)
    got = map(ConfigSet("in.xyz"), OutputSpec("o.xyz"), _scaled, args=(1.0,),
              autopara_info=AutoparaInfo(remote_info=remote))
    assert got is None and not Path("o.xyz").exists()
    assert len(manager().store.select()) == 2
    remote.wait_for_results = True
    out = map(ConfigSet("in.xyz"), OutputSpec("o.xyz"), _scaled, args=(1.0,),
              autopara_info=AutoparaInfo(remote_info=remote))
    assert len(list(out)) == 6 and len(manager().store.select()) == 2


DRIVER = textwrap.dedent("""
    import logging, os, sys, time
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from wflp import AutoparaInfo, ConfigSet, OutputSpec, RemoteInfo
    from wflp.ops import map
    from wflp.testing import scaled

    def slow(at):
        time.sleep(1.0)
        at.info["slow"] = True
        return at

    if __name__ == "__main__":
        remote = RemoteInfo(system="ws", job_name="slow", num_inputs_per_queued_job=2,
                            timeout=scaled(300))
        map(ConfigSet("in.xyz"), OutputSpec(sys.argv[1]), slow,
            autopara_info=AutoparaInfo(remote_info=remote))
        print("finished")
""")


def _driver(env_extra=None, out="out.xyz"):
    env = {**os.environ, "WFLP_PROGRESS": "0", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "driver.py", out], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_driver_killed_after_submitting_then_rerun_submits_nothing_and_collects(ws):
    from wflp.ops import map

    Path("driver.py").write_text(DRIVER)
    ase.io.write("in.xyz", rattled_cu(8))
    first = _driver()
    store = JobStore()

    def submitted_all():
        submitted = len([r for r in store.select() if r.scheduler_id])
        if submitted < 4 and first.poll() is not None:
            pytest.fail(f"the driver ended after submitting {submitted} jobs:\n"
                        f"{first.communicate(timeout=scaled(JOB_S))[1]}")
        return submitted >= 4

    wait_until(submitted_all, JOB_S, "4 jobs submitted", interval=0.01)
    first.kill()  # SIGKILL, right after the 4th job was submitted
    first.wait()
    rerun = _driver()
    out, err = rerun.communicate(timeout=scaled(300))
    assert rerun.returncode == 0, err
    assert "submitted job" not in err  # nothing new
    assert len(store.select()) == 4
    exec(compile(DRIVER.split('if __name__')[0], "driver", "exec"), globals())
    map(ConfigSet("in.xyz"), OutputSpec("local.xyz"), globals()["slow"])
    assert Path("out.xyz").read_bytes() == Path("local.xyz").read_bytes()


@pytest.mark.slow
def test_driver_killed_between_submit_and_store_update_makes_no_duplicate(ws, tmp_path):
    log = tmp_path / "runs.log"
    script = textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO)
        from test_remote import nap
        from wflp.remote import submit
        from wflp.testing import scaled
        print(submit(nap, args=(2, {str(log)!r}), system="ws").result(timeout=scaled(120)))
    """)
    Path("submitter.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    dying = subprocess.run([sys.executable, "submitter.py"], capture_output=True, text=True,
                           env={**env, "WFLP_TEST_EXIT_AFTER_SUBMIT": "1"},
                           timeout=scaled(JOB_S))
    assert dying.returncode == 75  # died after the scheduler took the job
    [row] = JobStore().select()
    assert row.state == "submitting" and row.scheduler_id is None
    rerun = subprocess.run([sys.executable, "submitter.py"], capture_output=True, text=True,
                           env=env, timeout=scaled(JOB_S + 60))
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip() == "2"
    assert "was submitted before" in rerun.stderr or "ran already" in rerun.stderr
    assert len(log.read_text().split()) == 1  # the function ran once
    assert len(JobStore().select()) == 1


# -- the jobs command, and the plugin hooks -------------------------------------------------

def test_jobs_command(ws):
    from test_cli import invoke

    done = submit(add, args=(1, 2), system="ws")
    done.result()
    running = submit(nap, args=(60,), system="ws")
    listed = invoke("jobs", "ls", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [done.id, running.id]
    only = invoke("jobs", "ls", "--status", "succeeded")
    assert "add-" in only.stdout and "nap-" not in only.stdout
    shown = invoke("jobs", "show", str(done.id))
    assert f"stderr:       {manager().store.get(done.id).remote_dir}/stderr" in shown.stdout
    wait_until(lambda: running.state == "running", JOB_S, "the job to run")
    manager().status_calls.clear()
    synced = invoke("jobs", "sync")
    assert "1 jobs: 1 running (status calls: ws: 1)" in synced.stdout
    cancelled = invoke("jobs", "cancel", str(running.id), str(done.id))
    assert cancelled.exit_code == 2
    assert f"job {running.id}: cancelled" in cancelled.stdout
    assert f"job {done.id}: not cancelled: already succeeded" in cancelled.stderr
    missing = invoke("jobs", "show", "999")
    assert missing.exit_code == 2 and "no job with id 999" in missing.stderr
    cleaned = invoke("jobs", "clean", "--yes")
    assert "removed 2 job(s)" in cleaned.stdout
    assert manager().store.select() == []
    assert not Path(manager().store.path.parent).joinpath("x").exists()


def test_a_plugin_scheduler_and_a_plugin_command(ws, register_wflp_plugin):
    import click
    from test_cli import invoke
    from wflp import SchedulerSpec, hookimpl
    from wflp.remote.scheduler import LocalScheduler

    calls = []

    class Counting(LocalScheduler):
        name = "counting"

        def status_command(self, ids):
            calls.append(list(ids))
            return super().status_command(ids)

    class Plugin:
        @hookimpl
        def wflp_schedulers(self):
            return [SchedulerSpec(name="counting", summary="local, counting status calls",
                                  factory=Counting)]

        @hookimpl
        def wflp_commands(self, cli):
            @cli.command("hello")
            @click.argument("who")
            def hello(who):
                click.echo(f"hello {who}")

    register_wflp_plugin(Plugin())
    (ws / "wflp-systems.toml").write_text(
        f'[systems.c]\nscheduler = "counting"\npython = "{sys.executable}"\n')
    assert submit(add, args=(3, 4), system="c").result(timeout=scaled(JOB_S)) == 7
    assert calls  # the plugin's dialect was used
    import wflp.cli

    wflp.cli._WflpGroup._plugins_added = False
    assert invoke("hello", "there").stdout == "hello there\n"
    assert "hello" in invoke("--help").stdout


def test_remote_info_values_are_checked():
    with pytest.raises(ParameterError, match="num_inputs_per_queued_job"):
        AutoparaInfo(remote_info=RemoteInfo(system="ws", num_inputs_per_queued_job=0)
                     ).resolved()
    with pytest.raises(ParameterError, match="unknown key"):
        AutoparaInfo(remote_info=RemoteInfo(system="ws", resources={"cores": 2})).resolved()


def test_job_names_and_paths_with_shell_characters(tmp_path, remote_env):
    weird = tmp_path / "we ird 'q' \"d\" $(touch PWNED)"
    write_systems(remote_env, weird)
    job = submit(add, args=(1, 2), system="ws", job_name="x $(touch PWNED2) 'a' \"b\"")
    assert job.result(timeout=scaled(JOB_S)) == 3
    assert not list(tmp_path.rglob("PWNED*")) and not Path("PWNED").exists()
    assert " " not in job.name and "$" not in job.name
    row = manager().store.get(job.id)
    assert row.remote_dir.startswith(str(weird)) and Path(row.remote_dir, "succeeded").exists()
    assert np.isfinite(1.0)
