"""A minimal PEP 517 build backend that needs nothing but the standard library.

The pip-install test copies it next to a throw-away plugin distribution, so that
``pip install --no-build-isolation`` works offline and without setuptools' wheel
support. It reads ``wheel.json`` in the source directory::

    {"name": "wflp-demo", "version": "0.1.0", "modules": ["wflp_demo.py"],
     "requires": ["wflp"], "entry_points": {"wflp": {"demo": "wflp_demo"}}}

and builds a pure-Python wheel holding those single-file modules.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    cfg = json.loads(Path("wheel.json").read_text())
    dist = cfg["name"].replace("-", "_")
    version = cfg["version"]
    info = f"{dist}-{version}.dist-info"
    files = {name: Path(name).read_bytes() for name in cfg["modules"]}
    metadata = ["Metadata-Version: 2.1", f"Name: {cfg['name']}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {req}" for req in cfg.get("requires", [])]
    files[f"{info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: tiny_backend\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    groups = cfg.get("entry_points", {})
    files[f"{info}/entry_points.txt"] = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        for group, eps in groups.items()).encode()
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    filename = f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / filename, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return filename
