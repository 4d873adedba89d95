"""The stage: where an output's finished chunks wait, until the output is assembled.

This module is the only code that names, checks, adopts and assembles chunk files.

A stage is a private (0700) folder ``.<output>.wflp-partial`` beside the (first)
output file. It holds ``stage.json`` (the record of the computation and a random
token that identifies this stage) and one file per finished chunk::

    c-<token>-<output group>-<first item>-<end item>-<sha256 prefix of its bytes>.xyz

- A chunk file is written under a temporary name and renamed only when complete,
  and its name carries a digest of its bytes: a later run trusts only files whose
  content matches their name (a kill loses nothing that was written; damage after
  an OS crash is caught, and that chunk computed again).
- The token is new whenever a stage is created: a worker left over from a killed
  run of another computation can never add a chunk to this one.
- Chunks may overlap (a late worker of a killed run of the same computation); the
  output is assembled from an exact tiling of the items, so extra chunks are
  harmless.
- A stage of the same computation is resumed; a stage of another computation with
  no finished chunk is replaced; one with finished chunks is a RecordMismatchError
  unless overwriting.
- Remote jobs hand their chunk files back through :meth:`Stage.adopt`, which checks
  the digest before taking them in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import NamedTuple, Optional

from ase import Atoms

from ..errors import OutputError, RecordError, WflpError
from ..io.extxyz import count_extxyz_frames, frame_texts, iter_extxyz
from ..records import (
    Record,
    mismatch_error,
    output_error,
    read_json,
    sha256_file,
    write_json_atomic,
)

log = logging.getLogger("wflp")

STAGE_SUFFIX = ".wflp-partial"
STAGE_RECORD = "stage.json"
_REMOVING = ".removing-"   # a stage being removed: .<output>.wflp-partial.removing-<token>
EXTXYZ_FORMATS = ("extxyz", "xyz")
_CHUNK_RE = re.compile(
    r"^c-([0-9a-f]{8})-(\d{6})-(\d{12})-(\d{12})-([0-9a-f]{16})\.xyz$")


class ChunkFile(NamedTuple):
    """A finished chunk file: output group, item range [start, end) and its path."""

    group: int
    start: int
    end: int
    path: Path


@dataclasses.dataclass(frozen=True)
class ChunkTarget:
    """Where (and under which stage token) a worker writes one chunk."""

    folder: str
    token: str
    group: int
    start: int
    end: int


def chunk_name(token: str, group: int, start: int, end: int, digest: str) -> str:
    """The file name of one chunk: token, group, item range and a content digest,
    zero-padded so that names sort in input order."""
    return f"c-{token}-{group:06d}-{start:012d}-{end:012d}-{digest[:16]}.xyz"


def parse_chunk_name(name: str) -> Optional[tuple[str, int, int, int, str]]:
    """(token, group, start, end, digest prefix) of a chunk file name, else None."""
    m = _CHUNK_RE.match(name)
    if m is None:
        return None
    return m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5)


def write_chunk(target: ChunkTarget, results: list, label: str) -> str:
    """Write a chunk's results (per item, a list of Atoms) as one chunk file; its path.

    Every frame is checked first: only Atoms can be written, and an info string with
    a line break would make the file unreadable, so either raises before anything is
    written, naming the configuration and the key.
    """
    frames = []
    for offset, outs in enumerate(results):
        for at in outs:
            if not isinstance(at, Atoms):
                raise OutputError(
                    f"operation {label!r} returned a {type(at).__name__} for item "
                    f"{target.start + offset}, which cannot be written to a file; use an "
                    "in-memory OutputSpec() or return Atoms")
            for key, value in at.info.items():
                if (isinstance(value, str) and ("\n" in value or "\r" in value)) or (
                        isinstance(key, str) and ("\n" in key or "\r" in key)):
                    raise OutputError(
                        f"operation {label!r}: the configuration made from item "
                        f"{target.start + offset} has a line break in info[{key!r}], which "
                        "extended XYZ cannot hold (the file would be unreadable); replace "
                        "line breaks (e.g. value.replace('\\n', ' ')) before writing")
            frames.append(at)
    tmp = os.path.join(target.folder, f".tmp-{os.getpid()}-{target.start}")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as fd:
            for text in frame_texts(frames):  # ASE's bytes, at a third of ASE's cost
                data = text.encode()
                digest.update(data)
                fd.write(data)
        final = os.path.join(target.folder, chunk_name(target.token, target.group,
                                                        target.start, target.end,
                                                        digest.hexdigest()))
        os.replace(tmp, final)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise output_error("write a chunk file in", target.folder, err) from None
    return final


class Stage:
    """The stage of one file-backed output (see the module docstring)."""

    def __init__(self, folder: Path, token: str, label: str = "wflp"):
        self.folder = folder
        self.token = token
        self.label = label

    @staticmethod
    def folder_for(first_output: Path) -> Path:
        """The stage folder of an output: ``.<name>.wflp-partial`` beside its first file."""
        first = Path(os.path.abspath(first_output))
        return first.with_name(f".{first.name}{STAGE_SUFFIX}")

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, first_output: Path, record: Record, outputs: list, overwrite: bool,
             label: str = "wflp") -> Stage:
        """Resume the stage of this computation, or start a new one (see module docs)."""
        folder = cls.folder_for(first_output)
        if folder.is_dir():
            token, old = cls._read(folder)
            if old is not None and token is not None and not old.differences(record):
                stage = cls(folder, token, label)
                os.chmod(folder, 0o700)
                return stage
            finished = [c for c in _scan(folder, token) if c is not None] if token else []
            if finished and not overwrite:
                diff = old.differences(record) if old is not None else {
                    "stage record": ("unreadable", "this run")}
                raise mismatch_error(f"the partial output (stage directory {str(folder)!r}) of",
                                     diff, outputs)
            why = ("overwrite=True" if finished else
                   "it holds no finished chunk" if old is not None else "it has no record")
            log.info("%s: replacing the stage %s of another computation (%s)", label, folder,
                     why)
            _remove(folder)
        elif folder.exists() or folder.is_symlink():
            _remove(folder)
        token = secrets.token_hex(4)
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)
            write_json_atomic(folder / STAGE_RECORD,
                              {"token": token, "record": record.to_json(folder.parent)})
        except OSError as err:
            raise output_error("create the stage directory", folder, err) from None
        return cls(folder, token, label)

    @classmethod
    def remove_leftovers(cls, first_output: Path) -> None:
        """Remove what a kill left of this output's stages while removing them (see
        :meth:`remove`); the caller holds the output's lock."""
        folder = cls.folder_for(first_output)
        prefix = f"{folder.name}{_REMOVING}"
        try:
            names = [n for n in os.listdir(folder.parent) if n.startswith(prefix)]
        except OSError:
            return
        for name in names:
            _remove(folder.parent / name)

    @staticmethod
    def _read(folder: Path) -> tuple[Optional[str], Optional[Record]]:
        try:
            data = read_json(folder / STAGE_RECORD)
            if not isinstance(data, dict) or not isinstance(data.get("token"), str):
                return None, None
            return data["token"], Record.from_json(data.get("record"), folder.parent,
                                                   repr(str(folder / STAGE_RECORD)))
        except RecordError:
            return None, None
        except WflpError:  # a record of another wflp version: not this computation
            token = data.get("token") if isinstance(data, dict) else None
            return token if isinstance(token, str) else None, None

    # -- chunks -----------------------------------------------------------------------------
    def finished(self) -> list[ChunkFile]:
        """The intact chunk files of this stage; damaged ones, leftovers of interrupted
        writes and chunks of other stages are removed."""
        chunks = [c for c in _scan(self.folder, self.token, self.label, clean=True)
                  if c is not None]
        if chunks:
            log.info("%s: resuming, %d finished chunks kept in %s", self.label, len(chunks),
                     self.folder)
        return chunks

    @staticmethod
    def done_ranges(chunks: list[ChunkFile]) -> list[tuple[int, int]]:
        """Non-overlapping (start, end) ranges covered by *chunks*, in order, to skip."""
        out: list[tuple[int, int]] = []
        for c in sorted(chunks, key=lambda c: (c.start, -c.end)):
            if not out or c.start >= out[-1][1]:
                out.append((c.start, c.end))
        return out

    def target(self, group: int, start: int, end: int) -> ChunkTarget:
        """Where a worker writes the chunk of items [*start*, *end*) of *group*."""
        return ChunkTarget(str(self.folder), self.token, group, start, end)

    def adopt(self, path: os.PathLike | str) -> ChunkFile:
        """Take in a chunk file written elsewhere (a remote job), after checking its name
        and digest; OutputError if it is not an intact chunk of this stage."""
        path = Path(path)
        parsed = parse_chunk_name(path.name)
        if parsed is None or parsed[0] != self.token:
            raise OutputError(f"{str(path)!r} is not a chunk file of the stage {self.folder}; "
                              "it cannot be part of this output")
        if sha256_file(path)[:16] != parsed[4]:
            raise OutputError(f"chunk file {str(path)!r} is damaged (its content does not "
                              "match the digest in its name); its items must be computed "
                              "again")
        dest = self.folder / path.name
        if path.resolve() != dest.resolve():
            tmp = self.folder / f".tmp-adopt-{os.getpid()}-{parsed[2]}"
            try:
                shutil.copyfile(path, tmp)
                os.replace(tmp, dest)
            except OSError as err:
                raise output_error("take in the chunk file", path, err) from None
        return ChunkFile(parsed[1], parsed[2], parsed[3], dest)

    # -- assembly ---------------------------------------------------------------------------
    def assemble(self, files: list[Path], format: str, write_kwargs: dict,
                 n_items: int) -> dict[Path, tuple[Path, int]]:
        """Join the chunks into temporary files beside *files* (one per output group).

        Returns {final path: (temporary file, configurations)} for the output store to
        put in place; OutputError if the chunks do not cover the items exactly.
        """
        # files were checked when the run started, and this run's are written atomically
        chunks = [c for c in _scan(self.folder, self.token, self.label, verify=False)
                  if c is not None]
        tiling = _tiling(chunks, n_items)
        if tiling is None:  # the inputs were checked unchanged: a chunk file went away
            gaps, pos = [], 0
            for start, end in self.done_ranges(chunks) + [(n_items, n_items)]:
                if start > pos:
                    gaps.append(f"items {pos} to {start - 1}" if start - pos > 1
                                else f"item {pos}")
                pos = max(pos, end)
            if not gaps:  # pragma: no cover - runs start their chunks where kept ones end
                raise OutputError(
                    f"the finished chunk files in the stage {str(self.folder)!r} overlap "
                    f"without covering the {n_items} items exactly once; nothing was "
                    "written: remove the stage folder and rerun")
            raise OutputError(
                f"a finished chunk file is missing from the stage {str(self.folder)!r}: no "
                f"chunk file holds {', '.join(gaps[:3])}{' ...' if len(gaps) > 3 else ''} "
                f"(of {n_items}); it was deleted or moved during this run (a chunk kept from "
                "the interrupted run it resumed, or one it wrote). Nothing was written: rerun "
                "to compute the missing items (the other finished chunks are kept)")
        produced: dict[Path, tuple[Path, int]] = {}
        for g, target in enumerate(files):
            parts = [c.path for c in tiling if c.group == g]
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                count = _concatenate(parts, tmp, format, write_kwargs)
            except OSError as err:
                _unlink(tmp)
                for done_tmp, _ in produced.values():
                    _unlink(done_tmp)
                raise output_error("write the output", target, err) from None
            except BaseException:
                _unlink(tmp)
                for done_tmp, _ in produced.values():
                    _unlink(done_tmp)
                raise
            produced[target] = (tmp, count)
        return produced

    def remove(self) -> None:
        """Remove the stage, renamed away first: a kill part-way through never leaves a
        stage without its record under the stage's name, which would make a rerun distrust
        the output just committed and compute it all again. What a kill leaves under the
        other name is removed by the next run on this output (remove_leftovers)."""
        trash = self.folder.with_name(f"{self.folder.name}{_REMOVING}{self.token}")
        try:
            os.rename(self.folder, trash)
        except OSError:
            trash = self.folder
        _remove(trash)


