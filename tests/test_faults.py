"""Faults injected for real: two runs on one output, a driver killed with SIGKILL while its
workers run, Ctrl-C with a worker stuck in a sleep, items over their time limit.

No test here depends on the machine's speed: a run that must still hold its output's lock
when a second one starts is held at a gate file (items from index 4 on wait for it) until the
test has seen what it waits for; every other wait polls a file, a pipe or a process state
until a deadline from wflp.testing.scaled (WFLP_TEST_TIMEOUT_SCALE stretches them all)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ase.io
import numpy as np
import psutil
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from helpers import rattled_cu
from wflp import AutoparaInfo, ConfigSet, OutputSpec, operation
from wflp.errors import OperationError
from wflp.ops import calculate
from wflp.testing import scaled, wait_until

JOB = textwrap.dedent("""
    import logging, os, sys, time
    from wflp import AutoparaInfo, ConfigSet, OutputSpec, operation

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    inp, out, log, factor, overwrite, if_locked, nproc, pause, gate = sys.argv[1:]

    @operation("slow_scale")
    def slow_scale(at, factor, index):
        time.sleep(float(pause))
        if gate and index >= GATED_FROM:
            with open(gate + ".held", "a") as fd:  # tells the test: held, chunks written
                fd.write(f"{index}\\n")
            while not os.path.exists(gate):  # until the test opens the gate
                time.sleep(0.02)
        with open(log, "a") as fd:
            fd.write(f"{os.getpid()} {index}\\n")
        at.positions *= factor
        at.info["factor"] = factor
        return at

    if __name__ == "__main__":
        slow_scale(ConfigSet(inp), OutputSpec(out, overwrite=overwrite == "1",
                                              if_locked=if_locked), float(factor),
                   autopara_info=AutoparaInfo(num_python_subprocesses=int(nproc),
                                              num_inputs_per_python_subprocess=2))
        print("finished")
""")
GATED_FROM = 4  # items 0-3 (chunks 0 and 1, of 2 items each) run before the gate
JOB = JOB.replace("GATED_FROM", str(GATED_FROM))

#: How long a whole job run may take: generous for a loaded 2-core machine (a run takes
#: about 2 s on an idle one), times WFLP_TEST_TIMEOUT_SCALE.
RUN_S = 120.0


@pytest.fixture
def job(tmp_path):
    """``job(out, ...)`` starts JOB on in.xyz (16 items) in its own session; every group
    still alive at the end of the test (a gated run after a failure) is killed."""
    script = tmp_path / "job.py"
    script.write_text(JOB)
    ase.io.write(tmp_path / "in.xyz", rattled_cu(16))
    started = []

    def start(out, factor=1.1, overwrite=False, if_locked="wait", nproc=1, pause=0.05,
              log="calls.log", gate=None):
        args = [sys.executable, str(script), str(tmp_path / "in.xyz"), str(tmp_path / out),
                str(tmp_path / log), str(factor), "1" if overwrite else "0", if_locked,
                str(nproc), str(pause), str(gate or "")]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True,
                                env={**os.environ, "WFLP_PROGRESS": "0"})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def _calls(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [tuple(map(int, line.split())) for line in path.read_text().split("\n") if line]


def _held_at_gate(gate: Path, proc) -> bool:
    """Whether the gated run *proc* waits at *gate* (so its first chunks are in the stage);
    a run that ended instead fails the test with its stderr."""
    assert proc.poll() is None, \
        f"the run ended before its gate:\n{proc.communicate(timeout=scaled(RUN_S))[1]}"
    return Path(f"{gate}.held").exists()


def _waits_for_the_lock(proc) -> bool:
    """Whether *proc* said it waits for another run's lock; a run that ended instead fails
    the test with its stderr."""
    if "waiting" in _peek_stderr(proc):
        return True
    assert proc.poll() is None, f"the run ended without waiting:\n{_rest_of_stderr(proc)}"
    return False


def _rest_of_stderr(proc) -> str:
    """All of a finished (or finishing) process's stderr, what was peeked included."""
    _out, err = proc.communicate(timeout=scaled(RUN_S))
    return getattr(proc, "_peeked", "") + err


def _reference(tmp_path, factor):
    ats = list(ConfigSet(tmp_path / "in.xyz"))
    for at in ats:
        at.positions *= factor
        at.info["factor"] = factor
    return ats


# -- 6. one writer per output ------------------------------------------------------------------

