"""Systems: where queued jobs run, read from a TOML file when first needed (never at import).

The first of these files that exists is used:

1. ``./wflp-systems.toml`` (the project's own, in the working directory);
2. the file named by ``$WFLP_SYSTEMS``;
3. ``~/.config/wflp/systems.toml`` (``$XDG_CONFIG_HOME/wflp/systems.toml``).

Each ``[systems.NAME]`` table describes one system; the smallest is::

    [systems.ws]
    scheduler = "local"

Every key, and what a value may be, is in :data:`SYSTEM_KEYS`; an error names the
file, the system and the key. Durations accept "90m", "1:30:00", "1h", "2d",
"1-12:00:00" or a number of seconds; memory "500M", "4G", "1T" or a number of MiB.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

from ..errors import ParameterError, WflpError

ENV_SYSTEMS = "WFLP_SYSTEMS"
PROJECT_FILE = "wflp-systems.toml"


class ConfigError(WflpError):
    """The systems configuration is missing, unreadable or invalid."""


# -- durations and sizes ------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any, what: str = "duration") -> int:
    """Seconds in *value*: "90m", "1:30:00", "1h", "2d", "1-12:00:00", "45s" or a number of
    seconds; ParameterError naming *what* otherwise."""
    if isinstance(value, bool):
        raise ParameterError(f"{what}: expected a duration such as '1h', got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ParameterError(f"{what}: a duration must be positive, got {value!r}")
        return int(round(value))
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"{what}: expected a duration such as '90m', '1:30:00', '1h' or "
                             f"'2d', got {value!r}")
    text = value.strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d)", text)
    if m:
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
        if not m:
            raise ParameterError(f"{what}: cannot read {value!r} as a duration; write it like "
                                 "'90m', '1:30:00', '1h' or '2d'")
        days, first, second, third = m.groups()
        parts = [int(p) for p in (first, second, third) if p is not None]
        if len(parts) == 1 and days is None:
            seconds = parts[0]                      # "3600": seconds
        elif len(parts) == 1:
            seconds = parts[0] * 3600               # "1-12": days-hours
        elif len(parts) == 2:
            seconds = parts[0] * 3600 + parts[1] * 60 if days else parts[0] * 60 + parts[1]
        else:
            seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
        seconds += int(days or 0) * 86400
    if seconds <= 0:
        raise ParameterError(f"{what}: a duration must be positive, got {value!r}")
    return int(round(seconds))


def format_hms(seconds: int) -> str:
    """H:MM:SS (hours may exceed 24), the form most schedulers accept."""
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def format_dhms(seconds: int) -> str:
    """D-HH:MM:SS (Slurm's form)."""
    days, rest = divmod(int(seconds), 86400)
    return f"{days}-{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


_SIZES = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


def parse_memory(value: Any, what: str = "memory") -> int:
    """MiB in *value*: "500M", "4G", "4GB", "1T" or a number of MiB."""
    if isinstance(value, bool):
        raise ParameterError(f"{what}: expected a size such as '4G', got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ParameterError(f"{what}: a size must be positive, got {value!r}")
        return int(value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt])i?b?\s*", str(value).lower())
    if not m:
        raise ParameterError(f"{what}: cannot read {value!r} as a size; write it like '500M' "
                             "or '4G'")
    return max(1, int(float(m.group(1)) * _SIZES[m.group(2)]))


# -- resources ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Resources:
    """What a job asks for. max_time in seconds, max_memory in MiB (None: the system's
    default)."""

    num_cores: int = 1
    num_nodes: int = 1
    max_time: Optional[int] = None
    max_memory: Optional[int] = None
    partition: Optional[str] = None

    @classmethod
    def from_dict(cls, given: Optional[dict], where: str = "resources") -> Resources:
        """Resources from a dict of the user's (``max_time="1h"``, ``max_memory="4G"``;
        ``queue`` for partition); ParameterError naming *where* for an unknown key or a
        bad value."""
        given = dict(given or {})
        known = {"num_cores", "num_nodes", "max_time", "max_memory", "partition", "queue"}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ParameterError(f"{where}: unknown key(s) {unknown}; resources are "
                                 f"{', '.join(sorted(known - {'queue'}))}")
        if "queue" in given:  # the PBS/SGE word for a partition
            given.setdefault("partition", given.pop("queue"))
        out: dict[str, Any] = {}
        for key in ("num_cores", "num_nodes"):
            if key in given:
                value = given[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ParameterError(f"{where}: {key} must be a whole number >= 1, "
                                         f"got {value!r}")
                out[key] = value
        if given.get("max_time") is not None:
            out["max_time"] = parse_duration(given["max_time"], f"{where}: max_time")
        if given.get("max_memory") is not None:
            out["max_memory"] = parse_memory(given["max_memory"], f"{where}: max_memory")
        if given.get("partition") is not None:
            if not isinstance(given["partition"], str) or not given["partition"]:
                raise ParameterError(f"{where}: partition must be a name, got "
                                     f"{given['partition']!r}")
            out["partition"] = given["partition"]
        return cls(**out)

    def to_dict(self) -> dict:
        """The resources as a plain dict (max_time in seconds, max_memory in MiB)."""
        return dataclasses.asdict(self)


# -- systems --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Partition:
    """A partition (queue) of a system and its limits: cores per node, max_time in
    seconds, max_memory in MiB per node (None: not stated)."""

    name: str
    cores: Optional[int] = None         # cores per node
    max_time: Optional[int] = None      # seconds
    max_memory: Optional[int] = None    # MiB per node


@dataclasses.dataclass(frozen=True)
class SystemConfig:
    """One ``[systems.NAME]`` table, validated."""

    name: str
    scheduler: str
    source: str                          # the file it came from, for messages
    host: Optional[str] = None           # "user@host[:port]"; None: this machine
    remote_root: str = "~/.wflp/jobs"    # where job directories go on the system
    python: Optional[str] = None         # runs jobs, after the start commands (see interpreter)
    commands: tuple = ()                 # run at the start of every job (module load ...)
    header: tuple = ()                   # extra scheduler header lines
    command_prefix: tuple = ()           # put before every scheduler command
    poll_interval: Optional[float] = None  # seconds between status calls (None: scheduler's)
    partitions: tuple = ()               # Partition objects
    max_cores: Optional[int] = None      # the local scheduler: cores jobs may use at once
    identity_file: Optional[str] = None  # SSH key
    known_hosts: Optional[str] = None    # SSH known_hosts file (default ~/.ssh/known_hosts)
    connect_timeout: float = 20.0        # seconds, SSH connection
    command_timeout: float = 120.0       # seconds, each remote command
    reconnect_attempts: int = 5          # SSH: attempts after a drop (waits 1, 2, 4 s ...)

    @property
    def is_remote(self) -> bool:
        """True if the system is reached over SSH (it has a host)."""
        return self.host is not None

    @property
    def interpreter(self) -> str:
        """The Python that runs jobs: ``python`` if set; else, on this machine, the
        driver's own interpreter (the one where wflp is installed, a virtual environment's
        included), and python3 on an SSH host."""
        if self.python:
            return self.python
        return "python3" if self.is_remote else sys.executable

    def user_host_port(self) -> tuple[Optional[str], str, Optional[int]]:
        """(user, host, port) of ``host``."""
        assert self.host is not None
        user, _, rest = self.host.rpartition("@")
        hostname, port = rest, None
        m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:]+)(?::(\d+))?", rest)
        if m:
            hostname = m.group(1) or m.group(3)
            port_text = m.group(2) or m.group(4)
            port = int(port_text) if port_text else None
        return (user or None), hostname, port

    def partition(self, name: Optional[str]) -> Optional[Partition]:
        """The partition called *name*; None if the system declares none by that name."""
        for p in self.partitions:
            if p.name == name:
                return p
        return None

    def check_resources(self, resources: Resources, where: str) -> None:
        """Refuse resources the system's partition cannot give (before submitting)."""
        if resources.partition is None:
            return
        part = self.partition(resources.partition)
        if part is None:
            if self.partitions:
                raise ParameterError(
                    f"{where}: system {self.name!r} has no partition {resources.partition!r} "
                    f"(it has {', '.join(p.name for p in self.partitions)}; see {self.source})")
            return
        if part.cores and resources.num_cores > part.cores:
            raise ParameterError(f"{where}: {resources.num_cores} cores asked, but partition "
                                 f"{part.name!r} of {self.name!r} has {part.cores} per node")
        if part.max_time and resources.max_time and resources.max_time > part.max_time:
            raise ParameterError(f"{where}: max_time {format_hms(resources.max_time)} is more "
                                 f"than partition {part.name!r} of {self.name!r} allows "
                                 f"({format_hms(part.max_time)})")
        if part.max_memory and resources.max_memory and resources.max_memory > part.max_memory:
            raise ParameterError(f"{where}: max_memory {resources.max_memory} MiB is more "
                                 f"than partition {part.name!r} of {self.name!r} allows "
                                 f"({part.max_memory} MiB)")


