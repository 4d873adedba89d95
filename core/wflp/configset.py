"""Where configurations come from (ConfigSet) and where they go (OutputSpec).

A ConfigSet is a tree: its leaves are items (usually ase.Atoms, but any object
an operation accepts, e.g. SMILES strings) and its inner nodes are groups: a
nested Python list, or one file. Iterating yields the leaves in order and never
holds more than one file frame in memory, so a ConfigSet over millions of
configurations costs no more memory than one over ten.

Operations keep the tree's grouping: their in-memory output has the same
nesting as their input, and an OutputSpec with one file per input file writes
each input file's results to its own output file.
"""

from __future__ import annotations

import glob as globmod
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from ase import Atoms

from .errors import InputError, MalformedFileError, OutputError, ParameterError
from .io.extxyz import FrameRef, count_extxyz_frames, iter_extxyz, scan_extxyz

PathLike = Union[str, os.PathLike]

EXTXYZ_FORMATS = ("extxyz", "xyz")
# Formats an output may have: the stage assembles an output by streaming its chunks'
# frames through ase.io.write into a temporary file name, and these are the formats whose
# writers take such a stream and whose files read back with every frame (tested in
# tests/test_bad_input_round2.py). Others that hold many configurations do not fit: pdb,
# json and xsf need the whole list at once, db chooses its backend from the file name.
ASSEMBLED_FORMATS = ("extxyz", "xyz", "traj", "cif")
_GLOB_CHARS = set("*?[")


def guess_format(path: PathLike, format: str | None = None) -> str:
    """The ase.io format name for *path* (extxyz for .xyz, as wfl does)."""
    if format:
        return format
    if str(path).endswith(".xyz"):
        return "extxyz"
    from ase.io.formats import filetype

    try:
        return filetype(str(path), read=False)
    except Exception as err:  # ase raises several types for unknown suffixes
        raise InputError(
            f"cannot tell the file format of {str(path)!r} from its name ({err}); "
            "pass format='...' (any ase.io format name)"
        ) from None


def output_format(path: PathLike, format: str | None = None) -> str:
    """The ase.io format to write *path* in; OutputError unless it can hold many
    configurations, be read back, and be assembled from chunks (ASSEMBLED_FORMATS)."""
    if format is None and str(path).endswith(".xyz"):
        return "extxyz"
    from ase.io.formats import filetype, ioformats

    name = format
    if name is None:
        try:
            name = filetype(str(path), read=False)
        except Exception:  # ase raises several types for unknown suffixes
            name = None
    spec = ioformats.get(name) if name else None
    if spec is None:
        raise OutputError(
            f"output {str(path)!r}: cannot tell a file format "
            f"{'named ' + repr(format) if format else 'from its name'}; name it .xyz "
            "(extended XYZ, which keeps every result), or pass format= with an ase.io "
            "format that holds many configurations (e.g. 'traj')")
    if not (spec.can_write and spec.can_read):
        missing = "write" if not spec.can_write else "read back"
        raise OutputError(
            f"output {str(path)!r}: ase.io cannot {missing} the format {name!r}; write to "
            ".xyz (extended XYZ) instead")
    if spec.single:
        raise OutputError(
            f"output {str(path)!r}: the format {name!r} holds one configuration per file, "
            "and an operation writes many; write to .xyz (extended XYZ) and convert single "
            "configurations afterwards if you need them in that format")
    if name not in ASSEMBLED_FORMATS:
        raise OutputError(
            f"output {str(path)!r}: wflp cannot write the format {name!r}: an output is "
            "assembled from its finished chunks as a stream of configurations, which works "
            "for extxyz (.xyz, wflp's own format, which keeps every result), traj and cif; "
            f"write to .xyz (or .traj) and convert it with ase.io afterwards if you need "
            f"{name}")
    return name


