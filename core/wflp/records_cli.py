"""``wflp records show|check|migrate`` and ``wflp lineage``: provenance from the shell.

All of them read records through :mod:`wflp.records.query`, imported when a command runs
(importing wflp.records loads numpy and ASE, which ``wflp list-plugins`` never needs).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click

from .errors import InputError

if TYPE_CHECKING:
    from .records import query


@click.group("records")
def records_group() -> None:
    """Inspect, check and migrate the records that say what made an output."""


@records_group.command("show")
@click.argument("output", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the record (JSON, as read).")
def records_show(output: str, as_json: bool) -> None:
    """Show what made OUTPUT (a file written by a wflp operation, or a model folder)."""
    from .records import query
    path = Path(output)
    rec_file = query.record_file_of(path)
    out = query.output_of(rec_file)
    if not out.exists() and not rec_file.exists():
        raise InputError(f"output {str(out)!r} does not exist; give the path of a file that a "
                         "wflp operation wrote")
    st = query.status(out)
    if st.record is None:
        if not rec_file.exists():
            raise InputError(f"{str(out)!r} has no wflp record ({rec_file.name} is missing), "
                             "so what made it is unknown; only outputs written by wflp "
                             "operations have one")
        raise InputError(st.detail)
    if as_json:
        click.echo(json.dumps(st.record.to_json(rec_file.parent), indent=2, sort_keys=True))
        return
    click.echo(_format_record(out, st))


def _state_words(st: query.OutputStatus) -> str:
    words = {"ok": "matches its record", "modified": "MODIFIED since wflp wrote it",
             "missing": "MISSING", "inputs-changed": "its inputs CHANGED since"}[st.state]
    if st.other_versions:
        words += "; made under other versions"
    return words


def _format_record(path: Path, st: query.OutputStatus) -> str:
    record = st.record
    assert record is not None

    def js(value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    def who(provider: Any) -> str:
        if not isinstance(provider, dict):
            return "?"
        if provider.get("distribution"):
            return f"{provider['distribution']} {provider.get('version') or ''}".strip()
        return f"module {provider.get('module', '?')} (not installed)"

    code = record.code
    if code.get("distribution"):
        origin = code["distribution"]
        if code.get("source_sha256"):
            origin += f" (editable, source sha256 {code.get('source_sha256')})"
    else:
        origin = f"{code.get('callable')} (source sha256 {code.get('source_sha256')})"
    inputs, run = record.inputs, record.run
    count = inputs.get("count")
    lines = [
        f"output:      {shown_path(path)} ({_state_words(st)})",
        f"{record.kind + ':':<13}{record.name} v{record.version} ({code.get('callable')})",
        f"code:        {origin}",
        "providers:",
    ]
    for key, provider in sorted(record.providers.items()):
        name = f" {provider.get('name')}" if isinstance(provider, dict) and \
            provider.get("name") else ""
        lines.append(f"  {key}:{name} {who(provider)}")
    lines.append("parameters:" + ("" if record.parameters else "  (none)"))
    for key, value in sorted((record.parameters or {}).items()):
        lines.append(f"  {key} = {js(value)}")
    counted = f" ({count} configs)" if count is not None else ""
    lines.append(f"inputs:      sha256 {inputs.get('sha256')}{counted}")
    digests = {e["file"]: e["sha256"] for e in inputs.get("file_sha256") or []}
    for f in inputs.get("files") or []:
        lines.append(f"  {shown_path(Path(f))}" + (f" (sha256 {digests[f][:16]})"
                                               if f in digests else ""))
    lines.append(f"layout:      {record.layout.get('split')}")
    lines.append("outputs:")
    for o in record.outputs:
        configs = f"{o.get('configs')} configs, " if o.get("configs") is not None else ""
        lines.append(f"  {shown_path(Path(o.get('file')))}: {configs}sha256 {o.get('sha256')}")
    if record.opaque:
        lines.append("not described by content:")
        for note in record.opaque:
            lines.append(f"  {note.get('where')}: {note.get('type')}, {note.get('how')}")
    versions = record.facts.get("versions") or {}
    lines.append("made with:   " + (", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
                                    or "(no installed code named)"))
    for where, value in sorted((record.facts.get("programs") or {}).items()):
        lines.append(f"  program ({where}): {js(value)}")
    if st.other_versions:
        lines.append("now:         " + ", ".join(st.other_versions))
    lines += [
        f"format:      {record.output.get('format')}",
        f"started:     {run.get('started')}",
        f"finished:    {run.get('finished')}",
        f"host:        {run.get('host')} (python {run.get('python')}, pid {run.get('pid')}, "
        f"wflp {run.get('wflp_version')})",
    ]
    if st.old_format:
        from .records.record import RECORD_FORMAT

        lines.append(f"record:      format {st.old_format}, read as format {RECORD_FORMAT} "
                     "(`wflp records migrate --apply` writes it so)")
    for entry in record.history:
        lines.append(f"history:     {entry.get('time')} {entry.get('event')}: "
                     f"{_history_words(entry)}")
    return "\n".join(lines)


def _history_words(entry: dict) -> str:
    changes = entry.get("changes")
    if isinstance(changes, list):
        changes = ", ".join(map(str, changes))
    if entry.get("event") == "migrated":
        return f"format {entry.get('from')} -> {entry.get('to')} ({changes})"
    return str(changes)


@records_group.command("check")
@click.argument("folder", type=click.Path(file_okay=False), default=".")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per output.")
def records_check(folder: str, as_json: bool) -> None:
    """Check every output under FOLDER against its record.

    Lists outputs modified or missing since wflp wrote them, records that cannot be
    trusted, outputs whose inputs changed since (a rerun refuses them unless overwrite), and outputs
    made under other versions of installed code (reused all the same, unless
    reuse="strict"). Exits with 1 if any output is modified, missing, untrusted or
    out of date, 0 otherwise.
    """
    from .records import query

    statuses = query.check(folder)
    problems = 0
    for st in statuses:
        problems += st.problem
        if as_json:
            click.echo(json.dumps({"output": str(st.output), "state": st.state,
                                   "detail": st.detail, "other_versions": st.other_versions,
                                   "old_format": st.old_format}, sort_keys=True))
            continue
        words = {"ok": "ok", "modified": "MODIFIED", "missing": "MISSING",
                 "invalid": "UNTRUSTED", "inputs-changed": "INPUTS CHANGED"}[st.state]
        line = f"{words:<15} {shown_path(st.output)}"
        extra = []
        if st.detail and st.state != "ok":
            extra.append(st.detail)
        if st.other_versions:
            extra.append("made with other versions: " + ", ".join(st.other_versions))
        if st.old_format:
            extra.append(f"record format {st.old_format} (migrate with `wflp records "
                         "migrate --apply`)")
        click.echo(line + ("  " + "; ".join(extra) if extra else ""))
    if not as_json:
        other = sum(bool(st.other_versions) for st in statuses)
        click.echo(f"{len(statuses)} outputs: {len(statuses) - problems} ok, {problems} with "
                   f"problems, {other} made under other versions")
    if problems:
        sys.exit(1)


@records_group.command("migrate")
@click.argument("folder", type=click.Path(file_okay=False), default=".")
@click.option("--apply", "apply", is_flag=True,
              help="Write the migrated records (default: only report what would change).")
def records_migrate(folder: str, apply: bool) -> None:
    """Migrate the records under FOLDER written in older formats to this wflp's format.

    Outputs are never touched; each record gets a history entry saying what changed.
    Without --apply, only reports. (Reading an old record migrates it in memory anyway,
    and a rerun that reuses the output writes it back.)
    """
    from .records import query
    from .records.record import RECORD_FORMAT

    pending = query.pending_migrations(folder)
    for output, record in pending:
        steps = "; ".join(f"format {e['from']} -> {e['to']}: {e['changes']}"
                          for e in record.pending)
        click.echo(f"{'migrated' if apply else 'would migrate'} {shown_path(output)}: {steps}")
        if apply:
            query.write_migrated(output, record)
    click.echo(f"{len(pending)} record(s) {'migrated' if apply else 'to migrate'} to format "
               f"{RECORD_FORMAT}" + ("" if apply or not pending else "; rerun with --apply"))


@click.command("lineage")
@click.argument("path", type=click.Path())
@click.option("--depth", type=click.IntRange(min=0), default=None,
              help="How many steps back (or forward) to go (default: all).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "dot"]), default="text",
              show_default=True, help="json: networkx node-link; dot: Graphviz.")
@click.option("--grep", "pattern", default=None,
              help="Text format: show only the lines (and their steps) matching this "
                   "regular expression, e.g. --grep 'xtb|method'.")
@click.option("--descendants", is_flag=True,
              help="The other way: what in the project was made from PATH.")
@click.option("--project", type=click.Path(file_okay=False), default=None,
              help="The project folder searched for moved inputs and for descendants "
                   "(default: the current folder).")
def lineage_command(path: str, depth: Optional[int], fmt: str, pattern: Optional[str],
                    descendants: bool, project: Optional[str]) -> None:
    """What made PATH: each step back to the sources, with its parameters and versions.

    PATH is an output file or a model folder. Inputs changed since a step used them are
    marked CHANGED SINCE USED; inputs without a record are sources.
    """
    from .records import query
    if pattern is not None:
        import re

        try:
            re.compile(pattern)
        except re.error as err:
            raise click.BadParameter(f"not a regular expression: {err}",
                                     param_hint="--grep") from None
    graph = (query.descendants(path, project, depth) if descendants
             else query.lineage(path, depth, project))
    if fmt == "json":
        click.echo(json.dumps(graph.node_link(), indent=2, sort_keys=True, default=str))
    elif fmt == "dot":
        click.echo(graph.dot(), nl=False)
    else:
        click.echo(graph.text(pattern), nl=False)


def shown_path(path: Any) -> str:
    """A path as the CLI shows it: relative to the current folder, unless that climbs
    more than one folder up."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive on Windows
        return str(path)
    return str(path) if rel.startswith(".." + os.sep + "..") else rel


__all__ = ["lineage_command", "records_group", "shown_path"]
