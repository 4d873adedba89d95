"""``wflp new-plugin``: create a ready-to-install plugin distribution with a working example.

The distribution ``wflp-NAME`` holds a module ``wflp_NAME`` whose ``@hookimpl``
registers one example of the chosen kind under NAME, a pyproject.toml with the
``wflp`` entry point, a README and a test that checks the plugin is discovered
and that its example works. There is one example for every kind in the table of
kinds (``wflp.plugins.kinds.TABLE``); a test checks none is missing. Everything is
written to a temporary folder first and renamed into place, so a failure leaves
nothing behind.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Union

from .errors import OutputError, ParameterError, PluginError

PathLike = Union[str, "os.PathLike[str]"]

def _wflp_requirement() -> str:
    """The wflp versions a new plugin declares: those of the running core's interface."""
    from . import __version__
    from .plugins.compat import plugin_requirement

    return plugin_requirement(__version__)


@dataclasses.dataclass
class ScaffoldResult:
    """What new-plugin created."""

    root: Path                # the distribution's folder
    distribution: str         # e.g. wflp-my-calc
    module: str               # e.g. wflp_my_calc
    kind: str                 # plural kind of the example
    registered: str           # the name it registers
    files: list[Path]         # every file written, in order


def plugin_names(name: str) -> tuple[str, str, str]:
    """(registered name, distribution, module) for NAME, normalized like the registry.

    >>> plugin_names("My-Calc")
    ('my_calc', 'wflp-my-calc', 'wflp_my_calc')
    """
    from .plugins.types import normalize_name

    try:
        norm = normalize_name(name)
    except PluginError:
        raise ParameterError(
            f"invalid plugin name {name!r}: use letters, digits, '-' and '_', starting with a "
            "letter (e.g. my-calc)") from None
    if norm.startswith("wflp_"):
        raise ParameterError(
            f"plugin name {name!r}: leave out the 'wflp' prefix, it is added for you "
            f"(try {norm[5:] or 'NAME'!r})")
    return norm, "wflp-" + norm.replace("_", "-"), "wflp_" + norm


def scaffold_plugin(name: str, directory: PathLike = ".", kind: str = "calculators",
                    ) -> ScaffoldResult:
    """Create ``DIRECTORY/wflp-NAME``; refuses (OutputError) if that path exists."""
    from .plugins.kinds import find_kind

    norm, dist, module = plugin_names(name)
    try:
        kind = find_kind(kind, named=False).name
    except PluginError as err:
        raise ParameterError(f"--kind: {err}") from None
    parent = Path(directory)
    root = parent / dist
    if root.exists() or root.is_symlink():
        raise OutputError(
            f"{str(root)!r} already exists; new-plugin never overwrites: choose another NAME "
            "or --dir, or remove it first")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"--dir {str(parent)!r} is not a folder")
    files = render(norm, kind)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dist}.tmp-", dir=parent))
    try:
        for rel, text in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        if root.exists():  # created meanwhile
            raise OutputError(f"{str(root)!r} already exists; new-plugin never overwrites")
        os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ScaffoldResult(root, dist, module, kind, norm, [root / rel for rel in files])


