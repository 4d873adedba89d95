"""Global selection: the core's form (read rows, choose, write) and CUR, FPS, flat histogram.

The selectors are tested on synthetic descriptors with known structure (clusters of
very different sizes), where coverage can be counted; the form is tested for what
every operation owes: records, reuse, mismatch, resume, determinism and bounded memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import ase.io
import numpy as np
import pytest
from ase import Atoms
from wflp import AutoparaInfo, ConfigSet, OutputSpec
from wflp.chain import run_chain
from wflp.errors import OperationError, ParameterError, RecordMismatchError
from wflp.ops import global_selector, select_cur, select_flat_histogram, select_fps
from wflp.ops import selection as selection_module
from wflp.ops.selectors import cur, farthest_points, flat_histogram
from wflp.records import read_record, record_path

N_CLUSTERS = 8
DIM = 16


def clustered(seed: int = 0, big: int = 200, small: int = 4):
    """Descriptor rows: one big cluster and N_CLUSTERS - 1 small ones, far apart.

    Returns (rows, labels). Random picks almost never reach the small clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(N_CLUSTERS, DIM))
    sizes = [big] + [small] * (N_CLUSTERS - 1)
    rows, labels = [], []
    for label, (centre, size) in enumerate(zip(centres, sizes)):
        rows.append(centre + rng.normal(scale=0.2, size=(size, DIM)))
        labels += [label] * size
    order = rng.permutation(len(labels))  # clusters interleaved in the input
    return np.vstack(rows)[order], np.array(labels)[order]


def as_configs(rows, labels=None, key="soap"):
    out = []
    for i, row in enumerate(rows):
        at = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
        at.info[key] = np.array(row)
        at.info["position"] = i
        if labels is not None:
            at.info["cluster"] = int(labels[i])
        out.append(at)
    return out


def covered(indices, labels) -> int:
    return len(set(labels[list(indices)]))


# -- the choosers on known structure ----------------------------------------------------------

def test_cur_and_fps_cover_every_cluster_random_picks_do_not():
    rows, labels = clustered()
    det = cur(rows, N_CLUSTERS)
    fps = farthest_points(rows, N_CLUSTERS)
    assert covered(det, labels) == N_CLUSTERS
    assert covered(fps, labels) == N_CLUSTERS
    rng = np.random.default_rng(123)
    random_cover = [covered(rng.choice(len(rows), N_CLUSTERS, replace=False), labels)
                    for _ in range(200)]
    # 7 clusters of 4 among 228 rows: random picks see about 2 clusters
    assert max(random_cover) < N_CLUSTERS
    assert np.mean(random_cover) < 3.5
    stochastic = [covered(cur(rows, N_CLUSTERS, method="stochastic",
                              rng=np.random.default_rng(s)), labels) for s in range(30)]
    # leverage scores favour the rare directions: far more coverage than random
    assert np.mean(stochastic) > np.mean(random_cover) + 2


