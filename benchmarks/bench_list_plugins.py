"""Wall time of ``wflp list-plugins`` (a fresh process each time): at most 0.5 s, and at most
half of ``python -c "import ase.io"`` measured in the same run.

    python benchmarks/bench_list_plugins.py              # best of 10
    python benchmarks/bench_list_plugins.py -n 20 --json

Each run starts the ``wflp`` console script in a new process, so the time includes
the interpreter start, importing wflp and click, discovering installed plugins
(entry points) and calling their registration hooks. Also timed, for comparison:
``python -c pass`` (the interpreter alone), ``python -c "import wflp"``,
``python -c "import ase.io"`` (what every command that touches configurations pays;
``import wflp`` is lazy and imports neither numpy nor ASE) and ``wflp --version``.
Commands are interleaved (one run of each per round). The best of N is reported (the
least disturbed run); the median shows the spread.

Exit status: 0 if the best ``list-plugins`` time meets both targets, 1 if not.
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
TARGET_RATIO = 0.5  # of `python -c "import ase.io"`


def wflp_command() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m wflp.cli``."""
    script = Path(sys.executable).with_name("wflp")
    if script.exists():
        return [str(script)]
    found = shutil.which("wflp")
    if found:
        return [found]
    return [sys.executable, "-m", "wflp.cli"]


def time_once(cmd: list[str]) -> float:
    """Wall time of one run of cmd (output discarded); raises if it fails."""
    env = dict(os.environ, WFLP_PROGRESS="0")
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): "
                         f"{proc.stderr.decode(errors='replace').strip()}")
    return elapsed


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
        "import wflp": [sys.executable, "-c", "import wflp"],
        "import ase.io": [sys.executable, "-c", "import ase.io"],
        "wflp --version": [*wflp, "--version"],
        "wflp list-plugins": [*wflp, "list-plugins"],
    }
    for cmd in commands.values():  # warm the file cache, check each works
        time_once(cmd)
    times: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(args.repeat):
        for label, cmd in commands.items():
            times[label].append(time_once(cmd))
    results = {label: {"best_s": min(t), "median_s": statistics.median(t), "runs": len(t)}
               for label, t in times.items()}
    best = results["wflp list-plugins"]["best_s"]
    ratio = best / results["import ase.io"]["best_s"]
    ok = best <= args.target and ratio <= TARGET_RATIO
    if args.json:
        print(json.dumps({"command": wflp, "target_s": args.target, "target_ratio": TARGET_RATIO,
                          "ratio_to_import_ase_io": ratio, "within_target": ok,
                          "results": results}, indent=2))
    else:
        print(f"{'command':<20} {'best':>8} {'median':>8}   (best of {args.repeat})")
        for label, r in results.items():
            print(f"{label:<20} {r['best_s']:>7.3f}s {r['median_s']:>7.3f}s")
        verdict = "within" if ok else "OVER"
        print(f"wflp list-plugins: {best:.3f} s = {ratio:.2f} x `import ase.io`; {verdict} the "
              f"targets ({args.target:.2f} s, {TARGET_RATIO:.2f} x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
