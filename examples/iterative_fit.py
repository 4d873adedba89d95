"""Active learning: run MD with the current GAP, pick new frames, label them with xTB, refit.

    python examples/iterative_fit.py            # three iterations after the README demo
    python examples/iterative_fit.py --small    # reduced sizes (the test runs this)

It starts from the data and the model of the README demo (examples/mlip_from_smiles.py,
whose steps it runs first: they are reused if the demo ran before into the same
folder). Iteration 0 (iter_00/) fits the demo's training set again with this example's
GAP settings (below), so that every model in the table has the same hyperparameters.
Each iteration, in its own folder iter_01/, iter_02/, iter_03/:

 1. Langevin MD with the current model (iteration 1: the GAP of iteration 0; then the
    GAP of the previous iteration) from the demo's five molecules at 300, 600 and 1000 K;
 2. SOAP descriptors of every frame (wflp-soap, the demo's settings);
 3. CUR selection of new frames, excluding what the training set already covers
    (select_cur(..., exclude=<training set>));
 4. GFN2-xTB energies and forces of the new frames (wflp-xtb);
 5. a GAP fit to the training set so far plus the new frames (and the isolated atoms),
    with the demo's hyperparameters except two of the SOAP descriptor: its delta is
    1.0 (the demo's 0.2 holds the fit to its prior; see SOAP_DELTA) and its sparse
    points grow with the training set (the demo's ratio, 2 per frame in the full run);
 6. the new model evaluated on the demo's test set, which stays fixed.

Every step writes a file (or model folder) with a record, so a rerun reuses every step
and a run killed in the middle of an iteration resumes at the first unfinished step
(inside a step, at its first unfinished chunk). The test errors per iteration are
printed, written to errors_by_iteration.json and drawn to errors_by_iteration.png.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import mlip_from_smiles as demo  # noqa: E402  (the README demo, next to this file)
from wflp import AutoparaInfo, ConfigSet, OutputSpec  # noqa: E402
from wflp.analysis import error_report  # noqa: E402
from wflp.errors import RecordMismatchError, WflpError  # noqa: E402
from wflp.iterate import Iteration, iterate  # noqa: E402
from wflp.ops import OutputModel, calculate, fit, md, select_cur  # noqa: E402
from wflp.plugins import get_descriptor  # noqa: E402

ITERATIONS = 3
XTB = ("xtb", [], {"method": "GFN2-xTB"})
SOAP = {"r_cut": 4.0, "n_max": 4, "l_max": 3}  # as the demo's: the training set's rows
# (MD steps of 0.5 fs, a frame every N steps, new frames per iteration); the demo's own
# sizes follow its --small
SIZES = {"full": (80, 4, 30), "small": (20, 2, 8)}
# A trajectory the model drives into atoms too close together, or far hotter than its
# thermostat's target, stops there (the demo's xTB MD stays above 0.85 Å and below 1.9
# times its target): the frames up to that point are kept, the last one marked
# md_aborted, so the next fit sees where the model starts to fail.
ABORT_MIN_DISTANCE = 0.7   # Å
STOP_TEMPERATURE_FACTOR = 2.5
# The SOAP term's delta (eV), the prior scale of the energy per atom it may contribute.
# The demo's 0.2 is less than what it has to explain: the xTB binding energy per atom
# of its five molecules spreads by 0.42 eV (standard deviation), and the pair term
# cannot tell a C=O from a C-O. With 0.2 the fit is held by its prior, not by its
# data, so new frames cannot lower the energy errors; 1.0 is the pair term's delta.
SOAP_DELTA = 1.0


def gap_params(params: dict, frames: int, demo_frames: int) -> dict:
    """The demo's GAP parameters for *frames* training frames, with SOAP_DELTA for the
    SOAP descriptor and the n_sparse of each descriptor with CUR-chosen sparse points
    (SOAP) scaled from the demo's *demo_frames*, so that the model's basis grows with
    the data instead of being spread thinner."""
    descriptors = []
    for desc in params["descriptors"]:
        if desc["type"] == "soap":
            desc = dict(desc, delta=SOAP_DELTA)
        if desc.get("sparse_method") == "cur_points":
            desc = dict(desc, n_sparse=round(desc["n_sparse"] * frames / demo_frames))
        descriptors.append(desc)
    return {**params, "descriptors": descriptors}


def run_demo(demo_out: Path, small: bool, processes: int) -> bool:
    """Run (or reuse) the README demo into *demo_out*; echo its step lines. True if
    every step was reused."""
    argv = ["--out", str(demo_out), "--processes", str(processes)] + (
        ["--small"] if small else [])
    print(f"the README demo (examples/mlip_from_smiles.py) -> {demo_out}",
          flush=True)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = demo.main(argv)
    if code:
        print(captured.getvalue())
        raise SystemExit(code)
    for line in captured.getvalue().splitlines():
        # its step lines; not the last one (the demo's own tables and plots, always drawn)
        if line.startswith("  ") and " s   " in line and "8 errors" not in line:
            print(line, flush=True)
    return "every step reused its output" in captured.getvalue()


def errors_on(evaluated: ConfigSet) -> dict:
    """Energy-per-atom and force RMSE (meV units) of gap_ against xtb_, and the count."""
    report = error_report(evaluated, "xtb_", "gap_", group_by=None,
                          properties=["energy", "forces"], per_element=False)
    return {"count": report.stats("energy_per_atom")["count"],
            "energy_rmse_meV_per_atom": report.rmse("energy_per_atom") * 1000,
            "forces_rmse_meV_per_A": report.rmse("forces") * 1000}


def soap_delta(params: dict) -> float:
    """The delta of the SOAP descriptor in *params*."""
    return next(d["delta"] for d in params["descriptors"] if d["type"] == "soap")


def count(paths: list) -> int:
    return sum(1 for _ in ConfigSet(paths))


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def draw(rows: list, path: Path, demo_model: dict) -> None:
    """Test RMSE of energy and forces against the iteration, two panels, with the demo's
    own model as a grey mark at 0 (matplotlib's object API, as wflp-plots uses it: no
    pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    x = [row["iteration"] for row in rows]
    for i, (key, label) in enumerate([("energy_rmse_meV_per_atom", "energy RMSE (meV/atom)"),
                                      ("forces_rmse_meV_per_A", "force RMSE (meV/Å)")]):
        ax = fig.add_subplot(1, 2, i + 1)
        values = [row["test"][key] for row in rows]
        ax.plot(x, values, "o-", color="C0", label="this example's GAP settings")
        ax.plot([0], [demo_model["test"][key]], "s", color="0.5", label="the demo's model")
        values.append(demo_model["test"][key])
        ax.set_xticks(x)
        ax.set_xlabel("iteration (0: the demo's training set)")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.15 * max(values))
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize="small", loc="lower left")
    fig.suptitle("GAP on the fixed test set, by active-learning iteration")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomically(path, buffer.getvalue())