def render(name: str, kind: str) -> dict[str, str]:
    """The files of a plugin registering *name* as *kind* (plural): {relative path: text}."""
    from .plugins.kinds import BY_NAME

    if kind not in _EXAMPLES:
        raise ParameterError(f"cannot scaffold kind {kind!r}; use one of "
                             f"{', '.join(_EXAMPLES)}")
    dist = "wflp-" + name.replace("_", "-")
    module = "wflp_" + name
    example = _EXAMPLES[kind]
    subs = {
        "{{NAME}}": name,
        "{{COMMAND}}": name.replace("_", "-"),
        "{{DIST}}": dist,
        "{{MODULE}}": module,
        "{{KIND}}": kind,
        "{{KIND1}}": kind[:-1],
        "{{REGISTERED}}": '["{{NAME}}"]' if BY_NAME[kind].named else "[]",
        "{{WFLP_REQUIREMENT}}": _wflp_requirement(),
        "{{SUMMARY}}": example["summary"],
        "{{HOOK}}": example["hook"],
        "{{USAGE}}": example["usage"],
    }

    def fill(text: str) -> str:
        for key in ("{{HOOK}}", "{{USAGE}}", "{{REGISTERED}}", "{{SUMMARY}}"):  # hold others
            text = text.replace(key, subs[key])
        for key, value in subs.items():
            text = text.replace(key, value)
        return text.lstrip("\n")

    return {
        "pyproject.toml": fill(_PYPROJECT),
        "README.md": fill(_README),
        f"{module}/__init__.py": fill(_INIT),
        f"{module}/{example['module']}.py": fill(example["code"]),
        f"tests/test_{name}.py": fill(_TEST_HEAD + example["test"]),
    }


# -- templates ----------------------------------------------------------------------------
# Placeholders: {{NAME}} registered name, {{DIST}} distribution, {{MODULE}} import name,
# {{KIND}} / {{KIND1}} plural / singular kind.

_PYPROJECT = '''
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{{DIST}}"
dynamic = ["version"]  # from {{MODULE}}.__version__, its one place
description = "wflp plugin: {{SUMMARY}}"
readme = "README.md"
requires-python = ">=3.9"
dependencies = ["{{WFLP_REQUIREMENT}}", "ase>=3.23"]

[project.optional-dependencies]
test = ["pytest>=7"]

# How wflp finds the plugin: entry-point group "wflp", value = the module whose
# @hookimpl functions register things. Check with `wflp list-plugins`.
[project.entry-points.wflp]
{{NAME}} = "{{MODULE}}"

[tool.setuptools]
packages = ["{{MODULE}}"]

[tool.setuptools.dynamic]
version = { attr = "{{MODULE}}.__version__" }

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

_INIT = '''
"""{{DIST}}: a wflp plugin registering the {{KIND1}} "{{NAME}}".

wflp finds this module through the entry point in pyproject.toml and calls its
@hookimpl functions the first time something is looked up. Keep this module
cheap to import: name the code that does the work by import path
("package.module:attribute"), so it is imported only when used.
"""

from wflp.plugins import hookimpl

__version__ = "0.1.0"

{{HOOK}}
'''

_README = '''
# {{DIST}}

