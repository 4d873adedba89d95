"""Peak memory of a file-to-file wflp operation: does it stay flat as the input grows?

    python benchmarks/bench_memory.py                         # 1e5 and 1e6 configurations
    python benchmarks/bench_memory.py --sizes 1e4 1e5         # quicker
    python benchmarks/bench_memory.py --processes 2 --save    # worker pool; keep a JSON

For each size N it writes an extxyz file of N rattled 4-atom Cu cells (streamed to
disk in blocks, never held in memory), then runs, in a fresh child process,

    map(ConfigSet(input.xyz), OutputSpec(output.xyz), touch)

where ``touch`` only sets an info key: a cheap operation, so the run measures the
engine (reading, chunking, chunk files, assembly, record) rather than a calculator.
The child reports its own peak resident set size (getrusage ru_maxrss) before and
after the run, and, with --processes > 1, the largest worker's peak.

Target: flat, i.e. the peak for 1e6 is about the peak for 1e5 (ratio ~1.0).
The 1e6 case takes several minutes and about 0.5 GB of disk per file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BLOCK = 10_000


def write_input(path: Path, n: int, seed: int = 0) -> None:
    """Stream n rattled 4-atom fcc Cu cells to an extxyz file, BLOCK frames at a time."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    with open(path, "w") as fd:
        done = 0
        while done < n:
            m = min(BLOCK, n - done)
            lattice = rng.uniform(3.50, 3.75, m)
            pos = base[None] * lattice[:, None, None] + rng.normal(0, 0.05, (m, 4, 3))
            parts = []
            for i in range(m):
                a = lattice[i]
                parts.append(
                    f'4\nLattice="{a:.8f} 0.0 0.0 0.0 {a:.8f} 0.0 0.0 0.0 {a:.8f}" '
                    f'Properties=species:S:1:pos:R:3 config_id={done + i} pbc="T T T"\n')
                for x, y, z in pos[i]:
                    parts.append(f"Cu {x:16.8f} {y:16.8f} {z:16.8f}\n")
            fd.write("".join(parts))
            done += m


def touch(atoms):
    atoms.info["touched"] = True
    return atoms


def child(args: argparse.Namespace) -> int:
    """Run the operation in this (fresh) process and print one JSON line about it."""
    import resource

    os.environ.setdefault("WFLP_PROGRESS", "0")
    from wflp import AutoparaInfo, ConfigSet, OutputSpec, shutdown_pool
    from wflp.ops import map as wflp_map
    from wflp.records import read_record, record_path

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info = AutoparaInfo(num_python_subprocesses=args.processes,
                        num_inputs_per_python_subprocess=args.chunk)
    t0 = time.perf_counter()
    wflp_map(ConfigSet(args.input), OutputSpec(args.output), touch, autopara_info=info)
    wall = time.perf_counter() - t0
    shutdown_pool()  # workers are reaped, so RUSAGE_CHILDREN covers them
    record = read_record(record_path(args.output))
    print(json.dumps({
        "wall_s": wall,
        "rss_start_kib": rss_start,
        "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "workers_peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "configs_out": sum(o["configs"] for o in record.outputs),
    }))
    return 0


def measure(n: int, workdir: Path, processes: int, chunk: int | None) -> dict:
    src = workdir / f"in-{n}.xyz"
    dst = workdir / f"out-{n}.xyz"
    t0 = time.perf_counter()
    write_input(src, n)
    gen = time.perf_counter() - t0
    cmd = [sys.executable, __file__, "--child", "--input", str(src), "--output", str(dst),
           "--processes", str(processes)]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"the child run for N={n} failed (exit {proc.returncode})")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if res["configs_out"] != n:
        raise SystemExit(f"N={n}: the output has {res['configs_out']} configurations")
    res.update(n=n, input_bytes=src.stat().st_size, generate_s=gen)
    for f in workdir.iterdir():
        if f.is_file():
            f.unlink()
    return res


def size(text: str) -> int:
    value = float(text)
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"not a whole number >= 1: {text}")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=size, nargs="+", default=[100_000, 1_000_000],
                        help="configuration counts (default: 1e5 1e6)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    parser.add_argument("--chunk", type=int, default=None,
                        help="num_inputs_per_python_subprocess (default: wflp's)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the input/output files go (default: a temp folder)")
    parser.add_argument("--save", action="store_true",
                        help=f"also write a JSON file under {RESULTS_DIR}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    workdir = Path(tempfile.mkdtemp(prefix="wflp-mem-", dir=args.workdir))
    rows = []
    try:
        for n in args.sizes:
            print(f"N={n:,}: writing the input and running map (1 child process"
                  f"{f', {args.processes} workers' if args.processes > 1 else ''}) ...",
                  flush=True)
            rows.append(measure(n, workdir, args.processes, args.chunk))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    chunk = f"{args.chunk} per chunk" if args.chunk else "wflp's default chunking"
    print()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"map(touch) file -> file, {args.processes} process(es), {chunk}")
    print()
    print("| configurations | input (MB) | wall (s) | us/config | RSS after imports (MiB) "
          "| peak RSS (MiB) | growth in run (MiB) | peak worker RSS (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        workers = f"{r['workers_peak_kib'] / 1024:.1f}" if args.processes > 1 else "-"
        print(f"| {r['n']:,} | {r['input_bytes'] / 1e6:.1f} | {r['wall_s']:.1f} | "
              f"{r['wall_s'] / r['n'] * 1e6:.0f} | {r['rss_start_kib'] / 1024:.1f} | "
              f"{r['rss_peak_kib'] / 1024:.1f} | "
              f"{(r['rss_peak_kib'] - r['rss_start_kib']) / 1024:.1f} | {workers} |")
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        ratio = last["rss_peak_kib"] / first["rss_peak_kib"]
        growth0 = (first["rss_peak_kib"] - first["rss_start_kib"]) / 1024
        growth1 = (last["rss_peak_kib"] - last["rss_start_kib"]) / 1024
        verdict = "MET" if ratio <= 1.10 else "MISSED"
        print()
        print(f"peak RSS ratio N={last['n']:,} / N={first['n']:,}: {ratio:.2f} "
              f"(target: flat, <= 1.10)  {verdict}; growth during the run "
              f"{growth0:.1f} -> {growth1:.1f} MiB for {last['n'] / first['n']:.0f}x the input")
    if args.save:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"bench_memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps({"argv": sys.argv[1:], "processes": args.processes,
                                    "chunk": args.chunk, "rows": rows}, indent=2))
        print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
