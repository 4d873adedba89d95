"""Record formats only move forward, and every format wflp ever wrote stays readable.

tests/fixtures/records_v2/ holds real outputs with the records wflp wrote in format 2
(commit 1588988, see make_fixtures.py there). Rerunning the same computations with today's
code must reuse them (the migration gives the identity today's code computes), write the
migrated record back with a history entry, and still catch real changes.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from ase.calculators.emt import EMT
from test_cli import invoke
from wflp import ConfigSet, OutputSpec
from wflp.errors import RecordError, RecordMismatchError
from wflp.ops import calculate, map, md, select_by_bool
from wflp.records import RECORD_FORMAT, read_record, record_path
from wflp.records.migrate import migrate_2_to_3

FIXTURES = Path(__file__).parent / "fixtures" / "records_v2"
OUTPUTS = ("calc.xyz", "calc_registered.xyz", "scaled.xyz", "small.xyz", "md.xyz")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the format-2 fixtures as the current folder, fixture_funcs importable."""
    folder = tmp_path / "project"
    shutil.copytree(FIXTURES, folder)
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("fixture_funcs", None)
    importlib.invalidate_caches()
    yield folder
    sys.modules.pop("fixture_funcs", None)


def _stored(folder: Path, name: str) -> dict:
    return json.loads(record_path(folder / name).read_text())


def _file_state(path: Path) -> tuple:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def test_fixtures_are_format_2_as_written():
    for name in OUTPUTS:
        assert _stored(FIXTURES, name)["record_format"] == 2
    assert json.loads((FIXTURES / "gap_model" / "record.json").read_text())[
        "record_format"] == 2


def test_migration_is_pure_and_says_what_changed():
    data = _stored(FIXTURES, "calc.xyz")
    before = json.dumps(data, sort_keys=True)
    new, what = migrate_2_to_3(data)
    assert json.dumps(data, sort_keys=True) == before  # the input is not touched
    assert new["record_format"] == 3
    assert "version" not in new["parameters"]["calculator"]
    assert "provider" not in new["parameters"]["calculator"]
    assert new["code"] == {"callable": "wflp.ops.calculate.calculate", "distribution": "wflp"}
    assert new["facts"]["versions"] == {"ase": "3.29.0", "wflp": "0.1.0"}
    assert new["facts"]["sources"] == {"wflp.ops.calculate.calculate": "5b4462fc4e52602c"}
    assert "ase" in what and "wflp" in what
    # a model's version was its plugin's version; it becomes the declared result version
    model = json.loads((FIXTURES / "gap_model" / "record.json").read_text())
    new_model, what = migrate_2_to_3(model)
    assert new_model["version"] == "1" and "0.1.0" in what
    assert new_model["facts"]["programs"] == {"fitter.provenance": {"quippy-ase": "0.10.3"}}


def test_rerun_with_todays_code_reuses_every_format_2_output(project):
    from fixture_funcs import is_small, scale_cell

    before = {name: _file_state(project / name) for name in OUTPUTS}
    calculate(ConfigSet("cells.xyz"), OutputSpec("calc.xyz"), calculator=EMT(), prefix="EMT_")
    calculate(ConfigSet("cells.xyz"), OutputSpec("calc_registered.xyz"),
              calculator=("emt", [], {}))
    map(ConfigSet("calc.xyz"), OutputSpec("scaled.xyz"), scale_cell, args=(1.01,))
    select_by_bool(ConfigSet("scaled.xyz"), OutputSpec("small.xyz"), is_small)
    for name in ("calc.xyz", "calc_registered.xyz", "scaled.xyz", "small.xyz"):
        assert _file_state(project / name) == before[name], f"{name} was recomputed"
        data = _stored(project, name)
        assert data["record_format"] == RECORD_FORMAT  # written back, migrated
        migrated = [e for e in data["history"] if e["event"] == "migrated"]
        assert len(migrated) == 1 and migrated[0]["from"] == 2 and migrated[0]["to"] == 3
        assert migrated[0]["time"]
        # the run facts of the original computation are kept
        assert data["run"]["started"] == _stored(FIXTURES, name)["run"]["started"]
    # a second rerun reads format 3 and adds nothing (a reuse under changed facts, such as
    # an edited editable source, is kept once)
    history = _stored(project, "calc.xyz")["history"]
    calculate(ConfigSet("cells.xyz"), OutputSpec("calc.xyz"), calculator=EMT(), prefix="EMT_")
    assert _stored(project, "calc.xyz")["history"] == history