class FileGroup:
    """One configuration file: a group whose items are read lazily, frame by frame."""

    __slots__ = ("path", "format", "read_kwargs", "index")

    def __init__(self, path: PathLike, format: str | None = None,
                 read_kwargs: dict | None = None, index: str | int | slice = ":"):
        self.path = Path(path)
        if format is None and not self.path.exists():
            try:
                guess_format(self.path)
            except InputError:
                raise InputError(missing_file_message(self.path)) from None
        self.format = guess_format(self.path, format)
        self.read_kwargs = dict(read_kwargs or {})
        self.index = index

    def __repr__(self) -> str:
        return f"FileGroup({str(self.path)!r}, format={self.format!r})"

    @property
    def _streams_extxyz(self) -> bool:
        return self.format == "extxyz" and self.index == ":" and not self.read_kwargs

    def frame_refs(self) -> Iterator[FrameRef] | None:
        """FrameRefs for the frames, or None if this file is not read by wflp's own
        extxyz reader (another format, an index or read options)."""
        if not self._streams_extxyz:
            return None
        self._check_readable()
        return scan_extxyz(self.path)

    def _integer_index(self) -> int | None:
        """The index if it picks one frame (an int, or a string such as "3"), else None."""
        index = self.index
        if isinstance(index, str):
            from ase.io.formats import string2index

            try:
                index = string2index(index)
            except ValueError:
                return None
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            return None
        return int(index)

    def check_index(self) -> None:
        """InputError if an integer index is beyond the file's frames (reads the file;
        nothing to do for slices, which may be empty)."""
        index = self._integer_index()
        if index is None:
            return
        self._check_readable()
        n = self._count_frames()
        if not -n <= index < n:
            valid = f"0 to {n - 1}, or -{n} to -1" if n else "none: it is empty"
            raise InputError(
                f"input {str(self.path)!r}: index {self.index!r} is beyond its end: the file "
                f"has {n} frame{'s' if n != 1 else ''} (indices {valid}); pass an index "
                "inside the file, or a slice such as ':' for every frame")

    def _count_frames(self) -> int:
        if self.format == "extxyz" and not self.read_kwargs:
            with open(self.path, "rb") as fd:
                try:
                    return count_extxyz_frames(fd)
                except ValueError:
                    pass  # malformed: ase's reader below says where
        import ase.io

        try:
            return sum(1 for _ in ase.io.iread(self.path, index=":", format=self.format,
                                               **self.read_kwargs))
        except Exception as err:
            raise MalformedFileError(
                f"cannot read {str(self.path)!r} as {self.format}: "
                f"{type(err).__name__}: {err}; fix or regenerate the file, or pass the "
                "right format= / read_kwargs=") from err

    def _check_readable(self) -> None:
        if self.path.is_dir():
            raise InputError(f"input {str(self.path)!r} is a directory; give a configuration "
                             "file (or a glob such as 'dir/*.xyz')")
        if not self.path.is_file():
            raise InputError(missing_file_message(self.path))
        if not os.access(self.path, os.R_OK):
            raise InputError(f"input file {str(self.path)!r} cannot be read (permission "
                             "denied); check its permissions")

    def __iter__(self) -> Iterator[Atoms]:
        self._check_readable()
        if self._streams_extxyz:
            yield from iter_extxyz(self.path)
            return
        import ase.io

        n_read = 0
        try:
            for atoms in ase.io.iread(self.path, index=self.index, format=self.format,
                                      **self.read_kwargs):
                n_read += 1
                yield atoms
        except InputError:
            raise
        except Exception as err:
            raise MalformedFileError(
                f"cannot read {str(self.path)!r} as {self.format}: "
                f"{type(err).__name__}: {err}; fix or regenerate the file, or pass the "
                "right format= / read_kwargs="
            ) from err
        if n_read == 0:  # ase.io.iread yields nothing for an index beyond the end
            self.check_index()


def missing_file_message(path: PathLike) -> str:
    """The error for an input file that does not exist: where relative paths are taken
    from, and ``ConfigSet.from_items`` for strings that are items, not file names."""
    return (
        f"input file {str(path)!r} does not exist; check the path (relative paths are taken "
        f"from the current directory {os.getcwd()!r}); if these strings are items rather "
        "than file names (e.g. SMILES), pass ConfigSet.from_items([...])"
    )


def _is_pathlike(obj: Any) -> bool:
    return isinstance(obj, (str, os.PathLike))


def _expand_path(path: PathLike) -> list[Path]:
    text = os.fspath(path)
    if any(c in _GLOB_CHARS for c in text) and not os.path.exists(text):
        matches = sorted(globmod.glob(text))
        if not matches:
            raise InputError(
                f"the pattern {text!r} matches no file; check the pattern and the "
                f"current directory {os.getcwd()!r}"
            )
        return [Path(m) for m in matches]
    return [Path(text)]


