"""CUR timings: the deterministic choice on its own, and select_cur file -> file.

    python benchmarks/bench_cur.py                       # both parts
    python benchmarks/bench_cur.py --skip-files          # the choice only
    python benchmarks/bench_cur.py --configs 20000       # a smaller file run

Part 1 times ``wflp.ops.selectors.cur`` choosing 130 of 10 000 rows of length 855 (a
SOAP vector's length for 3 species), on descriptor-like rows (positive, clustered, a
decaying spectrum) and on Gaussian rows (a flat spectrum, the slowest for Lanczos).
Part 2 runs ``select_cur`` over an extended-XYZ file of N configurations with
descriptors in info (reading the rows with 2 worker processes, choosing, writing).
Targets (issue 17): part 1 <= 2 s on descriptor-like rows, part 2 <= 30 s for 1e5.
Part 1 also prints how well the chosen rows C span all rows X, ||X - X C^+ C||_F /
||X||_F (smaller is better: a faster choice must not choose worse), and the machine's
load before the run.
Prints a Markdown table; times are the best of --rounds. --ase-baseline adds one timing of
reading the same rows with plain ASE (``ase.io.iread``, then ``info["soap"]``), which is
what the selection's read pass did before it read comment lines (about 45 s at 1e5).

    python benchmarks/bench_cur.py --skip-choice --rounds 3 --ase-baseline
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def descriptor_like(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    decay = np.arange(1, d + 1, dtype=float)
    centres = rng.normal(size=(40, d)) / decay
    rows = centres[rng.integers(0, 40, size=n)] + 0.3 * rng.normal(size=(n, d)) / decay ** 1.5
    return rows + 1.0


def best_of(rounds: int, func) -> tuple[float, object]:
    """The shortest of *rounds* calls, and what the last call returned."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def reconstruction_error(rows: np.ndarray, chosen: list) -> float:
    """||X - X P||_F / ||X||_F, with P the projector on the span of the chosen rows."""
    span, _ = np.linalg.qr(rows[chosen].T)
    return float(np.linalg.norm(rows - (rows @ span) @ span.T) / np.linalg.norm(rows))


def write_pool(path: Path, n: int, d: int) -> None:
    rows = descriptor_like(n, d, seed=1)
    atoms = "Cu 0.0 0.0 0.0\nCu 1.8 1.8 0.0\nCu 1.8 0.0 1.8\nCu 0.0 1.8 1.8\n"
    with open(path, "w") as fd:
        for row in rows:
            values = " ".join(repr(float(v)) for v in row)
            fd.write(f'4\nProperties=species:S:1:pos:R:3 soap="{values}"\n{atoms}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--configs", type=int, default=100_000)
    parser.add_argument("--file-dim", type=int, default=50, help="descriptor length, part 2")
    parser.add_argument("--skip-files", action="store_true")
    parser.add_argument("--skip-choice", action="store_true", help="part 2 only")
    parser.add_argument("--ase-baseline", action="store_true",
                        help="part 2: also time reading the rows with plain ase.io.iread")
    args = parser.parse_args()

    from bench_common import machine
    from wflp.ops.selectors import cur

    host = machine()
    print(f"<!-- {host['cpu']}, {host['cores']} cores, commit {host['commit']}, load average "
          f"{' '.join(f'{x:.2f}' for x in host['loadavg_before'])} -->")
    print("| run | rows x length | picks | seconds | reconstruction error |")
    print("| --- | --- | --- | --- | --- |")
    for kind, rows in (("descriptor-like", descriptor_like(10_000, 855)),
                       ("gaussian", np.random.default_rng(0).normal(size=(10_000, 855)))):
        if args.skip_choice:
            break
        seconds, chosen = best_of(args.rounds, lambda rows=rows: cur(rows, 130))
        print(f"| cur deterministic, {kind} | 10000 x 855 | 130 | {seconds:.2f} "
              f"| {reconstruction_error(rows, chosen):.3e} |", flush=True)
    if args.skip_files:
        return

    from wflp import AutoparaInfo, ConfigSet, OutputSpec
    from wflp.ops import select_cur

    os.environ.setdefault("WFLP_PROGRESS", "0")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pool.xyz"
        write_pool(src, args.configs, args.file_dim)
        info = AutoparaInfo(num_python_subprocesses=2)
        times = []
        for i in range(args.rounds):  # a new output each round: nothing is reused
            out = Path(tmp) / f"sel{i}.xyz"
            start = time.perf_counter()
            select_cur(ConfigSet(src), OutputSpec(out), n_select=100, autopara_info=info)
            times.append(time.perf_counter() - start)
        rounds = ", ".join(f"{t:.2f}" for t in times)
        print(f"| select_cur file -> file, 2 processes (best of: {rounds}) | {args.configs} x "
              f"{args.file_dim} | 100 | {min(times):.2f} | - |", flush=True)
        if args.ase_baseline:
            import ase.io

            start = time.perf_counter()
            rows = np.array([atoms.info["soap"] for atoms in ase.io.iread(src, index=":")])
            seconds = time.perf_counter() - start
            print(f"| plain ASE: ase.io.iread + info['soap'] (rows only) | {rows.shape[0]} x "
                  f"{rows.shape[1]} | - | {seconds:.2f} | - |", flush=True)


if __name__ == "__main__":
    main()
