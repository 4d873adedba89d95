"""Streaming: memory does not grow with the number of configurations.

Each size runs in a fresh process whose peak RSS is read back, so no tracing
overhead distorts the timing or the memory."""

import io
import json
import subprocess
import sys
import textwrap

import pytest
from ase.io.extxyz import write_extxyz
from helpers import rattled_cu

CHILD = textwrap.dedent("""
    import json, resource, sys
    from wflp import ConfigSet, OutputSpec
    from wflp.ops import map

    def tag(at):
        at.info["seen"] = True
        return at

    src, dst = sys.argv[1], sys.argv[2]
    n_read = sum(1 for _ in ConfigSet(src))
    out = map(ConfigSet(src), OutputSpec(dst), tag)
    n_out = sum(1 for _ in out)
    print(json.dumps({"n_read": n_read, "n_out": n_out,
                      "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
""")


def _write_many(path, n):
    buf = io.StringIO()
    write_extxyz(buf, rattled_cu(10))
    block = buf.getvalue()
    with open(path, "w") as fd:
        for _ in range(n // 10):
            fd.write(block)


def _peak(tmp_path, n):
    src = tmp_path / f"in{n}.xyz"
    _write_many(src, n)
    res = subprocess.run([sys.executable, "-c", CHILD, str(src), str(tmp_path / f"out{n}.xyz")],
                         capture_output=True, text=True, timeout=300,
                         env={"WFLP_PROGRESS": "0", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert data["n_read"] == data["n_out"] == n
    return data["maxrss_kb"]


@pytest.mark.slow
def test_reading_and_file_to_file_operation_have_flat_memory(tmp_path):
    small = _peak(tmp_path, 2000)
    large = _peak(tmp_path, 16000)
    # holding the 14000 extra configurations would cost > 40 MB
    assert large < small * 1.1 + 8 * 1024, (small, large)
