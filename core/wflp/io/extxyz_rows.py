"""One ``Atoms.info`` vector per frame of an extended-XYZ file, from the comment lines only.

A global selector reads one descriptor per configuration; ASE's reader builds a whole
Atoms for every frame to get there, and its comment-line parser (``key_val_str_to_dict``)
walks the line one character at a time: about 0.4 ms for a line holding 50 numbers, most
of a selection's time over 1e5 configurations. :func:`read_info_vectors` reads the atom
count, takes the comment line, skips the atom lines, and converts the one value wanted as
ASE converts it.

It answers only when it is sure to give what ASE gives: every comment line must be made
of plain ``key=value``, ``key="quoted value"`` and ``key`` entries (no backslash, single
quote, bracket or ``_JSON`` value, no quoted key, no empty value, nothing where ASE would
join tokens), any ``Lattice``, ``virial`` or ``stress`` entry 9 numbers (ASE refuses the
frame otherwise), the value a list of numbers, the key one that ASE keeps in
``Atoms.info`` as it is (not ``pbc``, ``Properties``, ``uid``, a 3x3 key or a calculator
result such as ``energy``), and every frame must have it, with finite values and the same
length, and no ``VEC`` lines. For anything else (or a file that is not extended XYZ at
all) it returns None, for the whole file, and the caller reads the file with ASE as
before, which then also gives the errors it always gave.

What it does not check: the atom lines are counted, not parsed, and other entries of the
comment line are not converted; a frame malformed only there is not noticed here (ASE's
reader would refuse it when it builds that frame).
"""

from __future__ import annotations

import os
from collections.abc import Container
from typing import BinaryIO, Optional, Union

import numpy as np

from .extxyz import FrameRef

PathLike = Union[str, os.PathLike]

# characters after which ASE's tokenizer does something other than copy the character
# (escape, or open a delimited part that may hold whitespace)
_DELIMITERS = ("\\", "'", "{", "[", "_JSON")  # (ASE reads "_JSON ..." values as JSON)
_SPECIAL_3_3 = ("Lattice", "virial", "stress")  # as in ase.io.extxyz.SPECIAL_3_3_KEYS


def _keys_ase_moves() -> frozenset[str]:
    """Keys of the comment line that do not reach ``Atoms.info`` as a plain value when ASE
    reads a frame (or are converted first)."""
    import ase.io.extxyz as extxyz
    from ase.calculators.calculator import all_properties

    # (another ASE without the list: every calculator property, to be safe)
    moved = list(getattr(extxyz, "per_config_properties", all_properties))
    special = list(getattr(extxyz, "SPECIAL_3_3_KEYS", _SPECIAL_3_3))
    return frozenset(("pbc", "Properties", *_SPECIAL_3_3, *special, *moved))


def _unprocessed(key: str) -> bool:
    import ase.io.extxyz as extxyz

    return key.lower() in getattr(extxyz, "UNPROCESSED_KEYS", ("uid",))


def comment_entries(line: str) -> Optional[dict[str, Optional[str]]]:
    """The entries of an extended-XYZ comment line as ``{key: raw value text}`` (None for a
    key given without a value; the last entry of a key wins), tokenized exactly as ASE's
    ``key_val_str_to_dict`` tokenizes them; None if the line is not plain enough to be sure
    of that (see the module docstring)."""
    line = line.strip()
    if any(c in line for c in _DELIMITERS):
        return None
    segments = line.split('"')
    if len(segments) % 2 == 0:
        return None  # an unmatched quote
    entries: dict[str, Optional[str]] = {}
    last = len(segments) - 1
    for i in range(0, len(segments), 2):
        outside = segments[i]
        if i > 0 and outside and not outside[0].isspace():
            return None  # text right after a closing quote: ASE joins it to the value
        tokens = outside.split()
        quoted = segments[i + 1] if i < last else None
        if quoted is not None:
            # the quote must open the value of the segment's last token, "key=" (ASE
            # would join "key= " and an empty value to the next token)
            if not outside.endswith("=") or not tokens or not quoted:
                return None
            opener = tokens.pop()
        for token in tokens:
            name, eq, value = token.partition("=")
            if not name or (eq and not value) or "=" in value:
                return None  # "=x", "x=" (ASE joins the next token), "a=b=c"
            entries[name] = value if eq else None
        if quoted is not None:
            name = opener[:-1]
            if not name or "=" in name:
                return None
            entries[name] = quoted
    return entries


def vector_value(text: str) -> Optional[np.ndarray]:
    """``np.asarray(value, dtype=float)`` for the value ASE's ``key_val_str_to_dict`` makes of
    the raw *text* when that is a list of numbers; None for anything else (booleans, strings,
    an empty list).

    ASE splits the text at whitespace and commas and tries ``np.array(parts, dtype=int)``,
    then ``dtype=float``; where the first succeeds the second gives the same numbers as
    floats (both round the same integer), so the float conversion alone is what
    ``read_vector`` would see.
    """
    parts = text.replace(",", " ").split()  # the same parts as ASE's re.findall(r'[^\s,]+')
    if not parts:
        return None
    try:
        return np.array(parts, dtype=float)
    except (ValueError, OverflowError):
        return None


def _frame_row(comment: bytes, key: str) -> Optional[np.ndarray]:
    """The row of one frame from its comment line, or None (see the module docstring)."""
    try:
        line = comment.decode()
    except UnicodeDecodeError:
        return None
    entries = comment_entries(line)
    if entries is None:
        return None
    for name in _SPECIAL_3_3:  # ASE refuses the whole frame if one is not 9 numbers
        if name in entries:
            special = entries[name]
            value = vector_value(special) if special is not None else None
            if value is None or value.shape != (9,):
                return None
    text = entries.get(key)
    return vector_value(text) if text is not None else None


