"""The record: what made an output, written beside it as ``<output>.record.json``.

A record has two parts. Its *identity* decides reuse: what was computed (the
operation or fitter, its version and code), with which parameters, from which
inputs, into which layout of output files and in which format. Its *facts* say
what happened (the output files' digests and sizes, when and where it ran, the
distributions that provided each named thing). A rerun whose identity matches
the stored one reuses the output; any difference is an error naming it.

Output paths are kept absolute in memory and written relative to the record
file's folder, so a project folder can be moved without losing its records.
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
RECORD_FORMAT = 2


def record_path(output: os.PathLike | str) -> Path:
    """The record sidecar of an output file."""
    p = Path(output)
    return p.with_name(p.name + RECORD_SUFFIX)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def parameters_digest(params: Any) -> str:
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
    ``run`` (wflp version, start and end times, host, Python, pid).
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

    IDENTITY = ("kind", "name", "version", "code", "parameters", "inputs.sha256", "layout",
                "output", "engine")

    @classmethod
    def of_operation(cls, name: str, version: str, code: dict, parameters: Any,
                     inputs: Any, fingerprint: Any, outputs: Any, describer: Any,
                     engine: dict, providers: dict) -> Record:
        """The record of an operation from its inputs (a ConfigSet and its fingerprint) to
        its outputs (an OutputSpec): inputs, layout and output options described one way
        for every operation, so that no two can disagree on what decides reuse."""
        return cls(
            kind="operation", name=name, version=version, code=code, parameters=parameters,
            inputs={"sha256": fingerprint.hexdigest(), "count": fingerprint.count,
                    "files": [str(f) for f in inputs.files]},
            layout={"outputs": [str(f) for f in outputs.files],
                    "split": "one file per input group" if len(outputs.files) > 1
                    else "one file"},
            output={"format": outputs.format,
                    "write_kwargs": describer.describe(outputs.write_kwargs, "write_kwargs")},
            engine=engine, providers=providers, opaque=describer.opaque)

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
        return sha256_bytes(canonical_json(self.identity()).encode())

    def differences(self, new: Record) -> dict[str, tuple[Any, Any]]:
        """{field path: (old, new)} for every identity field that differs."""
        old_id, new_id = self.identity(), new.identity()
        diff: dict[str, tuple[Any, Any]] = {}
        for key in self.IDENTITY:
            _diff(old_id.get(key), new_id.get(key), key, diff)
        return diff

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
        """The JSON document, with output paths relative to *folder* (the record's)."""
        def rel(p: str) -> str:
            return os.path.relpath(_abs(p), _abs(folder))

        data = dataclasses.asdict(self)
        data["layout"] = {**self.layout, "outputs": [rel(p) for p in
                                                     self.layout.get("outputs", [])]}
        data["outputs"] = [{**o, "file": rel(o["file"])} for o in self.outputs]
        data["parameters_sha256"] = parameters_digest(self.parameters)
        data["record_format"] = RECORD_FORMAT
        return data

    @classmethod
    def from_json(cls, data: Any, folder: os.PathLike | str, source: str) -> Record:
        """Read a record document; RecordError naming *source* if it is not one."""
        if not isinstance(data, dict) or "record_format" not in data:
            raise RecordError(
                f"{source} is not a wflp record (no record_format field); it was not written "
                "by wflp or was damaged: delete it together with its output, or pass "
                "overwrite=True to recompute")
        if data.get("record_format") != RECORD_FORMAT:
            raise RecordMismatchError(
                f"{source} was written by another version of wflp (record format "
                f"{data.get('record_format')!r}, this wflp writes {RECORD_FORMAT}); pass "
                "overwrite=True (OutputSpec(..., overwrite=True)) to recompute, or write to "
                "another output name",
                differences={"record_format": (data.get("record_format"), RECORD_FORMAT)})
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            values = {k: data[k] for k in fields if k in data}
            record = cls(**values)
            base = _abs(folder)
            record.layout = {**record.layout, "outputs": [
                os.path.normpath(os.path.join(base, p)) for p in record.layout["outputs"]]}
            record.outputs = [{**o, "file": os.path.normpath(os.path.join(base, o["file"]))}
                              for o in record.outputs]
            for key in ("code", "inputs", "layout", "output", "engine", "providers", "run"):
                if not isinstance(getattr(record, key), dict):
                    raise TypeError(key)
        except (TypeError, KeyError, AttributeError) as err:
            raise RecordError(
                f"{source} is not a wflp record (field {err} is missing or of the wrong "
                "kind); delete it together with its output, or pass overwrite=True to "
                "recompute") from None
        return record


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


__all__ = ["RECORD_FORMAT", "RECORD_SUFFIX", "Record", "mismatch_error", "now_iso",
           "parameters_digest", "read_json", "read_record", "record_path", "write_json",
           "write_json_atomic"]
