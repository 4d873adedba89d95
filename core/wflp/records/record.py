"""The record: what made an output, written beside it as ``<output>.record.json``.

A record has two parts. Its *identity* decides reuse: what was computed (the
operation or fitter, its declared version and code), with which parameters, from
which inputs, into which layout of output files and in which format. Its *facts*
say what happened (the output files' digests and sizes, when and where it ran, the
versions of the installed distributions and programs that did it, each input
file's digest). A rerun whose identity matches the stored one reuses the output,
saying which facts changed (``reuse="strict"`` makes facts decide too); any
difference of identity is an error naming it.

A record checks itself: ``identity_sha256`` is the digest of its identity as
written, so a record edited by hand is refused instead of trusted. Records of
older formats are migrated on read (see records.migrate).

Paths (outputs and input files) are kept absolute in memory and written relative
to the record file's folder, so a project folder can be moved without losing its
records.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Optional

from ..errors import RecordError, RecordMismatchError
from .describe import canonical_json, sha256_bytes

RECORD_SUFFIX = ".record.json"
RECORD_FORMAT = 3
REUSE_MODES = ("identity", "strict")
# the top-level fields of a record document that hold its identity (with inputs.sha256)
_IDENTITY_DOC = ("kind", "name", "version", "code", "parameters", "layout", "output", "engine")


def record_path(output: os.PathLike | str) -> Path:
    """The record sidecar of an output file."""
    p = Path(output)
    return p.with_name(p.name + RECORD_SUFFIX)


def now_iso() -> str:
    """The current UTC time in ISO 8601, to the second (records' timestamps)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def parameters_digest(params: Any) -> str:
    """The SHA-256 digest of the canonical JSON of *params*."""
    return sha256_bytes(canonical_json(params).encode())


def _abs(path: os.PathLike | str) -> str:
    return os.path.abspath(os.fspath(path))


@dataclasses.dataclass
class Record:
    """What made an output.

    Identity (compared on reuse): ``kind`` ("operation", or "fit" for a fitted model),
    ``name``, ``version``, ``code`` (how the code that computes it is described:
    its distribution and version, or its source digest), ``parameters`` (canonical,
    see records.describe), ``inputs`` (``sha256`` of the inputs' content; ``count``
    and ``files`` are facts), ``layout`` (the output files, absolute in memory, and
    how input groups map to them), ``output`` (format and write options) and
    ``engine`` (settings of the engine that change the bytes written).

    Facts: ``providers`` (distribution and version of each named thing: operation,
    calculator, executor ...), ``opaque`` (parameters described only by a pickle
    digest), ``outputs`` (file, sha256 and configuration count of each output),
    ``run`` (wflp version, start and end times, host, Python, pid), ``facts``
    (``versions`` of the installed distributions named in the identity, editable
    ``sources`` of declared code, ``programs``' versions found at run time),
    ``inputs.files`` and ``inputs.file_sha256`` (each input file and its digest,
    so lineage finds files that moved), and ``history`` (migrations, and reuses
    under other versions).
    """

    kind: str
    name: str
    version: str
    code: dict
    parameters: Any
    inputs: dict
    layout: dict
    output: dict
    engine: dict = dataclasses.field(default_factory=dict)
    providers: dict = dataclasses.field(default_factory=dict)
    opaque: list = dataclasses.field(default_factory=list)
    outputs: list = dataclasses.field(default_factory=list)
    run: dict = dataclasses.field(default_factory=dict)
    facts: dict = dataclasses.field(default_factory=dict)
    history: list = dataclasses.field(default_factory=list)
    # history entries not yet written (a migration on read): the store writes them back
    pending: list = dataclasses.field(default_factory=list, repr=False, compare=False)

    IDENTITY = ("kind", "name", "version", "code", "parameters", "inputs.sha256", "layout",
                "output", "engine")

    @classmethod
    def of_operation(cls, name: str, version: str, code: dict, parameters: Any,
                     inputs: Any, fingerprint: Any, outputs: Any, describer: Any,
                     engine: dict, providers: dict) -> Record:
        """The record of an operation from its inputs (a ConfigSet and its fingerprint) to
        its outputs (an OutputSpec): inputs, layout and output options described one way
        for every operation, so that no two can disagree on what decides reuse."""
        parameters, found = split_providers(parameters)
        providers = {**found, **providers}
        return cls(
            kind="operation", name=name, version=version, code=code, parameters=parameters,
            inputs=inputs_entry(fingerprint),
            layout={"outputs": [str(f) for f in outputs.files],
                    "split": "one file per input group" if len(outputs.files) > 1
                    else "one file"},
            output={"format": outputs.format,
                    "write_kwargs": describer.describe(outputs.write_kwargs, "write_kwargs")},
            engine=engine, providers=providers, opaque=describer.opaque,
            facts=describer.facts)

    # -- identity -----------------------------------------------------------------------
    def identity(self) -> dict:
        """The fields that decide reuse, with paths absolute."""
        return {"kind": self.kind, "name": self.name, "version": self.version,
                "code": self.code, "parameters": self.parameters,
                "inputs.sha256": self.inputs.get("sha256"),
                "layout": {**self.layout,
                           "outputs": [_abs(p) for p in self.layout.get("outputs", [])]},
                "output": self.output, "engine": self.engine}

    def identity_digest(self) -> str:
        """The digest of ``identity()``, the fields that decide reuse."""
        return sha256_bytes(canonical_json(self.identity()).encode())

    def differences(self, new: Record, strict: bool = False) -> dict[str, tuple[Any, Any]]:
        """{field path: (old, new)} for every identity field that differs (and, with
        *strict*, every fact about code: versions, editable sources, programs)."""
        old_id, new_id = self.identity(), new.identity()
        diff: dict[str, tuple[Any, Any]] = {}
        for key in self.IDENTITY:
            _diff(old_id.get(key), new_id.get(key), key, diff)
        if strict:
            for key in FACT_KINDS:
                _diff(self.facts.get(key, {}), new.facts.get(key, {}), f"facts.{key}", diff)
        return diff

    def fact_changes(self, new: Record) -> list[str]:
        """What differs in the facts about code, in words ("ase 3.29.0 -> 3.30.0")."""
        out = []
        for key in FACT_KINDS:
            old, now = self.facts.get(key) or {}, new.facts.get(key) or {}
            for name in sorted(set(old) | set(now)):
                if old.get(name, "<absent>") == now.get(name, "<absent>"):
                    continue
                if key == "versions":
                    out.append(f"{name} {old.get(name, '(not used)')} -> "
                               f"{now.get(name, '(not used)')}")
                elif key == "sources":
                    out.append(f"the source of {name} (editable) changed")
                else:
                    out.append(f"{name}: {_short(old.get(name))} -> {_short(now.get(name))}")
        return out

    # -- facts --------------------------------------------------------------------------
    def output_entry(self, path: os.PathLike | str) -> Optional[dict]:
        """The ``outputs`` entry of the file at *path* (compared as absolute paths)."""
        target = _abs(path)
        for entry in self.outputs:
            if _abs(entry["file"]) == target:
                return entry
        return None

    # -- JSON ---------------------------------------------------------------------------
    def to_json(self, folder: os.PathLike | str) -> dict:
        """The JSON document, with paths relative to *folder* (the record's)."""
        def rel(p: str) -> str:
            return os.path.relpath(_abs(p), _abs(folder))

        data = dataclasses.asdict(self)
        data.pop("pending")
        data["layout"] = {**self.layout, "outputs": [rel(p) for p in
                                                     self.layout.get("outputs", [])]}
        data["outputs"] = [{**o, "file": rel(o["file"])} for o in self.outputs]
        inputs = dict(self.inputs)
        inputs.pop("files_as_given", None)  # resolved on read: "files" says where they are
        if "files" in inputs:
            inputs["files"] = [rel(p) for p in inputs["files"]]
        if "file_sha256" in inputs:
            inputs["file_sha256"] = [{**e, "file": rel(e["file"])}
                                     for e in inputs["file_sha256"]]
        data["inputs"] = inputs
        data["record_format"] = RECORD_FORMAT
        data["identity_sha256"] = _identity_checksum(data)
        return data

    @classmethod
    def from_json(cls, data: Any, folder: os.PathLike | str, source: str) -> Record:
        """Read a record document (migrating older formats); RecordError naming *source*
        if it is not one, or if it was edited after wflp wrote it."""
        from .migrate import OLDEST_READABLE, upgrade

        if not isinstance(data, dict) or "record_format" not in data:
            raise RecordError(
                f"{source} is not a wflp record (no record_format field); it was not written "
                "by wflp or was damaged: delete it together with its output, or pass "
                "overwrite=True to recompute")
        fmt = data.get("record_format")
        if isinstance(fmt, bool) or not isinstance(fmt, int):
            raise RecordError(
                f"{source} has record_format {fmt!r} ({type(fmt).__name__}), not a whole "
                "number: the record was edited or damaged; delete it together with its "
                "output, or pass overwrite=True to recompute")
        if fmt > RECORD_FORMAT:
            raise RecordMismatchError(
                f"{source} was written by a newer wflp (record format {fmt}; this wflp reads "
                f"formats {OLDEST_READABLE} to {RECORD_FORMAT}): upgrade wflp to use it, or "
                "pass overwrite=True (OutputSpec(..., overwrite=True)) to recompute it with "
                "this one",
                differences={"record_format": (fmt, RECORD_FORMAT)})
        if fmt < OLDEST_READABLE:
            raise RecordMismatchError(
                f"{source} has record format {fmt}, written only by development snapshots of "
                "wflp before its first release, which no migration reads; pass "
                "overwrite=True (OutputSpec(..., overwrite=True)) to recompute it",
                differences={"record_format": (fmt, RECORD_FORMAT)})
        for key in ("kind", "name", "version", "code", "parameters", "inputs", "layout",
                    "output"):
            if key not in data:
                raise RecordError(f"{source} is not a wflp record (its field {key!r} is "
                                  "missing); delete it together with its output, or pass "
                                  "overwrite=True to recompute")
        for key in ("code", "inputs", "layout", "output", "engine", "providers", "run",
                    "facts"):
            if key in data and not isinstance(data[key], dict):
                raise RecordError(
                    f"{source} is not a wflp record (its field {key!r} should be a mapping, "
                    f"not {type(data[key]).__name__}); delete it together with its output, "
                    "or pass overwrite=True to recompute")
        for key in ("outputs", "history", "opaque"):
            if key in data and not isinstance(data[key], list):
                raise RecordError(
                    f"{source} is not a wflp record (its field {key!r} should be a list, "
                    f"not {type(data[key]).__name__}); delete it together with its output, "
                    "or pass overwrite=True to recompute")
        _check_checksum(data, fmt, source)
        pending: list = []
        if fmt < RECORD_FORMAT:
            data, pending = upgrade(data, RECORD_FORMAT, source)
        fields = {f.name for f in dataclasses.fields(cls)} - {"pending"}
        try:
            record = cls(**{k: data[k] for k in fields if k in data})
            base = _abs(folder)

            def absolute(p: str) -> str:
                return os.path.normpath(os.path.join(base, p))

            record.layout = {**record.layout, "outputs": [
                absolute(p) for p in record.layout["outputs"]]}
            record.outputs = [{**o, "file": absolute(o["file"])} for o in record.outputs]
            inputs = dict(record.inputs)
            if isinstance(inputs.get("files_as_given"), list):
                inputs["files"] = [_find_given(p, Path(base)) for p in inputs["files_as_given"]]
            elif isinstance(inputs.get("files"), list):
                inputs["files"] = [absolute(p) for p in inputs["files"]]
            if isinstance(inputs.get("file_sha256"), list):
                inputs["file_sha256"] = [{**e, "file": absolute(e["file"])}
                                         for e in inputs["file_sha256"]]
            record.inputs = inputs
        except (TypeError, KeyError, AttributeError) as err:
            raise RecordError(
                f"{source} is not a wflp record (an entry of its {err} field is missing or "
                "of the wrong kind); delete it together with its output, or pass "
                "overwrite=True to recompute") from None
        record.pending = pending
        return record


FACT_KINDS = ("versions", "sources", "programs")


def _find_given(name: str, folder: Path) -> str:
    """An input path of a format-2 record (as given, relative to the folder its run started
    in, which the record does not name): the first that exists from the record's folder
    upwards, else relative to the record's folder."""
    if os.path.isabs(name):
        return os.path.normpath(name)
    for base in [folder, *folder.parents][:4]:
        if (base / name).exists():
            return os.path.normpath(base / name)
    return os.path.normpath(folder / name)


def split_providers(parameters: Any) -> tuple[Any, dict]:
    """Parameters without the ``provider`` of each described one (a calculator's
    distribution and version: a fact), and those providers by parameter name."""
    if not isinstance(parameters, dict):
        return parameters, {}
    out, providers = {}, {}
    for key, value in parameters.items():
        if isinstance(value, dict) and isinstance(value.get("provider"), dict):
            providers[key] = value["provider"]
            value = {k: v for k, v in value.items() if k != "provider"}
        out[key] = value
    return out, providers


def inputs_entry(fingerprint: Any) -> dict:
    """A record's ``inputs``: the content digest (identity), the count, and each input
    file with its digest (facts: lineage follows them, even to files that moved)."""
    entry = {"sha256": fingerprint.hexdigest(), "count": fingerprint.count,
             "files": [str(f) for f in fingerprint.file_paths()],
             "file_sha256": [{"file": str(f), "absolute": os.path.abspath(f), "sha256": d}
                             for f, d in fingerprint.digests()]}
    if getattr(fingerprint, "plain_items", None) and not entry["files"]:
        entry["items"] = list(fingerprint.plain_items)  # plain values given in memory
    return entry


def _identity_checksum(data: dict) -> str:
    """The digest of a record document's identity, as written (paths relative)."""
    raw = data.get("inputs")
    inputs: dict = raw if isinstance(raw, dict) else {}
    doc = {key: data.get(key) for key in _IDENTITY_DOC}
    doc["inputs.sha256"] = inputs.get("sha256")
    return sha256_bytes(canonical_json(doc).encode())


def _check_checksum(data: dict, fmt: int, source: str) -> None:
    """A record edited by hand is refused rather than trusted."""
    if fmt >= 3:
        stored, actual = data.get("identity_sha256"), _identity_checksum(data)
        what = "identity"
    else:
        stored, actual = data.get("parameters_sha256"), parameters_digest(data.get("parameters"))
        what = "parameters"
    if stored != actual:
        raise RecordError(
            f"{source} was changed after wflp wrote it (its {what} no longer matches the "
            f"checksum {what}_sha256 written with it), so it cannot be trusted; delete it "
            "together with its output, or pass overwrite=True to recompute")


def _diff(old: Any, new: Any, path: str, out: dict) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _diff(old.get(key, "<absent>"), new.get(key, "<absent>"), f"{path}.{key}", out)
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            _diff(a, b, f"{path}[{i}]", out)
        return
    if old != new:
        out[path] = (old, new)


# -- files -------------------------------------------------------------------------------

def write_json(path: Path, data: Any) -> None:
    """Write JSON to *path* and fsync it."""
    with open(path, "w") as fd:
        json.dump(data, fd, indent=2, sort_keys=True)
        fd.write("\n")
        fd.flush()
        os.fsync(fd.fileno())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON under a temporary name, fsync, then rename into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write_json(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path: Path) -> Any:
    """The JSON document at *path*, None if missing; RecordError if unreadable."""
    try:
        with open(path) as fd:
            return json.load(fd)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise RecordError(f"{str(path)!r} is a directory where wflp keeps a record file; "
                          "move it away") from None
    except (OSError, ValueError) as err:
        raise RecordError(
            f"the record {str(path)!r} cannot be read ({err}); delete it together with its "
            "output, or pass overwrite=True to recompute") from None


def read_record(path: os.PathLike | str) -> Optional[Record]:
    """The record stored at *path* (a ``.record.json`` file), None if there is none."""
    path = Path(path)
    data = read_json(path)
    if data is None:
        return None
    return Record.from_json(data, path.parent, repr(str(path)))


def mismatch_error(where: str, diff: dict, outputs: list) -> RecordMismatchError:
    """The error for an output made by a different computation: what differs (*diff*:
    {field: (old, new)}) and how to recompute it."""
    shown = "; ".join(f"{k}: {_short(old)} -> {_short(new)}" for k, (old, new) in diff.items())
    names = ", ".join(str(o) for o in outputs)
    return RecordMismatchError(
        f"{where} {names} was made by a different computation ({shown}); to recompute "
        "and replace it pass overwrite=True (OutputSpec(..., overwrite=True)), or "
        "write to another output name",
        differences=diff,
    )


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["FACT_KINDS", "RECORD_FORMAT", "RECORD_SUFFIX", "REUSE_MODES", "Record",
           "inputs_entry", "mismatch_error", "now_iso", "parameters_digest", "read_json",
           "read_record", "record_path", "split_providers", "write_json", "write_json_atomic"]
