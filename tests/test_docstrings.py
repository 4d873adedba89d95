"""The API reference (docs/api/, built by scripts/docs.sh) has something to show for every
public definition of the core, and shows every public module.

Public, here: a module of core/wflp whose dotted name has no part that starts with "_";
in it, a top-level function or class whose name does not start with "_" (or that the
module's ``__all__`` exports), and a method, property or nested class of a public class
whose name does not start with "_". Dunder methods (``__init__``, ``__call__``) mean what
Python says. The ``test_*`` methods of the test kits' contract classes are left out too:
each is a test, named by the sentence it checks, which pytest shows when it fails.

Read with ``ast`` (nothing is imported), so the check is fast and does not need the docs
tools.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"
API = ROOT / "docs" / "api"

#: public modules that the API reference does not render, each with its reason
LEFT_OUT = {
    "wflp.cli": "the `wflp` command: docs/cli.md",
    "wflp.records_cli": "`wflp records` and `wflp lineage`: docs/cli.md",
    "wflp.db_cli": "`wflp db collect`: docs/db.md",
    "wflp.remote.cli": "`wflp jobs`: docs/remote.md",
    "wflp.analysis.cli": "`wflp errors`: docs/cli.md",
    "wflp.scaffold": "`wflp new-plugin`: docs/plugins.md",
    "wflp.remote.runner": "what runs inside a queued job (`python -m wflp.remote.runner`)",
    "wflp.engine.run": "the engine's driver, reached through operations",
    "wflp.engine.stage": "the engine's chunk files, reached through operations",
    "wflp.engine.batch": "a queued job's batch, reached through the queue executor",
    "wflp.exec.base": "only re-exports the executor contract of wflp.engine.executor",
    "wflp.plugins.builtin": "wflp's own hook implementations: what they register is "
                            "listed by `wflp list-plugins`",
}

#: ``::: target`` and its indented options block
DIRECTIVE = re.compile(r"^::: *(?P<target>\S+) *\n(?P<options>(?:[ \t]+\S.*\n?)*)", re.M)
MEMBERS = re.compile(r"^\s*members:\s*(?P<value>false|\[[^\]]*\])", re.M)


def _module_files() -> dict[str, Path]:
    """Every public module of core/wflp by dotted name."""
    modules = {}
    for path in sorted((CORE / "wflp").rglob("*.py")):
        parts = path.relative_to(CORE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue
        modules[".".join(parts)] = path
    return modules


MODULES = _module_files()


def _exported(tree: ast.Module) -> set[str]:
    """The names in a module's literal ``__all__`` (empty if it has none)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            try:
                return set(ast.literal_eval(node.value))
            except ValueError:  # computed (wflp/__init__.py): nothing declared here
                return set()
    return set()


def _public_definitions(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """(qualified name, node) of every public function, class and method of *tree*."""
    exported = _exported(tree)
    found: list[tuple[str, ast.AST]] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            name = node.name
            if prefix:
                public = not name.startswith("_") and not (
                    name.startswith("test_") and isinstance(node, ast.FunctionDef))
            else:
                public = not name.startswith("_") or name in exported
            if not public:
                continue
            found.append((prefix + name, node))
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{name}.")

    visit(tree.body, "")
    return found


def _own_names(tree: ast.Module) -> set[str]:
    """The public names a module defines itself: functions, classes, and the constants
    its ``__all__`` exports (not the names it imports)."""
    names = {name for name, _ in _public_definitions(tree) if "." not in name}
    exported = _exported(tree)
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        names |= {t.id for t in targets if isinstance(t, ast.Name) and t.id in exported}
    return names


def _directives() -> list[tuple[str, str, str | None]]:
    """(page, target, members option or None) for every ``:::`` directive in docs/api."""
    found = []
    for page in sorted(API.glob("*.md")):
        for match in DIRECTIVE.finditer(page.read_text(encoding="utf-8")):
            members = MEMBERS.search(match["options"])
            found.append((page.name, match["target"], members["value"] if members else None))
    return found


def _parse(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(encoding="utf-8"), str(MODULES[module]))


def test_every_public_definition_has_a_docstring():
    missing = [f"{module}:{name} ({MODULES[module].relative_to(ROOT)}:{node.lineno})"
               for module in MODULES
               for name, node in _public_definitions(_parse(module))
               if ast.get_docstring(node) is None]
    assert not missing, (
        f"{len(missing)} public definitions have no docstring; write a short one saying "
        "what it is and why (it is their entry in the API reference):\n  "
        + "\n  ".join(missing))


def test_the_rule_finds_what_it_should():
    """The rule itself: a missing docstring is found at each level, private and test names
    are not asked for one."""
    tree = ast.parse(
        "__all__ = ['_exported']\n"
        "def bare(): pass\n"
        "def _private(): pass\n"
        "def _exported(): pass\n"
        "class Kit:\n"
        "    '''A kit.'''\n"
        "    def method(self): pass\n"
        "    def _helper(self): pass\n"
        "    def __init__(self): pass\n"
        "    def test_checks_something(self): pass\n"
        "    @property\n"
        "    def value(self):\n"
        "        '''The value.'''\n")
    undocumented = [name for name, node in _public_definitions(tree)
                    if ast.get_docstring(node) is None]
    assert undocumented == ["bare", "_exported", "Kit.method"]


def test_every_public_module_is_in_the_api_reference_or_left_out_with_a_reason():
    rendered = {target for _, target, _ in _directives()}
    unknown = sorted(t for t in rendered if t not in MODULES
                     and t.rpartition(".")[0] not in MODULES)
    assert not unknown, f"docs/api names modules that do not exist: {unknown}"
    absent = sorted(set(MODULES) - rendered - set(LEFT_OUT))
    assert not absent, (
        f"public modules missing from the API reference: {absent}; add a `::: module` "
        "directive to a page of docs/api/ (or, for a front end, to LEFT_OUT here with "
        "the reason)")
    stale = sorted(m for m in LEFT_OUT if m not in MODULES or m in rendered)
    assert not stale, f"LEFT_OUT names modules that are gone or rendered after all: {stale}"


def test_a_module_rendered_with_chosen_members_shows_all_it_defines():
    """``members: false`` or ``members: [...]`` hides what a package re-exports (shown where
    it is defined); what the module defines itself must not be hidden with it."""
    checked = 0
    for page, target, members in _directives():
        if members is None or target not in MODULES:
            continue
        chosen = set() if members == "false" else set(re.findall(r"[A-Za-z_]\w*", members))
        hidden = sorted(_own_names(_parse(target)) - chosen)
        assert not hidden, (
            f"docs/api/{page}: `::: {target}` leaves out what it defines: {hidden}; add "
            "them to its `members:` option")
        checked += 1
    assert checked >= 5


def test_every_docs_page_is_in_the_nav():
    """mkdocs' strict build fails on this too (validation: omitted_files); said here
    without the docs tools."""
    nav = set(re.findall(r":\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages - nav == set(), "docs pages not in mkdocs.yml's nav"
    assert nav - pages == set(), "mkdocs.yml's nav names pages that do not exist"


@pytest.mark.parametrize("page", sorted(p.name for p in API.glob("*.md")))
def test_api_pages_are_listed_on_the_api_index(page):
    if page != "index.md":
        assert f"]({page})" in (API / "index.md").read_text(encoding="utf-8")
