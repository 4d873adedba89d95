#!/usr/bin/env python3
"""A stand-in for FHI-aims, for tests: reads the geometry.in and control.in ASE wrote
(species blocks included), computes energy, forces and stress with a Lennard-Jones
potential (ASE's LennardJones(sigma=2.3, epsilon=0.4, rc=5.0, smooth=False), in numpy
only, so that it starts fast) and writes aims.out in FHI-aims' format to stdout.

Without control.in and geometry.in it prints its header (with the version) and stops, as
FHI-aims does. WFLP_STANDIN_FAIL="mode:Element,..." makes structures containing Element
fail: ``unconverged`` (FHI-aims warns that the SCF did not converge, goes on, prints the
numbers and "Have a nice day."), ``crash`` (an error and exit status 1), ``silent``
(exit 0, no output).
"""

import os
import sys

import numpy as np
from wflp.standin import failure_mode, lennard_jones, pause

HEADER = """------------------------------------------------------------
          Invoking FHI-aims ...

  When using FHI-aims, please cite the following reference:
------------------------------------------------------------
  FHI-aims version      : 240507
  Commit number         : stand-in
"""


def read_geometry(path="geometry.in"):
    cell, symbols, pos, frac = [], [], [], []
    for line in open(path):
        words = line.split("#")[0].split()
        if not words:
            continue
        if words[0] == "lattice_vector":
            cell.append([float(x) for x in words[1:4]])
        elif words[0] in ("atom", "atom_frac"):
            pos.append([float(x) for x in words[1:4]])
            symbols.append(words[4])
            frac.append(words[0] == "atom_frac")
    pos = np.array(pos)
    if cell:
        cell = np.array(cell)
        pos = np.array([p @ cell if f else p for p, f in zip(pos, frac)])
    return symbols, (np.array(cell) if len(cell) else None), pos


def read_control(path="control.in"):
    keys, species = {}, []
    for line in open(path):
        words = line.split("#")[0].split()
        if not words:
            continue
        if words[0] == "species":
            species.append(words[1])
        elif words[0] not in keys:
            keys[words[0]] = words[1:]
    return keys, species


def main():
    print(HEADER, flush=True)
    if not (os.path.exists("control.in") and os.path.exists("geometry.in")):
        print("  * Error: control.in or geometry.in not found", flush=True)
        sys.exit(1)
    keys, species = read_control()
    symbols, cell, pos = read_geometry()
    mode = failure_mode(symbols)
    if mode == "silent":
        sys.exit(0)
    missing = sorted(set(symbols) - set(species))
    if missing:
        print(f"  * Error: no species data for {missing[0]} in control.in", flush=True)
        sys.exit(1)
    periodic = cell is not None
    if periodic and "k_grid" not in keys:
        print("  * Error: a periodic geometry needs a k_grid in control.in", flush=True)
        sys.exit(1)
    pause()
    energy, forces, stress = lennard_jones(pos, cell if periodic else np.zeros((3, 3)),
                                           (periodic,) * 3)
    n = len(symbols)
    out = ["  Parsing control.in (first pass over file, find array dimensions only).",
           "", "  | Number of spin channels           :        1",
           f"  | Number of atoms                   : {n:8d}", "",
           "          Reading geometry description geometry.in.",
           f"  The structure contains {n:8d} atoms,  and a total of {18.0 * n:10.3f} "
           "electrons.", "", "  Input geometry:"]
    if periodic:
        out += ["  | Unit cell:"] + [f"  | {a:18.8f} {b:18.8f} {c:18.8f}" for a, b, c in cell]
    else:
        out += ["  | No unit cell requested."]
    out += ["  | Atomic structure:",
            "  |       Atom                x [A]            y [A]            z [A]"]
    out += [f"  | {i + 1:4d}: Species {s:<2s} {x:16.8f} {y:16.8f} {z:16.8f}"
            for i, (s, (x, y, z)) in enumerate(zip(symbols, pos))]
    out += ["", f"  | Number of Kohn-Sham states (occupied + empty): {9 * n + 6:8d}",
            "------------------------------------------------------------",
            "          Begin self-consistency loop: Initialization.",
            "------------------------------------------------------------",
            "Convergence:    q app. |  density  | eigen (eV) | Etot (eV) | forces (eV/A) "
            "|       CPU time |     Clock time"]
    steps = [0.3, 0.2e-2, 0.5e-4, 0.9e-6] if mode != "unconverged" else [0.3, 0.2, 0.1]
    for i, d in enumerate(steps, 1):
        out.append(f"  SCF {i:4d} : -0.33E-13 |  {d:.2E} |   0.49E+01 |  {d:.2E} |"
                   "             . |        0.038 s |        0.038 s")
    if mode == "crash":
        out += ["", "  * Error: the Cholesky decomposition of the overlap matrix failed.",
                "  * Aborting."]
        print("\n".join(out), flush=True)
        print("MPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD",
              file=sys.stderr, flush=True)
        sys.exit(1)
    if mode == "unconverged":
        out += ["", "  ***********************************************************",
                "  * WARNING! SELF-CONSISTENCY CYCLE DID NOT CONVERGE",
                "  * USING YOUR PRESELECTED ACCURACY CRITERIA.",
                "  * DO NOT RELY ON ANY FINAL DATA WITHOUT FURTHER CHECKS.",
                "  ***********************************************************", ""]
    else:
        out += ["", "  Self-consistency cycle converged.", ""]
    out += ["  Energy and forces in a compact form:",
            f"  | Total energy uncorrected      :    {energy:28.15E} eV",
            f"  | Total energy corrected        :    {energy:28.15E} eV  <-- do not rely on "
            "this value for anything but (periodic) metals",
            f"  | Electronic free energy        :    {energy:28.15E} eV"]
    if keys.get("compute_forces", [".false."])[0].lower().startswith(".t"):
        out.append("  Total atomic forces (unitary forces cleaned) [eV/Ang]:")
        out += [f"  | {i + 1:4d} {fx:30.15E} {fy:30.15E} {fz:30.15E}"
                for i, (fx, fy, fz) in enumerate(forces)]
    if periodic and keys.get("compute_analytical_stress", [".false."])[0].lower()[:2] == ".t":
        xx, yy, zz, yz, xz, xy = stress
        full = [[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]
        out += ["", "  +-------------------------------------------------------------------+",
                "  |              Analytical stress tensor - Symmetrized               |",
                "  |                  Cartesian components [eV/A**3]                   |",
                "  +-------------------------------------------------------------------+",
                "  |                x                y                z                |",
                "  |                                                                   |"]
        out += [f"  |  {ax}  {r[0]:20.12f} {r[1]:20.12f} {r[2]:20.12f}          |"
                for ax, r in zip("xyz", full)]
        out += ["  |                                                                   |",
                f"  |  Pressure: {-(xx + yy + zz) / 3:20.12f}   [eV/A**3]              |",
                "  +-------------------------------------------------------------------+"]
    out += ["", "------------------------------------------------------------",
            "          Leaving FHI-aims.", "          Date     :  20260101, Time     :  000000.000",
            "", "          Have a nice day.",
            "------------------------------------------------------------"]
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    main()
