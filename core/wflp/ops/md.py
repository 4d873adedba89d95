"""md: molecular dynamics with ASE's integrators; each input yields its sampled trajectory.

Every stored frame carries the calculator's results (energy, forces, and stress
for periodic cells) under a prefix, as calculate stores them, plus
info["md_step"], info["md_time_fs"] and info["md_temperature_K"] (the kinetic
temperature of the frame), and with a thermostat info["md_target_temperature_K"]
(the target of the step that made the frame). All randomness (initial
velocities, Langevin noise) comes from the per-item random stream of the call's
``seed``, so results do not depend on chunking or the number of worker processes.

Temperatures count the degrees of freedom the dynamics really has: 3N minus those its
constraints remove (the input's constraints, and the centre of mass that Langevin
dynamics holds fixed), as ASE's thermostats count them. Counting 3N for a Langevin run
read a 9-atom molecule's temperature 11 % low.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

import numpy as np
from ase import Atoms, units

from ..calculators import (
    calculate_properties,
    calculator_prefix,
    check_prefix,
    clear_results,
    construct_calculator,
)
from ..engine import operation
from ..errors import ParameterError
from .calculate import store_results

INTEGRATORS = ("langevin", "velocityverlet", "berendsen", "nose_hoover")
THERMOSTATS = ("langevin", "berendsen", "nose_hoover")
STORED_PROPERTIES = ("energy", "forces", "stress")
DEFAULT_FRICTION = 0.01  # 1/fs

Temperature = Union[float, Sequence[float]]


# -- checking parameters before any item runs -----------------------------------------------

def fresh_calculator(calculator: Any) -> Any:
    """The calculator for one item, reset so that nothing carries over from earlier items.

    A calculator object is shared by the items one process runs, and keeps state
    between them (cached results, neighbour lists). Which items came before
    depends on the chunking, and the leftover state changes the last bits of
    the results; resetting it makes each item's trajectory the same in serial
    and parallel runs, byte for byte.
    """
    calc = construct_calculator(calculator)
    reset = getattr(calc, "reset", None)
    if callable(reset):
        reset()
    return calc


def prepare_calculator(calculator: Any, results_prefix: Optional[str]) -> tuple:
    """(fresh calculator, key prefix, properties to store) for one trajectory."""
    calc = fresh_calculator(calculator)
    prefix = calculator_prefix(calculator, calc) if results_prefix is None else results_prefix
    implemented = set(getattr(calc, "implemented_properties", STORED_PROPERTIES))
    return calc, prefix, [p for p in STORED_PROPERTIES if p in implemented]


def store_calculated(frame: Atoms, calc: Any, wanted: Sequence[str], prefix: str) -> None:
    """Store calc's results for frame's geometry on frame, as calculate does.

    The dynamics has just evaluated this geometry, so the calculator answers from its
    cache; it is deliberately not reset here (calculate resets before every
    configuration), which would recompute every stored frame.
    """
    periodic = bool(np.all(frame.pbc))
    values = calculate_properties(calc, frame, [name for name in wanted
                                                if name != "stress" or periodic])
    store_results(frame, values, prefix)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_count(op: str, name: str, value: Any, minimum: int) -> int:
    """value as an int >= minimum, else ParameterError naming op and parameter."""
    if not _is_int(value) or value < minimum:
        raise ParameterError(f"{op}: {name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_positive(op: str, name: str, value: Any, allow_zero: bool = False) -> float:
    """value as a float > 0 (or >= 0), else ParameterError naming op and parameter."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if not _is_number(value) or not np.isfinite(value) or value < 0 or (
            value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{op}: {name} must be a number {bound}, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class _MDSettings:
    integrator: str
    t_start: Optional[float]
    t_end: Optional[float]
    needs_rng: bool


