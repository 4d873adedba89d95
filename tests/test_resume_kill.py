"""Resume after kill -9: real SIGKILLs at random moments, then completion.

Checks that the final output is byte-identical to an uninterrupted run, that no
partial file ever appears under the final name, and that chunks finished before
a kill are never computed again (counted through a call log).

The moments are events, not times, so that every machine reaches them: the start of the
interpreter, the lock taken, or the k-th item logged, each then a random fraction of an
item later. Deadlines come from wflp.testing.scaled (WFLP_TEST_TIMEOUT_SCALE)."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ase.io
import pytest
from helpers import rattled_cu
from wflp.records.store import lock_path
from wflp.testing import scaled, wait_until

N_ITEMS = 32
CHUNK = 4

SCRIPT = textwrap.dedent("""
    import os, sys, time
    from wflp import AutoparaInfo, ConfigSet, OutputSpec, operation

    workdir, nproc = sys.argv[1], int(sys.argv[2])
    log = os.path.join(workdir, "calls.log")

    @operation("slow_shift", version="1")
    def slow_shift(at, index):
        time.sleep(0.03)
        with open(log, "a") as fd:
            fd.write(f"{index}\\n")
        at.positions += 0.01 * index
        at.info["shifted"] = index
        return at

    slow_shift(ConfigSet(os.path.join(workdir, "..", "in.xyz")),
               OutputSpec(os.path.join(workdir, "out.xyz")),
               autopara_info=AutoparaInfo(num_python_subprocesses=nproc,
                                          num_inputs_per_python_subprocess=CHUNK))
""").replace("CHUNK", str(CHUNK))

CHUNK_RE = re.compile(r"^c-[0-9a-f]{8}-\d{6}-(\d{12})-(\d{12})-[0-9a-f]{16}\.xyz$")


#: How long one whole run may take (about 1-2 s on an idle machine): generous for a loaded
#: 2-core machine, times WFLP_TEST_TIMEOUT_SCALE.
RUN_S = 120.0

KILLED_WORKERS: list = []


def _run(script, workdir, nproc, kill_when=None, then=0.0):
    """Run the job. With *kill_when* (a check of the running process), wait until it is
    true, *then* seconds more, and SIGKILL the driver alone (its workers are not signalled:
    they must die with it); return at once, as a user's rerun would. True if the run
    finished (successfully) before the kill."""
    import psutil

    proc = subprocess.Popen([sys.executable, str(script), str(workdir), str(nproc)],
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "WFLP_PROGRESS": "0"})
    if kill_when is not None:
        wait_until(lambda: proc.poll() is not None or kill_when(proc), RUN_S,
                   "the moment to kill", interval=0.005)
        time.sleep(then)  # a random moment after the event: the fault, not a wait
    if kill_when is None or proc.poll() is not None:
        _out, err = proc.communicate(timeout=scaled(RUN_S))
        assert proc.returncode == 0, err.decode()
        return True
    try:
        workers = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        workers = []
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    KILLED_WORKERS.extend(workers)  # checked at the end; the rerun starts right away
    return False


def _kill_moment(rnd, workdir, remaining):
    """A random kill moment (check, then) for a run of *workdir* that has *remaining* items
    to compute: during start-up, once it holds its lock, or after its k-th item; each a
    random part of an item's 0.03 s later (start-up: of a second)."""
    log, lock = workdir / "calls.log", lock_path(workdir / "out.xyz")
    before = len(_calls(workdir))
    kind = rnd.choice(["start-up", "locked", "items", "items", "items", "items"])
    if kind == "start-up":
        return (lambda proc: True), rnd.uniform(0.0, 1.0)
    if kind == "locked":
        def holds_lock(proc):
            try:
                return f"pid {proc.pid} on" in lock.read_text()
            except FileNotFoundError:
                return False
        return holds_lock, rnd.uniform(0.0, 0.03)
    k = rnd.randint(1, max(remaining, 1))
    return (lambda proc: log.exists() and len(_calls(workdir)) >= before + k), \
        rnd.uniform(0.0, 0.03)


