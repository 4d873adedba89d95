#!/usr/bin/env python3
"""A stand-in for VASP, for tests: reads the input files ASE wrote (INCAR, POSCAR,
KPOINTS, POTCAR), computes energy, forces and stress with a Lennard-Jones potential (the
same as ASE's LennardJones(sigma=2.3, epsilon=0.4, rc=5.0, smooth=False), in numpy only,
so that it starts fast), and writes OUTCAR, vasprun.xml and stdout in VASP's formats.

Run as ``standin_vasp.py [std|gam]``. WFLP_STANDIN_FAIL="mode:Element,..." makes
structures containing Element fail: ``unconverged`` (NELM reached, exit 0, as VASP
does), ``crash`` (an error message and exit status 1), ``silent`` (exit 0, no output).
"""

import os
import sys

import numpy as np
from wflp.standin import failure_mode, lennard_jones, pause

GPA = 0.006241509125883258  # eV/Å^3, ase.units.GPa (CODATA 2014)



def read_poscar(path="POSCAR"):
    """Symbols, cell and Cartesian positions of a VASP 5 POSCAR."""
    lines = open(path).read().split("\n")
    scale = float(lines[1].split()[0])
    cell = np.array([[float(x) for x in lines[i].split()[:3]] for i in (2, 3, 4)]) * scale
    names, counts = lines[5].split(), [int(x) for x in lines[6].split()]
    symbols = [n for n, c in zip(names, counts) for _ in range(c)]
    row = 7
    if lines[row].strip()[:1] in "sS":
        row += 1                                  # Selective dynamics
    direct = lines[row].strip()[:1] in "dD"
    pos = np.array([[float(x) for x in lines[row + 1 + i].split()[:3]]
                    for i in range(len(symbols))])
    pos = pos @ cell if direct else pos * scale
    return symbols, cell, pos


def incar(path="INCAR"):
    out = {}
    for line in open(path):
        line = line.split("#")[0].split("!")[0]
        if "=" in line:
            key, value = line.split("=", 1)
            out[key.strip().upper()] = value.strip()
    return out


def main():
    flavour = sys.argv[1] if len(sys.argv) > 1 else "std"
    print(f" running on    1 total cores\n vasp.6.4.2 20Jul23 (build stand-in) "
          f"{'gamma-only' if flavour == 'gam' else 'complex'}", flush=True)
    for name in ("INCAR", "POSCAR", "POTCAR", "KPOINTS"):
        if not os.path.exists(name):
            print(f" ERROR: the file {name} was not found", flush=True)
            sys.exit(1)
    params = incar()
    symbols, cell, positions = read_poscar()
    mode = failure_mode(symbols)
    if mode == "silent":
        sys.exit(0)
    kpoints = open("KPOINTS").read().split("\n")
    energy, forces, stress = lennard_jones(positions, cell, (True, True, True))
    xx, yy, zz, yz, xz, xy = stress
    stress_kb = -np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]) / (0.1 * GPA)  # kBar
    ediff = float(params.get("EDIFF", "1e-4").replace("d", "e").replace("D", "E"))
    nelm = int(params.get("NELM", "60"))
    steps = [3.0, 0.2, 1e-2, 1e-3, 5e-5, 2e-6]
    if mode == "unconverged":
        steps = [3.0, 0.5, 0.2, 0.1][:max(1, min(nelm, 4))]
    pause()

    titels = [line.split("=", 1)[1].strip() for line in open("POTCAR")
              if line.strip().startswith("TITEL")]
    out = [" vasp.6.4.2 20Jul23 (build stand-in) "
           f"{'gamma-only' if flavour == 'gam' else 'complex'}",
           " executed on             LinuxIFC date 2026.01.01  00:00:00",
           " running on    1 total cores", "", " INCAR:"]
    out += [f" POTCAR:    {t}" for t in titels]
    out += [f"   EDIFF  = {ediff:.1E}   stopping-criterion for ELM",
            "   EDIFFG = 0.1E-02   stopping-criterion for IOM",
            f"   NELM   = {nelm:6d};   NELMIN=  2; NELMDL= -5     # of ELM steps",
            " KPOINTS: " + kpoints[0], f"   {kpoints[2].strip()} mesh: {kpoints[3].strip()}",
            "", f"   number of dos      NEDOS =    301   number of ions     NIONS = "
            f"{len(symbols):6d}", "   NBANDS=     24", ""]
    for i, de in enumerate(steps, 1):
        out += [f"--------------------------------------- Iteration      1(  {i:3d})  "
                "---------------------------------------",
                f" total energy-change (2. order) :{-de:14.7E}  ({-de / 3:14.7E})"]
    if mode == "unconverged":
        out.append("------------------------ aborting loop EDIFF was not reached "
                   "(unconverged)  ----------------------------")
    else:
        out.append("------------------------ aborting loop because EDIFF is reached "
                   "----------------------------------------")
    out += ["", "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)",
            "  ---------------------------------------------------",
            f"  free  energy   TOTEN  = {energy:18.8f} eV", "",
            f"  energy  without entropy= {energy:18.8f}  energy(sigma->0) = {energy:18.8f}",
            "", "  FORCE on cell =-STRESS in cart. coord.  units (eV):",
            "  Direction    XX          YY          ZZ          XY          YZ          ZX",
            "  --------------------------------------------------------------------------",
            "  in kB  " + " ".join(f"{stress_kb[i, j]:11.5f}" for i, j in
                                   ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (2, 0))), "",
            " POSITION                                       TOTAL-FORCE (eV/Angst)",
            " " + "-" * 83]
    for p, f in zip(positions, forces):
        out.append(" " + "".join(f"{x:13.5f}" for x in p) + "    "
                   + "".join(f"{x:14.6f}" for x in f))
    out += [" " + "-" * 83, "", " General timing and accounting informations for this job:",
            " ========================================================", "",
            "                  Total CPU time used (sec):        0.100", ""]
    if mode == "crash":
        with open("OUTCAR", "w") as fd:
            fd.write("\n".join(out[:12]) + "\n")
        print(" |     VERY BAD NEWS! internal error in subroutine SGRCON:       |", flush=True)
        print(" |     Found some non-integer element in rotation matrix         |", flush=True)
        print("forrtl: error (78): process killed (SIGTERM)", file=sys.stderr, flush=True)
        sys.exit(1)
    with open("OUTCAR", "w") as fd:
        fd.write("\n".join(out) + "\n")
    write_vasprun(symbols, cell, positions, energy, forces, stress_kb, kpoints, steps, params)
    for i in range(1, len(steps) + 1):
        print(f"DAV: {i:3d}    {energy:.8E}   {-steps[i - 1]:.5E}", flush=True)
    print(f"   1 F= {energy:.8E} E0= {energy:.8E}  d E =0.000000E+00", flush=True)


