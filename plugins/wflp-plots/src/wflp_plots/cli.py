"""``wflp parity REF MODEL FILE... -o parity.png``."""

from __future__ import annotations

from typing import Optional

import click


@click.command("parity")
@click.argument("ref")
@click.argument("model")
@click.argument("files", nargs=-1, required=True)
@click.option("--output", "-o", required=True, metavar="PNG", help="The PNG file to write.")
@click.option("--group-by", "-g", "group_by", multiple=True, metavar="KEY",
              help="Colour by this info key (repeatable; default: config_type).")
@click.option("--no-groups", is_flag=True, help="One colour for all points.")
@click.option("--per-file", is_flag=True, help="Colour by FILE first.")
@click.option("--isolated-atoms", "isolated", metavar="FILE",
              help="Single-atom configurations with REF and MODEL energies: plot atomization "
                   "energies.")
@click.option("--property", "-p", "properties", multiple=True,
              type=click.Choice(["energy", "atomization_energy", "forces", "stress",
                                 "virial"]),
              help="These properties (repeatable; default: energy, forces, stress).")
def parity_command(ref: str, model: str, files: tuple, output: str, group_by: tuple,
                   no_groups: bool, per_file: bool, isolated: Optional[str],
                   properties: tuple) -> None:
    """Parity plots of MODEL results against REF results in FILE(s), as a PNG."""
    from wflp import ConfigSet

    from .parity import parity_plot

    if no_groups and group_by:
        raise click.UsageError("--no-groups and --group-by exclude each other")
    keys = None if no_groups else (list(group_by) or "config_type")
    inputs = {name: ConfigSet(name) for name in files} if per_file else ConfigSet(list(files))
    plot = parity_plot(inputs, ref, model, output, properties=list(properties) or None,
                       group_by=keys, isolated_atoms=ConfigSet(isolated) if isolated else None)
    click.echo(f"wrote {plot.path} ({plot.size[0]}x{plot.size[1]}): "
               f"{', '.join(plot.properties)}")