A [wflp](https://pypi.org/project/wflp/) plugin: {{SUMMARY}}.
It registers the {{KIND1}} `{{NAME}}`.

## Install

```bash
pip install -e .            # from this folder
wflp list-plugins --kind {{KIND}}   # {{NAME}} is listed, status ok
```

## Use

{{USAGE}}

## Test

```bash
pip install -e ".[test]"
python -m pytest
```

## Layout

- `pyproject.toml`: the entry point `[project.entry-points.wflp]` that makes wflp find
  the plugin, and the dependency on `{{WFLP_REQUIREMENT}}`.
- `{{MODULE}}/__init__.py`: the `@hookimpl` registration (keep it cheap to import).
- `{{MODULE}}/`: the code that does the work, imported only when used.
- `tests/test_{{NAME}}.py`: checks the plugin is discovered and that its {{KIND1}} works.

Bump the version of an operation (`@operation(..., version=...)`) whenever a change
alters its results, so wflp does not reuse outputs made by the old code.
'''

_TEST_HEAD = '''
"""Tests of {{DIST}}: it is discovered by wflp, and its {{KIND1}} works."""

import pytest


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Discover installed plugins afresh, with every plugin allowed."""
    from wflp.plugins import reset_plugin_manager

    monkeypatch.delenv("WFLP_LOAD_PLUGINS", raising=False)
    reset_plugin_manager()
    yield
    reset_plugin_manager()


def test_plugin_is_discovered():
    from wflp.plugins import plugin_report

    records = [r for r in plugin_report() if r.distribution == "{{DIST}}"]
    assert records, "{{DIST}} is not installed: run `pip install -e .` in its folder"
    record = records[0]
    assert record.status == "ok", record.error
    assert record.registered.get("{{KIND}}") == {{REGISTERED}}

'''

_CALCULATOR = {
    "summary": "a Lennard-Jones calculator with explicit parameters (example)",
    "module": "calculator",
    "hook": '''
@hookimpl
def wflp_calculators():
    from wflp.plugins import CalculatorSpec

    return [
        CalculatorSpec(
            name="{{NAME}}",
            summary="Lennard-Jones pair potential (ASE), an example calculator",
            factory="{{MODULE}}.calculator:make_calculator",
            properties=("energy", "free_energy", "forces", "stress"),
            picklable=True,
        )
    ]
''',
    "code": '''
"""The calculator factory: wflp calls make_calculator(**params) in each process."""

from __future__ import annotations


def make_calculator(epsilon: float = 1.0, sigma: float = 1.0, rc: float | None = None,
                    smooth: bool = False):
    """An ASE Lennard-Jones calculator.

    Explicit keyword arguments (rather than **kwargs) let wflp reject a misspelled
    parameter before anything runs.
    """
    from ase.calculators.lj import LennardJones

    return LennardJones(epsilon=epsilon, sigma=sigma, rc=rc, smooth=smooth)
''',
    "usage": '''
```bash
wflp run calculator {{NAME}} -i configs.xyz -o evaluated.xyz --set epsilon=0.5 --set sigma=2.3
```

```python
from wflp import ConfigSet, OutputSpec
from wflp.ops import calculate

calculate(ConfigSet("configs.xyz"), OutputSpec("evaluated.xyz"),
          calculator=("{{NAME}}", [], {"epsilon": 0.5, "sigma": 2.3}))
```
''',
    "test": '''
def test_calculator_matches_ase():
    import numpy as np
    from ase.build import bulk
    from ase.calculators.lj import LennardJones
    from wflp import OutputSpec
    from wflp.ops import calculate
    from wflp.plugins import get_calculator

    factory = get_calculator("{{NAME}}").load()
    assert isinstance(factory(), LennardJones)

    configs = []
    for i in range(3):
        atoms = bulk("Ar", "fcc", a=5.3 + 0.1 * i, cubic=True)
        atoms.rattle(0.05, seed=i)
        configs.append(atoms)
    out = list(calculate(configs, OutputSpec(),
                         calculator=("{{NAME}}", [], {"epsilon": 0.01, "sigma": 3.4})))
    assert len(out) == 3
    for atoms, result in zip(configs, out):
        ref = atoms.copy()
        ref.calc = LennardJones(epsilon=0.01, sigma=3.4)
        assert result.info["{{NAME}}_energy"] == pytest.approx(ref.get_potential_energy())
        np.testing.assert_allclose(result.arrays["{{NAME}}_forces"], ref.get_forces(),
                                   atol=1e-10)
''',
}

_GENERATOR = {
    "summary": "randomly displaced copies of each configuration (example generator)",
    "module": "ops",
    "hook": '''
@hookimpl
def wflp_generators():
    from wflp.plugins import GeneratorSpec

    return [
        GeneratorSpec(
            name="{{NAME}}",
            summary="n_copies randomly displaced copies of each input (example)",
            operation="{{MODULE}}.ops:rattled_copies",
        )
    ]
''',
    "code": '''
"""The generator: a wflp operation, run in parallel and resumably by wflp."""

from __future__ import annotations

from wflp import operation


@operation("{{NAME}}", version="1")
def rattled_copies(atoms, n_copies: int = 2, stdev: float = 0.05, rng=None):
    """n_copies copies of atoms with Gaussian displacements (stdev in Å).

    rng is the item's own random stream (from the operation's seed), so results
    do not depend on chunking or the number of processes.
    """
    if n_copies < 0 or stdev < 0:
        raise ValueError("n_copies and stdev must be >= 0")
    if rng is None:
        raise ValueError("{{NAME}} needs a seed: pass seed=... (wflp run ... --seed N)")
    out = []
    for i in range(n_copies):
        copy = atoms.copy()
        copy.positions += rng.normal(scale=stdev, size=copy.positions.shape)
        copy.info["{{NAME}}_copy"] = i
        out.append(copy)
    return out
''',
    "usage": '''
```bash
wflp run generator {{NAME}} -i configs.xyz -o rattled.xyz --set n_copies=4 --set stdev=0.1 --seed 1
```

```python
from wflp import ConfigSet, OutputSpec
from wflp.plugins import get_generator

op = get_generator("{{NAME}}").load()
op(ConfigSet("configs.xyz"), OutputSpec("rattled.xyz"), n_copies=4, stdev=0.1, seed=1)
```
''',
    "test": '''
def test_generator_makes_reproducible_copies():
    import numpy as np
    from ase.build import bulk
    from wflp import OutputSpec
    from wflp.plugins import get_generator

    op = get_generator("{{NAME}}").load()
    configs = [bulk("Cu", "fcc", a=3.6, cubic=True), bulk("Al", "fcc", a=4.05, cubic=True)]
    first = list(op(configs, OutputSpec(), n_copies=3, stdev=0.1, seed=7))
    again = list(op(configs, OutputSpec(), n_copies=3, stdev=0.1, seed=7))
    assert len(first) == 6
    assert [a.info["{{NAME}}_copy"] for a in first] == [0, 1, 2, 0, 1, 2]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.positions, b.positions)
    moved = np.abs(first[0].positions - configs[0].positions).max()
    assert 0 < moved < 1.0
''',
}

_SELECTOR = {
    "summary": "keep configurations with at most max_atoms atoms (example selector)",
    "module": "ops",
    "hook": '''
@hookimpl
def wflp_selectors():
    from wflp.plugins import SelectorSpec

    return [
        SelectorSpec(
            name="{{NAME}}",
            summary="keep configurations with at most max_atoms atoms (example)",
            operation="{{MODULE}}.ops:select_small",
        )
    ]
''',
    "code": '''
"""The selector: a wflp operation returning the item to keep it, None to drop it."""

from __future__ import annotations

from wflp import operation


@operation("{{NAME}}", version="1")
def select_small(atoms, max_atoms: int = 8):
    """Keep atoms if it has at most max_atoms atoms."""
    return atoms if len(atoms) <= max_atoms else None
''',
    "usage": '''
```bash
wflp run selector {{NAME}} -i configs.xyz -o small.xyz --set max_atoms=4
```

```python
from wflp import ConfigSet, OutputSpec
from wflp.plugins import get_selector

op = get_selector("{{NAME}}").load()
op(ConfigSet("configs.xyz"), OutputSpec("small.xyz"), max_atoms=4)
```
''',
    "test": '''
def test_selector_keeps_small_configurations():
    from ase.build import molecule
    from wflp import OutputSpec
    from wflp.plugins import get_selector

    op = get_selector("{{NAME}}").load()
    configs = [molecule("H2O"), molecule("C6H6"), molecule("CH4"), molecule("H2")]
    kept = list(op(configs, OutputSpec(), max_atoms=3))
    assert [a.get_chemical_formula() for a in kept] == ["H2O", "H2"]
''',
}

_FITTER = {
    "summary": "fits a constant energy per atom and evaluates it (example fitter)",
    "module": "fit",
    "hook": '''
@hookimpl
def wflp_fitters():
    from wflp.plugins import FitterSpec

    return [
        FitterSpec(
            name="{{NAME}}",
            summary="mean energy per atom of the training set (example)",
            fit="{{MODULE}}.fit:fit",
            calculator="{{NAME}}",
            model_argument="potential",
        )
    ]


@hookimpl
def wflp_calculators():
    from wflp.plugins import CalculatorSpec

    return [
        CalculatorSpec(
            name="{{NAME}}",
            summary="evaluates a potential fitted by the {{NAME}} fitter",
            factory="{{MODULE}}.fit:make_calculator",
            properties=("energy", "free_energy", "forces"),
            picklable=True,
        )
    ]
''',
    "code": '''
"""The fitter: fit(training, workdir, **params) -> path of the fitted potential,
and the calculator that evaluates that potential. wflp.ops.fit calls it with the path of
an extended-XYZ training file and a fresh run directory."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
from ase.calculators.calculator import Calculator, all_changes


