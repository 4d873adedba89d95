"""The parts FileCalculator is made of, each on its own: CodeSpec (a code declared as
data), RunDirs (the directory factory, with the operation's place passed in),
run_program (the process), the diagnosis of outputs, and how a class declares its code.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import sys
from pathlib import Path

import pytest
from ase.build import bulk, molecule
from wflp.calculators import process
from wflp.calculators.codespec import CodeSpec
from wflp.calculators.context import current_place
from wflp.calculators.diagnosis import declared_error, failure_reason, scf_verdict
from wflp.calculators.filecalc import FileCalculator
from wflp.calculators.process import CannotRun, run_program
from wflp.calculators.rundir import DEFAULT_ROOT, RunDirs
from wflp.errors import ParameterError


@dataclasses.dataclass(frozen=True)
class Place:
    """A stand-in for the engine's RunContext (what RunDirs asks about)."""

    operation: str = "calculate"
    outputs: tuple = ()
    stage: str | None = None
    run_id: str = "r1"


def test_a_spec_refuses_what_it_cannot_use_and_keeps_lists_as_tuples():
    spec = CodeSpec(code="c", main_outputs=["a.out"], error_patterns=[re.compile("E")])
    assert spec.main_outputs == ("a.out",) and isinstance(spec.error_patterns, tuple)
    hash(spec)   # frozen data: hashable
    with pytest.raises(ParameterError, match="runner must be one of ase, template"):
        CodeSpec(code="c", runner="shell")
    with pytest.raises(ParameterError, match=r"converged_pattern must be a compiled"):
        CodeSpec(code="c", converged_pattern="SCF converged")
    with pytest.raises(ParameterError, match="directory= is set by wflp"):
        CodeSpec(code="c", reserved=("directory",)).refuse_reserved({"directory": "."})
    with pytest.raises(ParameterError, match="needs one: put a molecule in a box"):
        CodeSpec(code="c", needs_cell=True).check_structure(molecule("H2"))
    with pytest.raises(ParameterError, match="computes molecules and clusters"):
        CodeSpec(code="c", molecular_only=True).check_structure(bulk("Cu"))


def test_class_body_attributes_override_the_spec_they_inherit():
    class Declared(FileCalculator):
        spec = CodeSpec(code="declared", output_file="d.out", default_command="d.x")
        wflp_result_version = "2"          # a bump in the body must reach the records

    class Older(Declared):                 # the older way: class attributes only
        output_file = "o.out"
        implemented_properties = ["energy"]

    assert Declared.spec.result_version == "2" and Declared.output_file == "d.out"
    assert Declared().__wflp_provenance__()["result_version"] == "2"
    assert (Older.spec.code, Older.spec.output_file, Older.spec.properties) == (
        "declared", "o.out", ("energy",))
    assert Older().implemented_properties == ["energy"] and FileCalculator.spec.code == "file"


def test_the_verdict_of_the_last_scf_wins_only_when_declared(tmp_path):
    (tmp_path / "x.out").write_text("SCF NOT converged\nrelax step\nSCF converged\n")
    spec = CodeSpec(code="c", output_file="x.out",
                    converged_pattern=re.compile("SCF converged"),
                    not_converged_pattern=re.compile("SCF NOT converged"))
    assert scf_verdict(spec, tmp_path) is False       # one failed SCF fails the run
    assert scf_verdict(dataclasses.replace(spec, last_scf_wins=True), tmp_path) is True
    assert scf_verdict(dataclasses.replace(spec, output_file="none.out"), tmp_path) is None


def test_the_declared_error_and_the_reason_it_makes(tmp_path):
    spec = CodeSpec(code="c", output_file="x.out", stderr_file="x.err",
                    error_patterns=(re.compile("FATAL"), re.compile("error", re.I)))
    (tmp_path / "x.err").write_text("an Error\n")
    assert declared_error(spec, tmp_path) == "an Error"
    (tmp_path / "x.out").write_text(" * FATAL: bad input\n")
    assert declared_error(spec, tmp_path) == "FATAL: bad input"
    assert failure_reason("the calculation failed", 2, None) == \
        "the program exited with status 2"
    assert failure_reason("the calculation failed", None, "FATAL: x") == "FATAL: x"
    assert failure_reason("its output has no forces", 0, "FATAL: x") == \
        "its output has no forces: FATAL: x"


def test_run_directories_follow_the_place_they_are_given(tmp_path):
    out = tmp_path / "data" / "out.xyz"
    beside = RunDirs("c", place=lambda: Place(outputs=(str(out),),
                                              stage=str(tmp_path / "data" / ".stage")))
    beside.start_item(7)
    first, second = beside.new(), beside.new()
    assert (first, second) == (tmp_path / "data" / "out.xyz.rundirs" / "000007",
                               tmp_path / "data" / "out.xyz.rundirs" / "000007-1")
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o700
    rooted = RunDirs("c", root=str(tmp_path / "root"),
                     place=lambda: Place(outputs=(str(out),)))
    rooted.start_item(0)
    assert re.fullmatch(r"out\.xyz-[0-9a-f]{8}", rooted.new().parent.name)
    memory = RunDirs("c", root=str(tmp_path / "root"), place=lambda: Place(run_id="abc"))
    memory.start_item(1)
    assert memory.new() == tmp_path / "root" / "calculate-abc" / "000001"
    alone = RunDirs("c", root=str(tmp_path / "alone"), place=lambda: None)
    assert alone.new().parent == tmp_path / "alone" and current_place() is None


