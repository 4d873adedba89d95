import pytest
from pbs_helpers import PREFIX, require_pbs, write_systems
from wflp.testing_remote import project_fixture, ssh_settings

project = project_fixture([*PREFIX, "qdel"])  # jobs a test left in the queue are cancelled


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