def _check_md(params: dict, seed: Optional[int]) -> _MDSettings:
    """Validate md's parameters; return the normalized ones. seed: None if none given."""
    given = params["integrator"]
    known = {name.replace("_", ""): name for name in INTEGRATORS}
    integrator = known.get(given.lower().replace("_", "").replace("-", "")) \
        if isinstance(given, str) else None
    if integrator is None:
        raise ParameterError(
            f"md: unknown integrator {given!r}; choose one of {', '.join(INTEGRATORS)}")
    check_count("md", "steps", params["steps"], 0)
    check_positive("md", "dt", params["dt"])
    check_count("md", "sample_interval", params["sample_interval"], 1)

    temperature = params["temperature"]
    t_start = t_end = None
    if integrator in THERMOSTATS:
        if temperature is None:
            raise ParameterError(
                f"md: integrator {integrator!r} is a thermostat and needs temperature=<K> "
                "(or a ramp (T_start, T_end)); for constant-energy MD use "
                "integrator='velocityverlet'")
        if isinstance(temperature, (list, tuple, np.ndarray)) and np.ndim(temperature) > 0:
            if len(temperature) != 2:
                raise ParameterError(
                    f"md: a temperature ramp is (T_start, T_end) in K, got {temperature!r}")
            t_start = check_positive("md", "temperature[0]", temperature[0], allow_zero=True)
            t_end = check_positive("md", "temperature[1]", temperature[1], allow_zero=True)
            if integrator == "nose_hoover" and t_start != t_end:
                raise ParameterError(
                    "md: temperature ramps are not supported with integrator='nose_hoover' "
                    "(its chain cannot change target); use 'langevin' or 'berendsen'")
        else:
            t_start = t_end = check_positive("md", "temperature", temperature, allow_zero=True)
    elif temperature is not None:
        raise ParameterError(
            "md: integrator 'velocityverlet' is constant-energy and takes no temperature; "
            "pass initial_temperature=<K> to start from thermal velocities, or choose a "
            f"thermostat ({', '.join(THERMOSTATS)})")

    if integrator == "langevin":
        if params["friction"] is not None:
            check_positive("md", "friction", params["friction"])
    elif params["friction"] is not None:
        raise ParameterError(
            f"md: friction applies only to integrator='langevin', not {integrator!r}; "
            "use temperature_tau for 'berendsen' and 'nose_hoover'")
    if params["temperature_tau"] is not None:
        if integrator not in ("berendsen", "nose_hoover"):
            raise ParameterError(
                f"md: temperature_tau applies only to 'berendsen' and 'nose_hoover', not "
                f"{integrator!r}" + (" (use friction)" if integrator == "langevin" else ""))
        check_positive("md", "temperature_tau", params["temperature_tau"])

    init_t = params["initial_temperature"]
    if init_t is not None:
        check_positive("md", "initial_temperature", init_t, allow_zero=True)
    if not isinstance(params["exact_initial_temperature"], (bool, np.bool_)):
        raise ParameterError("md: exact_initial_temperature must be True or False, got "
                             f"{params['exact_initial_temperature']!r}")
    if params["abort_min_distance"] is not None:
        check_positive("md", "abort_min_distance", params["abort_min_distance"])
    if params["stop_max_temperature"] is not None:
        check_positive("md", "stop_max_temperature", params["stop_max_temperature"])
    stop = params["stop_condition"]
    if stop is not None and not callable(stop):
        raise ParameterError(
            f"md: stop_condition must be a function f(atoms) -> bool, got {stop!r}")
    check_prefix(params["results_prefix"], "md", "results_prefix")

    needs_rng = integrator == "langevin" or bool(init_t)
    if needs_rng and seed is None:
        why = ("Langevin dynamics draws random forces" if integrator == "langevin"
               else "initial_temperature draws random Maxwell-Boltzmann velocities")
        raise ParameterError(
            f"md: {why}; pass seed=<int> (e.g. seed=1) so that the trajectories are "
            "reproducible, independent of how the work is split between processes")
    return _MDSettings(integrator, t_start, t_end, needs_rng)


# -- the operation ----------------------------------------------------------------------------

