"""Questions asked of records: is this output still what its record says, which records of a
project need attention, and what made this output (its lineage).

Every query on provenance (``wflp records show/check/migrate``, ``wflp lineage``, and
whatever collects records into a database or serves them) reads records through this
module, so none parses record JSON by hand.

An *output* is a file with a ``<file>.record.json`` beside it, or a fitted model's folder
with its ``record.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from ..errors import InputError, RecordError, RecordMismatchError
from .fingerprint import sha256_file
from .provenance import distribution_version
from .record import (
    RECORD_FORMAT,
    RECORD_SUFFIX,
    Record,
    read_json,
    record_path,
)

MODEL_RECORD = "record.json"  # a fitted model's record, inside its folder


# -- finding and reading ----------------------------------------------------------------------

def record_file_of(output: os.PathLike | str) -> Path:
    """The record file of an output (a file, or a model folder)."""
    path = Path(output)
    if path.name.endswith(RECORD_SUFFIX):
        return path
    if path.is_dir():
        return path / MODEL_RECORD
    return record_path(path)


def output_of(record_file: Path) -> Path:
    """The output a record file describes."""
    if record_file.name == MODEL_RECORD:
        return record_file.parent
    return record_file.with_name(record_file.name[: -len(RECORD_SUFFIX)])


def load(output: os.PathLike | str) -> tuple[Optional[Record], Optional[str], int]:
    """(record or None, why it could not be read or None, its stored format or 0)."""
    rec_file = record_file_of(output)
    try:
        data = read_json(rec_file)
    except RecordError as err:
        return None, str(err), 0
    if data is None:
        return None, None, 0
    fmt = data.get("record_format") if isinstance(data, dict) else None
    try:
        record = Record.from_json(data, rec_file.parent, repr(str(rec_file)))
    except (RecordError, RecordMismatchError) as err:  # damaged, edited, or another format
        return None, str(err), fmt if isinstance(fmt, int) else 0
    return record, None, fmt if isinstance(fmt, int) else 0


def find_outputs(folder: os.PathLike | str) -> Iterator[Path]:
    """Every output under *folder* that has a record (files and model folders), sorted;
    hidden folders (stages, run directories) are skipped."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{str(root)!r} is not a folder; give the folder of a project")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        for name in filenames:
            if name.endswith(RECORD_SUFFIX) and not name.startswith("."):
                found.append(here / name[: -len(RECORD_SUFFIX)])
            elif name == MODEL_RECORD and _is_model_record(here / name):
                found.append(here)
    return iter(sorted(set(found)))


def _is_model_record(path: Path) -> bool:
    try:
        data = read_json(path)
    except RecordError:
        return False
    return isinstance(data, dict) and "model" in data and "record_format" in data


# -- the state of one output -----------------------------------------------------------------

@dataclasses.dataclass
class OutputStatus:
    """What ``wflp records check`` says of one output.

    state: "ok", "modified" (its files no longer match the record), "missing" (a
    file the record names is gone), "invalid" (no record, or one that cannot be
    read or was edited by hand), or "inputs-changed" (an input file's content
    differs from what the record says it was made from).
    other_versions: "ase 3.29.0 -> 3.30.0" for each installed distribution whose
    version differs from the one that made it (reused all the same, unless strict).
    old_format: the record's format when older than this wflp's (migrated on read).
    """

    output: Path
    state: str
    detail: str = ""
    record: Optional[Record] = None
    other_versions: list = dataclasses.field(default_factory=list)
    old_format: Optional[int] = None

    @property
    def problem(self) -> bool:
        """True unless the output is ``ok``."""
        return self.state != "ok"


def status(output: os.PathLike | str) -> OutputStatus:
    """Check one output against its record (see :class:`OutputStatus`)."""
    output = Path(os.path.abspath(output))
    record, why, fmt = load(output)
    if record is None:
        return OutputStatus(output, "invalid", why or "it has no wflp record")
    st = OutputStatus(output, "ok", record=record,
                      old_format=fmt if fmt and fmt < RECORD_FORMAT else None)
    st.other_versions = version_changes(record)
    for entry in record.outputs:
        path = Path(entry["file"])
        if not path.is_file():
            st.state, st.detail = "missing", f"{path} is missing"
            return st
        if entry.get("sha256") != sha256_file(path):
            st.state, st.detail = "modified", f"{path} was modified after wflp wrote it"
            return st
    for entry in record.inputs.get("file_sha256") or []:
        path = Path(entry["file"])
        if path.is_file() and sha256_file(path) != entry.get("sha256"):
            st.state = "inputs-changed"
            st.detail = (f"its input {path} changed since it was used: a rerun is refused "
                         "(RecordMismatchError) unless overwrite=True")
            return st
    return st


