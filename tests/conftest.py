import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    """Tests decide parallelism and progress bars themselves."""
    monkeypatch.delenv("WFLP_NUM_PYTHON_SUBPROCESSES", raising=False)
    monkeypatch.setenv("WFLP_PROGRESS", "0")
