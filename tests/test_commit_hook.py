"""The commit-msg hook (.githooks/commit-msg) that holds commit subjects to 72 characters,
as CONTRIBUTING.md asks; scripts/dev-install.sh points git at it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / ".githooks" / "commit-msg"


def run_hook(tmp_path: Path, message: str) -> subprocess.CompletedProcess:
    path = tmp_path / "COMMIT_EDITMSG"
    path.write_text(message)
    return subprocess.run(["bash", str(HOOK), str(path)], capture_output=True, text=True)


def test_a_subject_over_72_characters_is_refused_with_its_length(tmp_path):
    long = "x" * 73
    done = run_hook(tmp_path, f"# git's comment first\n\n{long}\n\nbody\n")
    assert done.returncode == 1
    assert "the subject is 73 characters, over 72" in done.stderr and long in done.stderr


def test_a_subject_of_72_and_a_long_body_pass(tmp_path):
    assert run_hook(tmp_path, "y" * 72 + "\n\n" + "z" * 200 + "\n").returncode == 0


def test_dev_install_points_git_at_the_hook_in_a_real_commit(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed; install git to run this test")
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    shutil.copytree(ROOT / ".githooks", repo / ".githooks")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    # the line dev-install.sh runs (checked to be there, then done the same way)
    assert "config core.hooksPath .githooks" in (ROOT / "scripts" / "dev-install.sh").read_text()
    subprocess.run(git + ["config", "core.hooksPath", ".githooks"], check=True)
    refused = subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "w" * 80],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "over 72" in refused.stderr
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "short"], check=True)
    assert subprocess.run(git + ["log", "--format=%s"], capture_output=True,
                          text=True).stdout == "short\n"