def fit(training, workdir, energy_key: str = "ref_energy") -> Path:
    """Fit E = e0 * number of atoms to the training energies (info[energy_key])."""
    per_atom = []
    for atoms in ase.io.read(training, ":"):
        if energy_key not in atoms.info:
            raise ValueError(f"a training configuration has no info[{energy_key!r}]")
        per_atom.append(atoms.info[energy_key] / len(atoms))
    if not per_atom:
        raise ValueError("the training set is empty")
    path = Path(workdir) / "{{NAME}}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"e0": float(np.mean(per_atom))}))
    return path


class ConstantPerAtom(Calculator):
    """Energy e0 per atom; zero forces."""

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, e0: float, **kwargs):
        super().__init__(**kwargs)
        self.e0 = float(e0)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy = self.e0 * len(self.atoms)
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": np.zeros((len(self.atoms), 3))}


def make_calculator(potential: str) -> ConstantPerAtom:
    """The calculator for a potential file written by fit()."""
    data = json.loads(Path(potential).read_text())
    return ConstantPerAtom(e0=data["e0"])
''',
    "usage": '''
```python
from wflp import ConfigSet, OutputSpec
from wflp.ops import OutputModel, calculate, fit

model = fit(ConfigSet("training.xyz"), OutputModel("{{NAME}}_model"), fitter="{{NAME}}",
            params={"energy_key": "ref_energy"})
calculate(ConfigSet("configs.xyz"), OutputSpec("evaluated.xyz"), calculator=model.calculator)
```
''',
    "test": '''