def _scan(folder: Path, token: Optional[str], label: str = "wflp", clean: bool = False,
          verify: bool = True) -> list[Optional[ChunkFile]]:
    """The chunk files of *folder* with *token* whose digest matches (verify=False: by
    name only); with clean=True, damaged files, leftovers and other stages' chunks are
    removed."""
    out: list[Optional[ChunkFile]] = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return out
    for entry in entries:
        path = folder / entry
        parsed = parse_chunk_name(entry)
        if parsed is None:
            if clean and entry.startswith(".tmp-"):
                _unlink(path)  # a chunk cut off by an interruption
            continue
        if parsed[0] != token:
            if clean:
                log.info("%s: removing %s, written for another computation", label, path)
                _unlink(path)
            continue
        try:
            intact = not verify or sha256_file(path)[:16] == parsed[4]
        except OSError:
            intact = False
        if intact:
            out.append(ChunkFile(parsed[1], parsed[2], parsed[3], path))
        elif clean:
            log.warning("%s: chunk file %s is damaged (its content does not match the digest "
                        "in its name); computing it again", label, path)
            _unlink(path)
    return out


def _tiling(chunks: list[ChunkFile], n_items: int) -> Optional[list[ChunkFile]]:
    """Chunks that cover 0..n_items exactly, once each (None if impossible).

    A depth-first search, longest chunk first, remembering positions from which no
    tiling exists; without overlapping chunks it is one pass.
    """
    by_start: dict[int, list[ChunkFile]] = {}
    for c in chunks:
        if c.start < c.end <= n_items:
            by_start.setdefault(c.start, []).append(c)
    for options in by_start.values():
        options.sort(key=lambda c: -c.end)
    if n_items == 0:
        return []
    dead: set[int] = set()
    path: list[ChunkFile] = []
    stack = [iter(by_start.get(0, ()))]
    while stack:
        step = next((c for c in stack[-1] if c.end not in dead), None)
        if step is None:  # nothing from here reaches the end
            stack.pop()
            if path:
                dead.add(path.pop().end)
            continue
        path.append(step)
        if step.end == n_items:
            return path
        stack.append(iter(by_start.get(step.end, ())))
    return None


def _concatenate(parts: list[Path], target: Path, format: str, write_kwargs: dict) -> int:
    """Join chunk files into *target*; byte-for-byte for extxyz."""
    count = 0
    if format in EXTXYZ_FORMATS and not write_kwargs:
        with open(target, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        for p in parts:
            with open(p, "rb") as src:
                count += count_extxyz_frames(src)
        return count
    import ase.io

    def frames():
        nonlocal count
        for p in parts:
            for at in iter_extxyz(p):
                count += 1
                yield at

    try:
        ase.io.write(target, frames(), format=format, **write_kwargs)
    except (WflpError, OSError):
        raise
    except Exception as err:
        raise OutputError(f"cannot write {str(target)!r} as {format}: {err}") from err
    if count == 0:  # some formats cannot be empty: refuse what could not be read back
        try:
            ase.io.read(target, ":", format=format)
        except Exception:
            _unlink(target)
            raise OutputError(
                f"there are no configurations to write, and an empty {format} file cannot "
                "be read back; write to .xyz (extended XYZ), which can be empty") from None
    return count


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        _unlink(path)


__all__ = ["ChunkFile", "ChunkTarget", "STAGE_SUFFIX", "Stage", "chunk_name",
           "parse_chunk_name", "write_chunk"]
