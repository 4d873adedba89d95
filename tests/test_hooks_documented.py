"""Every hook is documented, with a working example, and tested.

For each hookspec: docs/plugins.md has a section with its exact signature and a
Python example that runs; its docstring example passes as a doctest; and its
name appears in some test under tests/ or plugins/*/tests. Also: every spec
field, setting and testing fixture is documented.
"""

from __future__ import annotations

import dataclasses
import doctest
import inspect
import re
from pathlib import Path

import pytest
import wflp.testing
from wflp.plugins import hookspecs, kinds

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "plugins.md"

HOOKS = sorted(name for name, obj in vars(hookspecs).items()
               if inspect.isfunction(obj) and hasattr(obj, f"{hookspecs.PROJECT}_spec"))


def _annotation(value) -> str:
    return value if isinstance(value, str) else inspect.formatannotation(value)


def signature_text(func) -> str:
    """def-line form of a hook: name(params) -> return, annotations as written."""
    sig = inspect.signature(func)
    params = []
    for p in sig.parameters.values():
        text = p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        params.append(text)
    ret = "" if sig.return_annotation is sig.empty else \
        f" -> {_annotation(sig.return_annotation)}"
    return f"{func.__name__}({', '.join(params)}){ret}"


def sections(level: int) -> dict[str, str]:
    """{heading text: body} for the headings of *level* in docs/plugins.md."""
    text = DOCS.read_text()
    marks = "#" * level
    parts = re.split(rf"(?m)^{marks} (.+)$", text)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def python_blocks(body: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_every_hook_is_a_kind_or_explicitly_not_one():
    assert HOOKS == sorted([k.hook for k in kinds.TABLE] + list(kinds.NOT_KINDS))


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docs_section_with_its_exact_signature(hook):
    body = sections(3).get(hook)
    assert body is not None, f"docs/plugins.md has no '### {hook}' section"
    signature = signature_text(getattr(hookspecs, hook))
    blocks = python_blocks(body)
    assert blocks and blocks[0].strip() == f"def {signature}", (
        f"the first code block of '### {hook}' must be exactly: def {signature}")


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_docs_example_runs(hook, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    examples = python_blocks(sections(3)[hook])[1:]
    assert examples, f"'### {hook}' has no example after its signature"
    assert any(f"def {hook}(" in code for code in examples), \
        f"no example in '### {hook}' implements {hook}"
    for code in examples:
        exec(compile(code, f"docs/plugins.md ({hook})", "exec"), {"__name__": "docs_example"})


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_docstring_example_passes_as_doctest(hook):
    func = getattr(hookspecs, hook)
    finder = doctest.DocTestFinder()
    [test] = [t for t in finder.find(func, hook, globs={}) if t.examples]
    assert any(f"def {hook}(" in ex.source for ex in test.examples)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test)
    assert result.failed == 0 and result.attempted > 3


def _test_sources() -> str:
    files = list((ROOT / "tests").rglob("*.py")) + list(ROOT.glob("plugins/*/tests/**/*.py"))
    return "\n".join(f.read_text() for f in files if f.name != Path(__file__).name)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_exercised_by_some_test(hook):
    assert re.search(rf"\bdef {hook}\(", _test_sources()), \
        f"no test under tests/ or plugins/*/tests implements {hook}"


@pytest.mark.parametrize("cls", list(kinds.SPEC_TYPES.values()), ids=lambda c: c.__name__)
def test_spec_fields_are_documented(cls):
    body = sections(3).get(cls.__name__)
    assert body is not None, f"docs/plugins.md has no '### {cls.__name__}' section"
    own = [f.name for f in dataclasses.fields(cls) if f.name not in ("name", "summary")]
    for field in own:
        assert f"| `{field}` |" in body, f"field {field!r} of {cls.__name__} is not documented"
    common = sections(2)["Spec dataclasses"]
    assert "| `name` |" in common and "| `summary` |" in common


def test_settings_lookups_and_fixtures_are_documented():
    text = DOCS.read_text()
    for word in ("WFLP_STRICT_PLUGINS", "WFLP_LOAD_PLUGINS", "[project.entry-points.wflp]",
                 "get_spec(kind, name)", "list_specs(kind)", "get_executor(name, **options)",
                 "plugin_report()", "get_plugin_manager()", "reset_plugin_manager()",
                 "pip install wflp-<name>"):
        assert word in text, word
    markers = ("_fixture_function_marker", "_pytestfixturefunction")  # pytest >= 8.4, older
    fixtures = [n for n, obj in vars(wflp.testing).items()
                if any(hasattr(obj, m) for m in markers)
                or type(obj).__name__ == "FixtureFunctionDefinition"]
    assert sorted(fixtures) == ["cu_configs", "molecules", "register_wflp_plugin",
                                "wflp_plugin_manager"]
    testing = sections(2)["Testing a plugin"]
    for name in fixtures:
        assert f"`{name}`" in testing, name
    assert "Scaffolding a plugin" in sections(2)