def test_fit_then_evaluate(tmp_path):
    from ase.build import molecule
    from wflp import OutputSpec
    from wflp.ops import OutputModel, calculate, fit

    h2, h2o = molecule("H2"), molecule("H2O")
    h2.info["ref_energy"], h2o.info["ref_energy"] = -2.0, -6.0   # -1 and -2 per atom
    model = fit([h2, h2o], OutputModel(tmp_path / "model"), fitter="{{NAME}}")
    assert model.main_file.exists()
    out = list(calculate([molecule("CH4")], OutputSpec(), calculator=model.calculator))
    assert out[0].info["{{NAME}}_energy"] == pytest.approx(-1.5 * 5)
''',
}

_EXECUTOR = {
    "summary": "runs chunks in a process pool of its own (example executor)",
    "module": "executor",
    "hook": '''
@hookimpl
def wflp_executors():
    from wflp.plugins import ExecutorSpec

    return [
        ExecutorSpec(
            name="{{NAME}}",
            summary="chunks in a concurrent.futures process pool (example)",
            factory="{{MODULE}}.executor:ProcessExecutor",
        )
    ]
''',
    "code": '''
"""The executor: map_chunks(tasks, autopara_info) yields one ChunkResult per task, in order."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ProcessPoolExecutor

from wflp.engine import run_chunk
from wflp.exec import Executor


class ProcessExecutor(Executor):
    """Runs chunks in a concurrent.futures process pool, keeping a bounded window of
    chunks in flight so that the inputs are never read far ahead of the workers.
    Results come back to the driver (shares_files False), which writes them."""

    name = "{{NAME}}"

    def __init__(self, max_workers: int | None = None):
        self.max_workers = max_workers

    def map_chunks(self, tasks, autopara_info):
        workers = self.max_workers or autopara_info.num_python_subprocesses or 1
        pending = deque()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for task in tasks:
                pending.append(pool.submit(run_chunk, task))
                while len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
''',
    "usage": '''
```python
from wflp import AutoparaInfo, ConfigSet, OutputSpec
from wflp.ops import calculate

calculate(ConfigSet("configs.xyz"), OutputSpec("evaluated.xyz"), calculator="emt",
          autopara_info=AutoparaInfo(executor="{{NAME}}", num_python_subprocesses=2))
```
''',
    "test": '''
def test_executor_gives_the_serial_results():
    import numpy as np
    from ase.build import bulk
    from wflp import AutoparaInfo, OutputSpec
    from wflp.ops import calculate
    from wflp.plugins import get_executor

    assert callable(get_executor("{{NAME}}").map_chunks)
    configs = []
    for i in range(6):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=i)
        configs.append(atoms)
    info = AutoparaInfo(executor="{{NAME}}", num_python_subprocesses=2,
                        num_inputs_per_python_subprocess=2)
    parallel = list(calculate(configs, OutputSpec(), calculator="emt", autopara_info=info))
    serial = list(calculate(configs, OutputSpec(), calculator="emt"))
    assert len(parallel) == 6
    for a, b in zip(parallel, serial):
        assert a.info["emt_energy"] == pytest.approx(b.info["emt_energy"], abs=1e-10)
        np.testing.assert_allclose(a.arrays["emt_forces"], b.arrays["emt_forces"], atol=1e-10)
''',
}

_DESCRIPTOR = {
    "summary": "sorted Coulomb-matrix eigenvalues of each configuration (example descriptor)",
    "module": "ops",
    "hook": '''
@hookimpl
def wflp_descriptors():
    from wflp.plugins import DescriptorSpec

    return [
        DescriptorSpec(
            name="{{NAME}}",
            summary="sorted Coulomb-matrix eigenvalues in info['{{NAME}}'] (example)",
            operation="{{MODULE}}.ops:coulomb_eigenvalues",
            key="{{NAME}}",
        )
    ]
''',
    "code": '''
"""The descriptor: a wflp operation storing one vector per configuration in info[key],
which wflp's global selectors (select_cur, select_fps) read with key=..."""

