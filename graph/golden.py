"""Golden models of the graph algorithms: integer numpy, exactly the arithmetic the fabric does (docs/graph.md).

Every algorithm is a sequence of synchronous rounds over the arcs ``u -> v`` (the adjacency matrix's sparse
matrix-vector pattern of GraphR, docs/graph.md section 1):

* **BFS levels**: ``reach[v] = OR_u (A[u, v] AND frontier[u])`` (the macro's BITWISE AND of a stored row with
  the frontier word and a popcount), ``next = reach AND NOT visited``; level ``k`` is the ``k``-th frontier.
  Unreached vertices get level -1.
* **SSSP** (Bellman-Ford, Jacobi rounds): ``d'[v] = min(d[v], min_u sat(d[u] + w(u, v)))``, distances unsigned
  :data:`DIST_BITS`-bit with :data:`INF` for "unreached", additions saturating at ``INF``; until no distance
  changes. Weights must be >= 0.
* **Connected components** (label propagation): ``l'[v] = min(l[v], min_{u - v} l[u])`` from ``l = v`` on the
  arcs in both directions (weak components of a directed graph), until no label changes: each vertex ends with
  the smallest vertex number of its component.
* **PageRank**: ranks in fixed point, ``2**FRAC_BITS`` = 1. Per iteration ``c[u] = round(r[u] / outdeg[u])``
  (the host), ``y = A^T c`` (the SpMV on the macros: MAC mode, one-bit weights, ``c`` applied as
  :data:`SLICES` unsigned 8-bit slices), then ``r'[v] = (D * (y[v] + dangling // n)) >> DAMP_BITS + teleport``
  with ``D = round(alpha * 2**DAMP_BITS)``; stop when ``sum |r' - r|`` is below :func:`pagerank_limit`
  (``tol`` in L1, an absolute tolerance: networkx's ``n * tol`` is loose on large graphs; at least 4 LSB per
  vertex, the rounding floor) or after ``max_iter`` iterations. :func:`pagerank_bound` is the stated L1 error
  bound against networkx's float result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .io import GraphData

__all__ = ["DIST_BITS", "INF", "FRAC_BITS", "DAMP_BITS", "SLICES", "GraphResult", "bfs", "sssp", "cc",
           "pagerank", "pagerank_bound", "pagerank_limit", "ALGORITHMS", "run_golden"]

#: Width of an SSSP distance; ``INF`` (all ones) marks an unreached vertex.
DIST_BITS = 32
INF = (1 << DIST_BITS) - 1
#: PageRank's fixed point: a rank of 1 is ``2**FRAC_BITS``.
FRAC_BITS = 31
#: The damping factor's fixed point.
DAMP_BITS = 16
#: 8-bit activation slices of a PageRank contribution (``FRAC_BITS + 1`` bits).
SLICES = 4


@dataclass
class GraphResult:
    """What an algorithm computed.

    Attributes
    ----------
    algo : str
    values : np.ndarray
        Per vertex: BFS level (-1 unreached), SSSP distance (``INF`` unreached), component label (smallest
        vertex of the component), PageRank rank in fixed point (``2**FRAC_BITS`` = 1).
    rounds : int
        Synchronous rounds (BFS levels expanded, relaxation rounds incl. the last one that changed nothing,
        PageRank iterations).
    active : list
        Per round, the vertices whose values are read that round (BFS: the frontier, SSSP/CC: the vertices that
        changed in the previous round; PageRank: all), as bool arrays: a round only reads blocks whose source
        range holds an active vertex.
    states : list or None
        SSSP, CC, PageRank: per round, the values before it (the fabric's rounds are checked against them one by one).
    """

    algo: str
    values: np.ndarray
    rounds: int
    active: list
    states: list | None = None

    def floats(self) -> np.ndarray:
        """PageRank ranks as floats (other algorithms: the values)."""
        if self.algo == "pagerank":
            return self.values.astype(np.float64) / (1 << FRAC_BITS)
        return self.values


def _check_vertex(graph: GraphData, source: int) -> int:
    if not 0 <= int(source) < graph.n:
        raise UserError(f"source {source}: not a vertex (allowed 0..{graph.n - 1})")
    return int(source)


def bfs_start(n: int, source: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The state of a BFS from ``source`` before its first round: (levels, frontier, visited), every level -1
    but the source's 0; shared by the golden model and the graph compiler's round loop."""
    level = np.full(n, -1, dtype=np.int64)
    frontier = np.zeros(n, dtype=bool)
    frontier[source] = True
    level[source] = 0
    return level, frontier, frontier.copy()


def bfs(graph: GraphData, source: int) -> GraphResult:
    """BFS levels from ``source`` (a vertex number) by frontier expansion (module docstring)."""
    s = _check_vertex(graph, source)
    level, frontier, visited = bfs_start(graph.n, s)
    active, k = [], 0
    while frontier.any():
        active.append(frontier.copy())
        reach = np.zeros(graph.n, dtype=bool)
        hit = frontier[graph.src]  # AND of each stored arc with the frontier bit of its source
        reach[graph.dst[hit]] = True  # OR over the sources
        frontier = reach & ~visited
        visited |= frontier
        k += 1
        level[frontier] = k
    return GraphResult("bfs", level, len(active), active)


def _check_weights(graph: GraphData) -> None:
    if graph.arcs and graph.weight.min() < 0:
        i = int(np.argmin(graph.weight))
        raise UserError(f"sssp: edge ({graph.ids[graph.src[i]]!r}, {graph.ids[graph.dst[i]]!r}) has negative "
                        f"weight {int(graph.weight[i])} (allowed: weights >= 0)")
    if graph.arcs and int(graph.weight.max()) >= INF:
        raise UserError(f"sssp: weight {int(graph.weight.max())} does not fit {DIST_BITS} bits")


def _min_rounds(graph: GraphData, values: np.ndarray, weights: np.ndarray | None, algo: str) -> GraphResult:
    """Synchronous min-relaxation rounds until nothing changes: ``v' = min(v, min over arcs of value[u] + w)``
    (saturating at :data:`INF` when ``weights`` is given), reading only vertices changed last round."""
    src, dst = graph.src, graph.dst
    if algo == "cc" and graph.directed:
        src, dst = np.concatenate([graph.src, graph.dst]), np.concatenate([graph.dst, graph.src])
    changed = values != INF if weights is not None else np.ones(graph.n, dtype=bool)
    active, states = [], []
    while True:
        active.append(changed.copy())
        states.append(values)
        use = changed[src]
        cand = values[src[use]]
        if weights is not None:
            cand = np.minimum(cand + weights[use], INF)
        new = values.copy()
        np.minimum.at(new, dst[use], cand)
        changed = new != values
        values = new
        if not changed.any():
            return GraphResult(algo, values, len(active), active, states)


def sssp(graph: GraphData, source: int) -> GraphResult:
    """Single-source shortest path distances (Bellman-Ford rounds, module docstring); weights >= 0."""
    s = _check_vertex(graph, source)
    _check_weights(graph)
    d = np.full(graph.n, INF, dtype=np.int64)
    d[s] = 0
    return _min_rounds(graph, d, graph.weight, "sssp")


def cc(graph: GraphData, source: int | None = None) -> GraphResult:
    """Connected (weak) components by minimum-label propagation; ``values[v]`` = smallest vertex of v's
    component. ``source`` is ignored."""
    return _min_rounds(graph, np.arange(graph.n, dtype=np.int64), None, "cc")


def relax_start(algo: str, n: int, source: int | None) -> tuple[np.ndarray, np.ndarray]:
    """SSSP's or CC's values before the first round and the vertices active in it (SSSP: the source at 0,
    every other vertex at ``INF``; CC: every vertex its own label, all active); shared by the graph compiler's
    round loop and the fabric's host loop."""
    if algo == "sssp":
        values = np.full(n, INF, dtype=np.int64)
        values[source] = 0
        return values, values != INF
    return np.arange(n, dtype=np.int64), np.ones(n, dtype=bool)


def _pr_constants(n: int, alpha: float) -> tuple[int, int]:
    damp = int(round(alpha * (1 << DAMP_BITS)))
    teleport = (((1 << DAMP_BITS) - damp) << FRAC_BITS) // ((1 << DAMP_BITS) * n)
    return damp, teleport


def contributions(rank: np.ndarray, outdeg: np.ndarray) -> np.ndarray:
    """``round(r[u] / outdeg[u])`` (half up), 0 for a dangling vertex: what each vertex sends along an arc."""
    deg = np.maximum(outdeg, 1)
    return np.where(outdeg > 0, (rank + deg // 2) // deg, 0)


def spmv(graph: GraphData, c: np.ndarray) -> np.ndarray:
    """``y[v] = sum over arcs u -> v of c[u]`` (exact int64): the fabric's MAC-mode pass."""
    return _exact_sum(graph.dst, c[graph.src], graph.n)


def _exact_sum(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.int64)
    np.add.at(out, index, values.astype(np.int64))
    return out


def pagerank_update(y: np.ndarray, rank: np.ndarray, outdeg: np.ndarray, alpha: float) -> np.ndarray:
    """The per-vertex update after the SpMV (module docstring): damping, dangling share, teleport."""
    n = len(rank)
    damp, teleport = _pr_constants(n, alpha)
    dangling = int(rank[outdeg == 0].sum())
    return ((damp * (y + dangling // n)) >> DAMP_BITS) + teleport


def pagerank_limit(n: int, tol: float) -> int:
    """The L1 step (in LSB) below which PageRank stops: ``tol`` or the rounding floor of 4 LSB per vertex."""
    return max(int(tol * (1 << FRAC_BITS)), 4 * n)


def pagerank(graph: GraphData, source: int | None = None, *, alpha: float = 0.85, tol: float = 1e-6,
             max_iter: int = 200) -> GraphResult:
    """Fixed-point PageRank (module docstring); arcs unweighted. ``source`` is ignored."""
    n = graph.n
    outdeg = graph.out_degree()
    rank = np.full(n, (1 << FRAC_BITS) // n, dtype=np.int64)
    limit = pagerank_limit(n, tol)
    active, states = [], []
    for _ in range(max_iter):
        active.append(np.ones(n, dtype=bool))
        states.append(rank)
        y = spmv(graph, contributions(rank, outdeg))
        new = pagerank_update(y, rank, outdeg, alpha)
        err = int(np.abs(new - rank).sum())
        rank = new
        if err < limit:
            break
    return GraphResult("pagerank", rank, len(active), active, states)


def pagerank_bound(graph: GraphData, tol: float = 1e-6, alpha: float = 0.85, ref_tol: float = 1e-10) -> float:
    """The stated L1 bound between :func:`pagerank` (``tol``) and ``networkx.pagerank(weight=None,
    tol=ref_tol)``.

    Each iteration rounds at most half an LSB per arc (the contributions) and one LSB per vertex (the damping
    shift, the dangling share and the teleport term): at most ``arcs / 2 + 3 n`` LSB of L1 error, damped by
    ``alpha`` per iteration, so at most ``(arcs / 2 + 3 n) / (1 - alpha)`` LSB in total. A contraction by
    ``alpha`` that stops on a step below ``eps`` is within ``eps * alpha / (1 - alpha)`` of its fixed point:
    ``eps`` = :func:`pagerank_limit` here, ``n * ref_tol`` for networkx.
    """
    lsb = 2.0 ** -FRAC_BITS
    eps = pagerank_limit(graph.n, tol) * lsb
    return ((graph.arcs / 2 + 3 * graph.n) * lsb + (eps + graph.n * ref_tol) * alpha) / (1 - alpha)


#: The algorithms by their command-line names.
ALGORITHMS = {"bfs": bfs, "sssp": sssp, "cc": cc, "pagerank": pagerank}


def run_golden(algo: str, graph: GraphData, source: int | None = None) -> GraphResult:
    """Run one of :data:`ALGORITHMS` (BFS and SSSP need ``source``, a vertex number)."""
    if algo not in ALGORITHMS:
        raise UserError(f"algorithm {algo!r}: allowed {', '.join(ALGORITHMS)}")
    if algo in ("bfs", "sssp") and source is None:
        raise UserError(f"{algo}: needs --source (a vertex)")
    return ALGORITHMS[algo](graph, source)
