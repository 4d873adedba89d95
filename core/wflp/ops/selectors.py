"""Selectors: CUR, farthest-point sampling, flat histogram over the whole set; a distance filter.

Each is a :class:`~wflp.ops.selection.GlobalSelector`: it reads one row per
configuration, chooses positions with a pure function of the rows, its
parameters and its seed (the functions ``cur``, ``farthest_points`` and
``flat_histogram`` below, usable on any array), and writes the chosen
configurations. They need numpy only; descriptors come from any operation that
stores one vector per configuration in ``Atoms.info`` (e.g. the ``soap``
generator of the wflp-soap plugin).

- ``select_cur``: leverage-score CUR on descriptor vectors. ``method="stochastic"``
  samples configurations with probabilities proportional to their leverage scores
  over the top n_select // 2 singular vectors of the centred descriptors (as wfl's
  CUR_conf_global does; wfl zeroes excluded configurations' scores, this projects
  their directions out); ``method="deterministic"`` takes
  the configuration of highest leverage and deflates: every later score is
  computed from the descriptors with the directions of those already taken
  projected out, so near-duplicates (adjacent MD frames) are not taken in pairs.
- ``select_fps``: greedy farthest-point sampling (Euclidean distance).
- ``select_flat_histogram``: configurations drawn so that a per-atom quantity (the
  energy per atom by default) has a flat histogram, optionally biased towards
  low values by a Boltzmann factor exp(-(E - E_min) / kT).

``select_convex_hull`` keeps the configurations on (or within a tolerance above) the
lower convex hull of energy per atom against composition.

``select_by_distance`` is a per-configuration filter (an ordinary operation): it keeps
configurations with no two atoms closer than per-pair thresholds.

``exclude`` (CUR and FPS) names configurations chosen before, e.g. a previous
training set: a configuration whose descriptor is identical to one of them is
never chosen, and what they cover counts as covered (CUR: their directions are
projected out first, as if they had been chosen before; FPS: distances are
measured from them too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any, Optional

import numpy as np
from ase import Atoms

from ..engine import operation
from ..errors import OperationError, ParameterError
from .selection import GlobalSelector, check_configurations, global_selector, info_vector_reader

CUR_METHODS = ("deterministic", "stochastic")
EIGEN_TOLERANCE = 1e-12   # eigenvalues below this fraction of the largest count as zero
ROW_BLOCK = 8192          # rows per block when scoring: bounds temporary memory


# -- reading rows -----------------------------------------------------------------------------

@info_vector_reader("key")  # rows of plain extxyz files come from their comment lines
def read_vector(atoms: Any, params: dict) -> np.ndarray:
    """The descriptor vector of one configuration: ``atoms.info[params["key"]]``."""
    key = params["key"]
    info = getattr(atoms, "info", None)
    if info is None:
        raise ValueError(f"the item is a {type(atoms).__name__}, not a configuration (Atoms)")
    if key in info:
        return np.asarray(info[key], dtype=float)
    if key in getattr(atoms, "arrays", {}):
        raise ValueError(
            f"{key!r} is a per-atom array (Atoms.arrays); this selector needs one vector per "
            f"configuration in Atoms.info[{key!r}] (e.g. an averaged descriptor: "
            "soap(..., per_atom=False))")
    raise ValueError(f"it has no descriptor Atoms.info[{key!r}]; compute one first with a "
                     f"descriptor ({_descriptors_known()}) or pass the key that holds it")


def _descriptors_known() -> str:
    """The registered descriptors and the keys they write, for a message (the plugins'
    kind "descriptors"); only read when a descriptor is missing."""
    from ..plugins import list_specs

    try:
        specs = list_specs("descriptors")
    except Exception as err:  # a broken plugin setup must not hide the real problem
        return f"the registered ones could not be listed: {err}"
    if not specs:
        return "none is installed: e.g. pip install wflp-soap"
    return "registered: " + ", ".join(f"{s.name} writes key={s.key!r}" for s in specs)


def read_quantity(atoms: Any, params: dict) -> list[float]:
    """One number per configuration: ``info[key]`` (or the calculator result of that name,
    as ASE's readers store energies), divided by the number of atoms if ``per_atom``."""
    key = params["key"]
    info = getattr(atoms, "info", None)
    if info is None:
        raise ValueError(f"the item is a {type(atoms).__name__}, not a configuration (Atoms)")
    if key in info:
        value = info[key]
    else:
        results = getattr(getattr(atoms, "calc", None), "results", None) or {}
        if key not in results:
            raise ValueError(f"it has no Atoms.info[{key!r}] (nor a calculator result "
                             f"{key!r}); pass key= naming the quantity to flatten")
        value = results[key]
    value = np.asarray(value, dtype=float)
    if value.size != 1:
        raise ValueError(f"{key!r} holds {value.size} numbers; the flat histogram needs one "
                         "number per configuration")
    value = float(value.ravel()[0])
    if params.get("per_atom", True):
        if len(atoms) == 0:
            raise ValueError("it has no atoms, so it has no quantity per atom")
        value /= len(atoms)
    return [value]


# -- parameter checks (in the caller, before anything runs) -----------------------------------

def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ParameterError(f"{name}: n_select must be a whole number >= 1, got {value!r}")


def _check_key(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ParameterError(f"{name}: key must be the name of an Atoms.info entry, got "
                             f"{value!r}")


def _check_cur(params: dict, seed: Optional[int]) -> None:
    _check_count("select_cur", params["n_select"])
    _check_key("select_cur", params["key"])
    method = params["method"]
    if method not in CUR_METHODS:
        raise ParameterError(f"select_cur: method must be one of {', '.join(CUR_METHODS)}, "
                             f"got {method!r}")
    if method == "stochastic" and seed is None:
        raise ParameterError("select_cur: method='stochastic' draws random numbers: pass "
                             "seed=<int> (wflp run ... --seed N) so the selection can be "
                             "repeated")
    k = params["k"]
    if k is not None and (isinstance(k, bool) or not isinstance(k, Integral) or k < 1):
        raise ParameterError(f"select_cur: k (singular vectors in the leverage score) must be "
                             f"a whole number >= 1 or None, got {k!r}")
    check_configurations(params["exclude"], "select_cur: exclude")


def _check_fps(params: dict, seed: Optional[int]) -> None:
    _check_count("select_fps", params["n_select"])
    _check_key("select_fps", params["key"])
    check_configurations(params["exclude"], "select_fps: exclude")


def _check_flat(params: dict, seed: Optional[int]) -> None:
    _check_count("select_flat_histogram", params["n_select"])
    _check_key("select_flat_histogram", params["key"])
    if seed is None:
        raise ParameterError("select_flat_histogram: it draws random numbers: pass seed=<int> "
                             "(wflp run ... --seed N) so the selection can be repeated")
    kT = params["kT"]
    if kT is not None and (isinstance(kT, bool) or not isinstance(kT, Real) or not float(kT) > 0):
        raise ParameterError(f"select_flat_histogram: kT must be a positive energy (same units "
                             f"as the quantity, e.g. eV/atom) or None for no bias, got {kT!r}")
    bins = params["bins"]
    if isinstance(bins, bool) or not (
            (isinstance(bins, Integral) and int(bins) >= 1) or isinstance(bins, str)):
        raise ParameterError(f"select_flat_histogram: bins must be a whole number >= 1 or a "
                             f"numpy rule name such as 'auto', got {bins!r}")
    if not isinstance(params["per_atom"], bool):
        raise ParameterError(f"select_flat_histogram: per_atom must be true or false, got "
                             f"{params['per_atom']!r}")


def _enough(name: str, n_select: int, n_candidates: int, excluded: int) -> None:
    if n_select > n_candidates:
        why = f" ({excluded} are identical to configurations to exclude)" if excluded else ""
        raise ParameterError(f"{name}: n_select={n_select} but there are only {n_candidates} "
                             f"candidate configurations{why}; ask for fewer")


# -- the pure functions -----------------------------------------------------------------------

def identical_rows(rows: np.ndarray, exclude: Optional[np.ndarray]) -> np.ndarray:
    """Boolean mask of the rows bitwise identical to a row of *exclude*."""
    mask = np.zeros(len(rows), dtype=bool)
    if exclude is None or len(exclude) == 0:
        return mask
    seen = {np.ascontiguousarray(e).tobytes() for e in exclude}
    for i, row in enumerate(rows):
        if np.ascontiguousarray(row).tobytes() in seen:
            mask[i] = True
    return mask


def _orthonormal_span(vectors: np.ndarray) -> np.ndarray:
    """An orthonormal basis (d x r) of the span of the rows of *vectors*."""
    if vectors is None or len(vectors) == 0:
        return np.zeros((0, 0))
    gram = vectors.T @ vectors
    values, vecs = np.linalg.eigh(gram)
    if values[-1] <= 0:
        return np.zeros((vectors.shape[1], 0))
    keep = values > EIGEN_TOLERANCE * values[-1]
    return vecs[:, keep]


def _deflate(cov: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(I - qq^T) C (I - qq^T) for a unit vector q (C symmetric)."""
    cq = cov @ q
    qcq = float(q @ cq)
    return cov - np.outer(q, cq) - np.outer(cq, q) + qcq * np.outer(q, q)


def _top_eigen(cov: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (above the tolerance) of a symmetric matrix, with vectors."""
    values, vecs = np.linalg.eigh(cov)
    values, vecs = values[::-1], vecs[:, ::-1]
    if values[0] <= 0:
        return values[:0], vecs[:, :0]
    keep = min(k, int(np.count_nonzero(values > EIGEN_TOLERANCE * values[0])))
    return values[:keep], vecs[:, :keep]


def _scores(rows: np.ndarray, values: np.ndarray, vecs: np.ndarray,
            centre: Optional[np.ndarray] = None) -> np.ndarray:
    """Leverage scores: mean over the k vectors of ((row - centre) . v / s)^2, by blocks."""
    out = np.empty(len(rows))
    scale = vecs / np.sqrt(values)
    shift = 0.0 if centre is None else centre @ scale
    for start in range(0, len(rows), ROW_BLOCK):
        proj = rows[start:start + ROW_BLOCK] @ scale - shift
        out[start:start + ROW_BLOCK] = np.einsum("ij,ij->i", proj, proj) / len(values)
    return out


def cur(rows: np.ndarray, n_select: int, method: str = "deterministic",
        k: Optional[int] = None, exclude: Optional[np.ndarray] = None,
        rng: Optional[np.random.Generator] = None) -> list[int]:
    """Positions of *n_select* rows chosen by leverage-score CUR (see the module docstring).

    k: singular vectors in the leverage score (default: 1 for deterministic, as in
    scikit-matter; max(1, n_select // 2) for stochastic, as in wfl). The stochastic
    method centres the descriptors on the candidates' mean first (as wfl's default
    center=True); the deterministic one does not. Scores come from the eigenvectors
    of rows^T rows (d x d), so memory is the rows plus d^2; a deterministic choice
    diagonalises it once and then costs a Lanczos run per pick (see _ProjectedTop),
    run on one BLAS thread (its products are too small to share), and one product of
    the rows with the top vectors to score them.
    The deterministic choice goes in rounds: when every remaining candidate lies in
    the span of the rows taken (and excluded) in this round, a new round starts from
    the remaining candidates, undeflated.
    """
    rows = np.asarray(rows, dtype=float)
    blocked = identical_rows(rows, exclude)
    available = ~blocked
    _enough("select_cur", n_select, int(available.sum()), int(blocked.sum()))
    basis = (_orthonormal_span(np.asarray(exclude, dtype=float))
             if exclude is not None and len(exclude) else np.zeros((rows.shape[1], 0)))
    plain = _gram(rows, available)
    cov = plain
    for j in range(basis.shape[1]):
        cov = _deflate(cov, basis[:, j])
    if method == "stochastic":
        if rng is None:
            raise ParameterError("select_cur: method='stochastic' needs a seed")
        # as wfl: descriptors centred on their mean, num / 2 singular vectors
        kk = k if k is not None else max(1, n_select // 2)
        count = int(available.sum())
        mean = _row_sum(rows, available) / count
        centred = plain - count * np.outer(mean, mean)
        cov = centred
        for j in range(basis.shape[1]):
            cov = _deflate(cov, basis[:, j])
        values, vecs = _top_eigen(cov, kk)
        if len(values) == 0:  # what is excluded spans every candidate: score without it
            values, vecs = _top_eigen(centred, kk)
        if len(values) == 0:
            raise ParameterError("select_cur: every candidate descriptor is the same; CUR "
                                 "cannot rank them")
        p = _scores(rows, values, vecs, mean)
        p[blocked] = 0.0
        # rows outside the top singular directions score 0; a tiny floor lets them fill
        # a request for more rows than there are directions
        p[available] = np.maximum(p[available], p[available].max() * 1e-12)
        p /= p.sum()
        return [int(i) for i in rng.choice(len(rows), size=n_select, replace=False, p=p)]
    kk = k if k is not None else 1
    taken: list[int] = []
    tops = _ProjectedTop(plain, [basis[:, j] for j in range(basis.shape[1])])
    one_thread = _one_blas_thread()
    while len(taken) < n_select:
        with one_thread():
            values, vecs = tops.top(kk)
        best = -1
        if len(values) and values[0] > EIGEN_TOLERANCE * tops.scale:
            scores = _scores(rows, values, vecs)
            scores[~available] = -np.inf
            best = int(np.argmax(scores))
            if not scores[best] > 0:
                best = -1
        if best < 0:  # the remaining candidates lie in the span of this round's rows
            if not tops.directions:
                raise ParameterError("select_cur: the remaining candidate descriptors are all "
                                     "zero; CUR cannot rank them")
            tops = _ProjectedTop(_gram(rows, available), [])
            continue
        taken.append(best)
        available[best] = False
        with one_thread():
            tops.project_out(rows[best])
    return taken


LANCZOS_TOLERANCE = 1e-6
DENSE_BELOW = 160  # descriptor lengths below this: a dense eigh per pick is as fast


class _ProjectedTop:
    """The top eigenpairs of P C P, with P the projector out of a growing set of directions.

    C is diagonalised once (C = V diag(lam) V^T); the directions are kept in that basis
    (rows of a preallocated m x d array), where P C P applies in O(d m) for m
    directions, so each pick costs a Lanczos run (scipy's eigsh, started from the
    previous run's next vector, so deterministic) instead of a d x d eigh:
    O(d^2 + d m x iterations) rather than O(d^3). Short descriptors use a dense eigh.
    """

    def __init__(self, cov: np.ndarray, directions: list) -> None:
        self.scale = float(np.trace(cov))
        self.lam, self.basis = np.linalg.eigh(cov)
        self.lam = np.maximum(self.lam, 0.0)
        self.dim = len(self.lam)
        self.q = np.zeros((max(16, 2 * len(directions)), self.dim))  # rows: the directions
        self.count = 0                                               # in the eigenbasis
        self.start: Optional[np.ndarray] = None  # the last run's next vector
        for u in directions:
            self._append(self.basis.T @ u)

    @property
    def directions(self) -> int:
        """How many directions are projected out."""
        return self.count

    def project_out(self, row: np.ndarray) -> bool:
        """Project out the part of *row* outside the directions (Gram-Schmidt, twice for
        round-off); False (nothing changes) when that part is negligible."""
        x = self.basis.T @ row
        q = self._project(x)
        q = self._project(q)
        norm = np.linalg.norm(q)
        if not norm > np.sqrt(EIGEN_TOLERANCE) * np.linalg.norm(x):
            return False
        self._append(q / norm)
        if self.start is not None:
            self.start = self._project(self.start)
        return True

    def _append(self, q: np.ndarray) -> None:
        if self.count == len(self.q):
            self.q = np.concatenate([self.q, np.zeros_like(self.q)])
        self.q[self.count] = q
        self.count += 1

    def _project(self, x: np.ndarray) -> np.ndarray:
        q = self.q[:self.count]
        return x - q.T @ (q @ x)

    def _apply(self, x: np.ndarray) -> np.ndarray:
        y = self._project(np.asarray(x).reshape(self.dim, -1))
        return self._project(self.lam[:, None] * y)

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k largest eigenvalues above the tolerance, with vectors (original basis)."""
        free = self.dim - self.count
        if self.dim == 0 or self.lam[-1] <= 0 or free < 1:
            return np.zeros(0), np.zeros((self.dim, 0))
        want = min(k + 1, free)
        if self.dim < DENSE_BELOW or want + 1 >= free:
            q = self.q[:self.count]
            p = np.eye(self.dim) - q.T @ q
            values, vecs = np.linalg.eigh((p * self.lam) @ p)
            values, vecs = values[::-1], vecs[:, ::-1]
        else:
            from scipy.sparse.linalg import LinearOperator, eigsh

            start = self.start
            if start is None or not np.linalg.norm(start) > 1e-8:
                start = self._project(np.sqrt(self.lam))  # weighted to the large ones
            op = LinearOperator((self.dim, self.dim), matvec=self._apply, matmat=self._apply,
                                dtype=float)
            # a relative tolerance of 1e-6 on the Ritz values: on a flat spectrum (the
            # slowest case) it halves the Lanczos iterations of 1e-12 and chose the same
            # rows in benchmarks/bench_cur.py; near-ties it may break differently score
            # equally well, and the same input still gives the same choice
            values, vecs = eigsh(op, k=want, which="LA", v0=start, tol=LANCZOS_TOLERANCE)
            order = np.argsort(values)[::-1]
            values, vecs = values[order], vecs[:, order]
            self.start = vecs[:, min(k, want - 1)].copy()  # the next one: a warm start
        if values[0] <= 0:
            return values[:0], self.basis @ vecs[:, :0]
        keep = min(k, int(np.count_nonzero(values > EIGEN_TOLERANCE * values[0])))
        return values[:keep], self.basis @ vecs[:, :keep]


def _one_blas_thread() -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """A context that runs BLAS on one thread (threadpoolctl's, where it is installed).

    A pick's eigenproblem is thousands of products with d x m matrices: on two threads
    each waits for the other (the 130 picks of benchmarks/bench_cur.py took twice as long
    as on one, more on a busy machine). The scores and the first diagonalisation keep
    the threads they were given."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext
    import scipy.sparse.linalg  # noqa: F401  (loads scipy's BLAS, so that it is limited too)

    controller = ThreadpoolController()
    return lambda: controller.limit(limits=1)


def _row_sum(rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The sum of rows[mask], block by block."""
    out = np.zeros(rows.shape[1])
    for start in range(0, len(rows), ROW_BLOCK):
        out += rows[start:start + ROW_BLOCK][mask[start:start + ROW_BLOCK]].sum(axis=0)
    return out


def _gram(rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """rows[mask]^T rows[mask], block by block (no copy of the whole array)."""
    out = np.zeros((rows.shape[1], rows.shape[1]))
    for start in range(0, len(rows), ROW_BLOCK):
        block = rows[start:start + ROW_BLOCK][mask[start:start + ROW_BLOCK]]
        out += block.T @ block
    return out


def farthest_points(rows: np.ndarray, n_select: int,
                    exclude: Optional[np.ndarray] = None) -> list[int]:
    """Positions of *n_select* rows by greedy farthest-point sampling (Euclidean).

    Without *exclude* the first is the row farthest from the mean; each next one is the
    candidate whose distance to the nearest row taken (or excluded) is largest; ties go
    to the lowest position.
    """
    rows = np.asarray(rows, dtype=float)
    blocked = identical_rows(rows, exclude)
    _enough("select_fps", n_select, int((~blocked).sum()), int(blocked.sum()))
    taken: list[int] = []
    nearest = np.full(len(rows), np.inf)
    if exclude is not None and len(exclude):
        for e in np.asarray(exclude, dtype=float):
            np.minimum(nearest, _sqdist(rows, e), out=nearest)
    else:  # start from the row farthest from the mean
        first = int(np.argmax(_sqdist(rows, rows.mean(axis=0))))
        taken.append(first)
        nearest = _sqdist(rows, rows[first])
        nearest[first] = -np.inf
    nearest[blocked] = -np.inf
    while len(taken) < n_select:
        best = int(np.argmax(nearest))
        taken.append(best)
        np.minimum(nearest, _sqdist(rows, rows[best]), out=nearest)
        nearest[best] = -np.inf
    return taken


def _sqdist(rows: np.ndarray, point: np.ndarray) -> np.ndarray:
    out = np.empty(len(rows))
    for start in range(0, len(rows), ROW_BLOCK):
        diff = rows[start:start + ROW_BLOCK] - point
        out[start:start + ROW_BLOCK] = np.einsum("ij,ij->i", diff, diff)
    return out


def flat_histogram(rows: np.ndarray, n_select: int, kT: Optional[float] = None,
                   bins: Any = 20, rng: Optional[np.random.Generator] = None) -> list[int]:
    """Positions of *n_select* rows drawn (without replacement) so that the quantity in
    the first column has a flat histogram over *bins* bins, times exp(-(E_bin - E_min)/kT)
    with kT (E_bin: the bin's centre). Each row's probability is its bin's weight divided
    by the bin's population."""
    if rng is None:
        raise ParameterError("select_flat_histogram needs a seed")
    values = np.asarray(rows, dtype=float)[:, 0]
    _enough("select_flat_histogram", n_select, len(values), 0)
    edges = np.histogram_bin_edges(values, bins=bins)
    which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    population = np.bincount(which, minlength=len(edges) - 1)
    weight = np.ones(len(edges) - 1)
    if kT is not None:
        centres = 0.5 * (edges[:-1] + edges[1:])
        weight = np.exp(-(centres - values.min()) / kT)
    p = weight[which] / population[which]
    p /= p.sum()
    if np.count_nonzero(p) < n_select:  # a strong bias underflows: give the rest a floor
        p = np.maximum(p, p.max() * 1e-300)
        p /= p.sum()
    return [int(i) for i in rng.choice(len(values), size=n_select, replace=False, p=p)]


# -- the registered selectors -----------------------------------------------------------------

@global_selector("select_cur", read=read_vector, version="2", check=_check_cur)
def select_cur(rows: np.ndarray, n_select: int, key: str = "soap",
               method: str = "deterministic", k: Optional[int] = None, exclude: Any = None,
               rng: Any = None) -> list[int]:
    """Keep n_select configurations by leverage-score CUR on the descriptors in info[key]."""
    return cur(rows, n_select, method=method, k=k, exclude=exclude, rng=rng)


@global_selector("select_fps", read=read_vector, version="1", check=_check_fps)
def select_fps(rows: np.ndarray, n_select: int, key: str = "soap",
               exclude: Any = None) -> list[int]:
    """Keep n_select configurations by farthest-point sampling of the descriptors in info[key]."""
    return farthest_points(rows, n_select, exclude=exclude)


@global_selector("select_flat_histogram", read=read_quantity, version="1", check=_check_flat)
def select_flat_histogram(rows: np.ndarray, n_select: int, key: str = "energy",
                          per_atom: bool = True, kT: Optional[float] = None, bins: Any = 20,
                          rng: Any = None) -> list[int]:
    """Keep n_select configurations drawn for a flat (or Boltzmann-biased) histogram of a
    per-atom quantity."""
    return flat_histogram(rows, n_select, kT=kT, bins=bins, rng=rng)


# -- the convex hull of energy per atom against composition ------------------------------------

N_ELEMENTS = 119  # atomic numbers 0 (X) to 118: every composition fits one row
HULL_TOLERANCE = 1e-9  # eV/atom: round-off allowed on top of the tolerance


def read_energy_composition(atoms: Any, params: dict) -> np.ndarray:
    """[energy per atom, fraction of atomic number 0, 1, ..., 118] of one configuration."""
    key = params["key"]
    if not len(getattr(atoms, "numbers", ())):
        raise ValueError("it has no atoms, so it has no composition")
    info = atoms.info
    if key not in info and key not in (getattr(getattr(atoms, "calc", None), "results",
                                               None) or {}):
        raise ValueError(f"it has no energy Atoms.info[{key!r}] (nor a calculator result "
                         f"{key!r}); calculate one first or pass key= naming it")
    energy = read_quantity(atoms, {"key": key, "per_atom": True})[0]
    row = np.zeros(1 + N_ELEMENTS)
    row[0] = energy
    row[1:] = np.bincount(atoms.numbers, minlength=N_ELEMENTS)[:N_ELEMENTS] / len(atoms)
    return row


def _check_hull(params: dict, seed: Optional[int]) -> None:
    _check_key("select_convex_hull", params["key"])
    tol = params["tolerance"]
    if isinstance(tol, bool) or not isinstance(tol, Real) or not 0 <= float(tol) < np.inf:
        raise ParameterError(f"select_convex_hull: tolerance must be an energy per atom >= 0 "
                             f"(same units as info[key] / atom, e.g. eV), got {tol!r}")


def hull_distances(energies: np.ndarray, compositions: np.ndarray) -> np.ndarray:
    """How far above the lower convex hull of (composition, energy) each point lies.

    energies: (n,) energy per atom; compositions: (n, m) fractions (or any coordinates:
    only their affine span matters, so the fractions' sum of 1 and elements absent from
    every configuration need no care). With a single composition the hull is the lowest
    energy. Points on the hull, vertices or not, give 0 up to round-off.
    """
    from scipy.spatial import ConvexHull

    energies = np.asarray(energies, dtype=float)
    x = np.asarray(compositions, dtype=float)
    if len(energies) == 0:
        return np.zeros(0)
    # coordinates in the affine span of the compositions: removes the sum rule, absent
    # elements and any other degeneracy (e.g. ternary data on one line)
    centred = x - x.mean(axis=0)
    _, sing, vt = np.linalg.svd(centred, full_matrices=False)
    rank = int(np.count_nonzero(sing > 1e-10 * max(1.0, sing[0] if len(sing) else 0.0)))
    coords = centred @ vt[:rank].T
    if rank == 0 or np.ptp(energies) == 0:
        return energies - energies.min()
    design = np.column_stack([coords, np.ones(len(coords))])
    plane = np.linalg.lstsq(design, energies, rcond=None)[0]
    if np.abs(design @ plane - energies).max() <= 1e-12 * max(1.0, np.abs(energies).max()):
        return np.zeros(len(energies))  # all on one plane (or too few to span a solid)
    hull = ConvexHull(np.column_stack([coords, energies]))
    normals, offsets = hull.equations[:, :-1], hull.equations[:, -1]
    lower = normals[:, -1] < -1e-12  # facets facing down the energy axis
    # the lower hull is the maximum of its facets' planes: E = -(n.x + b) / n_E
    planes = -(coords @ normals[lower, :-1].T + offsets[lower]) / normals[lower, -1]
    return energies - planes.max(axis=1)


@global_selector("select_convex_hull", read=read_energy_composition, version="1",
                 check=_check_hull)
def select_convex_hull(rows: np.ndarray, key: str = "energy",
                       tolerance: float = 0.0) -> list[int]:
    """Keep the configurations on, or within tolerance (per atom) above, the convex hull of
    energy per atom against composition."""
    distance = hull_distances(rows[:, 0], rows[:, 1:])
    keep = np.flatnonzero(distance <= float(tolerance) + HULL_TOLERANCE)
    return [int(i) for i in keep]


# -- per-configuration filters ---------------------------------------------------------------

DEFAULT_COVALENT_FRACTION = 0.6


def pair_key(pair: Any, where: str) -> tuple[str, str]:
    """(symbol, symbol), sorted, from ("H", "O"), ["H", "O"], "H-O", "H,O" or "H O"."""
    from ase.data import atomic_numbers

    if isinstance(pair, str):
        parts = pair.replace(",", "-").replace(" ", "-").split("-")
        parts = [p for p in parts if p]
    elif isinstance(pair, (tuple, list)):
        parts = list(pair)
    else:
        parts = []
    if len(parts) != 2 or not all(isinstance(p, str) and p in atomic_numbers for p in parts):
        raise ParameterError(f"{where}: a pair is two chemical symbols, e.g. ('H', 'O') or "
                             f"'H-O', got {pair!r}")
    return tuple(sorted(parts))  # type: ignore[return-value]


def _pair_thresholds(pair_distances: Any, where: str) -> dict[tuple[str, str], float]:
    """{sorted pair: distance} from the parameter, checked (None: {})."""
    if pair_distances is None:
        return {}
    if not isinstance(pair_distances, Mapping):
        raise ParameterError(f"{where}: pair_distances must be a mapping {{('H', 'H'): 0.6, "
                             f"...}} (or {{'H-H': 0.6}}), got {pair_distances!r}")
    out: dict[tuple[str, str], float] = {}
    for pair, distance in pair_distances.items():
        key = pair_key(pair, where)
        if isinstance(distance, bool) or not isinstance(distance, Real) \
                or not float(distance) >= 0 or not np.isfinite(float(distance)):
            raise ParameterError(f"{where}: the distance for {'-'.join(key)} must be a "
                                 f"number >= 0 (Å), got {distance!r}")
        if key in out and out[key] != float(distance):
            raise ParameterError(f"{where}: pair {'-'.join(key)} is given twice, with "
                                 f"{out[key]} and {distance}")
        out[key] = float(distance)
    return out


def _check_distance(params: dict, seed: Optional[int]) -> None:
    _pair_thresholds(params["pair_distances"], "select_by_distance")
    fraction = params["covalent_fraction"]
    if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, Real)
                                 or not 0 < float(fraction) < np.inf):
        raise ParameterError(f"select_by_distance: covalent_fraction must be a number > 0 "
                             f"(a fraction of the sum of covalent radii) or None (only the "
                             f"pairs in pair_distances), got {fraction!r}")
    if fraction is None and not params["pair_distances"]:
        raise ParameterError("select_by_distance: with covalent_fraction=None, give "
                             "pair_distances, else nothing is checked")
    if not isinstance(params["invert"], (bool, np.bool_)):
        raise ParameterError(f"select_by_distance: invert must be True or False, got "
                             f"{params['invert']!r}")


def _describe_pairs(value: Any, describer: Any) -> Any:
    """pair_distances in the record: {"H-O": 0.9}, whatever order or spelling was given."""
    if value is None:
        return None
    pairs = _pair_thresholds(value, "select_by_distance")
    return {"-".join(k): v for k, v in sorted(pairs.items())}


def too_close(atoms: Atoms, pair_distances: Any = None,
              covalent_fraction: Optional[float] = DEFAULT_COVALENT_FRACTION
              ) -> Optional[tuple[int, int, float]]:
    """The first pair (i, j, distance) closer than its threshold, or None.

    Periodic images count (an atom may be too close to its own image). A pair's
    threshold is pair_distances[(a, b)] if given, else covalent_fraction times the sum
    of ASE's covalent radii (unchecked if covalent_fraction is None).
    """
    from ase.data import atomic_numbers, covalent_radii
    from ase.neighborlist import neighbor_list

    if len(atoms) == 0:
        return None
    numbers = atoms.numbers
    present = np.unique(numbers)
    table = np.zeros((int(present.max()) + 1,) * 2)
    if covalent_fraction is not None:
        radii = covalent_radii[:len(table)]
        table[:] = covalent_fraction * (radii[:, None] + radii[None, :])
    for (a, b), distance in _pair_thresholds(pair_distances, "select_by_distance").items():
        za, zb = atomic_numbers[a], atomic_numbers[b]
        if max(za, zb) < len(table):
            table[za, zb] = table[zb, za] = distance
    cutoff = float(table[np.ix_(present, present)].max())
    if cutoff <= 0:
        return None
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    close = d < table[numbers[i], numbers[j]]
    if not close.any():
        return None
    first = int(np.argmax(close))
    return int(i[first]), int(j[first]), float(d[first])


@operation("select_by_distance", version="1", check=_check_distance,
           describe={"pair_distances": _describe_pairs})
def select_by_distance(atoms: Atoms, pair_distances: Any = None,
                       covalent_fraction: Optional[float] = DEFAULT_COVALENT_FRACTION,
                       invert: bool = False) -> Optional[Atoms]:
    """Keep the configurations with no two atoms closer than their pair's threshold.

    pair_distances: {("H", "H"): 0.6, "Si-O": 1.2, ...} in Å (either order of a pair).
    covalent_fraction: the threshold of the other pairs, as a fraction of the sum of
        the two covalent radii (ase.data.covalent_radii); None checks only the listed pairs.
    invert: keep the configurations that fail instead (to look at them).
    Periodic images count. The kept configurations are written unchanged.
    """
    if not isinstance(atoms, Atoms):
        raise TypeError(f"select_by_distance takes Atoms, got {type(atoms).__name__}")
    ok = too_close(atoms, pair_distances, covalent_fraction) is None
    return atoms if ok != bool(invert) else None


# -- the spread of a committee (active learning) ------------------------------------------------

DEFAULT_SPREAD_KEY = "committee_energy_std"


def spread_per_atom(key: str, per_atom: Optional[bool]) -> bool:
    """Whether the spread in *key* is divided by the number of atoms: *per_atom* if given,
    else for an energy's spread (a key ending in 'energy_std') and not otherwise."""
    return key.endswith("energy_std") if per_atom is None else bool(per_atom)


def read_spread(atoms: Any, params: dict) -> list[float]:
    """One number per configuration: ``info[key]`` (a committee's spread), divided by the
    number of atoms if :func:`spread_per_atom` says so."""
    key = params["key"]
    info = getattr(atoms, "info", None)
    if info is None:
        raise ValueError(f"the item is a {type(atoms).__name__}, not a configuration (Atoms)")
    if key not in info:
        if key in getattr(atoms, "arrays", {}):
            raise ValueError(f"{key!r} is a per-atom array (Atoms.arrays); this selector needs "
                             "one number per configuration (e.g. key='committee_max_force_std')")
        raise ValueError(_missing_spread(key))
    value = np.asarray(info[key], dtype=float)
    if value.size != 1:
        raise ValueError(f"Atoms.info[{key!r}] holds {value.size} numbers; select_by_spread "
                         "needs one number per configuration")
    number = float(value.ravel()[0])
    if spread_per_atom(key, params["per_atom"]):
        if len(atoms) == 0:
            raise ValueError("it has no atoms, so it has no spread per atom")
        number /= len(atoms)
    return [number]


def _missing_spread(key: str) -> str:
    return (f"it has no Atoms.info[{key!r}]: evaluate the configurations with a committee "
            "first (calculate(..., calculator=('committee', [], {'members': [...]})) stores "
            "committee_energy_std, committee_max_force_std ...) or pass key= naming the spread")


def _check_spread(params: dict, seed: Optional[int]) -> None:
    _check_key("select_by_spread", params["key"])
    n_select, threshold = params["n_select"], params["threshold"]
    if n_select is None and threshold is None:
        raise ParameterError("select_by_spread: give n_select (keep that many configurations "
                             "of largest spread), threshold (keep every one above it), or both")
    if n_select is not None:
        _check_count("select_by_spread", n_select)
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, Real)
                                  or not np.isfinite(float(threshold))):
        raise ParameterError(f"select_by_spread: threshold must be a number (same units as "
                             f"info[key], per atom if per_atom) or None, got {threshold!r}")
    if params["per_atom"] is not None and not isinstance(params["per_atom"], bool):
        raise ParameterError(f"select_by_spread: per_atom must be true, false or None (per "
                             f"atom for an energy's spread), got {params['per_atom']!r}")


def largest_values(values: np.ndarray, n_select: Optional[int] = None,
                   threshold: Optional[float] = None) -> list[int]:
    """Positions of the largest *values*, largest first (ties: the earlier position first):
    those above *threshold* (if given), at most *n_select* of them (if given)."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(-values, kind="stable")
    if threshold is not None:
        order = order[values[order] > float(threshold)]
    elif n_select is not None:
        _enough("select_by_spread", n_select, len(values), 0)
    if n_select is not None:
        order = order[:n_select]
    return [int(i) for i in order]


class SpreadSelector(GlobalSelector):
    """A global selector whose error for a configuration without the key names the file
    (and frame) it came from."""

    def __reduce__(self) -> tuple[Any, tuple]:
        return (_rebuild_spread_selector, (self.func, self.name, self.read, self.version,
                                           self.summary, self.check, self.describe))

    def read_rows(self, inputs: Any, params: dict, info: Any, what: str = "inputs"
                  ) -> np.ndarray:
        """The rows (see GlobalSelector.read_rows); a missing key is a ParameterError naming
        the first configuration without it, its file and frame."""
        try:
            return super().read_rows(inputs, params, info, what)
        except (OperationError, ParameterError) as err:
            where = first_without(inputs, params["key"])
            if where is None:
                raise
            raise ParameterError(f"{self.name}: {where} of the {what}: "
                                 f"{_missing_spread(params['key'])}") from err


def _rebuild_spread_selector(func, name, read, version, summary, check, describe):
    return SpreadSelector(func, name, read=read, version=version, summary=summary, check=check,
                          describe=describe)


def first_without(inputs: Any, key: str) -> Optional[str]:
    """'configuration 3 (frame 1 of 'md.xyz')': where the first configuration of *inputs*
    without ``info[key]`` is, or None if every one has it."""
    position = 0
    for group in inputs.groups():
        files = [str(f) for f in group.files]
        for frame, atoms in enumerate(group):
            if key not in getattr(atoms, "info", {}):
                if len(files) == 1:
                    source = f"frame {frame} of {files[0]!r}"
                elif files:
                    source = f"in one of {', '.join(map(repr, files))}"
                else:
                    source = "given in memory"
                return f"configuration {position} ({source})"
            position += 1
    return None


def _spread_selector(choose: Any) -> SpreadSelector:
    return SpreadSelector(choose, "select_by_spread", read=read_spread, version="1",
                          check=_check_spread)


@_spread_selector
def select_by_spread(rows: np.ndarray, n_select: Optional[int] = None,
                     threshold: Optional[float] = None, key: str = DEFAULT_SPREAD_KEY,
                     per_atom: Optional[bool] = None) -> list[int]:
    """Keep the configurations of largest committee spread (info[key], per atom for an
    energy's): the n_select largest, every one above threshold, or at most n_select of
    those above threshold."""
    return largest_values(rows[:, 0], n_select=n_select, threshold=threshold)


__all__ = ["cur", "farthest_points", "flat_histogram", "identical_rows", "read_quantity",
           "read_energy_composition", "read_vector", "hull_distances", "select_by_distance",
           "select_convex_hull", "select_cur", "select_flat_histogram", "select_fps",
           "too_close", "SpreadSelector", "first_without", "largest_values", "read_spread",
           "select_by_spread"]
