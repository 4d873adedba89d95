"""The output store: one writer at a time, reuse decided by records, outputs put in place.

An :class:`OutputStore` owns the final files of one output (one or several
files) and their records:

- :meth:`OutputStore.lock` takes an OS-level lock (``flock``) on every output
  file's lock file before anything is read or written, so two runs never write
  one output at once. The lock dies with its process (and with worker processes
  it forked), so a killed run never leaves a stale lock behind. A second run
  waits (logging who holds the lock) or fails at once, as the OutputSpec says.
- :meth:`OutputStore.reusable` compares the stored records with the record of
  this run: True means reuse; a difference raises RecordMismatchError naming
  it (unless overwriting); files without a record, edited after writing, or only
  some of the files present are refused the same way. When only facts differ
  (ASE or a plugin was upgraded) the output is reused, one line per output says
  what changed, and the record's history keeps it; ``reuse="strict"`` makes such
  facts decide too. A record of an older format is migrated and written back.
- :meth:`OutputStore.commit` moves finished files into place and writes their
  records last, so a record never describes a file that is not complete.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

from ..errors import OutputError, RecordError
from .fingerprint import sha256_file
from .record import (
    REUSE_MODES,
    Record,
    mismatch_error,
    now_iso,
    read_record,
    record_path,
    write_json,
    write_json_atomic,
)

log = logging.getLogger("wflp")

LOCK_SUFFIX = ".wflp-lock"
IF_LOCKED = ("wait", "fail")


def lock_path(output: Path) -> Path:
    """The lock file of an output: ``.<name>.wflp-lock`` beside it."""
    return output.with_name(f".{output.name}{LOCK_SUFFIX}")


def output_error(action: str, path: os.PathLike | str, err: OSError) -> OutputError:
    """An OutputError for an OS error on an output file, saying what to do."""
    path = str(path)
    code = getattr(err, "errno", None)
    if code == errno.ENOSPC or code == errno.EDQUOT:
        hint = "the disk (or your quota) is full: free some space and rerun"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "you may not write there: choose a folder you can write to"
    elif code == errno.EISDIR:
        hint = "a directory has that name: move it away or choose another output name"
    elif code == errno.ENOTDIR:
        hint = "part of the path is a file, not a folder: check the path"
    else:
        hint = "check the path and the file system"
    reason = err.strerror or str(err)
    return OutputError(f"cannot {action} {path!r}: {reason}; {hint}")


class OutputLock:
    """An exclusive ``flock`` on ``.<name>.wflp-lock`` beside an output file.

    The lock file is removed on release; a waiter that wakes up holding the lock of
    a file that was meanwhile removed tries again, so two runs can never both hold
    the lock of one path.
    """

    def __init__(self, output: Path, if_locked: str = "wait", label: str = "wflp"):
        self.path = lock_path(output)
        self.output = output
        self.if_locked = if_locked
        self.label = label
        self.fd: Optional[int] = None

    def acquire(self) -> None:
        """Take the lock; if another run holds it, wait for it (``if_locked="wait"``) or
        raise OutputError naming the holder (``"fail"``)."""
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise output_error("create the folder of", self.output, err) from None
        waiting_logged = False
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as err:
                raise output_error("create the lock file", self.path, err) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                if self.if_locked == "fail":
                    os.close(fd)
                    raise OutputError(
                        f"{str(self.output)!r} is being written by another wflp run "
                        f"({holder}); wait for it to finish, or pass "
                        "OutputSpec(..., if_locked='wait') to wait for it") from None
                if not waiting_logged:
                    log.warning("%s: %s is being written by another wflp run (%s); waiting "
                                "for it to finish", self.label, self.output, holder)
                    waiting_logged = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            # the file may have been removed by the holder between our open and our lock
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            self.fd = fd
            _write_holder(fd)
            return

    def release(self) -> None:
        """Remove the lock file and unlock (nothing if not held)."""
        import fcntl

        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        # unlock explicitly: worker processes forked while the lock was held share it
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _write_holder(fd: int) -> None:
    text = f"pid {os.getpid()} on {socket.gethostname()} since " \
           f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "holder unknown"


class OutputStore:
    """The final files of one output, their records and their lock."""

    def __init__(self, files: Sequence[Path], overwrite: bool = False,
                 if_locked: str = "wait", label: str = "wflp", reuse: str = "identity"):
        if reuse not in REUSE_MODES:
            raise OutputError(f"reuse must be one of {', '.join(map(repr, REUSE_MODES))}, got "
                              f"{reuse!r}")
        self.files = [Path(os.path.abspath(f)) for f in files]
        self.overwrite = overwrite
        self.if_locked = if_locked
        self.label = label
        self.reuse = reuse

    # -- locking --------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the lock of every output file (in a fixed order, so runs cannot deadlock)."""
        for f in self.files:
            if f.is_dir():
                raise OutputError(f"output {str(f)!r} is a directory; choose a file name "
                                  "(e.g. out.xyz)")
        locks = [OutputLock(f, self.if_locked, self.label) for f in sorted(self.files)]
        held: list[OutputLock] = []
        try:
            for lock in locks:
                lock.acquire()
                held.append(lock)
            self._remove_leftovers()
            yield
        finally:
            for lock in reversed(held):
                lock.release()

    def _remove_leftovers(self) -> None:
        """Temporary files of a run killed while putting outputs in place (we hold the lock,
        so no other run is writing them)."""
        for f in self.files:
            for name in (f.name, record_path(f).name):
                prefix = f".{name}.tmp-"
                try:
                    entries = os.listdir(f.parent)
                except OSError:
                    continue
                for entry in entries:
                    if entry.startswith(prefix):
                        try:
                            os.unlink(f.parent / entry)
                            log.info("%s: removed %s, left by an interrupted run", self.label,
                                     f.parent / entry)
                        except OSError:
                            pass

    # -- reuse ----------------------------------------------------------------------------
    def reusable(self, record: Record) -> bool:
        """True if complete outputs made by this same computation exist.

        Raises (unless overwrite) if they exist but were made differently, were edited,
        have no record, or only some of them exist.
        """
        present = [f for f in self.files if f.exists()]
        if not present:
            return False
        found: list[Optional[Record]] = []
        for f in present:
            try:
                found.append(read_record(record_path(f)))
            except RecordError:
                if self.overwrite:
                    return False
                raise
        stored = [s for s in found if s is not None]
        if len(stored) < len(found):
            if self.overwrite:
                return False
            missing = [str(f) for f, s in zip(present, found) if s is None]
            raise OutputError(
                f"output file(s) {missing} already exist but have no wflp record, so wflp "
                "cannot tell what made them; move them away, or pass overwrite=True "
                "(OutputSpec(..., overwrite=True)) to replace them")
        if len(present) != len(self.files):
            if self.overwrite:
                return False
            raise OutputError(
                f"only some of the outputs exist ({[str(f) for f in present]} of "
                f"{[str(f) for f in self.files]}); remove them or pass overwrite=True")
        for f, old in zip(present, stored):
            diff = old.differences(record, strict=self.reuse == "strict")
            if diff:
                if self.overwrite:
                    log.info("%s: replacing %s (overwrite=True): %s", self.label, f,
                             ", ".join(sorted(diff)))
                    return False
                raise mismatch_error("the existing output", diff, self.files)
            entry = old.output_entry(f)
            if entry is None or entry.get("sha256") != sha256_file(f):
                if self.overwrite:
                    return False
                raise OutputError(
                    f"the output {str(f)!r} was modified after wflp wrote it (its content no "
                    "longer matches its record); delete it (and its .record.json) or pass "
                    "overwrite=True to recompute")
        for f, old in zip(present, stored):
            note_reuse(old, record, f, self.label)
        return True

    # -- putting outputs in place ------------------------------------------------------------
    def commit(self, record: Record, produced: dict[Path, tuple[Path, int]]) -> Record:
        """Move finished files into place and write their records.

        produced: {final path: (finished temporary file beside it, configurations)}.
        Every temporary file and record is complete before the first rename, so a kill
        leaves either the old state or complete outputs (a record only ever describes
        a complete file).
        """
        record.outputs = [{"file": str(final), "sha256": sha256_file(tmp), "configs": count}
                          for final, (tmp, count) in produced.items()]
        record_tmps = []
        try:
            for final in produced:
                rec_final = record_path(final)
                rec_tmp = rec_final.with_name(f".{rec_final.name}.tmp-{os.getpid()}")
                write_json(rec_tmp, record.to_json(final.parent))
                record_tmps.append((rec_tmp, rec_final))
            for final, (tmp, _count) in produced.items():
                os.replace(tmp, final)
            for rec_tmp, rec_final in record_tmps:
                os.replace(rec_tmp, rec_final)
        except OSError as err:
            for rec_tmp, _ in record_tmps:
                with contextlib.suppress(OSError):
                    os.unlink(rec_tmp)
            raise output_error("write the output", getattr(err, "filename", None)
                               or self.files[0], err) from None
        for folder in {final.parent for final in produced}:
            _fsync_dir(folder)
        return record


