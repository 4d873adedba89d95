#!/usr/bin/env python3
"""A stand-in for VASP, for tests: reads the input files ASE wrote (INCAR, POSCAR,
KPOINTS, POTCAR), computes energy, forces and stress with a Lennard-Jones potential (the
same as ASE's LennardJones(sigma=2.3, epsilon=0.4, rc=5.0, smooth=False), in numpy only,
so that it starts fast), and writes OUTCAR, vasprun.xml and stdout in VASP's formats.

Run as ``standin_vasp.py [std|gam]``. WFLP_STANDIN_FAIL="mode:Element,..." makes
structures containing Element fail: ``unconverged`` (NELM reached, exit 0, as VASP
does), ``crash`` (an error message and exit status 1), ``silent`` (exit 0, no output).
"""

import itertools
import os
import sys
import time

import numpy as np

GPA = 0.006241509125883258  # eV/Å^3, ase.units.GPa (CODATA 2014)

SIGMA, EPSILON, CUTOFF = 2.3, 0.4, 5.0   # the stand-in's Lennard-Jones potential (eV, Å)


def lennard_jones(positions, cell, pbc, sigma=SIGMA, epsilon=EPSILON, rc=CUTOFF):
    """Energy, forces and stress (ASE's sign, Voigt order) of a truncated, shifted
    Lennard-Jones potential over periodic images: ASE's LennardJones(smooth=False)."""
    pos = np.asarray(positions, dtype=float)
    cell = np.asarray(cell, dtype=float)
    reps = []
    volume = abs(np.linalg.det(cell)) if np.any(pbc) else None
    for k in range(3):
        if pbc[k]:
            other = np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])
            height = volume / np.linalg.norm(other)
            reps.append(range(-int(np.ceil(rc / height)), int(np.ceil(rc / height)) + 1))
        else:
            reps.append(range(1))
    e0 = 4 * epsilon * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
    energy, forces, virial = 0.0, np.zeros_like(pos), np.zeros((3, 3))
    for shift in itertools.product(*reps):
        d = pos[None, :, :] + np.array(shift, dtype=float) @ cell - pos[:, None, :]
        r2 = (d ** 2).sum(-1)
        mask = (r2 < rc * rc) & (r2 > 1e-12)
        r2 = np.where(mask, r2, 1.0)
        c6 = (sigma * sigma / r2) ** 3
        energy += 0.5 * np.sum(np.where(mask, 4 * epsilon * (c6 * c6 - c6) - e0, 0.0))
        fmag = np.where(mask, 24 * epsilon * (2 * c6 * c6 - c6) / r2, 0.0)
        forces -= (fmag[..., None] * d).sum(axis=1)
        virial += 0.5 * np.einsum("ij,ija,ijb->ab", fmag, d, d)
    stress = None
    if volume:
        s = -virial / volume
        stress = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
    return energy, forces, stress


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
    mode = "ok"
    for item in filter(None, os.environ.get("WFLP_STANDIN_FAIL", "").split(",")):
        what, element = item.split(":")
        if element in set(symbols):
            mode = what
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
    time.sleep(float(os.environ.get("WFLP_STANDIN_SLEEP", "0.05")))

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
