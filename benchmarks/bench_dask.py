"""wflp ``calculate`` on Dask (wflp-dask, a LocalCluster of 2 workers) against the process
pool (2 workers) and a plain ASE loop, at about 3 ms and 30 ms per item; and the cost of one
chunk on each executor.

    python benchmarks/bench_dask.py              # a few minutes on 2 cores
    python benchmarks/bench_dask.py --quick      # a smoke run

Items: rattled snapshots of one fcc Cu cell, EMT, energy, forces and stress. The cell is
chosen here, by timing the plain loop on a few sizes, as the one nearest each target time
per item (the machine and its load decide the sizes: they are printed). Both executors are
started (and warmed by one small run) before the timed rounds; their start-up is reported
apart. Modes run interleaved, --repeat rounds; the table has the best wall time of each.

Per-chunk overhead: a map that does nothing, over --noop items in chunks of one, so each
chunk costs only its trip: the driver cuts and pickles the task, the executor ships it to
a worker and the result back. Reported as wall time per chunk with 2 workers.

Target (issue 19): Dask >= 0.9x the pool's speed at 30 ms per item.
"""

# ruff: noqa: E402  (the environment is set before numpy is imported)
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("WFLP_PROGRESS", "0")

import argparse
import time

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

SIZES = [(1, 1, 1), (1, 1, 2), (2, 2, 1), (2, 2, 2), (3, 3, 2), (3, 3, 3), (4, 4, 3)]


def snapshots(repeat: tuple, n: int, seed: int = 0) -> list:
    base = bulk("Cu", "fcc", a=3.6, cubic=True) * repeat
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        at = base.copy()
        at.positions += rng.normal(scale=0.05, size=at.positions.shape)
        out.append(at)
    return out


def plain_loop(items: list) -> float:
    """One EMT over all items, results copied into info/arrays: seconds."""
    t0 = time.perf_counter()
    calc = EMT()
    for at in items:
        at = at.copy()
        at.calc = calc
        at.info["EMT_energy"] = at.get_potential_energy()
        at.arrays["EMT_forces"] = at.get_forces()
        at.info["EMT_stress"] = at.get_stress()
    return time.perf_counter() - t0


def per_item_ms(repeat: tuple) -> float:
    items = snapshots(repeat, 12, seed=99)
    return min(plain_loop(items) for _ in range(2)) / len(items) * 1000


def choose_cell(target_ms: float, timed: dict) -> tuple:
    for size in SIZES:
        if size not in timed:
            timed[size] = per_item_ms(size)
        if timed[size] >= target_ms:
            break
    return min(timed, key=lambda s: abs(np.log(timed[s] / target_ms)))


def wflp_run(items: list, executor: str) -> float:
    from wflp import AutoparaInfo, OutputSpec
    from wflp.ops import calculate

    t0 = time.perf_counter()
    got = calculate(items, OutputSpec(), calculator=EMT(), prefix="EMT_",
                    autopara_info=AutoparaInfo(num_python_subprocesses=2, executor=executor))
    assert len(got) == len(items)
    return time.perf_counter() - t0


def nothing(at):
    return at


def noop_run(n: int, executor: str) -> float:
    from wflp import AutoparaInfo, OutputSpec
    from wflp.ops import map as wmap

    items = snapshots((1, 1, 1), n)
    t0 = time.perf_counter()
    wmap(items, OutputSpec(), nothing,
         autopara_info=AutoparaInfo(num_python_subprocesses=2, executor=executor,
                                    num_inputs_per_python_subprocess=1))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="plain-loop seconds of work per workload")
    parser.add_argument("--noop", type=int, default=400, help="chunks of the overhead run")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.seconds, args.noop = 1, 1.5, 60

    for executor in ("pool", "dask"):  # start both, outside the timed rounds
        t0 = time.perf_counter()
        wflp_run(snapshots((1, 1, 1), 8), executor)
        print(f"start-up of {executor} (2 workers, first small run): "
              f"{time.perf_counter() - t0:.2f} s")

    timed: dict = {}
    rows = []
    for target in (3.0, 30.0):
        cell = choose_cell(target, timed)
        n = max(20, int(args.seconds * 1000 / timed[cell]))
        items = snapshots(cell, n)
        best = {"plain": float("inf"), "pool": float("inf"), "dask": float("inf")}
        for _ in range(args.repeat):
            best["plain"] = min(best["plain"], plain_loop(items))
            for executor in ("pool", "dask"):
                best[executor] = min(best[executor], wflp_run(items, executor))
        rows.append((target, cell, timed[cell], n, best))

    print()
    print("| target | cell (atoms) | ms/item (plain) | items | plain s | pool 2w s | dask 2w s "
          "| pool vs plain | dask vs plain | dask vs pool |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for target, cell, ms, n, best in rows:
        atoms = 4 * int(np.prod(cell))
        print(f"| {target:g} ms | {'x'.join(map(str, cell))} ({atoms}) | {ms:.1f} | {n} "
              f"| {best['plain']:.2f} | {best['pool']:.2f} | {best['dask']:.2f} "
              f"| {best['plain'] / best['pool']:.2f}x | {best['plain'] / best['dask']:.2f}x "
              f"| {best['pool'] / best['dask']:.2f}x |")

    print()
    print(f"per-chunk cost, {args.noop} chunks of one item that does nothing, 2 workers:")
    for executor in ("pool", "dask"):
        best = min(noop_run(args.noop, executor) for _ in range(args.repeat))
        print(f"  {executor}: {best / args.noop * 1000:.2f} ms per chunk "
              f"({args.noop / best:.0f} chunks/s)")


if __name__ == "__main__":
    main()
