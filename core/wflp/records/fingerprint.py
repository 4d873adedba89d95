"""Content fingerprints of inputs, and the check that they did not change while being read.

File-backed inputs are fingerprinted by their bytes (no parsing), in-memory
configurations by their content. The fingerprint also keeps each file's
identity (inode, size, modification and change times): a run checks again at
its end that none of its input files was touched while it ran, since an input
edited during a run and restored afterwards would otherwise leave an output made
from the edited data under a record of the restored file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from ase import Atoms

from ..errors import InputError
from .describe import canonical, canonical_json

if TYPE_CHECKING:
    from ..configset import ConfigSet


def sha256_file(path: os.PathLike | str, block: int = 1 << 20) -> str:
    """The SHA-256 hex digest of the file at *path*, read in blocks of *block* bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fd:
        while True:
            chunk = fd.read(block)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def atoms_digest(atoms: Atoms) -> str:
    """A digest of everything that defines a configuration's content."""
    h = hashlib.sha256()
    _update_atoms(h, atoms)
    return h.hexdigest()


def _update_atoms(h: Any, atoms: Atoms) -> None:
    h.update(b"atoms")
    arrays = atoms.arrays
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(arr.dtype.str.encode())  # '<f8': str(dtype) costs 2.7 us
        h.update(arr.tobytes())
    h.update(np.ascontiguousarray(atoms.cell.array).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    h.update(canonical_json(canonical(atoms.info)).encode() if atoms.info else b"{}")
    if atoms.constraints:
        h.update(canonical_json(canonical([c.todict() for c in atoms.constraints])).encode())
    calc = atoms.calc
    if calc is not None and getattr(calc, "results", None):
        h.update(canonical_json(canonical(calc.results)).encode())


def file_identity(path: os.PathLike | str) -> tuple:
    """What changes whenever a file's content is written: inode, size, mtime, ctime.

    The change time cannot be set back by tools that restore modification times.
    """
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


MAX_PLAIN_ITEMS = 100  # in-memory inputs of plain values kept in records, up to this many


class InputFingerprint:
    """Accumulates a content fingerprint over a ConfigSet without holding it in memory."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.count: Optional[int] = 0
        self.files: list[tuple[Path, tuple]] = []
        self._file_digests: list[tuple[Path, str]] = []
        self.plain_items: Optional[list] = []  # in-memory inputs that are plain values

    def add_file(self, path: Path, format: str, read_kwargs: dict) -> None:
        """Add an input file by its content digest; InputError if it cannot be read or
        changed while it was read."""
        try:
            before = file_identity(path)
            digest = sha256_file(path)
            after = file_identity(path)
        except IsADirectoryError:
            raise InputError(f"input {str(path)!r} is a directory; give a configuration "
                             "file (or a glob such as 'dir/*.xyz')") from None
        except OSError as err:
            raise InputError(f"cannot read input file {str(path)!r}: {err.strerror or err}"
                             ) from None
        if before != after:
            raise InputError(f"input file {str(path)!r} changed while wflp was reading it; "
                             "rerun once whatever writes it has finished")
        self.files.append((path, before))
        self._file_digests.append((path, digest))
        self._h.update(b"file")
        self._h.update(digest.encode())
        self._h.update(canonical_json([format, canonical(read_kwargs)]).encode())
        self.count = None

    def add_item(self, loc: tuple, item: Any) -> None:
        """Add one in-memory input at *loc*: Atoms by their arrays, cell, pbc, info,
        constraints and calculated results; anything else by its canonical description."""
        if self.count is not None:
            self.count += 1
        if self.plain_items is not None:  # e.g. SMILES strings: lineage shows them
            if isinstance(item, (str, int, float)) and len(self.plain_items) < MAX_PLAIN_ITEMS:
                self.plain_items.append(item)
            else:
                self.plain_items = None
        self._h.update(repr(loc).encode())
        if isinstance(item, Atoms):
            _update_atoms(self._h, item)
        else:
            self._h.update(canonical_json(canonical(item)).encode())

    def open_group(self) -> None:
        """Start a nested group of inputs (so that nesting changes the fingerprint)."""
        self._h.update(b"[")

    def close_group(self) -> None:
        """End the group opened last."""
        self._h.update(b"]")

    def hexdigest(self) -> str:
        """The fingerprint of everything added so far."""
        return self._h.hexdigest()

    def file_paths(self) -> list[Path]:
        """The input files, in the order they were read."""
        return [path for path, _ in self.files]

    def digests(self) -> list[tuple[Path, str]]:
        """(input file, sha256 of its bytes), in the order they were read."""
        return list(self._file_digests)

    def changed_files(self) -> list[Path]:
        """The input files whose content may have changed since they were fingerprinted."""
        changed = []
        for path, identity in self.files:
            try:
                now = file_identity(path)
            except OSError:
                now = None
            if now != identity:
                changed.append(path)
        return changed


def fingerprint_configset(cs: ConfigSet) -> InputFingerprint:
    """The content fingerprint of a ConfigSet (``.hexdigest()``, ``.count`` — None when
    files are involved — and ``.changed_files()`` for the check at the end of a run)."""
    from ..configset import FileGroup, missing_file_message

    fp = InputFingerprint()

    def visit(node: Any, loc: tuple[int, ...]) -> None:
        if isinstance(node, FileGroup):
            if not node.path.exists():
                raise InputError(missing_file_message(node.path))
            fp.add_file(node.path, node.format, {"index": canonical(node.index),
                                                 **node.read_kwargs})
        elif isinstance(node, list):
            fp.open_group()
            for i, child in enumerate(node):
                visit(child, loc + (i,))
            fp.close_group()
        else:
            fp.add_item(loc, node)

    visit(cs.tree, ())
    return fp


__all__ = ["InputFingerprint", "atoms_digest", "file_identity", "fingerprint_configset",
           "sha256_file"]
