"""The soap plugin, installed: real dscribe descriptors, their symmetries, species taken from
the inputs and recorded, and the descriptors feeding wflp's global selectors."""

from __future__ import annotations

import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from wflp.testing import require_module, scaled

require_module("dscribe", "pip install dscribe (or pip install -e 'plugins/wflp-soap[test]')")

from wflp import AutoparaInfo, ConfigSet, OutputSpec, shutdown_pool  # noqa: E402
from wflp.errors import OperationError, ParameterError  # noqa: E402
from wflp.ops import select_cur, select_fps  # noqa: E402
from wflp.plugins import (  # noqa: E402
    get_descriptor,
    get_generator,
    plugin_report,
    reset_plugin_manager,
)
from wflp.records import read_record, record_path  # noqa: E402

SMALL = {"r_cut": 4.0, "n_max": 3, "l_max": 2}


def soap_op():
    return get_descriptor("soap").load()


def n_features(n_species: int, n_max: int, l_max: int) -> int:
    """Power-spectrum length with every species pair (dscribe's crossover)."""
    m = n_species * n_max
    return m * (m + 1) // 2 * (l_max + 1)


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


@pytest.fixture
def fresh_registry():
    reset_plugin_manager()
    yield
    reset_plugin_manager()


def test_report_lists_the_plugin_as_ok(fresh_registry):
    [record] = [r for r in plugin_report() if r.distribution == "wflp-soap"]
    assert record.status == "ok", record.error
    assert record.registered == {"descriptors": ["soap"], "generators": ["soap"]}


def test_the_descriptor_is_also_the_generator_of_before(fresh_registry):
    """soap is a descriptor; its registration as a generator (wflp-soap 0.1) stays, the
    very same operation, so code and chains written for it keep working."""
    spec = get_descriptor("soap")
    assert spec.key == "soap"
    assert spec.load() is get_generator("soap").load()
    from wflp.chain import plan_step

    as_descriptor = plan_step("descriptor", "soap", SMALL, "d.xyz")
    as_generator = plan_step("generator", "soap", SMALL, "d.xyz")
    assert as_descriptor.operation is as_generator.operation is spec.load()
    assert (as_descriptor.kind, as_generator.kind) == ("descriptors", "generators")


