"""Running a code's program: its command line, its environment, its process.

A command is a whole command line, MPI launcher included, split like a shell would and
never run through one; extra environment variables go in front of it with ``env``
(``os.environ`` is never changed). :func:`run_program` runs it with stdin closed and
stdout/stderr to files, in its own session, so that an interruption (a time limit,
Ctrl-C) kills the program and its children before the exception goes on.

Every program gets a private, empty ``TMPDIR`` of its own (removed when it ends; an
``env`` that sets ``TMPDIR`` wins). Programs linked with MPI need it: Open MPI keeps its
session directory in ``$TMPDIR/ompi.<host>.<uid>``, and two runs that start at once on
one machine race to create it; the loser stops with "A call to mkdir was unable to create
the desired directory ... File exists" (pw.x from Debian, 2 workers, seen in CI).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import ParameterError

log = logging.getLogger("wflp")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CannotRun(Exception):
    """The program could not be started (not found, not executable)."""

    def __init__(self, program: str, why: str):
        super().__init__(f"cannot run {program!r} ({why})")
        self.program = program
        self.why = why


def check_command(value: Optional[str], code: str, suffix: str, default: str,
                  name: str) -> str:
    """The command line: *value*, else ``$WFLP_<CODE>_<SUFFIX>``, else *default*; checked
    to be splittable ("" when neither names one and the code has no default: the ASE
    calculator knows how to run)."""
    if value is None:
        value = os.environ.get(f"WFLP_{code.upper()}_{suffix}") or default
    if isinstance(value, str) and not value.strip() and not default:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(
            f"{code}: {name} must name the program to run (e.g. {default!r}), got "
            f"{value!r}; pass {name}= or set WFLP_{code.upper()}_{suffix}")
    try:
        shlex.split(value)
    except ValueError as err:
        raise ParameterError(f"{code}: {name} {value!r} cannot be split into words: "
                             f"{err}") from None
    return value


def check_env(env: Any, code: str) -> dict[str, str]:
    """Extra environment variables for the program, as strings; names checked."""
    if env is not None and not isinstance(env, dict):
        raise ParameterError(f"{code}: env must be a table of variables, e.g. "
                             f"{{'OMP_NUM_THREADS': '1'}}, got {env!r}")
    checked = {str(k): str(v) for k, v in (env or {}).items()}
    env_prefix(checked)
    return checked


def env_prefix(env: Optional[dict[str, Any]]) -> list[str]:
    """argv words that run a command with extra environment variables: ["env", "K=V" ...]."""
    if not env:
        return []
    words = ["env"]
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_NAME.match(key):
            raise ParameterError(f"env: {key!r} is not an environment variable name")
        words.append(f"{key}={value}")
    return words


def with_env(command: str, env: Optional[dict[str, str]]) -> str:
    """*command* with the ``env`` words in front (a command line, for ASE's calculators)."""
    prefix = env_prefix(env)
    return f"{shlex.join(prefix)} {command}" if prefix and command else command


#: private TMPDIRs of programs that have ended, not yet removed (see _retire)
_retired: list[str] = []
#: how many may wait; beyond that the oldest are removed whatever they hold
MAX_RETIRED = 8
#: how long a run's TMPDIR is given to empty itself before it is retired
SETTLE_S = 1.0


@contextlib.contextmanager
def private_tmpdir() -> Iterator[dict[str, str]]:
    """The environment for one program run: ``os.environ`` with ``TMPDIR`` pointing at a
    new private (0700) folder in the current one, removed once the program and what it
    left running are done with it (:func:`_retire`). Where no folder can be made there (a
    full or read-only TMPDIR), the program runs with ``os.environ`` as it is, as it would
    without wflp."""
    base = os.environ.get("TMPDIR")        # read now: tempfile caches the first one
    try:
        folder = tempfile.mkdtemp(prefix="wflp-tmp-",
                                  dir=base if base and os.path.isdir(base) else None)
    except OSError as err:
        log.debug("no private TMPDIR for the program (%s); it shares %s", err,
                  base or tempfile.gettempdir())
        yield dict(os.environ)
        return
    try:
        yield {**os.environ, "TMPDIR": folder}
    finally:
        deadline = time.monotonic() + SETTLE_S
        while os.listdir(folder) and time.monotonic() < deadline:
            time.sleep(0.01)               # Open MPI's daemon is still tidying up
        _retire(folder)


def _retire(folder: str) -> None:
    """Remove *folder* and the retired folders before it once they are empty. Open MPI's
    daemon (``orted``, in a session of its own) outlives the program by a moment and
    removes its session folder itself; taken from under it, it writes "PMIX ERROR:
    NO-PERMISSIONS" into the program's stderr file. So a run's folder gets SETTLE_S to
    empty itself; one that is not empty then waits for a later run, or the end of this
    process; only the oldest beyond MAX_RETIRED are removed with what they hold."""
    _retired.append(folder)
    for path in list(_retired):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            continue                      # not empty yet
        _retired.remove(path)
    while len(_retired) > MAX_RETIRED:
        shutil.rmtree(_retired.pop(0), ignore_errors=True)


def _remove_retired() -> None:
    while _retired:
        shutil.rmtree(_retired.pop(), ignore_errors=True)


atexit.register(_remove_retired)
# worker processes of multiprocessing end with os._exit, which skips atexit; they run
# multiprocessing's own finalizers first
multiprocessing.util.Finalize(None, _remove_retired, exitpriority=0)


def run_program(argv: Sequence[str], workdir: Path, stdout: str, stderr: Optional[str] = None,
                started: Optional[Callable[[], None]] = None) -> int:
    """Run *argv* in *workdir* with stdout (and stderr, else into stdout) to those files
    there and stdin closed; its exit status. *started* is called once the files are open.
    Raises :class:`CannotRun` if the program cannot be started. It runs with a private
    ``TMPDIR`` (:func:`private_tmpdir`)."""
    argv = list(argv)
    with open(workdir / stdout, "wb") as out, \
            (open(workdir / stderr, "wb") if stderr else contextlib.nullcontext(None)) as err, \
            private_tmpdir() as environ:
        if started is not None:
            started()
        try:
            proc = subprocess.Popen(argv, cwd=workdir, env=environ, stdout=out,
                                    stderr=err if err is not None else subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as error:
            raise CannotRun(argv[0] if argv else "", error.strerror or str(error)) from error
        try:
            return proc.wait()
        except BaseException:
            kill_group(proc)
            raise


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Kill a program started in its own session, and its children; wait for it."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


def exit_status_of(err: BaseException) -> Optional[int]:
    """The exit status in what ASE raised when it ran the program itself, if it says."""
    code = getattr(err, "returncode", None)
    if isinstance(code, int):
        return code
    match = re.search(r"(?:returned an error:|with error code) *(-?\d+)", str(err))
    return int(match.group(1)) if match else None


__all__ = ["CannotRun", "check_command", "check_env", "env_prefix", "exit_status_of",
           "kill_group", "private_tmpdir", "run_program", "with_env"]
