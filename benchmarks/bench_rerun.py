"""The cost of rerunning a finished output: wflp's reuse against loading the file with ASE.

    python benchmarks/bench_rerun.py                   # 1e5 configurations, about 6 minutes
    python benchmarks/bench_rerun.py --sizes 1e4 1e5   # several sizes
    python benchmarks/bench_rerun.py --quick           # a smoke run (seconds)
    python benchmarks/bench_rerun.py --save            # also write benchmarks/results/*.json
    python benchmarks/bench_rerun.py --modes "wflp rerun" "sha256 in + out"   # seconds

A script that made an output and is run again should cost little: wflp checks the output's
record (the inputs' fingerprint, the description of what computes it, the output's
digest) and returns the output without computing. Without wflp, a user who wants the
results back reads the file. This benchmark compares the two.

For each size N (untimed): ase.io.write writes N rattled 4-atom fcc Cu cells to
``input.xyz``, then one run of

    map(ConfigSet("input.xyz"), OutputSpec("output.xyz"), Atoms.copy)

makes the output (a cheap operation with an installed function, so making it takes
seconds, not the hours of a real calculator). Then, interleaved in each round:

  wflp rerun            the same map call again: reused (the benchmark checks that
                        the output file and its record are untouched); returns a
                        ConfigSet of the output file.
  wflp rerun + iterate  the same, then every configuration of that ConfigSet read into
                        a list by iterating over it once, as ase.io.read gives them.
  wflp rerun + list()   the same with list(result): list() asks len() first, and the
                        length of a file-backed ConfigSet is counted by reading it.
  ase.io.read           the baseline: ase.io.read("output.xyz", ":"), what a user
                        would otherwise do to "load the results".
  sha256 in + out       the sha256 of the input and output files (wflp's
                        sha256_file): the least that a rerun verifying both against
                        its record has to do.

Each mode runs --repeat times, one of each per round; the modes that take a fraction of a
second (the rerun and the digests) run --quick-repeat times in each round, so that their
best is taken over more samples. The table shows the best time (and the median). Run it
against an older wflp with PYTHONPATH=<checkout>/core to compare (docs/performance.md has
the figures). No target: the rerun should be a small fraction of loading the results.
"""

from __future__ import annotations

import os

os.environ.setdefault("WFLP_PROGRESS", "0")

# ruff: noqa: E402  (the environment is set before wflp is imported)
import argparse
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ase
import ase.io
import numpy as np
from ase import Atoms
from ase.build import bulk
from wflp import ConfigSet, OutputSpec
from wflp.ops import map as wflp_map
from wflp.records import record_path, sha256_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, size  # noqa: E402  (the benchmarks' own folder)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BLOCK = 10_000
MODES = ("wflp rerun", "wflp rerun + iterate", "wflp rerun + list()", "ase.io.read",
         "sha256 in + out")
LOADS = ("wflp rerun + iterate", "wflp rerun + list()", "ase.io.read")
QUICK_MODES = ("wflp rerun", "sha256 in + out")