def test_discovery_does_not_import_dscribe():
    code = ("import sys\n"
            "from wflp.plugins import get_descriptor, get_generator, plugin_report\n"
            "assert [r.status for r in plugin_report() if r.distribution == 'wflp-soap'] "
            "== ['ok']\n"
            "get_generator('soap'), get_descriptor('soap').load()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dscribe', 'numba', "
            "'sparse')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_shapes_averaging_and_normalization():
    mols = [molecule("CH3CH2OH"), molecule("H2O")]
    avg = list(soap_op()(mols, OutputSpec(), normalize=False, **SMALL))
    atoms = list(soap_op()(mols, OutputSpec(), per_atom=True, normalize=False, **SMALL))
    width = n_features(3, 3, 2)  # H, C, O
    for a, b, mol in zip(avg, atoms, mols):
        assert a.info["soap"].shape == (width,)
        assert b.arrays["soap"].shape == (len(mol), width)
        # "outer": the configuration's vector is the mean of its atoms' vectors
        assert np.allclose(a.info["soap"], b.arrays["soap"].mean(axis=0), rtol=1e-12)
    inner = list(soap_op()(mols, OutputSpec(), average="inner", normalize=False, **SMALL))
    assert not np.allclose(inner[0].info["soap"], avg[0].info["soap"])
    unit = list(soap_op()(mols, OutputSpec(), per_atom=True, **SMALL))
    assert np.allclose(np.linalg.norm(unit[0].arrays["soap"], axis=1), 1.0)
    assert np.allclose(unit[0].arrays["soap"],
                       atoms[0].arrays["soap"]
                       / np.linalg.norm(atoms[0].arrays["soap"], axis=1, keepdims=True))


def test_invariant_to_rotation_and_permutation_and_not_to_distortion():
    rng = np.random.default_rng(0)
    configs = [molecule("CH3CH2OH"), molecule("CH3COOH"), bulk("Si", cubic=True)]
    configs[2].rattle(0.05, seed=1)
    for config in configs:
        base_avg = list(soap_op()([config], OutputSpec(), species=["H", "C", "O", "Si"],
                                  **SMALL))[0].info["soap"]
        base_atoms = list(soap_op()([config], OutputSpec(), species=["H", "C", "O", "Si"],
                                    per_atom=True, **SMALL))[0].arrays["soap"]
        for _ in range(3):
            rot = random_rotation(rng)
            perm = rng.permutation(len(config))
            moved = config[perm]
            moved.positions = moved.positions @ rot.T + rng.normal(size=3)
            if config.pbc.any():
                moved.set_cell(moved.cell.array @ rot.T, scale_atoms=False)
            [avg] = list(soap_op()([moved], OutputSpec(), species=["H", "C", "O", "Si"],
                                   **SMALL))
            [per] = list(soap_op()([moved], OutputSpec(), species=["H", "C", "O", "Si"],
                                   per_atom=True, **SMALL))
            assert np.allclose(avg.info["soap"], base_avg, atol=1e-9)
            assert np.allclose(per.arrays["soap"], base_atoms[perm], atol=1e-9)
        distorted = config.copy()
        distorted.positions[0] += [0.3, -0.2, 0.1]
        [d] = list(soap_op()([distorted], OutputSpec(), species=["H", "C", "O", "Si"],
                             **SMALL))
        assert np.abs(d.info["soap"] - base_avg).max() > 1e-3


def test_species_come_from_the_whole_input_and_are_recorded(tmp_path):
    ase.io.write(tmp_path / "a.xyz", [molecule("H2O"), molecule("CH4")])
    ase.io.write(tmp_path / "b.xyz", [molecule("NH3")])
    inputs = ConfigSet([str(tmp_path / "a.xyz"), str(tmp_path / "b.xyz")])
    out = tmp_path / "d.xyz"
    made = list(soap_op()(inputs, OutputSpec(out), **SMALL))
    # every configuration has the width of four species, whatever its own elements
    assert {a.info["soap"].shape for a in made} == {(n_features(4, 3, 2),)}
    record = read_record(record_path(out))
    assert record.parameters["species"] == ["H", "C", "N", "O"]
    # the same list given explicitly is the same computation: reused
    before = out.read_bytes()
    soap_op()(inputs, OutputSpec(out), species=["O", "N", "H", "C"], **SMALL)
    assert out.read_bytes() == before
    with pytest.raises(OperationError, match=r"has C, not in species=\['H', 'N', 'O'\]"):
        list(soap_op()(inputs, OutputSpec(), species=["H", "N", "O"], **SMALL))


@pytest.mark.parametrize("kwargs, message", [
    ({"n_max": 0}, "n_max must be a whole number >= 1"),
    ({"average": "mean"}, "average must be 'outer'"),
    ({"species": ["H", "Qq"]}, "'Qq' is not a chemical element"),
    ({"r_cut": -1.0}, "r_cut must be a positive length"),
    ({"r_cut": 0.5}, "r_cut must be more than 1 Angstrom"),
])
def test_bad_parameters_are_refused_before_anything_runs(kwargs, message):
    with pytest.raises(ParameterError) as err:
        soap_op()([molecule("H2O")], OutputSpec(), **kwargs)
    assert message in str(err.value)


@pytest.fixture
def pool_processes():
    shutdown_pool()
    yield
    shutdown_pool()


def test_serial_and_parallel_write_the_same_bytes(tmp_path, pool_processes):
    rng = np.random.default_rng(4)
    frames = []
    for name in ("CH3CH2OH", "H2O", "CH4", "NH3") * 5:
        mol = molecule(name)
        mol.positions += rng.normal(scale=0.05, size=mol.positions.shape)
        frames.append(mol)
    ase.io.write(tmp_path / "in.xyz", frames)
    for label, info in (("serial", AutoparaInfo()),
                        ("parallel", AutoparaInfo(num_python_subprocesses=2,
                                                  num_inputs_per_python_subprocess=3))):
        soap_op()(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / f"{label}.xyz"),
                  autopara_info=info, **SMALL)
    assert (tmp_path / "serial.xyz").read_bytes() == (tmp_path / "parallel.xyz").read_bytes()


def test_descriptors_feed_the_global_selectors(tmp_path):
    """Five kinds of molecule, 30 thermal-like copies each: CUR and FPS on their SOAP
    vectors take one of each kind, where 5 random picks rarely do."""
    rng = np.random.default_rng(2)
    names = ("CH3CH2OH", "H2O", "CH4", "NH3", "CH3COOH")
    frames = []
    for i in range(150):
        mol = molecule(names[i % 5])
        mol.positions += rng.normal(scale=0.04, size=mol.positions.shape)
        mol.info["kind"] = names[i % 5]
        frames.append(mol)
    ase.io.write(tmp_path / "pool.xyz", frames)
    described = soap_op()(ConfigSet(tmp_path / "pool.xyz"), OutputSpec(tmp_path / "d.xyz"),
                          **SMALL)
    for selector in (select_cur, select_fps):
        picked = selector(described, OutputSpec(tmp_path / f"{selector.name}.xyz"),
                          n_select=5)
        assert sorted(a.info["kind"] for a in picked) == sorted(names)
    random_hits = [len({names[i % 5] for i in rng.choice(150, 5, replace=False)})
                   for _ in range(200)]
    assert np.mean([h == 5 for h in random_hits]) < 0.1


def test_describe_then_select_in_a_chain(tmp_path):
    ase.io.write(tmp_path / "md.xyz", [molecule(n) for n in ("H2O", "NH3", "CH4") * 4])
    chain = {"chain": {"inputs": "md.xyz"},
             "step": [{"kind": "generator", "name": "soap", "output": "d.xyz",
                       "params": {"r_cut": 4.0, "n_max": 3, "l_max": 2}},
                      {"kind": "selector", "name": "select_fps", "output": "s.xyz",
                       "params": {"n_select": 3}}]}
    from wflp.chain import run_chain

    result = run_chain(chain, base_dir=tmp_path)
    assert [s.configs for s in result.steps] == [12, 3]
    chosen = ase.io.read(tmp_path / "s.xyz", ":")
    assert sorted(a.get_chemical_formula() for a in chosen) == ["CH4", "H2O", "H3N"]
    assert all(s.reused for s in run_chain(chain, base_dir=tmp_path).steps)
