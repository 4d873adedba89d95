"""A committee of calculators: the mean of several models' results, and their spread.

Several models of the same data (GAP fits with different seeds or training subsets, or any
calculators) disagree most where the data did not reach: the spread of their predictions
is a cheap estimate of the error, which active learning uses to choose what to label next
(``wflp.ops.selectors.select_by_spread``).

A committee is given like any calculator, most simply by its registered name::

    calculate(inputs, outputs, calculator=("committee", [], {"members": [spec, spec, ...]}))

where each member is anything ``calculate`` takes as a calculator (an ASE calculator, a
``(constructor, args, kwargs)`` tuple, a registered name, ``fitted.calculator``). Each
member is built once per process (:func:`wflp.calculators.construct_calculator`) and
evaluates every configuration; the committee's results are, for each property, the mean
over the members (``energy``, ``forces`` ...) and the population standard deviation
(``numpy.std``, ddof=0) under ``<property>_std``, except for forces: ``forces_std`` is per
atom the norm of the per-component standard deviations, and ``max_force_std`` its largest
value over the atoms. ``calculate`` stores them all under its prefix (``committee_`` by
default): ``committee_energy``, ``committee_energy_std``, ``committee_forces_std`` (a
per-atom array), ``committee_max_force_std`` ...

A member that fails fails the configuration, with a message naming the member. Records
describe a committee by each of its members, as they describe a single calculator, so
changing, adding or removing a member is a different computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from ase.calculators.calculator import Calculator

from ..errors import ParameterError

# bump when what a committee computes from its members' results changes
RESULT_VERSION = "1"
SPREAD_SUFFIX = "_std"
MAX_FORCE_SPREAD = "max_force_std"
# what the registered "committee" declares; a committee computes what all its members do
COMMITTEE_PROPERTIES = ("energy", "free_energy", "forces", "stress")


class CommitteeMemberError(RuntimeError):
    """A member of a committee failed on a configuration (the message names the member)."""


def members_argument(args: Sequence, kwargs: dict, where: str) -> list:
    """The member list of a committee spec's (args, kwargs), checked to be a non-empty list."""
    if args and "members" in kwargs:
        raise ParameterError(f"{where}: a committee takes its members once, as the first "
                             "argument or as members=, not both")
    if len(args) > 1 or set(kwargs) - {"members"}:
        extra = sorted(set(kwargs) - {"members"})
        what = f"keyword {extra[0]!r}" if extra else f"{len(args)} positional arguments"
        raise ParameterError(f"{where}: a committee takes one parameter, members (a list of "
                             f"calculators), got {what}")
    members = args[0] if args else kwargs.get("members")
    if isinstance(members, (str, bytes)) or not isinstance(members, (list, tuple)) \
            or not members:
        raise ParameterError(
            f"{where}: a committee needs members: a non-empty list of calculators, e.g. "
            f"{{'members': [('emt', [], {{}}), ('lj', [], {{'sigma': 2.3}})]}}, got "
            f"{members!r}")
    return list(members)


def combined_reset_interval(intervals: Sequence[int]) -> int:
    """How often a committee resets its members: every configuration whose index is a
    multiple of the greatest common divisor of the members' intervals (a member reset
    every 32 and one every 16: every 16), never if none is ever reset (all 0)."""
    nonzero = [int(i) for i in intervals if i]
    return math.gcd(*nonzero) if nonzero else 0


def common_properties(per_member: Sequence[Sequence[str]]) -> list[str]:
    """The properties every member implements, in the first member's order."""
    first, *others = [list(p) for p in per_member]
    return [p for p in first if all(p in o for o in others)]


def spread(name: str, stacked: np.ndarray) -> dict[str, Any]:
    """The mean and spread of one property over the members (stacked along axis 0)."""
    mean = np.mean(stacked, axis=0)
    std = np.std(stacked, axis=0)
    if name == "forces":
        per_atom = np.linalg.norm(std, axis=1) if std.ndim == 2 else std
        return {name: mean, name + SPREAD_SUFFIX: per_atom,
                MAX_FORCE_SPREAD: float(per_atom.max()) if per_atom.size else 0.0}
    if mean.ndim == 0:
        return {name: float(mean), name + SPREAD_SUFFIX: float(std)}
    return {name: mean, name + SPREAD_SUFFIX: std}


