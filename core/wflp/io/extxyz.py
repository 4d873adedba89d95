"""Reading and writing extended XYZ: streaming, frame by frame, with ASE's exact bytes.

Reading: ``ase.io.iread`` indexes every frame of a file before yielding the first
(memory grows with the file); :func:`iter_extxyz` hands ASE one frame's text at a
time instead, and names the file, frame and line of a malformed frame.
:func:`scan_extxyz` finds frame boundaries without parsing, so that worker
processes can parse their own frames (:class:`FrameRef`, :func:`read_frame_refs`).

Writing: ``ase.io.extxyz.write_extxyz`` works out the column format, copies the Atoms
and packs a structured array for every frame; for small cells that costs about 3 % of
an EMT evaluation, more than wflp's whole budget for file output. :func:`frame_texts`
works out the layout once per distinct set of arrays and formats all atoms of a frame
with one ``%`` operation. Its output is byte-for-byte what ASE writes
(tests/test_extxyz.py checks this on varied frames); frames it does not cover (an
attached calculator, FixAtoms/FixCartesian constraints, a Voigt ``stress`` in info,
unusual array types) are handed to ASE's writer, so every frame is written exactly as
ASE would write it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, NamedTuple, TextIO, Union

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from ase.io.extxyz import escape  # ASE's own quoting, so keys and values quote alike

from ..errors import MalformedFileError

PathLike = Union[str, os.PathLike]


# -- reading ------------------------------------------------------------------------------

class FrameRef(NamedTuple):
    """Frame *frame* of the extxyz file *path*, whose atom-count line is line *line* at
    byte *offset*: a placeholder that is read where it is used, so that worker
    processes parse their own frames instead of the parent parsing them all."""

    path: str
    offset: int
    frame: int
    line: int


def _split_extxyz(fd: BinaryIO, path: str, frame: int = 0, lineno: int = 1,
                  offset: int = 0) -> Iterator[tuple[FrameRef, list[bytes]]]:
    """Split an extxyz byte stream, from its current position, into frames' lines.

    Checks only the framing (atom counts, truncation); a frame's content is
    checked when :func:`_parse_frame` reads it.
    """
    readline = fd.readline
    while True:
        header = readline()
        if not header:
            return
        if not header.strip():
            # trailing blank lines end the file, as in ase
            if fd.read().strip():
                raise MalformedFileError(
                    f"{path}: frame {frame} (line {lineno}): blank line where an atom "
                    "count was expected; remove the blank line or regenerate the file"
                )
            return
        try:
            natoms = int(header)
        except ValueError:
            raise MalformedFileError(
                f"{path}: frame {frame} (line {lineno}): expected an atom count, found "
                f"{header.strip()[:60].decode(errors='replace')!r}; the file is not extended "
                "XYZ or is corrupt: fix or regenerate it"
            ) from None
        if natoms < 0:
            raise MalformedFileError(
                f"{path}: frame {frame} (line {lineno}): negative atom count {natoms}"
            )
        ref = FrameRef(path, offset, frame, lineno)
        lines = [header]
        size = len(header)
        for _ in range(natoms + 1):
            line = readline()
            if not line:
                raise MalformedFileError(
                    f"{path}: frame {frame} (line {lineno}): file ends after "
                    f"{len(lines) - 1} of {natoms + 1} lines of this frame; the file "
                    "was truncated: regenerate it or delete the incomplete frame"
                )
            lines.append(line)
            size += len(line)
        # VEC lines (old-style lattice vectors) belong to the frame
        while True:
            line = readline()
            if line.lstrip().startswith(b"VEC"):
                lines.append(line)
                size += len(line)
            else:
                fd.seek(offset + size)
                break
        yield ref, lines
        offset += size
        lineno += len(lines)
        frame += 1


def _parse_frame(ref: FrameRef, lines: list[bytes]) -> Atoms:
    """One frame's lines as Atoms, read by ase; errors name the file, frame and line."""
    from ase.io.extxyz import read_xyz

    text = b"".join(lines).decode()
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    try:
        return next(read_xyz(io.StringIO(text), index=0))
    except Exception as err:
        where = _locate_bad_line(text.splitlines(), str(err), ref.line)
        last = ref.line + len(lines) - 1
        raise MalformedFileError(
            f"{ref.path}: frame {ref.frame} ({where or f'lines {ref.line}-{last}'}): "
            f"{type(err).__name__}: {err}; fix or regenerate the file"
        ) from None


def iter_extxyz(path: PathLike) -> Iterator[Atoms]:
    """Stream frames of an extended-XYZ file, one in memory at a time.

    ase.io.iread first indexes every frame of the file (memory grows with the
    frame count); this reader hands ase one frame's text at a time instead,
    and names the file, frame and line of a malformed frame.
    """
    path = str(path)
    with open(path, "rb") as fd:
        for ref, lines in _split_extxyz(fd, path):
            yield _parse_frame(ref, lines)