SHARE_BLOCK = 1024  # frames in a row that one share of a file reads


class _Rows:
    """Rows of one length, kept in blocks of SHARE_BLOCK rows (8 bytes a number, not one
    array object per row)."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []
        self.filled = SHARE_BLOCK
        self.width = -1

    def add(self, row: np.ndarray) -> bool:
        """Keep *row*; False if its length differs from the first row's."""
        if self.width != row.shape[0]:
            if self.width >= 0:
                return False
            self.width = row.shape[0]
        if self.filled == SHARE_BLOCK:
            self.blocks.append(np.empty((SHARE_BLOCK, self.width)))
            self.filled = 0
        self.blocks[-1][self.filled] = row
        self.filled += 1
        return True

    def matrix(self) -> np.ndarray:
        if not self.blocks:
            return np.zeros((0, 0))
        self.blocks[-1] = self.blocks[-1][:self.filled]
        return self.blocks[0] if len(self.blocks) == 1 else np.vstack(self.blocks)


def _read_from(fd: BinaryIO, key: str, share: int, shares: int
               ) -> Optional[tuple[int, np.ndarray]]:
    readline = fd.readline
    rows = _Rows()
    frame = 0
    header = readline()
    while header:
        if not header.strip():
            return None  # blank lines: the end, or a malformed file ASE's path explains
        try:
            natoms = int(header)
        except ValueError:
            return None
        comment = readline()
        if natoms < 0 or not comment:
            return None
        if (frame // SHARE_BLOCK) % shares == share:
            row = _frame_row(comment, key)
            if row is None or not rows.add(row):
                return None
        for _ in range(natoms):
            if not readline().endswith(b"\n"):
                return None  # truncated, or a last line without its newline: ASE's path
        header = readline()
        if header.lstrip().startswith(b"VEC"):
            return None  # lattice vectors as pseudo-atoms: ASE replaces info by a comment
        frame += 1
    return frame, rows.matrix()


def read_info_share(path: PathLike, key: str, share: int = 0, shares: int = 1
                    ) -> Optional[tuple[int, np.ndarray]]:
    """Share *share* of *shares* of :func:`read_info_vectors`: (the file's number of frames,
    the rows of frames ``i`` with ``(i // SHARE_BLOCK) % shares == share``); None as there.
    Each share frames the whole file but converts only its own rows, so that processes can
    read one file together (:func:`merge_shares` puts the rows back in order)."""
    if not isinstance(key, str) or not key or key in _keys_ase_moves() or _unprocessed(key):
        return None
    try:
        with open(path, "rb") as fd:
            found = _read_from(fd, key, share, shares)
    except OSError:
        return None
    if found is None or not np.isfinite(found[1]).all():
        return None
    return found


def merge_shares(parts: list[Optional[tuple[int, np.ndarray]]]) -> Optional[np.ndarray]:
    """The rows of a whole file from all its shares, in order (None if a share is None, the
    shares disagree, or the file has no frames)."""
    if not parts or any(part is None for part in parts):
        return None
    counts = {part[0] for part in parts if part is not None}
    matrices = [part[1] for part in parts if part is not None]
    widths = {m.shape[1] for m in matrices if len(m)}
    if len(counts) != 1 or len(widths) != 1 or sum(len(m) for m in matrices) != counts.pop():
        return None
    if len(matrices) == 1:
        return matrices[0]
    blocks: list[np.ndarray] = []  # block j of the file is block j // shares of share j % shares
    for start in range(0, max(len(m) for m in matrices), SHARE_BLOCK):
        blocks.extend(m[start:start + SHARE_BLOCK] for m in matrices if len(m) > start)
    return np.vstack(blocks)


def read_info_vectors(path: PathLike, key: str) -> Optional[np.ndarray]:
    """The float matrix whose row *i* is ``np.asarray(atoms.info[key], dtype=float)`` for frame
    *i* of the extended-XYZ file *path*, read from the comment lines alone; None whenever
    that cannot be done with certainty (see the module docstring): read the file with ASE."""
    return merge_shares([read_info_share(path, key)])


def chosen_frame_refs(path: PathLike, first: int, chosen: Container[int]
                      ) -> Optional[tuple[int, dict[int, FrameRef]]]:
    """Frame the extended-XYZ file *path* without keeping its lines: (its number of frames,
    {frame: FrameRef} for the frames whose position *first* + frame is in *chosen*), the
    same FrameRefs as :func:`wflp.io.extxyz.scan_extxyz` makes; None for anything but plain
    frames (blank lines, VEC lines, a malformed or truncated frame), which that scan
    frames, or explains."""
    name = str(path)
    refs: dict[int, FrameRef] = {}
    frame = lineno = offset = 0
    try:
        with open(path, "rb") as fd:
            readline = fd.readline
            header = readline()
            while header:
                try:
                    natoms = int(header)
                except ValueError:
                    return None  # a blank line (the end, or a malformed file) or worse
                if natoms < 0:
                    return None
                if first + frame in chosen:
                    refs[frame] = FrameRef(name, offset, frame, lineno + 1)
                size = len(header)
                for _ in range(natoms + 1):
                    line = readline()
                    if not line:
                        return None
                    size += len(line)
                header = readline()
                if header.lstrip().startswith(b"VEC"):
                    return None
                offset += size
                lineno += natoms + 2
                frame += 1
    except OSError:
        return None
    return frame, refs


__all__ = ["SHARE_BLOCK", "chosen_frame_refs", "comment_entries", "merge_shares",
           "read_info_share", "read_info_vectors", "vector_value"]
