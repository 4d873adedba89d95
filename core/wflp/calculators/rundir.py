"""Run directories: one private folder per calculation, and the keep-files policy.

==========================  ===============================================================
where calculate writes      run directory of item *i*
==========================  ===============================================================
a file ``dir/out.xyz``      ``dir/out.xyz.rundirs/<i:06d>`` (beside the output's stage)
the same, ``rundir_root``   ``<rundir_root>/out.xyz-<8 hex of the output path>/<i:06d>``
memory (no output file)     ``<rundir_root or ./wflp-rundirs>/<operation>-<run id>/<i:06d>``
outside ``calculate``       a new ``<rundir_root or ./wflp-rundirs>/<code>-XXXXXXXX``
==========================  ===============================================================

A second calculation for the same item (an optimizer step) gets ``<i:06d>-1``, ``-2`` ...
An existing directory of that name is emptied first, so nothing of an older run (a
wavefunction a code would restart from) leaks into the new one. ``scratch=DIR`` runs the
program in ``DIR/wflp-<digest>`` and copies the kept files back. Keep policy:
``"main"`` (the code's main outputs), ``"all"``, ``"none"`` or glob patterns, applied on
success only; empty directories are removed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import ParameterError
from .context import PlaceGetter, current_place

ITEM_PROTOCOL = "__wflp_item__"   # calculate calls calc.__wflp_item__(index) before each item
RUNDIRS_SUFFIX = ".rundirs"
DEFAULT_ROOT = "wflp-rundirs"
KEEP_CHOICES = ("main", "all", "none")

Keep = Union[str, tuple[str, ...]]


def check_keep(keep: Any, where: str) -> Keep:
    """The keep policy as given, checked: "main", "all", "none" or a tuple of globs."""
    if keep is None:
        return "main"
    if isinstance(keep, str) and keep in KEEP_CHOICES:
        return keep
    if not isinstance(keep, str) and isinstance(keep, (list, tuple)) and all(
            isinstance(p, str) and p for p in keep):
        return tuple(keep)
    raise ParameterError(f"{where}: keep must be 'main', 'all', 'none' or a list of glob "
                         f"patterns such as ['*.out', 'OUTCAR'], got {keep!r}")


def check_folder(value: Any, name: str, where: str) -> Optional[str]:
    """*value* as an absolute folder path (None stays None); ParameterError if not a path."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ParameterError(f"{where}: {name} must be a folder path, got {value!r}")
    return os.path.abspath(os.path.expanduser(os.fspath(value)))


def matches(rel: str, patterns: Sequence[str]) -> bool:
    """Whether a relative path, or its last name, matches one of the glob *patterns*."""
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def prune(folder: Path, patterns: Sequence[str]) -> None:
    """Delete everything in *folder* that matches none of *patterns* (relative path or
    name; a matching directory is kept whole), then the directories left empty."""
    for dirpath, dirnames, filenames in os.walk(folder, topdown=True):
        here = Path(dirpath)
        rel_here = here.relative_to(folder).as_posix()
        for d in list(dirnames):
            rel = d if rel_here == "." else f"{rel_here}/{d}"
            path = here / d
            if matches(rel, patterns):
                dirnames.remove(d)            # kept whole
            elif path.is_symlink():
                path.unlink()
                dirnames.remove(d)
        for f in filenames:
            rel = f if rel_here == "." else f"{rel_here}/{f}"
            if not matches(rel, patterns):
                with contextlib.suppress(FileNotFoundError):
                    (here / f).unlink()
    remove_empty_dirs(folder, keep_top=True)