def scan_extxyz(path: PathLike) -> Iterator[FrameRef]:
    """A :class:`FrameRef` for each frame of an extxyz file, without parsing any."""
    path = str(path)
    with open(path, "rb") as fd:
        for ref, _lines in _split_extxyz(fd, path):
            yield ref


def read_frame_refs(items: list) -> list:
    """*items* with each :class:`FrameRef` replaced by the frame it names.

    Consecutive frames of one file are read in one pass from the first one's offset.
    """
    out: list = []
    i = 0
    while i < len(items):
        ref = items[i]
        if not isinstance(ref, FrameRef):
            out.append(ref)
            i += 1
            continue
        j = i + 1
        while j < len(items) and isinstance(items[j], FrameRef) and items[j].path == ref.path \
                and items[j].frame == items[j - 1].frame + 1:
            j += 1
        with open(ref.path, "rb") as fd:
            fd.seek(ref.offset)
            frames = _split_extxyz(fd, ref.path, ref.frame, ref.line, ref.offset)
            for want in items[i:j]:
                # the framing was checked when the refs were made: a surprise now means
                # the file changed since
                try:
                    got, lines = next(frames, (None, None))
                except MalformedFileError:
                    got = None
                if got != want or lines is None:
                    raise MalformedFileError(
                        f"{ref.path}: frame {want.frame} is no longer where it was (line "
                        f"{want.line}); the file changed while it was being read: rerun "
                        "once it is complete"
                    )
                out.append(_parse_frame(got, lines))
        i = j
    return out


def _locate_bad_line(lines: list[str], message: str, first_line: int) -> str | None:
    """The line of a frame holding the token an ase parse error complains about."""
    import re

    match = re.search(r"'([^']+)'", message)
    if not match:
        return None
    token = match.group(1)
    for offset, line in enumerate(lines[2:], start=2):
        if token in line.split():
            return f"line {first_line + offset}"
    return None



def count_extxyz_frames(fd: BinaryIO) -> int:
    """Count the frames of an (ext)xyz file object by its atom-count lines."""
    n = 0
    while True:
        header = fd.readline()
        if not header.strip():
            return n
        for _ in range(int(header) + 1):
            fd.readline()
        n += 1



# -- writing ------------------------------------------------------------------------------

# what ASE writes for each numpy dtype kind: (property type, per-value format)
_COLUMN_FORMATS = {"f": ("R", "%16.8f"), "i": ("I", "%8d"), "U": ("S", "%-2s"),
                   "b": ("L", " %.1s")}
# arrays ASE never writes as extra columns (they are the species/position columns)
_NOT_EXTRA = frozenset(("symbols", "positions", "numbers", "species", "pos"))
# info keys ASE writes as a flattened (Fortran order) 3x3 matrix
_SPECIAL_3_3_KEYS = frozenset(("Lattice", "virial", "stress"))


class _Layout:
    """Column names, the ``Properties=`` value and the row format of one set of arrays."""

    __slots__ = ("extra", "properties", "row_format", "ncols")

    def __init__(self, atoms: Atoms):
        from ase.io.extxyz import PROPERTY_NAME_MAP

        names = ["species", "pos"]
        types = ["S", "R"]
        counts = [1, 3]
        formats = ["%-2s", "%16.8f", "%16.8f", "%16.8f"]
        self.extra: list[tuple[str, int]] = []
        for key, array in atoms.arrays.items():
            if key in _NOT_EXTRA:
                continue
            ptype, fmt = _COLUMN_FORMATS[array.dtype.kind]
            ncol = 1 if array.ndim == 1 else array.shape[1]
            names.append(PROPERTY_NAME_MAP.get(key, key))
            types.append(ptype)
            counts.append(ncol)
            formats.extend([fmt] * ncol)
            self.extra.append((key, ncol))
        self.properties = ":".join(f"{n}:{t}:{c}" for n, t, c in zip(names, types, counts))
        self.row_format = " ".join(formats) + "\n"
        self.ncols = len(formats)


def _layout_key(atoms: Atoms) -> tuple | None:
    """What decides a frame's layout, or None when the fast path does not apply."""
    if (atoms.calc is not None or "stress" in atoms.info or "symbols" in atoms.arrays
            or len(atoms) == 0):  # ASE types the species of an empty frame as R
        return None
    if atoms.constraints:
        from ase.constraints import FixAtoms, FixCartesian

        if any(isinstance(c, (FixAtoms, FixCartesian)) for c in atoms.constraints):
            return None
    key = []
    for name, array in atoms.arrays.items():
        if name in _NOT_EXTRA:
            if name == "positions" and array.dtype.kind != "f":
                return None
            continue
        if array.dtype.kind not in _COLUMN_FORMATS or array.ndim > 2:
            return None
        key.append((name, array.dtype.kind, array.shape[1:]))
    return tuple(key)