def test_a_real_change_is_still_caught_after_migration(project):
    with pytest.raises(RecordMismatchError, match=r"parameters\.prefix: EMT_ -> X_"):
        calculate(ConfigSet("cells.xyz"), OutputSpec("calc.xyz"), calculator=EMT(),
                  prefix="X_")
    with pytest.raises(RecordMismatchError, match=r"asap_cutoff"):
        calculate(ConfigSet("cells.xyz"), OutputSpec("calc.xyz"),
                  calculator=EMT(asap_cutoff=True), prefix="EMT_")
    # md's results changed since format 2 (its version was bumped): that is named
    with pytest.raises(RecordMismatchError, match=r"version: 1 -> \d"):
        md(ConfigSet("cells.xyz", index=slice(0, 2)), OutputSpec("md.xyz"), calculator=EMT(),
           steps=4, dt=1.0, temperature=300.0, seed=3)
    # nothing was written back by the refused runs
    assert _stored(project, "calc.xyz")["record_format"] == 2


def test_fitted_model_of_format_2_is_reused(project):
    from wflp.ops import OutputModel, fit
    from wflp.testing import require_module, require_program

    require_module("wflp_gap", "bash scripts/dev-install.sh (installs wflp-gap)")
    require_program("gap_fit", "pip install quippy-ase")
    model = project / "gap_model"
    before = {p.name: _file_state(p) for p in model.iterdir() if p.name != "record.json"}
    fitted = fit(ConfigSet("calc.xyz"), OutputModel("gap_model"), fitter="gap",
                 params={"descriptors": [{"type": "distance_2b", "cutoff": 4.0,
                                          "covariance_type": "ard_se", "delta": 0.5,
                                          "theta_uniform": 1.0, "n_sparse": 5,
                                          "sparse_method": "uniform"}],
                         "default_sigma": [0.002, 0.05, 0.05, 0.0], "ref_prefix": "EMT_"},
                 seed=1)
    after = {p.name: _file_state(p) for p in model.iterdir() if p.name != "record.json"}
    assert after == before
    data = json.loads((model / "record.json").read_text())
    assert data["record_format"] == RECORD_FORMAT and data["version"] == "1"
    assert data["model"]["main"] == "gap.xml"  # the model's own entry is kept
    assert data["inputs"]["files"] == ["../calc.xyz"]  # resolved from where format 2 ran
    assert fitted.main == "gap.xml"


def test_records_migrate_reports_then_applies(project):
    report = invoke("records", "migrate", str(project))
    assert report.exit_code == 0, report.stderr
    assert "would migrate calc.xyz: format 2 -> 3" in report.stdout
    assert "6 record(s) to migrate" in report.stdout
    assert _stored(project, "calc.xyz")["record_format"] == 2  # only reported
    applied = invoke("records", "migrate", str(project), "--apply")
    assert applied.exit_code == 0, applied.stderr
    for name in OUTPUTS:
        data = _stored(project, name)
        assert data["record_format"] == 3 and data["history"][0]["event"] == "migrated"
        assert _file_state(project / name)[2] == (FIXTURES / name).read_bytes()
    assert json.loads((project / "gap_model" / "record.json").read_text())["model"]
    again = invoke("records", "migrate", str(project))
    assert "0 record(s) to migrate" in again.stdout
    # migrated records read back as the same records
    assert read_record(record_path(project / "calc.xyz")).parameters["prefix"] == "EMT_"


def test_a_newer_format_is_refused_with_what_to_do(project):
    data = _stored(project, "calc.xyz")
    data["record_format"] = RECORD_FORMAT + 1
    record_path(project / "calc.xyz").write_text(json.dumps(data))
    with pytest.raises(RecordMismatchError, match=r"written by a newer wflp.*upgrade wflp"):
        calculate(ConfigSet("cells.xyz"), OutputSpec("calc.xyz"), calculator=EMT(),
                  prefix="EMT_")


def test_format_that_is_not_a_number_is_named_as_damage(project):
    data = _stored(project, "calc.xyz")
    data["record_format"] = "2"
    record_path(project / "calc.xyz").write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"record_format '2' \(str\), not a whole number"):
        calculate(ConfigSet("cells.xyz"), OutputSpec("calc.xyz"), calculator=EMT(),
                  prefix="EMT_")


def test_edited_format_2_record_is_refused(project):
    data = _stored(project, "calc.xyz")
    data["parameters"]["prefix"] = "X_"
    record_path(project / "calc.xyz").write_text(json.dumps(data))
    with pytest.raises(RecordError, match="was changed after wflp wrote it"):
        calculate(ConfigSet("cells.xyz"), OutputSpec("calc.xyz"), calculator=EMT(),
                  prefix="X_")
