"""Declarative chains: registered operations run one after another, each writing a file.

A chain is a TOML file (or the same structure as a dict)::

    [chain]
    inputs = "configs.xyz"      # a file, a glob, or a list of them (required)
    workdir = "run"             # where step outputs go (default: the chain file's folder)
    nproc = 4                   # worker processes for every step (default: 1)
    seed = 1                    # default seed for steps that use random numbers

    [[step]]
    kind = "calculator"         # calculator | generator | selector (plural accepted)
    name = "emt"                # a registered name (see `wflp list-plugins`)
    output = "evaluated.xyz"    # required; relative to workdir
    params = {}                 # calculator: factory arguments; else: operation arguments
    prefix = "EMT_"             # calculator steps only: key prefix of the results
    properties = ["energy"]     # calculator steps only: what to store

    [[step]]
    kind = "selector"
    name = "select_by_index"
    output = "selected.xyz"
    params = { indices = [0, 2, 4] }

Every step's output is the next step's input. Every step writes a file with a
record, so a rerun reuses the steps whose record still matches, resumes an
interrupted step, and refuses (RecordMismatchError) to replace an output made
with other parameters unless ``overwrite`` is given. All steps are validated
(names, parameters, paths) before the first one runs.

The same planning code backs ``wflp run KIND NAME -i IN -o OUT --set k=v``,
which is a chain of one step.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from .errors import InputError, ParameterError, PluginError, WflpError

if TYPE_CHECKING:
    from .engine.operation import Operation
    from .plugins.types import CalculatorSpec, FitterSpec

_CHAIN_KEYS = {"inputs", "workdir", "nproc", "seed"}
_STEP_KEYS = {"kind", "name", "output", "params", "prefix", "properties", "seed", "model"}
_CALCULATOR_ONLY = ("prefix", "properties")
_GLOB_CHARS = set("*?[")

ChainSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]


# -- values given as text -----------------------------------------------------------------

def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML value (number, bool, array, inline table, quoted string),
    else a JSON value (``null`` is None), else the text itself as a string.

    >>> parse_value("0.01"), parse_value("[300, 600]"), parse_value("true"), parse_value("emt")
    (0.01, [300, 600], True, 'emt')
    """
    stripped = text.strip()
    if not stripped or "\n" in stripped:
        return text
    try:
        value = _toml().loads(f"v = {stripped}")["v"]
    except Exception:
        pass
    else:
        # TOML dates and times are not parameter values anyone means: keep the text
        return text if isinstance(value, (datetime.date, datetime.time)) else value
    try:
        return json.loads(stripped)
    except ValueError:
        return text


def parse_settings(settings: Sequence[str], option: str = "--set") -> dict[str, Any]:
    """``["key=value", ...]`` to a dict of parsed values; a malformed one raises ParameterError."""
    out: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ParameterError(
                f"{option} {item!r}: expected KEY=VALUE with KEY a parameter name, e.g. "
                f"{option} fmax=0.01"
            )
        if key in out:
            raise ParameterError(f"{option} {key}=...: given twice; give each key once")
        out[key] = parse_value(value)
    return out


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python < 3.11 only
        import tomli as tomllib
    return tomllib


# -- plans ----------------------------------------------------------------------------------

@dataclasses.dataclass
class StepPlan:
    """One validated step: the operation, its keyword arguments, and where it writes."""

    index: int                # 1-based position in the chain
    kind: str                 # plural kind name
    name: str                 # registered name (normalized)
    label: str                # how messages name the step
    operation: Any            # a wflp Operation (None for a fit step)
    kwargs: dict
    output: Path
    seed: Optional[int] = None
    model: Optional[Path] = None  # a calculator step: the model folder a fit step writes

    def describe(self) -> dict:
        """A JSON-able summary (what ``wflp run --dry-run`` prints)."""
        out = {"step": self.index, "kind": self.kind, "name": self.name,
               "operation": self.operation.name if self.operation is not None else "fit",
               "output": str(self.output), "params": _jsonable(self.kwargs),
               "seed": self.seed}
        if self.model is not None:
            out["model"] = str(self.model)
        return out


