"""Transports: how the driver reaches a system's files and commands.

:class:`LocalTransport` is this machine. :class:`SSHTransport` reaches a login
node with paramiko (imported only when a system has a host): one connection per
system for the life of the driver, reopened after a drop with bounded backoff,
a timeout on every command, files moved with one SFTP session, and host keys
checked against known_hosts (an unknown or changed key is refused, never added).

Commands are argv lists; over SSH each word is quoted with shlex.quote, so no
user data ever reaches a shell unquoted.
"""

from __future__ import annotations

import abc
import logging
import os
import shlex
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TypeVar

from ..errors import WflpError
from .scheduler import CommandResult

if TYPE_CHECKING:
    from .config import SystemConfig

_T = TypeVar("_T")

log = logging.getLogger("wflp")


class TransportError(WflpError):
    """A system cannot be reached (SSH refused, dropped, a host key problem, a timeout)."""


class Transport(abc.ABC):
    """Files and commands on a system."""

    host_label = "this machine"

    @abc.abstractmethod
    def run(self, argv: list[str], timeout: Optional[float] = None) -> CommandResult:
        """Run *argv* on the system (TransportError if it cannot be reached or times out)."""

    @abc.abstractmethod
    def makedirs(self, path: str) -> None:
        """Create *path* (and parents) private to the user (0700)."""

    @abc.abstractmethod
    def put(self, local: Path, remote: str) -> None:
        """Copy the local file *local* to *remote* on the system."""

    @abc.abstractmethod
    def get(self, remote: str, local: Path) -> None:
        """Copy *remote* on the system to the local file *local*."""

    @abc.abstractmethod
    def read_bytes(self, remote: str) -> bytes:
        """The content of the file *remote*."""

    @abc.abstractmethod
    def write_bytes(self, remote: str, data: bytes) -> None:
        """Write *data* to *remote*, replacing it whole (never half-written)."""

    @abc.abstractmethod
    def listdir(self, remote: str) -> list[str]:
        """The names of the entries of the folder *remote*."""

    @abc.abstractmethod
    def exists(self, remote: str) -> bool:
        """Whether *remote* exists on the system."""

    @abc.abstractmethod
    def remove_tree(self, remote: str) -> None:
        """Remove *remote* and everything under it (nothing if it is gone)."""

    @abc.abstractmethod
    def expand(self, path: str) -> str:
        """*path* with ``~`` expanded on the system, made absolute."""

    def list_markers(self, folders: list[str]) -> dict[str, set]:
        """{folder: names of its entries} for many folders at once (missing: empty)."""
        return {f: set(self.listdir(f)) if self.exists(f) else set() for f in folders}

    def close(self) -> None:  # noqa: B027 - optional: most transports hold nothing
        """Release what the transport holds open (a connection)."""


class LocalTransport(Transport):
    """This machine."""

    def run(self, argv: list[str], timeout: Optional[float] = None) -> CommandResult:
        """Run *argv* here; a missing program is exit status 127, as in a shell."""
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except FileNotFoundError as err:
            return CommandResult(tuple(argv), 127, "", f"{argv[0]}: {err.strerror}")
        except subprocess.TimeoutExpired:
            raise TransportError(f"`{shlex.join(argv)}` did not finish within {timeout:g} s"
                                 ) from None
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def makedirs(self, path: str) -> None:
        """Create *path* and its parents, private to the user (0700)."""
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)

    def put(self, local: Path, remote: str) -> None:
        """Copy *local* to *remote* (nothing if they are the same file)."""
        if os.path.abspath(local) != os.path.abspath(remote):
            shutil.copyfile(local, remote)

    def get(self, remote: str, local: Path) -> None:
        """Copy *remote* to *local* (nothing if they are the same file)."""
        if os.path.abspath(local) != os.path.abspath(remote):
            shutil.copyfile(remote, local)

    def read_bytes(self, remote: str) -> bytes:
        """The content of the file *remote*."""
        with open(remote, "rb") as fd:
            return fd.read()

    def write_bytes(self, remote: str, data: bytes) -> None:
        """Write *data* to *remote* through a temporary file, so it is never half-written."""
        tmp = f"{remote}.tmp-{os.getpid()}"
        with open(tmp, "wb") as fd:
            fd.write(data)
        os.replace(tmp, remote)

    def listdir(self, remote: str) -> list[str]:
        """The names of the entries of the folder *remote*."""
        return os.listdir(remote)

    def exists(self, remote: str) -> bool:
        """Whether *remote* exists."""
        return os.path.exists(remote)

    def remove_tree(self, remote: str) -> None:
        """Remove *remote* and everything under it (nothing if it is gone)."""
        shutil.rmtree(remote, ignore_errors=True)

    def expand(self, path: str) -> str:
        """*path* with ``~`` expanded, made absolute."""
        return os.path.abspath(os.path.expanduser(path))


