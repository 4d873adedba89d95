"""wflp quickstart: evaluate rattled Cu cells with EMT in parallel, then select the low-energy ones.

    python examples/quickstart.py            # or: bash scripts/demo.sh

What it does:
1. builds 200 rattled, strained fcc Cu cells (160 of 4 atoms, 40 of 32 atoms; seeded,
   so every run builds the same ones) and writes them to configs.xyz;
2. evaluates them with ASE's EMT calculator in 2 worker processes (``calculate``),
   writing evaluated.xyz plus its record evaluated.xyz.record.json;
3. keeps those below an energy threshold (``select_by_bool``) in low_energy.xyz.

All files go to examples/quickstart-output/. Run it again: the records match, so
both steps reuse their stored outputs instead of recomputing. With another
--threshold only the selection is redone.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write
from wflp import AutoparaInfo, ConfigSet, OutputSpec
from wflp.ops import calculate, select_by_bool
from wflp.records import record_path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "quickstart-output"


def build_configs(n_small: int = 160, n_large: int = 40, seed: int = 42) -> list:
    """Strained (a = 3.50-3.75 A) and rattled (0.05 A) fcc Cu: 4-atom cells, 32-atom supercells."""
    rng = np.random.default_rng(seed)
    configs = []
    for i in range(n_small + n_large):
        atoms = bulk("Cu", "fcc", a=rng.uniform(3.50, 3.75), cubic=True)
        if i >= n_small:
            atoms = atoms * (2, 2, 2)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms.info["config_id"] = i
        configs.append(atoms)
    return configs


def is_low_energy(atoms, prefix: str, max_energy_per_atom: float) -> bool:
    return atoms.info[f"{prefix}energy"] / len(atoms) < max_energy_per_atom


def finished_at(path: Path) -> str | None:
    """When the record beside *path* says it was made (None if there is none)."""
    rec = record_path(path)
    if not rec.exists():
        return None
    return json.loads(rec.read_text()).get("finished")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--threshold", type=float, default=0.03,
                        help="keep configurations below this EMT energy per atom (eV)")
    args = parser.parse_args(argv)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    configs_file = out / "configs.xyz"
    evaluated_file = out / "evaluated.xyz"
    selected_file = out / "low_energy.xyz"

    # 1. inputs: the same seed writes the same bytes, so the records below still match
    configs = build_configs()
    write(configs_file, configs, format="extxyz")

    before = {f: finished_at(f) for f in (evaluated_file, selected_file)}
    t0 = time.perf_counter()

    # 2. evaluate in parallel; results go to info["EMT_energy"], arrays["EMT_forces"], ...
    evaluated = calculate(
        ConfigSet(configs_file), OutputSpec(evaluated_file),
        calculator=EMT(), prefix="EMT_",
        autopara_info=AutoparaInfo(num_python_subprocesses=args.processes),
    )
    t1 = time.perf_counter()

    # 3. select; the threshold is a keyword of a partial, so it is part of the record.
    # overwrite=True: a run with another --threshold replaces low_energy.xyz (without it,
    # a record that does not match is an error); a run with the same one reuses it.
    keep = functools.partial(is_low_energy, prefix="EMT_",
                             max_energy_per_atom=args.threshold)
    low = select_by_bool(evaluated, OutputSpec(selected_file, overwrite=True), keep)
    t2 = time.perf_counter()

    # summary
    all_atoms = list(evaluated)
    kept = list(low)
    e_all = np.array([a.info["EMT_energy"] / len(a) for a in all_atoms])
    e_low = np.array([a.info["EMT_energy"] / len(a) for a in kept])
    sizes = sorted({len(a) for a in all_atoms})
    failed = sum(bool(a.info.get("EMT_calc_failed")) for a in all_atoms)

    def how(path: Path, seconds: float) -> str:
        if before[path] is not None and before[path] == finished_at(path):
            return f"reused from an earlier run (its record matches), {seconds:.2f} s"
        return f"computed in {seconds:.2f} s"

    print("wflp quickstart")
    print(f"  inputs     {len(all_atoms)} rattled Cu cells ({', '.join(map(str, sizes))} atoms)"
          f" -> {configs_file}")
    print(f"  calculate  EMT, {args.processes} processes: {how(evaluated_file, t1 - t0)}")
    print(f"             {len(all_atoms)} evaluated ({failed} failed) -> {evaluated_file}")
    print(f"             energy per atom {e_all.min():.4f} .. {e_all.max():.4f} eV"
          f" (mean {e_all.mean():.4f})")
    print(f"  select     E/atom < {args.threshold} eV: {how(selected_file, t2 - t1)}")
    if len(kept):
        print(f"             {len(kept)} of {len(all_atoms)} kept -> {selected_file}")
        print(f"             energy per atom {e_low.min():.4f} .. {e_low.max():.4f} eV")
    else:
        print(f"             none kept -> {selected_file}")
    print(f"  records    {record_path(evaluated_file).name}, {record_path(selected_file).name}"
          " (what made each file: operation, parameters, input digest, versions, host)")
    print("  rerun      running this again reuses both outputs through their records;")
    print("             with another --threshold only the selection is redone (its OutputSpec")
    print("             has overwrite=True; without it a record mismatch is an error)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