# key -> (kind, description) for the docs and the checks
SYSTEM_KEYS = {
    "scheduler": ("name", "a registered scheduler (`local` is built in; plugins add slurm, "
                          "sge, pbs)"),
    "host": ("text", "`user@host[:port]` reached over SSH; absent: this machine"),
    "remote_root": ("path", "where job directories go on the system (default ~/.wflp/jobs)"),
    "python": ("text", "the interpreter that runs jobs after `commands` (default: on this "
               "machine the driver's own interpreter, on an SSH host python3)"),
    "commands": ("list", "shell lines run at the start of every job (module loads, venv "
                         "activation)"),
    "header": ("list", "extra scheduler header lines (e.g. `#SBATCH --account=abc`)"),
    "command_prefix": ("list", "words put before every scheduler command (e.g. "
                               "`[\"ip\", \"netns\", \"exec\", \"sge\"]`)"),
    "poll_interval": ("number", "seconds between status calls, at least (default: the "
                                "scheduler's, 0.5 for local, 30 for queueing systems)"),
    "partitions": ("table", "`[systems.NAME.partitions.P]` with cores (per node), max_time, "
                            "max_memory"),
    "max_cores": ("int", "local scheduler: cores its jobs may use at once (default: all)"),
    "identity_file": ("path", "SSH private key (default: ssh's own choice)"),
    "known_hosts": ("path", "SSH known_hosts file (default ~/.ssh/known_hosts)"),
    "connect_timeout": ("number", "seconds to open the SSH connection (default 20)"),
    "command_timeout": ("number", "seconds each remote command may take (default 120)"),
    "reconnect_attempts": ("int", "SSH: attempts to reconnect after a drop, waiting 1, 2, 4 ... "
                                  "s between them, before a clear error (default 5)"),
}


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib


