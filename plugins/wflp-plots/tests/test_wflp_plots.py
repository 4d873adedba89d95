"""Parity plots: a valid PNG of the expected size with one panel column per property,
coloured by group, reused when nothing changed, and discovery that imports no matplotlib."""

from __future__ import annotations

import struct
import subprocess
import sys

import ase.io
import numpy as np
import pytest
from wflp.testing import require_module, scaled

require_module("matplotlib", "pip install matplotlib (or pip install -e plugins/wflp-plots[test])")
require_module("wflp_plots", "pip install -e plugins/wflp-plots[test]")

from ase.build import molecule  # noqa: E402
from wflp.errors import InputError, ParameterError  # noqa: E402
from wflp_plots import parity_plot  # noqa: E402
from wflp_plots.parity import png_text  # noqa: E402


def configs(n=12, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        at = molecule(("H2O", "CH4", "NH3")[i % 3])
        at.info["config_type"] = ("md_300K", "md_1000K")[i % 2]
        at.info["ref_energy"] = -10.0 * len(at) + rng.normal()
        at.info["mod_energy"] = at.info["ref_energy"] + rng.normal(scale=0.05)
        at.arrays["ref_forces"] = rng.normal(size=(len(at), 3))
        at.arrays["mod_forces"] = at.arrays["ref_forces"] + rng.normal(scale=0.1,
                                                                         size=(len(at), 3))
        out.append(at)
    out[0].arrays["mod_forces"][0] = out[0].arrays["ref_forces"][0]  # exact: error zero
    return out


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_one_panel_column_per_property(tmp_path):
    plot = parity_plot(configs(), "ref_", "mod_", tmp_path / "p.png")
    assert plot.properties == ("energy_per_atom", "forces")   # no stress for molecules
    assert plot.groups == ("md_300K", "md_1000K")
    assert png_size(tmp_path / "p.png") == plot.size == (800, 560)   # 2 columns of 4 in
    one = parity_plot(configs(), "ref_", "mod_", tmp_path / "one.png", properties=["forces"],
                      group_by=None, dpi=50)
    assert one.properties == ("forces",) and png_size(tmp_path / "one.png") == (200, 280)
    errors = np.concatenate([a.arrays["mod_forces"] - a.arrays["ref_forces"]
                             for a in configs()]).ravel()
    assert one.rmse["forces"] == pytest.approx(np.sqrt(np.mean(errors ** 2)))


def test_reused_when_nothing_changed_redrawn_otherwise(tmp_path):
    ase.io.write(tmp_path / "a.xyz", configs())
    first = parity_plot(str(tmp_path / "a.xyz"), "ref_", "mod_", tmp_path / "p.png")
    stamp = (tmp_path / "p.png").stat().st_mtime_ns
    assert "wflp:key" in png_text(tmp_path / "p.png")
    again = parity_plot(str(tmp_path / "a.xyz"), "ref_", "mod_", tmp_path / "p.png")
    assert again == first and (tmp_path / "p.png").stat().st_mtime_ns == stamp
    ase.io.write(tmp_path / "a.xyz", configs(seed=1))
    changed = parity_plot(str(tmp_path / "a.xyz"), "ref_", "mod_", tmp_path / "p.png")
    assert changed.rmse != first.rmse
    # in-memory inputs carry no key: always drawn
    parity_plot(configs(), "ref_", "mod_", tmp_path / "m.png")
    assert "wflp:key" not in png_text(tmp_path / "m.png")


def test_bad_input(tmp_path):
    with pytest.raises(ParameterError, match="PNG"):
        parity_plot(configs(), "ref_", "mod_", tmp_path / "p.pdf")
    with pytest.raises(InputError, match="nothing to plot"):
        parity_plot(configs(), "xtb_", "mod_", tmp_path / "p.png")
    with pytest.raises(InputError, match="for stress"):
        parity_plot(configs(), "ref_", "mod_", tmp_path / "p.png", properties=["stress"])


def test_command_line_and_lazy_discovery(tmp_path):
    ase.io.write(tmp_path / "a.xyz", configs())
    out = subprocess.run([sys.executable, "-m", "wflp.cli", "parity", "ref_", "mod_",
                          str(tmp_path / "a.xyz"), "-o", str(tmp_path / "c.png"), "-p",
                          "forces"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("wrote ") and "(400x560): forces" in out.stdout
    assert png_size(tmp_path / "c.png") == (400, 560)
    code = ("import sys\nfrom wflp.plugins import plugin_report\n"
            "assert [r.status for r in plugin_report() if r.distribution == 'wflp-plots'] "
            "== ['ok']\nprint('matplotlib' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
