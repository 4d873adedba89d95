"""ConfigSet and OutputSpec: sources, grouping, formats, bad input."""

import os

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from helpers import rattled_cu
from wflp import ConfigSet, OutputSpec
from wflp.errors import InputError, MalformedFileError, OutputError, ParameterError, WflpError
from wflp.ops import calculate, map


def _positions(configs):
    return [np.round(at.positions, 8).tolist() for at in configs]


def test_from_list_iterates_in_order():
    ats = rattled_cu(5)
    assert _positions(ConfigSet(ats)) == _positions(ats)


def test_single_atoms_is_one_item():
    at = rattled_cu(1)[0]
    assert len(ConfigSet(at)) == 1


def test_nested_grouping_is_reproduced_in_memory_output():
    ats = rattled_cu(5)
    nested = [[ats[0], ats[1]], [ats[2]], [ats[3], ats[4]]]
    out = map(nested, OutputSpec(), lambda at: at).to_list()
    assert [len(g) for g in out] == [2, 1, 2]
    assert _positions(out[2]) == _positions(nested[2])


def test_one_file_many_files_glob_and_concatenation(tmp_path):
    ats = rattled_cu(6)
    for i in range(3):
        ase.io.write(tmp_path / f"c{i}.xyz", ats[2 * i:2 * i + 2])
    assert _positions(ConfigSet(tmp_path / "c0.xyz")) == _positions(ats[:2])
    many = ConfigSet([tmp_path / "c0.xyz", tmp_path / "c2.xyz"])
    assert _positions(many) == _positions(ats[:2] + ats[4:])
    assert len(many.groups()) == 2
    globbed = ConfigSet(str(tmp_path / "c*.xyz"))
    assert _positions(globbed) == _positions(ats)
    assert [p.name for p in globbed.files] == ["c0.xyz", "c1.xyz", "c2.xyz"]
    both = ConfigSet([ConfigSet(tmp_path / "c1.xyz"), ConfigSet(ats[:1])])
    assert _positions(both) == _positions(ats[2:4] + ats[:1])


def test_other_format_and_read_kwargs(tmp_path):
    ats = rattled_cu(4)
    ase.io.write(tmp_path / "c.traj", ats)
    assert _positions(ConfigSet(tmp_path / "c.traj")) == _positions(ats)
    every_other = ConfigSet(tmp_path / "c.traj", index="::2")
    assert _positions(every_other) == _positions(ats[::2])


def test_iteration_streams_one_frame_at_a_time(tmp_path):
    path = tmp_path / "c.xyz"
    ase.io.write(path, rattled_cu(3))
    it = iter(ConfigSet(path))
    first = next(it)
    # the file can be appended to after the first frame was read: nothing was read ahead
    ase.io.write(path, rattled_cu(3, seed=1), append=True)
    assert 1 + sum(1 for _ in it) == 6
    assert isinstance(first, Atoms)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(InputError, match="nope.xyz"):
        list(ConfigSet(tmp_path / "nope.xyz"))


def test_strings_are_file_names_unless_from_items(tmp_path):
    with pytest.raises(InputError, match="from_items"):
        list(ConfigSet(["CCO"]))


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(InputError, match="matches no file"):
        ConfigSet(str(tmp_path / "x*.xyz"))


def test_malformed_extxyz_names_file_frame_and_line(tmp_path):
    path = tmp_path / "bad.xyz"
    ase.io.write(path, rattled_cu(2))
    lines = path.read_text().splitlines(keepends=True)
    lines[6 + 3] = "Cu not-a-number 0.0 0.0\n"  # second frame, second atom line
    path.write_text("".join(lines))
    with pytest.raises(MalformedFileError) as err:
        list(ConfigSet(path))
    msg = str(err.value)
    assert "bad.xyz" in msg and "frame 1" in msg and "line 10" in msg


def test_truncated_extxyz(tmp_path):
    path = tmp_path / "cut.xyz"
    ase.io.write(path, rattled_cu(2))
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-2]))
    with pytest.raises(MalformedFileError, match="frame 1.*truncated"):
        list(ConfigSet(path))


def test_not_extxyz_at_all(tmp_path):
    path = tmp_path / "junk.xyz"
    path.write_text("hello world\n")
    with pytest.raises(MalformedFileError, match="junk.xyz.*frame 0.*atom count"):
        list(ConfigSet(path))


def test_malformed_file_fails_operation_without_final_output(tmp_path):
    path = tmp_path / "junk.xyz"
    path.write_text("2\n\nCu 0 0 0\n")
    out = tmp_path / "out.xyz"
    with pytest.raises(MalformedFileError):
        calculate(ConfigSet(path), OutputSpec(out), calculator=EMT())
    assert not out.exists()


