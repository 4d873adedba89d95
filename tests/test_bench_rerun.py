"""benchmarks/bench_rerun.py runs, and measures a rerun that really reuses (no timing asserted)."""

import importlib.util
from pathlib import Path

import pytest
from wflp import ConfigSet, OutputSpec

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_rerun.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_rerun", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_reports_every_mode(bench, tmp_path, capsys):
    assert bench.main(["--quick", "--sizes", "12", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for mode in bench.MODES:
        assert f"| {mode} |" in out
    assert "N=12: first run (made the output)" in out and "record format 3" in out
    assert list(tmp_path.iterdir()) == []  # its files are removed


def test_a_rerun_that_recomputes_is_refused(bench, tmp_path, monkeypatch):
    """If the timed rerun rewrote the output, the figure would not be a reuse's."""
    source, output = tmp_path / "in.xyz", tmp_path / "out.xyz"
    bench.write_input(source, 5)
    bench.make_output(source, output)
    assert bench.run_mode("wflp rerun", source, output, 5) >= 0  # reused: accepted

    real = bench.wflp_map

    def recompute(inputs, outputs, func):
        return real(inputs, OutputSpec(outputs.files[0], overwrite=True), bench.Atoms.copy,
                    kwargs={})  # another identity: recomputed and replaced

    monkeypatch.setattr(bench, "wflp_map", recompute)
    with pytest.raises(SystemExit, match="rewritten: not a reuse"):
        bench.run_mode("wflp rerun", source, output, 5)
    assert len(list(ConfigSet(output))) == 5