def write_vasprun(symbols, cell, positions, energy, forces, stress_kb, kpoints, steps,
                  params):
    def v(vec, fmt="%18.10f"):
        return "    <v>" + " ".join(fmt % x for x in vec) + " </v>"

    species = []
    for s in symbols:
        if s not in species:
            species.append(s)
    rec = np.linalg.inv(cell).T
    scaled = positions @ np.linalg.inv(cell)
    structure = ["  <crystal>", '   <varray name="basis" >', *[v(r) for r in cell],
                 "   </varray>", f'   <i name="volume">{abs(np.linalg.det(cell)):18.10f} </i>',
                 '   <varray name="rec_basis" >', *[v(r) for r in rec], "   </varray>",
                 "  </crystal>", '  <varray name="positions" >',
                 *[v(p) for p in scaled], "  </varray>"]
    grid = kpoints[3].split() if len(kpoints) > 3 else ["1", "1", "1"]
    scsteps = []
    for de in steps:
        scsteps += ["  <scstep>", "   <energy>",
                    f'    <i name="e_fr_energy">{energy + de:18.10f} </i>',
                    f'    <i name="e_wo_entrp">{energy + de:18.10f} </i>',
                    f'    <i name="e_0_energy">{energy + de:18.10f} </i>', "   </energy>",
                    "  </scstep>"]
    scsteps[-5:-2] = [f'    <i name="e_fr_energy">{energy:18.10f} </i>',
                      f'    <i name="e_wo_entrp">{energy:18.10f} </i>',
                      f'    <i name="e_0_energy">{energy:18.10f} </i>']
    text = ['<?xml version="1.0" encoding="ISO-8859-1"?>', "<modeling>", " <generator>",
            '  <i name="program" type="string">vasp </i>',
            '  <i name="version" type="string">6.4.2  </i>', " </generator>", " <incar>",
            *[f'  <i name="{k}">{val} </i>' for k, val in params.items()], " </incar>",
            " <kpoints>", '  <generation param="Gamma">',
            f'   <v type="int" name="divisions">{" ".join(grid[:3])} </v>',
            "  </generation>", '  <varray name="kpointlist" >', v((0, 0, 0)),
            "  </varray>", '  <varray name="weights" >', "    <v>       1.00000000 </v>",
            "  </varray>", " </kpoints>", " <parameters>", '  <separator name="electronic" >',
            f'   <i name="EDIFF">{params.get("EDIFF", "1e-4")} </i>', "  </separator>",
            " </parameters>", " <atominfo>", f"  <atoms>{len(symbols):8d} </atoms>",
            f"  <types>{len(species):8d} </types>", '  <array name="atoms" >',
            '   <dimension dim="1">ion</dimension>',
            '   <field type="string">element</field>', '   <field type="int">atomtype</field>',
            "   <set>",
            *[f"    <rc><c>{s:2s}</c><c>{species.index(s) + 1:4d}</c></rc>"
              for s in symbols],
            "   </set>", "  </array>", " </atominfo>", ' <structure name="initialpos" >',
            *structure, " </structure>", " <calculation>", *scsteps, " <structure>",
            *structure, " </structure>", '  <varray name="forces" >',
            *[v(f) for f in forces], "  </varray>", '  <varray name="stress" >',
            *[v(s) for s in stress_kb], "  </varray>", "  <energy>",
            f'   <i name="e_fr_energy">{energy:18.10f} </i>',
            f'   <i name="e_wo_entrp">{energy:18.10f} </i>',
            f'   <i name="e_0_energy">{energy:18.10f} </i>', "  </energy>",
            " </calculation>", ' <structure name="finalpos" >', *structure, " </structure>",
            "</modeling>"]
    with open("vasprun.xml", "w") as fd:
        fd.write("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