def note_reuse(old: Record, new: Record, output: Path, label: str,
               record_file: Optional[Path] = None, extra: Optional[dict] = None) -> None:
    """Say which facts changed since *old* was written (one line per output) and keep it in
    the record's history (once per set of changes); write back a record migrated from an
    older format. The caller holds the output's lock."""
    entries = list(old.pending)
    changes = old.fact_changes(new)
    if changes:
        log.warning("%s: reusing %s, made with other versions (%s)", label, output,
                    ", ".join(changes))
        if not any(e.get("event") == "reused" and e.get("changes") == changes
                   for e in old.history):
            entries.append({"event": "reused", "changes": changes})
    if not entries:
        return
    path = record_file or record_path(output)
    try:
        append_history(old, path, entries, extra)
    except OSError as err:  # a read-only project can still be reused
        log.info("%s: could not update the record %s (%s)", label, path, err)


def append_history(record: Record, record_file: Path, entries: list,
                   extra: Optional[dict] = None) -> None:
    """Add *entries* to the record's history, stamped now, and write the record back in
    place (atomically; *extra* top-level keys, such as a model's, are kept). The caller
    holds the output's lock."""
    record.history = [*record.history, *({**e, "time": now_iso()} for e in entries)]
    record.pending = []
    write_json_atomic(record_file, {**record.to_json(record_file.parent), **(extra or {})})


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["IF_LOCKED", "LOCK_SUFFIX", "OutputLock", "OutputStore", "append_history",
           "lock_path", "note_reuse", "output_error"]