def _finished_ranges(workdir):
    stage = workdir / ".out.xyz.wflp-partial"
    if not stage.exists():
        return []
    return [(int(m.group(1)), int(m.group(2))) for m in map(CHUNK_RE.match, os.listdir(stage))
            if m]


def _calls(workdir):
    log = workdir / "calls.log"
    return [int(x) for x in log.read_text().split()] if log.exists() else []


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path):
    ase.io.write(tmp_path / "in.xyz", rattled_cu(N_ITEMS))
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    ref = tmp_path / "ref"
    ref.mkdir()
    _run(script, ref, 1)
    ref_bytes = (ref / "out.xyz").read_bytes()
    assert sorted(_calls(ref)) == list(range(N_ITEMS))

    rnd = random.Random(1234)
    kills = 0
    scenario = 0
    while kills < 12:
        scenario += 1
        assert scenario <= 24, f"only {kills} runs could be interrupted"
        work = tmp_path / f"w{scenario}"
        work.mkdir()
        nproc = 2 if scenario % 2 else 1
        protected = []  # (calls seen at the kill, items in chunks finished then)
        for _ in range(3):
            # anywhere from start-up to the end of the work
            done_before = {i for a, b in _finished_ranges(work) for i in range(a, b)}
            check, then = _kill_moment(rnd, work, N_ITEMS - len(done_before))
            done = _run(script, work, nproc, kill_when=check, then=then)
            out = work / "out.xyz"
            if out.exists():  # whatever is under the final name is complete
                assert out.read_bytes() == ref_bytes
            if done:
                break
            kills += 1
            finished = {i for a, b in _finished_ranges(work) for i in range(a, b)}
            protected.append((len(_calls(work)), finished))
        _run(script, work, nproc)
        assert (work / "out.xyz").read_bytes() == ref_bytes
        assert not (work / ".out.xyz.wflp-partial").exists()
        rec = json.loads((work / "out.xyz.record.json").read_text())
        assert rec["outputs"][0]["configs"] == N_ITEMS
        calls = _calls(work)
        for seen, finished in protected:
            recomputed = finished & set(calls[seen:])
            assert not recomputed, f"finished chunks recomputed: {sorted(recomputed)}"
        assert set(calls) == set(range(N_ITEMS))
        # interrupted chunks may be recomputed, but no more than once per interruption
        assert len(calls) <= N_ITEMS + (len(protected) + 1) * nproc * 2 * CHUNK

    # they die with their driver at once; a bound only for a loaded machine (see test_faults)
    wait_until(lambda: not _alive(KILLED_WORKERS), 30, "the workers of killed drivers to die "
               "(an orphaned pool worker would wait on its queue for ever)")


def _alive(procs) -> list:
    """Those of the psutil processes *procs* still running (zombies are dead)."""
    import psutil

    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def _killed_run(tmp_path, killed_script: str, nproc: int):
    """A run of SCRIPT over 8 configurations in tmp_path/w, SIGKILLed where *killed_script*
    kills it; returns (work folder, rerun) where rerun() runs SCRIPT there again."""
    ase.io.write(tmp_path / "in.xyz", rattled_cu(8))
    work = tmp_path / "w"
    work.mkdir()
    (tmp_path / "killed.py").write_text(killed_script)
    (tmp_path / "job.py").write_text(SCRIPT)
    env = {**os.environ, "WFLP_PROGRESS": "0"}

    def run(script):
        return subprocess.run([sys.executable, str(tmp_path / script), str(work), str(nproc)],
                              capture_output=True, text=True, env=env, timeout=scaled(RUN_S))

    killed = run("killed.py")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    return work, lambda: run("job.py")