def test_output_file_count_must_match_inputs(tmp_path):
    ats = rattled_cu(4)
    for i in range(2):
        ase.io.write(tmp_path / f"in{i}.xyz", ats[2 * i:2 * i + 2])
    inputs = ConfigSet([tmp_path / "in0.xyz", tmp_path / "in1.xyz"])
    with pytest.raises(OutputError, match="3 files but the input has 2"):
        map(inputs, OutputSpec([tmp_path / f"o{i}.xyz" for i in range(3)]), lambda at: at)
    assert not list(tmp_path.glob("o*.xyz"))


def test_one_output_file_per_input_file(tmp_path):
    ats = rattled_cu(5)
    ase.io.write(tmp_path / "in0.xyz", ats[:2])
    ase.io.write(tmp_path / "in1.xyz", ats[2:])
    outs = [tmp_path / "o0.xyz", tmp_path / "o1.xyz"]
    result = calculate(ConfigSet([tmp_path / "in0.xyz", tmp_path / "in1.xyz"]),
                       OutputSpec(outs), calculator=EMT())
    assert [len(ase.io.read(o, ":")) for o in outs] == [2, 3]
    assert [len(list(g)) for g in result.groups()] == [2, 3]
    assert all(os.path.exists(str(o) + ".record.json") for o in outs)


def test_output_in_other_format(tmp_path):
    ats = rattled_cu(3)
    out = calculate(ats, OutputSpec(tmp_path / "o.traj"), calculator=EMT())
    assert out.files[0].suffix == ".traj"
    back = list(out)
    ref = []
    for at in ats:
        at = at.copy()
        at.calc = EMT()
        ref.append(at.get_potential_energy())
    assert np.allclose([at.info["EMT_energy"] for at in back], ref)


def test_output_spec_rejects_nonsense():
    with pytest.raises(ParameterError):
        OutputSpec([])
    with pytest.raises(ParameterError):
        OutputSpec(["a.xyz", "a.xyz"])
    with pytest.raises(WflpError, match="OutputSpec"):
        map(rattled_cu(1), "out.xyz", lambda at: at)


def test_memory_output_keeps_non_atoms_items():
    out = map(ConfigSet.from_items(["CCO", "C"]), OutputSpec(), lambda s: s + "!")
    assert list(out) == ["CCO!", "C!"]


def test_non_atoms_to_file_is_a_clear_error(tmp_path):
    with pytest.raises(OutputError, match="cannot be written to a file"):
        map(ConfigSet.from_items(["CCO"]), OutputSpec(tmp_path / "o.xyz"), lambda s: s)
    assert not (tmp_path / "o.xyz").exists()


def test_cheap_length_counts_extxyz_frames_without_parsing(tmp_path):
    ase.io.write(tmp_path / "a.xyz", rattled_cu(7))
    ase.io.write(tmp_path / "b.xyz", rattled_cu(2, repeat=2))
    assert ConfigSet([tmp_path / "a.xyz", tmp_path / "b.xyz"]).cheap_length() == 9
    assert ConfigSet([ConfigSet(tmp_path / "a.xyz"), ConfigSet(rattled_cu(3))]).cheap_length() == 10
    assert ConfigSet(tmp_path / "a.xyz", index="::2").cheap_length() is None
    ase.io.write(tmp_path / "c.traj", rattled_cu(2))
    assert ConfigSet(tmp_path / "c.traj").cheap_length() is None


# -- frames read where they are used (FrameRef) ---------------------------------------------

def _varied_frames():
    ats = rattled_cu(5)
    ats[1].info["note"] = "with space"
    ats[2].arrays["forces"] = np.ones((len(ats[2]), 3))
    ats[3] = Atoms("H2O", positions=[[0, 0, 0], [0, 0, 1], [0, 1, 0]])  # no cell
    return ats


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_frame_refs_read_back_the_same_frames(tmp_path, newline):
    from wflp.io.extxyz import FrameRef, read_frame_refs

    path = tmp_path / "in.xyz"
    ase.io.write(path, _varied_frames())
    if newline != "\n":
        path.write_bytes(path.read_bytes().replace(b"\n", newline.encode()))
    direct = list(ConfigSet(path))
    refs = [item for _loc, item in ConfigSet(path).iter_with_loc(lazy_frames=True)]
    assert all(isinstance(r, FrameRef) for r in refs) and len(refs) == 5
    assert [r.frame for r in refs] == [0, 1, 2, 3, 4]
    assert read_frame_refs(refs) == direct
    # any selection, in any order, mixed with in-memory items
    extra = Atoms("Ar")
    mixed = [refs[3], extra, refs[0], refs[1], refs[4]]
    assert read_frame_refs(mixed) == [direct[3], extra, direct[0], direct[1], direct[4]]


