"""``wflp db collect``: a project's outputs into an ASE database (see :mod:`wflp.db`).

Imports only click at start-up; wflp.db (numpy, ASE) is imported when the command runs, so
that ``wflp list-plugins`` stays light.
"""

from __future__ import annotations

from typing import Optional

import click


@click.group("db")
def db_group() -> None:
    """Collect outputs into an ASE database (then `ase db results.db` queries it)."""


@db_group.command("collect")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "output", required=True,
              help="The database: a file ending in .db (SQLite) or a postgresql:// URL.")
@click.option("--calc-prefix", default=None,
              help="Info/array prefix of the results to store as the rows' energy, forces "
                   "and stress, e.g. xtb_.")
@click.option("-v", "--verbose", is_flag=True, help="Name every output and what was done.")
def db_collect(paths: tuple, output: str, calc_prefix: Optional[str], verbose: bool) -> None:
    """Put every configuration of every output under PATHS (folders or output files) with a
    valid record into an ASE database: one row per configuration, its info as key-value
    pairs, the record's identity and operation on each row. Rerunning it adds only what
    changed."""
    from . import db

    report = db.collect(paths, output, calc_prefix=calc_prefix)
    if verbose:
        for path in report.collected:
            click.echo(f"collected  {path}")
        for path in report.unchanged:
            click.echo(f"unchanged  {path}")
    for path, why in report.left_out:
        click.echo(f"left out   {path}: {why}")
    click.echo(report.summary())


__all__ = ["db_group"]
