"""A griffe extension (mkdocs.yml, mkdocstrings options): Sphinx roles in docstrings as links.

wflp's docstrings name other objects the Sphinx way, ``:class:`Record``` or
``:mod:`.chunks```, which Markdown would show as ":class:" and a code span. Here each
role becomes a code span that links to the object's entry in the API reference: the
target is resolved the way a reader would, relative to the object whose docstring names
it (its class, its module, the packages above), and linked as an *optional*
cross-reference, so a target without an entry (``ase.Atoms``, a private helper) stays
plain code instead of failing the build. Links written in Markdown (``[x][wflp.x]``)
are still checked strictly.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

#: ``:role:`target``` with the roles wflp's docstrings use
ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|attr|data|exc|obj|const):`(?P<target>[^`]+)`")


def _find(collection: Any, path: str) -> str | None:
    """The path of the object *path* names, where it is defined (an alias is followed to
    its target); None if griffe loaded nothing by that path."""
    try:
        found = collection.get_member(path)
        return found.final_target.path if found.is_alias else found.path
    except Exception:  # KeyError, an alias that cannot be resolved, a cycle: not there
        return None


def _scopes(obj: griffe.Object) -> list[str]:
    """Where a name in *obj*'s docstring is looked up: its class or module, then each
    enclosing module and package, innermost first."""
    scopes = []
    current: Any = obj if obj.is_module or obj.is_class else obj.parent
    while current is not None:
        scopes.append(current.path)
        current = current.parent
    return scopes


def resolve(obj: griffe.Object, target: str, collection: Any,
            by_suffix: dict[str, list[str]]) -> str:
    """The full path of *target* as named in *obj*'s docstring: relative to *obj*'s
    scopes, else the one object of the package whose path ends with it; *target* itself
    when it names nothing loaded (another package's object: the link is then left out)."""
    if target.startswith("."):
        module = obj if obj.is_module else obj.module
        bases = [module.path] + ([module.parent.path] if module.parent is not None else [])
        candidates = [base + target for base in bases]
    else:
        candidates = [target] + [f"{scope}.{target}" for scope in _scopes(obj)]
    for candidate in candidates:
        found = _find(collection, candidate)
        if found is not None:
            return found
    unique = by_suffix.get(target.lstrip("."), [])
    return unique[0] if len(unique) == 1 else target


def _rewrite(obj: griffe.Object, collection: Any, by_suffix: dict[str, list[str]]
             ) -> None:
    docstring = obj.docstring
    if docstring is None or ":`" not in docstring.value:
        return

    def link(match: re.Match[str]) -> str:
        target = match["target"].strip()
        short = target.startswith("~")
        target = target.lstrip("~")
        shown = target.rsplit(".", 1)[-1] if short else target
        identifier = resolve(obj, target, collection, by_suffix)
        return (f'<autoref identifier="{html.escape(identifier)}" optional>'
                f"<code>{html.escape(shown)}</code></autoref>")

    docstring.value = ROLE.sub(link, docstring.value)


class RstRoles(griffe.Extension):
    """Rewrites the roles of every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader,
                   **kwargs: Any) -> None:
        """Visit every object of *pkg* (aliases are visited where they are defined)."""
        objects: list[griffe.Object] = []
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            objects.append(obj)
            stack.extend(m for m in obj.members.values() if not m.is_alias)
        # "Record.to_json" -> every path that ends with it, for names out of scope
        by_suffix: dict[str, list[str]] = {}
        for obj in objects:
            parts = obj.path.split(".")
            for i in range(1, len(parts)):
                by_suffix.setdefault(".".join(parts[i:]), []).append(obj.path)
        for obj in objects:
            _rewrite(obj, loader.modules_collection, by_suffix)