from __future__ import annotations

import numpy as np
from wflp import operation


@operation("{{NAME}}", version="1")
def coulomb_eigenvalues(atoms, size: int = 16, key: str = "{{NAME}}"):
    """The eigenvalues of the Coulomb matrix (Rupp et al. 2012), largest first, padded
    with zeros to size: the same for any rotation, translation or order of the atoms.
    Distances ignore periodic images (a descriptor of molecules and clusters)."""
    if len(atoms) > size:
        raise ValueError(f"{len(atoms)} atoms, more than size={size}: raise size")
    z = atoms.numbers.astype(float)
    distances = atoms.get_all_distances()
    np.fill_diagonal(distances, 1.0)
    matrix = np.outer(z, z) / distances
    np.fill_diagonal(matrix, 0.5 * z**2.4)
    values = np.sort(np.linalg.eigvalsh(matrix))[::-1]
    atoms.info[key] = np.pad(values, (0, size - len(values)))
    return atoms
''',
    "usage": '''
```bash
wflp run descriptor {{NAME}} -i configs.xyz -o described.xyz --set size=32
wflp run selector select_fps -i described.xyz -o diverse.xyz --set n_select=10 --set key={{NAME}}
```

```python
from wflp import ConfigSet, OutputSpec
from wflp.ops import select_fps
from wflp.plugins import get_descriptor

spec = get_descriptor("{{NAME}}")
described = spec.load()(ConfigSet("configs.xyz"), OutputSpec("described.xyz"), size=32)
select_fps(described, OutputSpec("diverse.xyz"), n_select=10, key=spec.key)
```
''',
    "test": '''
