"""What wflp itself registers, through the same hooks as any plugin.

Targets are import paths, so nothing here is imported before it is used.
"""

from __future__ import annotations

from .hookspecs import hookimpl
from .types import CalculatorSpec, ExecutorSpec, GeneratorSpec, SchedulerSpec, SelectorSpec


@hookimpl
def wflp_calculators() -> list[CalculatorSpec]:
    """The calculators wflp registers itself: ``emt`` and ``lj`` (ASE's), and ``committee``
    (the mean and spread of several calculators)."""
    return [
        CalculatorSpec(
            name="emt", summary="Effective medium theory (ASE), for Al Cu Ag Au Ni Pd Pt, H C N O",
            factory="ase.calculators.emt:EMT",
            properties=("energy", "free_energy", "forces", "stress"), picklable=True,
            reset_interval=32),
        CalculatorSpec(
            name="lj", summary="Lennard-Jones pair potential (ASE)",
            factory="ase.calculators.lj:LennardJones",
            properties=("energy", "free_energy", "forces", "stress"), picklable=True,
            reset_interval=32),
        CalculatorSpec(
            name="committee", summary="mean and spread (std) of several calculators' results",
            factory="wflp.calculators.committee:Committee",
            properties=("energy", "free_energy", "forces", "stress")),
    ]


@hookimpl
def wflp_generators() -> list[GeneratorSpec]:
    """The built-in operations that make configurations (md, optimize, isolated atoms,
    normal modes, ...)."""
    return [
        GeneratorSpec(name="md", summary="molecular dynamics trajectories (ASE integrators)",
                      operation="wflp.ops:md"),
        GeneratorSpec(name="optimize", summary="geometry optimization (ASE optimizers)",
                      operation="wflp.ops:optimize"),
        GeneratorSpec(name="isolated_atoms",
                      summary="one isolated atom per element (spin explicit), for E0",
                      operation="wflp.ops:isolated_atoms"),
        GeneratorSpec(name="normal_modes",
                      summary="vibrational normal modes (ASE finite differences), stored "
                              "on each input",
                      operation="wflp.ops:normal_modes"),
        GeneratorSpec(name="sample_normal_modes",
                      summary="configurations displaced along stored normal modes at a "
                              "temperature (Boltzmann)",
                      operation="wflp.ops:sample_normal_modes"),
        GeneratorSpec(name="supercells",
                      summary="each input repeated by an integer matrix (make_supercell)",
                      operation="wflp.ops:supercells"),
        GeneratorSpec(name="atoms_and_dimers",
                      summary="isolated atoms and dimer curves for every pair of elements",
                      operation="wflp.ops:atoms_and_dimers"),
        GeneratorSpec(name="minima_hopping",
                      summary="minima hopping global search (ASE), every minimum visited",
                      operation="wflp.ops:minima_hopping"),
    ]


@hookimpl
def wflp_selectors() -> list[SelectorSpec]:
    """The built-in selectors (by bool, by index, CUR, FPS, flat histogram, ...)."""
    return [
        SelectorSpec(name="select_by_bool", summary="keep items for which a function is true",
                     operation="wflp.ops:select_by_bool"),
        SelectorSpec(name="select_by_index", summary="keep items at given input positions",
                     operation="wflp.ops:select_by_index"),
        SelectorSpec(name="select_cur", summary="leverage-score CUR on a descriptor in info",
                     operation="wflp.ops:select_cur"),
        SelectorSpec(name="select_fps", summary="farthest-point sampling of a descriptor",
                     operation="wflp.ops:select_fps"),
        SelectorSpec(name="select_flat_histogram",
                     summary="flat (or Boltzmann-biased) histogram of a per-atom quantity",
                     operation="wflp.ops:select_flat_histogram"),
        SelectorSpec(name="select_convex_hull",
                     summary="on or near the convex hull of energy per atom vs composition",
                     operation="wflp.ops.selectors:select_convex_hull"),
        SelectorSpec(name="select_by_distance",
                     summary="drop configurations with atoms closer than per-pair thresholds",
                     operation="wflp.ops.selectors:select_by_distance"),
        SelectorSpec(name="select_by_spread",
                     summary="largest (or above a threshold) spread of a committee's results",
                     operation="wflp.ops:select_by_spread"),
    ]


@hookimpl
def wflp_executors() -> list[ExecutorSpec]:
    """The built-in executors: ``serial``, ``pool`` and ``queue``."""
    return [
        ExecutorSpec(name="serial", summary="chunks one after another in this process",
                     factory="wflp.exec.local:SerialExecutor"),
        ExecutorSpec(name="pool", summary="chunks in a reusable pool of worker processes",
                     factory="wflp.exec.local:PoolExecutor"),
        ExecutorSpec(name="queue", summary="batches of inputs as queued jobs on a system "
                                           "(AutoparaInfo(remote_info=RemoteInfo(...)))",
                     factory="wflp.exec.queue:QueueExecutor"),
    ]


@hookimpl
def wflp_schedulers() -> list[SchedulerSpec]:
    """The built-in ``local`` scheduler: jobs as background processes."""
    return [
        SchedulerSpec(name="local", summary="jobs as background processes on the system, "
                                            "no queueing system needed",
                      factory="wflp.remote.scheduler:LocalScheduler"),
    ]
