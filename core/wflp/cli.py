"""The ``wflp`` command line: inspect plugins and records, run operations and chains,
scaffold plugins.

Every error wflp raises on purpose (WflpError) and every usage error is printed
as one line on stderr with exit status 2; ``wflp --debug ...`` shows the
traceback instead. This module imports only click and wflp's light core at
start-up, so that ``wflp list-plugins`` and ``wflp --help`` stay fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn, Optional

import click

from . import __version__
from .errors import WflpError

EXIT_ERROR = 2          # WflpError and usage errors
EXIT_INTERNAL = 1       # a bug: anything else
EXIT_INTERRUPTED = 130
INTERRUPTED = "interrupted (finished chunks are kept: rerun to resume)"

_state: dict = {"debug": False, "command": None}
# click >= 8.2 raises this for a group called without a command (older click prints help)
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


# -- error handling -------------------------------------------------------------------------

def _one_line(message: str) -> str:
    """Messages are single lines by design; an embedded traceback is cut to its last line."""
    lines = [ln for ln in str(message).splitlines() if ln.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0]} ... {lines[-1].strip()} (wflp --debug shows all of it)"


def _fail(prefix: str, message: str, code: int) -> NoReturn:
    click.echo(f"{prefix}: {message}", err=True)
    sys.exit(code)


class _WflpGroup(click.Group):
    """The top-level group: turns exceptions into one-line messages and exit codes, and
    lets plugins add commands (the wflp_commands hook), loaded only when a command that
    is not built in is asked for, or the list of commands is shown."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if _WflpGroup._plugins_added:
            return
        _WflpGroup._plugins_added = True
        from .plugins import get_plugin_manager

        try:
            get_plugin_manager().add_commands(self)
        except WflpError as err:  # strict plugin loading: say it, keep the built-ins
            click.echo(f"wflp: error: {_one_line(str(err))}", err=True)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        found = super().get_command(ctx, cmd_name)
        if found is None:
            self._add_plugin_commands()
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def main(self, args: Optional[Sequence[str]] = None, prog_name: Optional[str] = None,
             complete_var: Optional[str] = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        _state["debug"] = "--debug" in argv[: argv.index("--") if "--" in argv else None]
        _state["command"] = None
        try:
            return super().main(args=argv, prog_name=prog_name or "wflp",
                                complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:  # pragma: no cover - click handles it itself
            sys.exit(exc.exit_code)
        except _NO_ARGS_IS_HELP as exc:  # `wflp` or `wflp records` alone: show the help
            click.echo(exc.ctx.get_help() if exc.ctx is not None else str(exc))
            sys.exit(0)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "wflp"
            _fail(f"{where}: error", f"{exc.format_message()} (see '{where} --help')",
                  EXIT_ERROR)
        except click.ClickException as exc:
            _fail("wflp: error", exc.format_message(), EXIT_ERROR)
        except click.Abort as exc:  # click turns Ctrl-C into Abort
            if isinstance(exc.__context__, KeyboardInterrupt):
                _fail("wflp", INTERRUPTED, EXIT_INTERRUPTED)
            _fail("wflp", "aborted", EXIT_INTERRUPTED)
        except KeyboardInterrupt:
            _fail("wflp", INTERRUPTED, EXIT_INTERRUPTED)
        except WflpError as exc:
            if _state["debug"]:
                traceback.print_exc()
            message = _one_line(str(exc))
            if _state.get("command") == "run":  # speak of the option, not the Python argument
                for python_words in ("overwrite=True (OutputSpec(..., overwrite=True))",
                                     "overwrite=True"):
                    message = message.replace(python_words, "--overwrite")
            _fail("wflp: error", message, EXIT_ERROR)
        except BrokenPipeError:  # e.g. `wflp list-plugins | head -1`
            sys.stderr.close()
            sys.exit(0)
        except Exception as exc:
            if _state["debug"]:
                traceback.print_exc()
                sys.exit(EXIT_INTERNAL)
            _fail("wflp: internal error", f"{type(exc).__name__}: {_one_line(str(exc))} "
                  "(rerun with --debug for the traceback, and please report it)", EXIT_INTERNAL)


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _setup_logging(verbose: int, debug: bool) -> None:
    logger = logging.getLogger("wflp")
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("wflp: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)


@click.group("wflp", cls=_WflpGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="wflp",
                      message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("-v", "--verbose", count=True, help="Log what wflp does (reuse, resume ...).")
def cli(debug: bool, verbose: int) -> None:
    """wflp: parallel, restartable, provenance-exact atomistic workflows on ASE."""
    _state["debug"] = debug
    ctx = click.get_current_context()
    _state["command"] = ctx.invoked_subcommand
    _setup_logging(verbose, debug)


def main(argv: Optional[Sequence[str]] = None) -> Any:
    """Entry point of the ``wflp`` console script."""
    return cli.main(args=argv, prog_name="wflp")


# -- list-plugins ---------------------------------------------------------------------------

def _record_dict(record: Any) -> dict:
    if isinstance(record, dict):
        return dict(record)
    if hasattr(record, "to_dict"):
        return record.to_dict()
    import dataclasses

    return dataclasses.asdict(record)


class _KindOption(click.Option):
    """A --kind option whose help lists the kinds from wflp.plugins.kinds (the one table),
    read only when the help is shown, so that other commands do not import the plugins."""

    def get_help_record(self, ctx: click.Context) -> Any:
        from .plugins.kinds import TABLE

        if self.help and "{kinds}" in self.help:
            self.help = self.help.replace("{kinds}", ", ".join(k.name for k in TABLE))
        return super().get_help_record(ctx)


def _find_kind(kind: str) -> Any:
    from .plugins.kinds import find_kind

    try:
        return find_kind(kind, named=False)
    except WflpError as err:
        raise click.BadParameter(str(err), param_hint="--kind") from None


@cli.command("list-plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@click.option("--kind", "kind", metavar="KIND", cls=_KindOption,
              help="Only plugins extending this kind ({kinds}; singular accepted). "
                   "Failed and disabled plugins are always shown.")
def list_plugins(as_json: bool, kind: Optional[str]) -> None:
    """Installed plugins: what each registers, and whether it loaded."""
    from .plugins import plugin_report

    kind_norm = None if kind is None else _find_kind(kind).name
    records = [_record_dict(r) for r in plugin_report()]
    if kind_norm is not None:
        records = [dict(r, registered={kind_norm: r["registered"][kind_norm]}
                        if kind_norm in r.get("registered", {}) else {})
                   for r in records
                   if kind_norm in r.get("registered", {}) or r.get("status") != "ok"]
    if as_json:
        click.echo(json.dumps(records, indent=2, sort_keys=True))
        return
    click.echo(_plugin_table(records))


def _plugin_table(records: list[dict]) -> str:
    """One row per kind a plugin extends, in the order of the table of kinds; a kind that
    registers no names (commands, panels) says where to see what it adds."""
    from .plugins.kinds import TABLE

    order = {k.name: i for i, k in enumerate(TABLE)}
    contributing = {k.name: f"(see {k.listed_by})" for k in TABLE if not k.named}
    header = ("DISTRIBUTION", "VERSION", "STATUS", "KIND", "NAMES")
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for r in records:
        dist = r.get("distribution") or r.get("plugin") or "?"
        version = r.get("version") or "-"
        status = r.get("status", "?")
        registered = {k: ", ".join(v) if v else contributing.get(k, "")
                      for k, v in (r.get("registered") or {}).items()
                      if v or k in contributing}
        if status != "ok" or not registered:
            reason = r.get("error") or ("registers nothing" if status == "ok" else "")
            rows.append((dist, version, status, "-", "-"))
            if reason:
                ep = f" [{r['entry_point']}]" if r.get("entry_point") else ""
                notes.append(f"  {dist}{ep}: {status}: {_one_line(reason)}")
            continue
        first = True
        for k in sorted(registered, key=lambda name: (order.get(name, len(order)), name)):
            rows.append((dist if first else "", version if first else "",
                         status if first else "", k, registered[k]))
            first = False
        if r.get("error"):  # an ok plugin with a problem (e.g. a name clash)
            notes.append(f"  {dist}: warning: {_one_line(r['error'])}")
    if not rows:
        return "no plugins match"
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]
             for row in [header, *rows]]
    lines = [ln.rstrip() for ln in lines]
    if notes:
        lines += ["", "problems:", *notes]
    return "\n".join(lines)


# -- records and lineage ----------------------------------------------------------------------

from .records_cli import lineage_command, records_group, shown_path  # noqa: E402  (light)

cli.add_command(records_group)
cli.add_command(lineage_command)

from .db_cli import db_group  # noqa: E402  (light: click only)

cli.add_command(db_group)


# -- run ----------------------------------------------------------------------------------

@cli.command("run", context_settings={"show_default": True})
@click.argument("target", nargs=-1, required=True, metavar="CHAIN.toml | KIND NAME")
@click.option("-i", "--input", "inputs", multiple=True, metavar="FILE",
              help="Input file or glob (repeatable). KIND NAME only.")
@click.option("-o", "--output", metavar="FILE", help="Output file. KIND NAME only.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A parameter (repeatable); VALUE is read as TOML/JSON (0.01, [300, 600], "
                   "true) or else as a string. Calculators: factory arguments; generators "
                   "and selectors: operation arguments. KIND NAME only.")
@click.option("--prefix", help="calculate: key prefix of the results (default NAME_); "
                               "ASCII letters, digits, '_', '-' and '.' only.")
@click.option("--properties", metavar="P1,P2",
              help="calculate: comma-separated properties to store (default: all "
                   "implemented of energy, free_energy, forces, stress).")
@click.option("--seed", type=click.IntRange(min=0),
              help="Seed of an operation that uses random numbers. KIND NAME only.")
@click.option("--nproc", type=click.IntRange(min=1),
              help="Worker processes (default: $WFLP_NUM_PYTHON_SUBPROCESSES, else 1; a chain's "
                   "own nproc if it sets one).")
@click.option("--overwrite", is_flag=True,
              help="Replace outputs made by a different computation (matching ones are "
                   "still reused).")
@click.option("--dry-run", is_flag=True, help="Validate and print the plan; run nothing.")
def run_command(target: tuple, inputs: tuple, output: Optional[str], settings: tuple,
                prefix: Optional[str], properties: Optional[str], seed: Optional[int],
                nproc: Optional[int], overwrite: bool, dry_run: bool) -> None:
    """Run one registered operation, or a chain of them from a TOML file.

    \b
      wflp run calculator emt -i configs.xyz -o evaluated.xyz
      wflp run selector select_by_index -i evaluated.xyz -o sel.xyz --set indices=[0,2]
      wflp run chain.toml
    """
    from .chain import ChainPlan, load_chain, parse_settings, plan_step, run_plan

    if len(target) == 1:
        given = [name for name, value in (("-i/--input", inputs), ("-o/--output", output),
                                          ("--set", settings), ("--prefix", prefix),
                                          ("--properties", properties), ("--seed", seed))
                 if value]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} apply to `wflp run KIND NAME`; a chain file sets inputs, "
                "outputs and parameters itself")
        plan = load_chain(target[0])
    elif len(target) == 2:
        kind, name = target
        if not inputs:
            raise click.UsageError("missing -i/--input FILE (the configurations to run on)")
        if not output:
            raise click.UsageError("missing -o/--output FILE (where the results go)")
        from pathlib import Path

        from .chain import input_paths

        params = parse_settings(settings)
        out_path = Path(output).absolute()
        step = plan_step(kind, name, params, out_path, label=f"{kind} {name!r}", prefix=prefix,
                         properties=properties, seed=seed, param_source="--set")
        paths = input_paths(list(inputs), Path.cwd(), "-i/--input")
        if out_path.resolve() in {p.resolve() for p in paths}:
            raise click.UsageError(f"-o/--output {output!r} is also an input; write to "
                                   "another file")
        plan = ChainPlan(paths, [step])
    else:
        raise click.UsageError(
            f"expected CHAIN.toml or KIND NAME, got {len(target)} arguments: "
            f"{' '.join(target)}")

    if dry_run:
        click.echo(json.dumps({"inputs": [str(p) for p in plan.inputs],
                               "steps": [s.describe() for s in plan.steps]},
                              indent=2, sort_keys=True))
        return

    info = None
    if nproc is not None:
        from .engine import AutoparaInfo

        info = AutoparaInfo(num_python_subprocesses=nproc)
    chain = len(target) == 1

    def report(result: Any) -> None:
        what = f"step {result.index}: " if chain else ""
        done = "reused (record matches)" if result.reused else f"done in {result.seconds:.1f} s"
        if result.kind == "fitters":
            made = "model"
        else:
            configs = "?" if result.configs is None else result.configs
            made = f"{configs} {'config' if configs == 1 else 'configs'}"
        click.echo(f"{what}{result.kind[:-1]} {result.name} -> {shown_path(result.output)}: "
                   f"{made}, {done}")

    run_plan(plan, overwrite=overwrite, autopara_info=info, on_step=report)


