"""What runs inside a queued job: ``python -m wflp.remote.runner JOBDIR [options]``.

The job directory holds ``call.pkl`` (the cloudpickled function and arguments).
A supervisor process writes the markers the driver reads, and runs the call in a
child process so that it can tell how the call ended:

- ``waiting``   while it waits for free cores (the local scheduler's core limit);
- ``started``   when the call starts (host, pid, time);
- ``succeeded`` after ``result.pkl`` is complete;
- ``failed``    with the exception's type and message (``error.pkl``, ``traceback.txt``),
                or how the process died (a signal, an exit status);
- ``timeout``   when it ran past ``--time-limit`` (the local scheduler's max_time);
- ``terminated`` when the job was sent SIGTERM (cancelled, or the scheduler's limit).

Every marker is written under a temporary name and renamed, so the driver never
reads half of one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Optional

SUCCEEDED, FAILED, STARTED, WAITING = "succeeded", "failed", "started", "waiting"
TIMEOUT, TERMINATED, CANCEL_REQUESTED = "timeout", "terminated", "cancel_requested"
RESULT, ERROR, TRACEBACK, CALL = "result.pkl", "error.pkl", "traceback.txt", "call.pkl"
FINAL_MARKERS = (SUCCEEDED, FAILED, TIMEOUT)


def write_marker(folder: Path, name: str, data: Any = None) -> None:
    """Write the marker file *name* (the time and *data*, as JSON) in a job's folder,
    whole or not at all: the driver reads the job's progress from these."""
    tmp = folder / f".{name}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({"time": time.time(), **(data or {})}))
    os.replace(tmp, folder / name)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fd:
        fd.write(data)
        fd.flush()
        os.fsync(fd.fileno())
    os.replace(tmp, path)


# -- the call (child process) ---------------------------------------------------------------

def run_call(folder: Path) -> int:
    """Load and run the call; write result.pkl + succeeded, or error.pkl + failed."""
    import cloudpickle

    os.chdir(folder)
    try:
        with open(folder / CALL, "rb") as fd:
            func, args, kwargs = cloudpickle.load(fd)
        result = func(*args, **kwargs)
        data = cloudpickle.dumps(result)
    except BaseException as err:  # noqa: BLE001 - every failure must reach the driver
        text = traceback.format_exc()
        (folder / TRACEBACK).write_text(text)
        try:
            payload = cloudpickle.dumps(err)
            cloudpickle.loads(payload)  # an exception that cannot come back is sent as text
        except Exception:
            payload = cloudpickle.dumps(RuntimeError(f"{type(err).__name__}: {err}"))
        _write_atomic(folder / ERROR, payload)
        write_marker(folder, FAILED, {"type": type(err).__name__,
                                      "message": str(err)[:2000]})
        sys.stderr.write(text)
        return 1
    _write_atomic(folder / RESULT, data)
    write_marker(folder, SUCCEEDED)
    return 0


# -- cores (the local scheduler) ---------------------------------------------------------------

def acquire_cores(slots: Path, cores: int, max_cores: int, folder: Path) -> list[int]:
    """Hold *cores* of the *max_cores* slot locks under *slots*, waiting for them."""
    import fcntl

    if cores > max_cores:
        raise SystemExit(f"the job asks for {cores} cores, but the system allows {max_cores}")
    slots.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_marker(folder, WAITING, {"cores": cores})
    while True:
        held: list[int] = []
        for i in range(max_cores):
            fd = os.open(slots / f"core-{i}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held.append(fd)
                if len(held) == cores:
                    return held
            except BlockingIOError:
                os.close(fd)
        for fd in held:  # not enough free: give back, and try again in a moment
            os.close(fd)
        time.sleep(0.2)


# -- the supervisor -----------------------------------------------------------------------------

def supervise(folder: Path, time_limit: Optional[int], cores: Optional[int],
              max_cores: Optional[int]) -> int:
    """Run the call in a child process (see the module docstring). With *cores* (the
    local scheduler), first hold that many of the system's *max_cores* (default: this
    machine's) core slots."""
    held = acquire_cores(folder.parent / ".slots", cores, max_cores or os.cpu_count() or 1,
                         folder) if cores else []
    child: Optional[subprocess.Popen] = None
    terminated = False

    def on_term(signum, frame):
        # no waiting here: the main flow is inside child.wait(), which holds its lock
        nonlocal terminated
        terminated = True
        write_marker(folder, TERMINATED, {"signal": signum})
        if child is not None and child.poll() is None:
            child.terminate()
            timer = threading.Timer(10.0, _kill_if_alive, (child,))
            timer.daemon = True
            timer.start()

    signal.signal(signal.SIGTERM, on_term)
    write_marker(folder, STARTED, {"host": socket.gethostname(), "pid": os.getpid()})
    child = subprocess.Popen([sys.executable, "-m", "wflp.remote.runner", str(folder),
                              "--call"])
    try:
        code = child.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        write_marker(folder, TIMEOUT, {"limit_s": time_limit})
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return 124
    finally:
        for fd in held:
            os.close(fd)
    if terminated or code == -signal.SIGTERM:
        # A scheduler signals every process of the job, so the child may die of the
        # SIGTERM before our handler has run: still the scheduler's doing (cancel, time
        # limit), and the scheduler, not a "failed" marker, says how the job ended.
        if not (folder / TERMINATED).exists():
            write_marker(folder, TERMINATED, {"signal": int(signal.SIGTERM)})
        return 128 + signal.SIGTERM
    if code != 0 and not (folder / FAILED).exists():
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        write_marker(folder, FAILED, {"type": "", "message": f"the job's process {how}",
                                      "exit_code": code})
    return 0 if code == 0 else 1


def _kill_if_alive(child: subprocess.Popen) -> None:
    try:
        if child.poll() is None:
            child.kill()
    except OSError:
        pass


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m wflp.remote.runner JOBDIR``: run the job's call under the runner's
    limits (time, cores); the exit status is the job's."""
    parser = argparse.ArgumentParser(prog="python -m wflp.remote.runner",
                                     description="Run the call of a wflp job directory.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--call", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--time-limit", type=int, default=None)
    parser.add_argument("--cores", type=int, default=None)
    parser.add_argument("--max-cores", type=int, default=None)
    args = parser.parse_args(argv)
    folder = args.folder.resolve()
    if args.call:
        return run_call(folder)
    return supervise(folder, args.time_limit, args.cores, args.max_cores)


if __name__ == "__main__":
    sys.exit(main())
