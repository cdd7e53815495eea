"""The papers' training cost model and the hierarchical search over ``2^H`` accelerators.

Hierarchy (HyPar section 4, AccPar section 5; ``h_partition`` in linghaosong/AccPar src/accpar.cpp): the array is
split in two, each half in two again, ``H`` times. At level ``h`` each group runs the layer-wise DP on the tensors
as the levels above have already cut them (``Layer::partition_by`` halves the batch for Type-I, the input channels
for Type-II, the output channels for Type-III), chooses a type per layer, and hands each side its part.

Costs are in tensor elements (multiply by the bytes per element; AccPar uses 2, bfloat16). A level's cost is what
one side of one pair receives (the papers' per-level ``com_cost``; pairs at a level work in parallel). Totals:

* ``total_plain``: the sum over levels of the level cost (the papers' figure; with heterogeneous accelerators the
  costliest group of each level);
* ``total_weighted``: the sum over levels of the level cost times the number of pairs at that level (``2^h``): the
  traffic the whole array moves.

Heterogeneous accelerators (AccPar section 6): each accelerator has a throughput; a split gives its sides the work
ratio ``alpha = P_left / (P_left + P_right)``, which balances their compute time for every type (all three types
split the multiply-accumulates in the same ratio), and the communication tables take that ratio
(:func:`.tables.convert`). The paper's own formulas for this case are not in the public code; this is our reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ...bits import exact_log2
from .dataflow import Dataflow, PartitionError, dataflow, in_positions, out_positions
from .dp import Problem, Solution, solve
from .tables import PType, TYPE_SETS, block_table, inter_table

__all__ = [
    "Accelerators", "TrainingModel", "LevelSolution", "Group", "TrainingPlan", "plan_training", "STRATEGIES",
    "compare_strategies",
]

#: Strategies: baselines fix the types, searches run the DP over a type set.
STRATEGIES = {
    "dp": "all data parallel (Type-I)",
    "mp": "all model parallel (Type-II, HyPar's mp)",
    "tp": "all output-channel parallel (Type-III)",
    "owt": "one weird trick: conv layers Type-I, fc layers Type-II",
    "hypar": "HyPar: layer-wise DP over Types I and II",
    "accpar": "AccPar: layer-wise DP over Types I, II and III",
}
BASELINES = ("dp", "mp", "owt")


@dataclass(frozen=True)
class Accelerators:
    """A power-of-two array of accelerators.

    Parameters
    ----------
    throughputs : tuple of float
        Per-accelerator throughput (MAC/s, or relative), in the order the hierarchy halves them.
    link_bandwidth : float, optional
        Bytes per second a side receives, for time estimates.
    """

    throughputs: tuple[float, ...]
    link_bandwidth: float | None = None

    def __post_init__(self) -> None:
        tp = tuple(float(t) for t in self.throughputs)
        object.__setattr__(self, "throughputs", tp)
        n = len(tp)
        if n < 1 or n & (n - 1):
            raise PartitionError(f"accelerators = {n}: the hierarchy needs a power of two (1, 2, 4, ..., 1024)")
        if any(not t > 0 for t in tp):
            raise PartitionError(f"accelerator throughputs must be positive, got {sorted(set(tp))[:3]}")

    @classmethod
    def homogeneous(cls, n: int, throughput: float = 1.0) -> "Accelerators":
        return cls((throughput,) * n)

    @classmethod
    def parse(cls, spec: str, n: int | None = None) -> "Accelerators":
        """``"64x1,64x2.5"`` (count x throughput, ...) or ``"1,1,2,2"``."""
        tp: list[float] = []
        try:
            for part in spec.split(","):
                if "x" in part:
                    c, t = part.split("x")
                    tp += [float(t)] * int(c)
                else:
                    tp.append(float(part))
        except ValueError:
            raise PartitionError(f"throughputs {spec!r}: expected COUNTxTHROUGHPUT,... or T,T,...") from None
        if n is not None and len(tp) != n:
            raise PartitionError(f"throughputs {spec!r} describe {len(tp)} accelerators, --accelerators says {n}")
        return cls(tuple(tp))

    @property
    def n(self) -> int:
        return len(self.throughputs)

    @property
    def levels(self) -> int:
        return exact_log2(self.n)

    @property
    def homogeneous_array(self) -> bool:
        return len(set(self.throughputs)) == 1


class TrainingModel:
    """Per-layer dimensions of a network at a batch, and the per-level cost of an assignment.

    Sizes are three arrays over the weighted layers: the batch ``b``, input channels ``ci`` and output channels
    ``co`` each layer's tensors have at the current level (floats: a split by ``alpha`` need not be integral).

    Parameters
    ----------
    net : cimforge.golden.ir.Graph, ShapeGraph or Dataflow
    batch : int
    """

    def __init__(self, net: Any, batch: int):
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise PartitionError(f"batch = {batch!r}: expected a positive integer")
        net = dataflow(net)
        self.net, self.batch = net, batch
        w = net.weighted
        self.n = len(w)
        self.ifmap = np.array([in_positions(l) for l in w], float)
        self.ofmap = np.array([out_positions(l) for l in w], float)
        # kernel area per group (a dense layer's kernel is its one position)
        self.kg = np.array([(math.prod(l.kernel) if l.kind == "conv2d" else 1) / l.groups for l in w], float)
        self.is_fc = np.array([l.kind == "dense" for l in w])
        self.macs = np.array([l.macs for l in w], float)
        self.edges = net.var_edges()
        self.sizes0 = np.array([[batch] * self.n, [l.in_channels for l in w], [l.out_channels for l in w]], float)

    # costs ------------------------------------------------------------------------------------------------
    def intra(self, sizes: np.ndarray) -> np.ndarray:
        """``(L, 3)``: Type-I ``A(dW)``, Type-II ``A(F_{l+1})``, Type-III ``A(E_l)`` (``dp_on_one_hierarchy``)."""
        b, ci, co = sizes
        return np.stack([ci * co * self.kg, b * co * self.ofmap, b * ci * self.ifmap], axis=1)

    def input_size(self, sizes: np.ndarray) -> np.ndarray:
        """Elements of each layer's input ``F_l`` (= ``E_l``)."""
        b, ci, _ = sizes
        return b * ci * self.ifmap

    def problem(self, sizes: np.ndarray, alpha: float, types: Sequence[PType]) -> Problem:
        """The level's DP over the allowed ``types`` (choices index into ``types``)."""
        ix = np.array([int(t) for t in types])
        intra = self.intra(sizes)[:, ix]
        tables = {"inter": inter_table(alpha)[np.ix_(ix, ix)], "block": block_table(alpha)[np.ix_(ix, ix)]}
        fin = self.input_size(sizes)
        edges = [(s, d, tables[k] * (share * fin[d])) for s, d, share, k in self.edges]
        return Problem(list(intra), edges)

    def per_layer(self, sizes: np.ndarray, alpha: float, choice: Sequence[int]) -> np.ndarray:
        """Each layer's share of a level's cost for types ``choice``: its intra term plus its incoming edges."""
        c = np.asarray(choice, dtype=int)
        out = self.intra(sizes)[np.arange(self.n), c]
        tables = {"inter": inter_table(alpha), "block": block_table(alpha)}
        fin = self.input_size(sizes)
        for s, d, share, k in self.edges:
            out[d] += tables[k][c[s], c[d]] * share * fin[d]
        return out

    @staticmethod
    def split(sizes: np.ndarray, choice: Sequence[int], frac: float) -> np.ndarray:
        """The sizes one side keeps (fraction ``frac`` of the split dimension of each layer)."""
        out = sizes.copy()
        c = np.asarray(choice, dtype=int)
        for t in PType:
            out[int(t), c == int(t)] *= frac
        return out


