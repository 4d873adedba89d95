"""A machine-learned potential from SMILES strings, the wfl paper's workflow, end to end.

    python examples/mlip_from_smiles.py               # GAP (or: bash scripts/demo.sh)
    python examples/mlip_from_smiles.py --fitter ace  # linear ACE instead (wflp-ace)
    python examples/mlip_from_smiles.py --fitter mace # MACE (wflp-mace, needs torch)

GFN2-xTB (wflp-xtb) is the reference method throughout:

 1. isolated H, C and O atoms, evaluated with xTB (their energies are the E0s);
 2. five small molecules from SMILES (wflp-smiles, RDKit);
 3. Langevin molecular dynamics with xTB at 300, 600 and 1000 K;
 4. SOAP descriptors of every MD frame (wflp-soap);
 5. leverage-score CUR selection of 130 diverse frames, split at random (seeded) into
    100 for training and 30 for testing;
 6. a fit (GAP by default) to the training frames and the isolated atoms;
 7. the model evaluated on the training set, the test set and the isolated atoms, in
    worker processes;
 8. an error table (wflp.analysis) and parity plots (wflp-plots).

Every intermediate is a readable extended-XYZ file (the model a folder) with a record
beside it, all in examples/mlip-output/; a second run reuses every step. Steps 1-5 are
shared by all fitters, so --fitter ace after a GAP run only fits and evaluates.
--small is a reduced size for tests (fewer MD steps, 40 + 15 frames).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from wflp import AutoparaInfo, ConfigSet, OutputSpec
from wflp.analysis import error_report, isolated_energies
from wflp.ops import OutputModel, calculate, fit, isolated_atoms, md, select_by_index, select_cur
from wflp.plugins import get_descriptor, get_generator
from wflp.records.query import load as load_record

HERE = Path(__file__).resolve().parent
SMILES = ["CCO", "CC(=O)O", "CC(C)=O", "c1ccoc1", "OCCO"]  # ethanol, acetic acid, acetone,
TEMPERATURES = (300, 600, 1000)                           # furan, ethylene glycol
SEED = 20230301

# The fitters' parameters: small models that fit 100 molecules in seconds (MACE: a minute).
FITTERS = {
    "gap": {
        "descriptors": [
            {"type": "distance_2b", "cutoff": 5.0, "covariance_type": "ard_se", "delta": 1.0,
             "theta_uniform": 1.0, "n_sparse": 15, "sparse_method": "uniform"},
            {"type": "soap", "l_max": 4, "n_max": 6, "cutoff": 4.0, "atom_sigma": 0.5,
             "delta": 0.2, "covariance_type": "dot_product", "zeta": 4, "n_sparse": 200,
             "sparse_method": "cur_points"}],
        "default_sigma": [0.002, 0.05, 0.05, 0.0],
        "e0": "isolated",
        "config_type_sigma": {"isolated_atom": [1e-4, 0.05, 0.05, 0.0]},
        "ref_prefix": "xtb_"},
    "ace": {"cutoff": 5.0, "nradmax_by_orders": [8, 3, 2], "lmax_by_orders": [0, 2, 1],
            "e0": "isolated", "ref_prefix": "xtb_"},
    "mace": {"max_num_epochs": 30, "e0": "isolated", "ref_prefix": "xtb_"},
}
SMALL = {"gap": {"descriptors": [
    {"type": "distance_2b", "cutoff": 5.0, "covariance_type": "ard_se", "delta": 1.0,
     "theta_uniform": 1.0, "n_sparse": 10, "sparse_method": "uniform"},
    {"type": "soap", "l_max": 3, "n_max": 4, "cutoff": 4.0, "atom_sigma": 0.5, "delta": 0.2,
     "covariance_type": "dot_product", "zeta": 4, "n_sparse": 60,
     "sparse_method": "cur_points"}]},
    "mace": {"max_num_epochs": 5}}


def run_signature(path: Path) -> object:
    """What the record of an output (a file, or a model folder) says about the run that
    made it: unchanged after a step means the step reused its output."""
    record, _why, _format = load_record(path)
    return None if record is None else record.run


class Steps:
    """Runs the steps, timing each and telling whether it computed or reused."""

    def __init__(self) -> None:
        self.rows: list = []
        self.start = time.perf_counter()

    def __call__(self, name: str, outputs: list, func, *args, **kwargs):
        before = [run_signature(p) for p in outputs]
        t0 = time.perf_counter()
        result = func(*args, **kwargs)
        seconds = time.perf_counter() - t0
        reused = all(b is not None and b == run_signature(p) for b, p in zip(before, outputs))
        self.rows.append((name, reused, seconds, outputs))
        print(f"  {name:<34} {'reused' if reused else 'done':>6} {seconds:6.1f} s   "
              f"{', '.join(p.name for p in outputs)}", flush=True)
        return result

    @property
    def all_reused(self) -> bool:
        return all(reused for _name, reused, _s, _o in self.rows)


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fitter", choices=sorted(FITTERS), default="gap")
    parser.add_argument("--out", type=Path, default=HERE / "mlip-output", help="output folder")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--executor", default=None,
                        help="where the worker processes run: pool (default), or an "
                             "executor a plugin registers, e.g. dask (wflp-dask)")
    parser.add_argument("--small", action="store_true",
                        help="reduced size for tests: 100 MD steps, 40 + 15 frames")
    args = parser.parse_args(argv)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    pool = AutoparaInfo(num_python_subprocesses=args.processes, executor=args.executor)
    n_steps, n_train, n_test = (100, 40, 15) if args.small else (200, 100, 30)
    xtb = ("xtb", [], {"method": "GFN2-xTB"})
    fitter = args.fitter
    params = {**FITTERS[fitter], **(SMALL.get(fitter, {}) if args.small else {})}
    steps = Steps()
    print(f"wflp: a {fitter.upper()} potential from SMILES, GFN2-xTB reference "
          f"({args.processes} processes) -> {out}")

    # 1. isolated atoms, evaluated with the reference: the E0s
    iso = steps("1 isolated atoms, xTB", [out / "01_isolated.xtb.xyz"], calculate,
                isolated_atoms(None, OutputSpec(out / "01_isolated.xyz"), elements=["H", "C",
                                                                                   "O"]),
                OutputSpec(out / "01_isolated.xtb.xyz"), calculator=xtb, prefix="xtb_")

    # 2. molecules from SMILES (RDKit: ETKDG + MMFF, seeded)
    smiles = get_generator("smiles").load()
    mols = steps("2 molecules from SMILES", [out / "02_molecules.xyz"], smiles,
                 ConfigSet.from_items(SMILES), OutputSpec(out / "02_molecules.xyz"),
                 seed=SEED)

    # 3. Langevin MD with xTB at three temperatures, a frame every 5 steps (2.5 fs)
    md_files = [out / f"03_md_{t}K.xyz" for t in TEMPERATURES]
    for t, path in zip(TEMPERATURES, md_files):
        steps(f"3 MD at {t} K, xTB", [path], md, mols, OutputSpec(path), calculator=xtb,
              steps=n_steps, dt=0.5, integrator="langevin", temperature=t, friction=0.02,
              initial_temperature=t, sample_interval=5, results_prefix="xtb_",
              seed=SEED + t, autopara_info=pool)

    # 4. SOAP descriptors (averaged over each frame's atoms)
    soap = get_descriptor("soap")   # a descriptor: .key is where it stores the vectors
    described = steps("4 SOAP descriptors", [out / "04_md_soap.xyz"], soap.load(),
                      ConfigSet(md_files), OutputSpec(out / "04_md_soap.xyz"), r_cut=4.0,
                      n_max=4, l_max=3, autopara_info=pool)

    # 5. CUR: the most diverse frames, split at random into training and test sets
    selected = steps("5 CUR selection", [out / "05_selected.xyz"], select_cur, described,
                     OutputSpec(out / "05_selected.xyz"), n_select=n_train + n_test,
                     key=soap.key)
    order = np.random.default_rng(SEED).permutation(n_train + n_test)
    test_idx, train_idx = sorted(order[:n_test].tolist()), sorted(order[n_test:].tolist())
    train = steps("  training set", [out / "05_train.xyz"], select_by_index, selected,
                  OutputSpec(out / "05_train.xyz"), indices=train_idx)
    test = steps("  test set", [out / "05_test.xyz"], select_by_index, selected,
                 OutputSpec(out / "05_test.xyz"), indices=test_idx)

    # 6. the fit: training frames plus the isolated atoms
    model_dir = out / f"06_model_{fitter}"
    model = steps(f"6 {fitter.upper()} fit", [model_dir], fit, ConfigSet([train, iso]),
                  OutputModel(model_dir), fitter=fitter, params=params, seed=SEED,
                  autopara_info=pool)

    # 7. the model on both sets and the isolated atoms, in worker processes
    evaluated = [out / f"07_{name}.{fitter}.xyz" for name in ("train", "test", "isolated")]
    train_ev, test_ev, iso_ev = steps(
        f"7 {fitter.upper()} evaluation", evaluated, calculate,
        ConfigSet([train, test, iso]), OutputSpec(evaluated), calculator=model.calculator,
        prefix=f"{fitter}_", autopara_info=pool).groups()

    # 8. errors and parity plots. Atomization energies use the reference's isolated-atom
    # energies for both methods (every fitter was given them as its E0s), so their errors
    # equal the energy-per-atom errors; how well each model gives the isolated atoms back
    # is reported on its own.
    t0 = time.perf_counter()
    e0 = isolated_energies(iso, "xtb_")
    sets = {"train": train_ev, "test": test_ev}
    report = error_report(sets, "xtb_", f"{fitter}_", group_by=None,
                          properties=["energy", "forces"])
    by_molecule = error_report(test_ev, "xtb_", f"{fitter}_", group_by="smiles",
                               properties=["energy", "forces"], per_element=False)
    isolated = error_report(iso_ev, "xtb_", f"{fitter}_", group_by=None,
                            properties=["energy"])
    errors_file = out / f"08_errors_{fitter}.json"
    errors_file.write_text(json.dumps({"by_set": report.to_dict(),
                                       "test_by_molecule": by_molecule.to_dict(),
                                       "isolated_atoms": isolated.to_dict()}, indent=1))
    from wflp_plots import parity_plot

    plot = parity_plot(sets, "xtb_", f"{fitter}_", out / f"08_parity_{fitter}.png",
                       properties=["atomization_energy", "forces"], group_by=None,
                       isolated_atoms=e0)
    print(f"  {'8 errors and parity plots':<34} {'done':>6} {time.perf_counter() - t0:6.1f} s"
          f"   {errors_file.name}, {plot.path.name}")

    total = time.perf_counter() - steps.start
    print()
    print(report.table(f"{fitter}_ against xtb_"))
    print()
    print(by_molecule.table(f"test set by molecule, {fitter}_ against xtb_"))
    print()
    rmse_e = report.rmse("energy_per_atom", "test") * 1000
    rmse_f = report.rmse("forces", "test") * 1000
    iso_error = isolated.stats("energy_per_atom")["max"] * 1000
    print(f"isolated atoms: the model's energies are within {iso_error:.3g} meV of xTB's")
    print(f"test set: {rmse_e:.1f} meV/atom energy (and atomization energy) and {rmse_f:.0f} "
          f"meV/A force component RMSE ({len(list(test_ev))} configurations)")
    print(f"total {total:.1f} s; " + ("every step reused its output (records match)"
                                      if steps.all_reused else
                                      "run again: every step is reused through its record"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
