"""Selection, round 2: the interatomic-distance filter and the convex-hull selector.

Each is checked on configurations made here whose answer is known by construction, and
as an operation: records, reuse, a changed parameter refused, serial == two processes.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from wflp import AutoparaInfo, ConfigSet, OutputSpec
from wflp.errors import OperationError, ParameterError, RecordMismatchError
from wflp.ops.selectors import (
    hull_distances,
    select_by_distance,
    select_convex_hull,
    too_close,
)
from wflp.plugins import get_selector
from wflp.records import read_record, record_path

TWO_PROCESSES = AutoparaInfo(num_python_subprocesses=2, num_inputs_per_python_subprocess=1)


# -- the interatomic-distance filter ------------------------------------------------------------

def water(oh: float = None) -> Atoms:
    at = molecule("H2O")
    if oh is not None:  # move the first H along its bond to distance oh from O
        bond = at.positions[1] - at.positions[0]
        at.positions[1] = at.positions[0] + bond / np.linalg.norm(bond) * oh
    return at


def h2(distance: float) -> Atoms:
    return Atoms("H2", positions=[[0, 0, 0], [0, 0, distance]])


def labelled(configs: list[Atoms]) -> list[Atoms]:
    for i, at in enumerate(configs):
        at.info["label"] = i
    return configs


def kept_labels(out) -> list[int]:
    return [int(at.info["label"]) for at in out]


def test_default_threshold_is_a_fraction_of_the_covalent_radii():
    # O-H threshold 0.6 * (0.66 + 0.31) = 0.582 Å
    assert too_close(water()) is None
    i, j, d = too_close(water(oh=0.5))
    assert {i, j} == {0, 1} and d == pytest.approx(0.5)
    assert too_close(water(oh=0.5), covalent_fraction=0.5) is None  # 0.485 Å < 0.5 Å
    assert too_close(water(oh=0.6)) is None


def test_periodic_images_count():
    # one atom per cell: its only neighbours are its own images, 2.0 / sqrt(2) = 1.41 Å away
    squeezed = bulk("Cu", "fcc", a=2.0)
    assert too_close(squeezed) is not None  # Cu-Cu threshold 0.6 * 2 * 1.32 = 1.58 Å
    assert too_close(bulk("Cu", "fcc", a=3.6)) is None  # 2.55 Å
    squeezed.pbc = False  # the same atom alone
    assert too_close(squeezed) is None


def test_per_pair_thresholds_override_the_default_in_any_spelling():
    assert too_close(h2(0.74)) is None  # H-H default 0.372 Å
    for spelling in ({("H", "H"): 0.8}, {"H-H": 0.8}, {"H,H": 0.8}, {"H H": 0.8}):
        assert too_close(h2(0.74), spelling) is not None
    # only the listed pairs, with covalent_fraction=None: O-H at 0.5 Å passes
    assert too_close(water(oh=0.5), {"H-H": 0.8}, covalent_fraction=None) is None
    assert too_close(water(oh=0.5), {("O", "H"): 0.4}) is None
    assert too_close(water(oh=0.5), {("H", "O"): 0.55}) is not None


def test_the_operation_keeps_what_passes_and_invert_keeps_the_rest():
    configs = labelled([water(), water(oh=0.5), h2(0.74), h2(0.3),
                        bulk("Cu", "fcc", a=2.0), bulk("Cu", "fcc", a=3.6)])
    kept = select_by_distance(configs, OutputSpec())
    assert kept_labels(kept) == [0, 2, 5]
    dropped = select_by_distance(configs, OutputSpec(), invert=True)
    assert kept_labels(dropped) == [1, 3, 4]
    strict = select_by_distance(configs, OutputSpec(), pair_distances={("H", "H"): 0.8})
    assert kept_labels(strict) == [0, 5]
    # the kept configurations are written unchanged
    np.testing.assert_array_equal(list(kept)[0].positions, configs[0].positions)


def test_distance_filter_record_reuse_and_a_changed_threshold(tmp_path):
    configs = labelled([water(), water(oh=0.5), h2(0.74), h2(0.3)])
    out = tmp_path / "ok.xyz"
    select_by_distance(configs, OutputSpec(out), pair_distances={("O", "H"): 0.55})
    record = read_record(record_path(out))
    assert record.name == "select_by_distance" and record.version == "1"
    assert record.parameters["pair_distances"] == {"H-O": 0.55}
    before = out.read_bytes(), out.stat().st_mtime_ns
    # the same thresholds spelled otherwise are the same computation: reused, not rewritten
    again = select_by_distance(configs, OutputSpec(out), pair_distances={"H-O": 0.55})
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before
    assert kept_labels(again) == [0, 2]
    with pytest.raises(RecordMismatchError) as err:
        select_by_distance(configs, OutputSpec(out), pair_distances={"H-O": 0.45})
    assert set(err.value.differences) == {"parameters.pair_distances.H-O"}
    with pytest.raises(RecordMismatchError) as err:
        select_by_distance(configs, OutputSpec(out), pair_distances={"H-O": 0.55},
                           covalent_fraction=0.7)
    assert "parameters.covalent_fraction" in err.value.differences


def test_distance_filter_serial_and_two_processes_write_the_same(tmp_path):
    configs = labelled([water(), water(oh=0.5), h2(0.74), h2(0.3),
                        bulk("Cu", "fcc", a=2.0), bulk("Cu", "fcc", a=3.6)])
    select_by_distance(configs, OutputSpec(tmp_path / "serial.xyz"))
    select_by_distance(configs, OutputSpec(tmp_path / "par.xyz"), autopara_info=TWO_PROCESSES)
    serial = (tmp_path / "serial.xyz").read_bytes()
    assert serial == (tmp_path / "par.xyz").read_bytes()
    assert kept_labels(ConfigSet(tmp_path / "serial.xyz")) == [0, 2, 5]


@pytest.mark.parametrize("kwargs, message", [
    (dict(pair_distances={("H", "Xx"): 0.5}), "two chemical symbols"),
    (dict(pair_distances={"H-H-H": 0.5}), "two chemical symbols"),
    (dict(pair_distances={"H-H": -1.0}), "H-H must be a number >= 0"),
    (dict(pair_distances={"H-O": 0.5, ("O", "H"): 0.6}), "given twice"),
    (dict(pair_distances=[("H", "H", 0.5)]), "must be a mapping"),
    (dict(covalent_fraction=0.0), "covalent_fraction must be"),
    (dict(covalent_fraction=None), "give pair_distances"),
    (dict(invert="yes"), "invert must be"),
])
def test_distance_filter_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        select_by_distance([water()], OutputSpec(), **kwargs)


def test_new_selectors_are_registered():
    assert get_selector("select_by_distance").load() is select_by_distance
    assert get_selector("select_convex_hull").load() is select_convex_hull


# -- the convex hull ----------------------------------------------------------------------------

# a made-up Cu-Au binary: (number of Cu, number of Au, energy per atom, eV above the hull).
# The hull runs (x_Au, E) = (0, 0) -> (0.5, -0.5) -> (1, 0); CuAu3 lies on its second
# facet without being a vertex, the others above it by what the last column says.
BINARY = [
    (4, 0, 0.0, 0.0),     # Cu
    (3, 1, -0.2, 0.05),   # hull at x = 1/4: -0.25
    (2, 2, -0.5, 0.0),    # CuAu
    (2, 2, -0.45, 0.05),  # a higher-energy CuAu
    (1, 3, -0.25, 0.0),   # on the facet CuAu - Au
    (0, 4, 0.0, 0.0),     # Au
    (0, 4, 0.1, 0.1),     # a higher-energy Au
    (3, 1, 0.3, 0.55),
]


def binary(energy_key: str = "energy") -> list[Atoms]:
    configs = []
    for i, (n_cu, n_au, e, _) in enumerate(BINARY):
        # positions do not matter; shuffle the species to show only the counts do
        at = Atoms(["Cu"] * n_cu + ["Au"] * n_au, positions=np.arange(12.0).reshape(4, 3))
        at.info[energy_key] = e * len(at)  # total energy
        at.info["label"] = i
        configs.append(at)
    return configs


def test_hull_distances_of_a_binary_whose_hull_is_known():
    configs = binary()
    energies = [at.info["energy"] / len(at) for at in configs]
    fractions = [[at.symbols.count("Cu") / 4, at.symbols.count("Au") / 4] for at in configs]
    expected = [row[3] for row in BINARY]
    np.testing.assert_allclose(hull_distances(energies, fractions), expected, atol=1e-12)
    # the composition coordinates only matter through their affine span
    padded = np.column_stack([np.zeros(len(fractions)), fractions, np.zeros(len(fractions))])
    np.testing.assert_allclose(hull_distances(energies, padded), expected, atol=1e-12)


def test_hull_of_one_composition_and_of_points_on_one_line():
    # one composition: the hull is the lowest energy
    np.testing.assert_allclose(hull_distances([1.0, 0.5, 0.7], [[1.0], [1.0], [1.0]]),
                               [0.5, 0.0, 0.2])
    # energies linear in composition: every point is on the hull
    x = np.linspace(0, 1, 5)[:, None]
    np.testing.assert_allclose(hull_distances(2.0 * x[:, 0] - 1.0, x), 0.0, atol=1e-12)
    # a ternary whose data lie on the line Cu-Au (no Ag varies): a binary hull
    ternary = np.column_stack([[0.0, 0.5, 1.0, 0.5], [1.0, 0.5, 0.0, 0.5], np.zeros(4)])
    np.testing.assert_allclose(hull_distances([0.0, -0.5, 0.0, 0.2], ternary),
                               [0.0, 0.0, 0.0, 0.7], atol=1e-12)


def test_select_convex_hull_with_and_without_tolerance():
    configs = binary()
    on = select_convex_hull(configs, OutputSpec())
    assert kept_labels(on) == [0, 2, 4, 5]
    near = select_convex_hull(configs, OutputSpec(), tolerance=0.06)
    assert kept_labels(near) == [0, 1, 2, 3, 4, 5]
    assert kept_labels(select_convex_hull(configs, OutputSpec(), tolerance=1.0)) == list(
        range(len(BINARY)))
    other_key = select_convex_hull(binary("dft_energy"), OutputSpec(), key="dft_energy")
    assert kept_labels(other_key) == [0, 2, 4, 5]


def test_convex_hull_record_reuse_change_and_two_processes(tmp_path, monkeypatch):
    configs = binary()
    out = tmp_path / "hull.xyz"
    select_convex_hull(configs, OutputSpec(out), tolerance=0.06)
    record = read_record(record_path(out))
    assert record.name == "select_convex_hull" and record.parameters["tolerance"] == 0.06
    before = out.read_bytes()

    def no_reading(*args, **kwargs):
        raise AssertionError("a matching record must be reused without reading")

    with monkeypatch.context() as m:
        m.setattr(select_convex_hull, "read_rows", no_reading)
        select_convex_hull(configs, OutputSpec(out), tolerance=0.06)
    assert out.read_bytes() == before
    with pytest.raises(RecordMismatchError) as err:
        select_convex_hull(configs, OutputSpec(out), tolerance=0.0)
    assert set(err.value.differences) == {"parameters.tolerance"}

    select_convex_hull(configs, OutputSpec(tmp_path / "par.xyz"), tolerance=0.06,
                       autopara_info=TWO_PROCESSES)
    assert (tmp_path / "par.xyz").read_bytes() == before


@pytest.mark.parametrize("kwargs, message", [
    (dict(tolerance=-0.1), "tolerance must be"),
    (dict(tolerance="0.1"), "tolerance must be"),
    (dict(key=""), "key must be"),
])
def test_convex_hull_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        select_convex_hull(binary(), OutputSpec(), **kwargs)


def test_convex_hull_names_a_configuration_without_energy():
    configs = binary()
    del configs[3].info["energy"]
    with pytest.raises(OperationError, match=r"item 3.*no energy Atoms.info\['energy'\]"):
        select_convex_hull(configs, OutputSpec())


# -- CUR: the faster deterministic choice, the stochastic one as wfl's ---------------------------

def reference_cur(rows: np.ndarray, n_select: int) -> list[int]:
    """The deterministic CUR as it was (version 1): a full eigh of the deflated d x d matrix
    per pick, k = 1, no exclusion; the new code must choose the same."""
    cov = rows.T @ rows
    available = np.ones(len(rows), dtype=bool)
    taken, directions = [], []
    while len(taken) < n_select:
        values, vecs = np.linalg.eigh(cov)
        scores = (rows @ vecs[:, -1]) ** 2 / values[-1]
        scores[~available] = -np.inf
        best = int(np.argmax(scores))
        taken.append(best)
        available[best] = False
        q = rows[best].copy()
        for _ in range(2):
            for u in directions:
                q -= (u @ q) * u
        q /= np.linalg.norm(q)
        directions.append(q)
        cq = cov @ q
        cov = cov - np.outer(q, cq) - np.outer(cq, q) + (q @ cq) * np.outer(q, q)
    return taken


def descriptor_like(n: int, d: int, seed: int) -> np.ndarray:
    """Positive, clustered rows with a decaying spectrum, as SOAP vectors have."""
    rng = np.random.default_rng(seed)
    decay = np.arange(1, d + 1, dtype=float)
    centres = rng.normal(size=(12, d)) / decay
    rows = centres[rng.integers(0, 12, size=n)] + 0.3 * rng.normal(size=(n, d)) / decay ** 1.5
    return rows + 1.0


@pytest.mark.parametrize("n, d, n_select, kind, lanczos", [
    (600, 200, 40, "descriptor", True),   # long descriptors
    (400, 180, 30, "gaussian", True),     # a flat spectrum, the hardest for Lanczos
    (300, 24, 20, "descriptor", False),   # short ones: a dense eigh
])
def test_deterministic_cur_chooses_as_the_full_eigh_did(n, d, n_select, kind, lanczos):
    from wflp.ops.selectors import DENSE_BELOW, cur

    assert (d >= DENSE_BELOW) == lanczos
    rows = (descriptor_like(n, d, seed=d) if kind == "descriptor"
            else np.random.default_rng(d).normal(size=(n, d)))
    assert cur(rows, n_select) == reference_cur(rows, n_select)


def test_deterministic_cur_solves_its_eigenproblems_on_one_blas_thread(monkeypatch):
    """Thousands of small products per choice: shared between threads they took twice as
    long on 2 cores; the caller's thread count is back afterwards."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from wflp.ops import selectors

    rows = descriptor_like(400, 200, seed=7)  # long descriptors: the Lanczos path
    seen = []
    top = selectors._ProjectedTop.top

    def spy(self, k):
        seen.append(max(lib["num_threads"] for lib in threadpoolctl.threadpool_info()))
        return top(self, k)

    monkeypatch.setattr(selectors._ProjectedTop, "top", spy)
    with threadpoolctl.threadpool_limits(limits=2):
        before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()]
        picks = selectors.cur(rows, 6)
        after = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()]
    assert max(before) == 2 and after == before
    assert seen == [1] * 6
    assert picks == reference_cur(rows, 6)


def test_stochastic_cur_centres_the_descriptors_as_wfl_does():
    from wflp.ops.selectors import cur

    rows = descriptor_like(300, 20, seed=5)
    picks = cur(rows, 10, method="stochastic", rng=np.random.default_rng(3))
    # centred: a common offset of every descriptor changes nothing
    shifted = cur(rows + 7.0, 10, method="stochastic", rng=np.random.default_rng(3))
    assert shifted == picks
    # k defaults to n_select // 2, as wfl's num / 2 singular vectors
    assert cur(rows, 10, method="stochastic", k=5, rng=np.random.default_rng(3)) == picks
    assert cur(rows, 10, method="stochastic", k=10, rng=np.random.default_rng(3)) != picks


def test_select_cur_records_version_2(tmp_path):
    rows = descriptor_like(30, 6, seed=1)
    configs = [Atoms("H", info={"soap": row}) for row in rows]
    select_cur_op = get_selector("select_cur").load()
    select_cur_op(configs, OutputSpec(tmp_path / "c.xyz"), n_select=3)
    assert read_record(record_path(tmp_path / "c.xyz")).version == "2"
