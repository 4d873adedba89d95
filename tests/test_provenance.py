"""Provenance you can keep and query: identity vs facts, strict reuse, self-checking records,
canonical descriptions, environment variables, `wflp records check` and lineage."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import ase
import ase.io
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from helpers import rattled_cu
from test_cli import invoke
from wflp import AutoparaInfo, ConfigSet, OutputSpec
from wflp.errors import ParameterError, RecordError, RecordMismatchError
from wflp.ops import calculate, map, select_by_bool
from wflp.records import lineage, read_record, record_path, sha256_file


def _doc(path: Path) -> dict:
    return json.loads(record_path(path).read_text())


def _edit_facts(path: Path, **versions: str) -> None:
    """Pretend the output was made under other versions (facts are outside the checksum)."""
    data = _doc(path)
    data["facts"]["versions"].update(versions)
    record_path(path).write_text(json.dumps(data))


def _emt_output(tmp_path: Path) -> tuple[Path, Path]:
    inp, out = tmp_path / "in.xyz", tmp_path / "out.xyz"
    ase.io.write(inp, rattled_cu(3))
    calculate(ConfigSet(inp), OutputSpec(out), calculator=EMT(), prefix="EMT_")
    return inp, out


# -- upgrades are facts ------------------------------------------------------------------------

def test_output_made_under_another_ase_is_reused_and_said_once(tmp_path, caplog):
    inp, out = _emt_output(tmp_path)
    _edit_facts(out, ase="3.0.0")
    state = (out.stat().st_ino, out.read_bytes())
    with caplog.at_level(logging.WARNING, logger="wflp"):
        calculate(ConfigSet(inp), OutputSpec(out), calculator=EMT(), prefix="EMT_")
    assert (out.stat().st_ino, out.read_bytes()) == state  # reused, not recomputed
    said = [r.message for r in caplog.records if "made with other versions" in r.message]
    assert len(said) == 1 and f"ase 3.0.0 -> {ase.__version__}" in said[0]
    history = _doc(out)["history"]
    assert [e["event"] for e in history] == ["reused"]
    assert history[0]["changes"] == [f"ase 3.0.0 -> {ase.__version__}"]
    assert _doc(out)["facts"]["versions"]["ase"] == "3.0.0"  # what made it stays recorded
    calculate(ConfigSet(inp), OutputSpec(out), calculator=EMT(), prefix="EMT_")
    assert len(_doc(out)["history"]) == 1  # the same change is kept once


@pytest.mark.parametrize("how", ["outputspec", "autopara", "env"])
def test_strict_reuse_makes_versions_decide(tmp_path, monkeypatch, how):
    inp, out = _emt_output(tmp_path)
    _edit_facts(out, ase="3.0.0")
    spec, info = OutputSpec(out), None
    if how == "outputspec":
        spec = OutputSpec(out, reuse="strict")
    elif how == "autopara":
        info = AutoparaInfo(reuse="strict")
    else:
        monkeypatch.setenv("WFLP_REUSE", "strict")
    with pytest.raises(RecordMismatchError, match=r"facts\.versions\.ase: 3\.0\.0 -> "):
        calculate(ConfigSet(inp), spec, calculator=EMT(), prefix="EMT_", autopara_info=info)
    # an OutputSpec's own mode wins over the environment
    monkeypatch.setenv("WFLP_REUSE", "strict")
    calculate(ConfigSet(inp), OutputSpec(out, reuse="identity"), calculator=EMT(),
              prefix="EMT_")


def test_bad_reuse_values_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ParameterError, match="reuse must be 'identity' or 'strict'"):
        OutputSpec(tmp_path / "o.xyz", reuse="sometimes")
    monkeypatch.setenv("WFLP_REUSE", "lax")
    with pytest.raises(ParameterError, match=r"\$WFLP_REUSE='lax'"):
        calculate(rattled_cu(1), OutputSpec(), calculator=EMT())


def test_operation_version_still_decides(tmp_path):
    from wflp import operation

    def make(version):
        @operation("shift_p", version=version)
        def shift(at):
            at.positions += 0.1
            return at
        return shift

    out = tmp_path / "o.xyz"
    make("1")(rattled_cu(2), OutputSpec(out))
    with pytest.raises(RecordMismatchError, match="version: 1 -> 2"):
        make("2")(rattled_cu(2), OutputSpec(out))


# -- records check themselves --------------------------------------------------------------------

def test_hand_edited_record_is_not_trusted(tmp_path):
    inp, out = _emt_output(tmp_path)
    rec = record_path(out)
    rec.write_text(rec.read_text().replace('"EMT_"', '"X_"'))
    with pytest.raises(RecordError, match="was changed after wflp wrote it"):
        calculate(ConfigSet(inp), OutputSpec(out), calculator=EMT(), prefix="X_")
    shown = invoke("records", "show", str(out))
    assert shown.exit_code == 2 and "changed after wflp wrote it" in shown.stderr
    checked = invoke("records", "check", str(tmp_path))
    assert checked.exit_code == 1 and "UNTRUSTED" in checked.stdout


def test_record_field_of_the_wrong_kind_is_named(tmp_path):
    inp, out = _emt_output(tmp_path)
    data = _doc(out)
    data["code"] = "calculate"
    record_path(out).write_text(json.dumps(data))
    with pytest.raises(RecordError, match="its field 'code' should be a mapping, not str"):
        calculate(ConfigSet(inp), OutputSpec(out), calculator=EMT(), prefix="EMT_")


# -- canonical descriptions --------------------------------------------------------------------

COMPOSITE = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    from ase.calculators.emt import EMT
    from ase.calculators.lj import LennardJones
    from ase.calculators.mixing import LinearCombinationCalculator, SumCalculator
    from wflp import ConfigSet, OutputSpec
    from wflp.ops import calculate
    calc = (SumCalculator([EMT(), LennardJones()]) if sys.argv[1] == "sum"
            else LinearCombinationCalculator([EMT(), LennardJones()], [0.5, 0.5]))
    calculate(ConfigSet("in.xyz"), OutputSpec(sys.argv[1] + ".xyz"), calculator=calc,
              prefix="C_")
""")