#: SCRIPT, SIGKILLed while it removes its stage after committing the output: rmtree has
#: just deleted stage.json and one chunk file (its order is the directory's).
KILLED_IN_RMTREE = textwrap.dedent("""
    import os, shutil, signal

    def rmtree_then_killed(path, *args, **kwargs):
        if ".wflp-partial" in os.path.basename(path):
            names = sorted(os.listdir(path))
            for name in ["stage.json", names[0]]:
                os.unlink(os.path.join(path, name))
            os.kill(os.getpid(), signal.SIGKILL)
        return real_rmtree(path, *args, **kwargs)

    real_rmtree, shutil.rmtree = shutil.rmtree, rmtree_then_killed
""") + SCRIPT


def test_kill_while_the_stage_is_removed_keeps_the_committed_output(tmp_path):
    """A kill part-way through removing the stage (after the output and its record were
    committed) must not make the rerun distrust them: it computes nothing, and clears what
    the kill left."""
    work, rerun_job = _killed_run(tmp_path, KILLED_IN_RMTREE, 1)
    committed = (work / "out.xyz").read_bytes()
    assert (work / "out.xyz.record.json").exists()
    assert sorted(_calls(work)) == list(range(8))
    rerun = rerun_job()
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(_calls(work)) == list(range(8))  # nothing computed again
    assert (work / "out.xyz").read_bytes() == committed
    assert not [p.name for p in work.iterdir() if ".wflp-partial" in p.name]


#: SCRIPT, SIGKILLed after the commit (output and record in place) and before it starts to
#: remove its stage: the whole stage, its record and every chunk, is still there.
KILLED_BEFORE_STAGE_REMOVAL = textwrap.dedent("""
    import os, signal
    from wflp.engine.stage import Stage

    Stage.remove = lambda self: os.kill(os.getpid(), signal.SIGKILL)
""") + SCRIPT


def test_kill_after_the_commit_before_the_stage_goes_reuses_the_output(tmp_path):
    """The outputs and their records are in place, the stage is whole: the rerun reuses
    them as they are (same bytes, same record, nothing computed or assembled again) and
    removes the stage. It used to resume from the stage and commit the output anew, which
    a step's "reused" check (examples/iterative_fit.py) saw as a recomputation."""
    from wflp.records.query import load

    work, rerun_job = _killed_run(tmp_path, KILLED_BEFORE_STAGE_REMOVAL, 2)
    stage = work / ".out.xyz.wflp-partial"
    assert (stage / "stage.json").exists() and len(list(stage.iterdir())) > 1
    committed = (work / "out.xyz").read_bytes()
    run_before = load(work / "out.xyz")[0].run
    rerun = rerun_job()
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(_calls(work)) == list(range(8))  # nothing computed again
    assert (work / "out.xyz").read_bytes() == committed
    assert load(work / "out.xyz")[0].run == run_before  # not committed anew
    assert not [p.name for p in work.iterdir() if ".wflp-partial" in p.name]