def test_deterministic_cur_does_not_pick_near_duplicates_in_pairs():
    """Adjacent MD frames: five rare events seen in two nearly identical frames each, among
    200 frames of five common motions. Ranking by plain leverage (no deflation) takes both
    frames of every rare pair; deflation takes one of each, then the common motions."""
    rng = np.random.default_rng(5)
    directions = np.linalg.qr(rng.normal(size=(12, 10)))[0].T  # 10 orthonormal rows
    rare = np.repeat(directions[:5], 2, axis=0) * 3.0
    common = np.repeat(directions[5:], 40, axis=0)
    rows = np.vstack([rare, common]) + rng.normal(scale=1e-3, size=(210, 12))
    pair = np.concatenate([np.arange(10) // 2, 5 + np.arange(200)])  # rare pairs: 0..4
    picked = cur(rows, 10)
    assert len(set(pair[picked])) == 10
    assert set(range(5)) <= set(pair[picked])
    values, vecs = np.linalg.eigh(rows.T @ rows)
    u = rows @ vecs[:, -10:] / np.sqrt(values[-10:])
    plain = np.argsort(-(u ** 2).sum(axis=1), kind="stable")[:10]
    assert len(set(pair[plain])) == 5  # five pairs, both frames each


def test_choosers_are_pure_functions_of_rows_parameters_and_seed():
    rows, _ = clustered(seed=2)
    assert cur(rows, 12) == cur(rows.copy(), 12)
    assert farthest_points(rows, 12) == farthest_points(rows.copy(), 12)
    a = cur(rows, 12, method="stochastic", rng=np.random.default_rng(7))
    b = cur(rows, 12, method="stochastic", rng=np.random.default_rng(7))
    c = cur(rows, 12, method="stochastic", rng=np.random.default_rng(8))
    assert a == b and a != c
    assert len(set(cur(rows, 40))) == 40  # beyond the rank of 16: a second round


def test_exclusion_never_repeats_and_covers_what_is_missing():
    rows, labels = clustered(seed=3)
    first_four = [int(np.flatnonzero(labels == c)[0]) for c in range(4)]
    previous = rows[first_four]
    for chosen in (cur(rows, 4, exclude=previous), farthest_points(rows, 4, exclude=previous)):
        assert not set(chosen) & set(first_four)
        assert set(labels[chosen]) == set(range(4, N_CLUSTERS))
    without = farthest_points(rows, 4)
    assert set(labels[without]) != set(range(4, N_CLUSTERS))


def test_flat_histogram_is_flatter_than_its_input_and_kT_biases_low():
    rng = np.random.default_rng(0)
    values = rng.normal(size=4000)
    edges = np.linspace(values.min(), values.max(), 11)

    def unevenness(v):  # coefficient of variation of the counts in 10 equal bins
        counts, _ = np.histogram(v, bins=edges)
        return counts.std() / counts.mean()

    chosen = flat_histogram(values[:, None], 400, bins=10, rng=np.random.default_rng(1))
    before, after = unevenness(values), unevenness(values[chosen])
    assert after < 0.5 * before, (before, after)
    biased = flat_histogram(values[:, None], 400, bins=10, kT=0.5,
                            rng=np.random.default_rng(1))
    assert values[biased].mean() < values[chosen].mean() - 0.5


# -- the operations: records, reuse, resume ---------------------------------------------------

@pytest.fixture
def pool(tmp_path):
    rows, labels = clustered()
    path = tmp_path / "pool.xyz"
    ase.io.write(path, as_configs(rows, labels))
    return path, labels


def test_select_cur_to_a_file_has_a_record_and_is_reused_without_reading(pool, tmp_path,
                                                                         monkeypatch):
    path, labels = pool
    out = tmp_path / "sel.xyz"
    picked = select_cur(ConfigSet(path), OutputSpec(out), n_select=N_CLUSTERS)
    got = list(picked)
    assert len(got) == N_CLUSTERS
    assert {int(at.info["cluster"]) for at in got} == set(range(N_CLUSTERS))
    positions = [int(at.info["position"]) for at in got]
    assert positions == sorted(positions)  # input order
    record = read_record(record_path(out))
    assert record.name == "select_cur" and record.parameters["n_select"] == N_CLUSTERS
    assert record.code["callable"] == "wflp.ops.selectors.select_cur"
    assert record.code["read"]["callable"] == "wflp.ops.selectors.read_vector"
    assert record.engine == {"global_selection": selection_module.FORM_VERSION}
    assert record.outputs[0]["configs"] == N_CLUSTERS
    assert not (tmp_path / ".sel.xyz.wflp-select").exists()

    def no_reading(*args, **kwargs):
        raise AssertionError("a matching record must be reused without reading")

    monkeypatch.setattr(select_cur, "read_rows", no_reading)
    before = out.read_bytes()
    select_cur(ConfigSet(path), OutputSpec(out), n_select=N_CLUSTERS)
    assert out.read_bytes() == before
    with pytest.raises(RecordMismatchError) as err:
        select_cur(ConfigSet(path), OutputSpec(out), n_select=N_CLUSTERS, key="other")
    assert set(err.value.differences) == {"parameters.key"}


def test_seed_and_inputs_are_part_of_the_identity(pool, tmp_path):
    path, _ = pool
    out = tmp_path / "s.xyz"
    select_cur(ConfigSet(path), OutputSpec(out), n_select=5, method="stochastic", seed=1)
    with pytest.raises(RecordMismatchError) as err:
        select_cur(ConfigSet(path), OutputSpec(out), n_select=5, method="stochastic", seed=2)
    assert "parameters.seed" in err.value.differences
    configs = list(ConfigSet(path))[:-1]
    with pytest.raises(RecordMismatchError) as err:
        select_cur(configs, OutputSpec(out), n_select=5, method="stochastic", seed=1)
    assert "inputs.sha256" in err.value.differences
    select_cur(ConfigSet(path), OutputSpec(out, overwrite=True), n_select=5,
               method="stochastic", seed=2)
    assert read_record(record_path(out)).parameters["seed"] == 2


def test_serial_and_parallel_runs_choose_and_write_the_same(pool, tmp_path):
    path, _ = pool
    for name, info in (("serial", AutoparaInfo()),
                       ("parallel", AutoparaInfo(num_python_subprocesses=2,
                                                 num_inputs_per_python_subprocess=17))):
        select_cur(ConfigSet(path), OutputSpec(tmp_path / f"cur-{name}.xyz"), n_select=20,
                   method="stochastic", seed=4, autopara_info=info)
        select_fps(ConfigSet(path), OutputSpec(tmp_path / f"fps-{name}.xyz"), n_select=20,
                   autopara_info=info)
    for kind in ("cur", "fps"):
        serial = (tmp_path / f"{kind}-serial.xyz").read_bytes()
        assert serial == (tmp_path / f"{kind}-parallel.xyz").read_bytes()
    two = AutoparaInfo(num_python_subprocesses=2, num_inputs_per_python_subprocess=9)
    assert list(select_cur.indices(ConfigSet(path), n_select=9)) == \
        list(select_cur.indices(ConfigSet(path), n_select=9, autopara_info=two))


def test_exclude_a_previous_selection_by_file(pool, tmp_path):
    path, labels = pool
    first = tmp_path / "first.xyz"
    select_fps(ConfigSet(path), OutputSpec(first), n_select=4)
    second = tmp_path / "second.xyz"
    select_fps(ConfigSet(path), OutputSpec(second), n_select=4, exclude=str(first))
    a = {int(at.info["position"]) for at in ConfigSet(first)}
    b = {int(at.info["position"]) for at in ConfigSet(second)}
    assert not a & b
    both = {int(at.info["cluster"]) for at in ConfigSet([str(first), str(second)])}
    assert both == set(range(N_CLUSTERS))
    record = read_record(record_path(second))
    assert len(record.parameters["exclude"]["configurations_sha256"]) == 64
    # the excluded configurations are part of the identity: another exclusion differs
    ase.io.write(first, list(ConfigSet(first))[:2])
    with pytest.raises(RecordMismatchError) as err:
        select_fps(ConfigSet(path), OutputSpec(second), n_select=4, exclude=str(first))
    assert "parameters.exclude.configurations_sha256" in err.value.differences


def test_an_interrupted_write_resumes_without_reading_again(pool, tmp_path, monkeypatch):
    path, _ = pool
    out = tmp_path / "r.xyz"
    calls = []
    real_write = selection_module._SelectionRun.write

    def interrupted(self, chosen, work):
        calls.append(len(chosen))
        raise KeyboardInterrupt

    monkeypatch.setattr(selection_module._SelectionRun, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        select_fps(ConfigSet(path), OutputSpec(out), n_select=6)
    work = tmp_path / ".r.xyz.wflp-select"
    assert work.is_dir() and (work.stat().st_mode & 0o777) == 0o700
    assert not out.exists()

    def no_reading(*args, **kwargs):
        raise AssertionError("the choice was kept: no descriptor is read again")

    monkeypatch.setattr(selection_module._SelectionRun, "write", real_write)
    monkeypatch.setattr(select_fps, "read_rows", no_reading)
    resumed = [int(at.info["position"]) for at in
               select_fps(ConfigSet(path), OutputSpec(out), n_select=6)]
    monkeypatch.undo()
    fresh = select_fps(ConfigSet(path), OutputSpec(tmp_path / "fresh.xyz"), n_select=6)
    assert resumed == [int(at.info["position"]) for at in fresh]
    assert calls == [6] and not work.exists()
    assert out.read_bytes() == (tmp_path / "fresh.xyz").read_bytes()


def test_an_interrupted_run_of_another_selection_is_not_resumed(pool, tmp_path, monkeypatch):
    path, _ = pool
    out = tmp_path / "x.xyz"

    def interrupted(self, chosen, work):
        raise KeyboardInterrupt

    monkeypatch.setattr(selection_module._SelectionRun, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        select_fps(ConfigSet(path), OutputSpec(out), n_select=6)
    monkeypatch.undo()
    with pytest.raises(RecordMismatchError) as err:
        select_fps(ConfigSet(path), OutputSpec(out), n_select=5)
    assert "parameters.n_select" in err.value.differences
    assert "interrupted selection" in str(err.value)
    got = select_fps(ConfigSet(path), OutputSpec(out, overwrite=True), n_select=5)
    assert len(list(got)) == 5


def test_flat_histogram_selector_on_energies_per_atom(tmp_path):
    rng = np.random.default_rng(2)
    configs = []
    for i in range(600):
        n = int(rng.integers(1, 5))
        at = Atoms("H" * n, positions=rng.normal(size=(n, 3)) * 3)
        at.info["energy"] = float(rng.normal(loc=-3.0, scale=0.4)) * n  # per atom: Gaussian
        at.info["position"] = i
        configs.append(at)
    per_atom = np.array([at.info["energy"] / len(at) for at in configs])
    path = tmp_path / "md.xyz"
    ase.io.write(path, configs)  # ASE stores info["energy"] as a calculator result
    out = select_flat_histogram(ConfigSet(path), OutputSpec(tmp_path / "flat.xyz"),
                                n_select=120, bins=8, seed=5)
    chosen = [int(at.info["position"]) for at in out]
    edges = np.linspace(per_atom.min(), per_atom.max(), 9)
    spread = [np.histogram(v, bins=edges)[0] for v in (per_atom, per_atom[chosen])]
    cv = [c.std() / c.mean() for c in spread]
    assert cv[1] < 0.6 * cv[0], cv
    again = select_flat_histogram(ConfigSet(path), OutputSpec(), n_select=120, bins=8, seed=5)
    assert [int(at.info["position"]) for at in again] == chosen


# -- errors -----------------------------------------------------------------------------------

def test_a_configuration_without_the_key_is_named(tmp_path):
    rows, _ = clustered()
    configs = as_configs(rows[:10])
    del configs[6].info["soap"]
    with pytest.raises(OperationError, match=r"item 6.*info\['soap'\]"):
        select_cur(configs, OutputSpec(), n_select=3)


@pytest.mark.parametrize("kwargs, seed, message", [
    ({"n_select": 0}, None, "n_select must be a whole number >= 1"),
    ({"n_select": 2, "method": "random"}, None, "method must be one of"),
    ({"n_select": 2, "method": "stochastic"}, None, "pass seed=<int>"),
    ({"n_select": 2, "exclude": 3}, None, "exclude must be configurations"),
    ({"n_select": 2, "k": 0}, None, "k (singular vectors"),
])
def test_bad_parameters_are_refused_before_reading(kwargs, seed, message):
    rows, _ = clustered()
    with pytest.raises(ParameterError) as err:
        select_cur(as_configs(rows[:5]), OutputSpec(), seed=seed, **kwargs)
    assert message in str(err.value)


def test_more_than_there_is_and_rows_of_different_lengths():
    rows, _ = clustered()
    configs = as_configs(rows[:5])
    with pytest.raises(ParameterError, match="n_select=6 but there are only 5"):
        select_fps(configs, OutputSpec(), n_select=6)
    configs[3].info["soap"] = rows[3][:-1]
    with pytest.raises(ParameterError, match="configuration 3 of the inputs has 15 values"):
        select_fps(configs, OutputSpec(), n_select=2)


def test_a_selector_of_ones_own_and_its_contract():
    configs = [Atoms("H", info={"e": float(e)}) for e in (3.0, 1.0, 2.0, 5.0)]

    @global_selector("highest", read=lambda at, p: [at.info[p["key"]]])
    def highest(rows, n_select, key="e"):
        return list(np.argsort(-rows[:, 0], kind="stable")[:n_select])

    assert [at.info["e"] for at in highest(configs, OutputSpec(), n_select=2)] == [3.0, 5.0]
    assert list(highest.indices(configs, n_select=2)) == [3, 0]

    @global_selector("broken", read=lambda at, p: [0.0])
    def broken(rows, n_select):
        return [0, 0]

    with pytest.raises(OperationError, match="more than once"):
        broken(configs, OutputSpec(), n_select=2)


def test_nested_inputs_keep_their_groups():
    rows, labels = clustered()
    configs = as_configs(rows, labels)
    nested = [configs[:100], configs[100:]]
    chosen = sorted(select_fps.indices(nested, n_select=8))
    out = select_fps(nested, OutputSpec(), n_select=8).to_list()
    assert [len(g) for g in out] == [sum(c < 100 for c in chosen), sum(c >= 100 for c in chosen)]


def test_from_a_chain_file_and_reused(pool, tmp_path):
    path, _ = pool
    chain = {"chain": {"inputs": str(path), "workdir": "run"},
             "step": [{"kind": "selector", "name": "select_fps", "output": "fps.xyz",
                       "params": {"n_select": 8}},
                      {"kind": "selector", "name": "select_flat_histogram",
                       "output": "flat.xyz", "seed": 3,
                       "params": {"n_select": 4, "key": "position", "per_atom": False}}]}
    first = run_chain(chain, base_dir=tmp_path)
    assert [s.configs for s in first.steps] == [8, 4]
    again = run_chain(chain, base_dir=tmp_path)
    assert all(s.reused for s in again.steps)


def test_command_line(pool, tmp_path):
    path, _ = pool
    out = tmp_path / "cli.xyz"
    cmd = [sys.executable, "-m", "wflp.cli", "run", "selector", "select_cur", "-i", str(path),
           "-o", str(out), "--set", "n_select=3", "--set", "method=stochastic", "--seed", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "select_cur" in res.stdout and len(list(ConfigSet(out))) == 3
    bad = subprocess.run(cmd[:-2], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "pass seed=<int>" in bad.stderr


# -- memory -----------------------------------------------------------------------------------

MEMORY_CHILD = textwrap.dedent("""
    import json, resource, sys
    from wflp import AutoparaInfo, ConfigSet, OutputSpec, shutdown_pool
    from wflp.ops import select_fps
    out = select_fps(ConfigSet(sys.argv[1]), OutputSpec(sys.argv[2]), n_select=50,
                     autopara_info=AutoparaInfo(num_python_subprocesses=2))
    n_out = sum(1 for _ in out)
    shutdown_pool()
    print(json.dumps({"n_out": n_out,
                      "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "workers_maxrss_kb":
                          resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
""")


def _write_pool(path, n, seed=0):
    """n 4-atom configurations with a 4-value descriptor each, written as extended XYZ."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, 4))
    atoms = ("Cu 0.0 0.0 0.0\nCu 1.8 1.8 0.0\nCu 1.8 0.0 1.8\nCu 0.0 1.8 1.8\n")
    with open(path, "w") as fd:
        for row in rows:
            values = " ".join(repr(float(v)) for v in row)
            fd.write(f'4\nProperties=species:S:1:pos:R:3 soap="{values}"\n{atoms}')


def _selection_peak(tmp_path, n):
    src = tmp_path / f"pool{n}.xyz"
    _write_pool(src, n)
    res = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(src),
                          str(tmp_path / f"sel{n}.xyz")], capture_output=True, text=True,
                         timeout=300, env={"WFLP_PROGRESS": "0", "PATH": "/usr/bin:/bin",
                                           "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert data["n_out"] == 50
    return data["maxrss_kb"] / 1024, data["workers_maxrss_kb"] / 1024


@pytest.mark.slow
def test_memory_holds_descriptors_not_configurations_for_1e5(tmp_path):
    """1e5 configurations, read and written by 2 worker processes: the driver holds the
    rows, the workers one chunk each."""
    small, small_workers = _selection_peak(tmp_path, 1_000)
    large, large_workers = _selection_peak(tmp_path, 100_000)
    print(f"peak RSS of the driver: 1e3 -> {small:.0f} MB, 1e5 -> {large:.0f} MB; "
          f"of a worker: {small_workers:.0f} -> {large_workers:.0f} MB")
    # 99000 more 4-atom configurations would cost > 150 MB held as Atoms; their rows of 4
    # numbers (an array each, then one matrix) cost about 20 MB
    assert large - small < 40, (small, large)
    assert large_workers - small_workers < 20, (small_workers, large_workers)