# -- jobs -----------------------------------------------------------------------------------

from .remote.cli import jobs_group  # noqa: E402  (light: click only)

cli.add_command(jobs_group)


# -- errors ---------------------------------------------------------------------------------

from .analysis.cli import errors_command  # noqa: E402  (light: click only)

cli.add_command(errors_command)


# -- new-plugin ---------------------------------------------------------------------------

@cli.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True,
              type=click.Path(file_okay=False),
              help="Where to create the distribution's folder wflp-NAME.")
@click.option("--kind", default="calculators", show_default=True, cls=_KindOption,
              help="What the example extends: {kinds} (singular accepted).")
def new_plugin(name: str, directory: str, kind: str) -> None:
    """Create a ready-to-install plugin distribution wflp-NAME with a working example."""
    from .scaffold import scaffold_plugin

    result = scaffold_plugin(name, directory, kind=kind)
    click.echo(f"created {shown_path(result.root)} (distribution {result.distribution}, module "
               f"{result.module}, registers {result.kind[:-1]} {result.registered!r})")
    for f in result.files:
        click.echo(f"  {os.path.relpath(f, result.root)}")
    click.echo("next:")
    click.echo(f"  pip install -e {shown_path(result.root)}")
    click.echo(f"  wflp list-plugins --kind {result.kind}")
    click.echo(f"  python -m pytest {shown_path(result.root)}")


if __name__ == "__main__":  # pragma: no cover
    main()
