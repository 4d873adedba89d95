import pytest
from sge_helpers import PREFIX, require_sge, write_systems
from wflp.testing_remote import project_fixture, ssh_settings

# the test's jobs are deleted at the end, also those in error state: wflp reports
# them failed, but Grid Engine keeps them queued
project = project_fixture([*PREFIX, "qdel"], keep=("succeeded",))


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