@operation("md", version="2", check=_check_md)
def md(atoms: Atoms, calculator: Any, steps: int, dt: float, integrator: str = "langevin",
       temperature: Optional[Temperature] = None, friction: Optional[float] = None,
       temperature_tau: Optional[float] = None, sample_interval: int = 1,
       initial_temperature: Optional[float] = None, exact_initial_temperature: bool = True,
       abort_min_distance: Optional[float] = None,
       stop_max_temperature: Optional[float] = None,
       stop_condition: Optional[Callable[[Atoms], bool]] = None,
       results_prefix: Optional[str] = None, rng: Optional[np.random.Generator] = None,
       ) -> list[Atoms]:
    """Run molecular dynamics from each configuration; return its sampled trajectory.

    calculator: an ASE calculator, a (constructor, args, kwargs) tuple or a registered name.
    steps: number of time steps; dt: time step in fs.
    integrator: "langevin" (NVT, needs seed), "velocityverlet" (NVE), "berendsen"
        (NVT, velocity rescaling) or "nose_hoover" (NVT, Nose-Hoover chain).
    temperature: thermostat target in K, or a ramp (T_start, T_end) interpolated
        linearly over the steps (not for nose_hoover).
    friction: Langevin friction in 1/fs (default 0.01).
    temperature_tau: Berendsen / Nose-Hoover time constant in fs (default 100 * dt).
    sample_interval: store the frames at steps 0, N, 2N, ... (steps // N + 1 frames).
    initial_temperature: draw Maxwell-Boltzmann velocities at this temperature (K), then
        remove centre-of-mass motion (and rotation, for non-periodic systems); None keeps
        the input's momenta.
    exact_initial_temperature: then rescale the velocities so that the first frame is at
        exactly initial_temperature (as wfl does). The default, because a small system's
        draw is far off (a 3-atom draw has a relative spread of sqrt(2/(3N)) = 47 %) and
        the first frames then sample another temperature than asked for; False keeps
        the canonical draw (a sample of the Maxwell-Boltzmann distribution).
    abort_min_distance: stop a trajectory as soon as two atoms (or periodic images) are
        closer than this (Å).
    stop_max_temperature: stop a trajectory as soon as its temperature exceeds this (K).
    stop_condition: stop a trajectory as soon as stop_condition(atoms) is true; it is
        called after every step (and at the start) with the current configuration, its
        calculator attached (results come from its cache), and must not modify it.
        A stop keeps the frames before it and stores the configuration that met the
        condition as the last frame, marked info["md_aborted"] = True and
        info["md_stop_reason"] (which condition, e.g. "min_distance < 1.6").
    results_prefix: prefix of the stored calculator results (default: as calculate);
        what the input has under it is not carried into the frames.
    """
    settings = _check_md(dict(integrator=integrator, steps=steps, dt=dt,
                              temperature=temperature, friction=friction,
                              temperature_tau=temperature_tau,
                              sample_interval=sample_interval,
                              initial_temperature=initial_temperature,
                              exact_initial_temperature=exact_initial_temperature,
                              abort_min_distance=abort_min_distance,
                              stop_max_temperature=stop_max_temperature,
                              stop_condition=stop_condition,
                              results_prefix=results_prefix),
                         None if (rng is None) else 0)
    if not isinstance(atoms, Atoms):
        raise TypeError(f"md takes Atoms, got {type(atoms).__name__}")
    calc, prefix, wanted = prepare_calculator(calculator, results_prefix)

    work = atoms.copy()
    clear_results(work, prefix)  # the frames carry this run's results only
    own_constraints = copy.deepcopy(work.constraints)
    _add_dynamics_constraints(work, settings)
    if initial_temperature is not None:
        _thermalize(work, float(initial_temperature), rng, bool(exact_initial_temperature))
    work.calc = calc
    dyn = _make_dynamics(work, settings, dt, friction, temperature_tau, rng)

    def target(step: int) -> Optional[float]:
        if settings.t_start is None or settings.t_end is None:
            return None
        frac = min(step, steps) / steps if steps else 0.0
        return settings.t_start + (settings.t_end - settings.t_start) * frac

    frames: list[Atoms] = []
    try:
        for _ in dyn.irun(steps):
            step = dyn.nsteps
            # the dynamics' atoms carry its constraints (Langevin's FixCom): their count
            kinetic_temperature = float(work.get_temperature())
            reason = _stop_reason(work, kinetic_temperature, abort_min_distance,
                                  stop_max_temperature, stop_condition)
            if reason is not None or step % sample_interval == 0:
                frame = work.copy()
                frame.set_constraint(copy.deepcopy(own_constraints))
                frame.info["md_step"] = step
                frame.info["md_time_fs"] = step * float(dt)
                frame.info["md_temperature_K"] = kinetic_temperature
                if settings.t_start is not None:
                    frame.info["md_target_temperature_K"] = _get_target(dyn, settings)
                if reason is not None:
                    frame.info["md_aborted"] = True
                    frame.info["md_stop_reason"] = reason
                store_calculated(frame, calc, wanted, prefix)
                frames.append(frame)
            if reason is not None:
                break
            if settings.t_start != settings.t_end:
                # the step that makes frame n+1 runs with the target of step n+1
                _set_target(dyn, settings.integrator, target(step + 1))
    finally:
        work.calc = None
    return frames


def _stop_reason(atoms: Atoms, temperature_K: float, min_distance: Optional[float],
                 max_temperature: Optional[float],
                 condition: Optional[Callable[[Atoms], bool]]) -> Optional[str]:
    """Why the trajectory stops at this configuration, or None to go on."""
    if min_distance is not None and _closer_than(atoms, float(min_distance)):
        return f"min_distance < {float(min_distance):g}"
    if max_temperature is not None and temperature_K > float(max_temperature):
        return f"temperature > {float(max_temperature):g}"
    if condition is not None and condition(atoms):
        return f"stop_condition {getattr(condition, '__qualname__', type(condition).__name__)}"
    return None