def remove_empty_dirs(folder: Path, keep_top: bool = False) -> None:
    """Remove empty directories below *folder* (and *folder* itself unless keep_top)."""
    for dirpath, _dirs, _files in os.walk(folder, topdown=False):
        if keep_top and Path(dirpath) == folder:
            continue
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def private_dir(path: Path) -> Path:
    """Create *path* (and missing parents) with mode 0700; tolerate racing creators."""
    for _attempt in range(5):
        try:
            missing = []
            p = path
            while not p.exists():
                missing.append(p)
                p = p.parent
            os.makedirs(path, mode=0o700, exist_ok=True)
            for created in missing:
                with contextlib.suppress(OSError):
                    os.chmod(created, 0o700)
            return path
        except FileNotFoundError:  # a parent was removed meanwhile (an emptied root)
            continue
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def fresh_dir(path: Path) -> Path:
    """An empty private directory at *path*: an older one of that name is removed first."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    private_dir(path)
    os.chmod(path, 0o700)
    return path


def copy_into(src: Path, dst: Path) -> None:
    """Copy the files of src into dst (symlinks as symlinks)."""
    for dirpath, _dirs, filenames in os.walk(src):
        target = dst / Path(dirpath).relative_to(src)
        private_dir(target)
        for f in filenames:
            shutil.copy2(Path(dirpath) / f, target / f, follow_symlinks=False)


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


class RunDirs:
    """The directory factory of one calculator: where each calculation runs.

    code: names the folders made outside an operation. keep: a checked policy
    (:func:`check_keep`). root / scratch: absolute folders or None. place: where the
    running operation writes (default :func:`wflp.calculators.context.current_place`).
    """

    def __init__(self, code: str, keep: Keep = "main", root: Optional[str] = None,
                 scratch: Optional[str] = None, place: PlaceGetter = current_place):
        self.code = code
        self.keep = keep
        self.root = root
        self.scratch = scratch
        self.place = place
        self._item: Optional[int] = None
        self._item_calls = 0
        self._own_root: Optional[Path] = None

    def start_item(self, index: int) -> None:
        """The next calculations are for item *index* (its global index in the inputs)."""
        self._item = int(index)
        self._item_calls = 0

    def _base(self) -> Path:
        return Path(self.root) if self.root else Path(DEFAULT_ROOT).absolute()

    def _item_root(self) -> Path:
        ctx = self.place()
        if ctx is not None and ctx.outputs:
            first = Path(ctx.outputs[0])
            if self.root is None:
                beside = Path(ctx.stage).parent if ctx.stage else first.parent
                return beside / f"{first.name}{RUNDIRS_SUFFIX}"
            return Path(self.root) / f"{first.name}-{_digest(str(first), 8)}"
        if ctx is not None:
            return self._base() / f"{ctx.operation}-{ctx.run_id}"
        if self._own_root is None:
            base = private_dir(self._base())
            self._own_root = Path(tempfile.mkdtemp(prefix=f"{self.code}-", dir=base))
        return self._own_root

    def new(self) -> Path:
        """A new, empty, private run directory for the next calculation."""
        if self._item is None:
            base = private_dir(self._base())
            return Path(tempfile.mkdtemp(prefix=f"{self.code}-", dir=base))
        name = f"{self._item:06d}"
        if self._item_calls:
            name += f"-{self._item_calls}"
        self._item_calls += 1
        return fresh_dir(self._item_root() / name)

    def workdir(self, rundir: Path) -> Path:
        """Where the program runs: *rundir*, or a fresh folder for it under ``scratch``."""
        if not self.scratch:
            return rundir
        return fresh_dir(Path(self.scratch) / f"wflp-{_digest(str(rundir), 16)}")

    def finish(self, rundir: Path, workdir: Path, ok: bool,
               main_outputs: Sequence[str]) -> None:
        """Apply the keep policy (on success), bring files back from scratch, remove empty
        folders (*rundir* too, and the roots it leaves empty, when nothing was kept)."""
        try:
            if ok and self.keep != "all":
                patterns = main_outputs if self.keep == "main" else (
                    () if self.keep == "none" else self.keep)
                prune(workdir, patterns)
            if workdir != rundir:
                copy_into(workdir, rundir)
                shutil.rmtree(workdir, ignore_errors=True)
        finally:
            remove_empty_dirs(rundir)
            if not rundir.exists():
                with contextlib.suppress(OSError):
                    os.rmdir(rundir.parent)   # the root, if nothing else is in it
                    if rundir.parent.parent == Path(DEFAULT_ROOT).absolute():
                        os.rmdir(rundir.parent.parent)   # ./wflp-rundirs, if empty


__all__ = ["DEFAULT_ROOT", "ITEM_PROTOCOL", "KEEP_CHOICES", "RUNDIRS_SUFFIX", "Keep", "RunDirs",
           "check_folder", "check_keep", "copy_into", "fresh_dir", "matches", "private_dir",
           "prune", "remove_empty_dirs"]
