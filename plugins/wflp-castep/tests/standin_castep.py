#!/usr/bin/env python3
"""A stand-in for CASTEP, for tests: reads the <seed>.cell and <seed>.param ASE wrote,
computes energy, forces and stress with a Lennard-Jones potential (ASE's
LennardJones(sigma=2.3, epsilon=0.4, rc=5.0, smooth=False), in numpy only, so that it
starts fast), and writes <seed>.castep in CASTEP's format, atoms ordered by species as
CASTEP does.

Run as ``standin_castep.py SEED`` (``--version`` prints the banner). WFLP_STANDIN_FAIL=
"mode:Element,..." makes structures containing Element fail: ``unconverged`` (CASTEP's
SCF warning, complete output, exit 0), ``crash`` (<seed>.0001.err and exit status 1),
``badexit`` (complete output but exit status 137), ``silent`` (exit 0, no output).
"""

import sys

import numpy as np
from wflp.standin import failure_mode, lennard_jones, pause

GPA = 0.006241509125883258  # eV/Å^3, ase.units.GPa (CODATA 2014)
Z = {"H": 1, "C": 6, "Si": 14, "Ar": 18, "Cu": 29, "Ag": 47, "Pt": 78, "Au": 79}



BANNER = """ +-------------------------------------------------+
 |                                                 |
 |      CCC   AA    SSS  TTTTT  EEEEE  PPPP        |
 |     C     A  A  S       T    E      P   P       |
 |     C     AAAA   SS     T    EEE    PPPP        |
 |     C     A  A     S    T    E      P           |
 |      CCC  A  A  SSS     T    EEEEE  P           |
 |                                                 |
 +-------------------------------------------------+
 |                                                 |
 | Welcome to Academic Release CASTEP version 23.1 |
 | Ab Initio Total Energy Program                  |
 +-------------------------------------------------+
"""


def blocks(path):
    """{name: lines} of %BLOCK sections and {key: value} of the other lines."""
    out, keys, name = {}, {}, None
    for raw in open(path):
        line = raw.split("#")[0].split("!")[0].strip()
        if not line:
            continue
        word = line.split()[0].upper()
        if word == "%BLOCK":
            name = line.split()[1].upper()
            out[name] = []
        elif word == "%ENDBLOCK":
            name = None
        elif name:
            out[name].append(line)
        else:
            key, _, value = line.replace("=", ":").partition(":")
            if not value:
                key, _, value = line.partition(" ")
            keys[key.strip().upper()] = value.strip()
    return out, keys