@dataclass(frozen=True)
class LevelSolution:
    """The choice one group makes: its ratio, types per weighted layer, per-layer cost and total."""

    alpha: float
    types: tuple[PType, ...]
    per_layer: np.ndarray = field(repr=False)
    cost: float
    exact: bool


@dataclass(frozen=True)
class Group:
    """Accelerators ``lo..hi-1`` at one level, split at the middle."""

    lo: int
    hi: int
    solution: LevelSolution


#: A policy chooses the types of one group: ``(model, sizes, alpha, level, group_lo) -> (types, exact)``.
Policy = Callable[[TrainingModel, np.ndarray, float, int, int], tuple[Sequence[PType], bool]]


@dataclass(frozen=True)
class TrainingPlan:
    """The result of a strategy on a network, batch and array.

    Attributes
    ----------
    levels : list of list of Group
        ``levels[h]``: the ``2^h`` groups at level ``h``, in order.
    """

    network: Dataflow
    batch: int
    accelerators: Accelerators
    strategy: str
    search: str
    levels: list[list[Group]] = field(repr=False)

    @property
    def level_cost(self) -> np.ndarray:
        """Per level: what one side of the costliest pair receives (elements)."""
        return np.array([max(g.solution.cost for g in gs) for gs in self.levels])

    @property
    def level_weighted(self) -> np.ndarray:
        """Per level: the sum over all pairs (``2^h`` pairs at level ``h``)."""
        return np.array([sum(g.solution.cost for g in gs) for gs in self.levels])

    @property
    def total_plain(self) -> float:
        return float(self.level_cost.sum())

    @property
    def total_weighted(self) -> float:
        return float(self.level_weighted.sum())

    @property
    def exact(self) -> bool:
        """Whether every level's DP was solved exactly."""
        return all(g.solution.exact for gs in self.levels for g in gs)

    @property
    def layer_plain(self) -> np.ndarray:
        """Per weighted layer: its share of ``total_plain`` (costliest group of each level)."""
        out = np.zeros(len(self.network.weighted))
        for gs in self.levels:
            out += max(gs, key=lambda g: g.solution.cost).solution.per_layer
        return out

    @property
    def layer_weighted(self) -> np.ndarray:
        out = np.zeros(len(self.network.weighted))
        for gs in self.levels:
            for g in gs:
                out += g.solution.per_layer
        return out

    def types(self) -> list[list[str]]:
        """``types()[l][h]``: layer ``l``'s type at level ``h`` (``"2/3"`` when the level's groups differ)."""
        out = []
        for l in range(len(self.network.weighted)):
            row = []
            for gs in self.levels:
                labels = list(dict.fromkeys(g.solution.types[l].label for g in gs))
                row.append("/".join(labels))
            out.append(row)
        return out

    def compute_macs(self) -> np.ndarray:
        """Training multiply-accumulates per layer (forward, error and gradient: 3x the forward), whole batch."""
        return 3.0 * np.array([l.macs for l in self.network.weighted], float) * self.batch

    def compute_time(self) -> float:
        """Compute time with every split balanced by throughput (``sum(MACs) / sum(throughputs)``)."""
        return float(self.compute_macs().sum() / sum(self.accelerators.throughputs))

    def naive_compute_time(self) -> float:
        """Compute time if every split were even (``alpha = 1/2``): the slowest accelerator sets the pace."""
        return float(self.compute_macs().sum() / self.accelerators.n / min(self.accelerators.throughputs))