def version_changes(record: Record) -> list[str]:
    """'name old -> new' for each distribution the record names whose installed version
    differs now (or that is no longer installed)."""
    out = []
    for name, old in sorted((record.facts.get("versions") or {}).items()):
        now = distribution_version(name)
        if now != old:
            out.append(f"{name} {old} -> {now or '(not installed)'}")
    return out


def check(folder: os.PathLike | str) -> list[OutputStatus]:
    """The status of every output under *folder*."""
    return [status(p) for p in find_outputs(folder)]


# -- migration --------------------------------------------------------------------------------

def pending_migrations(folder: os.PathLike | str) -> list[tuple[Path, Record]]:
    """Outputs whose records are of an older format (read, hence migrated, in memory)."""
    out = []
    for output in find_outputs(folder):
        record, _why, fmt = load(output)
        if record is not None and fmt < RECORD_FORMAT:
            out.append((output, record))
    return out


def write_migrated(output: Path, record: Record) -> None:
    """Write a record migrated in memory back to its file, holding the output's lock."""
    from .store import OutputLock, append_history

    rec_file = record_file_of(output)
    lock = OutputLock(output, "wait", "wflp records migrate")
    lock.acquire()
    try:
        extra = {}
        if rec_file.name == MODEL_RECORD:
            extra = {"model": (read_json(rec_file) or {}).get("model")}
        append_history(record, rec_file, record.pending, extra)
    finally:
        lock.release()


# -- lineage ----------------------------------------------------------------------------------

@dataclasses.dataclass
class Step:
    """One node of a lineage: an output with its record, or a source without one."""

    id: str
    path: Optional[Path]
    record: Optional[Record] = None
    state: str = "ok"          # ok, source (no record), missing, changed, invalid
    detail: str = ""
    depth: int = 0

    def summary(self) -> dict:
        """The node as plain data (JSON, the text view and DOT labels)."""
        node: dict[str, Any] = {"id": self.id, "path": str(self.path) if self.path else None,
                                "state": self.state}
        if self.detail:
            node["detail"] = self.detail
        rec = self.record
        if rec is not None:
            node.update({
                "kind": rec.kind, "operation": rec.name, "version": rec.version,
                "parameters": rec.parameters, "code": rec.code, "providers": rec.providers,
                "versions": rec.facts.get("versions", {}),
                "programs": rec.facts.get("programs", {}),
                "inputs_sha256": rec.inputs.get("sha256"),
                "configs": sum(int(o.get("configs") or 0) for o in rec.outputs) or None,
                "started": rec.run.get("started"), "finished": rec.run.get("finished"),
                "host": rec.run.get("host"),
                "identity_sha256": rec.identity_digest()})
        return node