def test_descriptor_is_invariant_and_feeds_a_selector():
    import numpy as np
    from ase.build import molecule
    from wflp import OutputSpec
    from wflp.ops import select_fps
    from wflp.plugins import get_descriptor

    spec = get_descriptor("{{NAME}}")
    water = molecule("H2O")
    turned = water.copy()
    turned.rotate(40, "z")
    turned.translate([1.0, 2.0, 3.0])
    turned = turned[[2, 0, 1]]
    first, second = spec.load()([water, turned], OutputSpec(), size=8)
    assert first.info[spec.key].shape == (8,)
    np.testing.assert_allclose(first.info[spec.key], second.info[spec.key], atol=1e-10)

    rng = np.random.default_rng(0)
    names = ("H2O", "CH4", "NH3", "C2H4")
    pool = []
    for i in range(20):
        mol = molecule(names[i % 4])
        mol.positions += rng.normal(scale=0.02, size=mol.positions.shape)
        pool.append(mol)
    described = list(spec.load()(pool, OutputSpec(), size=8))
    picked = select_fps(described, OutputSpec(), n_select=4, key=spec.key)
    assert sorted(a.get_chemical_formula() for a in picked) == ["C2H4", "CH4", "H2O", "H3N"]
''',
}

_SCHEDULER = {
    "summary": "jobs as background processes at a lower CPU priority (example scheduler)",
    "module": "scheduler",
    "hook": '''
@hookimpl
def wflp_schedulers():
    from wflp.plugins import SchedulerSpec

    return [
        SchedulerSpec(
            name="{{NAME}}",
            summary="jobs as background processes under nice, no queue (example)",
            factory="{{MODULE}}.scheduler:NiceScheduler",
        )
    ]
''',
    "code": '''
"""The scheduler: the dialect of a queueing system, here wflp's built-in "local" one
(jobs as background processes) with each job started under `nice`. A dialect only builds
commands (argv lists) and parses their output; wflp runs them, locally or over SSH, and
owns the job store, polling and resume. A real queue overrides every *_command and
parse_* method (see wflp.remote.scheduler.Scheduler and the wflp-slurm plugin)."""

from __future__ import annotations

import shlex

from wflp.remote.scheduler import JobScript, LocalScheduler


class NiceScheduler(LocalScheduler):
    """Like the local scheduler, but jobs run at a lower CPU priority."""

    name = "{{NAME}}"
    niceness = 10

    def submit_command(self, script: str, job: JobScript) -> list[str]:
        # every path is quoted: job names and folders come from the user
        inner = (f"cd {shlex.quote(job.directory)} && setsid nice -n {int(self.niceness)} "
                 f"sh {shlex.quote(script)} > {shlex.quote(job.stdout)} "
                 f"2> {shlex.quote(job.stderr)} < /dev/null & echo $!")
        return ["sh", "-c", inner]
''',
    "usage": '''
A system in `wflp-systems.toml` names the scheduler:

```toml
[systems.background]
scheduler = "{{NAME}}"
```

```python
from wflp.remote import submit

job = submit(sum, args=([1, 2, 3],), system="background")
print(job.result(timeout="1m"))   # 6
```
''',
    "test": '''
def test_jobs_run_under_nice(tmp_path, monkeypatch):
    import os

    from wflp.plugins import get_scheduler
    from wflp.remote import submit
    from wflp.remote.scheduler import CommandResult, JobState
    from wflp.testing import scaled
    from wflp.testing_remote import write_systems

    dialect = get_scheduler("{{NAME}}").load()()
    listing = CommandResult(("ps",), 0, "  41 SN\\n  42 Z\\n", "")
    statuses = dialect.parse_status(listing, ["41", "42"])
    assert statuses["41"].state == JobState.RUNNING and "42" not in statuses

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WFLP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WFLP_SYSTEMS", raising=False)
    write_systems(tmp_path, tmp_path, "{{NAME}}")
    job = submit(os.nice, args=(0,), system="{{NAME}}")
    assert job.result(timeout=scaled(120)) == min(os.nice(0) + dialect.niceness, 19)
''',
}

_COMMANDS = {
    "summary": "a `wflp {{COMMAND}}` command counting configurations by formula (example)",
    "module": "commands",
    "hook": '''
@hookimpl
def wflp_commands(cli):
    from {{MODULE}}.commands import add_commands

    add_commands(cli)
