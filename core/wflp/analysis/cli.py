"""``wflp errors REF MODEL FILE...``: the error table of a model against its reference."""

from __future__ import annotations

from typing import Optional

import click


@click.command("errors")
@click.argument("ref")
@click.argument("model")
@click.argument("files", nargs=-1, required=True)
@click.option("--group-by", "-g", "group_by", multiple=True, metavar="KEY",
              help="Group by this info key (repeatable; default: config_type).")
@click.option("--no-groups", is_flag=True, help="Only the overall rows.")
@click.option("--per-file", is_flag=True,
              help="Make each FILE's name the first part of every group.")
@click.option("--isolated-atoms", "isolated", metavar="FILE",
              help="Single-atom configurations with REF and MODEL energies: adds atomization "
                   "energies.")
@click.option("--property", "-p", "properties", multiple=True,
              type=click.Choice(["energy", "atomization_energy", "forces", "stress",
                                 "virial"]),
              help="Only these properties (repeatable; default: every one present).")
@click.option("--no-elements", is_flag=True, help="Leave out the force errors per element.")
@click.option("--json", "json_path", metavar="PATH",
              help="Also write the report as JSON to PATH ('-': print JSON instead of the "
                   "table).")
def errors_command(ref: str, model: str, files: tuple, group_by: tuple, no_groups: bool,
                   per_file: bool, isolated: Optional[str], properties: tuple,
                   no_elements: bool, json_path: Optional[str]) -> None:
    """RMSE, MAE and largest errors of MODEL results against REF results in FILE(s).

    REF and MODEL are the key prefixes the results were stored under (calculate's
    prefix=, e.g. xtb_ and gap_). Energies are per atom, forces per component; the
    table is in meV units, the JSON in eV units.
    """
    from ..configset import ConfigSet
    from .errors import error_report

    if no_groups and group_by:
        raise click.UsageError("--no-groups and --group-by exclude each other")
    keys = None if no_groups else (list(group_by) or "config_type")
    inputs: dict[str, ConfigSet] | ConfigSet
    if per_file:
        inputs = {name: ConfigSet(name) for name in files}
        if len(inputs) != len(files):
            raise click.UsageError("a FILE is given twice")
    else:
        inputs = ConfigSet(list(files))
    report = error_report(inputs, ref, model, group_by=keys,
                          properties=list(properties) or None,
                          isolated_atoms=ConfigSet(isolated) if isolated else None,
                          per_element=not no_elements)
    if json_path == "-":
        click.echo(report.to_json())
        return
    click.echo(report.table())
    if json_path:
        with open(json_path, "w") as fd:
            fd.write(report.to_json() + "\n")