@pytest.mark.slow
def test_second_run_waits_for_the_first_then_reuses(tmp_path, job):
    gate = tmp_path / "gate"
    first = job("out.xyz", gate=gate)
    wait_until(lambda: _held_at_gate(gate, first), RUN_S, "the first run to reach its gate")
    second = job("out.xyz", gate=gate)  # the same computation (the gate is part of it)
    wait_until(lambda: _waits_for_the_lock(second), RUN_S, "the second run to wait")
    gate.touch()  # now the first may finish
    out1, err1 = first.communicate(timeout=scaled(RUN_S))
    err2 = _rest_of_stderr(second)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert "is being written by another wflp run (pid" in err2 and "waiting" in err2
    calls = _calls(tmp_path / "calls.log")
    assert sorted(i for _, i in calls) == list(range(16))  # computed once, by the first
    assert {pid for pid, _ in calls} == {first.pid}
    got = ase.io.read(tmp_path / "out.xyz", ":")
    _same_positions(got, _reference(tmp_path, 1.1))


@pytest.mark.slow
def test_second_run_can_fail_at_once_instead(tmp_path, job):
    gate = tmp_path / "gate"
    first = job("out.xyz", gate=gate)
    wait_until(lambda: _held_at_gate(gate, first), RUN_S, "the first run to reach its gate")
    second = job("out.xyz", if_locked="fail", gate=gate)
    _out, err = second.communicate(timeout=scaled(RUN_S))  # the first still holds the lock
    assert second.returncode != 0
    assert f"is being written by another wflp run (pid {first.pid} on" in err
    assert "if_locked='wait'" in err
    gate.touch()
    first.communicate(timeout=scaled(RUN_S))
    assert first.returncode == 0


@pytest.mark.slow
def test_overwrite_started_during_a_run_then_both_killed_never_mixes(tmp_path, job):
    gate = tmp_path / "gate"
    first = job("out.xyz", factor=1.1, gate=gate)
    wait_until(lambda: _held_at_gate(gate, first), RUN_S, "the first run to reach its gate")
    second = job("out.xyz", factor=1.2, overwrite=True, gate=gate)
    wait_until(lambda: _waits_for_the_lock(second), RUN_S, "the second run to wait")
    # the waiting run first: killed second, it would take the lock the moment the first
    # died and could start clearing the first run's stage before its own kill arrived (a
    # busy CI saw half of the stage gone so); that is a run killed later, as the rerun
    # below is allowed to be, and makes no mixed output either
    for proc in (second, first):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # the first run's two chunks before its gate, and nothing of the second
    assert _factors_of_stage(tmp_path) == [1.1] * GATED_FROM
    gate.touch()
    rerun = job("out.xyz", factor=1.2, overwrite=True, gate=gate)
    _o, err = rerun.communicate(timeout=scaled(RUN_S))
    assert rerun.returncode == 0, err
    got = ase.io.read(tmp_path / "out.xyz", ":")
    assert [a.info["factor"] for a in got] == [1.2] * 16
    _same_positions(got, _reference(tmp_path, 1.2))


def _same_positions(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-7)  # written to 8 places


def _peek_stderr(proc) -> str:
    """What a running process has written to stderr so far (non-blocking)."""
    import fcntl

    fd = proc.stderr.fileno()
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        chunk = os.read(fd, 65536).decode()
    except BlockingIOError:
        chunk = ""
    proc._peeked = getattr(proc, "_peeked", "") + chunk
    return proc._peeked


def _factors_of_stage(tmp_path) -> list[float]:
    stage = tmp_path / ".out.xyz.wflp-partial"
    factors = []
    for chunk in sorted(stage.glob("c-*.xyz")):
        factors += [a.info["factor"] for a in ase.io.read(chunk, ":")]
    return factors


# -- 7. workers die with their driver ---------------------------------------------------------

#: How long workers may take to be gone once their driver died. They die at once
#: (PR_SET_PDEATHSIG, or a parent watch every 0.5 s); an orphaned pool worker would instead
#: wait on the pool's queue for ever, so any bound tells the two apart. Generous for a loaded
#: machine (the kernel's kill and init's reaping), times WFLP_TEST_TIMEOUT_SCALE.
WORKERS_DIE_S = 30.0


@pytest.mark.slow
@pytest.mark.parametrize("moment", [0.4, 0.9, 1.4])
def test_sigkill_of_the_driver_kills_its_workers_and_an_immediate_rerun_completes(
        tmp_path, job, moment):
    clean = job("clean.xyz", nproc=2, pause=0.15, log="clean.log")
    _o, err = clean.communicate(timeout=scaled(RUN_S))
    assert clean.returncode == 0, err
    proc = job("out.xyz", nproc=2, pause=0.15)
    wait_until(lambda: len(psutil.Process(proc.pid).children()) == 2, RUN_S,
               "the driver's 2 workers")
    workers = psutil.Process(proc.pid).children()
    # the moment of the kill is the fault injected (early, mid-run, late or after the end on
    # a fast machine); every outcome must pass, so this sleep waits for nothing
    time.sleep(moment)
    os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as the OOM killer would
    proc.wait()
    killed_at = time.monotonic()
    rerun = job("out.xyz", nproc=2, pause=0.15)  # at once, while old workers may still run
    _, alive = psutil.wait_procs(workers, timeout=scaled(WORKERS_DIE_S))
    assert not alive, "workers outlived their driver"
    assert time.monotonic() - killed_at < scaled(WORKERS_DIE_S)
    _o, err = rerun.communicate(timeout=scaled(RUN_S))
    assert rerun.returncode == 0, err
    assert (tmp_path / "out.xyz").read_bytes() == (tmp_path / "clean.xyz").read_bytes()
    assert not (tmp_path / ".out.xyz.wflp-partial").exists()