def _fixed(assign: Callable[[TrainingModel], Sequence[PType]]) -> Policy:
    return lambda model, sizes, alpha, h, lo: (assign(model), True)


def _searching(types: Sequence[PType], max_table: int) -> Policy:
    def policy(model: TrainingModel, sizes: np.ndarray, alpha: float, h: int, lo: int):
        sol = solve(model.problem(sizes, alpha, types), max_table)
        return [types[c] for c in sol.choice], sol.exact
    return policy


def policy_for(strategy: str, max_table: int = 3 ** 11) -> Policy:
    """The policy of a named strategy (see :data:`STRATEGIES`)."""
    if strategy == "dp":
        return _fixed(lambda m: [PType.I] * m.n)
    if strategy == "mp":
        return _fixed(lambda m: [PType.II] * m.n)
    if strategy == "tp":
        return _fixed(lambda m: [PType.III] * m.n)
    if strategy == "owt":
        return _fixed(lambda m: [PType.II if fc else PType.I for fc in m.is_fc])
    if strategy in TYPE_SETS:
        return _searching(TYPE_SETS[strategy], max_table)
    raise PartitionError(f"strategy {strategy!r}: allowed {', '.join(STRATEGIES)}")


def run_hierarchy(model: TrainingModel, acc: Accelerators, policy: Policy) -> list[list[Group]]:
    """Apply ``policy`` level by level (each level on the tensors the levels above have cut)."""
    memo: dict[tuple, tuple[LevelSolution, np.ndarray, np.ndarray]] = {}
    tp = np.asarray(acc.throughputs)
    pending = [(0, acc.n, model.sizes0)]
    levels: list[list[Group]] = []
    for h in range(acc.levels):
        groups, nxt = [], []
        for lo, hi, sizes in pending:
            mid = (lo + hi) // 2
            left, right = tp[lo:mid].sum(), tp[mid:hi].sum()
            alpha = float(left / (left + right))
            key = (sizes.tobytes(), alpha, h)
            if key not in memo:
                types, exact = policy(model, sizes, alpha, h, lo)
                choice = [int(t) for t in types]
                per = model.per_layer(sizes, alpha, choice)
                sol = LevelSolution(alpha, tuple(PType(c) for c in choice), per, float(per.sum()), exact)
                memo[key] = (sol, model.split(sizes, choice, alpha), model.split(sizes, choice, 1.0 - alpha))
            sol, ls, rs = memo[key]
            groups.append(Group(lo, hi, sol))
            nxt += [(lo, mid, ls), (mid, hi, rs)]
        levels.append(groups)
        pending = nxt
    return levels


