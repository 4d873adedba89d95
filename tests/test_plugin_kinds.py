"""The table of kinds (wflp.plugins.kinds) is the one list everything reads: the docs show
it, the manager, list-plugins, chains and selectors follow it, the descriptor kind works
end to end, and hooks that register no names are called one plugin at a time."""

from __future__ import annotations

import inspect
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from ase.build import molecule
from click.testing import CliRunner
from wflp import DescriptorSpec, OutputSpec, hookimpl, operation
from wflp.chain import plan_step, step_kind
from wflp.cli import cli
from wflp.errors import OperationError, ParameterError, PluginError, UnknownNameError
from wflp.ops import select_cur
from wflp.plugins import get_descriptor, hookspecs, kinds, list_specs

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    kwargs = {"mix_stderr": False} if "mix_stderr" in inspect.signature(
        CliRunner.__init__).parameters else {}
    return CliRunner(**kwargs).invoke(cli, list(args), catch_exceptions=False)


@operation("fixkind_sizes", version="1")
def fixkind_sizes(atoms, key="sizes"):
    """A two-number descriptor: the number of atoms and of distinct elements."""
    atoms.info[key] = np.array([len(atoms), len(set(atoms.numbers))], dtype=float)
    return atoms


class SizesPlugin:
    @hookimpl
    def wflp_descriptors(self):
        return [DescriptorSpec(name="fixkind_sizes", summary="atoms and elements",
                               operation=fixkind_sizes, key="sizes")]


class PanelsPlugin:
    @hookimpl
    def wflp_panels(self, output, record):
        return [{"title": f"about {Path(output).name}"}]


class BrokenPanelsPlugin:
    @hookimpl
    def wflp_panels(self, output, record):
        raise RuntimeError("no panel today")


# -- one table, read by the docs and the hookspecs ----------------------------------------

def test_every_hookspec_is_a_row_and_every_row_a_hookspec():
    specs = {name for name, obj in vars(hookspecs).items()
             if inspect.isfunction(obj) and hasattr(obj, f"{hookspecs.PROJECT}_spec")}
    assert {k.hook for k in kinds.TABLE} | set(kinds.NOT_KINDS) == specs
    assert not {k.hook for k in kinds.TABLE} & set(kinds.NOT_KINDS)
    for k in kinds.TABLE:
        assert k.hook == f"wflp_{k.name}"
        if k.named:  # a named kind's hook returns its spec type, which says its kind
            assert k.spec.kind == k.name
            assert k.spec.__name__ in str(inspect.signature(getattr(hookspecs, k.hook)))
    assert kinds.KINDS == tuple(k.name for k in kinds.TABLE if k.named)


def test_docs_show_the_table_as_it_is():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert kinds.markdown_table() in docs
    assert "wflp.plugins.kinds.TABLE" in docs  # it says where the table comes from
    for k in kinds.TABLE:
        assert f"### {k.hook}" in docs
    assert "wflp/plugins/kinds.py" in (ROOT / "CONTRIBUTING.md").read_text()


def test_kinds_are_found_singular_or_plural_and_unknown_ones_listed():
    assert kinds.find_kind("Descriptor").name == "descriptors"
    assert kinds.find_kind("panels", named=False).spec is None
    with pytest.raises(UnknownNameError, match="calculators, .*, schedulers \\("):
        kinds.find_kind("panels")  # registers no names: not a kind get_spec can look up
    with pytest.raises(UnknownNameError, match="schedulers, commands, panels"):
        kinds.find_kind("potatoes", named=False)


# -- descriptors ------------------------------------------------------------------------

def test_descriptor_spec_key_defaults_to_its_name_and_must_be_text():
    assert DescriptorSpec(name="My-Desc", summary="s", operation=fixkind_sizes).key == "my_desc"
    with pytest.raises(PluginError, match="descriptor 'bad': key must be"):
        DescriptorSpec(name="bad", summary="s", operation=fixkind_sizes, key=3)


def test_a_descriptor_feeds_a_selector_through_its_key(wflp_plugin_manager,
                                                        register_wflp_plugin):
    register_wflp_plugin(SizesPlugin())
    spec = get_descriptor("fixkind_sizes")
    assert [s.name for s in list_specs("descriptor")] == ["fixkind_sizes"]
    mols = [molecule(m) for m in ("H2O", "CH4", "CH3CH2OH", "H2", "C6H6", "NH3")]
    described = list(spec.load()(mols, OutputSpec()))
    assert described[2].info[spec.key].tolist() == [9.0, 3.0]
    picked = list(select_cur(described, OutputSpec(), n_select=2, key=spec.key))
    assert len(picked) == 2
    # a selector whose key is missing names the registered descriptors and their keys
    with pytest.raises(OperationError, match="fixkind_sizes writes key='sizes'"):
        list(select_cur(mols, OutputSpec(), n_select=2, key="sizes"))


def test_descriptor_is_a_chain_step_and_executors_are_not(wflp_plugin_manager,
                                                          register_wflp_plugin, tmp_path):
    register_wflp_plugin(SizesPlugin())
    step = plan_step("descriptor", "fixkind_sizes", {"key": "n"}, tmp_path / "d.xyz")
    assert (step.kind, step.operation) == ("descriptors", fixkind_sizes)
    assert step_kind("Descriptors", "step 1") == "descriptors"
    with pytest.raises(ParameterError, match="cannot be run as a step; .*descriptor$"):
        step_kind("executor", "step 1")
    with pytest.raises(ParameterError, match="unknown kind 'potato'; use one of calculator"):
        step_kind("potato", "step 1")


# -- hooks that register no names -----------------------------------------------------------

def test_contributing_hooks_show_in_the_report_and_list_plugins(wflp_plugin_manager,
                                                                register_wflp_plugin):
    register_wflp_plugin(PanelsPlugin(), name="panels-demo")
    [record] = [r for r in wflp_plugin_manager.report() if r.plugin == "panels-demo"]
    assert record.status == "ok" and record.registered == {"panels": []}
    table = invoke("list-plugins").stdout
    row = next(ln for ln in table.splitlines() if ln.startswith("panels-demo "))
    assert row.split()[2:4] == ["ok", "panels"] and "(see wflp browse)" in row
    assert "registers nothing" not in table
    only = json.loads(invoke("list-plugins", "--kind", "panel", "--json").stdout)
    assert [r["plugin"] for r in only] == ["panels-demo"]  # the builtins add no panels


def test_call_each_isolates_a_plugin_that_raises(wflp_plugin_manager, register_wflp_plugin,
                                                 caplog, tmp_path):
    register_wflp_plugin(PanelsPlugin(), name="good-panels")
    register_wflp_plugin(BrokenPanelsPlugin(), name="bad-panels")
    with caplog.at_level(logging.WARNING, logger="wflp"):
        given = wflp_plugin_manager.call_each("wflp_panels", output=tmp_path / "o.xyz",
                                              record=None)
    assert given == [("good-panels", [{"title": "about o.xyz"}])]
    assert re.search(r"bad-panels.*RuntimeError: no panel today.*left out", caplog.text)
    wflp_plugin_manager._strict = True
    with pytest.raises(PluginError, match="bad-panels.*no panel today"):
        wflp_plugin_manager.call_each("wflp_panels", output=tmp_path, record=None)
    with pytest.raises(PluginError, match="registers names: look them up with get_spec"):
        wflp_plugin_manager.call_each("wflp_calculators")