# -- 8. Ctrl-C with a stuck worker, and the per-item time limit ---------------------------------

CLI_JOB = textwrap.dedent("""
    import faulthandler, signal, sys, time
    from wflp import GeneratorSpec, hookimpl, operation

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # where it is, should it hang
    # Ctrl-C as in a terminal: a shell that starts a job in the background (CI's runner,
    # nohup ... &) makes it ignore SIGINT, and Python then keeps ignoring it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from wflp.cli import main
    from wflp.plugins import get_plugin_manager

    @operation("stuck")
    def stuck(at, index):
        with open(sys.argv[3], "a") as fd:
            fd.write(f"{index}\\n")
        if index == 5:
            time.sleep(10 ** 6)   # a worker that never finishes
        return at

    class Plugin:
        @hookimpl
        def wflp_generators(self):
            return [GeneratorSpec(name="stuck", summary="gets stuck", operation=stuck)]

    def ctrl_c_on_a_helper_thread():
        # the kernel may deliver a Ctrl-C to any thread of the driver: here to this one
        # (not the main thread), once every chunk but the stuck one has finished, so that
        # nothing but the stuck worker is left to wake the main thread
        import os, threading
        def begun():
            return (len(open(sys.argv[3]).read().split())
                    if os.path.exists(sys.argv[3]) else 0)
        seen, since = -1, time.monotonic()
        while begun() < 20 or time.monotonic() - since < 1.0:
            if begun() != seen:
                seen, since = begun(), time.monotonic()
            time.sleep(0.05)
        time.sleep(0.5)   # the last finished chunk's result is in
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    if __name__ == "__main__":
        get_plugin_manager().register_plugin(Plugin())
        if sys.argv[4:] == ["ctrl-c-on-a-helper-thread"]:
            import threading
            threading.Thread(target=ctrl_c_on_a_helper_thread, daemon=True).start()
        main(["run", "generator", "stuck", "-i", sys.argv[1], "-o", sys.argv[2],
              "--nproc", "2"])
""")


#: How long the driver may take to stop after Ctrl-C. It kills its workers at once; waiting
#: for the stuck one would take 10**6 s, so any bound tells the two apart. Generous for a
#: loaded machine, times WFLP_TEST_TIMEOUT_SCALE.
STOP_S = 60.0


