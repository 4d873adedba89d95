"""`import wflp` and `wflp list-plugins` import neither numpy nor ASE (they cost more than
the whole listing); the names wflp exports still work, imported on first use."""

import subprocess
import sys

from wflp.testing import scaled


def _modules_after(code: str) -> set:
    probe = code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_import_wflp_is_light():
    loaded = _modules_after("import wflp")
    assert not {"numpy", "ase", "ase.io", "cloudpickle"} & loaded


def test_list_plugins_does_not_import_numpy_or_ase():
    code = ("from wflp.cli import main\n"
            "try:\n    main(['list-plugins'])\nexcept SystemExit:\n    pass\n")
    loaded = _modules_after(code)
    assert not {"numpy", "ase", "ase.io"} & loaded


def test_exported_names_are_imported_on_first_use():
    import wflp

    assert wflp.ConfigSet.__name__ == "ConfigSet"
    assert wflp.AutoparaInfo().resolved().num_python_subprocesses >= 1
    assert "OutputSpec" in dir(wflp)
    import pytest

    with pytest.raises(AttributeError, match="not_a_name"):
        _ = wflp.not_a_name