_PBC_TEXT = {(a, b, c): '"' + " ".join("T" if x else "F" for x in (a, b, c)) + '"'
             for a in (False, True) for b in (False, True) for c in (False, True)}
_escaped_keys: dict[str, str] = {}


def _value_text(key: str, value: Any) -> str | None:
    """ASE's (quoted) text for one info value of a common type, or None for anything else.

    Python floats and float64 print alike (shortest round-trip repr); other numpy
    scalars keep their own formatting, as in ASE.
    """
    kind = type(value)
    if kind is float or kind is np.float64:
        return float.__repr__(value)
    if kind is bool or kind is np.bool_:
        return "T" if value else "F"
    if kind is str:
        return escape(value)
    if isinstance(value, (int, float, np.integer, np.floating)):  # bools returned above
        return f"{value}"
    if kind is np.ndarray:
        dtype = value.dtype
        if dtype.kind not in "ifb" or (dtype.kind == "f" and dtype.itemsize != 8):
            return None  # tolist() would change how other float types print
        if key in _SPECIAL_3_3_KEYS:
            value = value.reshape(value.size, order="F")
        if value.ndim != 1:
            return None
        if dtype.kind == "b":
            text = " ".join(["T" if v else "F" for v in value.tolist()])
        else:
            text = " ".join(map(repr, value.tolist()))
        return f'"{text}"' if len(value) > 1 else text  # numbers need quotes only for spaces
    return None


def _info_text(info: dict, pbc: np.ndarray) -> str:
    """``key_val_dict_to_str`` of info plus pbc, formatted directly for common value types."""
    parts = []
    for key, value in info.items():
        text = None if key == "pbc" else _value_text(key, value)
        if text is None:  # (ASE writes the Atoms' pbc in place of an info "pbc")
            from ase.io.extxyz import key_val_dict_to_str

            return key_val_dict_to_str({**info, "pbc": pbc})
        escaped = _escaped_keys.get(key)
        if escaped is None:
            if len(_escaped_keys) > 4096:
                _escaped_keys.clear()
            escaped = _escaped_keys[key] = escape(key)
        parts.append(f"{escaped}={text}")
    parts.append("pbc=" + _PBC_TEXT[tuple(pbc.tolist())])
    return " ".join(parts)


_last_lattice: tuple[bytes, str] = (b"", "")


def _lattice_text(cell: np.ndarray) -> str:
    """``Lattice="..." `` for a cell; frames of one run often share it, so the last is kept."""
    global _last_lattice
    key = cell.tobytes()
    if _last_lattice[0] == key:
        return _last_lattice[1]
    # ASE writes the transpose in Fortran order, which is the cell in C order
    text = 'Lattice="' + " ".join(map(repr, cell.ravel().tolist())) + '" '
    _last_lattice = (key, text)
    return text


def _comment(atoms: Atoms, properties: str) -> str:
    cell = atoms.cell.array
    comment = _lattice_text(cell) if cell.any() else ""
    comment += "Properties=" + properties
    return comment + " " + _info_text(atoms.info, atoms.pbc)


def _format_fast(atoms: Atoms, layout: _Layout) -> str:
    natoms = len(atoms)
    table = np.empty((natoms, layout.ncols), dtype=object)
    table[:, 0] = [chemical_symbols[z] for z in atoms.arrays["numbers"].tolist()]
    table[:, 1:4] = atoms.arrays["positions"]
    col = 4
    for key, ncol in layout.extra:
        array = atoms.arrays[key]
        if ncol == 1:
            table[:, col] = array.reshape(natoms)
        else:
            table[:, col:col + ncol] = array
        col += ncol
    rows = (layout.row_format * natoms) % tuple(table.ravel().tolist())
    return f"{natoms}\n{_comment(atoms, layout.properties)}\n{rows}"


def _format_with_ase(atoms: Atoms) -> str:
    from ase.io.extxyz import write_extxyz

    buf = io.StringIO()
    write_extxyz(buf, [atoms])
    return buf.getvalue()


def frame_texts(frames: Iterable[Atoms]) -> Iterator[str]:
    """The extended-XYZ text ASE's ``write_extxyz`` would write, one frame at a time."""
    layouts: dict[tuple, _Layout] = {}
    for atoms in frames:
        key = _layout_key(atoms)
        if key is None:
            yield _format_with_ase(atoms)
            continue
        layout = layouts.get(key)
        if layout is None:
            layout = layouts[key] = _Layout(atoms)
        yield _format_fast(atoms, layout)


def write_frames(fd: TextIO, frames: Iterable[Atoms]) -> None:
    """Write *frames* to the text file *fd* exactly as ``ase.io.extxyz.write_extxyz`` does."""
    fd.writelines(frame_texts(frames))


__all__ = ["FrameRef", "count_extxyz_frames", "frame_texts", "iter_extxyz", "read_frame_refs",
           "scan_extxyz", "write_frames"]