@dataclasses.dataclass
class ChainPlan:
    """A validated chain: its inputs and its steps, with every path absolute."""

    inputs: list[Path]
    steps: list[StepPlan]
    nproc: Optional[int] = None
    source: Optional[Path] = None


@dataclasses.dataclass
class StepResult:
    """What one step did."""

    index: int
    kind: str
    name: str
    output: Path
    reused: bool              # True: an output with a matching record was kept
    configs: Optional[int]    # configurations written (from the record)
    seconds: float


@dataclasses.dataclass
class ChainResult:
    """The steps' results; ``outputs`` reads the last step's output."""

    steps: list[StepResult]

    @property
    def outputs(self):
        """The last step's output file, as a ConfigSet."""
        from .configset import ConfigSet

        return ConfigSet(str(self.steps[-1].output))


def step_kind(kind: Any, where: str) -> str:
    """The plural kind a step may name (the kinds table's ``step`` column), singular or
    plural; ParameterError for anything else."""
    from .plugins.kinds import TABLE, find_kind

    steps = ", ".join(k.singular for k in TABLE if k.step)
    try:
        found = find_kind(kind, named=False)
    except WflpError:
        raise ParameterError(f"{where}: unknown kind {kind!r}; use one of {steps}") from None
    if not found.step:
        raise ParameterError(
            f"{where}: kind {kind!r} cannot be run as a step; the kinds that run on "
            f"configurations are {steps}")
    return found.name


def plan_step(kind: str, name: str, params: Mapping[str, Any] | None, output: os.PathLike | str,
              *, index: int = 1, label: str | None = None, prefix: str | None = None,
              properties: Sequence[str] | None = None, seed: int | None = None,
              default_seed: int | None = None, param_source: str = "params") -> StepPlan:
    """Resolve and validate one step without running anything.

    kind/name: a registered calculator, generator, selector or fitter. params: for a
    calculator the factory's keyword arguments, for a fitter the fitter's, otherwise
    the operation's.
    param_source names where params came from in error messages (``params``,
    ``--set``). Raises a WflpError naming the step and the bad key.
    """
    from .plugins import get_spec

    where = label or f"step {index}"
    plural = step_kind(kind, where)
    params = dict(params or {})
    if not isinstance(name, str) or not name.strip():
        raise ParameterError(f"{where}: 'name' must be a registered {plural[:-1]} name")
    try:
        spec = get_spec(plural, name)
    except WflpError as err:
        raise _prefixed(err, where) from None
    if label is None:
        where = f"step {index} ({plural[:-1]} {spec.name})"
    out_path = Path(output)
    if plural == "fitters":
        return _plan_fit(spec, params, out_path, index, where, prefix, properties, seed,
                         default_seed, param_source)
    if plural == "calculators":
        operation, kwargs = _plan_calculator(spec, params, prefix, properties, where,
                                             param_source)
    else:
        for key, value in (("prefix", prefix), ("properties", properties)):
            if value is not None:
                raise ParameterError(
                    f"{where}: {key!r} applies to calculator steps only; pass the "
                    f"operation's own parameters in {param_source}")
        operation, kwargs = _plan_operation(spec, params, where, param_source)
    wants_rng = getattr(operation, "wants_rng", False)
    if seed is not None:
        _check_seed(seed, where)
        if not wants_rng:
            raise ParameterError(
                f"{where}: a seed was given but {operation.name!r} uses no random numbers; "
                "remove the seed")
    elif wants_rng and default_seed is not None:
        _check_seed(default_seed, where)
        seed = default_seed
    if not wants_rng:
        seed = None
    try:  # every value checked now, before any step of a chain runs
        operation.validate((), kwargs, seed)
    except WflpError as err:
        source = "" if plural == "calculators" else f": {param_source}"
        raise _prefixed(err, f"{where}{source}") from None
    from .configset import OutputSpec

    try:
        OutputSpec(out_path)  # the format must be known from the name
    except WflpError as err:
        raise _prefixed(err, f"{where}: output") from None
    return StepPlan(index, plural, spec.name, where, operation, kwargs, out_path, seed)


