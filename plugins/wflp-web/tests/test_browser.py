"""The app in a real browser: Playwright drives Debian's chromium (never a downloaded one)
over the README demo's outputs: overview -> model -> lineage -> a configuration.

WFLP_SAVE_SCREENSHOT=docs/browse.png also saves the model page's screenshot there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from wflp.testing import require_module, require_program, scaled

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def demo_outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "mlip-output"
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "mlip_from_smiles.py"),
                          "--small", "--out", str(out)], capture_output=True, text=True,
                         timeout=scaled(900), cwd=out.parent)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return out


@pytest.fixture
def server(demo_outputs):
    from werkzeug.serving import make_server
    from wflp_web.app import create_app

    httpd = make_server("127.0.0.1", 0, create_app(demo_outputs), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.mark.slow
def test_overview_model_lineage_configuration_in_chromium(server, tmp_path):
    require_program("chromium", "apt-get install chromium")
    sync_api = require_module("playwright.sync_api", "pip install playwright")
    errors: list = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM,
                                     args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
                else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server + "/")
        outputs = page.locator("#outputs")
        assert "05_train.xyz" in outputs.inner_text()
        assert "06_model_gap (model)" in outputs.inner_text()
        page.click("text=06_model_gap")
        assert page.locator("#what").inner_text().startswith("fit gap")
        assert "RMSE" in page.locator("table.errors").first.inner_text()
        page.wait_for_load_state("load")
        image = page.locator(".panel img").first
        assert image.evaluate("img => img.complete && img.naturalWidth > 100")
        shot = tmp_path / "browse.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.stat().st_size > 10000
        if os.environ.get("WFLP_SAVE_SCREENSHOT"):
            shutil.copy(shot, os.environ["WFLP_SAVE_SCREENSHOT"])
        lineage = page.locator("#lineage + ul").inner_text()
        assert "05_train.xyz" in lineage and "02_molecules.xyz" in lineage
        page.click("#lineage + ul >> text=05_train.xyz")
        assert "40 of 40 configurations" in page.locator("#count").inner_text()
        page.fill("input[name=filter]", "smiles=CCO")
        page.click("text=show")
        count = page.locator("#count").inner_text()
        assert count.endswith("of 40 configurations") and not count.startswith("40 ")
        page.click("#configs td a >> nth=0")   # the first configuration of the table
        assert "smiles" in page.locator("#info").inner_text()
        page.wait_for_load_state("load")
        page.wait_for_function("document.querySelector('#structure').complete",
                               timeout=scaled(60) * 1000)
        assert page.locator("#structure").evaluate("img => img.naturalWidth > 50")
        browser.close()
    assert errors == []
