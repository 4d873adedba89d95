#!/usr/bin/env python3
"""A stand-in for ORCA, for tests: reads the orca.inp ASE wrote, computes energy and
gradient with a Lennard-Jones potential (ASE's LennardJones(sigma=2.3, epsilon=0.4,
rc=5.0, smooth=False), in numpy only, so that it starts fast), and writes orca.out and
orca.engrad in ORCA's formats (Hartree, Bohr).

Run as ``standin_orca.py orca.inp``; without a readable input it prints ORCA's header
(with its version) and stops, as ORCA does. WFLP_STANDIN_FAIL="mode:Element,..." makes
structures containing Element fail: ``unconverged`` (ORCA 5 goes on after a failed SCF,
prints the energy as "Wavefunction not fully converged" and exits 0), ``noenergy``
(terminates normally without a final energy), ``crash`` (error termination, exit status
1), ``silent`` (exit 0, no output).
"""

import os
import sys

import numpy as np
from wflp.standin import failure_mode, lennard_jones, pause

HARTREE = 27.211386024367243   # eV, ase.units.Hartree
BOHR = 0.5291772105638411      # Å, ase.units.Bohr



HEADER = """
                                 *****************
                                 * O   R   C   A *
                                 *****************

                            Program Version 5.0.4 -  RELEASE  -
"""


def read_input(path):
    lines = open(path).read().split("\n")
    keywords = " ".join(line[1:] for line in lines if line.startswith("!"))
    start = next(i for i, line in enumerate(lines) if line.startswith("*xyz"))
    charge, mult = (int(x) for x in lines[start].split()[1:3])
    symbols, positions = [], []
    for line in lines[start + 1:]:
        if line.strip() == "*":
            break
        words = line.split()
        symbols.append(words[0])
        positions.append([float(x) for x in words[-3:]])
    return keywords, charge, mult, symbols, np.array(positions)


def main():
    print(HEADER, flush=True)
    if len(sys.argv) < 2 or not os.path.exists(sys.argv[1]):
        print("ERROR: input file does not exist", flush=True)
        print("ORCA finished by error termination in ORCA", flush=True)
        sys.exit(1)
    keywords, charge, mult, symbols, pos = read_input(sys.argv[1])
    base = os.path.splitext(sys.argv[1])[0]
    mode = failure_mode(symbols)
    if mode == "silent":
        sys.exit(0)
    pause()
    energy, forces, _ = lennard_jones(pos, np.zeros((3, 3)), (False, False, False))
    out = ["", "================================================================================",
           "                                       INPUT FILE",
           "================================================================================",
           *[f"|  1> {line}" for line in open(sys.argv[1]).read().split("\n") if line], "",
           "---------------------------------", "CARTESIAN COORDINATES (ANGSTROEM)",
           "---------------------------------"]
    out += [f"  {s:<2s} {x:13.6f} {y:13.6f} {z:13.6f}" for s, (x, y, z) in zip(symbols, pos)]
    out += ["", "----------------------------", "CARTESIAN COORDINATES (A.U.)",
            "----------------------------", "",
            f"Number of atoms                             ...{len(symbols):6d}",
            f"Total Charge           Charge          ....{charge:6d}",
            f"Multiplicity           Mult            ....{mult:6d}", ""]
    if mode == "crash":
        out += ["", "ORCA finished by error termination in SCF",
                "Calling Command: orca_scf orca.gbw b orca", "[file orca_tools/qcmsg.cpp, "
                "line 465]:", "  .... aborting the run", ""]
        print("\n".join(out), flush=True)
        print("[file orca_tools/qcmsg.cpp, line 465]: .... aborting the run", file=sys.stderr)
        sys.exit(1)
    if mode == "unconverged":
        out += ["", "               *****************************************************",
                "               *                      ERROR                        *",
                "               *           SCF NOT CONVERGED AFTER 125 CYCLES      *",
                "               *****************************************************", ""]
    else:
        out += ["", "               *****************************************************",
                "               *                     SUCCESS                       *",
                "               *           SCF CONVERGED AFTER  11 CYCLES          *",
                "               *****************************************************", ""]
    gradient = -forces / (HARTREE / BOHR)
    if "engrad" in keywords.lower():
        out += ["------------------", "CARTESIAN GRADIENT", "------------------", ""]
        out += [f"{i + 1:4d}   {s:<2s}  :  {g[0]:14.9f} {g[1]:14.9f} {g[2]:14.9f}"
                for i, (s, g) in enumerate(zip(symbols, gradient))]
        out.append("")
        with open(f"{base}.engrad", "w") as fd:
            fd.write("#\n# Number of atoms\n#\n")
            fd.write(f" {len(symbols)}\n#\n# The current total energy in Eh\n#\n")
            fd.write(f"{energy / HARTREE:22.12f}\n#\n# The current gradient in Eh/bohr\n#\n")
            fd.write("".join(f"{g:21.12f}\n" for g in gradient.ravel()))
            fd.write("#\n# The atomic numbers and current coordinates in Bohr\n#\n")
            fd.write("".join(f"  29 {x / BOHR:12.7f} {y / BOHR:12.7f} {z / BOHR:12.7f}\n"
                             for x, y, z in pos))
    if mode == "unconverged":
        out.append("FINAL SINGLE POINT ENERGY (Wavefunction not fully converged!)  "
                   f"{energy / HARTREE:.12f}")
    elif mode != "noenergy":
        out.append(f"FINAL SINGLE POINT ENERGY     {energy / HARTREE:20.12f}")
    out += ["", "                             ****ORCA TERMINATED NORMALLY****",
            "TOTAL RUN TIME: 0 days 0 hours 0 minutes 0 seconds 100 msec"]
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    main()