def _plan_fit(spec: FitterSpec, params: dict, output: Path, index: int, where: str,
              prefix: Any, properties: Any, seed: Optional[int], default_seed: Optional[int],
              param_source: str) -> StepPlan:
    from .ops.fit import _check_params

    for key, value in (("prefix", prefix), ("properties", properties)):
        if value is not None:
            raise ParameterError(f"{where}: {key!r} applies to calculator steps only")
    try:
        _check_params(spec.load(), params, spec.name)
    except WflpError as err:
        raise _prefixed(err, f"{where}: {param_source}") from None
    if seed is None:
        seed = default_seed
    if seed is not None:
        _check_seed(seed, where)
    return StepPlan(index, "fitters", spec.name, where, None, {"params": params}, output, seed)


def _check_seed(seed: Any, where: str) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParameterError(f"{where}: seed must be a whole number >= 0, got {seed!r}")


def _plan_calculator(spec: CalculatorSpec, factory_kwargs: dict, prefix: Any,
                     properties: Any, where: str,
                     param_source: str) -> tuple[Operation, dict[str, Any]]:
    from .calculators import check_call
    from .ops import calculate

    factory = spec.load()
    for key in _CALCULATOR_ONLY:
        if key in factory_kwargs:
            raise ParameterError(
                f"{where}: {key!r} in {param_source} is not a calculator parameter but an "
                f"option of calculate: put {key} = ... beside params in a chain file, or use "
                f"--{key} with wflp run")
    target = spec.factory if isinstance(spec.factory, str) else getattr(
        factory, "__qualname__", repr(factory))
    check_call(factory, (), factory_kwargs, where, f"the calculator factory ({target})",
               source=param_source)
    if isinstance(properties, str):
        properties = [p.strip() for p in properties.split(",") if p.strip()]
    kwargs: dict[str, Any] = {"calculator": (spec.name, [], factory_kwargs)}
    if prefix is not None:
        kwargs["prefix"] = prefix
    if properties is not None:
        kwargs["properties"] = list(properties) if isinstance(properties, (list, tuple)) \
            else properties
    return calculate, kwargs


def _plan_operation(spec: Any, params: dict, where: str,
                    param_source: str) -> tuple[Operation, dict]:
    from .engine import Operation
    from .engine.operation import RESERVED

    op = spec.load()
    if not isinstance(op, Operation):
        raise PluginError(
            f"{where}: {spec.kind[:-1]} {spec.name!r} is not a wflp operation (got "
            f"{type(op).__name__}); its plugin must register a @wflp.operation")
    allowed = op.parameter_names
    open_ended = _has_var_keyword(op.signature)
    for key in params:
        if key in RESERVED or (key not in allowed and not open_ended):
            raise ParameterError(
                f"{where}: unknown parameter {key!r} in {param_source}; "
                f"{op.name} takes {_names(allowed)}")
    return op, params


