"""The parallel engine: equivalence of serial and parallel runs, order, reuse of workers,
randomness, failures and bad parameters."""

import os
import threading
import time

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from helpers import rattled_cu
from wflp import AutoparaInfo, ConfigSet, OutputSpec, operation
from wflp.errors import NotPicklableError, OperationError, ParameterError
from wflp.exec.local import worker_pool
from wflp.ops import calculate, map, select_by_bool, select_by_index

TWO = AutoparaInfo(num_python_subprocesses=2)


def test_serial_and_two_processes_write_identical_files(tmp_path):
    ats = rattled_cu(40)
    calculate(ats, OutputSpec(tmp_path / "serial.xyz"), calculator=EMT())
    calculate(ats, OutputSpec(tmp_path / "par.xyz"), calculator=EMT(),
              autopara_info=AutoparaInfo(num_python_subprocesses=2,
                                         num_inputs_per_python_subprocess=3))
    assert (tmp_path / "serial.xyz").read_bytes() == (tmp_path / "par.xyz").read_bytes()


def test_calculate_matches_plain_ase_and_leaves_inputs_alone():
    ats = rattled_cu(6)
    before = [at.copy() for at in ats]
    out = list(calculate(ats, OutputSpec(), calculator=EMT(), autopara_info=TWO))
    for at, orig, res in zip(ats, before, out):
        assert at == orig and not at.info and at.calc is None
        ref = orig.copy()
        ref.calc = EMT()
        assert res.info["EMT_energy"] == pytest.approx(ref.get_potential_energy(), abs=1e-12)
        assert np.allclose(res.arrays["EMT_forces"], ref.get_forces())
        assert np.allclose(res.info["EMT_stress"], ref.get_stress())
    # serial run also leaves the caller's objects untouched
    calculate(ats, OutputSpec(), calculator=EMT())
    assert all(not at.info for at in ats)


def _slow_for_early(at, index):
    time.sleep(0.2 if index < 2 else 0.0)
    at.info["index"] = index
    return at


def test_order_kept_when_later_chunks_finish_first():
    ats = rattled_cu(12)
    info = AutoparaInfo(num_python_subprocesses=2, num_inputs_per_python_subprocess=1)
    op = operation("slow_early")(_slow_for_early)
    out = op(ats, OutputSpec(), autopara_info=info)
    assert [at.info["index"] for at in out] == list(range(12))


def test_worker_pool_is_created_once_and_reused():
    map(rattled_cu(4), OutputSpec(), lambda at: at, autopara_info=TWO)
    pool = worker_pool._pool
    pids_a = {at.info["pid"] for at in map(rattled_cu(8), OutputSpec(), _tag_pid,
                                            autopara_info=AutoparaInfo(
                                                num_python_subprocesses=2,
                                                num_inputs_per_python_subprocess=1))}
    pids_b = {at.info["pid"] for at in map(rattled_cu(8), OutputSpec(), _tag_pid,
                                            autopara_info=AutoparaInfo(
                                                num_python_subprocesses=2,
                                                num_inputs_per_python_subprocess=1))}
    assert worker_pool._pool is pool
    assert os.getpid() not in pids_a
    assert pids_a | pids_b <= worker_pool.worker_pids()


def _tag_pid(at):
    time.sleep(0.01)
    at.info["pid"] = os.getpid()
    return at


def _threads(at):
    at.info["omp"] = os.environ.get("OMP_NUM_THREADS")
    return at


def test_workers_pin_blas_threads():
    out = map(rattled_cu(2), OutputSpec(), _threads, autopara_info=TWO)
    assert {at.info["omp"] for at in out} == {"1"}


def _blas_threads(at):
    from threadpoolctl import threadpool_info

    # A single-threaded build (quippy's OpenBLAS, loaded by an earlier test) reports
    # threading_layer "disabled" and always one thread: it has nothing to pin.
    at.info["blas"] = sorted({p["num_threads"] for p in threadpool_info()
                              if p.get("user_api") == "blas"
                              and p.get("threading_layer") != "disabled"})
    return at


def test_workers_pin_already_loaded_blas_to_one_thread():
    pytest.importorskip("threadpoolctl", reason="pip install wflp[threads]")
    import numpy  # noqa: F401  (BLAS is loaded in this process before the pool forks)

    out = list(map(rattled_cu(2), OutputSpec(), _blas_threads,
                   autopara_info=AutoparaInfo(num_python_subprocesses=2)))
    assert out[0].info["blas"] and {t for at in out for t in at.info["blas"]} == {1}
    two = list(map(rattled_cu(2), OutputSpec(), _blas_threads,
                   autopara_info=AutoparaInfo(num_python_subprocesses=2, threads_per_worker=2)))
    assert {t for at in two for t in at.info["blas"]} == {2}