def main():
    if sys.argv[1:] == ["--version"]:
        print(BANNER + "\n CASTEP version: 23.1", flush=True)
        return
    seed = sys.argv[1]
    cell_blocks, cell_keys = blocks(f"{seed}.cell")
    _, params = blocks(f"{seed}.param")
    lattice = [r for r in cell_blocks["LATTICE_CART"] if len(r.split()) == 3
               and not r.split()[0].isalpha()]
    cell = np.array([[float(x) for x in r.split()] for r in lattice])
    if "POSITIONS_ABS" in cell_blocks:
        rows = [r.split() for r in cell_blocks["POSITIONS_ABS"] if len(r.split()) >= 4]
        pos = np.array([[float(x) for x in r[1:4]] for r in rows])
    else:
        rows = [r.split() for r in cell_blocks["POSITIONS_FRAC"] if len(r.split()) >= 4]
        pos = np.array([[float(x) for x in r[1:4]] for r in rows]) @ cell
    symbols = [r[0] for r in rows]
    mode = failure_mode(symbols)
    if mode == "silent":
        sys.exit(0)
    if mode == "crash":
        with open(f"{seed}.0001.err", "w") as fd:
            fd.write(" Current trace stack:\n cell_read\n\n Error in cell_read_species_pot"
                     " - unable to read the pseudopotential file Au_00.usp\n")
        print("castep: aborted, see " + f"{seed}.0001.err", file=sys.stderr, flush=True)
        sys.exit(1)
    pause()
    energy, forces, stress = lennard_jones(pos, cell, (True, True, True))
    order = sorted(range(len(symbols)), key=lambda i: Z.get(symbols[i], 0))  # stable
    frac = pos @ np.linalg.inv(cell)
    rec = 2 * np.pi * np.linalg.inv(cell).T
    grid = cell_keys.get("KPOINT_MP_GRID") or cell_keys.get("KPOINTS_MP_GRID") or "1 1 1"
    stress_on = params.get("CALCULATE_STRESS", "false").lower() in ("true", "t", "1")
    species = sorted(set(symbols), key=lambda s: Z.get(s, 0))
    out = [BANNER, " Compiled for linux_x86_64_gfortran on stand-in", "",
           " ************************************ Title ************************************",
           " ", "",
           " ***************************** General Parameters ******************************",
           "  ", " output verbosity                               : normal  (1)",
           " type of calculation                            : single point energy",
           f" stress calculation                             : {'on' if stress_on else 'off'}",
           "", " *********************** Exchange-Correlation Parameters ***********************",
           "  ", " using functional                               : Perdew Burke Ernzerhof", "",
           " **************************** Basis Set Parameters *****************************",
           "  ", f" plane wave basis set cut-off                   : "
           f"{float(params.get('CUT_OFF_ENERGY', '300').split()[0]):10.4f}   eV",
           " finite basis set correction                    : none", "",
           " ********************* Electronic Minimization Parameters **********************",
           "  ", " total energy / atom convergence tol.           : 0.1000E-04   eV", "",
           " *******************************************************************************",
           "  ", "", "                           -------------------------------",
           "                                      Unit Cell",
           "                           -------------------------------",
           "        Real Lattice(A)                      Reciprocal Lattice(1/A)"]
    out += ["  " + "".join(f"{x:14.7f}" for x in a) + "   " + "".join(f"{x:14.9f}" for x in b)
            for a, b in zip(cell, rec)]
    out += ["", "                           -------------------------------",
            "                                     Cell Contents",
            "                           -------------------------------",
            f"                         Total number of ions in cell = {len(symbols):4d}",
            f"                      Total number of species in cell = {len(species):4d}", "",
            "            xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "            x  Element    Atom        Fractional coordinates of atoms  x",
            "            x            Number           u          v          w      x",
            "            x----------------------------------------------------------x"]
    count = {}
    for i in order:
        count[symbols[i]] = count.get(symbols[i], 0) + 1
        u, v, w = frac[i]
        out.append(f"            x  {symbols[i]:<2s} {count[symbols[i]]:11d} "
                   f"{u:16.10f} {v:16.10f} {w:16.10f}   x")
    out += ["            xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "",
            "                          Files used for pseudopotentials:"]
    out += [f"                                    {s} {s}_00.usp" for s in species]
    out += ["", "                           -------------------------------",
            "                              k-Points For BZ Sampling",
            "                           -------------------------------",
            f"                       MP grid size for SCF calculation is  {grid}",
            "                            with an offset of   0.000  0.000  0.000",
            "                       Number of kpoints used =             4", "",
            "------------------------------------------------------------------------ <-- SCF",
            "SCF loop      Energy           Fermi           Energy gain       Timer   <-- SCF",
            "                               energy          per atom          (sec)   <-- SCF",
            "------------------------------------------------------------------------ <-- SCF"]
    gains = [2.1, 2e-2, 1.6e-4, 2e-7] if mode != "unconverged" else [2.1, 0.5, 0.3]
    for i, g in enumerate(gains, 1):
        out.append(f"{i:7d}  {energy - g:.8E}  0.00000000E+000   {g:.8E}  {4 + i / 10:9.2f}"
                   "  <-- SCF")
    out.append("------------------------------------------------------------------------ "
               "<-- SCF")
    if mode == "unconverged":
        out += ["", " *Warning* max. SCF cycles performed but system has not reached the "
                "groundstate.", ""]
    out += ["", f"Final energy, E             = {energy:18.9f}     eV",
            f"Final free energy (E-TS)    = {energy:18.9f}     eV",
            "(energies not corrected for finite basis set)", "",
            f"NB est. 0K energy (E-0.5TS)      = {energy:18.9f}     eV", "", "",
            " ************************************** Forces **************************************",
            " *                                                                                  *",
            " *                           Cartesian components (eV/A)                            *",
            " * -------------------------------------------------------------------------------- *",
            " *                         x                    y                    z              *",
            " *                                                                                  *"]
    count = {}
    for i in order:
        count[symbols[i]] = count.get(symbols[i], 0) + 1
        fx, fy, fz = forces[i]
        out.append(f" * {symbols[i]:<2s} {count[symbols[i]]:14d} {fx:20.12f} {fy:20.12f} "
                   f"{fz:20.12f}   *")
    out += [" *                                                                                  *",
            " ************************************************************************************",
            ""]
    if stress_on:
        xx, yy, zz, yz, xz, xy = stress / GPA
        full = [[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]
        out += [" ***************** Stress Tensor *****************",
                " *                                               *",
                " *          Cartesian components (GPa)           *",
                " * --------------------------------------------- *",
                " *             x             y             z     *",
                " *                                               *"]
        out += [f" *  {a}  {r[0]:18.12f} {r[1]:18.12f} {r[2]:18.12f}  *"
                for a, r in zip("xyz", full)]
        out += [" *                                               *",
                f" *  Pressure: {-(xx + yy + zz) / 3:12.4f}                          *",
                " *                                               *",
                " *************************************************", ""]
    if mode == "unconverged":
        out += ["  **********************************************************",
                "  *** There were at least     1 warnings during this run ***",
                "  *** => please check the whole of this file carefully!  ***",
                "  **********************************************************", ""]
    out += ["Initialisation time =      0.10 s", "Calculation time    =      0.20 s",
            "Finalisation time   =      0.01 s", "Total time          =      0.31 s",
            "Peak Memory Use     = 49094 kB"]
    with open(f"{seed}.castep", "w") as fd:
        fd.write("\n".join(out) + "\n")
    if mode == "badexit":
        print("mpirun noticed that process rank 0 exited on signal 9 (Killed).",
              file=sys.stderr, flush=True)
        sys.exit(137)


if __name__ == "__main__":
    main()
