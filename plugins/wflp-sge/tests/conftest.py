import pytest
from sge_helpers import require_sge, sge, ssh_settings, write_systems


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder (the working directory) with a private job store; the test's jobs
    are deleted at the end (also those in error state: wflp reports them failed, but Grid
    Engine keeps them queued), so that they hold no slots of the next test."""
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

        ids = [r.scheduler_id for r in JobStore(store).select()
               if r.scheduler_id and r.state != "succeeded"]
        if ids:
            sge("qdel", *ids)


@pytest.fixture(params=["local", "ssh"])
def system(request, project, tmp_path) -> str:
    """The test Grid Engine as a system: "sge" (this machine) or "sge_ssh" (over SSH)."""
    require_sge()
    ssh = ssh_settings() if request.param == "ssh" else None
    write_systems(project, tmp_path, ssh=ssh)
    return "sge_ssh" if ssh else "sge"


@pytest.fixture
def both(project, tmp_path) -> list:
    """Both systems at once (for slow tests that run a job on each concurrently)."""
    require_sge()
    write_systems(project, tmp_path, ssh=ssh_settings())
    return ["sge", "sge_ssh"]
