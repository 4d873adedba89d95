"""Provenance of file-based calculations: what records describe a calculator by.

:func:`code_provenance` is what ``FileCalculator.__wflp_provenance__()`` returns: the
code, its command lines and environment, the parameters, digests of the files the code
reads (pseudopotentials, POTCARs, species defaults) and, as a fact, the program's
version. So a changed pseudopotential, command or parameter is a record mismatch.
Digests are cached by size and mtime; a version is asked once per process per command.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

from .codespec import CodeSpec
from .rundir import matches

log = logging.getLogger("wflp")

_file_digests: dict[tuple[str, int, int, int], str] = {}
_versions: dict[tuple[tuple[str, ...], str, Optional[str]], Optional[str]] = {}


def file_sha256(path: Union[str, os.PathLike[str]]) -> Optional[str]:
    """sha256 of a file's bytes (None if it does not exist); cached by size and mtime."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    digest = _file_digests.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as fd:
            for block in iter(lambda: fd.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        if len(_file_digests) > 4096:
            _file_digests.clear()
        _file_digests[key] = digest
    return digest


def folder_sha256(folder: Union[str, os.PathLike[str]],
                  patterns: Sequence[str] = ("*",)) -> Optional[dict[str, Any]]:
    """{"files": n, "sha256": digest} over the relative names and contents of the files
    in *folder* (recursively) matching *patterns*; None if the folder does not exist."""
    root = Path(folder)
    if not root.is_dir():
        return None
    h = hashlib.sha256()
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            path = Path(dirpath) / f
            rel = path.relative_to(root).as_posix()
            if not matches(rel, patterns):
                continue
            digest = file_sha256(path)
            if digest is None:
                continue
            h.update(f"{rel}\0{digest}\n".encode())
            n += 1
    return {"files": n, "sha256": h.hexdigest()}


def program_version(argv: Sequence[str], pattern: str, timeout: float = 20.0,
                    touch: Optional[str] = None) -> Optional[str]:
    """The version a program prints when run without input (in an empty private temporary
    directory that is also its ``TMPDIR``, stdin closed; *touch* names an empty file made
    there first), matched by the regular expression *pattern* (group 1); None if it
    cannot be run or prints none. Asked once per process for each command."""
    key = (tuple(argv), pattern, touch)
    if key in _versions:
        return _versions[key]
    version = None
    try:
        with tempfile.TemporaryDirectory(prefix="wflp-version-") as tmp:
            if touch:
                Path(tmp, touch).touch()
            # that folder is its TMPDIR too: see wflp.calculators.process on Open MPI
            proc = subprocess.run(list(argv), cwd=tmp, stdin=subprocess.DEVNULL,
                                  env={**os.environ, "TMPDIR": tmp},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=timeout)
        match = re.search(pattern, proc.stdout.decode("utf-8", errors="replace"), re.M)
        version = match.group(1) if match else None
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        log.debug("cannot ask %s for its version: %s: %s", argv[0] if argv else "?",
                  type(err).__name__, err)
    _versions[key] = version
    return version


def code_provenance(spec: CodeSpec, command: str, command_gamma: str, env: dict[str, str],
                    parameters: dict[str, Any], files: dict[str, Any],
                    version: Optional[str]) -> dict[str, Any]:
    """What records describe a file-based calculator by (see wflp.records.describe):
    identity (code, commands, env, parameters, file digests, a declared result version
    other than "1") and, under ``"facts"``, the program's version."""
    out: dict[str, Any] = {"code": spec.code, "command": command,
                           "command_gamma": command_gamma, "env": dict(env),
                           "parameters": dict(parameters), "files": files,
                           "facts": {"program_version": version}}
    if spec.result_version != "1":
        out["result_version"] = spec.result_version
    return out


__all__ = ["code_provenance", "file_sha256", "folder_sha256", "program_version"]
