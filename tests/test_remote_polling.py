"""Many submit() jobs are polled together: one status call per system and interval updates
every unfinished job, waiting on many costs one interval, and wait_all / as_completed wait
for many. (Before: each job.result() polled its own row, an interval after the last.)"""

from __future__ import annotations

import time
from pathlib import Path

from wflp.remote import as_completed, manager, submit, wait_all

N_JOBS = 12
POLL = 1.0


def _square(x):
    return x * x


def _ws(remote_env, tmp_path):
    root = tmp_path / "jobs"
    (remote_env / "wflp-systems.toml").write_text(
        f'[systems.ws]\nscheduler = "local"\nremote_root = "{root}"\n'
        f"poll_interval = {POLL}\n")
    return root


def _wait_until_all_ran(jobs, deadline_s: float = 300) -> None:
    """Until every job has written its final marker (not timing: a condition)."""
    rows = [manager().store.get(j.id) for j in jobs]
    deadline = time.monotonic() + deadline_s
    while not all((Path(r.remote_dir) / "succeeded").exists() for r in rows):
        assert time.monotonic() < deadline, "the jobs did not run"
        time.sleep(0.05)


def test_collecting_many_finished_jobs_takes_one_status_call(remote_env, tmp_path):
    _ws(remote_env, tmp_path)
    jobs = [submit(_square, args=(i,), system="ws") for i in range(N_JOBS)]
    _wait_until_all_ran(jobs)
    jm = manager()
    polls_before = jm.polls.get("ws", 0)
    calls_before = jm.status_calls.get("ws", 0)
    assert [j.result(timeout="2m") for j in jobs] == [i * i for i in range(N_JOBS)]
    polls = jm.polls.get("ws", 0) - polls_before
    calls = jm.status_calls.get("ws", 0) - calls_before
    assert polls <= 1, f"{polls} polls to collect {N_JOBS} finished jobs"
    assert calls <= polls  # one status call per poll, whatever the number of jobs


def test_state_does_not_ask_the_scheduler_at_every_access(remote_env, tmp_path):
    _ws(remote_env, tmp_path)
    jobs = [submit(_square, args=(i,), system="ws") for i in range(3)]
    jm = manager()
    before = jm.polls.get("ws", 0)
    states = [j.state for _ in range(10) for j in jobs]
    assert all(s in ("queued", "running", "succeeded") for s in states)
    assert jm.polls.get("ws", 0) - before <= 1
    assert wait_all(jobs, timeout="2m") == [0, 1, 4]


def test_as_completed_yields_every_job_once(remote_env, tmp_path):
    _ws(remote_env, tmp_path)
    jobs = [submit(_square, args=(i,), system="ws") for i in range(5)]
    seen = [j.id for j in as_completed(jobs, timeout="2m")]
    assert sorted(seen) == sorted(j.id for j in jobs)
    assert all(j.state == "succeeded" for j in jobs)