@dataclasses.dataclass
class Lineage:
    """A lineage graph: steps by id and edges (input id, output id, changed since used)."""

    root: str
    steps: dict = dataclasses.field(default_factory=dict)
    edges: list = dataclasses.field(default_factory=list)
    direction: str = "ancestors"   # or "descendants"

    def node_link(self) -> dict:
        """networkx's node-link form (``networkx.node_link_graph(data, edges="links")``)."""
        return {"directed": True, "multigraph": False,
                "graph": {"root": self.root, "direction": self.direction},
                "nodes": [s.summary() for s in self.steps.values()],
                "links": [{"source": a, "target": b, "changed": changed}
                          for a, b, changed in self.edges]}

    def dot(self) -> str:
        """Graphviz DOT text (no graphviz needed to write it)."""
        lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];"]
        for step in self.steps.values():
            label = _label(step)
            lines.append(f"  {_dot_id(step.id)} [label={_dot_id(label)}];")
        for a, b, changed in self.edges:
            style = ' [style=dashed, label="changed since used"]' if changed else ""
            lines.append(f"  {_dot_id(a)} -> {_dot_id(b)}{style};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def text(self, grep: Optional[str] = None) -> str:
        """An indented tree from the root, one block per step (with *grep*, only the steps
        and lines that match the regular expression, with the header of their step)."""
        pattern = re.compile(grep) if grep else None
        parents: dict[str, list] = {}
        for a, b, changed in self.edges:
            parents.setdefault(b, []).append((a, changed))
        children: dict[str, list] = {}
        for a, b, changed in self.edges:
            children.setdefault(a, []).append((b, changed))
        links = parents if self.direction == "ancestors" else children
        arrow = "<-" if links is parents else "->"
        out: list[str] = []
        seen: set = set()

        def visit(node_id: str, indent: int, changed: bool) -> None:
            step = self.steps[node_id]
            block = _describe_step(step, changed)
            if node_id in seen:
                block = [block[0] + "  (shown above)"]
            pad = "  " * indent
            head = (f"{arrow} " if indent else "") + block[0]
            if pattern is None:
                out.append(pad + head)
                out.extend(pad + "     " + line for line in block[1:])
            else:
                hits = [line for line in block if pattern.search(line)]
                if hits:
                    out.append(pad + head)
                    out.extend(pad + "     " + line for line in hits if line != block[0])
            if node_id in seen:
                return
            seen.add(node_id)
            for other, was_changed in sorted(links.get(node_id, []), key=lambda x: x[0]):
                visit(other, indent + 1, was_changed)

        visit(self.root, 0, False)
        return "\n".join(out) + ("\n" if out else "")


def _describe_step(step: Step, changed: bool) -> list[str]:
    name = _shown(step.path) if step.path else step.id
    rec = step.record
    if rec is None:
        what = {"source": "source (no wflp record)", "missing": "MISSING",
                "invalid": "record unreadable"}.get(step.state, step.state)
        lines = [f"{name}  [{what}]" + ("  CHANGED SINCE USED" if changed else "")]
        if step.detail:
            lines.append(step.detail)
        return lines
    label = f"{rec.kind} {rec.name} v{rec.version}"
    count = sum(int(o.get("configs") or 0) for o in rec.outputs)
    counted = f", {count} configs" if count else ""
    when = rec.run.get("finished") or rec.run.get("started") or "?"
    head = f"{name}  [{label}{counted}; {when} on {rec.run.get('host', '?')}]"
    if changed:
        head += "  CHANGED SINCE USED"
    if step.state not in ("ok",):
        head += f"  {step.state.upper()}"
    lines = [head]
    for key, value in sorted((rec.parameters or {}).items()):
        lines.append(f"{key} = {json.dumps(value, sort_keys=True)}")
    versions = rec.facts.get("versions") or {}
    if versions:
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    programs = rec.facts.get("programs") or {}
    for where, value in sorted(programs.items()):
        lines.append(f"program ({where}): {json.dumps(value, sort_keys=True)}")
    providers = rec.providers or {}
    shown = []
    for key, prov in sorted(providers.items()):
        if isinstance(prov, dict) and prov.get("distribution"):
            shown.append(f"{key}: {prov['distribution']} {prov.get('version') or ''}".strip())
    if shown:
        lines.append("providers: " + ", ".join(shown))
    if step.detail:
        lines.append(step.detail)
    return lines


def _label(step: Step) -> str:
    name = _shown(step.path) if step.path else step.id
    if step.record is None:
        return f"{name}\n({step.state})"
    return f"{name}\n{step.record.kind} {step.record.name} v{step.record.version}"


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shown(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive
        return str(path)
    return rel if not rel.startswith("..") else str(path)


class ProjectIndex:
    """The outputs of a project folder by their files' digests (from their records, so no
    file is read twice), and which outputs used which input files."""

    def __init__(self, folder: os.PathLike | str):
        self.folder = Path(os.path.abspath(folder))
        self.by_sha: dict[str, Path] = {}
        self.users: dict[str, list[Path]] = {}     # input path or sha -> outputs using it
        for output in find_outputs(self.folder):
            record, _why, _fmt = load(output)
            if record is None:
                continue
            for entry in record.outputs:
                if entry.get("sha256"):
                    self.by_sha.setdefault(entry["sha256"], output)
            for entry in record.inputs.get("file_sha256") or []:
                self.users.setdefault(entry["sha256"], []).append(output)
            for f in record.inputs.get("files") or []:
                self.users.setdefault(os.path.abspath(f), []).append(output)

    def find(self, sha: str, name: str) -> Optional[Path]:
        """A file of the project with this content: an output (by its record), else a file
        of the same name (sources have no record to say where they went)."""
        if sha in self.by_sha:
            return self.by_sha[sha]
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if name in filenames and sha256_file(Path(dirpath) / name) == sha:
                return Path(dirpath) / name
        return None


def _node_id(path: Path) -> str:
    return str(path)


def lineage(path: os.PathLike | str, depth: Optional[int] = None,
            project: os.PathLike | str | None = None) -> Lineage:
    """Walk from an output back through its inputs' records to the sources.

    Each input file is found where the record says it was, or, if it moved or was renamed
    within *project* (default: the current folder), by its recorded sha256. Steps whose
    input changed since it was used are marked, as are inputs without a record (sources)
    and inputs that cannot be found.
    """
    target = Path(os.path.abspath(path))
    if not target.exists() and not record_file_of(target).exists():
        raise InputError(f"{str(path)!r} does not exist; give an output file or a model "
                         "folder that wflp wrote")
    index: Optional[ProjectIndex] = None
    graph = Lineage(_node_id(target))
    todo = [(target, 0)]
    while todo:
        output, level = todo.pop(0)
        node = _node_id(output)
        if node in graph.steps:
            continue
        record, why, _fmt = load(output)
        if record is None:
            state = "invalid" if why else ("source" if output.exists() else "missing")
            graph.steps[node] = Step(node, output, None, state, why or "", level)
            continue
        step = Step(node, output, record, "ok", "", level)
        graph.steps[node] = step
        if depth is not None and level >= depth:
            continue
        entries = record.inputs.get("file_sha256") or [
            {"file": f, "sha256": None} for f in record.inputs.get("files") or []]
        if not entries:
            mem = f"in memory:{record.inputs.get('sha256', '?')[:12]}"
            items = record.inputs.get("items")
            detail = (f"{len(items)} values given in memory: " + ", ".join(map(str, items))
                      if items else f"{record.inputs.get('count')} configurations given in "
                      "memory")
            graph.steps.setdefault(mem, Step(mem, None, None, "source", detail, level + 1))
            graph.edges.append((mem, node, False))
        for entry in entries:
            where = Path(entry["file"])
            sha = entry.get("sha256")
            if not where.exists() and entry.get("absolute") and \
                    Path(entry["absolute"]).exists():
                where = Path(entry["absolute"])  # the output moved, its input did not
            changed = False
            if where.is_file() and sha and sha256_file(where) == sha:
                pass
            elif sha:
                if index is None:
                    index = ProjectIndex(project or os.getcwd())
                moved = index.find(sha, where.name)
                if moved is not None:
                    where = moved
                else:
                    changed = where.is_file()
            graph.edges.append((_node_id(where), node, changed))
            todo.append((where, level + 1))
    return graph


def descendants(path: os.PathLike | str, project: os.PathLike | str | None = None,
                depth: Optional[int] = None) -> Lineage:
    """The other direction: every output of *project* (default: the current folder) made
    from *path*, directly or through other outputs."""
    target = Path(os.path.abspath(path))
    if not target.exists():
        raise InputError(f"{str(path)!r} does not exist; give a file of the project")
    index = ProjectIndex(project or os.getcwd())
    graph = Lineage(_node_id(target), direction="descendants")
    todo = [(target, 0)]
    while todo:
        current, level = todo.pop(0)
        node = _node_id(current)
        if node in graph.steps:
            continue
        record, why, _fmt = load(current)
        graph.steps[node] = Step(node, current, record,
                                 "ok" if record is not None else "source", why or "", level)
        if depth is not None and level >= depth:
            continue
        keys = [str(current)]
        if current.is_file():
            keys.append(sha256_file(current))
        users: list[Path] = []
        for key in keys:
            users.extend(index.users.get(key, []))
        for user in sorted(set(users)):
            if _node_id(user) == node:
                continue
            graph.edges.append((node, _node_id(user), False))
            todo.append((user, level + 1))
    return graph


__all__ = ["MODEL_RECORD", "Lineage", "OutputStatus", "ProjectIndex", "Step", "check",
           "descendants", "find_outputs", "lineage", "load", "output_of", "pending_migrations",
           "record_file_of", "status", "version_changes", "write_migrated"]
