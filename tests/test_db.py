"""wflp db collect: outputs with records into an ASE database, checked against the files.

Rows are compared with the extended-XYZ files they come from; collecting again skips
unchanged outputs and replaces changed ones; a failure or a kill -9 in the middle of an
output leaves none of its rows; PostgreSQL (CI) through ase-db-backends."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from wflp import OutputSpec, operation
from wflp.db import collect, db_key, info_key
from wflp.ops import calculate
from wflp.testing import wait_until

ROOT = Path(__file__).resolve().parents[1]
WFLP = str(Path(sys.executable).parent / "wflp")


@operation("tag_for_db", version="1")
def tag_for_db(atoms, label="x"):
    """Info values of every kind the collection must handle."""
    atoms = atoms.copy()
    atoms.info.update({"label": label, "energy": 1.5, "md-time": 2.0, "CO": 3,
                       "wflp_note": "mine", "vec": np.array([1.0, 2.0, 3.0]),
                       "numstr": "12", "flag": True, "smiles": "C<O",
                       "html": "<script>alert(1)</script>"})
    atoms.new_array("weights", np.arange(len(atoms), dtype=float))
    return atoms


def cu_inputs(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        at = bulk("Cu", cubic=True)
        at.rattle(0.05, seed=int(rng.integers(1 << 30)))
        out.append(at)
    return out


def make_project(folder: Path) -> dict:
    """A small project: tagged configurations, then EMT on them."""
    folder.mkdir(parents=True, exist_ok=True)
    tagged = tag_for_db(cu_inputs(4), OutputSpec(folder / "tagged.xyz"), label="cu")
    calculate(tagged, OutputSpec(folder / "emt.xyz"), calculator=EMT(), prefix="emt_")
    return {"tagged": folder / "tagged.xyz", "emt": folder / "emt.xyz"}


@pytest.mark.parametrize("name", ["energy", "id", "md-time", "CO", "wflp_x", "kv_y", "a_b",
                                  "2theta", "é_x", "x__y", "_x41_"])
def test_key_rule_is_reversible_and_accepted_by_ase_db(name):
    from ase.db.core import check

    key = db_key(name)
    check({key: 1})
    assert info_key(key) == name


def test_valid_names_are_kept():
    assert db_key("smiles") == "smiles" and db_key("md_step") == "md_step"
    assert db_key("C") == "kv_C" and db_key("fmax") == "kv_fmax"
    assert db_key("energy") == "kv_energy" and db_key("md-time") == "kv_md_x2d_time"


def test_strings_ase_db_would_misread_go_to_data():
    from wflp.db import row_parts

    at = bulk("Cu")
    at.info.update({"numstr": "12", "word": "yes please", "t": "True"})
    _atoms, kvp, data = row_parts(at)
    assert kvp == {"word": "yes please"}
    assert data["info"] == {"numstr": "12", "t": "True"}


def test_rows_match_the_files(tmp_path):
    project = make_project(tmp_path / "p")
    report = collect([tmp_path / "p"], tmp_path / "r.db", calc_prefix="emt_")
    assert sorted(report.collected) == sorted([project["tagged"], project["emt"]])
    db = ase.db.connect(tmp_path / "r.db")
    from wflp.records import query

    for output in project.values():
        frames = ase.io.read(output, ":")
        record, _why, _fmt = query.load(output)
        rows = sorted(db.select(wflp_output=str(output)), key=lambda r: r.wflp_index)
        assert [r.wflp_index for r in rows] == list(range(len(frames)))
        for row, at in zip(rows, frames):
            assert row.wflp_record == record.identity_digest()
            assert row.wflp_operation == record.name
            assert row.wflp_sha256 == record.output_entry(output)["sha256"]
            assert np.allclose(row.positions, at.positions)
            assert row.label == "cu" and row.kv_md_x2d_time == 2.0
            assert row.kv_CO == 3 and row.kv_wflp__note == "mine" and row.flag is True
            assert row.smiles == "C<O" and row.html == "<script>alert(1)</script>"
            assert np.allclose(row.data["info"]["vec"], [1, 2, 3])
            for name, value in at.info.items():          # every info value, somewhere
                if name.startswith("emt_"):
                    continue
                if db_key(name) in row.key_value_pairs:
                    assert row.key_value_pairs[db_key(name)] == value, name
                else:
                    assert np.array_equal(row.data["info"][name], value), name
            assert np.allclose(row.data["arrays"]["weights"], at.arrays["weights"])
            if output == project["emt"]:
                assert row.energy == pytest.approx(at.info["emt_energy"])
                assert np.allclose(row.forces, at.arrays["emt_forces"])
                assert np.allclose(row.stress, at.info["emt_stress"])
                assert "emt_energy" not in row.key_value_pairs
            else:   # ASE reads info "energy" as a calculator's result: so does collect
                assert row.energy == 1.5 and "kv_energy" not in row.key_value_pairs
        from wflp.records.record import Record

        stored = Record.from_json(rows[0].data["wflp_record"], output.parent, "row data")
        assert stored.identity_digest() == record.identity_digest()
        assert all("wflp_record" not in r.data for r in rows[1:])
    meta = db.metadata
    assert "wflp_output" in meta["key_descriptions"]
    assert meta["wflp"]["renamed_info_keys"]["kv_md_x2d_time"] == "md-time"


def test_collect_again_skips_unchanged_and_replaces_changed(tmp_path):
    project = make_project(tmp_path / "p")
    first = collect([tmp_path / "p"], tmp_path / "r.db")
    db = ase.db.connect(tmp_path / "r.db")
    ids_before = {r.id for r in db.select()}
    again = collect([tmp_path / "p"], tmp_path / "r.db")
    assert again.collected == [] and len(again.unchanged) == 2 and again.rows == 0
    assert {r.id for r in db.select()} == ids_before
    # rerun the first step with another label: its output changes, the other does not
    tag_for_db(cu_inputs(4), OutputSpec(project["tagged"], overwrite=True), label="new")
    third = collect([tmp_path / "p"], tmp_path / "r.db")
    assert third.replaced == [project["tagged"]]
    labels = {r.label for r in db.select(wflp_output=str(project["tagged"]))}
    assert labels == {"new"}
    pairs = [(r.wflp_sha256, r.wflp_index) for r in db.select()]
    assert len(pairs) == len(set(pairs)) == first.rows


def test_modified_and_recordless_outputs_are_left_out(tmp_path):
    project = make_project(tmp_path / "p")
    with open(project["emt"], "a") as fd:
        fd.write("\n")
    ase.io.write(tmp_path / "p" / "plain.xyz", bulk("Cu"))
    report = collect([tmp_path / "p"], tmp_path / "r.db")
    assert report.collected == [project["tagged"]]
    assert [p for p, _ in report.left_out] == [project["emt"]]
    assert "modified" in report.left_out[0][1]


def test_a_failure_mid_output_leaves_none_of_its_rows(tmp_path, monkeypatch):
    project = make_project(tmp_path / "p")
    import wflp.db

    real = wflp.db.row_parts
    calls = {"n": 0}

    def failing(atoms, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:   # the second configuration of the second output
            raise RuntimeError("injected")
        return real(atoms, *args, **kwargs)

    monkeypatch.setattr(wflp.db, "row_parts", failing)
    with pytest.raises(RuntimeError, match="injected"):
        collect([tmp_path / "p"], tmp_path / "r.db")
    db = ase.db.connect(tmp_path / "r.db")
    assert {r.wflp_output for r in db.select()} == {str(project["emt"])}
    assert db.count() == 4
    monkeypatch.setattr(wflp.db, "row_parts", real)
    report = collect([tmp_path / "p"], tmp_path / "r.db")
    assert report.collected == [project["tagged"]] and db.count() == 8


@pytest.mark.slow
def test_cli_collect_and_ase_db_reads_it(tmp_path):
    make_project(tmp_path / "p")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([WFLP, "db", "collect", str(tmp_path / "p"),
                          "-o", str(tmp_path / "r.db"), "--calc-prefix", "emt_"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "2 output(s) collected" in out.stdout and "8 rows written" in out.stdout
    ase_db = subprocess.run([sys.executable, "-m", "ase", "db", str(tmp_path / "r.db"),
                             "label=cu,wflp_operation=calculate", "--count"],
                            capture_output=True, text=True, env=env)
    assert ase_db.returncode == 0, ase_db.stderr
    assert ase_db.stdout.split() == ["4", "rows"]
    bad = subprocess.run([WFLP, "db", "collect", str(tmp_path / "nope"),
                          "-o", str(tmp_path / "r.db")], capture_output=True, text=True)
    assert bad.returncode == 2 and "nope" in bad.stderr and "does not exist" in bad.stderr
    bad = subprocess.run([WFLP, "db", "collect", str(tmp_path / "p"),
                          "-o", str(tmp_path / "r.txt")], capture_output=True, text=True)
    assert bad.returncode == 2 and "--output" in bad.stderr


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from wflp.db import collect
    collect([sys.argv[1]], sys.argv[2])
""")