''',
    "code": '''
"""The command: wflp calls add_commands(cli) with its click group the first time a
command that is not built in is asked for (or `wflp --help`)."""

from __future__ import annotations

import click


def add_commands(cli: click.Group) -> None:
    @cli.command("{{COMMAND}}")
    @click.argument("files", nargs=-1, required=True,
                    type=click.Path(exists=True, dir_okay=False))
    def count_formulas(files):
        """How many configurations of each chemical formula FILES hold."""
        from collections import Counter

        from wflp import ConfigSet

        counts = Counter(at.get_chemical_formula() for at in ConfigSet(list(files)))
        for formula, n in sorted(counts.items()):
            click.echo(f"{formula}\\t{n}")
''',
    "usage": '''
```bash
wflp {{COMMAND}} md.xyz more.xyz
wflp --help          # lists it among the commands
```
''',
    "test": '''
def test_command_counts_formulas(tmp_path):
    import ase.io
    from ase.build import molecule
    from click.testing import CliRunner
    from wflp.cli import cli

    ase.io.write(tmp_path / "mols.xyz", [molecule("H2O"), molecule("CH4"), molecule("H2O")])
    result = CliRunner().invoke(cli, ["{{COMMAND}}", str(tmp_path / "mols.xyz")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["CH4\\t1", "H2O\\t2"]
    missing = CliRunner().invoke(cli, ["{{COMMAND}}", str(tmp_path / "none.xyz")])
    assert missing.exit_code == 2
''',
}

_PANELS = {
    "summary": "a panel counting an output's configurations in `wflp browse` (example)",
    "module": "panels",
    "hook": '''
@hookimpl
def wflp_panels(output, record):
    from {{MODULE}}.panels import panels

    return panels(output, record)
''',
    "code": '''
"""The panel: `wflp browse` (plugin wflp-web) asks every plugin for panels on the page of
an output. Return [] for outputs this plugin knows nothing about."""

from __future__ import annotations

from pathlib import Path


def panels(output, record) -> list[dict]:
    """A table of the configurations in an extended-XYZ output, by chemical formula."""
    path = Path(output)
    if not path.is_file() or path.suffix != ".xyz":
        return []
    from collections import Counter

    import ase.io

    counts = Counter(at.get_chemical_formula() for at in ase.io.iread(path, ":"))
    rows = [[formula, n] for formula, n in sorted(counts.items())]
    return [{"title": "Configurations by formula", "table": [["formula", "count"], *rows]}]
''',
    "usage": '''
```bash
pip install wflp-web
wflp browse            # an output's page shows the panel "Configurations by formula"
```
''',
    "test": '''
def test_panel_counts_configurations(tmp_path):
    import ase.io
    from ase.build import molecule
    from wflp.plugins import get_plugin_manager

    path = tmp_path / "mols.xyz"
    ase.io.write(path, [molecule("H2O"), molecule("CH4"), molecule("H2O")])
    given = dict(get_plugin_manager().call_each("wflp_panels", output=path, record=None))
    [panel] = given["{{NAME}}"]
    assert panel["table"] == [["formula", "count"], ["CH4", 1], ["H2O", 2]]
    other = dict(get_plugin_manager().call_each("wflp_panels", output=tmp_path, record=None))
    assert other["{{NAME}}"] == []
''',
}

_EXAMPLES = {"calculators": _CALCULATOR, "generators": _GENERATOR, "selectors": _SELECTOR,
             "fitters": _FITTER, "descriptors": _DESCRIPTOR, "executors": _EXECUTOR,
             "schedulers": _SCHEDULER, "commands": _COMMANDS, "panels": _PANELS}
"""One example per kind of wflp.plugins.kinds.TABLE, in its order."""
SCAFFOLD_KINDS = tuple(_EXAMPLES)

__all__ = ["SCAFFOLD_KINDS", "ScaffoldResult", "plugin_names", "render", "scaffold_plugin"]
