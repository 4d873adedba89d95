"""wflp.iterate: numbered iteration folders, each iteration fed the previous one's result,
and (through the steps' records) a rerun that reuses and an interrupted loop that resumes."""

import doctest
import json

import pytest
import wflp.iterate
from ase.calculators.emt import EMT
from helpers import rattled_cu
from wflp import ConfigSet, OutputSpec
from wflp.errors import OutputError, ParameterError
from wflp.iterate import Iteration, iterate, iteration_folder
from wflp.ops import calculate, map
from wflp.records import record_path


def test_docstring_examples_pass():
    assert doctest.testmod(wflp.iterate).failed == 0


def test_folders_sort_in_order_at_any_count(tmp_path):
    names = [iteration_folder(tmp_path, n, 12).name for n in range(1, 13)]
    assert names == sorted(names) and names[0] == "iter_01" and names[-1] == "iter_12"
    wide = [iteration_folder(tmp_path, n, 100).name for n in (1, 9, 10, 100)]
    assert wide == ["iter_001", "iter_009", "iter_010", "iter_100"] == sorted(wide)
    assert iteration_folder(tmp_path, 2, 3, prefix="round_") == tmp_path / "round_02"


def test_each_iteration_gets_its_folder_and_the_previous_result(tmp_path):
    seen = []

    def step(it):
        seen.append(it)
        assert it.folder.is_dir()
        return it.previous + [it.number]

    results = iterate(step, start=[0], count=3, workdir=tmp_path / "run")
    assert results == [[0, 1], [0, 1, 2], [0, 1, 2, 3]]
    assert [it.folder.name for it in seen] == ["iter_01", "iter_02", "iter_03"]
    assert [it.previous for it in seen] == [[0], [0, 1], [0, 1, 2]]
    assert [(it.first, it.last) for it in seen] == [(True, False), (False, False),
                                                    (False, True)]
    assert all(isinstance(it, Iteration) and it.count == 3 for it in seen)


def _shift(atoms, by):
    atoms.positions[0, 0] += by
    return atoms


def _run_signature(path):
    return json.loads(record_path(path).read_text())["run"]


def test_a_rerun_reuses_every_step_and_an_interrupted_loop_resumes(tmp_path):
    """Real operations in the iterations: each shifts the previous iteration's output
    and evaluates it with EMT. A fault injected in iteration 2 stops the loop; the rerun
    reuses iteration 1 through its records and completes; a third run reuses all."""
    start = ConfigSet(rattled_cu(3, seed=1))
    fail_in = {"number": 2}

    def step(it):
        moved = map(it.previous, OutputSpec(it.folder / "moved.xyz"), _shift,
                    args=(0.05 * it.number,))
        if it.number == fail_in["number"]:
            raise RuntimeError("injected: the driver dies in iteration 2")
        return calculate(moved, OutputSpec(it.folder / "emt.xyz"), calculator=EMT(),
                         prefix="emt_")

    work = tmp_path / "run"
    with pytest.raises(RuntimeError, match="injected"):
        iterate(step, start, 3, work)
    first = {p: _run_signature(p) for p in (work / "iter_01" / "moved.xyz",
                                           work / "iter_01" / "emt.xyz",
                                           work / "iter_02" / "moved.xyz")}
    assert not (work / "iter_02" / "emt.xyz").exists()

    fail_in["number"] = None
    results = iterate(step, start, 3, work)
    for path, run in first.items():  # what was done before the fault was not redone
        assert _run_signature(path) == run, path
    assert [r.files[0].parent.name for r in results] == ["iter_01", "iter_02", "iter_03"]
    x0 = [at.positions[0, 0] for at in rattled_cu(3, seed=1)]
    x3 = [at.positions[0, 0] for at in results[-1]]
    assert x3 == pytest.approx([x + 0.05 * (1 + 2 + 3) for x in x0])  # fed forward
    assert all("emt_energy" in at.info for at in results[-1])

    everything = sorted(work.glob("iter_*/*.xyz"))
    before = {p: _run_signature(p) for p in everything}
    iterate(step, start, 3, work)
    assert {p: _run_signature(p) for p in everything} == before


@pytest.mark.parametrize("count", [0, -1, 2.0, "3", True, None])
def test_count_must_be_a_whole_number_of_one_or_more(tmp_path, count):
    with pytest.raises(ParameterError, match="iterate: count must be a whole number >= 1"):
        iterate(lambda it: None, None, count, tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("prefix", ["", "a/b", "..", 3])
def test_prefix_must_be_a_plain_name(tmp_path, prefix):
    with pytest.raises(ParameterError, match="iterate: prefix"):
        iterate(lambda it: None, None, 2, tmp_path, prefix=prefix)
    assert not list(tmp_path.iterdir())


def test_a_file_as_workdir_and_a_step_that_is_no_function_are_refused(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    with pytest.raises(OutputError, match="workdir .*taken.* is a file"):
        iterate(lambda it: None, None, 2, taken)
    with pytest.raises(ParameterError, match="step must be a function"):
        iterate("step", None, 2, tmp_path / "run")
    assert not (tmp_path / "run").exists()
