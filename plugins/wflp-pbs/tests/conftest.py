import pytest
from pbs_helpers import pbs, require_pbs, ssh_settings, write_systems


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder (the working directory) with a private job store; jobs the test
    left running are deleted at the end, so that they hold no cores of the next test."""
    from wflp.remote.transport import close_transports

    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("WFLP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WFLP_PROGRESS", "0")
    monkeypatch.delenv("WFLP_SYSTEMS", raising=False)
    monkeypatch.delenv("WFLP_NUM_PYTHON_SUBPROCESSES", raising=False)
    close_transports()
    yield folder
    close_transports()
    store = tmp_path / "home" / "jobs.sqlite"
    if store.exists():
        from wflp.remote.store import JobStore

        live = [r.scheduler_id for r in JobStore(store).select()
                if r.scheduler_id and r.state not in ("succeeded", "failed", "cancelled",
                                                      "timeout", "out_of_memory")]
        if live:
            pbs("qdel", *live)


@pytest.fixture(params=["local", "ssh"])
def system(request, project, tmp_path) -> str:
    """The PBS commands as a system: "pbs" (this machine) or "pbs_ssh" (over SSH)."""
    require_pbs()
    ssh = ssh_settings() if request.param == "ssh" else None
    write_systems(project, tmp_path, ssh=ssh)
    return "pbs_ssh" if ssh else "pbs"


@pytest.fixture
def both(project, tmp_path) -> list:
    """Both systems at once (for slow tests that run a job on each concurrently)."""
    require_pbs()
    write_systems(project, tmp_path, ssh=ssh_settings())
    return ["pbs", "pbs_ssh"]
