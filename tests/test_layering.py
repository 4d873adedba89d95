"""The layers of wflp's core, checked: a module imports only from its own layer or below.

Lowest first (CONTRIBUTING.md, "Typing and layering"):

 0. wflp.errors, wflp.io, wflp.configset, wflp.standin   no wflp import but these
 1. wflp.records                                        what made an output
 2. wflp.engine                                         operations, chunks, the driver
 3. wflp.plugins                                        the registry of named things
 4. wflp.remote                                         queued jobs, schedulers, transports
 5. wflp.exec                                           the built-in executors
 6. wflp.calculators, wflp.ops                          calculators and operations
 7. wflp.analysis, wflp.db, wflp.iterate                tools over finished outputs
 8. wflp.chain, wflp.cli, wflp.db_cli, wflp.records_cli, wflp.scaffold, wflp.testing,
    wflp.testing_remote, wflp.testing_scheduler         front ends and test helpers, and
    wflp itself (its public names) with wflp._wiring    the composition root

Every import counts: at module level, inside functions, under TYPE_CHECKING, and an
import path written as a string ("wflp.exec.local:SerialExecutor", or a literal given to
importlib.import_module), so that an upward import cannot hide. A lower layer that
needs something from above exposes a registration point that the higher layer (or the
composition root, wflp._wiring) fills. Two exceptions, each with its reason:
``from wflp import __version__`` (a constant of the root, read everywhere), and the
import paths in plugin specs of wflp.plugins.builtin, which are data the registry loads
on use, like any plugin's.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core" / "wflp"

LAYERS: list[tuple[str, ...]] = [
    ("wflp.errors", "wflp.io", "wflp.configset", "wflp.standin"),
    ("wflp.records",),
    ("wflp.engine",),
    ("wflp.plugins",),
    ("wflp.remote",),
    ("wflp.exec",),
    ("wflp.calculators", "wflp.ops"),
    ("wflp.analysis", "wflp.db", "wflp.iterate"),
    ("wflp.chain", "wflp.cli", "wflp.db_cli", "wflp.records_cli", "wflp.scaffold",
     "wflp.testing", "wflp.testing_remote", "wflp.testing_scheduler", "wflp",
     "wflp._wiring"),
]

#: names any layer may import from the root package
ROOT_CONSTANTS = {"__version__"}
#: modules whose "module:attr" strings are plugin-spec data, not imports
SPEC_DATA = {"wflp.plugins.builtin"}

_IMPORT_PATH = re.compile(r"^(wflp(?:\.[A-Za-z_]\w*)*):[A-Za-z_][\w.]*$")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The layer of *module*: that of the longest listed name it is, or is under."""
    best, found = -1, None
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), index
    if found is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to the "
                             "contract in CONTRIBUTING.md)")
    return found


def imports_of(path: Path) -> list[tuple[int, str, str]]:
    """(line, imported wflp module, how) for every import of wflp in the file."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, "import") for a in node.names
                      if a.name.split(".")[0] == "wflp"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "wflp":
                continue
            for alias in node.names:
                if target == "wflp" and alias.name in ROOT_CONSTANTS:
                    continue
                # "from pkg import sub" imports the submodule pkg.sub when there is one
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) else target, "from"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and module not in SPEC_DATA:
            match = _IMPORT_PATH.match(node.value)
            if match:
                found.append((node.lineno, match.group(1), "import path"))
        elif isinstance(node, ast.Call) and _is_import_module(node) and node.args \
                and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) \
                and node.args[0].value.startswith("wflp"):
            found.append((node.lineno, node.args[0].value, "import_module"))
    return sorted(found)


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (CORE / rel).with_suffix(".py").is_file() or (CORE / rel / "__init__.py").is_file()


def _is_import_module(node: ast.Call) -> bool:
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or \
        (isinstance(func, ast.Name) and func.id in ("import_module", "__import__"))


SOURCES = sorted(CORE.rglob("*.py"))


def upward_imports(path: Path) -> list[str]:
    module = module_name(path)
    mine = layer_of(module)
    return [f"{path.relative_to(CORE.parent)}:{line}: {module} (layer {mine}) imports "
            f"{target} (layer {layer_of(target)}) [{how}]"
            for line, target, how in imports_of(path) if layer_of(target) > mine]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_module_imports_from_a_higher_layer(path):
    assert upward_imports(path) == []


def test_every_module_has_a_layer():
    assert [m for m in map(module_name, SOURCES) if layer_of(m) < 0] == []


def test_the_check_sees_every_kind_of_import(tmp_path, monkeypatch):
    """Each way of importing that the check claims to see, planted in an engine module,
    is reported; a sideways or downward import is not."""
    fake = tmp_path / "wflp"
    (fake / "engine").mkdir(parents=True)
    for rel in ("__init__.py", "engine/__init__.py", "exec/__init__.py", "exec/local.py",
                "plugins/__init__.py", "records/__init__.py", "calculators/__init__.py"):
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text("")
    (fake / "engine" / "bad.py").write_text(
        "from __future__ import annotations\n"
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "from ..records import x\n"                       # downward: fine
        "from . import other\n"                           # same layer: fine
        "from .. import __version__\n"                    # the root's constant: fine
        "if TYPE_CHECKING:\n"
        "    from ..exec.local import SerialExecutor\n"   # 8: under TYPE_CHECKING
        "def f():\n"
        "    from ..plugins import get_executor\n"        # 10: inside a function
        "    import wflp.calculators\n"                   # 11: absolute
        "    return importlib.import_module('wflp.exec')\n"   # 12: import_module
        "TABLE = {'serial': 'wflp.exec.local:SerialExecutor'}\n"  # 13: import path
        "from .. import exec\n")                          # 14: a subpackage by name
    monkeypatch.setattr(sys.modules[__name__], "CORE", fake)
    found = upward_imports(fake / "engine" / "bad.py")
    assert [int(line.split(":")[1]) for line in found] == [8, 10, 11, 12, 13, 14]