def _row_count(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=0.2) as con:
            return con.execute("SELECT count(*) FROM systems").fetchone()[0]
    except sqlite3.OperationalError:   # not created yet, or locked by the writer
        return 0


def _check_consistent(db_path: Path) -> dict:
    """Every output in the database has exactly the rows of its file; returns the counts."""
    db = ase.db.connect(db_path)
    by_output: dict = {}
    for row in db.select(include_data=False):
        by_output.setdefault(row.wflp_output, []).append(row.wflp_index)
    for output, indices in by_output.items():
        n = len(ase.io.read(output, ":"))
        assert sorted(indices) == list(range(n)), f"{output}: half collected"
    return {k: len(v) for k, v in by_output.items()}


@pytest.mark.slow
def test_kill_9_mid_collection_leaves_whole_outputs_and_a_rerun_completes(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    outputs = []
    for k in range(6):
        out = folder / f"part{k}.xyz"
        tag_for_db(cu_inputs(100, seed=k), OutputSpec(out), label=f"part{k}")
        outputs.append(out)
    db_path = tmp_path / "r.db"
    script = tmp_path / "collect.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(db_path)])
    try:
        wait_until(lambda: _row_count(db_path) > 0 or proc.poll() is not None,
                   timeout=120, what="the first output's rows")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    partial = _check_consistent(db_path)
    assert sum(partial.values()) % 100 == 0
    report = collect([folder], db_path)
    assert len(report.collected) == 6 - len(partial)
    # ase's lock file, which a killed ase.db writer leaves behind, does not block anyone
    Path(f"{db_path}.lock").write_text("left by a killed writer")
    assert len(collect([folder], db_path).collected) == 0
    final = _check_consistent(db_path)
    assert final == {str(o): 100 for o in outputs}


def test_an_output_stays_one_transaction_past_ase_db_commit_frequency(tmp_path, monkeypatch):
    # inside `with db:` ase.db commits every 5000 writes; here every 2, so that an output of
    # 4 configurations crosses it: collect must still write it whole or not at all
    from ase.db.sqlite import SQLite3Database

    real_managed = SQLite3Database.managed_connection
    monkeypatch.setattr(SQLite3Database, "managed_connection",
                        lambda self, commit_frequency=5000: real_managed(self, 2))
    make_project(tmp_path / "p")
    import wflp.db

    real = wflp.db.row_parts
    calls = {"n": 0}

    def failing(at, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("injected")
        return real(at, *args, **kwargs)

    monkeypatch.setattr(wflp.db, "row_parts", failing)
    with pytest.raises(RuntimeError, match="injected"):
        collect([tmp_path / "p"], tmp_path / "r.db")
    assert ase.db.connect(tmp_path / "r.db").count() == 0


def _postgres_url() -> str:
    url = os.environ.get("WFLP_TEST_POSTGRES_URL", "")
    if not url:
        message = ("WFLP_TEST_POSTGRES_URL is not set; to run this test: bash "
                   "scripts/services/postgres.sh start && source /tmp/wflp-postgres/env")
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {message}", pytrace=False)
        pytest.skip(message)
    return url


def test_postgresql_through_ase_db_backends(tmp_path):
    url = _postgres_url()
    from wflp.testing import require_module

    require_module("psycopg2", "pip install ase-db-backends psycopg2-binary")
    project = make_project(tmp_path / "p")
    db = ase.db.connect(url)
    with db:
        db.delete([r.id for r in db.select(include_data=False)])
    report = collect([tmp_path / "p"], url, calc_prefix="emt_")
    assert report.rows == 8
    rows = sorted(db.select(wflp_output=str(project["emt"])), key=lambda r: r.wflp_index)
    frames = ase.io.read(project["emt"], ":")
    assert [r.energy for r in rows] == pytest.approx([f.info["emt_energy"] for f in frames])
    assert rows[0].html == "<script>alert(1)</script>"
    again = collect([tmp_path / "p"], url, calc_prefix="emt_")
    assert again.rows == 0 and len(again.unchanged) == 2
    assert db.count() == 8
