"""Per-job overhead of queued jobs on a real Slurm, and scheduler calls per poll.

    python benchmarks/bench_slurm.py              # 200 tiny jobs (a few minutes on 2 cores)
    python benchmarks/bench_slurm.py -n 50 --json --poll-interval 1
    python benchmarks/bench_slurm.py --collect results --poll-interval 5   # the issue's loop

Needs a running Slurm (``WITH_DBD=1 bash scripts/services/slurm.sh start``) and the
wflp-slurm plugin. Submits N jobs of a function that returns at once
(``wflp.remote.submit`` with ``scheduler = "slurm"``), then waits for all of them and
collects every result. Reported:

- submit: wall time of the N submit() calls, per job (store row, job directory, job
  script, ``sbatch --parsable``);
- driver: the time the driver itself spends per job (submit, its share of each poll:
  squeue, the markers, the store; fetching the result), not counting the sleeps between
  polls: this is wflp's per-job overhead, the target is under 0.2 s;
- run + collect: from the last submit to the last result, per job (wall): the node runs
  as many jobs at once as it has CPUs, and Slurm starts the next ones at its own pace
  (its background loop allocates once a second);
- the job's own time: from its ``started`` marker to its ``succeeded`` marker (median);
  Slurm's launch: from submission to the ``started`` marker of the first jobs, which
  found free CPUs; the tail: from the last job's ``succeeded`` marker to its result here
  (bounded by the poll interval);
- the tail by Slurm's own clock: from the last job's End in ``sacct`` to the moment the
  last result was here, in poll intervals (target: <= 2; sacct's times are whole
  seconds, so the figure is good to about a second);
- scheduler calls: every command the driver ran, by kind, against the polls (the target
  is exactly one status call per poll per system, whatever the number of jobs).

How the results are collected (--collect): ``results`` is what a user writes,
``[job.result() for job in jobs]``; ``as_completed`` iterates
``wflp.remote.as_completed(jobs)``; ``wait_all`` calls ``wflp.remote.wait_all(jobs)``;
``manager`` uses the job manager's own wait (the default before these existed).

Everything happens in a temporary folder with its own job store ($WFLP_HOME).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tiny(i: int) -> int:
    return i


def last_sacct_end(job_ids: list) -> float | None:
    """The latest End time (epoch seconds) sacct gives for these jobs; None if sacct does
    not answer (no slurmdbd) or has not recorded them all yet."""
    ids = [str(i) for i in job_ids if i]
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,End", "-j", ",".join(ids)],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SLURM_TIME_FORMAT": "%s"})
    ends = [line.split("|")[1] for line in out.stdout.splitlines() if "|" in line]
    if out.returncode != 0 or len(ends) < len(ids) or not all(e.isdigit() for e in ends):
        return None
    return float(max(int(e) for e in ends))


def node_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True,
                         timeout=60)
    return int(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.split() else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--jobs", type=int, default=200)
    parser.add_argument("--poll-interval", type=float, default=1.0,
                        help="seconds between status calls (default 1; Slurm systems "
                             "default to 30)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--collect", choices=("results", "as_completed", "wait_all",
                                              "manager"), default="results",
                        help="how the results are waited for (default: results, i.e. "
                             "[job.result() for job in jobs])")
    args = parser.parse_args(argv)
    if shutil.which("sbatch") is None or subprocess.run(
            ["scontrol", "ping"], capture_output=True, timeout=60).returncode != 0:
        print("no running Slurm: WITH_DBD=1 bash scripts/services/slurm.sh start",
              file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="wflp-bench-slurm-"))
    os.chdir(work)
    os.environ["WFLP_HOME"] = str(work / "home")
    (work / "wflp-systems.toml").write_text(
        f'[systems.slurm]\nscheduler = "slurm"\npython = "{sys.executable}"\n'
        f'remote_root = "{work / "jobs"}"\npoll_interval = {args.poll_interval}\n')
    from wflp.remote import as_completed, manager, submit, wait_all

    jm = manager()
    polls = 0
    busy = 0.0
    calls: collections.Counter = collections.Counter()
    per_poll: list[collections.Counter] = []
    refresh, run, collect = jm._refresh_system, jm._run, jm.result

    def counted_refresh(system, rows):
        nonlocal polls, busy
        polls += 1
        per_poll.append(collections.Counter())
        start = time.perf_counter()
        try:
            return refresh(system, rows)
        finally:
            busy += time.perf_counter() - start

    def counted_run(system, argv):
        kind = argv[0] if argv[0] != "sh" else "sh (explain)"
        calls[kind] += 1
        if per_poll:
            per_poll[-1][kind] += 1
        return run(system, argv)

    def timed_result(row):
        nonlocal busy
        start = time.perf_counter()
        try:
            return collect(row)
        finally:
            busy += time.perf_counter() - start

    jm._refresh_system, jm._run, jm.result = counted_refresh, counted_run, timed_result
    cpus = node_cpus()
    t0 = time.perf_counter()
    jobs = [submit(tiny, args=(i,), system="slurm", resources={"max_time": "10m"})
            for i in range(args.jobs)]
    t1 = time.perf_counter()
    submitted_calls = dict(calls)
    per_poll.clear()
    rows = [jm.store.get(j.id) for j in jobs]
    if args.collect == "results":
        values = [job.result(timeout=3600) for job in jobs]
    elif args.collect == "as_completed":
        values = [job.result() for job in as_completed(jobs, timeout=3600)]
    elif args.collect == "wait_all":
        values = wait_all(jobs, timeout=3600)
    else:
        values = [jm.result(row) for row in jm.wait(rows, timeout=3600)]
    t2 = time.perf_counter()
    end = time.time()
    assert sorted(values) == list(range(args.jobs))
    rows = [jm.store.get(j.id) for j in jobs]
    sacct_end = last_sacct_end([row.scheduler_id for row in rows])
    own, starts, dones = [], [], []
    for row in rows:
        folder = Path(row.remote_dir)
        started = json.loads((folder / "started").read_text())["time"]
        done = json.loads((folder / "succeeded").read_text())["time"]
        own.append(done - started)
        starts.append(started - row.submitted)
        dones.append(done)
    launch = statistics.median(starts[:cpus])  # the first jobs found free CPUs at once
    status_per_poll = [c["squeue"] for c in per_poll]
    report = {
        "jobs": args.jobs, "cpus": cpus, "poll_interval_s": args.poll_interval,
        "submit_s_per_job": (t1 - t0) / args.jobs,
        "driver_s_per_job": ((t1 - t0) + busy) / args.jobs,
        "run_and_collect_s_per_job": (t2 - t1) / args.jobs,
        "wall_s_per_job": (t2 - t0) / args.jobs,
        "job_own_time_median_s": statistics.median(own),
        "slurm_launch_s": launch,
        "tail_s": end - max(dones),
        "tail_from_sacct_s": (end - sacct_end) if sacct_end is not None else None,
        "tail_from_sacct_poll_intervals": ((end - sacct_end) / args.poll_interval
                                           if sacct_end is not None else None),
        "collect": args.collect,
        "polls": polls, "status_calls": jm.status_calls.get("slurm", 0),
        "status_calls_per_poll_max": max(status_per_poll, default=0),
        "status_calls_per_poll_min": min(status_per_poll, default=0),
        "calls_while_submitting": submitted_calls,
        "calls_while_waiting": dict(calls - collections.Counter(submitted_calls)),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.jobs} jobs on a {cpus}-CPU Slurm node (poll every "
              f"{args.poll_interval:g} s; collected with {args.collect})")
        print(f"  submit:           {report['submit_s_per_job'] * 1000:7.1f} ms per job")
        print(f"  driver (wflp's overhead): {report['driver_s_per_job'] * 1000:7.1f} ms per "
              "job (submit + polls + results, not the sleeps)")
        print(f"  run + collect:    {report['run_and_collect_s_per_job'] * 1000:7.1f} ms per "
              "job (wall, after the last submit)")
        print(f"  a job's own time: {report['job_own_time_median_s'] * 1000:7.1f} ms (median, "
              "started -> succeeded markers)")
        print(f"  Slurm's launch:   {launch * 1000:7.1f} ms (submitted -> started marker, "
              "free CPUs)")
        print(f"  tail:             {report['tail_s'] * 1000:7.1f} ms (last job done -> its "
              "result here)")
        if sacct_end is not None:
            tail = report["tail_from_sacct_poll_intervals"]
            print(f"  tail by sacct:    {report['tail_from_sacct_s']:7.1f} s = {tail:.2f} poll "
                  f"intervals (last job's End in sacct -> last result here; target <= 2: "
                  f"{'met' if tail <= 2 else 'MISSED'})")
        print(f"  status calls: {report['status_calls']} in {report['polls']} polls "
              f"({report['status_calls_per_poll_min']}-"
              f"{report['status_calls_per_poll_max']} per poll)")
        print(f"  commands while submitting: {submitted_calls}")
        print(f"  commands while waiting:    {report['calls_while_waiting']}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