@pytest.mark.parametrize("kind", ["sum", "linear"])
def test_composite_calculators_are_reused_across_hash_seeds(tmp_path, kind):
    ase.io.write(tmp_path / "in.xyz", rattled_cu(2))
    (tmp_path / "run.py").write_text(COMPOSITE)
    outputs = []
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed, WFLP_PROGRESS="0")
        done = subprocess.run([sys.executable, "run.py", kind], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout + done.stderr)
    assert "reusing" not in outputs[0]
    assert all("reusing" in o for o in outputs[1:])


class ShiftedEMT(EMT):
    """EMT plus a constant energy that is set as an attribute, not a parameter."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results["energy"] += getattr(self, "shift", 0.0)


def test_calculator_attribute_set_after_construction_decides(tmp_path):
    inp = tmp_path / "in.xyz"
    ase.io.write(inp, rattled_cu(2))
    out = tmp_path / "o.xyz"
    calc = ShiftedEMT()
    calc.shift = 2.0
    calculate(ConfigSet(inp), OutputSpec(out), calculator=calc, prefix="S_")
    assert read_record(record_path(out)).parameters["calculator"]["attributes"] == {
        "shift": 2.0}
    calc.shift = 3.0
    with pytest.raises(RecordMismatchError, match=r"attributes\.shift: 2\.0 -> 3\.0"):
        calculate(ConfigSet(inp), OutputSpec(out), calculator=calc, prefix="S_")


class _Counting(Calculator):
    implemented_properties = ["energy"]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.scale = 1.0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls = getattr(self, "calls", 0) + 1   # state computed while it runs
        self.results["energy"] = self.scale * len(atoms)


def test_state_a_calculator_computes_does_not_decide(tmp_path):
    out = tmp_path / "o.xyz"
    calc = _Counting()
    calculate(rattled_cu(2), OutputSpec(out), calculator=calc, prefix="K_")
    calc.calls = 5  # as if it had computed before
    calculate(rattled_cu(2), OutputSpec(out), calculator=calc, prefix="K_")  # reused
    calc.scale = 2.0
    with pytest.raises(RecordMismatchError, match=r"attributes\.scale"):
        calculate(rattled_cu(2), OutputSpec(out), calculator=calc, prefix="K_")


# -- the environment a user function reads -----------------------------------------------------

def _reads_env(at):
    at.info["mode"] = os.environ.get("WFLP_TEST_MODE", "plain")
    return at


def _reads_unknown_env(at, name="WFLP_TEST_MODE"):
    at.info["mode"] = os.environ.get(name, "plain")
    return at


def test_environment_variables_read_by_name_decide(tmp_path, monkeypatch, caplog):
    out = tmp_path / "o.xyz"
    monkeypatch.setenv("WFLP_TEST_MODE", "secret-value-1")
    map(rattled_cu(1), OutputSpec(out), _reads_env)
    assert "secret-value-1" not in record_path(out).read_text()  # only a digest is kept
    map(rattled_cu(1), OutputSpec(out), _reads_env)  # same value: reused
    monkeypatch.setenv("WFLP_TEST_MODE", "secret-value-2")
    with pytest.raises(RecordMismatchError, match=r"env:WFLP_TEST_MODE"):
        map(rattled_cu(1), OutputSpec(out), _reads_env)
    # a name wflp cannot see is said, and recorded as not described
    with caplog.at_level(logging.WARNING, logger="wflp"):
        map(rattled_cu(1), OutputSpec(tmp_path / "u.xyz"), _reads_unknown_env)
    assert any("environment variables by names wflp cannot see" in r.message
               for r in caplog.records)


# -- records check ---------------------------------------------------------------------------

def test_records_check_lists_what_needs_attention(tmp_path):
    inp, out = _emt_output(tmp_path)
    sub = tmp_path / "sub"
    sub.mkdir()
    modified, other, stale = sub / "modified.xyz", sub / "other.xyz", sub / "stale.xyz"
    for path in (modified, other):
        map(ConfigSet(out), OutputSpec(path), _reads_env)
    stale_in = sub / "stale_in.xyz"
    ase.io.write(stale_in, rattled_cu(2, seed=5))
    map(ConfigSet(stale_in), OutputSpec(stale), _reads_env)
    ase.io.write(stale_in, rattled_cu(2, seed=6))             # its input changed since
    with open(modified, "a") as fd:                            # edited by hand
        fd.write("\n")
    _edit_facts(other, numpy="1.0.0")                          # made under another numpy
    result = invoke("records", "check", str(tmp_path))
    assert result.exit_code == 1, result.stderr
    rows = result.stdout.splitlines()
    lines = {name: next(r for r in rows if re.search(rf"(\s|/){re.escape(name)}(\s|$)", r))
             for name in ("out.xyz", "modified.xyz", "stale.xyz", "other.xyz")}
    assert lines["out.xyz"].startswith("ok ")
    assert lines["modified.xyz"].startswith("MODIFIED")
    assert lines["stale.xyz"].startswith("INPUTS CHANGED")
    assert lines["other.xyz"].startswith("ok ") and "numpy 1.0.0 ->" in lines["other.xyz"]
    assert "4 outputs: 2 ok, 2 with problems, 1 made under other versions" in result.stdout
    as_json = invoke("records", "check", str(tmp_path), "--json")
    states = {Path(json.loads(x)["output"]).name: json.loads(x)["state"]
              for x in as_json.stdout.splitlines()}
    assert states == {"out.xyz": "ok", "modified.xyz": "modified", "other.xyz": "ok",
                      "stale.xyz": "inputs-changed"}
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(out, clean / "out.xyz")
    shutil.copy(record_path(out), record_path(clean / "out.xyz"))
    assert invoke("records", "check", str(clean)).exit_code == 0


# -- lineage ---------------------------------------------------------------------------------

def _is_small(at):
    return len(at) <= 4


@pytest.fixture
def chain(tmp_path, monkeypatch):
    """cells.xyz -> calc.xyz (calculate) -> step2/scaled.xyz (map) -> small.xyz (select)."""
    monkeypatch.chdir(tmp_path)
    ase.io.write("cells.xyz", rattled_cu(3))
    calculate(ConfigSet("cells.xyz"), OutputSpec("calc.xyz"), calculator=EMT(),
              prefix="EMT_")
    os.mkdir("step2")
    map(ConfigSet("calc.xyz"), OutputSpec("step2/scaled.xyz"), _reads_env)
    select_by_bool(ConfigSet("step2/scaled.xyz"), OutputSpec("small.xyz"), _is_small)
    return tmp_path


def _names(graph) -> dict:
    return {Path(s.path).name if s.path else s.id: s for s in graph.steps.values()}


def test_lineage_walks_back_to_the_sources(chain):
    graph = lineage("small.xyz")
    steps = _names(graph)
    assert set(steps) == {"small.xyz", "scaled.xyz", "calc.xyz", "cells.xyz"}
    assert steps["cells.xyz"].state == "source"
    assert steps["calc.xyz"].record.parameters["prefix"] == "EMT_"
    assert {(Path(a).name, Path(b).name) for a, b, _ in graph.edges} == {
        ("cells.xyz", "calc.xyz"), ("calc.xyz", "scaled.xyz"), ("scaled.xyz", "small.xyz")}
    text = graph.text()
    assert "calculate v2" in text and '"ase.calculators.emt.EMT"' in text
    assert f"ase {ase.__version__}" in text
    assert text.index("small.xyz") < text.index("scaled.xyz") < text.index("calc.xyz")
    shallow = lineage("small.xyz", depth=1)
    assert set(_names(shallow)) == {"small.xyz", "scaled.xyz"}


def test_lineage_formats(chain):
    graph = lineage("small.xyz")
    data = json.loads(json.dumps(graph.node_link(), default=str))
    assert data["directed"] is True and len(data["nodes"]) == 4 and len(data["links"]) == 3
    calc = next(n for n in data["nodes"] if n["path"] and n["path"].endswith("calc.xyz"))
    assert calc["operation"] == "calculate" and calc["versions"]["ase"] == ase.__version__
    try:
        import networkx
    except ImportError:  # not a dependency: the structure was checked above
        networkx = None
    if networkx is not None:
        g = networkx.node_link_graph(data, edges="links")
        assert networkx.is_directed_acyclic_graph(g)
        assert networkx.ancestors(g, str(chain / "small.xyz")) == {
            str(chain / "cells.xyz"), str(chain / "calc.xyz"), str(chain / "step2/scaled.xyz")}
    dot = graph.dot()
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    assert f'"{chain / "calc.xyz"}" -> "{chain / "step2/scaled.xyz"}";' in dot
    grep = invoke("lineage", str(chain / "small.xyz"), "--grep", "prefix", cwd=chain)
    assert grep.exit_code == 0, grep.stderr
    assert 'prefix = "EMT_"' in grep.stdout and "asap_cutoff" not in grep.stdout


def test_lineage_finds_moved_inputs_and_marks_changed_ones(chain):
    os.mkdir("archive")
    shutil.move("calc.xyz", "archive/renamed.xyz")
    shutil.move("calc.xyz.record.json", "archive/renamed.xyz.record.json")
    steps = _names(lineage("small.xyz"))
    assert "renamed.xyz" in steps and steps["renamed.xyz"].record.name == "calculate"
    assert steps["cells.xyz"].state == "source"
    ase.io.write("cells.xyz", rattled_cu(3, seed=9))  # the source changed since
    graph = lineage("small.xyz")
    changed = [(Path(a).name, Path(b).name) for a, b, c in graph.edges if c]
    assert changed == [("cells.xyz", "renamed.xyz")]
    assert "CHANGED SINCE USED" in graph.text()


def test_lineage_descendants_and_cli(chain):
    out = invoke("lineage", "cells.xyz", "--descendants", cwd=chain)
    assert out.exit_code == 0, out.stderr
    for name in ("calc.xyz", "scaled.xyz", "small.xyz"):
        assert name in out.stdout
    assert out.stdout.index("calc.xyz") < out.stdout.index("small.xyz")
    dot = invoke("lineage", "small.xyz", "--format", "dot", cwd=chain)
    assert dot.exit_code == 0 and "digraph" in dot.stdout
    missing = invoke("lineage", "nope.xyz", cwd=chain)
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    bad = invoke("lineage", "small.xyz", "--grep", "(", cwd=chain)
    assert bad.exit_code == 2 and "--grep" in bad.stderr


def test_records_show_says_what_made_it_and_its_history(chain):
    _edit_facts(chain / "calc.xyz", ase="3.0.0")
    calculate(ConfigSet("cells.xyz"), OutputSpec("calc.xyz"), calculator=EMT(),
              prefix="EMT_")
    shown = invoke("records", "show", "calc.xyz", cwd=chain)
    assert shown.exit_code == 0, shown.stderr
    assert "made with:   ase 3.0.0" in shown.stdout
    assert f"now:         ase 3.0.0 -> {ase.__version__}" in shown.stdout
    assert "history:" in shown.stdout and "reused" in shown.stdout
    assert f"cells.xyz (sha256 {sha256_file(chain / 'cells.xyz')[:16]})" in shown.stdout
