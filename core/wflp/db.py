"""Collect a project's outputs into an ASE database (``wflp db collect``).

Every configuration of every output with a valid record becomes one row of an
``ase.db`` database (SQLite file, or a ``postgresql://`` URL through ase-db-backends):

* scalar ``info`` values become key-value pairs, under a name ase.db accepts
  (:func:`db_key` / :func:`info_key`, a reversible rule); other ``info`` values go to
  ``row.data["info"]``, per-atom arrays beyond ase.db's own columns to
  ``row.data["arrays"]``;
* with ``calc_prefix="xtb_"``, ``info["xtb_energy"]``, ``arrays["xtb_forces"]`` and
  ``info["xtb_stress"]`` become the row's calculator results (the standard ``energy``,
  ``forces`` and ``stress`` columns, through a SinglePointCalculator) and leave info/arrays;
  results the file holds under ASE's own names (``energy=`` in the comment line, which
  ``ase.io.read`` turns into a calculator) are kept as well, the prefix's taking precedence;
* each row has the key-value pairs ``wflp_output`` (absolute path of the file),
  ``wflp_index`` (its index in the file), ``wflp_sha256`` (the file's sha256),
  ``wflp_record`` (the record's identity digest) and ``wflp_operation``;
* the full record of an output (as :meth:`Record.to_json` gives it) is kept once, in
  ``row.data["wflp_record"]`` of the output's row with ``wflp_index == 0``;
* the database metadata holds ``key_descriptions`` for the wflp keys and the renamed keys.

Collecting is idempotent and incremental: an output whose sha256 is already in the
database under the same path is skipped, one whose content changed has its rows
replaced, so rows stay unique by (``wflp_sha256``, ``wflp_index``). Each output is
written in one transaction, so a collection killed half-way leaves every output either as
it was before or fully collected. Records are read only through :mod:`wflp.records.query`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Optional

from .errors import InputError

#: key-value pairs that wflp adds to every row
WFLP_KEYS = {
    "wflp_output": ("Output file", "Absolute path of the output file the row comes from", ""),
    "wflp_index": ("Index in file", "Index of the configuration in its output file (from 0)",
                   ""),
    "wflp_sha256": ("Output sha256", "sha256 of the output file when collected", ""),
    "wflp_record": ("Record identity", "Identity digest of the output's record (what made it)",
                    ""),
    "wflp_operation": ("Operation", "Name of the operation that wrote the output", ""),
}

ESCAPE_PREFIX = "kv_"
_RESERVED_PREFIXES = (ESCAPE_PREFIX, "wflp_")
_ASE_COLUMNS = ("numbers", "positions", "momenta", "masses", "tags", "initial_magmoms",
                "initial_charges")
_WORD = re.compile(r"[_a-zA-Z][_0-9a-zA-Z]*$")
_ESCAPED_CHAR = re.compile(r"_(_|x[0-9a-f]+_)")


# -- key names ------------------------------------------------------------------------------

def _ase_accepts(name: str) -> bool:
    from ase.db.core import reserved_keys
    from ase.formula import Formula

    if not _WORD.match(name) or name in reserved_keys:
        return False
    try:
        Formula(name, strict=True)   # ase.db warns on such keys and select() misreads them
    except ValueError:
        return True
    return False


def db_key(name: str) -> str:
    """The key-value-pair name for the info key *name*.

    The rule: a name that ase.db accepts (an ASCII identifier that is not reserved, such
    as ``energy`` or ``id``, and not a chemical formula, such as ``CO``) and that does not
    start with ``kv_`` or ``wflp_`` is kept. Any other becomes ``kv_`` followed by the
    name with each ``_`` doubled and each character outside ``[A-Za-z0-9_]`` written as
    ``_x<hex code>_``: ``energy`` -> ``kv_energy``, ``md-time`` -> ``kv_md_x2d_time``,
    ``wflp_x`` -> ``kv_wflp__x``. :func:`info_key` reverses it.
    """
    if not name.startswith(_RESERVED_PREFIXES) and _ase_accepts(name):
        return name
    out = []
    for char in name:
        if char == "_":
            out.append("__")
        elif char.isascii() and char.isalnum():
            out.append(char)
        else:
            out.append(f"_x{ord(char):x}_")
    return ESCAPE_PREFIX + "".join(out)


def info_key(key: str) -> str:
    """The info key a key-value-pair name came from (the inverse of :func:`db_key`)."""
    if not key.startswith(ESCAPE_PREFIX):
        return key
    body = key[len(ESCAPE_PREFIX):]

    def unescape(match: re.Match) -> str:
        text = match.group(1)
        return "_" if text == "_" else chr(int(text[1:-1], 16))

    return _ESCAPED_CHAR.sub(unescape, body)


def _scalar(value: Any) -> Any:
    """*value* as a key-value pair value, or None if it must go to data."""
    import numpy as np
    from ase.db.core import str_represents

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        # ase.db refuses strings that read as numbers or booleans; keep them as they are
        if any(str_represents(value, t) for t in (bool, int, float)):
            return None
        return value
    return None


# -- one configuration -> one row ------------------------------------------------------------

def _stored_results() -> type:
    """A SinglePointCalculator for results read with the configuration they belong to.

    ase.db asks a calculator whether the atoms changed since it computed (comparing every
    array with allclose, several times per row); these results were made for exactly these
    atoms, so the answer is always "no", and asking cost more than a third of a row's
    write time."""
    global _STORED_RESULTS
    if _STORED_RESULTS is None:
        from ase.calculators.singlepoint import SinglePointCalculator

        class StoredResults(SinglePointCalculator):
            def check_state(self, atoms: Any, tol: float = 1e-15) -> list:
                return []

        _STORED_RESULTS = StoredResults
    return _STORED_RESULTS


_STORED_RESULTS: Optional[type] = None


def row_parts(atoms: Any, calc_prefix: Optional[str] = None,
              renamed: Optional[dict] = None) -> tuple[Any, dict, dict]:
    """(atoms to write, key-value pairs, data) for one configuration (without the wflp_*
    keys). *renamed* collects {db key: info key} for names the rule changed."""
    import numpy as np
    from ase import Atoms

    info = dict(atoms.info)
    arrays = {k: v for k, v in atoms.arrays.items() if k not in _ASE_COLUMNS}
    # results the file itself holds (ASE reads info "energy", arrays "forces" as such)
    results: dict[str, Any] = dict(getattr(atoms.calc, "results", None) or {})
    if calc_prefix:
        if f"{calc_prefix}energy" in info:
            results["energy"] = float(info.pop(f"{calc_prefix}energy"))
        if f"{calc_prefix}forces" in arrays:
            results["forces"] = np.asarray(arrays.pop(f"{calc_prefix}forces"), dtype=float)
        if f"{calc_prefix}stress" in info:
            stress = np.asarray(info.pop(f"{calc_prefix}stress"), dtype=float)
            if stress.shape in ((3, 3), (9,)):
                from ase.stress import full_3x3_to_voigt_6_stress

                stress = full_3x3_to_voigt_6_stress(stress.reshape(3, 3))
            results["stress"] = stress
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                pbc=atoms.pbc)
    for name in _ASE_COLUMNS[2:]:
        if name in atoms.arrays:
            out.arrays[name] = atoms.arrays[name].copy()
    if results:
        out.calc = _stored_results()(out, **results)
        out.calc.name = (calc_prefix or "").rstrip("_") or "unknown"   # `ase db` shows it
    kvp: dict[str, Any] = {}
    data: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for name, value in info.items():
        scalar = _scalar(value)
        if scalar is None:
            other[name] = value
            continue
        key = db_key(name)
        if key != name and renamed is not None:
            renamed[key] = name
        kvp[key] = scalar
    if other:
        data["info"] = other
    if arrays:
        data["arrays"] = arrays
    return out, kvp, data


# -- collecting --------------------------------------------------------------------------------

@dataclasses.dataclass
class CollectReport:
    """What a collection did: outputs collected, skipped as unchanged, replaced, left out
    (with why), and rows written."""

    collected: list = dataclasses.field(default_factory=list)
    unchanged: list = dataclasses.field(default_factory=list)
    replaced: list = dataclasses.field(default_factory=list)
    left_out: list = dataclasses.field(default_factory=list)   # (path, why)
    rows: int = 0

    def summary(self) -> str:
        """One line saying what the collection did (what ``wflp db collect`` prints)."""
        return (f"{len(self.collected)} output(s) collected ({len(self.replaced)} replacing "
                f"changed ones), {len(self.unchanged)} unchanged, {len(self.left_out)} left "
                f"out; {self.rows} rows written")


def _outputs(paths: Iterable[os.PathLike | str]) -> Iterator[Path]:
    from .records import query

    for given in paths:
        path = Path(given)
        if path.is_dir() and not query.record_file_of(path).is_file():
            yield from query.find_outputs(path)
        elif path.exists():
            yield Path(query.output_of(query.record_file_of(path)))
        else:
            raise InputError(f"{str(given)!r} does not exist; give a project folder or "
                             "output files written by wflp")


def connect(url: os.PathLike | str) -> Any:
    """ase.db.connect for a path or a URL, with a message that says what to install when
    PostgreSQL's backend is missing."""
    import ase.db

    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            raise InputError("a postgresql:// database needs ase-db-backends and psycopg2: "
                             "pip install ase-db-backends psycopg2-binary") from None
    elif not text.endswith((".db", ".json")) and "://" not in text:
        raise InputError(f"--output {text!r}: give a file ending in .db (SQLite) or a "
                         "postgresql:// URL")
    # ase's own lock is a file that a killed writer leaves behind, and every later writer
    # then waits for it for ever: SQLite's own locking (and collect's flock, which dies with
    # its process) keep writers apart instead
    return ase.db.connect(text, type="db" if text.endswith(".db") else "extract_from_name",
                          use_lock_file=False)