class SSHTransport(Transport):
    """A system reached over SSH (see the module docstring)."""

    BACKOFF = 1.0          # seconds before the first retry, doubled each time

    def __init__(self, system: SystemConfig) -> None:
        self.system = system
        self.user, self.hostname, self.port = system.user_host_port()
        self.host_label = system.host or "this machine"
        self._client: Any = None
        self._sftp: Any = None
        self._lock = threading.RLock()
        self._home: Optional[str] = None

    # -- connection -------------------------------------------------------------------------
    def _ssh_config(self) -> dict:
        """What ~/.ssh/config says of this host (HostName, User, Port, IdentityFile)."""
        import paramiko

        path = os.path.expanduser("~/.ssh/config")
        if not os.path.isfile(path):
            return {}
        try:
            return paramiko.SSHConfig.from_path(path).lookup(self.hostname)
        except Exception:  # a config paramiko cannot read: ssh's own settings are not needed
            return {}

    def _connect(self):
        import paramiko

        cfg = self._ssh_config()
        client = paramiko.SSHClient()
        known = self.system.known_hosts or "~/.ssh/known_hosts"
        known_path = os.path.expanduser(known)
        if os.path.isfile(known_path):
            client.load_host_keys(known_path)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key = self.system.identity_file or (cfg.get("identityfile") or [None])[0]
        port = self.port or int(cfg.get("port", 22))
        hostname = cfg.get("hostname", self.hostname)
        try:
            client.connect(hostname, port=port, username=self.user or cfg.get("user"),
                           key_filename=os.path.expanduser(key) if key else None,
                           timeout=self.system.connect_timeout,
                           banner_timeout=self.system.connect_timeout,
                           auth_timeout=self.system.connect_timeout,
                           look_for_keys=key is None, allow_agent=key is None)
        except paramiko.BadHostKeyException:
            client.close()
            raise TransportError(
                f"the host key of {self.host_label} is not the one in {known} (it changed: "
                "a reinstalled host, or someone in between); if the change is expected, "
                f"remove the old entry (ssh-keygen -R {self._known_name()} -f {known}) and add "
                "the new one after checking its fingerprint") from None
        except paramiko.SSHException as err:
            client.close()
            if "not found in known_hosts" in str(err) or "Server" in str(err) and \
                    "not found" in str(err):
                raise TransportError(
                    f"the host key of {self.host_label} is not in {known}, so wflp does not "
                    "connect (it never adds keys on its own); check the key's fingerprint "
                    f"and add it: ssh-keyscan -p {port} {hostname} >> {known}") from None
            raise TransportError(f"cannot connect to {self.host_label}: {err}") from None
        except OSError as err:
            client.close()
            raise TransportError(f"cannot connect to {self.host_label}: "
                                 f"{err.strerror or err}") from None
        return client

    def _known_name(self) -> str:
        return f"[{self.hostname}]:{self.port}" if self.port and self.port != 22 \
            else self.hostname

    def _client_ok(self):
        with self._lock:
            transport = self._client.get_transport() if self._client is not None else None
            if transport is None or not transport.is_active():
                self._reset()
                delay, last = self.BACKOFF, None
                attempts = max(1, int(self.system.reconnect_attempts))
                for attempt in range(attempts):
                    try:
                        self._client = self._connect()
                        if attempt:
                            log.info("reconnected to %s", self.host_label)
                        break
                    except TransportError as err:
                        if "host key" in str(err):
                            raise
                        last = err
                        if attempt == attempts - 1:
                            raise TransportError(
                                f"{self.host_label} cannot be reached after "
                                f"{attempts} attempts ({last}); check that it is up "
                                "and that you can `ssh` to it, then rerun: jobs already "
                                "submitted are kept and collected") from None
                        log.warning("%s; retrying in %.0f s", last, delay)
                        time.sleep(delay)
                        delay *= 2
            return self._client

    def _reset(self) -> None:
        for thing in (self._sftp, self._client):
            try:
                if thing is not None:
                    thing.close()
            except Exception:
                pass
        self._sftp = None
        self._client = None

    def _sftp_ok(self):
        with self._lock:
            client = self._client_ok()
            if self._sftp is None:
                self._sftp = client.open_sftp()
            return self._sftp

    def _retrying(self, what: str, action: Callable[[], _T]) -> _T:
        """Run action(); after a dropped connection, reconnect (bounded) and try again."""
        import paramiko

        for attempt in range(2):
            try:
                return action()
            except (paramiko.SSHException, EOFError, OSError) as err:
                if isinstance(err, (FileNotFoundError, PermissionError)):
                    raise
                if attempt == 1:
                    raise TransportError(f"{what} on {self.host_label} failed: {err}") from None
                log.warning("%s on %s failed (%s); reconnecting", what, self.host_label, err)
                with self._lock:
                    self._reset()
        raise AssertionError("unreachable")  # pragma: no cover

    # -- commands -------------------------------------------------------------------------------
    def run(self, argv: list[str], timeout: Optional[float] = None) -> CommandResult:
        """Run *argv* on the host over SSH (quoted with ``shlex.join``); TransportError if
        it cannot be reached or does not finish within *timeout* (default: the system's
        ``command_timeout``)."""
        command = shlex.join(argv)
        limit = timeout or self.system.command_timeout

        def action():
            client = self._client_ok()
            chan = client.get_transport().open_session(timeout=limit)
            chan.settimeout(limit)
            chan.exec_command(command)
            stdout, stderr = chan.makefile("rb"), chan.makefile_stderr("rb")
            deadline = time.monotonic() + limit
            out = stdout.read()
            err = stderr.read()
            while not chan.exit_status_ready():
                if time.monotonic() > deadline:
                    chan.close()
                    raise TransportError(f"`{command}` on {self.host_label} did not finish "
                                         f"within {limit:g} s")
                time.sleep(0.01)
            code = chan.recv_exit_status()
            chan.close()
            return CommandResult(tuple(argv), code, out.decode(errors="replace"),
                                 err.decode(errors="replace"))

        try:
            return self._retrying(f"`{argv[0]}`", action)
        except TimeoutError:
            raise TransportError(f"`{command}` on {self.host_label} did not finish within "
                                 f"{limit:g} s") from None

    # -- files ----------------------------------------------------------------------------------
    def expand(self, path: str) -> str:
        """*path* with a leading ``~`` replaced by the home folder on the host."""
        if path.startswith("~"):
            if self._home is None:
                self._home = self._retrying("finding the home folder",
                                            lambda: self._sftp_ok().normalize("."))
            path = self._home + path[1:]
        return path

    def makedirs(self, path: str) -> None:
        """Create *path* and its parents on the host over SFTP, private to the user (0700)."""
        def action():
            sftp = self._sftp_ok()
            parts = path.rstrip("/").split("/")
            current = ""
            for part in parts:
                current = f"{current}/{part}" if current or path.startswith("/") else part
                if not current or current == "/":
                    continue
                try:
                    sftp.stat(current)
                except FileNotFoundError:
                    sftp.mkdir(current, mode=0o700)
            sftp.chmod(path, 0o700)

        self._retrying("creating a folder", action)

    def put(self, local: Path, remote: str) -> None:
        """Copy the local file *local* to *remote* on the host over SFTP."""
        self._retrying("sending a file", lambda: self._sftp_ok().put(str(local), remote))

    def get(self, remote: str, local: Path) -> None:
        """Copy *remote* on the host to the local file *local* over SFTP."""
        self._retrying("fetching a file", lambda: self._sftp_ok().get(remote, str(local)))

    def read_bytes(self, remote: str) -> bytes:
        """The content of the file *remote* on the host."""
        def action():
            with self._sftp_ok().open(remote, "rb") as fd:
                return fd.read()

        return self._retrying("reading a file", action)

    def write_bytes(self, remote: str, data: bytes) -> None:
        """Write *data* to *remote* on the host through a temporary file and a rename, so
        it is never half-written."""
        def action():
            sftp = self._sftp_ok()
            tmp = f"{remote}.tmp-{os.getpid()}"
            with sftp.open(tmp, "wb") as fd:
                fd.write(data)
            sftp.posix_rename(tmp, remote)

        self._retrying("writing a file", action)

    def listdir(self, remote: str) -> list[str]:
        """The names of the entries of the folder *remote* on the host."""
        return self._retrying("listing a folder", lambda: self._sftp_ok().listdir(remote))

    def exists(self, remote: str) -> bool:
        """Whether *remote* exists on the host."""
        def action():
            try:
                self._sftp_ok().stat(remote)
                return True
            except FileNotFoundError:
                return False

        return self._retrying("checking a file", action)

    def remove_tree(self, remote: str) -> None:
        """Remove *remote* and everything under it on the host (nothing if it is gone)."""
        def walk(sftp, path):
            for entry in sftp.listdir_attr(path):
                child = f"{path}/{entry.filename}"
                if stat.S_ISDIR(entry.st_mode or 0):
                    walk(sftp, child)
                else:
                    sftp.remove(child)
            sftp.rmdir(path)

        def action():
            try:
                walk(self._sftp_ok(), remote)
            except FileNotFoundError:
                pass

        self._retrying("removing a folder", action)

    def list_markers(self, folders: list[str]) -> dict[str, set]:
        """One command for all folders (not one round trip each)."""
        if not folders:
            return {}
        script = 'for d in "$@"; do printf "==%s\\n" "$d"; ls -A "$d" 2>/dev/null; done'
        result = self.run(["sh", "-c", script, "sh", *folders])
        out: dict[str, set] = {f: set() for f in folders}
        current = None
        for line in result.stdout.splitlines():
            if line.startswith("=="):
                current = line[2:]
                out.setdefault(current, set())
            elif current is not None and line:
                out[current].add(line)
        return out

    def close(self) -> None:
        """Close the SSH connection (the next call opens a new one)."""
        with self._lock:
            self._reset()


_transports: dict[str, Transport] = {}
_transports_lock = threading.Lock()


def transport_for(system: SystemConfig) -> Transport:
    """The one transport of *system* for the life of this process."""
    with _transports_lock:
        found = _transports.get(system.name)
        if found is None:
            found = SSHTransport(system) if system.is_remote else LocalTransport()
            _transports[system.name] = found
        return found


def close_transports() -> None:
    """Close every transport this process opened (their SSH connections)."""
    with _transports_lock:
        for t in _transports.values():
            t.close()
        _transports.clear()


__all__ = ["LocalTransport", "SSHTransport", "Transport", "TransportError", "close_transports",
           "transport_for"]
