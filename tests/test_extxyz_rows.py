"""Rows from extended-XYZ comment lines (wflp.io.extxyz_rows) and the selection passes that use
them: the same rows as ASE's reader on files ASE writes, None (the ASE path) wherever the
fast reader cannot be sure, the same errors, and the same written bytes."""

from __future__ import annotations

import logging
import re

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io.extxyz import key_val_str_to_dict
from wflp import AutoparaInfo, ConfigSet, OutputSpec
from wflp.errors import OperationError
from wflp.io import extxyz as extxyz_module
from wflp.io.extxyz_rows import comment_entries, read_info_vectors, vector_value
from wflp.ops import select_cur, select_flat_histogram, select_fps
from wflp.ops import selection as selection_module

SERIAL = AutoparaInfo(num_python_subprocesses=1)


def ase_rows(path, key="soap"):
    """What the selectors' ASE path reads: np.asarray(info[key], float) of every frame."""
    return np.vstack([np.atleast_1d(np.asarray(a.info[key], dtype=float))
                      for a in ase.io.read(path, ":")])


def varied_frames(n=12, seed=0):
    """Frames as real runs leave them: cells, pbc, strings with spaces (quoted), booleans,
    int and float arrays, per-atom arrays, calculator results, keys differing per frame."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        at = Atoms("CuAu" if i % 2 else "Cu3", positions=rng.normal(size=(2 if i % 2 else 3, 3)),
                   cell=np.diag([4.0, 5.0, 6.0]) if i % 3 else None, pbc=bool(i % 3))
        at.info["soap"] = rng.normal(size=7) * 10.0 ** rng.integers(-30, 30, size=7)
        at.info["label"] = f"frame {i}, with spaces" if i % 4 == 0 else f"plain{i}"
        at.info["flag"] = bool(i % 2)
        at.info["flags"] = np.array([True, False, bool(i % 3)])
        at.info["counts"] = np.arange(3) + i
        at.info["step"] = i
        if i % 2:
            at.arrays["charges_x"] = rng.normal(size=len(at))
            at.calc = SinglePointCalculator(at, energy=-float(i), stress=rng.normal(size=6),
                                            forces=rng.normal(size=(len(at), 3)))
        frames.append(at)
    frames[min(3, n - 1)].info["soap"] = np.array([1, 2, 3, 4, 5, 6, 7])  # an int array
    frames[-1].info = {"soap": frames[-1].info["soap"], **frames[-1].info}  # another order
    return frames


def test_same_rows_as_ase_on_files_ase_writes(tmp_path):
    path = tmp_path / "varied.xyz"
    ase.io.write(path, varied_frames())
    rows = read_info_vectors(path, "soap")
    assert rows is not None and rows.dtype == np.float64
    assert np.array_equal(rows, ase_rows(path))  # bit for bit, not approximately
    assert np.array_equal(read_info_vectors(path, "counts"), ase_rows(path, "counts"))
    assert np.array_equal(read_info_vectors(path, "step"), ase_rows(path, "step"))


def test_same_rows_for_windows_line_ends_and_a_one_number_key(tmp_path):
    path = tmp_path / "crlf.xyz"
    frames = varied_frames(4)
    for at in frames:
        at.info["one"] = np.array([2.5])
    ase.io.write(path, frames)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert np.array_equal(read_info_vectors(path, "soap"), ase_rows(path))
    assert np.array_equal(read_info_vectors(path, "one"), ase_rows(path, "one"))


@pytest.mark.parametrize("key", ["energy", "stress", "pbc", "Lattice", "Properties", "flag",
                                 "flags", "label", "charges_x", "nowhere"])
def test_keys_it_cannot_read_for_certain_give_none(tmp_path, key):
    """Calculator results and keys ASE converts, booleans, strings, per-atom arrays and
    missing keys: None, so the caller reads with ASE (and gets ASE's values or errors)."""
    path = tmp_path / "varied.xyz"
    ase.io.write(path, varied_frames(6))
    assert read_info_vectors(path, key) is None


@pytest.mark.parametrize("info", [{"extra key": 1.5},             # ASE quotes the key
                                  {"note": 'says "hi"'},          # ASE escapes the quotes
                                  {"note": "a\\b"}])               # and backslashes
def test_escapes_and_quoted_keys_give_none(tmp_path, info):
    """Lines ASE writes with escapes or quoted keys are left to ASE (the whole file)."""
    frames = varied_frames(5)
    frames[2].info.update(info)
    path = tmp_path / "odd.xyz"
    ase.io.write(path, frames)
    assert read_info_vectors(path, "soap") is None


def test_a_key_missing_in_one_frame_gives_none(tmp_path):
    frames = varied_frames(6)
    del frames[4].info["soap"]
    path = tmp_path / "missing.xyz"
    ase.io.write(path, frames)
    assert read_info_vectors(path, "soap") is None


@pytest.mark.parametrize("change", [
    (b'soap="', b'soap= "'),            # whitespace after "=": ASE's tokens differ
    (b'soap="', b"soap='"),             # single quotes
    (b"Properties=", b"Lattice=\"1 0 0 0 1 0 0 0\" Properties="),  # a bad 3x3: ASE fails
    (b"Properties=", b"VEC1 "),         # not a VEC line (only the comment changes): fine
])
def test_unusual_comment_lines(tmp_path, change):
    path = tmp_path / "pool.xyz"
    rows = np.arange(12.0).reshape(4, 3) + 0.25
    ase.io.write(path, [Atoms("H", info={"soap": r}) for r in rows])
    text = path.read_bytes()
    path.write_bytes(text.replace(*change))
    got = read_info_vectors(path, "soap")
    if change[1] == b"VEC1 ":
        assert np.array_equal(got, ase_rows(path))
    else:
        assert got is None


def test_lattice_vectors_as_vec_lines_give_none(tmp_path):
    path = tmp_path / "vec.xyz"
    path.write_text('1\nsoap="1 2"\nH 0 0 0\nVEC1 3 0 0\n')
    assert read_info_vectors(path, "soap") is None


@pytest.mark.parametrize("text", ["", "2\n", "x\nsoap=1\nH 0 0 0\n", "2\nsoap=1\nH 0 0 0\n",
                                  "1\nsoap=1\nH 0 0 0\n\n\n1\nsoap=2\nH 0 0 0\n"])
def test_malformed_or_empty_files_give_none(tmp_path, text):
    path = tmp_path / "bad.xyz"
    path.write_text(text)
    assert read_info_vectors(path, "soap") is None
    assert read_info_vectors(tmp_path / "absent.xyz", "soap") is None


# -- the tokenizer against ASE's, on generated lines --------------------------------------------

PIECES = ["a", "soap", "b2", "=", "==", " ", "  ", "\t", '"', "'", "1", "-2.5e3", "3,4", "T",
          "x y", "{", "}", "[", "\\", "_JSON 1", ",", "\u00a0", ".5", "1_0", "nan"]


def test_comment_entries_agree_with_ase_on_generated_lines():
    """Wherever comment_entries answers, its entries are ASE's (keys, and values where they
    are numbers); on about half of these odd lines it answers None."""
    rng = np.random.default_rng(4)
    answered = 0
    for _ in range(3000):
        line = "".join(rng.choice(PIECES, size=rng.integers(1, 12)))
        if not line.strip():
            continue  # ASE's reader does not parse an empty comment line (info is {})
        try:
            expected = key_val_str_to_dict(line)
        except Exception:  # noqa: BLE001 - ASE refuses the line: so must we
            expected = None
        entries = comment_entries(line)
        if entries is None:
            continue
        answered += 1
        assert expected is not None, line
        assert set(entries) == set(expected), line
        for key, text in entries.items():
            value = vector_value(text) if text is not None else None
            if value is not None:
                assert np.array_equal(value, np.atleast_1d(np.asarray(expected[key], float)),
                                      equal_nan=True), line
            else:  # not numbers for ASE either: booleans, strings, or an empty list
                assert isinstance(expected[key], (str, bool, list)) \
                    or np.asarray(expected[key]).size == 0, line
    assert answered > 300


def test_splitting_at_whitespace_is_ases_splitting():
    """vector_value splits with str.split(); ASE with re.findall(r'[^\\s,]+'): the same
    whitespace for every character."""
    chars = "".join(chr(c) for c in range(0x3100))
    assert "".join(c for c in chars if c.isspace()) == "".join(re.findall(r"\s", chars))


# -- the selection passes -------------------------------------------------------------------------

def pool_file(path, n=40, dim=6, seed=1):
    rng = np.random.default_rng(seed)
    frames = varied_frames(n, seed)
    for at in frames:
        at.info["soap"] = rng.normal(size=dim)
    ase.io.write(path, frames)
    return frames


@pytest.fixture
def ase_path_only(monkeypatch):
    """Selection as it was before: rows from ASE's frames, every frame handed to the write."""
    monkeypatch.setattr(selection_module, "rows_from_comment_lines", lambda *a: None)
    monkeypatch.setattr(selection_module, "ChosenOnly", lambda inputs, chosen: inputs)


def run_both(monkeypatch, func):
    """func() with the comment-line reader and the chosen-only write, then without."""
    fast = func("fast")
    with monkeypatch.context() as m:
        m.setattr(selection_module, "rows_from_comment_lines", lambda *a: None)
        m.setattr(selection_module, "ChosenOnly", lambda inputs, chosen: inputs)
        slow = func("slow")
    return fast, slow


def test_selection_reads_comment_lines_and_writes_the_same_bytes(tmp_path, monkeypatch, caplog):
    src = tmp_path / "pool.xyz"
    pool_file(src)
    caplog.set_level(logging.INFO, logger="wflp")

    def select(tag):
        out = tmp_path / f"{tag}.xyz"
        select_cur(ConfigSet(src), OutputSpec(out), n_select=7, autopara_info=SERIAL)
        return out.read_bytes()

    fast, slow = run_both(monkeypatch, select)
    assert fast == slow and fast.count(b"Properties=") == 7
    assert "from the comment lines of the inputs" in caplog.text


def test_write_pass_parses_only_the_chosen_frames(tmp_path, monkeypatch):
    src = tmp_path / "pool.xyz"
    pool_file(src, n=30)
    parsed = []
    real = extxyz_module._parse_frame
    monkeypatch.setattr(extxyz_module, "_parse_frame",
                        lambda ref, lines: parsed.append(ref.frame) or real(ref, lines))
    chosen = sorted(select_fps.indices(ConfigSet(src), n_select=4))
    assert parsed == []  # the rows came from the comment lines
    select_fps(ConfigSet(src), OutputSpec(tmp_path / "out.xyz"), n_select=4,
               autopara_info=SERIAL)
    assert sorted(parsed) == chosen


def test_several_files_in_and_out_two_processes(tmp_path, monkeypatch):
    """Two input files (one of them with nothing chosen from it) to two outputs, read and
    written by two processes: the same files as the ASE path writes."""
    a, b = tmp_path / "a.xyz", tmp_path / "b.xyz"
    pool_file(a, n=30, seed=2)
    frames = pool_file(b, n=3, seed=3)
    for at in frames:
        at.info["soap"] = np.zeros(6)  # identical rows: FPS takes none of them after the first
    ase.io.write(b, frames)
    info = AutoparaInfo(num_python_subprocesses=2)

    def select(tag):
        outs = [tmp_path / f"{tag}-a.xyz", tmp_path / f"{tag}-b.xyz"]
        select_fps(ConfigSet([a, b]), OutputSpec(outs), n_select=5, autopara_info=info)
        return [o.read_bytes() if o.exists() else None for o in outs]

    fast, slow = run_both(monkeypatch, select)
    assert fast == slow
    assert sum(x.count(b"Properties=") for x in fast if x) == 5
    # the two processes each read a share of each file, and the rows come back in order
    rows = selection_module.rows_from_comment_lines(ConfigSet([a, b]), select_fps.read,
                                                    {"key": "soap"}, info)
    assert np.array_equal(rows, np.vstack([ase_rows(a), ase_rows(b)]))


def test_a_missing_key_is_the_same_error_as_before(tmp_path, monkeypatch):
    frames = varied_frames(10)
    del frames[7].info["soap"]
    src = tmp_path / "missing.xyz"
    ase.io.write(src, frames)

    def message(tag):
        with pytest.raises(OperationError) as err:
            select_cur(ConfigSet(src), OutputSpec(tmp_path / f"{tag}.xyz"), n_select=2,
                       autopara_info=SERIAL)
        return str(err.value)

    fast, slow = run_both(monkeypatch, message)
    assert fast == slow
    assert "configuration 7" in fast and "no descriptor Atoms.info['soap']" in fast


def test_a_per_atom_key_is_the_same_error_as_before(tmp_path, monkeypatch):
    frames = varied_frames(6)
    for at in frames:
        at.arrays["desc"] = np.ones((len(at), 2))
    src = tmp_path / "per_atom.xyz"
    ase.io.write(src, frames)

    def message(tag):
        with pytest.raises(OperationError) as err:
            select_fps(ConfigSet(src), OutputSpec(), n_select=2, key="desc",
                       autopara_info=SERIAL)
        return str(err.value)

    fast, slow = run_both(monkeypatch, message)
    assert fast == slow and "per-atom array" in fast


def test_another_format_is_read_with_ase(tmp_path):
    frames = pool_file(tmp_path / "pool.xyz", n=20)
    traj = tmp_path / "pool.traj"
    ase.io.write(traj, frames)
    xyz_set = ConfigSet(tmp_path / "pool.xyz")
    assert selection_module.rows_from_comment_lines(ConfigSet(traj), select_fps.read,
                                                    {"key": "soap"}) is None
    assert selection_module.rows_from_comment_lines(xyz_set, select_fps.read,
                                                    {"key": "soap"}) is not None
    assert list(select_fps.indices(ConfigSet(traj), n_select=5)) == \
        list(select_fps.indices(xyz_set, n_select=5))
    # in-memory configurations and readers of other things (energies) take the ASE path
    assert selection_module.rows_from_comment_lines(ConfigSet(frames), select_fps.read,
                                                    {"key": "soap"}) is None
    assert selection_module.rows_from_comment_lines(xyz_set, select_flat_histogram.read,
                                                    {"key": "soap"}) is None


def test_chosen_frame_refs_are_the_scans_refs(tmp_path):
    from wflp.io.extxyz import scan_extxyz
    from wflp.io.extxyz_rows import chosen_frame_refs

    path = tmp_path / "varied.xyz"
    ase.io.write(path, varied_frames(9))
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n", 20))  # some CRLF lines too
    refs = list(scan_extxyz(path))
    count, chosen = chosen_frame_refs(path, 100, {100, 104, 108, 200})
    assert count == 9 and chosen == {0: refs[0], 4: refs[4], 8: refs[8]}
    path.write_bytes(path.read_bytes() + b"\n\n")  # trailing blank lines: the scan's job
    assert chosen_frame_refs(path, 0, {0}) is None
    vec = tmp_path / "vec.xyz"
    vec.write_text('1\nsoap="1 2"\nH 0 0 0\nVEC1 3 0 0\n')
    assert chosen_frame_refs(vec, 0, {0}) is None


@pytest.mark.parametrize("shares", [2, 3])
def test_shares_put_together_are_the_whole_file(tmp_path, monkeypatch, shares):
    from wflp.io import extxyz_rows
    from wflp.io.extxyz_rows import merge_shares, read_info_share

    monkeypatch.setattr(extxyz_rows, "SHARE_BLOCK", 4)
    path = tmp_path / "varied.xyz"
    ase.io.write(path, varied_frames(23))
    parts = [read_info_share(path, "soap", k, shares) for k in range(shares)]
    assert [p[0] for p in parts] == [23] * shares
    assert np.array_equal(merge_shares(parts), ase_rows(path))
    assert merge_shares(parts[:-1]) is None  # a share missing: rows missing
    frames = varied_frames(23)
    del frames[21].info["soap"]  # in the last share's block only
    ase.io.write(path, frames)
    parts = [read_info_share(path, "soap", k, shares) for k in range(shares)]
    assert merge_shares(parts) is None