def _has_var_keyword(sig: inspect.Signature) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def _names(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "no parameters"


def _prefixed(err: WflpError, where: str) -> WflpError:
    """A copy of err (same type, same attributes) whose message starts with *where*."""
    message = f"{where}: {err}"
    try:
        new = copy.copy(err)
        new.args = (message,) + tuple(err.args[1:])
    except Exception:  # an exception type that cannot be copied: keep the family
        new = WflpError(message)
    new.__traceback__ = None
    return new


def _jsonable(value: Any) -> Any:
    from .records import canonical

    return canonical(value)


# -- loading a chain --------------------------------------------------------------------------

def load_chain(source: ChainSource, base_dir: os.PathLike | str | None = None) -> ChainPlan:
    """Read (if a path) and validate a chain; nothing runs and nothing is written.

    Relative paths resolve against the chain file's folder (for a dict:
    *base_dir*, default the current directory); step outputs against workdir.
    """
    if isinstance(source, Mapping):
        data = source
        where_file = "chain"
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        path = None
    else:
        path = Path(source)
        where_file = str(path)
        data = _read_toml(path)
        base = Path(base_dir) if base_dir is not None else path.parent
    base = base.resolve()
    unknown = set(data) - {"chain", "step"}
    if unknown:
        raise ParameterError(
            f"{where_file}: unknown top-level key(s) {sorted(unknown)}; a chain has a [chain] "
            "table and [[step]] tables")
    head = data.get("chain")
    if not isinstance(head, Mapping):
        raise ParameterError(
            f"{where_file}: missing [chain] table; add [chain] with inputs = \"configs.xyz\"")
    _no_unknown(head, _CHAIN_KEYS, f"{where_file}: [chain]")
    inputs = _input_paths(head.get("inputs"), base, where_file)
    workdir = head.get("workdir", ".")
    if not isinstance(workdir, str) or not workdir:
        raise ParameterError(f"{where_file}: [chain] workdir must be a folder name (a string)")
    workdir_path = (base / workdir).resolve()
    nproc = head.get("nproc")
    if nproc is not None and (isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1):
        raise ParameterError(f"{where_file}: [chain] nproc must be a whole number >= 1, "
                             f"got {nproc!r}")
    default_seed = head.get("seed")
    if default_seed is not None:
        _check_seed(default_seed, f"{where_file}: [chain]")
    raw_steps = data.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ParameterError(
            f"{where_file}: no steps; add at least one [[step]] table with kind, name and "
            "output")
    steps: list[StepPlan] = []
    seen_outputs: dict[Path, int] = {}
    fits: dict[Path, str] = {}  # model folder -> the calculator of its fitter
    input_set = {p.resolve() for p in inputs}
    for i, raw in enumerate(raw_steps, start=1):
        where = f"{where_file}: step {i}"
        if not isinstance(raw, Mapping):
            raise ParameterError(f"{where}: a step must be a table ([[step]])")
        _no_unknown(raw, _STEP_KEYS, where)
        raw = dict(raw)
        model_path = None
        if "model" in raw:  # a calculator step evaluating what a fit step fitted
            model_path = (workdir_path / str(raw["model"])).resolve()
            calculator_name = fits.get(model_path)
            if calculator_name is None or str(raw.get("kind", "")).lower() not in (
                    "calculator", "calculators"):
                raise ParameterError(
                    f"{where}: model = {raw['model']!r} must be the output of an earlier "
                    "fitter step, in a calculator step")
            if "name" in raw:
                raise ParameterError(f"{where}: give either name or model, not both (the "
                                     "model's fitter names its calculator)")
            raw["name"] = calculator_name
        for key in ("kind", "name", "output"):
            if key not in raw:
                raise ParameterError(f"{where}: missing {key!r}")
        output = raw["output"]
        if not isinstance(output, str) or not output:
            raise ParameterError(f"{where}: output must be a file name, e.g. \"step{i}.xyz\"")
        params = raw.get("params", {})
        if not isinstance(params, Mapping):
            raise ParameterError(f"{where}: params must be a table, e.g. params = {{ key = 1 }}")
        out_path = (workdir_path / output).resolve()
        if out_path in seen_outputs:
            raise ParameterError(
                f"{where}: output {output!r} is also the output of step "
                f"{seen_outputs[out_path]}; give each step its own output file")
        if out_path in input_set:
            raise ParameterError(f"{where}: output {output!r} is one of the chain's inputs; "
                                 "write to another file")
        seen_outputs[out_path] = i
        try:
            plan = plan_step(raw["kind"], raw["name"], params, out_path, index=i,
                             prefix=raw.get("prefix"), properties=raw.get("properties"),
                             seed=raw.get("seed"), default_seed=default_seed)
        except WflpError as err:
            raise _prefixed(err, where_file) from None
        plan.label = f"{where_file}: {plan.label}"
        plan.model = model_path
        if plan.kind == "fitters":
            from .plugins import get_fitter

            calculator = get_fitter(plan.name).calculator
            if not calculator:
                raise ParameterError(f"{where}: fitter {plan.name!r} registers no calculator")
            fits[out_path] = calculator
        steps.append(plan)
    return ChainPlan(inputs, steps, nproc, path)


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fd:
            return _toml().load(fd)
    except FileNotFoundError:
        raise InputError(f"chain file {str(path)!r} does not exist; check the path") from None
    except IsADirectoryError:
        raise InputError(f"chain file {str(path)!r} is a folder; give a .toml file") from None
    except OSError as err:
        raise InputError(f"cannot read chain file {str(path)!r}: {err}") from None
    except ValueError as err:  # TOMLDecodeError
        raise InputError(f"chain file {str(path)!r} is not valid TOML: {err}") from None


def _no_unknown(table: Mapping, allowed: set, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ParameterError(
            f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}")


def input_paths(inputs: Any, base: Path, where: str) -> list[Path]:
    """Input files (globs expanded) as absolute paths; InputError for any that is missing."""
    return _input_paths(inputs, base, where)


def _input_paths(inputs: Any, base: Path, where: str) -> list[Path]:
    import glob

    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)) or not inputs or not all(
            isinstance(p, str) and p for p in inputs):
        raise ParameterError(
            f"{where}: inputs must be a file name, a glob, or a list of them, e.g. "
            "inputs = \"configs.xyz\"")
    out: list[Path] = []
    for text in inputs:
        path = base / os.path.expanduser(text)
        if path.is_file():
            out.append(path)
        elif any(c in _GLOB_CHARS for c in text):
            matches = sorted(glob.glob(str(path)))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                raise InputError(f"{where}: the input pattern {text!r} matches no file "
                                 f"(looked in {str(base)!r})")
            out.extend(files)
        elif path.exists():
            raise InputError(f"{where}: input {text!r} is not a file")
        else:
            raise InputError(f"{where}: input file {text!r} does not exist (looked in "
                             f"{str(base)!r})")
    return out