def test_number_of_processes_from_environment(monkeypatch):
    monkeypatch.setenv("WFLP_NUM_PYTHON_SUBPROCESSES", "2")
    assert AutoparaInfo().resolved().num_python_subprocesses == 2
    out = map(rattled_cu(6), OutputSpec(), _tag_pid,
              autopara_info=AutoparaInfo(num_inputs_per_python_subprocess=1))
    assert os.getpid() not in {at.info["pid"] for at in out}
    monkeypatch.setenv("WFLP_NUM_PYTHON_SUBPROCESSES", "many")
    with pytest.raises(ParameterError, match="WFLP_NUM_PYTHON_SUBPROCESSES"):
        map(rattled_cu(1), OutputSpec(), _tag_pid)


def _die_on_third(at, index):
    if index == 3:
        os.kill(os.getpid(), 9)
    time.sleep(0.05)
    return at


def test_worker_killed_gives_clear_error_and_pool_recovers(tmp_path):
    info = AutoparaInfo(num_python_subprocesses=2, num_inputs_per_python_subprocess=1)
    op = operation("dies")(_die_on_third)
    # the message names the chunk the dead worker was running, not the oldest pending one
    with pytest.raises(OperationError, match=r"worker process \d+ died while running the "
                       r"chunk starting at item 3 \(killed by SIGKILL"):
        op(rattled_cu(8), OutputSpec(tmp_path / "o.xyz"), autopara_info=info)
    assert not (tmp_path / "o.xyz").exists()
    # the pool is replaced and later operations work
    out = map(rattled_cu(4), OutputSpec(), _tag_pid, autopara_info=info)
    assert len(list(out)) == 4


def _cwd(at):
    at.info["cwd"] = os.getcwd()
    return at


def test_reused_workers_follow_the_callers_directory(tmp_path, monkeypatch):
    map(rattled_cu(2), OutputSpec(), _cwd, autopara_info=TWO)  # pool forked here
    monkeypatch.chdir(tmp_path)
    out = map(rattled_cu(4), OutputSpec("rel.xyz"), _cwd,
              autopara_info=AutoparaInfo(num_python_subprocesses=2,
                                         num_inputs_per_python_subprocess=1))
    assert {at.info["cwd"] for at in out} == {str(tmp_path)}
    assert (tmp_path / "rel.xyz").exists()


@pytest.mark.parametrize("field,value", [("num_python_subprocesses", 0),
                                         ("num_python_subprocesses", -2),
                                         ("num_python_subprocesses", "2"),
                                         ("num_inputs_per_python_subprocess", 0),
                                         ("threads_per_worker", 1.5)])
def test_nonsensical_counts_are_rejected(field, value):
    with pytest.raises(ParameterError, match=field):
        map(rattled_cu(1), OutputSpec(), _threads, autopara_info=AutoparaInfo(**{field: value}))


@operation("jitter", version="1")
def jitter(at, scale, rng):
    at.positions += rng.normal(scale=scale, size=at.positions.shape)
    return at


def test_random_streams_agree_between_serial_and_parallel_and_chunkings():
    ats = rattled_cu(10)
    serial = list(jitter(ats, OutputSpec(), 0.1, seed=7))
    par = list(jitter(ats, OutputSpec(), 0.1, seed=7,
                      autopara_info=AutoparaInfo(num_python_subprocesses=2,
                                                 num_inputs_per_python_subprocess=3)))
    other = list(jitter(ats, OutputSpec(), 0.1, seed=8))
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(serial, par))
    assert not np.allclose(serial[0].positions, other[0].positions)
    # each item gets its own stream: two identical inputs get different noise
    same = list(jitter([ats[0], ats[0]], OutputSpec(), 0.1, seed=7))
    assert not np.allclose(same[0].positions, same[1].positions)


def test_bad_seed():
    with pytest.raises(ParameterError, match="seed"):
        jitter(rattled_cu(1), OutputSpec(), 0.1, seed=-1)


def _fail_on_third(at, index):
    if index == 2:
        raise RuntimeError("boom on purpose")
    return at


def test_failure_stops_with_item_index_unless_skip_failed():
    op = operation("fails")(_fail_on_third)
    with pytest.raises(OperationError, match="item 2.*boom on purpose"):
        op(rattled_cu(5), OutputSpec(), autopara_info=TWO)
    kept = op(rattled_cu(5), OutputSpec(), autopara_info=AutoparaInfo(skip_failed=True))
    assert len(list(kept)) == 4


class LockedEMT(EMT):
    """An EMT that cannot be pickled, like many real calculators (it holds a lock)."""

    def __init__(self, log_path=None, **kwargs):
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        if log_path:
            with open(log_path, "a") as fd:
                fd.write(f"{os.getpid()}\n")


