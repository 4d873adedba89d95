"""Wall time of ``wflp list-plugins`` (a fresh process each time), against a 0.5 s target.

    python benchmarks/bench_list_plugins.py              # best of 10
    python benchmarks/bench_list_plugins.py -n 20 --json

Each run starts the ``wflp`` console script in a new process, so the time includes
the interpreter start, importing wflp and click, discovering installed plugins
(entry points) and calling their registration hooks. Also timed, for comparison:
``python -c pass`` (the interpreter alone) and ``wflp --version``. The best of N is
reported (the least disturbed run); the median shows the spread.

Exit status: 0 if the best ``list-plugins`` time is within the target, 1 if not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.5


def wflp_command() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m wflp.cli``."""
    script = Path(sys.executable).with_name("wflp")
    if script.exists():
        return [str(script)]
    found = shutil.which("wflp")
    if found:
        return [found]
    return [sys.executable, "-m", "wflp.cli"]


def time_command(cmd: list[str], n: int) -> list[float]:
    """Wall times of n runs of cmd (output discarded); raises if a run fails."""
    env = dict(os.environ, WFLP_PROGRESS="0")
    times = []
    for _ in range(n):
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace').strip()}")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--repeat", type=int, default=10, help="runs per command")
    parser.add_argument("--target", type=float, default=TARGET_S, help="seconds")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    wflp = wflp_command()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "wflp --version": [*wflp, "--version"],
        "wflp list-plugins": [*wflp, "list-plugins"],
    }
    time_command(commands["wflp list-plugins"], 1)  # warm the file cache, check it works
    results = {}
    for label, cmd in commands.items():
        times = time_command(cmd, args.repeat)
        results[label] = {"best_s": min(times), "median_s": statistics.median(times),
                          "runs": args.repeat}
    best = results["wflp list-plugins"]["best_s"]
    ok = best <= args.target
    if args.json:
        print(json.dumps({"command": wflp, "target_s": args.target, "within_target": ok,
                          "results": results}, indent=2))
    else:
        print(f"{'command':<20} {'best':>8} {'median':>8}   (best of {args.repeat})")
        for label, r in results.items():
            print(f"{label:<20} {r['best_s']:>7.3f}s {r['median_s']:>7.3f}s")
        verdict = "within" if ok else "OVER"
        print(f"wflp list-plugins: {best:.3f} s, {verdict} the {args.target:.2f} s target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
