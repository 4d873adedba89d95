"""The hooks a wflp plugin implements: one registration hook per kind of extension.

A plugin is a module or object with functions decorated with ``@hookimpl``
(from ``wflp`` or ``wflp.plugins``); each returns an iterable of spec objects
(see ``wflp.plugins.types``). A plugin implements only the hooks it needs.
Hooks are called once per process, the first time something is looked up, and
must be cheap: name heavy things by import path ("package.module:attr") so that
they are imported only when used.

Every example below runs as it is (the test suite runs them as doctests).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pluggy

from .types import (
    CalculatorSpec,
    DescriptorSpec,
    ExecutorSpec,
    FitterSpec,
    GeneratorSpec,
    SchedulerSpec,
    SelectorSpec,
)

PROJECT = "wflp"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def wflp_calculators() -> Iterable[CalculatorSpec]:
    """Register ASE calculators by name, for ``calculate(..., calculator=(name, [], {...}))``.

    Example: a plugin offering ASE's Morse potential as "morse"::

        >>> from wflp import hookimpl
        >>> from wflp.plugins import CalculatorSpec, WflpPluginManager
        >>> class MorsePlugin:
        ...     @hookimpl
        ...     def wflp_calculators(self):
        ...         return [CalculatorSpec(
        ...             name="morse", summary="Morse pair potential (ASE)",
        ...             factory="ase.calculators.morse:MorsePotential",
        ...             properties=("energy", "forces"), picklable=True)]
        >>> pm = WflpPluginManager(entry_points=())   # private manager: builtins only
        >>> pm.register_plugin(MorsePlugin(), name="morse-demo")
        'morse-demo'
        >>> calc = pm.get_spec("calculator", "morse").load()(epsilon=0.5)
        >>> type(calc).__name__
        'MorsePotential'
    """


@hookspec
def wflp_generators() -> Iterable[GeneratorSpec]:
    """Register operations that make new configurations (by MD, from SMILES, ...).

    The operation is a ``wflp.operation`` (or an import path to one).

    Example: a generator making ``n`` rattled copies of each input::

        >>> from wflp import OutputSpec, hookimpl, operation
        >>> from wflp.plugins import GeneratorSpec, WflpPluginManager
        >>> @operation("rattled_copies", version="1")
        ... def rattled_copies(atoms, n=2, stdev=0.01, rng=None):
        ...     out = []
        ...     for _ in range(n):
        ...         copy = atoms.copy()
        ...         copy.positions += rng.normal(scale=stdev, size=copy.positions.shape)
        ...         out.append(copy)
        ...     return out
        >>> class RattlePlugin:
        ...     @hookimpl
        ...     def wflp_generators(self):
        ...         return [GeneratorSpec(name="rattled_copies",
        ...                               summary="n randomly displaced copies of each input",
        ...                               operation=rattled_copies)]
        >>> pm = WflpPluginManager(entry_points=())
        >>> pm.register_plugin(RattlePlugin())
        'RattlePlugin'
        >>> from ase.build import bulk
        >>> op = pm.get_spec("generators", "rattled_copies").load()
        >>> len(list(op([bulk("Cu")], OutputSpec(), n=3, seed=1)))
        3
    """


@hookspec
def wflp_descriptors() -> Iterable[DescriptorSpec]:
    """Register operations that add a descriptor to every configuration: a vector in
    ``Atoms.info[key]`` (one per configuration), what the global selectors ``select_cur``
    and ``select_fps`` read with ``key=``; ``DescriptorSpec.key`` says which key the
    operation writes by default.

    Example: the principal radii of gyration, then farthest-point sampling on them::

        >>> import numpy as np
        >>> from wflp import OutputSpec, hookimpl, operation
        >>> from wflp.ops import select_fps
        >>> from wflp.plugins import DescriptorSpec, WflpPluginManager
        >>> @operation("gyration", version="1")
        ... def gyration(atoms, key="gyration"):
        ...     centred = atoms.positions - atoms.positions.mean(axis=0)
        ...     atoms.info[key] = np.sqrt(np.linalg.eigvalsh(centred.T @ centred / len(atoms)))
        ...     return atoms
        >>> class GyrationPlugin:
        ...     @hookimpl
        ...     def wflp_descriptors(self):
        ...         return [DescriptorSpec(name="gyration", summary="principal radii of "
        ...                                "gyration", operation=gyration)]
        >>> pm = WflpPluginManager(entry_points=())
        >>> pm.register_plugin(GyrationPlugin())
        'GyrationPlugin'
        >>> spec = pm.get_spec("descriptor", "gyration")
        >>> from ase.build import molecule
        >>> mols = [molecule(m) for m in ("CH4", "C6H6", "CH3CH2OH", "H2O")]
        >>> described = list(spec.load()(mols, OutputSpec()))
        >>> described[0].info[spec.key].shape
        (3,)
        >>> picked = select_fps(described, OutputSpec(), n_select=2, key=spec.key)
        >>> len(list(picked))
        2
    """


@hookspec
def wflp_selectors() -> Iterable[SelectorSpec]:
    """Register operations that keep a subset of their input configurations.

    Example: a selector keeping configurations with at most ``max_atoms`` atoms::

        >>> from wflp import OutputSpec, hookimpl, operation
        >>> from wflp.plugins import SelectorSpec, WflpPluginManager
        >>> @operation("select_small", version="1")
        ... def select_small(atoms, max_atoms=4):
        ...     return atoms if len(atoms) <= max_atoms else None
        >>> class SmallPlugin:
        ...     @hookimpl
        ...     def wflp_selectors(self):
        ...         return [SelectorSpec(name="select_small",
        ...                              summary="keep configurations with few atoms",
        ...                              operation=select_small)]
        >>> pm = WflpPluginManager(entry_points=())
        >>> pm.register_plugin(SmallPlugin())
        'SmallPlugin'
        >>> from ase.build import molecule
        >>> op = pm.get_spec("selector", "select_small").load()
        >>> [at.get_chemical_formula() for at in op(
        ...     [molecule("H2O"), molecule("C6H6")], OutputSpec(), max_atoms=3)]
        ['H2O']
    """


@hookspec
def wflp_fitters() -> Iterable[FitterSpec]:
    """Register model fitters, used through ``wflp.ops.fit``: ``fit(training, workdir,
    **params)`` gets the path of an extended-XYZ training file and a fresh run directory,
    and returns the model's main file (or a ``wflp.ops.fit.ModelFiles``), which the
    calculator named in the spec evaluates, taking it by the keyword ``model_argument``.

    Example: a "fitter" that stores the mean energy per atom of the training set::

        >>> import json, pathlib, tempfile
        >>> import ase.io
        >>> from wflp import hookimpl
        >>> from wflp.plugins import FitterSpec, WflpPluginManager
        >>> def fit_mean(training, workdir, energy_key="ref_energy"):
        ...     frames = ase.io.read(training, ":")
        ...     per_atom = [at.info[energy_key] / len(at) for at in frames]
        ...     path = pathlib.Path(workdir) / "mean.json"
        ...     path.write_text(json.dumps({"e0": sum(per_atom) / len(per_atom)}))
        ...     return path
        >>> class MeanPlugin:
        ...     @hookimpl
        ...     def wflp_fitters(self):
        ...         return [FitterSpec(name="mean_energy", summary="mean energy per atom",
        ...                            fit=fit_mean, calculator="mean_energy",
        ...                            model_argument="potential")]
        >>> pm = WflpPluginManager(entry_points=())
        >>> pm.register_plugin(MeanPlugin())
        'MeanPlugin'
        >>> from ase.build import molecule
        >>> h2 = molecule("H2"); h2.info["ref_energy"] = -2.0
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     ase.io.write(f"{tmp}/train.xyz", [h2])
        ...     out = pm.get_spec("fitters", "mean_energy").load()(f"{tmp}/train.xyz", tmp)
        ...     json.loads(out.read_text())
        {'e0': -1.0}
    """


@hookspec
def wflp_executors() -> Iterable[ExecutorSpec]:
    """Register executors, which run chunks of work: ``factory(**options)`` returns an
    object with ``map_chunks(tasks, autopara_info)`` yielding one ``ChunkResult`` per
    ``ChunkTask``, in any order. It declares what it is (``in_process``,
    ``shares_files``, ``submits_batches``; see wflp.exec.base). Select one with
    ``AutoparaInfo(executor=name)``.

    Example: an executor that runs chunks in this process and counts them::

        >>> from wflp import hookimpl
        >>> from wflp.engine import run_chunk
        >>> from wflp.exec import Executor
        >>> from wflp.plugins import ExecutorSpec, WflpPluginManager
        >>> class CountingExecutor(Executor):
        ...     name = "counting"
        ...     in_process = True
        ...     def __init__(self, log=None):
        ...         self.log = log if log is not None else []
        ...     def map_chunks(self, tasks, autopara_info):
        ...         for task in tasks:
        ...             self.log.append(len(task.items))
        ...             yield run_chunk(task)
        >>> class CountingPlugin:
        ...     @hookimpl
        ...     def wflp_executors(self):
        ...         return [ExecutorSpec(name="counting", summary="in-process, counts chunks",
        ...                              factory=CountingExecutor)]
        >>> pm = WflpPluginManager(entry_points=())
        >>> pm.register_plugin(CountingPlugin())
        'CountingPlugin'
        >>> executor = pm.get_executor("counting", log=[])
        >>> type(executor).__name__
        'CountingExecutor'
    """


@hookspec
def wflp_schedulers() -> Iterable[SchedulerSpec]:
    """Register queueing-system dialects: ``factory()`` returns a
    ``wflp.remote.scheduler.Scheduler``. A system in the systems configuration names one
    with ``scheduler = "<name>"``; the core owns the job store, transport, polling and
    resume, so a dialect only renders, submits, lists, accounts and cancels.

    Example: a dialect whose jobs are plain background processes, as ``local`` but
    named otherwise::

        >>> from wflp import hookimpl
        >>> from wflp.plugins import SchedulerSpec, WflpPluginManager
        >>> from wflp.remote.scheduler import LocalScheduler
        >>> class Nohup(LocalScheduler):
        ...     name = "nohup"
        >>> class NohupPlugin:
        ...     @hookimpl
        ...     def wflp_schedulers(self):
        ...         return [SchedulerSpec(name="nohup", summary="background processes",
        ...                               factory=Nohup)]
        >>> pm = WflpPluginManager(entry_points=())
        >>> pm.register_plugin(NohupPlugin())
        'NohupPlugin'
        >>> scheduler = pm.get_spec("schedulers", "nohup").load()()
        >>> scheduler.status_command(["12", "13"])
        ['ps', '-o', 'pid=,stat=', '-p', '12,13']
    """


@hookspec
def wflp_commands(cli: Any) -> None:
    """Add commands to the ``wflp`` command line: *cli* is its click group. Called once,
    when a command that is not built in is asked for (or ``wflp --help``); a plugin whose
    hook raises is reported and the others' commands still work.

    Example: a ``wflp hello`` command::

        >>> import click
        >>> from click.testing import CliRunner
        >>> from wflp import hookimpl
        >>> from wflp.plugins import WflpPluginManager
        >>> class HelloPlugin:
        ...     @hookimpl
        ...     def wflp_commands(self, cli):
        ...         @cli.command("hello")
        ...         @click.argument("name")
        ...         def hello(name):
        ...             click.echo(f"hello {name}")
        >>> pm = WflpPluginManager(entry_points=())
        >>> pm.register_plugin(HelloPlugin())
        'HelloPlugin'
        >>> group = click.Group("demo")
        >>> pm.add_commands(group)
        ['hello']
        >>> CliRunner().invoke(group, ["hello", "world"]).output
        'hello world\\n'
    """


@hookspec
def wflp_panels(output: Any, record: Any) -> Iterable[dict]:
    """Contribute panels to the page of an output in ``wflp browse`` (plugin wflp-web):
    *output* is the output's path (a file, or a fitted model's folder), *record* its
    ``wflp.records.Record`` (or None). Return the panels for the outputs the plugin knows,
    else nothing. A panel is a dict: ``title`` (str) and any of ``text`` (str), ``table``
    (rows of cells; everything is escaped) and ``images`` (paths of PNG files, shown only
    if inside the folder being served). A hook that raises is logged and its panels left
    out; the page is still shown. ``WflpPluginManager.call_each`` calls it that way.

    Example: a panel with the number of lines of every output file::

        >>> import pathlib, tempfile
        >>> from wflp import hookimpl
        >>> from wflp.plugins import WflpPluginManager
        >>> class LinesPlugin:
        ...     @hookimpl
        ...     def wflp_panels(self, output, record):
        ...         if pathlib.Path(output).is_file():
        ...             n = len(pathlib.Path(output).read_text().splitlines())
        ...             return [{"title": "Lines", "table": [["lines", n]]}]
        ...         return []
        >>> pm = WflpPluginManager(entry_points=())
        >>> pm.register_plugin(LinesPlugin())
        'LinesPlugin'
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = pathlib.Path(tmp) / "out.xyz"
        ...     _ = path.write_text("1\\n\\nH 0 0 0\\n")
        ...     pm.call_each("wflp_panels", output=path, record=None)
        [('LinesPlugin', [{'title': 'Lines', 'table': [['lines', 3]]}])]
    """
