"""Record migrations: every record format wflp ever wrote stays readable.

A record format moves forward only through small, pure functions, each taking the
JSON document of format N to format N+1 and saying what it changed. Reading an old
record runs the chain in memory; the output store writes the migrated record back
(with a history entry) when a rerun reuses its output, and ``wflp records migrate
--apply`` does so for a whole folder. The fixtures in tests/fixtures/records_v<N>/ are
real outputs written by each format, and the tests migrate them.

Format 2 (wflp up to 0.1.0, commit 1588988) to 3:

- versions of installed distributions leave the identity: every
  ``{"distribution": D, "version": V}`` description of code (operation, calculator,
  functions) loses ``version``, which goes to ``facts.versions`` (a rerun under ASE
  3.30 reuses what ASE 3.29 made, and says so);
- code whose author declares a version (the operation, a fitter, a registered
  calculator's factory) loses its editable-source digest, which goes to
  ``facts.sources``, and its ``editable`` flag;
- a calculator parameter's ``provider`` (a copy of ``providers[...]``) leaves the
  parameters;
- a file-based calculator's program version (``provenance.version``) and a fitter's
  program versions (``code.provenance``) become ``facts.programs``;
- a fitted model's version, which was its plugin's distribution version, becomes
  the fitter's declared result version, "1";
- input paths, which format 2 kept as given (relative to the folder the run started in),
  are kept as ``inputs.files_as_given``, so lineage can look for them;
- ``facts``, ``history`` and the identity checksum ``identity_sha256`` are added.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from ..errors import RecordError

Migration = Callable[[dict], tuple[dict, str]]


def _strip_versions(node: Any, versions: dict) -> Any:
    """Descriptions without the versions of installed code (collected in *versions*)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "version" and isinstance(node.get("distribution"), str) \
                    and ("callable" in node or "calculator" in node or "module" in node):
                versions[node["distribution"]] = value
                continue
            out[key] = _strip_versions(value, versions)
        return out
    if isinstance(node, list):
        return [_strip_versions(v, versions) for v in node]
    return node


def _declared(code: dict, sources: dict) -> dict:
    """Declared code: its editable-source digest becomes a fact."""
    code = dict(code)
    if code.pop("editable", None) and "source_sha256" in code:
        sources[code.get("callable", "?")] = code.pop("source_sha256")
    return code


def _file_calculator_programs(node: Any, programs: dict, where: str) -> Any:
    """A file-based calculator's program version (found at run time) becomes a fact."""
    if isinstance(node, dict):
        prov = node.get("provenance")
        if isinstance(prov, dict) and {"code", "command", "version"} <= set(prov):
            prov = dict(prov)
            version = prov.pop("version")
            if version is not None:
                programs[f"{where}.provenance"] = {"program_version": version}
            node = {**node, "provenance": prov}
        return {k: _file_calculator_programs(v, programs, f"{where}.{k}")
                for k, v in node.items()}
    if isinstance(node, list):
        return [_file_calculator_programs(v, programs, f"{where}[{i}]")
                for i, v in enumerate(node)]
    return node


def migrate_2_to_3(data: dict) -> tuple[dict, str]:
    """Format 2 -> 3 (see the module docstring)."""
    data = copy.deepcopy(data)
    versions: dict = {}
    sources: dict = {}
    programs: dict = {}
    changes = []
    raw = data.get("code")
    code: dict = raw if isinstance(raw, dict) else {}
    if data.get("kind") == "fit" and isinstance(code.get("provenance"), dict):
        programs["fitter.provenance"] = code.pop("provenance")
        changes.append("the fitter's program versions became facts")
    data["code"] = _declared(_strip_versions(code, versions), sources)
    params = data.get("parameters")
    if isinstance(params, dict):
        params = {k: ({kk: vv for kk, vv in v.items() if kk != "provider"}
                      if isinstance(v, dict) else v) for k, v in params.items()}
        for value in params.values():
            if isinstance(value, dict) and "registered" in value \
                    and isinstance(value.get("factory"), dict):
                value["factory"] = _declared(value["factory"], sources)
        params = _file_calculator_programs(params, programs, "parameters")
    data["parameters"] = _strip_versions(params, versions)
    for key in ("engine", "output"):
        if key in data:
            data[key] = _strip_versions(data[key], versions)
    if versions:
        changes.append("versions of " + ", ".join(sorted(versions)) + " became facts")
    if sources:
        changes.append("source digests of declared code became facts")
    if data.get("kind") == "fit":
        old = data.get("version")
        if old != "1":
            fitter = (data.get("providers") or {}).get("fitter") or {}
            if fitter.get("distribution"):
                versions.setdefault(fitter["distribution"], old)
            data["version"] = "1"
            changes.append(f"the model's version {old!r} (its plugin's version) became the "
                           "fitter's result version '1'")
    inputs = data.get("inputs")
    if isinstance(inputs, dict) and isinstance(inputs.get("files"), list):
        # format 2 kept input paths as given, relative to the folder the run started in,
        # which the record does not say: lineage looks for them from the record's folder up
        data["inputs"] = {**inputs, "files_as_given": list(inputs["files"])}
    data["facts"] = {"versions": versions, "sources": sources, "programs": programs}
    data.setdefault("history", [])
    data.pop("parameters_sha256", None)
    data["record_format"] = 3
    return data, "; ".join(changes) or "no change to the identity"


# format N -> the function that takes a record of format N to N+1
MIGRATIONS: dict[int, Migration] = {2: migrate_2_to_3}
OLDEST_READABLE = min(MIGRATIONS)


def upgrade(data: dict, target: int, source: str) -> tuple[dict, list[dict]]:
    """The record *data* migrated to format *target*, and one history entry per step.

    The entries have no time: the caller adds it when the migrated record is written.
    """
    steps = []
    fmt = data["record_format"]
    while fmt < target:
        step = MIGRATIONS.get(fmt)
        if step is None:  # pragma: no cover - every format ever written has a migration
            raise RecordError(f"{source} has record format {fmt}, which this wflp cannot "
                              "migrate; recompute it (overwrite=True)")
        data, what = step(data)
        steps.append({"event": "migrated", "from": fmt, "to": fmt + 1, "changes": what})
        fmt += 1
    return data, steps


__all__ = ["MIGRATIONS", "OLDEST_READABLE", "migrate_2_to_3", "upgrade"]