def plan_training(net: Any, accelerators: int | Accelerators, batch: int, strategy: str = "accpar",
                  search: str = "greedy", objective: str = "plain", max_table: int = 3 ** 11) -> TrainingPlan:
    """Partition ``net`` for training on an array.

    Parameters
    ----------
    net : cimforge.golden.ir.Graph, ShapeGraph or Dataflow
    accelerators : int or Accelerators
        A power of two (homogeneous) or an :class:`Accelerators`.
    batch : int
    strategy : str
        One of :data:`STRATEGIES`.
    search : str
        ``"greedy"``: the papers' level-by-level DP (each level optimal given the levels above). ``"joint"``:
        one DP over all levels at once (each layer chooses a type per level), exact for ``objective``; only for
        homogeneous arrays and small ``H`` (the state has ``types^H`` values per layer).
    objective : str
        For ``search="joint"``: ``"plain"`` or ``"weighted"`` total.

    Raises
    ------
    PartitionError
        Unknown strategy or search, bad batch or array, or a joint search too large.
    """
    acc = accelerators if isinstance(accelerators, Accelerators) else Accelerators.homogeneous(accelerators)
    model = TrainingModel(net, batch)
    if search == "greedy":
        policy = policy_for(strategy, max_table)
    elif search == "joint":
        policy = _joint_policy(model, acc, strategy, objective)
    else:
        raise PartitionError(f"search {search!r}: allowed greedy, joint")
    return TrainingPlan(model.net, batch, acc, strategy, search, run_hierarchy(model, acc, policy))


def _joint_policy(model: TrainingModel, acc: Accelerators, strategy: str, objective: str,
                  max_table: int = 1 << 24) -> Policy:
    if strategy not in TYPE_SETS:
        return policy_for(strategy)
    if not acc.homogeneous_array:
        raise PartitionError("search 'joint' needs a homogeneous array; use greedy for heterogeneous ones")
    if objective not in ("plain", "weighted"):
        raise PartitionError(f"objective {objective!r}: allowed plain, weighted")
    types = TYPE_SETS[strategy]
    H, T = acc.levels, len(types)
    if H == 0:
        return policy_for(strategy)
    D = T ** H
    digits = np.array([[(v // T ** (H - 1 - h)) % T for h in range(H)] for v in range(D)])   # [v, h]
    tsel = np.array([int(t) for t in types])[digits]                                           # types [v, h]
    weight = np.array([1.0 if objective == "plain" else 2.0 ** h for h in range(H)])
    # Multipliers of b, ci, co at level h for type vector v (halved by the levels above).
    mult = np.ones((3, H, D))
    for h in range(1, H):
        for k in range(3):
            mult[k, h] = mult[k, h - 1] * np.where(tsel[:, h - 1] == k, 0.5, 1.0)
    b0, ci0, co0 = model.sizes0
    unary = []
    for l in range(model.n):
        per_type = np.stack([ci0[l] * co0[l] * model.kg[l] * mult[1] * mult[2],
                             b0[l] * co0[l] * model.ofmap[l] * mult[0] * mult[2],
                             b0[l] * ci0[l] * model.ifmap[l] * mult[0] * mult[1]])    # [type, h, v]
        cost = np.take_along_axis(per_type, tsel.T[None], axis=0)[0]                     # [h, v]
        unary.append((weight[:, None] * cost).sum(axis=0))
    tables = {"inter": inter_table(), "block": block_table()}

    def edge_matrix(s: int, d: int, share: float, kind: str) -> Callable[[], np.ndarray]:
        def make() -> np.ndarray:
            fin = share * b0[d] * ci0[d] * model.ifmap[d] * mult[0] * mult[1]               # [h, v]
            m = np.zeros((D, D))
            for h in range(H):
                m += weight[h] * tables[kind][np.ix_(tsel[:, h], tsel[:, h])] * fin[h][None, :]
            return m
        return make

    problem = Problem(unary, [(s, d, edge_matrix(s, d, share, k)) for s, d, share, k in model.edges])
    if D ** max(problem.frontier_sizes()) > max_table:
        raise PartitionError(f"joint search over {H} levels needs {D}^{max(problem.frontier_sizes())} table "
                             f"entries (limit {max_table}); use search='greedy' or fewer accelerators")
    sol: Solution = solve(problem, max_table)
    per_level = [[types[digits[v, h]] for v in sol.choice] for h in range(H)]
    return lambda m, sizes, alpha, h, lo: (per_level[h], sol.exact)


def compare_strategies(net: Any, accelerators: int | Accelerators, batch: int,
                       strategies: Sequence[str] = ("dp", "mp", "owt", "hypar", "accpar"),
                       search: str = "greedy") -> dict[str, TrainingPlan]:
    """Plans for several strategies (same network, batch and array)."""
    return {s: plan_training(net, accelerators, batch, s, search) for s in strategies}
