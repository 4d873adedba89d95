"""Per-job overhead of queued jobs with the built-in local scheduler, and status calls per poll.

    python benchmarks/bench_remote.py              # 200 tiny jobs (about a minute on 2 cores)
    python benchmarks/bench_remote.py -n 50 --json

Submits N jobs of a function that returns at once (``wflp.remote.submit``), then
waits for all of them and collects every result. Reported:

- submit: wall time of the N submit() calls, per job (store row, job directory,
  job script, the scheduler's submit command);
- run + collect: from the last submit to the last result, per job; the jobs run
  on this machine's cores (the local scheduler's core limit), so this includes
  their own start-up (two Python interpreters each: the supervisor and the call);
- the job's own time: what one such job takes from its ``started`` marker to its
  ``succeeded`` marker, measured in the jobs (median), so that the overhead beyond
  the jobs' own run time can be told apart;
- status calls: how many scheduler status commands were run, against how many polls
  (the target is exactly one per poll per system, whatever the number of jobs).

Everything happens in a temporary folder with its own job store ($WFLP_HOME).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def tiny(i: int) -> int:
    return i


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--jobs", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="wflp-bench-remote-"))
    os.chdir(work)
    os.environ["WFLP_HOME"] = str(work / "home")
    (work / "wflp-systems.toml").write_text(
        f'[systems.ws]\nscheduler = "local"\npython = "{sys.executable}"\n'
        f'remote_root = "{work / "jobs"}"\n')
    from wflp.remote import manager, submit

    jm = manager()
    polls = 0
    refresh = jm._refresh_system

    def counted(system, rows):
        nonlocal polls
        polls += 1
        return refresh(system, rows)

    jm._refresh_system = counted
    t0 = time.perf_counter()
    jobs = [submit(tiny, args=(i,), system="ws") for i in range(args.jobs)]
    t1 = time.perf_counter()
    rows = [jm.store.get(j.id) for j in jobs]
    results = {}
    for row in jm.wait(rows, timeout=3600):
        results[row.id] = jm.result(row)
    t2 = time.perf_counter()
    assert sorted(results.values()) == list(range(args.jobs))
    own = []
    for row in rows:
        folder = Path(row.remote_dir)
        started = json.loads((folder / "started").read_text())["time"]
        done = json.loads((folder / "succeeded").read_text())["time"]
        own.append(done - started)
    cores = os.cpu_count() or 1
    report = {
        "jobs": args.jobs, "cores": cores,
        "submit_s_per_job": (t1 - t0) / args.jobs,
        "run_and_collect_s_per_job": (t2 - t1) / args.jobs,
        "job_own_time_median_s": statistics.median(own),
        # what is left once the jobs' own time (spread over the cores) is taken out
        "overhead_s_per_job": (t2 - t0) / args.jobs - statistics.median(own) / cores,
        "polls": polls, "status_calls": jm.status_calls.get("ws", 0),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.jobs} jobs on {cores} cores with the local scheduler")
        print(f"  submit:           {report['submit_s_per_job'] * 1000:7.1f} ms per job")
        print(f"  run + collect:    {report['run_and_collect_s_per_job'] * 1000:7.1f} ms per "
              "job (wall, after the last submit)")
        print(f"  a job's own time: {report['job_own_time_median_s'] * 1000:7.1f} ms (median, "
              "started -> succeeded markers)")
        print(f"  overhead beyond the jobs' own time: "
              f"{report['overhead_s_per_job'] * 1000:7.1f} ms per job")
        print(f"  status calls: {report['status_calls']} in {report['polls']} polls "
              f"({report['status_calls'] / max(1, report['polls']):.2f} per poll)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
