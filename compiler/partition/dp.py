"""Exact minimisation of a layer-wise cost: a unary cost per layer and choice, plus pairwise costs on edges.

On a chain this is the papers' layer-wise dynamic program (``dp_on_one_hierarchy`` in linghaosong/AccPar:
``cost[l][t] = intra(l, t) + min_t' cost[l-1][t'] + inter(l; t' -> t)``). Real topologies are DAGs (shortcuts,
Inception branches), so the DP here eliminates the layers in topological order and keeps a table over the
*frontier*: the layers already chosen that still have an edge to a later layer. The result is the exact optimum
over all assignments; on a chain the frontier is one layer and the work is linear in the layers, as in the paper.
AccPar's own code handles the ResNet shortcut term by following the best predecessor path back two or three
layers, which is a heuristic; this DP is exact (see :mod:`.reference` for the authors' version, kept for
comparison).

When the frontier grows beyond ``max_table`` entries (DenseNet's dense blocks), the edges that span the most
layers are left out of the DP, the DP's answer is then improved by coordinate descent on the full cost, and the
result is marked inexact.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["Problem", "Solution", "solve", "brute_force", "evaluate"]

#: ``(i, j, matrix)`` with ``i < j``; the matrix is ``[choice of i, choice of j]`` (or a callable making it).
EdgeCost = tuple[int, int, "np.ndarray | Callable[[], np.ndarray]"]


@dataclass
class Problem:
    """A cost over ``len(unary)`` variables with ``domain`` choices each.

    Parameters
    ----------
    unary : sequence of ndarray
        ``unary[i][c]``: cost of choice ``c`` for variable ``i`` (shape ``(domain,)``).
    edges : sequence of (int, int, ndarray or callable)
        Pairwise costs ``matrix[c_i, c_j]`` for ``i < j``; a callable is called when the DP needs the matrix (large
        joint-search matrices are made one at a time).
    """

    unary: Sequence[np.ndarray]
    edges: Sequence[EdgeCost]

    @property
    def n(self) -> int:
        return len(self.unary)

    @property
    def domain(self) -> int:
        return len(self.unary[0]) if self.unary else 0

    def frontier_sizes(self, edges: Sequence[EdgeCost] | None = None) -> list[int]:
        """Variables alive in the DP table after adding each variable (before eliminating)."""
        last = list(range(self.n))
        for i, j, _ in (self.edges if edges is None else edges):
            last[i] = max(last[i], j)
        alive: set[int] = set()
        sizes = []
        for j in range(self.n):
            alive.add(j)
            sizes.append(len(alive))
            alive = {v for v in alive if last[v] > j}
        return sizes


@dataclass(frozen=True)
class Solution:
    """An assignment (``choice[i]`` per variable), its cost, and whether it is proven optimal."""

    choice: tuple[int, ...]
    cost: float
    exact: bool = True


def _matrix(m: "np.ndarray | Callable[[], np.ndarray]") -> np.ndarray:
    return m() if callable(m) else m


def evaluate(problem: Problem, choice: Sequence[int]) -> float:
    """The cost of one assignment."""
    c = float(sum(u[k] for u, k in zip(problem.unary, choice)))
    for i, j, m in problem.edges:
        c += float(_matrix(m)[choice[i], choice[j]])
    return c


def _eliminate(problem: Problem, edges: Sequence[EdgeCost]) -> Solution:
    n, d = problem.n, problem.domain
    last = list(range(n))
    incoming: list[list[tuple[int, object]]] = [[] for _ in range(n)]
    for i, j, m in edges:
        if not 0 <= i < j < n:
            raise ValueError(f"edge {i}->{j} must satisfy 0 <= i < j < {n}")
        last[i] = max(last[i], j)
        incoming[j].append((i, m))
    table = np.zeros(())
    axes: list[int] = []
    log: list[tuple[int, list[int], np.ndarray]] = []
    for j in range(n):
        table = table[..., None] + np.asarray(problem.unary[j], dtype=float)
        axes.append(j)
        nd = table.ndim
        for i, m in incoming[j]:
            mat = _matrix(m)
            shape = [1] * nd
            shape[axes.index(i)] = d
            shape[nd - 1] = d
            table = table + mat.reshape(shape)
        for v in [v for v in axes if last[v] <= j]:
            a = axes.index(v)
            arg = table.argmin(axis=a)
            table = table.min(axis=a)
            axes.pop(a)
            log.append((v, list(axes), arg))
    value: dict[int, int] = {}
    for v, others, arg in reversed(log):
        value[v] = int(arg[tuple(value[o] for o in others)])
    choice = tuple(value[v] for v in range(n))
    return Solution(choice, float(table), True)


def solve(problem: Problem, max_table: int = 3 ** 11, fallback_table: int = 3 ** 7) -> Solution:
    """The assignment of least cost: exact when the DP table fits ``max_table`` entries, otherwise the DP over
    the edges that keep it within ``fallback_table`` entries, refined by coordinate descent (marked inexact)."""
    if problem.n == 0:
        return Solution((), 0.0, True)
    d = problem.domain
    if d ** max(problem.frontier_sizes()) <= max_table:
        return _eliminate(problem, problem.edges)
    # Too wide: drop the longest edges until the DP fits, then refine on the full cost.
    edges = sorted(problem.edges, key=lambda e: e[1] - e[0])
    while edges and d ** max(problem.frontier_sizes(edges)) > fallback_table:
        span = edges[-1][1] - edges[-1][0]
        edges = [e for e in edges if e[1] - e[0] < span]
    starts = [_eliminate(problem, edges).choice] + [(k,) * problem.n for k in range(d)]
    best = min((_descend(problem, s) for s in starts), key=lambda s: s.cost)
    return best


def _descend(problem: Problem, start: Sequence[int]) -> Solution:
    """Coordinate descent: change one variable at a time while the full cost drops."""
    choice = list(start)
    nbrs: list[list[tuple[int, np.ndarray, bool]]] = [[] for _ in range(problem.n)]
    for i, j, m in problem.edges:
        mat = _matrix(m)
        nbrs[i].append((j, mat, True))
        nbrs[j].append((i, mat, False))
    improved = True
    while improved:
        improved = False
        for v in range(problem.n):
            local = np.asarray(problem.unary[v], dtype=float).copy()
            for o, mat, v_first in nbrs[v]:
                local += mat[:, choice[o]] if v_first else mat[choice[o], :]
            k = int(local.argmin())
            if local[k] < local[choice[v]] - 1e-9 * max(1.0, abs(local[choice[v]])):
                choice[v] = k
                improved = True
    return Solution(tuple(choice), evaluate(problem, choice), False)


def brute_force(problem: Problem, chunk: int = 1 << 16) -> Solution:
    """Enumerate every assignment (for tests on small problems); ties go to the first in lexicographic order."""
    n, d = problem.n, problem.domain
    best_cost, best = np.inf, None
    mats = [(i, j, _matrix(m)) for i, j, m in problem.edges]
    it = itertools.product(range(d), repeat=n)
    while True:
        block = np.array(list(itertools.islice(it, chunk)), dtype=np.int64).reshape(-1, n)
        if not len(block):
            break
        cost = np.zeros(len(block))
        for v in range(n):
            cost += np.asarray(problem.unary[v])[block[:, v]]
        for i, j, m in mats:
            cost += m[block[:, i], block[:, j]]
        k = int(cost.argmin())
        if cost[k] < best_cost:
            best_cost, best = float(cost[k]), tuple(int(x) for x in block[k])
    return Solution(best, best_cost, True)
