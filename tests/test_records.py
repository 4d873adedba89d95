"""Records: exact reuse, stale detection naming the differing fields, overwrite."""

import json
import logging

import ase
import ase.io
import pytest
from ase.calculators.emt import EMT
from helpers import rattled_cu
from wflp import ConfigSet, OutputSpec, operation
from wflp.errors import OutputError, RecordMismatchError
from wflp.ops import calculate
from wflp.records import record_path, sha256_file


@pytest.fixture
def counted(tmp_path):
    """An operation that logs each call to a file, to tell reuse from recomputation."""
    log = tmp_path / "calls.log"

    @operation("scaled", version="1")
    def scaled(at, factor):
        with open(log, "a") as fd:
            fd.write("x\n")
        at.positions *= factor
        return at

    def calls():
        return len(log.read_text().split()) if log.exists() else 0

    return scaled, calls


def test_record_describes_the_computation(tmp_path):
    ase.io.write(tmp_path / "in.xyz", rattled_cu(3))
    calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "out.xyz"),
              calculator=EMT(), prefix="E_")
    rec = json.loads(record_path(tmp_path / "out.xyz").read_text())
    assert rec["kind"] == "operation"
    assert rec["name"] == "calculate" and rec["version"] == calculate.version
    assert rec["providers"]["operation"]["distribution"] == "wflp"
    assert rec["providers"]["calculator"]["distribution"] == "ase"
    assert rec["providers"]["executor"] == {"name": "serial", "distribution": "wflp",
                                            "version": rec["run"]["wflp_version"]}
    calc = rec["parameters"]["calculator"]
    assert calc["calculator"] == "ase.calculators.emt.EMT"
    # ASE's version is a fact, not part of what decides reuse
    assert calc["distribution"] == "ase" and "version" not in calc
    assert "provider" not in calc
    assert rec["facts"]["versions"]["ase"] == ase.__version__
    assert rec["code"] == {"callable": "wflp.ops.calculate.calculate", "distribution": "wflp"}
    assert rec["parameters"]["prefix"] == "E_"
    assert rec["outputs"] == [{"file": "out.xyz", "configs": 3,
                               "sha256": rec["outputs"][0]["sha256"]}]
    assert len(rec["outputs"][0]["sha256"]) == 64
    assert rec["layout"] == {"outputs": ["out.xyz"], "split": "one file"}
    assert rec["output"] == {"format": "extxyz", "write_kwargs": {}}
    assert rec["inputs"]["files"] == ["in.xyz"]  # relative to the record's folder
    assert rec["inputs"]["file_sha256"] == [{"file": "in.xyz",
                                             "absolute": str(tmp_path / "in.xyz"),
                                             "sha256": sha256_file(tmp_path / "in.xyz")}]
    assert rec["engine"] == {"block": 32}  # EMT is reset every 32 configurations
    for key in ("started", "finished", "host", "wflp_version"):
        assert rec["run"][key]
    assert rec["inputs"]["sha256"] and rec["identity_sha256"] and rec["record_format"] == 3


def test_matching_rerun_reuses_without_computing(tmp_path, counted):
    scaled, calls = counted
    ats = rattled_cu(4)
    first = scaled(ats, OutputSpec(tmp_path / "o.xyz"), 1.1)
    assert calls() == 4
    mtime = (tmp_path / "o.xyz").stat().st_mtime_ns
    again = scaled(ats, OutputSpec(tmp_path / "o.xyz"), 1.1)
    assert calls() == 4
    assert (tmp_path / "o.xyz").stat().st_mtime_ns == mtime
    assert [a.positions.tolist() for a in first] == [a.positions.tolist() for a in again]


def test_changed_parameter_is_an_error_naming_it(tmp_path, counted):
    scaled, calls = counted
    ats = rattled_cu(2)
    scaled(ats, OutputSpec(tmp_path / "o.xyz"), 1.1)
    expected = r"parameters\.factor: 1\.1 -> 1\.2.*overwrite=True"
    with pytest.raises(RecordMismatchError, match=expected) as err:
        scaled(ats, OutputSpec(tmp_path / "o.xyz"), 1.2)
    assert set(err.value.differences) == {"parameters.factor"}
    assert calls() == 2
    scaled(ats, OutputSpec(tmp_path / "o.xyz", overwrite=True), 1.2)
    assert calls() == 4
    rec = json.loads(record_path(tmp_path / "o.xyz").read_text())
    assert rec["parameters"]["factor"] == 1.2


def test_changed_input_file_content_is_detected(tmp_path, counted):
    scaled, _ = counted
    ase.io.write(tmp_path / "in.xyz", rattled_cu(2))
    scaled(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "o.xyz"), 1.1)
    ase.io.write(tmp_path / "in.xyz", rattled_cu(2, seed=5))
    with pytest.raises(RecordMismatchError, match=r"inputs\.sha256"):
        scaled(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "o.xyz"), 1.1)