# -- running a chain --------------------------------------------------------------------------

def run_plan(plan: ChainPlan, overwrite: bool = False, autopara_info: Any = None,
             on_step: Callable[[StepResult], None] | None = None) -> ChainResult:
    """Run an already validated chain (see load_chain); returns what each step did."""
    from .configset import ConfigSet, OutputSpec
    from .engine import AutoparaInfo

    if autopara_info is None and plan.nproc is not None:
        autopara_info = AutoparaInfo(num_python_subprocesses=plan.nproc)
    current = ConfigSet([str(p) for p in plan.inputs])
    results: list[StepResult] = []
    for step in plan.steps:
        fitting = step.kind == "fitters"
        before = _record_state(step.output, fitting)
        started = time.perf_counter()
        try:
            if fitting:  # a model from the configurations so far; they go on unchanged
                from .ops.fit import OutputModel, fit

                fit(current, OutputModel(step.output, overwrite=overwrite), step.name,
                    params=step.kwargs["params"], seed=step.seed,
                    autopara_info=autopara_info)
            else:
                kwargs = dict(step.kwargs)
                if step.model is not None:
                    from .ops.fit import FittedModel

                    kwargs["calculator"] = FittedModel.load(step.model).calculator
                current = step.operation(current, OutputSpec(step.output, overwrite=overwrite),
                                         autopara_info=autopara_info, seed=step.seed,
                                         **kwargs)
        except WflpError as err:
            raise _prefixed(err, step.label) from err
        after = _record_state(step.output, fitting)
        result = StepResult(step.index, step.kind, step.name, step.output,
                            reused=before is not None and before == after,
                            configs=None if fitting else _configs_written(step.output),
                            seconds=time.perf_counter() - started)
        results.append(result)
        if on_step is not None:
            on_step(result)
    return ChainResult(results)


def run_chain(source: ChainSource, overwrite: bool = False, autopara_info: Any = None,
              *, base_dir: os.PathLike | str | None = None,
              on_step: Callable[[StepResult], None] | None = None) -> ChainResult:
    """Validate every step of a chain (TOML file path or dict), then run the steps in order.

    overwrite: recompute steps whose stored output was made with other
    parameters or inputs (steps whose record matches are still reused).
    autopara_info: how every step is parallelized (default: [chain] nproc).
    on_step: called with each StepResult as soon as the step is done.
    """
    plan = load_chain(source, base_dir=base_dir)
    return run_plan(plan, overwrite=overwrite, autopara_info=autopara_info, on_step=on_step)


def _record_state(output: Path, model: bool = False) -> tuple | None:
    from .records import record_path

    try:
        st = os.stat(output / "record.json" if model else record_path(output))
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _configs_written(output: Path) -> int | None:
    from .records import read_record, record_path

    try:
        record = read_record(record_path(output))
    except WflpError:
        return None
    entry = record.output_entry(output) if record is not None else None
    return entry.get("configs") if entry else None


__all__ = ["ChainPlan", "ChainResult", "StepPlan", "StepResult", "load_chain", "parse_settings",
           "parse_value", "plan_step", "run_chain", "run_plan"]