class ConfigSet:
    """An ordered, possibly nested, collection of configurations.

    ConfigSet(atoms_list), ConfigSet([[a, b], [c]]) (grouping kept),
    ConfigSet("file.xyz"), ConfigSet(["a.xyz", "b.xyz"]), ConfigSet("dir/c*.xyz"),
    ConfigSet([cs1, cs2]) (concatenation). Files are read with ase.io (extxyz
    unless the name or format= says otherwise; read_kwargs go to ase.io.read).
    """

    def __init__(self, items: Any, format: str | None = None, read_kwargs: dict | None = None,
                 index: str | int | slice = ":"):
        self._root = self._build(items, format, read_kwargs, index)

    @classmethod
    def from_items(cls, items: Iterable[Any]) -> ConfigSet:
        """A set of arbitrary items (e.g. SMILES strings), never read as file names."""
        return cls._from_root(list(items))

    @classmethod
    def _from_root(cls, root: Any) -> ConfigSet:
        obj = cls.__new__(cls)
        obj._root = root
        return obj

    @property
    def tree(self) -> Any:
        """The set's structure, for code that walks it (the input fingerprint): a
        :class:`FileGroup` (one file), or a list whose entries are FileGroups, nested
        lists of the same, or items (Atoms or anything an operation accepts)."""
        return self._root

    # -- construction -------------------------------------------------------------------
    def _build(self, items: Any, format: str | None, read_kwargs: dict | None,
               index: str | int | slice) -> Any:
        if isinstance(items, ConfigSet):
            return items._root
        if _is_pathlike(items):
            paths = _expand_path(items)
            groups = [FileGroup(p, format, read_kwargs, index) for p in paths]
            return groups[0] if len(paths) == 1 and not _has_glob(items) else groups
        if isinstance(items, Atoms):
            return [items]
        if isinstance(items, (list, tuple)):
            if items and all(_is_pathlike(x) for x in items):
                groups = []
                for p in items:
                    groups.extend(FileGroup(q, format, read_kwargs, index)
                                  for q in _expand_path(p))
                return groups
            return [self._build_node(x, format, read_kwargs, index) for x in items]
        if isinstance(items, (Iterable,)) and not isinstance(items, (bytes, dict)):
            return [self._build_node(x, format, read_kwargs, index) for x in items]
        raise InputError(
            f"ConfigSet cannot be made from {type(items).__name__}; give a list of "
            "Atoms (possibly nested), a file name, a list of file names, a glob, or "
            "other ConfigSets"
        )

    def _build_node(self, x: Any, format: str | None, read_kwargs: dict | None,
                    index: str | int | slice) -> Any:
        if isinstance(x, ConfigSet):
            return x._root
        if isinstance(x, (list, tuple)):
            return [self._build_node(y, format, read_kwargs, index) for y in x]
        return x  # a leaf item (Atoms or anything an operation accepts)

    # -- reading ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        for _loc, item in self.iter_with_loc():
            yield item

    def iter_with_loc(self, lazy_frames: bool = False) -> Iterator[tuple[tuple[int, ...], Any]]:
        """Yield (location, item): location is the item's path of indices in the tree.

        lazy_frames: yield a :class:`FrameRef` instead of each frame of an extxyz file,
        to be read by :func:`read_frame_refs` where it is needed.
        """
        yield from _walk(self._root, (), lazy_frames)

    def groups(self) -> list[ConfigSet]:
        """The top-level groups (one per input file, or per top-level sub-list)."""
        root = self._root
        if isinstance(root, FileGroup):
            return [self]
        return [ConfigSet._from_root(node if isinstance(node, (list, FileGroup)) else [node])
                for node in root]

    @property
    def files(self) -> list[Path]:
        """The files this set reads, in order (empty for in-memory sets)."""
        return [g.path for g in _file_groups(self._root)]

    @property
    def is_in_memory(self) -> bool:
        """True if the configurations are held in memory, not read from files."""
        return not self.files

    def __len__(self) -> int:
        """Number of items (reads file-backed sets once to count)."""
        return sum(1 for _ in self)

    def known_length(self) -> int | None:
        """Number of items if known without reading files, else None."""
        if _file_groups(self._root):
            return None
        return sum(1 for _ in _walk(self._root, ()))

    def cheap_length(self) -> int | None:
        """Number of items, scanning extxyz headers of files without parsing frames.

        None if a file is in another format or read with an index or options.
        """
        n = 0
        for group in _file_groups(self._root):
            if group.format != "extxyz" or group.index != ":" or group.read_kwargs \
                    or not group.path.is_file():
                return None
            with open(group.path, "rb") as fd:
                try:
                    n += count_extxyz_frames(fd)
                except ValueError:
                    return None  # malformed: the reader will say where
        return n + sum(1 for _ in _walk([c for c in _memory_nodes(self._root)], ()))

    def to_list(self) -> list:
        """The items as (possibly nested) Python lists, keeping the grouping."""
        return _materialize(self._root)

    def __repr__(self) -> str:
        files = self.files
        if files:
            shown = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
            return f"ConfigSet(files=[{shown}])"
        return f"ConfigSet(<{self.known_length()} items in memory>)"


