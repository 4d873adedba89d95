"""wflp.testing.require_*: skip for users, fail under CI."""

import subprocess
import sys
import textwrap


def _run(tmp_path, ci):
    test = tmp_path / "test_req.py"
    test.write_text(textwrap.dedent("""
        from wflp.testing import require_module, require_program

        def test_module():
            require_module("surely_not_a_module_xyz", "pip install surely-not")

        def test_program():
            require_program("surely-not-a-program-xyz", "apt-get install surely-not")

        def test_present():
            assert require_program("sh", "install a shell").endswith("sh")
    """))
    env = {"PATH": "/usr/bin:/bin", "CI": ci}
    return subprocess.run([sys.executable, "-m", "pytest", "-rs", "-q", str(test)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)


def test_missing_requirement_skips_with_how_to_enable(tmp_path):
    res = _run(tmp_path, "")
    assert res.returncode == 0, res.stdout
    assert "2 skipped, 1 passed" in res.stdout or "1 passed, 2 skipped" in res.stdout
    assert "pip install surely-not" in res.stdout and "apt-get install surely-not" in res.stdout


def test_missing_requirement_fails_under_ci(tmp_path):
    res = _run(tmp_path, "true")
    assert res.returncode == 1, res.stdout
    assert "2 failed, 1 passed" in res.stdout
    assert "CI=true but" in res.stdout
