import pytest
from slurm_helpers import require_slurm, write_systems
from wflp.testing_remote import project_fixture, ssh_settings

project = project_fixture(["scancel"])  # jobs a test left in the queue are cancelled


@pytest.fixture(params=["local", "ssh"])
def system(request, project, tmp_path) -> str:
    """The test Slurm as a system: "slurm" (this machine) or "slurm_ssh" (over SSH)."""
    require_slurm()
    ssh = ssh_settings() if request.param == "ssh" else None
    write_systems(project, tmp_path, ssh=ssh)
    return "slurm_ssh" if ssh else "slurm"


@pytest.fixture
def both(project, tmp_path) -> list:
    """Both systems at once (for slow tests that run a job on each concurrently)."""
    require_slurm()
    write_systems(project, tmp_path, ssh=ssh_settings())
    return ["slurm", "slurm_ssh"]