def _has_glob(path: PathLike) -> bool:
    text = os.fspath(path)
    return any(c in _GLOB_CHARS for c in text) and not os.path.exists(text)


def _walk(node: Any, loc: tuple[int, ...],
          lazy_frames: bool = False) -> Iterator[tuple[tuple[int, ...], Any]]:
    if isinstance(node, FileGroup):
        frames = node.frame_refs() if lazy_frames else None
        for i, item in enumerate(frames if frames is not None else node):
            yield loc + (i,), item
    elif isinstance(node, list):
        for i, child in enumerate(node):
            if isinstance(child, (list, FileGroup)):
                yield from _walk(child, loc + (i,), lazy_frames)
            else:
                yield loc + (i,), child
    else:
        yield loc, node



def _memory_nodes(node: Any) -> list:
    """Everything in the tree that is not a file group."""
    if isinstance(node, FileGroup):
        return []
    if isinstance(node, list):
        out = []
        for child in node:
            if isinstance(child, list):
                out.append(_memory_nodes(child))
            elif not isinstance(child, FileGroup):
                out.append(child)
        return out
    return [node]


def _file_groups(node: Any) -> list[FileGroup]:
    if isinstance(node, FileGroup):
        return [node]
    if isinstance(node, list):
        out = []
        for child in node:
            out.extend(_file_groups(child))
        return out
    return []


def _materialize(node):
    if isinstance(node, FileGroup):
        return list(node)
    if isinstance(node, list):
        return [_materialize(c) if isinstance(c, (list, FileGroup)) else c for c in node]
    return node