@pytest.mark.slow
def test_ctrl_c_with_a_stuck_worker_stops_at_once_and_keeps_finished_chunks(tmp_path):
    script = tmp_path / "cli_job.py"
    script.write_text(CLI_JOB)
    ase.io.write(tmp_path / "in.xyz", rattled_cu(40))
    log = tmp_path / "calls.log"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "in.xyz"),
                             str(tmp_path / "out.xyz"), str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "WFLP_PROGRESS": "0"})
    try:
        # item 5's worker is stuck, the other goes on
        wait_until(lambda: proc.poll() is None and len(_calls_of(log)) >= 20, RUN_S,
                   "20 items begun")
        workers = psutil.Process(proc.pid).children()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        sent = time.monotonic()
        try:
            _out, err = proc.communicate(timeout=scaled(STOP_S))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGUSR1)  # its threads' stacks to its stderr
            time.sleep(1)
            os.killpg(proc.pid, signal.SIGKILL)
            _out, err = proc.communicate()
            pytest.fail(f"still running {scaled(STOP_S):g} s after Ctrl-C; its stderr:\n"
                        f"{err[-8000:]}")
        assert time.monotonic() - sent < scaled(STOP_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == \
        "wflp: interrupted (finished chunks are kept: rerun to resume)"
    _, alive = psutil.wait_procs(workers, timeout=scaled(WORKERS_DIE_S))
    assert not alive
    stage = tmp_path / ".out.xyz.wflp-partial"
    assert list(stage.glob("c-*.xyz"))  # finished chunks kept for the rerun


def test_ctrl_c_delivered_to_a_helper_thread_still_stops_the_driver(tmp_path):
    # A process-directed SIGINT lands on any thread; if it is not the main thread,
    # Python only sets a flag, and a main thread blocked in one long wait for a stuck
    # worker never ran the handler. The driver waits in short steps.
    script = tmp_path / "cli_job.py"
    script.write_text(CLI_JOB)
    ase.io.write(tmp_path / "in.xyz", rattled_cu(40))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "in.xyz"),
                             str(tmp_path / "out.xyz"), str(tmp_path / "calls.log"),
                             "ctrl-c-on-a-helper-thread"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "WFLP_PROGRESS": "0"})
    try:
        _out, err = proc.communicate(timeout=scaled(RUN_S + STOP_S))
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(1)
        os.killpg(proc.pid, signal.SIGKILL)
        _out, err = proc.communicate()
        pytest.fail(f"the driver did not stop after a Ctrl-C on a helper thread:\n"
                    f"{err[-8000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == \
        "wflp: interrupted (finished chunks are kept: rerun to resume)"
    assert list((tmp_path / ".out.xyz.wflp-partial").glob("c-*.xyz"))


def _calls_of(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


#: How long one run of 4 items, one of them cut at its time limit, may take: generous for a
#: loaded machine, times WFLP_TEST_TIMEOUT_SCALE. The item over its limit naps twice as long,
#: so a limit not enforced can never pass, whatever the scale.
LIMITED_RUN_S = 60.0


@operation("naps")
def _naps(at, index):
    if index == 2:
        time.sleep(2 * scaled(LIMITED_RUN_S))
    return at


@pytest.mark.parametrize("nproc", [1, 2])
def test_item_over_its_time_limit_fails_like_any_failing_item(nproc):
    ats = rattled_cu(4)
    info = AutoparaInfo(num_python_subprocesses=nproc, item_time_limit=0.5)
    start = time.monotonic()
    expected = (r"failed on item 2: (wflp\.errors\.)?ItemTimeoutError: item 2 ran longer "
                r"than its time limit of 0\.5 s")
    with pytest.raises(OperationError, match=expected):
        _naps(ats, OutputSpec(), autopara_info=info)
    assert time.monotonic() - start < scaled(LIMITED_RUN_S)
    start = time.monotonic()
    skipping = AutoparaInfo(num_python_subprocesses=nproc, item_time_limit=0.5,
                            skip_failed=True)
    kept = list(_naps(ats, OutputSpec(), autopara_info=skipping))
    assert len(kept) == 3
    assert time.monotonic() - start < scaled(LIMITED_RUN_S)


class _SlowOnSecond(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if atoms.info.get("slow"):
            time.sleep(30)
        work = self.atoms.copy()
        work.calc = EMT()
        self.results = {"energy": work.get_potential_energy(), "forces": work.get_forces()}


def test_calculation_over_its_time_limit_is_marked_failed():
    ats = rattled_cu(3)
    ats[1].info["slow"] = True
    out = list(calculate(ats, OutputSpec(), calculator=_SlowOnSecond(), prefix="S_",
                         autopara_info=AutoparaInfo(item_time_limit=0.5)))
    assert [a.info.get("S_calc_failed", False) for a in out] == [False, True, False]
    assert "ItemTimeoutError: item 1 ran longer than its time limit" in out[1].info["S_calc_error"]
    assert np.isfinite(out[2].info["S_energy"])


@operation("stuck_at_five")
def _stuck_at_five(at, index, gate):
    """Item 5 waits at *gate* (never opened by the test below; 120 s at most, so that
    code that waits for it fails the test instead of hanging it); the others run."""
    give_up = time.monotonic() + 120
    if index == 5:
        Path(gate + ".stuck").touch()
    while index == 5 and not os.path.exists(gate) and time.monotonic() < give_up:
        time.sleep(0.05)
    return at


def test_ctrl_c_between_two_results_stops_the_workers_at_once(tmp_path, monkeypatch):
    # Ctrl-C can land while the driver handles a result rather than while it waits for
    # the next: the executor's generator is then not interrupted but closed, and used to
    # wait for its running chunks, here one stuck for good. It must kill its workers.
    from wflp.engine.chunks import ChunkSizer
    from wflp.exec.local import worker_pool

    gate = str(tmp_path / "never")
    observe = ChunkSizer.observe

    def observe_then_ctrl_c(self, n_items, seconds):
        # the first result handled once item 5 runs, stuck (the other worker goes on)
        if os.path.exists(gate + ".stuck"):
            raise KeyboardInterrupt
        observe(self, n_items, seconds)

    monkeypatch.setattr(ChunkSizer, "observe", observe_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        _stuck_at_five(rattled_cu(40), OutputSpec(), gate=gate,
                       autopara_info=AutoparaInfo(num_python_subprocesses=2,
                                                  num_inputs_per_python_subprocess=1))
    # killed, not left to finish: the worker holding item 5 would never have
    assert worker_pool._pool is None