def _add_dynamics_constraints(atoms: Atoms, settings: _MDSettings) -> None:
    """Constraints the integrator needs, set before velocities are drawn so that they count.

    Langevin: FixCom, ASE's replacement for its deprecated fixcm=True, unless the input
    has constraints of its own; the frames do not keep it.
    """
    from ase.constraints import FixCom

    if settings.integrator == "langevin" and not atoms.constraints and len(atoms) > 1:
        atoms.set_constraint(FixCom())


def _thermalize(atoms: Atoms, temperature_K: float, rng: Optional[np.random.Generator],
                exact: bool = True) -> None:
    """Maxwell-Boltzmann momenta from rng, without centre-of-mass motion (and rotation).

    exact: then rescale them to temperature_K, counting atoms' degrees of freedom.
    """
    from ase.md import velocitydistribution as vd

    if temperature_K == 0:
        atoms.set_momenta(np.zeros((len(atoms), 3)))
        return
    if rng is None:  # pragma: no cover - the parameter check requires a seed
        raise ParameterError("md: initial_temperature needs seed=<int>")
    if hasattr(vd, "thermalize_momenta"):  # ase >= 3.29
        vd.thermalize_momenta(atoms, temperature_K, rng=rng)
    else:  # pragma: no cover - older ase
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    # ase >= 3.29 rescales to the draw's temperature by default: keep the canonical draw
    vd.Stationary(atoms, preserve_temperature=False)
    if not atoms.pbc.any():  # rotation is not a free motion of a periodic system
        with np.errstate(invalid="ignore", divide="ignore"):  # a linear molecule: Ip = 0
            vd.ZeroRotation(atoms, preserve_temperature=False)
    if exact and atoms.get_kinetic_energy() > 0:
        vd.force_temperature(atoms, temperature_K)


def _make_dynamics(atoms: Atoms, settings: _MDSettings, dt: float, friction: Optional[float],
                   temperature_tau: Optional[float],
                   rng: Optional[np.random.Generator]) -> Any:
    timestep = float(dt) * units.fs
    tau = (float(temperature_tau) if temperature_tau is not None else 100.0 * float(dt)) \
        * units.fs
    if settings.integrator == "velocityverlet":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=timestep)
    temperature_K = settings.t_start
    if temperature_K is None:  # pragma: no cover - the parameter check requires one
        raise ParameterError(f"md: integrator={settings.integrator!r} needs a temperature")
    if settings.integrator == "langevin":
        from ase.md.langevin import Langevin

        if rng is None:  # pragma: no cover - the parameter check requires a seed
            raise ParameterError("md: integrator='langevin' needs seed=<int>")
        fr = DEFAULT_FRICTION if friction is None else float(friction)
        return Langevin(atoms, timestep=timestep, temperature_K=temperature_K,
                        friction=fr / units.fs, fixcm=False, rng=rng)
    if settings.integrator == "berendsen":
        from ase.md.nvtberendsen import NVTBerendsen

        return NVTBerendsen(atoms, timestep=timestep, temperature_K=temperature_K, taut=tau)
    try:
        from ase.md.nose_hoover_chain import NoseHooverChainNVT
    except ImportError:  # pragma: no cover - older ase
        raise ParameterError(
            "md: integrator='nose_hoover' needs ase.md.nose_hoover_chain (ase >= 3.24); "
            "upgrade ase or use 'langevin' or 'berendsen'") from None
    return NoseHooverChainNVT(atoms, timestep=timestep, temperature_K=temperature_K,
                              tdamp=tau)


def _set_target(dyn: Any, integrator: str, temperature_K: Optional[float]) -> None:
    if temperature_K is not None and integrator in ("langevin", "berendsen"):
        dyn.set_temperature(temperature_K=temperature_K)


def _get_target(dyn: Any, settings: _MDSettings) -> float:
    """The thermostat's current target in K, read back from the integrator."""
    if settings.integrator == "langevin":
        return float(dyn.temp / units.kB)
    if settings.integrator == "berendsen":
        return float(dyn.get_temperature())
    return float(settings.t_start or 0.0)  # nose_hoover: constant, not exposed by ase


def _closer_than(atoms: Atoms, distance: float) -> bool:
    """True if any two atoms (or an atom and a periodic image) are closer than distance."""
    if len(atoms) < 2 and not atoms.pbc.any():
        return False
    from ase.neighborlist import neighbor_list

    return len(neighbor_list("d", atoms, distance)) > 0


__all__ = ["md"]
