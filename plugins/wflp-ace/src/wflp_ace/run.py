"""The ACE fit's own process: ``python -m wflp_ace.run ace_job.json`` in the run directory.

Linear jobs build pyace's design matrix and fit it (weighted ridge regression, as
``pyace.linearacefit.LinearACEFit``) and write the B-basis; pacemaker jobs only write
pacemaker's data file and input.yaml, and the fitter runs pacemaker next. It prints what
it does (the fit's log) and exits non-zero with a message on failure.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

DATA_FILE = "ace_training.pckl.gzip"


def _frames(job: dict) -> tuple:
    from wflp_ace.fit import reference_frames

    frames, energies, forces = [], [], []
    e0 = job["e0"]
    for atoms, energy, force in reference_frames(job["training"], job["ref_prefix"]):
        if len(atoms) < 2 or energy is None or force is None:
            continue
        shift = sum(e0[s] for s in atoms.get_chemical_symbols())
        clean = atoms.copy()
        clean.calc = None
        clean.info = {}
        frames.append(clean)
        energies.append(energy - shift)
        forces.append(force.reshape(len(atoms), 3))
    return frames, energies, forces


def linear(job: dict) -> None:
    import numpy as np
    import pandas as pd
    from pyace import create_multispecies_basis_config
    from pyace.linearacefit import LinearACEDataset, LinearACEFit
    from sklearn.linear_model import Ridge

    start = time.perf_counter()
    frames, energies, forces = _frames(job)
    df = pd.DataFrame({"ase_atoms": frames, "energy": energies, "forces": forces})
    bconf = create_multispecies_basis_config(job["potential"])
    dataset = LinearACEDataset(bconf, df)
    print(f"linear ACE: {len(frames)} configurations, {dataset.nfunc} basis functions, "
          f"E0 {job['e0']}", flush=True)
    dataset.construct_design_matrix(max_workers=max(1, job["cores"]))
    rows = dataset.design_matrix.shape[0]
    n = len(frames)
    weights = np.empty(rows)
    weights[:n] = job["energy_weight"]
    weights[n:] = job["forces_weight"]
    print(f"design matrix {dataset.design_matrix.shape} in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    model = Ridge(alpha=job["ridge"], fit_intercept=False, copy_X=False, random_state=42)
    fitter = LinearACEFit(model=model, train_dataset=dataset)
    fitter.fit(sample_weight=weights)
    errors = fitter.compute_errors(dataset)
    print(f"training errors: energy RMSE {errors['epa_rmse'] * 1000:.2f} meV/atom, force "
          f"RMSE {errors['f_comp_rmse'] * 1000:.1f} meV/A", flush=True)
    basis = fitter.get_bbasis()
    basis.save(job["output"])
    print(f"wrote {job['output']} in {time.perf_counter() - start:.1f} s", flush=True)


def pacemaker_input(job: dict) -> None:
    """pacemaker's data file (a pandas pickle) and input.yaml for the nonlinear fit."""
    import pandas as pd

    frames, energies, forces = _frames(job)
    df = pd.DataFrame({"ase_atoms": frames, "energy": energies, "energy_corrected": energies,
                       "forces": forces})
    df.to_pickle(DATA_FILE, compression="gzip")
    potential = dict(job["potential"])
    cutoff = max(float(b.get("rcut", 5.0)) for b in potential.get("bonds", {}).values())
    config: dict[str, Any] = {
        "cutoff": cutoff, "seed": int(job["seed"] or 0),
        "data": {"filename": DATA_FILE},
        "potential": potential,
        "fit": {"loss": {"kappa": job["forces_weight"] / (job["forces_weight"]
                                                          + job["energy_weight"]),
                         "L1_coeffs": 1e-8, "L2_coeffs": 1e-8},
                "optimizer": "BFGS", "maxiter": job["max_iterations"]},
        "backend": ({"evaluator": "tensorpot", "batch_size": 50}
                    if job["backend"] == "tensorpot"
                    else {"evaluator": "pyace", "parallel_mode": "serial"}),
    }
    Path("input.yaml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    print(f"pacemaker input: {len(frames)} configurations in {DATA_FILE}, input.yaml",
          flush=True)


def main(argv: list) -> int:
    if len(argv) != 1:
        print("usage: python -m wflp_ace.run ace_job.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    (linear if job["method"] == "linear" else pacemaker_input)(job)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
