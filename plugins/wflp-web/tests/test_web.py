"""wflp browse: pages, escaping, path safety, panels and read-only routes (Flask client)."""

from __future__ import annotations

import os
from pathlib import Path

import ase.io
import pytest
from ase.build import bulk
from wflp import OutputSpec, hookimpl, operation
from wflp_web.app import create_app


@operation("web_tag", version="1")
def web_tag(atoms, label="x"):
    atoms = atoms.copy()
    atoms.info.update({"label": label, "html": "<script>alert(1)</script>",
                       "smiles": "C<O", "height": float(len(atoms))})
    return atoms


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    web_tag([bulk("Cu") * (n, 1, 1) for n in (1, 2, 3)], OutputSpec(folder / "tagged.xyz"),
            label="cu")
    (tmp_path / "secret.png").write_bytes(b"\x89PNG\r\n\x1a\nsecret")
    (tmp_path / "secret.xyz").write_text("secret")
    return folder


def test_overview_output_and_config_pages(project):
    client = create_app(project).test_client()
    page = client.get("/").get_data(as_text=True)
    assert "tagged.xyz" in page and "web_tag" in page and ">ok<" in page
    page = client.get("/output?path=tagged.xyz").get_data(as_text=True)
    assert "3 of 3 configurations" in page and "Lineage" in page
    page = client.get("/output?path=tagged.xyz&filter=height>1").get_data(as_text=True)
    assert "2 of 3 configurations" in page
    page = client.get("/output?path=tagged.xyz&sort=-height").get_data(as_text=True)
    assert page.index("Cu3") < page.index("Cu2") < page.index(">Cu<")
    page = client.get("/config?path=tagged.xyz&index=2").get_data(as_text=True)
    assert "Cu3" in page and "label" in page
    png = client.get("/config.png?path=tagged.xyz&index=2")
    assert png.status_code == 200 and png.data.startswith(b"\x89PNG")


def test_every_value_is_escaped(project):
    client = create_app(project).test_client()
    for url in ("/output?path=tagged.xyz", "/config?path=tagged.xyz&index=0"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "C&lt;O" in page


@pytest.mark.parametrize("path", ["../secret.xyz", "..%2Fsecret.xyz", "%2e%2e/secret.xyz",
                                  "/etc/passwd", "tagged.xyz/../../secret.xyz", "link.xyz"])
def test_no_file_outside_the_folder_is_readable(project, path):
    os.symlink(project.parent / "secret.xyz", project / "link.xyz")
    client = create_app(project).test_client()
    for route in ("/output", "/config", "/config.png"):
        response = client.get(f"{route}?path={path}&index=0")
        assert response.status_code == 404, (route, path)
        assert b"secret" not in response.data


@pytest.mark.parametrize("path", ["../secret.png", "..%2Fsecret.png", "out.png"])
def test_images_only_from_panels_inside_the_folder(project, path):
    os.symlink(project.parent / "secret.png", project / "out.png")
    response = create_app(project).test_client().get(f"/image?path={path}")
    assert response.status_code == 404 and b"secret" not in response.data


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_no_write_endpoints(project, method):
    client = create_app(project).test_client()
    for url in ("/", "/output?path=tagged.xyz", "/config?path=tagged.xyz&index=0", "/jobs"):
        assert getattr(client, method)(url).status_code == 405


class GoodPanels:
    @hookimpl
    def wflp_panels(self, output, record):
        if Path(output).name == "tagged.xyz":
            return [{"title": "Sizes <b>", "table": [["configs", record.name]]}]
        return []


class BrokenPanels:
    @hookimpl
    def wflp_panels(self, output, record):
        raise RuntimeError("panel bug")


def test_panels_are_shown_and_a_broken_one_is_left_out(project, register_wflp_plugin,
                                                        caplog):
    register_wflp_plugin(GoodPanels(), name="good-panels")
    register_wflp_plugin(BrokenPanels(), name="broken-panels")
    response = create_app(project).test_client().get("/output?path=tagged.xyz")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Sizes &lt;b&gt;" in page and "web_tag" in page
    assert any("broken-panels" in r.getMessage() and "left out" in r.getMessage()
               for r in caplog.records)


def test_jobs_page_lists_the_job_store(project, tmp_path, monkeypatch):
    monkeypatch.setenv("WFLP_HOME", str(tmp_path / "home"))
    from wflp.remote.store import JobStore, wflp_home

    page = create_app(project).test_client().get("/jobs").get_data(as_text=True)
    assert "no job store" in page
    JobStore(wflp_home() / "jobs.sqlite")
    page = create_app(project).test_client().get("/jobs").get_data(as_text=True)
    assert "no job store" not in page and "no jobs" in page


def test_a_results_database_is_browsable(project, tmp_path):
    from wflp.db import collect

    collect([project], tmp_path / "r.db")
    client = create_app(tmp_path / "r.db").test_client()
    page = client.get("/").get_data(as_text=True)
    out = str(project / "tagged.xyz")
    assert out in page and "web_tag" in page
    page = client.get("/output", query_string={"path": out, "filter": "height>2"}
                      ).get_data(as_text=True)
    assert "1 of 3 configurations" in page and "<script>" not in page
    page = client.get("/config", query_string={"path": out, "index": 1}).get_data(as_text=True)
    assert "Cu2" in page and "&lt;script&gt;" in page
    assert client.get("/output", query_string={"path": "/etc/passwd"}).status_code == 404
    assert client.post("/").status_code == 405
    assert ase.io.read(project / "tagged.xyz", ":")[2].info["label"] == "cu"


def test_browse_command_is_added_by_the_plugin():
    from click.testing import CliRunner
    from wflp.cli import cli

    result = CliRunner().invoke(cli, ["browse", "--help"])
    assert result.exit_code == 0 and "--port" in result.output and "127.0.0.1" in result.output