class Committee(Calculator):
    """An ASE calculator whose results are the mean and spread of its members' results.

    members: calculators as ``calculate`` takes them (objects, constructor tuples,
    registered names), built once per process. ``implemented_properties`` are those
    every member implements (in the first member's order). See the module docstring for
    the names of the results.
    """

    def __init__(self, members: Sequence[Any]):
        from . import construct_calculator, reset_interval

        Calculator.__init__(self)
        self.member_specs = members_argument((members,), {}, "committee")
        self.members = [construct_calculator(m) for m in self.member_specs]
        for i, member in enumerate(self.members):
            if not callable(getattr(member, "get_property", None)):
                raise ParameterError(f"committee member {i} built a {type(member).__name__}, "
                                     "not an ASE calculator")
        self.implemented_properties = common_properties(
            [getattr(m, "implemented_properties", ()) for m in self.members])
        self.wflp_reset_interval = combined_reset_interval(
            [reset_interval(m) for m in self.member_specs])

    def member_label(self, index: int) -> str:
        """'member 1 (LennardJones)': how messages name a member."""
        return f"member {index} ({type(self.members[index]).__name__})"

    def reset(self) -> None:
        """Forget the last configuration, here and in every member."""
        Calculator.reset(self)
        for member in self.members:
            reset = getattr(member, "reset", None)
            if callable(reset):
                reset()

    def __wflp_item__(self, index: int) -> None:
        """Tell file-based members which configuration comes next (their run directory)."""
        for member in self.members:
            start = getattr(member, "__wflp_item__", None)
            if callable(start):
                start(index)

    def calculate(self, atoms: Any = None, properties: Optional[Sequence[str]] = None,
                  system_changes: Any = None) -> None:
        """Evaluate every member on *atoms* (one calculation each) and store the mean and
        spread of each property asked for."""
        from ase.calculators.calculator import all_changes

        from . import calculate_properties

        Calculator.calculate(self, atoms, properties, system_changes or all_changes)
        current = self.atoms
        if current is None:
            raise ValueError("a committee was asked to calculate without a configuration")
        names = [p for p in (properties or ["energy"]) if p in self.implemented_properties]
        values = []
        for i, member in enumerate(self.members):
            try:
                values.append(calculate_properties(member, current.copy(), names))
            except Exception as err:
                raise CommitteeMemberError(
                    f"committee {self.member_label(i)} failed: {type(err).__name__}: {err}"
                ) from err
        for name in names:
            stacked = np.stack([np.asarray(v[name], dtype=float) for v in values])
            self.results.update(spread(name, stacked))

    def wflp_extra_results(self, names: Sequence[str]) -> dict[str, Any]:
        """The spreads of the properties *names* from the last calculation, which
        ``calculate`` stores beside the means."""
        out: dict[str, Any] = {}
        extra = [n + SPREAD_SUFFIX for n in names]
        if "forces" in names:
            extra.append(MAX_FORCE_SPREAD)
        for key in extra:
            if key in self.results:
                value = self.results[key]
                out[key] = value.copy() if isinstance(value, np.ndarray) else value
        return out


def spread_names() -> list[str]:
    """Every name a committee may store beside ASE's property names."""
    from ase.calculators.calculator import all_properties

    return [p + SPREAD_SUFFIX for p in all_properties] + [MAX_FORCE_SPREAD]


__all__ = ["COMMITTEE_PROPERTIES", "Committee", "CommitteeMemberError", "MAX_FORCE_SPREAD",
           "RESULT_VERSION", "SPREAD_SUFFIX", "combined_reset_interval", "common_properties",
           "members_argument",
           "spread", "spread_names"]