def test_frame_refs_notice_a_file_changed_after_the_scan(tmp_path):
    from wflp.io.extxyz import read_frame_refs

    path = tmp_path / "in.xyz"
    ase.io.write(path, rattled_cu(3))
    refs = [item for _loc, item in ConfigSet(path).iter_with_loc(lazy_frames=True)]
    ats = rattled_cu(3)
    ats[0].info["longer_header"] = "x" * 40
    ase.io.write(path, ats)
    with pytest.raises(MalformedFileError, match="changed while it was being read"):
        read_frame_refs(refs[1:])
    ase.io.write(path, ats[:1])
    with pytest.raises(MalformedFileError, match="changed while it was being read"):
        read_frame_refs(refs[1:])


def test_two_processes_report_a_malformed_frame_like_one(tmp_path):
    """With worker processes, frames are parsed in the workers; a bad frame must still
    raise MalformedFileError naming file, frame and line, and leave no final output."""
    from wflp import AutoparaInfo

    path = tmp_path / "bad.xyz"
    ase.io.write(path, rattled_cu(12))
    lines = path.read_text().splitlines(keepends=True)
    lines[6 * 7 + 3] = "Cu 0.0 oops 0.0\n"  # frame 7, second atom line
    path.write_text("".join(lines))
    out = tmp_path / "out.xyz"
    info = AutoparaInfo(num_python_subprocesses=2, num_inputs_per_python_subprocess=2)
    with pytest.raises(MalformedFileError) as err:
        map(ConfigSet(path), OutputSpec(out), _touch, autopara_info=info)
    msg = str(err.value)
    assert "bad.xyz" in msg and "frame 7" in msg and f"line {6 * 7 + 4}" in msg
    assert not out.exists()


def test_two_processes_from_a_file_match_serial(tmp_path):
    from wflp import AutoparaInfo

    path = tmp_path / "in.xyz"
    ase.io.write(path, _varied_frames() * 3)
    serial = map(ConfigSet(path), OutputSpec(tmp_path / "s.xyz"), _touch)
    two = map(ConfigSet([path, path]), OutputSpec([tmp_path / "a.xyz", tmp_path / "b.xyz"]),
              _touch, autopara_info=AutoparaInfo(num_python_subprocesses=2,
                                                 num_inputs_per_python_subprocess=4))
    expected = (tmp_path / "s.xyz").read_bytes()
    assert (tmp_path / "a.xyz").read_bytes() == expected == (tmp_path / "b.xyz").read_bytes()
    assert len(list(serial)) == 15 and len(list(two)) == 30


def _touch(at):
    at.info["touched"] = True
    return at


@pytest.mark.parametrize("nproc", [1, 2])
@pytest.mark.parametrize("to_file", [False, True])
def test_energy_and_forces_read_from_a_file_survive_an_operation(tmp_path, nproc, to_file):
    """ASE's reader attaches a file's energy/forces/stress as a SinglePointCalculator;
    operations must not drop them (Atoms.copy() alone would)."""
    from wflp import AutoparaInfo

    ats = rattled_cu(6)
    for i, at in enumerate(ats):
        at.calc = EMT()
        at.get_stress()
        at.info["i"] = i
    path = tmp_path / "labelled.xyz"
    ase.io.write(path, ats)
    inputs = ConfigSet(path)
    outputs = OutputSpec(tmp_path / "out.xyz") if to_file else OutputSpec()
    info = AutoparaInfo(num_python_subprocesses=nproc, num_inputs_per_python_subprocess=2)
    result = list(map(inputs, outputs, _touch, autopara_info=info))
    for at, ref in zip(result, ats):
        assert at.info["touched"] is True
        assert at.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(at.get_forces(), ref.get_forces(), atol=1e-8)
        np.testing.assert_allclose(at.get_stress(), ref.get_stress(), atol=1e-8)
    # and from memory: results of a live calculator are kept, the calculator is not shared
    result = list(map(ats, OutputSpec(), _touch, autopara_info=info))
    assert [a.get_potential_energy() for a in result] == \
        pytest.approx([a.get_potential_energy() for a in ats], abs=1e-12)
    assert all(type(a.calc).__name__ == "SinglePointCalculator" for a in result)