def test_changed_in_memory_inputs_are_detected(tmp_path, counted):
    scaled, _ = counted
    ats = rattled_cu(2)
    scaled(ats, OutputSpec(tmp_path / "o.xyz"), 1.1)
    ats[1].info["tag"] = 1
    with pytest.raises(RecordMismatchError, match=r"inputs\.sha256"):
        scaled(ats, OutputSpec(tmp_path / "o.xyz"), 1.1)


def test_calculator_fingerprinted_by_class_and_parameters(tmp_path):
    ats = rattled_cu(2)
    calculate(ats, OutputSpec(tmp_path / "o.xyz"), calculator=EMT())
    # a new but equal calculator object is the same computation
    calculate(ats, OutputSpec(tmp_path / "o.xyz"), calculator=EMT())
    expected = r"parameters\.calculator\.parameters\.asap_cutoff"
    with pytest.raises(RecordMismatchError, match=expected):
        calculate(ats, OutputSpec(tmp_path / "o.xyz"), calculator=EMT(asap_cutoff=True))


def test_operation_version_change_is_detected(tmp_path):
    @operation("bumped", version="1")
    def v1(at):
        return at

    @operation("bumped", version="2")
    def v2(at):
        return at

    v1(rattled_cu(1), OutputSpec(tmp_path / "o.xyz"))
    with pytest.raises(RecordMismatchError, match="version: 1 -> 2"):
        v2(rattled_cu(1), OutputSpec(tmp_path / "o.xyz"))


def test_changed_user_function_body_is_detected(tmp_path):
    from wflp.ops import map

    ats = rattled_cu(1)
    map(ats, OutputSpec(tmp_path / "o.xyz"), lambda at: at)
    with pytest.raises(RecordMismatchError, match=r"parameters\.func"):
        map(ats, OutputSpec(tmp_path / "o.xyz"), lambda at: at.copy())


def test_output_without_record_is_not_trusted(tmp_path, counted):
    scaled, calls = counted
    ase.io.write(tmp_path / "o.xyz", rattled_cu(1))
    with pytest.raises(OutputError, match="no wflp record"):
        scaled(rattled_cu(1), OutputSpec(tmp_path / "o.xyz"), 1.1)
    assert calls() == 0


def test_output_edited_after_writing_is_detected(tmp_path, counted):
    scaled, _ = counted
    scaled(rattled_cu(2), OutputSpec(tmp_path / "o.xyz"), 1.1)
    with open(tmp_path / "o.xyz", "a") as fd:
        fd.write("\n")
    with pytest.raises(OutputError, match="modified after wflp wrote it"):
        scaled(rattled_cu(2), OutputSpec(tmp_path / "o.xyz"), 1.1)


def test_corrupt_record_is_reported(tmp_path, counted):
    scaled, _ = counted
    scaled(rattled_cu(1), OutputSpec(tmp_path / "o.xyz"), 1.1)
    record_path(tmp_path / "o.xyz").write_text("{ not json")
    with pytest.raises(RecordMismatchError, match="cannot be read"):
        scaled(rattled_cu(1), OutputSpec(tmp_path / "o.xyz"), 1.1)


LIMIT = 3


def test_values_a_function_reads_from_outside_are_part_of_the_record(tmp_path):
    """A lambda's threshold from the enclosing scope, or a module global, changes results."""
    from wflp.ops import select_by_bool

    ats = [at * (1, 1, n) for at, n in zip(rattled_cu(4), (1, 1, 2, 2))]
    limit = 5
    first = select_by_bool(ats, OutputSpec(tmp_path / "sel.xyz"), lambda at: len(at) < limit)
    assert len(list(first)) == 2
    limit = 9
    with pytest.raises(RecordMismatchError, match=r"parameters\.func"):
        select_by_bool(ats, OutputSpec(tmp_path / "sel.xyz"), lambda at: len(at) < limit)
    again = select_by_bool(ats, OutputSpec(tmp_path / "sel.xyz", overwrite=True),
                           lambda at: len(at) < limit)
    assert len(list(again)) == 4

    global LIMIT
    select_by_bool(ats, OutputSpec(tmp_path / "g.xyz"), _below_global_limit)
    LIMIT = 6
    try:
        with pytest.raises(RecordMismatchError, match=r"parameters\.func"):
            select_by_bool(ats, OutputSpec(tmp_path / "g.xyz"), _below_global_limit)
    finally:
        LIMIT = 3


def _below_global_limit(at):
    return len(at) < LIMIT


def test_unrelated_live_globals_do_not_make_records_unstable(tmp_path):
    """A function using a logger or a module still matches its record on rerun."""
    from wflp.ops import map

    ats = rattled_cu(2)
    map(ats, OutputSpec(tmp_path / "o.xyz"), _logs_and_returns)
    logging.getLogger("some.new.logger")  # the logging machinery's state changes
    map(ats, OutputSpec(tmp_path / "o.xyz"), _logs_and_returns)  # reused, no error


_LOG = logging.getLogger("wflp.tests")


def _logs_and_returns(at):
    _LOG.debug("seen %s", json.dumps(len(at)))
    return at