def test_finish_keeps_what_the_policy_says_and_copies_back_from_scratch(tmp_path, monkeypatch):
    dirs = RunDirs("c", keep="main", root=str(tmp_path / "runs"),
                   scratch=str(tmp_path / "scratch"), place=lambda: Place(run_id="s"))
    dirs.start_item(0)
    rundir = dirs.new()
    workdir = dirs.workdir(rundir)
    assert workdir.parent == tmp_path / "scratch"
    for name in ("main.out", "WAVECAR"):
        (workdir / name).write_text(name)
    dirs.finish(rundir, workdir, True, ["*.out"])
    assert os.listdir(rundir) == ["main.out"] and not workdir.exists()
    monkeypatch.chdir(tmp_path)
    none = RunDirs("c", keep="none", place=lambda: Place(run_id="n"))
    none.start_item(0)
    rundir = none.new()
    (rundir / "main.out").write_text("x")
    none.finish(rundir, rundir, True, ["*.out"])
    assert not (tmp_path / DEFAULT_ROOT).exists()   # run folder and root removed, empty


def test_run_program_gives_the_exit_status_and_the_files(tmp_path):
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(4)"
    started = []
    status = run_program([sys.executable, "-c", code], tmp_path, "p.out", "p.err",
                         started=lambda: started.append(True))
    assert (status, started) == (4, [True])
    assert Path(tmp_path, "p.out").read_text() == "out\n"
    assert Path(tmp_path, "p.err").read_text() == "err\n"
    with pytest.raises(CannotRun, match="cannot run '/nonexistent/prog'"):
        run_program(["/nonexistent/prog"], tmp_path, "q.out")


def test_each_program_gets_a_private_tmpdir_that_goes_with_it(tmp_path, monkeypatch):
    # Open MPI codes started at once race on $TMPDIR/ompi.<host>.<uid> (see process.py);
    # each run gets its own TMPDIR, 0700; an env= TMPDIR wins
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv("TMPDIR", str(shared))
    monkeypatch.setattr(process, "_retired", [])
    monkeypatch.setattr(process, "SETTLE_S", 0.0)
    code = ("import os, stat, sys; t = os.environ['TMPDIR']; "
            "[open(os.path.join(t, 'x'), 'w') for _ in sys.argv[1:]]; "
            "print(t, oct(stat.S_IMODE(os.stat(t).st_mode)))")
    seen = []
    for name, leave_a_file in (("a.out", True), ("b.out", False)):
        argv = [sys.executable, "-c", code] + (["x"] if leave_a_file else [])
        assert run_program(argv, tmp_path, name) == 0
        folder, mode = Path(tmp_path, name).read_text().split()
        assert mode == "0o700" and Path(folder).parent == shared
        seen.append(folder)
        if leave_a_file:    # as Open MPI's daemon does for a moment: the folder waits
            assert os.listdir(folder) == ["x"]
            os.remove(Path(folder, "x"))   # the daemon is done
    assert seen[0] != seen[1] and os.listdir(shared) == []   # both gone once empty
    mine = tmp_path / "mine"
    mine.mkdir()
    assert run_program(["env", f"TMPDIR={mine}", sys.executable, "-c", code, "x"], tmp_path,
                       "c.out") == 0
    assert Path(tmp_path, "c.out").read_text().split()[0] == str(mine)
    assert os.listdir(mine) == ["x"]                 # the user's folder is theirs to keep


def test_private_tmpdirs_left_full_are_removed_beyond_a_few(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(process, "_retired", [])
    monkeypatch.setattr(process, "MAX_RETIRED", 2)
    monkeypatch.setattr(process, "SETTLE_S", 0.0)
    code = "import os; open(os.path.join(os.environ['TMPDIR'], 'x'), 'w')"
    for i in range(4):
        assert run_program([sys.executable, "-c", code], tmp_path, f"{i}.out") == 0
    left = sorted(p for p in os.listdir(tmp_path) if p.startswith("wflp-tmp-"))
    assert len(left) == 2 and sorted(Path(f).name for f in process._retired) == left
    process._remove_retired()
    assert not [p for p in os.listdir(tmp_path) if p.startswith("wflp-tmp-")]


def test_a_tmpdir_where_no_folder_can_be_made_is_shared_as_before(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setenv("TMPDIR", str(locked))
    monkeypatch.setattr("tempfile.mkdtemp", _refuse)   # as a full or read-only disk would
    code = "import os; print(os.environ['TMPDIR'])"
    assert run_program([sys.executable, "-c", code], tmp_path, "d.out") == 0
    assert Path(tmp_path, "d.out").read_text().strip() == str(locked)


def _refuse(*args, **kwargs):
    raise OSError(28, "No space left on device")