def table(rows: list) -> str:
    head = ("iteration", "training", "new", "new frames E / F", "test E", "test F")
    units = ("", "frames", "frames", "(model before)", "meV/atom", "meV/A")
    lines = [head, units]
    for row in rows:
        new = row.get("new_frames_before")
        lines.append((str(row["iteration"]), str(row["training_frames"]),
                      str(row["new_frames"]),
                      f"{new['energy_rmse_meV_per_atom']:.1f} / "
                      f"{new['forces_rmse_meV_per_A']:.0f}" if new else "-",
                      f"{row['test']['energy_rmse_meV_per_atom']:.2f}",
                      f"{row['test']['forces_rmse_meV_per_A']:.0f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths))
                     for line in lines)


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "iterative-output",
                        help="output folder (iter_01/ ... go here)")
    parser.add_argument("--demo-out", type=Path, default=None,
                        help="the README demo's output folder (default: examples/mlip-output, "
                             "shared with the demo; with --small: OUT/demo-small)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--small", action="store_true",
                        help="reduced sizes for tests: the demo's --small, short MD, few "
                             "new frames")
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error(f"--processes must be >= 1, got {args.processes}")
    for name, folder in (("--out", args.out), ("--demo-out", args.demo_out)):
        if folder is not None and folder.exists() and not folder.is_dir():
            parser.error(f"{name} {str(folder)!r} is a file; name a folder (created if missing)")
    try:
        return run(args)
    except RecordMismatchError as err:
        print(f"iterative_fit.py: {err}\n(--small and full runs cannot share a folder: give "
              "each its own --out, and --demo-out for the full run if the demo's folder holds "
              "another size)", file=sys.stderr)
    except WflpError as err:
        print(f"iterative_fit.py: {err}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    """The demo, three iterations, the table and the plot (see the module docstring)."""
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    demo_out = args.demo_out or (out / "demo-small" if args.small else
                                 HERE / "mlip-output")
    n_steps, interval, n_new = SIZES["small" if args.small else "full"]
    pool = AutoparaInfo(num_python_subprocesses=args.processes)
    params = {**demo.FITTERS["gap"], **(demo.SMALL["gap"] if args.small else {})}
    print(f"wflp: active learning of a GAP, GFN2-xTB reference, {ITERATIONS} iterations "
          f"({args.processes} processes) -> {out}")
    start = time.perf_counter()

    demo_reused = run_demo(demo_out, args.small, args.processes)
    molecules = ConfigSet(demo_out / "02_molecules.xyz")
    isolated = demo_out / "01_isolated.xtb.xyz"
    test = ConfigSet(demo_out / "05_test.xyz")
    first_train = [demo_out / "05_train.xyz"]
    steps = demo.Steps()
    soap = get_descriptor("soap")
    demo_frames = count(first_train)

    # iteration 0, in iter_00/: the demo's training set fitted with this example's GAP
    # settings, so that every row of the table has the same hyperparameters
    zero = out / "iter_00"
    zero.mkdir(exist_ok=True)
    print(f"iteration 0 -> {zero}", flush=True)
    first_model = zero / "model_gap"
    fitted = steps("0.1 GAP fit, the demo's frames", [first_model], fit,
                   ConfigSet(first_train + [isolated]), OutputModel(first_model),
                   fitter="gap", params=gap_params(params, demo_frames, demo_frames),
                   seed=demo.SEED, autopara_info=pool)
    tested = zero / "test.gap.xyz"
    steps("0.2 GAP 0 on the test set", [tested], calculate, test, OutputSpec(tested),
          calculator=fitted.calculator, prefix="gap_", autopara_info=pool)
    rows = [{"iteration": 0, "training_frames": demo_frames, "new_frames": 0,
             "model": str(first_model), "test": errors_on(ConfigSet(tested))}]
    # the demo's own model (its SOAP delta), for comparison only
    demo_model = {"model": str(demo_out / "06_model_gap"),
                  "test": errors_on(ConfigSet(demo_out / "07_test.gap.xyz"))}

    def one_iteration(it: Iteration) -> dict:
        """MD with the current model, SOAP, CUR excluding the training set, xTB labels,
        refit, test: every output in it.folder. Returns what the next iteration needs."""
        model, train = it.previous["calculator"], it.previous["train"]
        n = it.number
        print(f"iteration {n} -> {it.folder}", flush=True)
        md_files = [it.folder / f"md_{t}K.xyz" for t in demo.TEMPERATURES]
        for t, path in zip(demo.TEMPERATURES, md_files):
            steps(f"{n}.1 MD at {t} K, GAP {n - 1}", [path], md, molecules, OutputSpec(path),
                  calculator=model, steps=n_steps, dt=0.5, integrator="langevin",
                  temperature=t, friction=0.02, initial_temperature=t, sample_interval=interval,
                  abort_min_distance=ABORT_MIN_DISTANCE,
                  stop_max_temperature=STOP_TEMPERATURE_FACTOR * t, results_prefix="gap_",
                  seed=demo.SEED + 10_000 * n + t, autopara_info=pool)
        described = steps(f"{n}.2 SOAP descriptors", [it.folder / "md_soap.xyz"], soap.load(),
                          ConfigSet(md_files), OutputSpec(it.folder / "md_soap.xyz"),
                          **SOAP, autopara_info=pool)
        selected = steps(f"{n}.3 CUR, training set excluded", [it.folder / "new.xyz"],
                         select_cur, described, OutputSpec(it.folder / "new.xyz"),
                         n_select=n_new, exclude=ConfigSet(train), key=soap.key)
        labelled = it.folder / "new.xtb.xyz"
        steps(f"{n}.4 new frames, xTB", [labelled], calculate, selected,
              OutputSpec(labelled), calculator=XTB, prefix="xtb_", autopara_info=pool)
        train = train + [labelled]
        model_dir = it.folder / "model_gap"
        fitted = steps(f"{n}.5 GAP fit", [model_dir], fit, ConfigSet(train + [isolated]),
                       OutputModel(model_dir), fitter="gap",
                       params=gap_params(params, count(train), demo_frames), seed=demo.SEED,
                       autopara_info=pool)
        tested = it.folder / "test.gap.xyz"
        steps(f"{n}.6 GAP {n} on the test set", [tested], calculate, test,
              OutputSpec(tested), calculator=fitted.calculator, prefix="gap_",
              autopara_info=pool)
        rows.append({"iteration": n, "training_frames": count(train), "new_frames": n_new,
                     "model": str(model_dir),
                     # the model that ran the MD, on the frames chosen from it (its results
                     # are the MD's gap_ ones; xtb_ came in step 4)
                     "new_frames_before": errors_on(ConfigSet(labelled)),
                     "test": errors_on(ConfigSet(tested))})
        return {"calculator": fitted.calculator, "train": train}

    start_state = {"calculator": fitted.calculator, "train": first_train}
    iterate(one_iteration, start_state, ITERATIONS, out)

    summary = {"reference": "GFN2-xTB", "model": "GAP", "small": args.small,
               "demo_output": str(demo_out), "test_set": str(demo_out / "05_test.xyz"),
               "units": {"energy": "meV/atom", "forces": "meV/A"},
               "start": rows[0], "iterations": rows[1:], "demo_model": demo_model}
    errors_file, plot_file = out / "errors_by_iteration.json", out / "errors_by_iteration.png"
    write_atomically(errors_file, (json.dumps(summary, indent=1) + "\n").encode())
    draw(rows, plot_file, demo_model)
    print()
    print(f"GAP test-set errors by iteration ({rows[0]['test']['count']} test frames, "
          "RMSE; iteration 0: the demo's training set):")
    print(table(rows))
    print(f"(the demo's own model, SOAP delta {soap_delta(params)}: "
          f"{demo_model['test']['energy_rmse_meV_per_atom']:.2f} meV/atom, "
          f"{demo_model['test']['forces_rmse_meV_per_A']:.0f} meV/A)")
    print(f"written: {errors_file.name}, {plot_file.name}")
    print(f"total {time.perf_counter() - start:.1f} s; " + (
        "every step reused its output (records match)"
        if demo_reused and steps.all_reused else
        "run again: every step is reused through its record"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
