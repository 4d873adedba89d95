"""wflp plugin: ``wflp browse DIR|results.db``, a local read-only web app (Flask).

Discovering the plugin imports only this module and click; Flask, numpy and ASE are
imported when the command runs.
"""

from __future__ import annotations

from typing import Any, Optional

import click
from wflp import hookimpl

__version__ = "0.1.0"


@click.command("browse")
@click.argument("source", type=click.Path(exists=True))
@click.option("--port", type=click.IntRange(0, 65535), default=8050, show_default=True,
              help="Port to listen on (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; only this machine can connect unless told otherwise.")
def browse_command(source: str, port: int, host: str) -> None:
    """Browse SOURCE (a project folder, or a database from `wflp db collect`) in a web
    browser: outputs and their records, lineage, configurations, fitted models, jobs.
    Read-only: nothing outside SOURCE is served and nothing is written."""
    from .app import create_app

    app = create_app(source)
    click.echo(f"serving {source} on http://{host}:{port}/ (Ctrl-C stops)")
    app.run(host=host, port=port, debug=False, use_reloader=False)


@hookimpl
def wflp_commands(cli: Any) -> None:
    cli.add_command(browse_command)


def create_app(source: str, **kwargs: Any) -> Optional[Any]:
    """See :func:`wflp_web.app.create_app`."""
    from .app import create_app as make

    return make(source, **kwargs)


__all__ = ["browse_command", "create_app"]
