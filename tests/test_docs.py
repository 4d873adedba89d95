"""The code blocks in the user docs run as written and print what the docs show.

A ```python block followed directly by a ```text block must print exactly that text."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```(?:\s*```text\n(.*?)```)?", re.S)
DOC_FILES = ("guide.md", "md_optimize.md", "remote.md", "generate_select.md",
             "provenance.md")


def _blocks(name):
    text = (DOCS / name).read_text()
    return [(name, i, code, expected) for i, (code, expected) in enumerate(BLOCK.findall(text))]


CASES = [b for name in DOC_FILES for b in _blocks(name)]


def test_docs_have_checked_examples():
    assert len(CASES) >= 7
    assert sum(1 for c in CASES if c[3]) >= 6


@pytest.mark.parametrize("name,index,code,expected", CASES,
                         ids=[f"{c[0]}[{c[1]}]" for c in CASES])
def test_doc_block_runs(name, index, code, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{name}[{index}]", "exec"), {"__name__": "__docs__"})
    if expected:
        assert capsys.readouterr().out == expected
