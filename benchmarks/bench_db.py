"""`wflp db collect` against a plain ase.db write loop of the same rows, same run.

    python benchmarks/bench_db.py              # 1e5 configurations, 3 rounds (minutes)
    python benchmarks/bench_db.py --quick      # 2e3 configurations, 2 rounds (seconds)
    python benchmarks/bench_db.py --sizes 1e4 1e5 --save

Setup (untimed): N rattled 4-atom Cu cells, each with the results of a calculator under the
prefix ``xtb_`` (an energy in info, forces in arrays, as a calculate would leave them) and
two scalar info keys, go through ``wflp.map`` (an installed copy function) so that the file
is a wflp output with its record.

Timed, interleaved in each round, each into a new SQLite file:

  ase.db loop     what a user writes without wflp: ``ase.io.iread`` of the output, each
                  configuration's energy and forces put on a SinglePointCalculator, its
                  scalar info as key-value pairs, the output path and index as keys, all
                  written by ``db.write`` inside one ``with db:`` transaction.
  wflp collect    ``wflp.db.collect([output], db, calc_prefix="xtb_")``: the same rows
                  plus the record's checks (the output's sha256 against its record), the
                  record in the first row's data and the key descriptions in the metadata.

The benchmark checks that both databases have N rows with the same energies. Target
(issue 16): wflp collect writes >= 0.8x the rows per second of the plain loop at 1e5.
"""

from __future__ import annotations

import os

os.environ.setdefault("WFLP_PROGRESS", "0")

# ruff: noqa: E402  (the environment is set before wflp is imported)
import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ase
import ase.db
import ase.io
import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from wflp import ConfigSet, OutputSpec
from wflp.db import collect
from wflp.ops import map as wflp_map

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, size  # noqa: E402  (the benchmarks' own folder)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BLOCK = 5000
PREFIX = "xtb_"


def write_input(path: Path, n: int, seed: int = 0) -> None:
    """N rattled 4-atom Cu cells with xtb_energy, xtb_forces and two scalar info keys."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n:
        block = []
        for _ in range(min(BLOCK, n - done)):
            atoms = bulk("Cu", "fcc", a=rng.uniform(3.50, 3.75), cubic=True)
            atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
            atoms.info[f"{PREFIX}energy"] = float(rng.normal(-10.0, 0.5))
            atoms.arrays[f"{PREFIX}forces"] = rng.normal(0.0, 0.3, (len(atoms), 3))
            atoms.info["config_type"] = "rattled"
            atoms.info["md_temperature_K"] = float(rng.uniform(100, 900))
            block.append(atoms)
        ase.io.write(path, block, format="extxyz", append=done > 0)
        done += len(block)


def plain_loop(output: Path, db_path: Path) -> int:
    """The baseline: read the output with ASE and write each row, one transaction."""
    db = ase.db.connect(str(db_path), use_lock_file=False)
    count = 0
    with db:
        for index, atoms in enumerate(ase.io.iread(output, format="extxyz")):
            row = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                        pbc=atoms.pbc)
            row.calc = SinglePointCalculator(
                row, energy=atoms.info[f"{PREFIX}energy"],
                forces=atoms.arrays[f"{PREFIX}forces"])
            kvp = {"config_type": atoms.info["config_type"],
                   "md_temperature_K": atoms.info["md_temperature_K"],
                   "output": str(output), "index": index}
            db.change_count = 0   # keep it one transaction, as collect does
            db.write(row, key_value_pairs=kvp)
            count += 1
    return count


def wflp_collect(output: Path, db_path: Path) -> int:
    report = collect([output], db_path, calc_prefix=PREFIX)
    if report.left_out or len(report.collected) != 1:
        raise SystemExit(f"collect left the output out: {report.left_out}")
    return report.rows


MODES = {"ase.db loop": plain_loop, "wflp collect": wflp_collect}


def energies(db_path: Path) -> np.ndarray:
    db = ase.db.connect(str(db_path), use_lock_file=False)
    return np.array([row.energy for row in db.select(sort="id")])


def bench_size(n: int, repeat: int, workdir: Path) -> dict:
    source, output = workdir / f"input-{n}.xyz", workdir / f"output-{n}.xyz"
    write_input(source, n)
    wflp_map(ConfigSet(source), OutputSpec(output), Atoms.copy)
    runs: dict[str, list[float]] = {mode: [] for mode in MODES}
    reference = None
    for round_ in range(repeat):
        for mode, fn in MODES.items():
            db_path = workdir / f"{mode.replace(' ', '-')}-{round_}.db"
            start = time.perf_counter()
            rows = fn(output, db_path)
            runs[mode].append(time.perf_counter() - start)
            if rows != n:
                raise SystemExit(f"{mode} wrote {rows} rows, expected {n}")
            got = energies(db_path)
            if reference is None:
                reference = got
            elif not np.allclose(got, reference):
                raise SystemExit(f"{mode}: energies differ from the other mode's")
            db_path.unlink()
        print(f"  N={n:,} round {round_ + 1}: " + ", ".join(
            f"{m} {runs[m][-1]:.2f} s" for m in MODES), flush=True)
    best = {m: min(t) for m, t in runs.items()}
    return {"n": n, "runs": runs, "best_s": best,
            "output_mb": output.stat().st_size / 1e6,
            "ratio_rows_per_s": best["ase.db loop"] / best["wflp collect"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=size, nargs="+", default=None,
                        help="configuration counts (default 1e5; 2e3 with --quick)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (best is reported)")
    parser.add_argument("--quick", action="store_true", help="2e3 configurations, 2 rounds")
    parser.add_argument("--save", action="store_true",
                        help=f"also write a JSON file under {RESULTS_DIR}")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.quick:
        args.sizes, args.repeat = args.sizes or [2000], 2
    args.sizes = args.sizes or [100_000]
    info = machine()
    workdir = Path(tempfile.mkdtemp(prefix="wflp-bench-db-"))
    try:
        rows = [bench_size(n, args.repeat, workdir) for n in args.sizes]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_after"] = list(os.getloadavg())
    print(f"\nmachine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, "
          f"ase {info['ase']}, wflp {info['wflp']}; load {info['loadavg_before'][0]:.2f} "
          f"before, {info['loadavg_after'][0]:.2f} after")
    print(f"best of {args.repeat} interleaved rounds (median beside it); ratio = wflp "
          "collect's rows per second / the plain loop's (target >= 0.8)\n")
    print("| configurations | mode | time (s) | median (s) | rows/s | ratio |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        for mode in MODES:
            best = row["best_s"][mode]
            ratio = f"{row['ratio_rows_per_s']:.2f}" if mode == "wflp collect" else ""
            print(f"| {row['n']:,} | {mode} | {best:.2f} | "
                  f"{statistics.median(row['runs'][mode]):.2f} | {row['n'] / best:,.0f} | "
                  f"{ratio} |")
    if args.save:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"bench_db-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps({"machine": info, "argv": sys.argv[1:], "rows": rows},
                                   indent=2))
        print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