def _file_key(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file, the same through any link; else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _is_flat(root: Any) -> bool:
    """A tree that is one group: one file, or a list of items with no sub-groups."""
    return isinstance(root, FileGroup) or (
        isinstance(root, list) and not any(isinstance(c, (list, FileGroup)) for c in root))


def top_group_count(cs: ConfigSet) -> int:
    """How many top-level groups a set has (one file counts as one group)."""
    root = cs._root
    return 1 if isinstance(root, FileGroup) else len(root)


class OutputSpec:
    """Where an operation's results go.

    OutputSpec()                        in memory
    OutputSpec("out.xyz")               one file, all results in input order
    OutputSpec(["o1.xyz", "o2.xyz"])    one file per top-level input group (file)

    Files are written under a temporary name and renamed only when complete,
    with a record sidecar ``<file>.record.json`` describing what made them.
    overwrite=True replaces an output whose record differs from this run.
    if_locked: what a run does when another run is writing the same output:
    "wait" (the default, logging who holds it) or "fail" at once.
    reuse: "identity" (the default, or $WFLP_REUSE, or AutoparaInfo(reuse=...)): an
    existing output is reused when what decides its result matches, even if it was
    made under other versions of ASE, wflp or plugins (which the log and the record's
    history then say); "strict": those versions must match too.

    The format (from the name, or format=) must be one ase.io can both write and
    read back, holding many configurations per file, that wflp can assemble from
    chunks: extxyz (.xyz), traj or cif; anything else is refused here, before any
    work is done.
    """

    # files given as a list, even of one file: one file per input group (see check_fits)
    one_per_group = False

    def __init__(self, files: PathLike | Sequence[PathLike] | None = None,
                 format: str | None = None, write_kwargs: dict | None = None,
                 overwrite: bool = False, if_locked: str = "wait",
                 reuse: str | None = None):
        self.one_per_group = isinstance(files, (list, tuple))
        if files is None:
            self.files: list[Path] = []
        elif isinstance(files, (str, os.PathLike)):
            self.files = [Path(files)]
        elif isinstance(files, (list, tuple)) and files and all(_is_pathlike(f) for f in files):
            self.files = [Path(f) for f in files]
        else:
            raise ParameterError(
                f"OutputSpec files must be a path or a non-empty list of paths, got {files!r}"
            )
        if len(set(map(os.path.abspath, self.files))) != len(self.files):
            raise ParameterError(f"OutputSpec lists the same file twice: {self.files}")
        self.format = output_format(self.files[0], format) if files is not None else None
        if write_kwargs is not None and not isinstance(write_kwargs, dict):
            raise ParameterError(f"OutputSpec write_kwargs must be a dict of ase.io.write "
                                 f"options, got {write_kwargs!r}")
        self.write_kwargs = dict(write_kwargs or {})
        self.overwrite = bool(overwrite)
        if if_locked not in ("wait", "fail"):
            raise ParameterError(f"OutputSpec if_locked must be 'wait' or 'fail', got "
                                 f"{if_locked!r}")
        self.if_locked = if_locked
        if reuse not in (None, "identity", "strict"):
            raise ParameterError(f"OutputSpec reuse must be 'identity' or 'strict', got "
                                 f"{reuse!r}")
        self.reuse = reuse

    @property
    def is_in_memory(self) -> bool:
        """True if results are kept in memory (no file names given)."""
        return not self.files

    def check_fits(self, inputs: ConfigSet) -> None:
        """Raise before any work if these outputs cannot be made from *inputs*.

        OutputError if an output file is one of the input files (even with overwrite:
        the input would be replaced while it is read) or if a list of output files does
        not have one file per input group; InputError if an input file's integer index
        is beyond its last frame.
        """
        existing = {key: out for out in self.files if (key := _file_key(out)) is not None}
        for src in inputs.files if existing else ():
            key = _file_key(src)
            out = existing.get(key) if key is not None else None
            if out is not None:
                raise OutputError(
                    f"output {str(out)!r} is the input file {str(src)!r}; an operation "
                    "cannot write its results over the configurations it reads (not even "
                    "with overwrite=True): write to another file")
        for group in _file_groups(inputs._root):
            group.check_index()
        if len(self.files) > 1 or self.one_per_group:
            n_groups = top_group_count(inputs) if len(self.files) > 1 or not _is_flat(
                inputs._root) else 1
            if n_groups != len(self.files):
                raise OutputError(
                    f"OutputSpec has {len(self.files)} files but the input has {n_groups} "
                    f"top-level groups (input files: {[str(f) for f in inputs.files] or 'none'}); "
                    "give one output file per input file, or a single output file"
                )

    def output_index(self, loc: tuple[int, ...]) -> int:
        """Which output file an item at *loc* goes to."""
        return loc[0] if len(self.files) > 1 else 0

    def result_set(self) -> ConfigSet:
        """A ConfigSet over the written files."""
        if len(self.files) == 1:
            return ConfigSet(self.files[0], format=self.format)
        return ConfigSet._from_root([FileGroup(f, self.format) for f in self.files])

    def __repr__(self) -> str:
        if self.is_in_memory:
            return "OutputSpec(<memory>)"
        return f"OutputSpec({[str(f) for f in self.files]})"


class MemoryCollector:
    """Rebuilds the input's nesting around results that arrive in input order."""

    def __init__(self, inputs: ConfigSet):
        root = inputs._root
        self._flat = not isinstance(root, list) or all(
            not isinstance(c, (list, FileGroup)) for c in root)
        self._single_file = isinstance(root, FileGroup)
        self.root: list = []

    def add(self, loc: tuple[int, ...], results: list) -> None:
        """Put the *results* of the input at *loc* in place, nested as that input was."""
        if self._flat or self._single_file:
            self.root.extend(results)
            return
        container = self.root
        for depth, idx in enumerate(loc[:-1]):
            while len(container) <= idx:
                container.append([])
            container = container[idx]
            if not isinstance(container, list):  # pragma: no cover - defensive
                raise OutputError(f"inconsistent nesting at {loc[:depth + 1]}")
        container.extend(results)

    def result_set(self) -> ConfigSet:
        """The results collected so far, as a ConfigSet with the input's nesting."""
        return ConfigSet._from_root(self.root)
