"""The authors' search, re-stated for comparison: ``dp_on_one_hierarchy`` and ``h_partition`` of
linghaosong/AccPar (src/accpar.cpp), on a chain with shortcut (block) edges.

Two behaviours of that code are reproduced on purpose, because they are what the published numbers come from:

* the shortcut term of layer ``l`` uses the type of the block's first layer found by following the *best
  predecessor path* of ``(l-1, t')`` back (a heuristic: the DP over a chain with shortcuts is not exact that way);
* the running minimum for ``t' = 0`` starts from the cost *without* the shortcut term
  (``min_cost_lt = cost_table[l-1][0] + Com_Cost_Inter_Layer(TYPE_I, t)`` before the loop), so a shortcut layer can be
  charged less than its path costs.

:func:`reference_partition` returns the per-level types; :mod:`.training` evaluates them with the exact model, and
the tests check that the exact DP (:mod:`.dp`) is never worse and agrees on chains without shortcuts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .dataflow import PartitionError
from .tables import PType, block_table, inter_table
from .training import TrainingModel

__all__ = ["reference_partition"]


def reference_partition(model: TrainingModel, levels: int, types: Sequence[PType],
                        shortcuts: bool | None = None) -> list[tuple[list[PType], float]]:
    """Per level: the authors' DP choice and the cost their DP reports for it (homogeneous, ``alpha = 1/2``).

    ``shortcuts`` (default: only with three types, ``isAccPar`` in their code) adds the shortcut term to the DP;
    their HyPar runs ignore it.

    Raises
    ------
    PartitionError
        The network is not a chain (``l-1 -> l`` edges of share 1) with at most one shortcut into each layer.
    """
    L = model.n
    inter_edges = [(s, d, share) for s, d, share, k in model.edges if k == "inter"]
    if sorted((s, d) for s, d, _ in inter_edges) != [(l - 1, l) for l in range(1, L)] \
            or any(share != 1.0 for *_, share in inter_edges):
        raise PartitionError("reference_partition: the authors' DP needs a chain (each layer feeds the next)")
    block_into: dict[int, tuple[int, float]] = {}
    use_blocks = len(types) == 3 if shortcuts is None else shortcuts
    for s, d, share, k in model.edges:
        if k == "block" and use_blocks:
            if d in block_into:
                raise PartitionError(f"reference_partition: layer {d} has two shortcuts")
            block_into[d] = (s, share)
    ix = np.array([int(t) for t in types])
    inter, block = inter_table()[np.ix_(ix, ix)], block_table()[np.ix_(ix, ix)]
    T = len(types)
    sizes = model.sizes0
    out = []
    for _ in range(levels):
        intra = model.intra(sizes)[:, ix]
        fin = model.input_size(sizes)
        cost = intra.copy()
        track = np.zeros((L, T), dtype=int)
        track[0] = np.arange(T)
        for l in range(1, L):
            for t in range(T):
                best, best_pre = cost[l - 1][0] + inter[0, t] * fin[l], 0
                for tp in range(T):
                    c = cost[l - 1][tp] + inter[tp, t] * fin[l]
                    if l in block_into:
                        a, share = block_into[l]
                        k, tk = l - 1, tp
                        while k > a:
                            tk, k = track[k][tk], k - 1
                        c += block[tk, t] * share * fin[l]
                    if best > c:
                        best, best_pre = c, tp
                cost[l][t] += best
                track[l][t] = best_pre
        last = int(np.argmin(cost[L - 1]))
        reported = float(cost[L - 1][last])
        choice = [0] * L
        choice[L - 1] = last
        for l in range(L - 2, -1, -1):
            choice[l] = last = int(track[l + 1][last])
        picked = [types[c] for c in choice]
        out.append((picked, reported))
        sizes = model.split(sizes, [int(t) for t in picked], 0.5)
    return out