def config_candidates() -> list[Path]:
    """The files looked at, in order."""
    out = [Path.cwd() / PROJECT_FILE]
    env = os.environ.get(ENV_SYSTEMS)
    if env:
        out.append(Path(env).expanduser())
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    out.append(Path(base) / "wflp" / "systems.toml")
    return out


def config_path() -> Optional[Path]:
    """The systems file in use: the first of the candidates that exists, or None;
    ConfigError if $WFLP_SYSTEMS names a file that does not exist."""
    for path in config_candidates():
        if path.is_file():
            return path
    env = os.environ.get(ENV_SYSTEMS)
    if env and not Path(env).expanduser().is_file():
        raise ConfigError(f"${ENV_SYSTEMS}={env!r} names no file; create it, or unset it")
    return None


def load_systems(path: Optional[Path] = None) -> dict[str, SystemConfig]:
    """All systems of the configuration file (validated)."""
    path = path or config_path()
    if path is None:
        raise ConfigError(
            "no systems are configured: create wflp-systems.toml here, or "
            "~/.config/wflp/systems.toml (or set $WFLP_SYSTEMS), with at least\n"
            "[systems.ws]\nscheduler = \"local\"\n(see docs/remote.md)")
    try:
        with open(path, "rb") as fd:
            data = _toml().load(fd)
    except OSError as err:
        raise ConfigError(f"cannot read {str(path)!r}: {err.strerror or err}") from None
    except ValueError as err:
        raise ConfigError(f"{str(path)!r} is not valid TOML: {err}") from None
    unknown = sorted(set(data) - {"systems"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level table(s) {unknown}; systems go in "
                          "[systems.NAME] tables")
    systems = data.get("systems")
    if not isinstance(systems, dict) or not systems:
        raise ConfigError(f"{path}: no [systems.NAME] table; add e.g. [systems.ws] with "
                          "scheduler = \"local\"")
    return {name: _system(name, table, str(path)) for name, table in systems.items()}


def get_system(name: str) -> SystemConfig:
    """The system called *name*; ConfigError listing the configured ones otherwise."""
    systems = load_systems()
    if name not in systems:
        path = config_path()
        raise ConfigError(f"no system named {name!r} in {path}; configured: "
                          f"{', '.join(sorted(systems))}")
    return systems[name]


def _system(name: str, table: Any, source: str) -> SystemConfig:
    where = f"{source}: [systems.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(SYSTEM_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: "
                          f"{', '.join(sorted(SYSTEM_KEYS))}")
    if "scheduler" not in table:
        raise ConfigError(f"{where}: missing key 'scheduler' (e.g. scheduler = \"local\")")
    values: dict[str, Any] = {"name": name, "source": source}
    for key, value in table.items():
        kind = SYSTEM_KEYS[key][0]
        label = f"{where}: {key}"
        if kind in ("name", "text", "path"):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{label} must be a non-empty string, got {value!r}")
            values[key] = value.strip()
        elif kind == "list":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{label} must be a list of strings, got {value!r}")
            values[key] = tuple(value)
        elif kind in ("number", "int"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            if kind == "int":
                ok = ok and isinstance(value, int)
            if not ok:
                raise ConfigError(f"{label} must be a {'whole ' if kind == 'int' else ''}number "
                                  f"> 0, got {value!r}")
            values[key] = value
        elif key == "partitions":
            values[key] = _partitions(value, label)
    if "host" in values and not re.fullmatch(r"(?:[^@\s]+@)?[^@\s:\[\]]+(?::\d+)?|"
                                             r"(?:[^@\s]+@)?\[[^\]\s]+\](?::\d+)?",
                                             values["host"]):
        raise ConfigError(f"{where}: host must look like user@host or user@host:port, got "
                          f"{values['host']!r}")
    from ..plugins import get_scheduler

    try:
        get_scheduler(values["scheduler"])
    except WflpError as err:
        raise ConfigError(f"{where}: scheduler: {err}") from None
    return SystemConfig(**values)


def _partitions(value: Any, label: str) -> tuple:
    if not isinstance(value, dict):
        raise ConfigError(f"{label} must be a table of [partitions.NAME] tables")
    out = []
    for pname, ptable in value.items():
        where = f"{label}.{pname}"
        if not isinstance(ptable, dict):
            raise ConfigError(f"{where} must be a table (cores, max_time, max_memory)")
        unknown = sorted(set(ptable) - {"cores", "max_time", "max_memory"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; use cores, max_time, "
                              "max_memory")
        try:
            cores = ptable.get("cores")
            if cores is not None and (isinstance(cores, bool) or not isinstance(cores, int)
                                      or cores < 1):
                raise ParameterError(f"cores must be a whole number >= 1, got {cores!r}")
            max_time = ptable.get("max_time")
            max_memory = ptable.get("max_memory")
            out.append(Partition(
                pname, cores,
                parse_duration(max_time, "max_time") if max_time is not None else None,
                parse_memory(max_memory, "max_memory") if max_memory is not None else None))
        except ParameterError as err:
            raise ConfigError(f"{where}: {err}") from None
    return tuple(out)


__all__ = ["ConfigError", "ENV_SYSTEMS", "PROJECT_FILE", "Partition", "Resources", "SYSTEM_KEYS",
           "SystemConfig", "config_candidates", "config_path", "format_dhms", "format_hms",
           "get_system", "load_systems", "parse_duration", "parse_memory"]
