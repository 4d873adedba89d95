"""``wflp jobs``: list, inspect, sync, cancel, resubmit and clean queued jobs."""

from __future__ import annotations

import datetime
import json
from typing import Any, Optional

import click

STATE_CHOICES = ["preparing", "submitting", "queued", "held", "running", "succeeded", "failed",
                 "cancelled", "timeout", "out_of_memory", "node_failure", "unknown"]


@click.group("jobs")
def jobs_group() -> None:
    """Queued jobs this user submitted (from the job store, $WFLP_HOME)."""


def _jobs() -> Any:
    from . import manager

    return manager()


def _when(ts: Optional[float]) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _rows(ids: tuple) -> list:
    jobs = _jobs()
    rows = jobs.store.select(ids=[int(i) for i in ids])
    missing = sorted(set(int(i) for i in ids) - {r.id for r in rows})
    if missing:
        raise click.BadParameter(f"no job with id {', '.join(map(str, missing))} in the store "
                                 f"{jobs.store.path} (see `wflp jobs ls`)", param_hint="ID")
    return rows


@jobs_group.command("ls")
@click.option("--status", "states", multiple=True, type=click.Choice(STATE_CHOICES),
              help="Only jobs in this state (repeatable).")
@click.option("--system", help="Only jobs on this system.")
@click.option("--name", help="Only jobs whose name contains this text.")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
def jobs_ls(states: tuple, system: Optional[str], name: Optional[str], as_json: bool) -> None:
    """List jobs, as last seen (`wflp jobs sync` asks the schedulers)."""
    rows = _jobs().store.select(states=list(states) or None, system=system, name=name)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2, sort_keys=True))
        return
    if not rows:
        click.echo("no jobs")
        return
    header = ("ID", "STATE", "SYSTEM", "SCHEDULER ID", "SUBMITTED", "NAME")
    table = [header] + [(str(r.id), r.state, r.system, r.scheduler_id or "-",
                         _when(r.submitted), r.name) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])


@jobs_group.command("show")
@click.argument("job_id", metavar="ID", type=int)
def jobs_show(job_id: int) -> None:
    """Everything the store knows of one job, and where its files are."""
    [row] = _rows((job_id,))
    lines = [f"job:          {row.id} ({row.name})", f"kind:         {row.kind}",
             f"system:       {row.system} (scheduler {row.scheduler}, id "
             f"{row.scheduler_id or '-'})",
             f"state:        {row.state}" + (f" ({row.reason})" if row.reason else ""),
             f"exit code:    {row.exit_code if row.exit_code is not None else '-'}",
             f"resources:    {json.dumps(row.resources, sort_keys=True)}",
             f"directory:    {row.remote_dir}",
             f"stdout:       {row.remote_dir}/stdout",
             f"stderr:       {row.remote_dir}/stderr",
             f"created:      {_when(row.created)}", f"submitted:    {_when(row.submitted)}",
             f"finished:     {_when(row.finished)}",
             f"collected:    {'yes' if row.collected else 'no'}",
             f"attempts:     {row.attempts}", f"key:          {row.key}"]
    if row.local_dir != row.remote_dir:
        lines.insert(7, f"local copy:   {row.local_dir}")
    click.echo("\n".join(lines))


@jobs_group.command("sync")
def jobs_sync() -> None:
    """Ask each system once about its unfinished jobs, and update the store."""
    jobs = _jobs()
    rows = [r for r in jobs.store.select() if r.state not in
            ("succeeded", "failed", "cancelled", "timeout", "out_of_memory", "node_failure")]
    if not rows:
        click.echo("no unfinished jobs")
        return
    fresh = jobs.refresh(rows)
    counts: dict[str, int] = {}
    for r in fresh:
        counts[r.state] = counts.get(r.state, 0) + 1
    calls = ", ".join(f"{s}: {n}" for s, n in sorted(jobs.status_calls.items())) or "none"
    click.echo(f"{len(fresh)} jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
               + f" (status calls: {calls})")


@jobs_group.command("cancel")
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True, type=int)
def jobs_cancel(job_ids: tuple) -> None:
    """Cancel jobs (one scheduler command per system)."""
    jobs = _jobs()
    rows = _rows(job_ids)
    problems = jobs.cancel(rows)
    for r in rows:
        if r.id in problems:
            click.echo(f"job {r.id}: not cancelled: {problems[r.id]}", err=True)
        else:
            click.echo(f"job {r.id}: cancelled")
    if problems:
        raise SystemExit(2)


@jobs_group.command("resubmit")
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True, type=int)
def jobs_resubmit(job_ids: tuple) -> None:
    """Run finished (failed, cancelled, timed-out ...) jobs again, in the same directory."""
    jobs = _jobs()
    for row in _rows(job_ids):
        new = jobs.resubmit(row)
        click.echo(f"job {new.id}: resubmitted as {new.scheduler_id}")


@jobs_group.command("clean")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def jobs_clean(yes: bool) -> None:
    """Remove finished jobs: their directories (on the systems and here) and store rows."""
    jobs = _jobs()
    rows = [r for r in jobs.store.select() if r.state in
            ("succeeded", "failed", "cancelled", "timeout", "out_of_memory", "node_failure")]
    if not rows:
        click.echo("no finished jobs")
        return
    if not yes:
        click.confirm(f"remove {len(rows)} finished job(s) and their directories?",
                      abort=True)
    removed = jobs.clean(rows)
    click.echo(f"removed {len(removed)} job(s)")


__all__ = ["jobs_group"]
