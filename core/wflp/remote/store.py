"""The job store: every queued job this user's drivers submitted, in SQLite.

It lives at ``$WFLP_HOME/jobs.sqlite`` (``WFLP_HOME`` defaults to
``$XDG_STATE_HOME/wflp``, i.e. ``~/.local/state/wflp``), in WAL mode so that two
driver processes can use it at once; every statement is parameterized. A job's
row is written *before* the scheduler is asked to run it, so a driver killed at
any moment leaves a row that a rerun finds (see wflp.remote.jobs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from ..errors import WflpError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    key           TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    system        TEXT NOT NULL,
    scheduler     TEXT NOT NULL,
    scheduler_id  TEXT,
    state         TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    exit_code     INTEGER,
    remote_dir    TEXT NOT NULL,
    local_dir     TEXT NOT NULL,
    resources     TEXT NOT NULL DEFAULT '{}',
    created       REAL NOT NULL,
    submitted     REAL,
    finished      REAL,
    collected     INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_system_state ON jobs (system, state);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# states a row can be in before the scheduler has accepted the job
PREPARING = "preparing"     # the row exists; the job directory is being written
SUBMITTING = "submitting"   # the scheduler is being asked; it may have accepted already


class StoreError(WflpError):
    """The job store cannot be opened or is of another version."""


def wflp_home() -> Path:
    """The user's state folder for wflp ($WFLP_HOME)."""
    env = os.environ.get("WFLP_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "state")
    return Path(base) / "wflp"


@dataclasses.dataclass
class JobRow:
    """One job as the store keeps it."""

    id: int
    key: str
    name: str
    kind: str                  # "function" or "batch"
    system: str
    scheduler: str
    scheduler_id: Optional[str]
    state: str
    reason: str
    exit_code: Optional[int]
    remote_dir: str
    local_dir: str
    resources: dict
    created: float
    submitted: Optional[float]
    finished: Optional[float]
    collected: bool
    attempts: int

    def to_dict(self) -> dict:
        """The row as a plain dict (``wflp jobs --json``)."""
        return dataclasses.asdict(self)


_COLUMNS = [f.name for f in dataclasses.fields(JobRow)]


def _row(values: sqlite3.Row) -> JobRow:
    data = dict(values)
    data["resources"] = json.loads(data["resources"] or "{}")
    data["collected"] = bool(data["collected"])
    return JobRow(**data)


class JobStore:
    """The SQLite job store (see the module docstring)."""

    def __init__(self, path: Optional[Path] = None):
        self.path = Path(path) if path is not None else wflp_home() / "jobs.sqlite"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"cannot open the job store {str(self.path)!r}: {err}; set "
                             "$WFLP_HOME to a folder you can write to") from None
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL: a commit survives the process being killed; only an
        # OS crash can lose the last commits (an fsync per commit cost 10 ms per update)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        with self.transaction() as db:
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                db.execute(statement)
            found = db.execute("SELECT value FROM meta WHERE name = ?",
                               ("schema_version",)).fetchone()
            if found is None:
                db.execute("INSERT INTO meta (name, value) VALUES (?, ?)",
                           ("schema_version", str(SCHEMA_VERSION)))
            elif int(found["value"]) != SCHEMA_VERSION:
                raise StoreError(f"the job store {str(self.path)!r} has schema version "
                                 f"{found['value']}, this wflp uses {SCHEMA_VERSION}; use "
                                 "another $WFLP_HOME, or upgrade wflp")
        os.chmod(self.path, 0o600)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: one writer at a time across processes."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    # -- rows -------------------------------------------------------------------------------
    def get_or_create(self, key: str, **values: Any) -> tuple[JobRow, bool]:
        """The job with *key*, or a new one (state "preparing"): (row, created)."""
        with self.transaction() as db:
            found = db.execute("SELECT * FROM jobs WHERE key = ?", (key,)).fetchone()
            if found is not None:
                return _row(found), False
            values = {**values, "key": key, "state": PREPARING, "created": time.time(),
                      "resources": json.dumps(values.get("resources", {}), sort_keys=True)}
            columns = sorted(values)
            db.execute(f"INSERT INTO jobs ({', '.join(columns)}) VALUES "
                       f"({', '.join('?' for _ in columns)})", [values[c] for c in columns])
            row = db.execute("SELECT * FROM jobs WHERE key = ?", (key,)).fetchone()
            return _row(row), True

    def update(self, job_id: int, **values: Any) -> None:
        """Set the given columns of job *job_id*, in one transaction; ValueError for an
        unknown column."""
        bad = set(values) - set(_COLUMNS)
        if bad:
            raise ValueError(f"unknown job columns {sorted(bad)}")
        if "resources" in values:
            values["resources"] = json.dumps(values["resources"], sort_keys=True)
        columns = sorted(values)
        with self.transaction() as db:
            db.execute(f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?",
                       [values[c] for c in columns] + [job_id])

    def get(self, job_id: int) -> Optional[JobRow]:
        """The job with id *job_id*; None if there is none."""
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(row) if row is not None else None

    def require(self, job_id: int) -> JobRow:
        """The job *job_id*, which must be in the store (WflpError if it was removed)."""
        row = self.get(job_id)
        if row is None:
            raise WflpError(f"job {job_id} is no longer in the job store {self.path}: it was "
                            "removed (`wflp jobs clean`) while this run used it; run again")
        return row

    def by_key(self, key: str) -> Optional[JobRow]:
        """The job submitted for *key* (a digest of what it runs); None if there is none:
        how a rerun finds the jobs it submitted before."""
        row = self._db.execute("SELECT * FROM jobs WHERE key = ?", (key,)).fetchone()
        return _row(row) if row is not None else None

    def select(self, *, states: Optional[list[str]] = None, system: Optional[str] = None,
               name: Optional[str] = None, ids: Optional[list[int]] = None) -> list[JobRow]:
        """The jobs matching every filter given: states, system, part of the name, ids."""
        where: list[str] = []
        args: list[Any] = []
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args += list(states)
        if system:
            where.append("system = ?")
            args.append(system)
        if name:
            where.append("name LIKE ?")
            args.append(f"%{name}%")
        if ids:
            where.append(f"id IN ({', '.join('?' for _ in ids)})")
            args += list(ids)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        return [_row(r) for r in self._db.execute(sql + " ORDER BY id", args).fetchall()]

    def delete(self, job_id: int) -> None:
        """Remove job *job_id* from the store (its files are not touched)."""
        with self.transaction() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))


__all__ = ["JobRow", "JobStore", "PREPARING", "SCHEMA_VERSION", "SUBMITTING", "StoreError",
           "wflp_home"]