def test_a_stage_left_beside_an_edited_output_is_resumed(tmp_path):
    """Outputs that do not match their record are not reused because a stage is there:
    the stage's finished chunks are assembled again into the output."""
    work, rerun_job = _killed_run(tmp_path, KILLED_BEFORE_STAGE_REMOVAL, 1)
    committed = (work / "out.xyz").read_bytes()
    (work / "out.xyz").write_bytes(committed[: len(committed) // 2])  # damaged afterwards
    rerun = rerun_job()
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(_calls(work)) == list(range(8))  # from the stage's chunks, not computed
    assert (work / "out.xyz").read_bytes() == committed
    assert not [p.name for p in work.iterdir() if ".wflp-partial" in p.name]


def test_kill_between_output_rename_and_record_resumes(tmp_path):
    """The narrow window at the end: final file renamed, record not yet written."""
    from wflp import OutputSpec
    from wflp.ops import map

    ats = rattled_cu(6)
    out = tmp_path / "o.xyz"
    map(ats, OutputSpec(out), _ident)
    good = out.read_bytes()
    # simulate the crash window: stage dir present, record missing
    stage = tmp_path / ".o.xyz.wflp-partial"
    (tmp_path / "o.xyz.record.json").unlink()
    stage.mkdir(mode=0o700)
    map(ats, OutputSpec(out), _ident)
    assert out.read_bytes() == good
    assert (tmp_path / "o.xyz.record.json").exists() and not stage.exists()


def _ident(at):
    return at


def test_stage_directory_is_private(tmp_path):
    from wflp import OutputSpec, operation

    note = tmp_path / "mode.txt"

    @operation("peek")
    def peek(at):
        stage = Path(tmp_path) / ".o.xyz.wflp-partial"
        note.write_text(oct(stage.stat().st_mode & 0o777))
        return at

    peek(rattled_cu(1), OutputSpec(tmp_path / "o.xyz"))
    assert note.read_text() == "0o700"


def test_changed_parameters_with_partial_output_is_an_error(tmp_path):
    from wflp import OutputSpec
    from wflp.errors import OperationError, RecordMismatchError
    from wflp.ops import map

    def fail_late(at, limit):
        if at.info["i"] >= limit:
            raise RuntimeError("interrupted")
        return at

    ats = rattled_cu(6)
    for i, at in enumerate(ats):
        at.info["i"] = i
    from wflp import AutoparaInfo

    info = AutoparaInfo(num_inputs_per_python_subprocess=2)
    with pytest.raises(OperationError):
        map(ats, OutputSpec(tmp_path / "o.xyz"), fail_late, kwargs={"limit": 4},
            autopara_info=info)
    assert not (tmp_path / "o.xyz").exists()
    with pytest.raises(RecordMismatchError, match="partial output.*parameters.kwargs.limit"):
        map(ats, OutputSpec(tmp_path / "o.xyz"), fail_late, kwargs={"limit": 5},
            autopara_info=info)
    out = map(ats, OutputSpec(tmp_path / "o.xyz", overwrite=True), fail_late,
              kwargs={"limit": 99}, autopara_info=info)
    assert len(list(out)) == 6


@pytest.mark.parametrize("damage", ["truncate", "change a byte", "empty"])
def test_damaged_chunk_file_is_computed_again(tmp_path, caplog, damage):
    """A chunk file whose bytes no longer match the digest in its name is not trusted
    (as after an OS crash that lost unflushed data): only that chunk runs again."""
    from wflp import AutoparaInfo, OutputSpec, operation
    from wflp.errors import OperationError

    stop = tmp_path / "stop"
    log = tmp_path / "calls.log"

    @operation("logged_shift")
    def logged_shift(at, index):
        if index >= 4 and stop.exists():
            raise RuntimeError("interrupted")
        with open(log, "a") as fd:
            fd.write(f"{index}\n")
        at.positions += 0.01 * index
        return at

    ats = rattled_cu(8)
    info = AutoparaInfo(num_inputs_per_python_subprocess=2)
    clean = tmp_path / "clean.xyz"
    logged_shift(ats, OutputSpec(clean), autopara_info=info)
    log.unlink()

    out = tmp_path / "o.xyz"
    stop.touch()
    with pytest.raises(OperationError):
        logged_shift(ats, OutputSpec(out), autopara_info=info)
    stage = tmp_path / ".o.xyz.wflp-partial"
    first = sorted(p for p in stage.iterdir() if p.name.startswith("c-"))[0]
    assert CHUNK_RE.match(first.name).groups() == ("000000000000", "000000000002")
    data = first.read_bytes()
    if damage == "truncate":
        first.write_bytes(data[: len(data) // 2])
    elif damage == "change a byte":
        first.write_bytes(data[:-2] + (b"1" if data[-2:-1] != b"1" else b"2") + data[-1:])
    else:
        first.write_bytes(b"")
    stop.unlink()
    log.unlink()
    with caplog.at_level("WARNING", logger="wflp"):
        logged_shift(ats, OutputSpec(out), autopara_info=info)
    assert sorted(_calls(tmp_path)) == [0, 1, 4, 5, 6, 7]
    assert out.read_bytes() == clean.read_bytes()
    assert any("damaged" in r.getMessage() and first.name in r.getMessage()
               for r in caplog.records)
