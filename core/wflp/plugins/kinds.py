"""The kinds of wflp extension, in one table.

Every hook in ``wflp.plugins.hookspecs`` is one kind of extension, listed once
here with its hook, the spec dataclass its hook returns, what it stands for, how
it is used and which command lists it. The plugin manager, ``wflp.plugins``,
``wflp list-plugins``, ``wflp new-plugin`` (the scaffold), chains (``wflp run``)
and docs/plugins.md all read this table; a test checks that every hookspec is in
it and that the docs show it. To add a kind: add its hookspec (with a doctest),
its spec dataclass, a row here, a scaffold example, and a docs section.

Two sorts of kind:
- *named* kinds (``spec`` set): the hook returns specs registering names that
  users look up (``get_spec(kind, name)``); a plugin's names show in
  ``wflp list-plugins`` and two plugins may not register the same name.
- *contributing* kinds (``spec`` None): the hook is called with arguments when
  needed (``wflp_commands(cli)``, ``wflp_panels(output, record)``) and registers
  no names; ``wflp list-plugins`` shows that a plugin implements it.

Descriptors are a named kind of their own, not generators: an operation that adds a
vector to each configuration is what global selectors (CUR, FPS) consume, so a
descriptor declares the key it writes and ``wflp list-plugins --kind descriptors``
answers "what can select_cur use". See docs/plugins.md, "The kinds of extension".
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from ..errors import UnknownNameError
from .types import (
    CalculatorSpec,
    DescriptorSpec,
    ExecutorSpec,
    FitterSpec,
    GeneratorSpec,
    SchedulerSpec,
    SelectorSpec,
)


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of extension.

    name: plural, as in ``registered`` and ``get_spec`` ("calculators").
    hook: the hookspec a plugin implements for it.
    spec: the dataclass its hook returns; None for a contributing kind (no names).
    summary: what one registration stands for.
    used_as: how a user reaches it (Markdown, for the docs table).
    listed_by: the command that lists what is installed of this kind.
    step: whether ``wflp run KIND NAME`` and chain steps may name it.
    """

    name: str
    hook: str
    spec: Optional[type]
    summary: str
    used_as: str
    listed_by: str
    step: bool = False

    @property
    def singular(self) -> str:
        """"calculator" for "calculators"."""
        return self.name[:-1]

    @property
    def named(self) -> bool:
        """True when the hook registers names (it returns specs)."""
        return self.spec is not None


def _listed(kind: str) -> str:
    return f"wflp list-plugins --kind {kind}"


TABLE: tuple[Kind, ...] = (
    Kind("calculators", "wflp_calculators", CalculatorSpec,
         "a factory returning an ASE calculator",
         '`calculate(..., calculator=("name", [], {...}))`', _listed("calculators"), step=True),
    Kind("generators", "wflp_generators", GeneratorSpec,
         "an operation that makes new configurations",
         '`get_generator("name").load()(inputs, outputs, ...)`', _listed("generators"),
         step=True),
    Kind("selectors", "wflp_selectors", SelectorSpec,
         "an operation that keeps a subset",
         '`get_selector("name").load()(inputs, outputs, ...)`', _listed("selectors"),
         step=True),
    Kind("fitters", "wflp_fitters", FitterSpec,
         "`fit(training, workdir, **params) -> path`",
         '`fit(inputs, OutputModel(...), fitter="name")`', _listed("fitters"), step=True),
    Kind("descriptors", "wflp_descriptors", DescriptorSpec,
         "an operation that adds a descriptor vector under `info[key]` (or per atom)",
         '`get_descriptor("name").load()(inputs, outputs, ...)`, then '
         '`select_cur(..., key=spec.key)`', _listed("descriptors"), step=True),
    Kind("executors", "wflp_executors", ExecutorSpec,
         "a factory returning an executor",
         '`AutoparaInfo(executor="name")`', _listed("executors")),
    Kind("schedulers", "wflp_schedulers", SchedulerSpec,
         "a factory returning a queueing system's dialect",
         '`scheduler = "name"` in a system of `wflp-systems.toml` ([remote.md](remote.md))',
         _listed("schedulers")),
    Kind("commands", "wflp_commands", None,
         "commands added to the `wflp` command line",
         "`wflp NAME ...`", "wflp --help"),
    Kind("panels", "wflp_panels", None,
         "panels on an output's page in `wflp browse`",
         "`wflp browse` (plugin wflp-web)", "wflp browse"),
)
"""Every kind, in the order commands and docs show them."""

BY_NAME: dict[str, Kind] = {k.name: k for k in TABLE}
KINDS: tuple[str, ...] = tuple(k.name for k in TABLE if k.named)
"""The named kinds: what ``get_spec``, ``list_specs`` and ``registered`` use."""
SPEC_TYPES: dict[str, type] = {k.name: k.spec for k in TABLE if k.spec is not None}

NOT_KINDS: dict[str, str] = {}
"""Hookspecs that are deliberately no kind of extension, with the reason (none today:
every hook is a row of TABLE)."""


def find_kind(kind: str, *, named: bool = True) -> Kind:
    """The Kind for "calculator" or "calculators" (any case, '-' for '_').

    named: only kinds that register names (those ``get_spec`` can look up). An unknown
    kind raises UnknownNameError listing the ones there are.
    """
    candidates = [k for k in TABLE if k.named or not named]
    if isinstance(kind, str):
        word = kind.strip().lower().replace("-", "_")
        for k in candidates:
            if word in (k.name, k.singular):
                return k
    raise UnknownNameError(
        f"unknown kind of plugin extension {kind!r}; use one of: "
        f"{', '.join(k.name for k in candidates)} (singular or plural)")


def markdown_table() -> str:
    """The table of kinds as docs/plugins.md shows it (a test checks the docs have it)."""
    rows = ["| kind | hook | spec | what one registration stands for | used as | listed by |",
            "| --- | --- | --- | --- | --- | --- |"]
    for k in TABLE:
        spec = f"`{k.spec.__name__}`" if k.spec is not None else "(none: registers no names)"
        rows.append(f"| {k.name} | `{k.hook}` | {spec} | {k.summary} | {k.used_as} | "
                    f"`{k.listed_by}` |")
    return "\n".join(rows)


__all__ = ["BY_NAME", "KINDS", "NOT_KINDS", "SPEC_TYPES", "TABLE", "Kind", "find_kind",
           "markdown_table"]