def collect(paths: Iterable[os.PathLike | str], db: Any,
            calc_prefix: Optional[str] = None) -> CollectReport:
    """Collect every configuration of every output under *paths* (folders or output
    files) into *db* (a path, a URL, or an open ase.db connection); see the module
    docstring for the rows' layout. Outputs without a valid record, modified or missing
    since wflp wrote them, or that are not extended-XYZ files (model folders) are left
    out, and said so in the report."""
    lock = None
    if isinstance(db, (str, os.PathLike)) and "://" not in str(db):
        from .records import OutputLock

        lock = OutputLock(Path(os.path.abspath(db)), "wait", "wflp db collect")
        lock.acquire()  # one collection into a database file at a time
    try:
        conn = connect(db) if isinstance(db, (str, os.PathLike)) else db
        return _collect(paths, conn, calc_prefix)
    finally:
        if lock is not None:
            lock.release()


def _collect(paths: Iterable[os.PathLike | str], conn: Any,
             calc_prefix: Optional[str]) -> CollectReport:
    from .records import query

    report = CollectReport()
    renamed: dict[str, str] = {}
    seen: set = set()
    for output in _outputs(paths):
        output = Path(os.path.abspath(output))
        if output in seen:
            continue
        seen.add(output)
        st = query.status(output)
        if st.record is None or st.state in ("invalid", "modified", "missing"):
            report.left_out.append((output, st.detail or st.state))
            continue
        if output.is_dir():
            report.left_out.append((output, "a model folder has no configurations"))
            continue
        entry = st.record.output_entry(output) or {}
        sha = entry.get("sha256")
        if not sha:
            report.left_out.append((output, "its record gives no sha256 for it"))
            continue
        _collect_output(conn, output, sha, st.record, calc_prefix, report, renamed)
    _update_metadata(conn, renamed)
    return report