def test_unpicklable_calculator_explains_tuple_form(tmp_path):
    with pytest.raises(NotPicklableError, match=r"\(TBLite, \[\]"):
        calculate(rattled_cu(4), OutputSpec(), calculator=LockedEMT(), autopara_info=TWO)
    # serially the object itself is fine
    assert len(list(calculate(rattled_cu(2), OutputSpec(), calculator=LockedEMT()))) == 2


def test_tuple_form_builds_calculator_once_per_worker(tmp_path):
    log = tmp_path / "built.log"
    info = AutoparaInfo(num_python_subprocesses=2, num_inputs_per_python_subprocess=1)
    out = list(calculate(rattled_cu(10), OutputSpec(),
                         calculator=(LockedEMT, [], {"log_path": str(log)}), autopara_info=info))
    pids = log.read_text().split()
    assert len(pids) == len(set(pids)) <= 2
    assert all("LockedEMT_energy" in at.info for at in out)


class FailingCalc(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if len(atoms) == 3:
            raise ValueError("SCF did not converge")
        self.results = {"energy": float(len(atoms)), "forces": np.zeros((len(atoms), 3))}


def test_calculation_failure_is_marked_not_raised():
    ats = [Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]]),
           Atoms("H3", positions=[[0, 0, 0], [0, 0, 0.7], [0, 0, 1.4]])]
    out = list(calculate(ats, OutputSpec(), calculator=FailingCalc()))
    assert out[0].info["FailingCalc_energy"] == 2.0
    assert "FailingCalc_calc_failed" not in out[0].info
    assert out[1].info["FailingCalc_calc_failed"] is True
    assert out[1].info["FailingCalc_calc_error"] == "ValueError: SCF did not converge"
    with pytest.raises(OperationError, match="SCF did not converge"):
        calculate(ats, OutputSpec(), calculator=FailingCalc(), raise_errors=True)


def test_stress_skipped_for_non_periodic_and_properties_selectable():
    at = rattled_cu(1)[0]
    cluster = at.copy()
    cluster.pbc = False
    out = list(calculate([at, cluster], OutputSpec(), calculator=EMT(), prefix="x_"))
    assert "x_stress" in out[0].info and "x_stress" not in out[1].info
    only = list(calculate([at], OutputSpec(), calculator=EMT(), properties=["energy"]))[0]
    assert "EMT_energy" in only.info and "EMT_forces" not in only.arrays


def test_parameters_validated_before_running():
    with pytest.raises(ParameterError, match="calculate.*unexpected keyword.*'calc'"):
        calculate(rattled_cu(1), OutputSpec(), calculator=EMT(), calc=EMT())
    with pytest.raises(ParameterError, match="missing a required argument: 'calculator'"):
        calculate(rattled_cu(1), OutputSpec())


def _note_init(path):
    with open(path, "a") as fd:
        fd.write(f"{os.getpid()}\n")


def test_initializer_runs_once_per_process(tmp_path):
    log = tmp_path / "init.log"
    info = AutoparaInfo(num_python_subprocesses=2, num_inputs_per_python_subprocess=1,
                        initializer=(_note_init, (str(log),)))
    map(rattled_cu(8), OutputSpec(), _tag_pid, autopara_info=info)
    pids = log.read_text().split()
    assert len(pids) == len(set(pids)) and 1 <= len(pids) <= 2


def test_selection_by_bool_and_index():
    ats = rattled_cu(6)
    for i, at in enumerate(ats):
        at.info["i"] = i
    odd = select_by_bool(ats, OutputSpec(), lambda at: at.info["i"] % 2 == 1)
    assert [at.info["i"] for at in odd] == [1, 3, 5]
    nested = [ats[:3], ats[3:]]
    picked = select_by_index(nested, OutputSpec(), [0, 4, 5], autopara_info=TWO).to_list()
    assert [[at.info["i"] for at in g] for g in picked] == [[0], [4, 5]]


def test_map_may_return_several_configs_per_item():
    out = map(rattled_cu(3), OutputSpec(), lambda at: [at, at.copy()])
    assert len(list(out)) == 6


def test_progress_bar_on_request(capsys):
    pytest.importorskip("tqdm")
    map(rattled_cu(3), OutputSpec(), _threads, autopara_info=AutoparaInfo(progress=True))
    assert "3/3" in capsys.readouterr().err


def test_chaining_operations_returns_configsets(tmp_path):
    evaluated = calculate(rattled_cu(5), OutputSpec(tmp_path / "ev.xyz"), calculator=EMT())
    assert isinstance(evaluated, ConfigSet)
    low = select_by_bool(evaluated, OutputSpec(),
                         lambda at: at.info["EMT_energy"] < np.inf)
    assert len(list(low)) == 5