def write_input(path: Path, n: int, seed: int = 0) -> None:
    """N rattled 4-atom fcc Cu cells (each its own lattice constant), BLOCK at a time."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n:
        block = []
        for _ in range(min(BLOCK, n - done)):
            atoms = bulk("Cu", "fcc", a=rng.uniform(3.50, 3.75), cubic=True)
            atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
            block.append(atoms)
        ase.io.write(path, block, format="extxyz", append=done > 0)
        done += len(block)


def make_output(source: Path, output: Path) -> ConfigSet:
    """The run that is rerun: a map of an installed function (it only copies)."""
    return wflp_map(ConfigSet(source), OutputSpec(output), Atoms.copy)


def state(output: Path) -> tuple:
    """What a rerun that reuses must leave untouched: the output and its record."""
    out, rec = output.stat(), record_path(output).stat()
    return (out.st_ino, out.st_mtime_ns, rec.st_ino, rec.st_mtime_ns)


def run_mode(mode: str, source: Path, output: Path, n: int) -> float:
    """Time one mode once; checks that it did what it claims (outside the timing)."""
    before = state(output)
    gc.collect()  # the previous mode's 1e5 Atoms are not collected in this one's time
    t0 = time.perf_counter()
    if mode == "ase.io.read":
        loaded = ase.io.read(output, ":")
    elif mode == "sha256 in + out":
        sha256_file(source), sha256_file(output)
    else:
        result = make_output(source, output)
        if mode == "wflp rerun + iterate":
            loaded = [atoms for atoms in result]
        elif mode == "wflp rerun + list()":
            loaded = list(result)
    dt = time.perf_counter() - t0
    if mode.startswith("wflp") and state(output) != before:
        raise SystemExit(f"{mode}: the output or its record was rewritten: not a reuse")
    if mode in LOADS and len(loaded) != n:
        raise SystemExit(f"{mode}: {len(loaded)} configurations, expected {n}")
    return dt


def bench_size(n: int, repeat: int, workdir: Path, quick_repeat: int = 1,
               modes: tuple = MODES) -> dict:
    source, output = workdir / f"input-{n}.xyz", workdir / f"output-{n}.xyz"
    t0 = time.perf_counter()
    write_input(source, n)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    make_output(source, output)
    first_s = time.perf_counter() - t0
    record = json.loads(record_path(output).read_text())
    if record["outputs"][0]["configs"] != n:
        raise SystemExit(f"N={n}: the output has {record['outputs'][0]['configs']} configs")
    print(f"N={n:,}: input written in {write_s:.1f} s, output made in {first_s:.1f} s "
          f"(record format {record.get('record_format')})", flush=True)
    runs: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(repeat):
        for mode in modes:
            times = [run_mode(mode, source, output, n)
                     for _ in range(quick_repeat if mode in QUICK_MODES else 1)]
            runs[mode].extend(times)
            print(f"  round {r + 1}/{repeat}  {mode:20s} {min(times):8.3f} s"
                  + (f" (best of {len(times)})" if len(times) > 1 else ""), flush=True)
    sizes = {"input_mb": source.stat().st_size / 1e6, "output_mb": output.stat().st_size / 1e6}
    for f in (source, output, record_path(output)):
        f.unlink()
    return {"n": n, "write_input_s": write_s, "first_run_s": first_s, **sizes,
            "record_format": record.get("record_format"), "runs": runs,
            "best_s": {m: min(ts) for m, ts in runs.items()}}


def report(rows: list[dict], info: dict, repeat: int) -> list[str]:
    lines = [f"machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, "
             f"ase {info['ase']}, numpy {info['numpy']}, wflp {info['wflp']} "
             f"({info['commit']}, {info['wflp_path']})",
             f"load average before: {', '.join(f'{x:.2f}' for x in info['loadavg_before'])}; "
             f"after: {', '.join(f'{x:.2f}' for x in info['loadavg_after'])}",
             f"time = best of {repeat} interleaved rounds (median beside it; the rerun and "
             f"sha256 rows: of {repeat} x {info['quick_repeat']} runs); ratio = time / "
             "ase.io.read of the output", "",
             "| configurations | output (MB) | mode | time (s) | median (s) | us/config "
             "| vs ase.io.read |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        base = row["best_s"].get("ase.io.read")
        count, mb = f"{row['n']:,}", f"{row['output_mb']:.1f}"
        for mode in row["runs"]:
            best = row["best_s"][mode]
            ratio = f"{best / base:.3f}" if base else "-"
            med = statistics.median(row["runs"][mode])
            lines.append(f"| {count} | {mb} | {mode} | {best:.3f} | {med:.3f} | "
                         f"{best / row['n'] * 1e6:.1f} | {ratio} |")
            count = mb = ""
    lines.append("")
    for row in rows:
        lines.append(f"N={row['n']:,}: first run (made the output) {row['first_run_s']:.1f} s; "
                     f"record format {row['record_format']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=size, nargs="+", default=None,
                        help="configuration counts (default: 1e5; 1e3 with --quick)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (best is reported)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        metavar="MODE", help="the modes to run (default: all; quote the "
                        "names, e.g. --modes 'wflp rerun' 'ase.io.read')")
    parser.add_argument("--quick-repeat", type=int, default=10,
                        help="runs of the sub-second modes in each round (default 10)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1e3 configurations (unless --sizes), 2 rounds")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the files go (default: a temporary folder)")
    parser.add_argument("--save", action="store_true",
                        help=f"also write a JSON file under {RESULTS_DIR}")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.quick_repeat < 1:
        parser.error("--repeat and --quick-repeat must be at least 1")
    if args.quick:
        args.sizes, args.repeat = args.sizes or [1000], 2
    args.sizes = args.sizes or [100_000]
    info = machine()
    info["quick_repeat"] = args.quick_repeat
    workdir = Path(tempfile.mkdtemp(prefix="wflp-rerun-", dir=args.workdir))
    try:
        modes = tuple(m for m in MODES if m in args.modes)
        rows = [bench_size(n, args.repeat, workdir, args.quick_repeat, modes)
                for n in args.sizes]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_after"] = list(os.getloadavg())
    lines = report(rows, info, args.repeat)
    print()
    print("\n".join(lines))
    if args.save:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"bench_rerun-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps({"machine": info, "argv": sys.argv[1:], "rows": rows},
                                   indent=2))
        print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