def _collect_output(conn: Any, output: Path, sha: str, record: Any,
                    calc_prefix: Optional[str], report: CollectReport,
                    renamed: dict) -> None:
    from .io.extxyz import iter_extxyz

    path = str(output)
    same = [row.id for row in conn.select(wflp_sha256=sha, include_data=False)]
    old = [row.id for row in conn.select(wflp_output=path, include_data=False)]
    if same and set(same) <= set(old) and len(same) == len(old):
        report.unchanged.append(output)
        return
    other_paths = {row.wflp_output for row in conn.select(wflp_sha256=sha,
                                                           include_data=False)} - {path}
    if any(Path(p).is_file() for p in other_paths):
        report.left_out.append((output, "same content as " + ", ".join(sorted(other_paths))
                                + ", already collected"))
        return
    base = {"wflp_output": path, "wflp_sha256": sha, "wflp_record": record.identity_digest(),
            "wflp_operation": record.name}
    full_record = record.to_json(output.parent)
    count = 0
    with conn:  # one transaction: all of this output's rows, or none of them
        stale = sorted(set(old) | set(same))
        if stale:
            conn.delete(stale)
        for index, atoms in enumerate(iter_extxyz(output)):
            row_atoms, kvp, data = row_parts(atoms, calc_prefix, renamed)
            kvp.update(base, wflp_index=index)
            if index == 0:
                data["wflp_record"] = full_record
            # ase.db commits inside a `with db:` block every 5000 changes; keep its
            # counter low so that the output stays one transaction
            if hasattr(conn, "change_count"):
                conn.change_count = 0
            conn.write(row_atoms, key_value_pairs=kvp, data=data)
            count += 1
    report.rows += count
    report.collected.append(output)
    if old or same:
        report.replaced.append(output)


def _update_metadata(conn: Any, renamed: dict) -> None:
    meta = dict(conn.metadata or {})
    descriptions = dict(meta.get("key_descriptions") or {})
    descriptions.update({k: list(v) for k, v in WFLP_KEYS.items()})
    for key, name in renamed.items():
        descriptions.setdefault(key, [name, f"info[{name!r}] (renamed for ase.db)", ""])
    meta["key_descriptions"] = descriptions
    meta["wflp"] = {"record_in": "data['wflp_record'] of the row with wflp_index 0",
                    "renamed_info_keys": {**(meta.get("wflp") or {}).get(
                        "renamed_info_keys", {}), **renamed}}
    if meta != (conn.metadata or {}):
        conn.metadata = meta


__all__ = ["CollectReport", "WFLP_KEYS", "collect", "connect", "db_key", "info_key",
           "row_parts"]
