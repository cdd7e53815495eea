"""Graph input: networkx graphs, SNAP edge lists, Matrix Market files, networkx's bundled graphs and generator
specs, all turned into one :class:`GraphData` (vertices ``0 .. n-1``, integer arc arrays, the original ids).

A graph is a set of *arcs* ``(src, dst, weight)``: a directed edge is one arc, an undirected edge two (a self
loop one). Parallel edges collapse to one arc keeping the smallest weight (the one every shortest path uses);
weights are integers (the fabric adds and compares integers, docs/graph.md). Malformed input raises
:class:`cimforge.errors.UserError` with one line naming the file and line, the spec field or the vertex.

Spec strings (:func:`load_graph`)::

    karate | lesmis | florentine | davis                      networkx's bundled real graphs
    er:n=10000,p=0.001,seed=1[,directed=1][,wmax=9]          Erdos-Renyi G(n, p)
    ba:n=10000,m=5,seed=1[,wmax=9]                           Barabasi-Albert
    grid:100x100[,wmax=9]                                    2-D grid (vertex ids are (row, col))
    PATH.mtx | PATH (any other name: an edge list)            files

``wmax=W`` draws integer weights uniformly from ``1..W`` (seeded): weighted graphs for SSSP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np

from ..errors import UserError

__all__ = ["GraphData", "from_networkx", "from_arcs", "read_edge_list", "read_matrix_market", "generate",
           "load_graph", "BUNDLED", "GENERATORS", "to_networkx", "vertex_ids"]

#: networkx's bundled real graphs by the names ``--graph`` accepts.
BUNDLED = {
    "karate": "karate_club_graph",
    "lesmis": "les_miserables_graph",
    "florentine": "florentine_families_graph",
    "davis": "davis_southern_women_graph",
}

#: Generator spec prefixes and their fields (required fields have no default).
GENERATORS = {
    "er": {"n": None, "p": None, "seed": 0, "directed": 0, "wmax": 0},
    "ba": {"n": None, "m": None, "seed": 0, "wmax": 0},
    "grid": {"wmax": 0, "seed": 0},
}

#: Largest generated graph, in vertices and in expected edges: networkx builds generated graphs in Python
#: objects (about 1 KB an edge), so a spec beyond this would exhaust memory long before the fabric saw it.
MAX_GENERATED_VERTICES = 10_000_000
MAX_GENERATED_EDGES = 10_000_000


@dataclass(frozen=True, eq=False)
class GraphData:
    """A graph with vertices ``0 .. n-1``.

    Attributes
    ----------
    n : int
        Vertices (isolated ones included).
    src, dst : np.ndarray
        The arcs (int64), sorted by ``(src, dst)``, no duplicates; an undirected edge is two arcs.
    weight : np.ndarray
        Integer weight of each arc (int64; 1 for an unweighted graph).
    directed : bool
    weighted : bool
        The input carried weights.
    ids : tuple
        ``ids[i]`` is the input's name of vertex ``i``.
    name : str
        Where the graph came from (a spec or a file name).
    """

    n: int
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    directed: bool
    weighted: bool
    ids: tuple
    name: str = "graph"
    _index: dict = field(default_factory=dict, repr=False)

    @property
    def arcs(self) -> int:
        """Number of arcs."""
        return len(self.src)

    @property
    def edges(self) -> int:
        """Number of edges of the input (undirected edges once, self loops once)."""
        if self.directed:
            return self.arcs
        return int((self.src <= self.dst).sum())

    def index(self, vertex: Any) -> int:
        """The vertex number of an input id (or of its string form, as typed on a command line).

        Raises
        ------
        UserError
            ``vertex`` is not a vertex of the graph.
        """
        if not self._index:
            self._index.update({v: i for i, v in enumerate(self.ids)})
            self._index.update({str(v): i for i, v in enumerate(self.ids) if str(v) not in self._index})
        for key in (vertex, str(vertex)):
            try:
                return self._index[key]
            except (KeyError, TypeError):
                pass
        sample = ", ".join(repr(v) for v in self.ids[:3])
        raise UserError(f"source {vertex!r}: not a vertex of {self.name} ({self.n} vertices, e.g. {sample})")

    def adjacency(self, weighted: bool = False):
        """The ``n x n`` adjacency matrix, ``A[src, dst]`` (scipy CSR; weights or ones)."""
        import scipy.sparse as sp
        vals = self.weight if weighted else np.ones(self.arcs, dtype=np.int64)
        return sp.csr_matrix((vals, (self.src, self.dst)), shape=(self.n, self.n))

    def out_degree(self) -> np.ndarray:
        """Arcs leaving each vertex (int64)."""
        return np.bincount(self.src, minlength=self.n).astype(np.int64)

    def permuted(self, perm: Sequence[int], name: str | None = None) -> "GraphData":
        """The same graph with vertex ``i`` renumbered ``perm[i]`` (ids follow their vertices)."""
        perm = np.asarray(perm, dtype=np.int64)
        if sorted(perm.tolist()) != list(range(self.n)):
            raise ValueError(f"perm is not a permutation of 0..{self.n - 1}")
        ids = [None] * self.n
        for i, p in enumerate(perm):
            ids[p] = self.ids[i]
        return from_arcs(self.n, perm[self.src], perm[self.dst], self.weight, directed=True,
                         weighted=self.weighted, ids=ids, name=name or self.name, undirected_input=not self.directed)


def from_arcs(n: int, src, dst, weight=None, *, directed: bool, weighted: bool | None = None, ids=None,
              name: str = "graph", undirected_input: bool = False) -> GraphData:
    """A :class:`GraphData` from edge arrays on vertices ``0 .. n-1``.

    Undirected edges (``directed=False``) are mirrored; parallel arcs keep the smallest weight. With
    ``undirected_input`` the arcs are already mirrored and the result is marked undirected.
    """
    src = np.asarray(src, dtype=np.int64).reshape(-1)
    dst = np.asarray(dst, dtype=np.int64).reshape(-1)
    w = np.ones(len(src), dtype=np.int64) if weight is None else np.asarray(weight, dtype=np.int64).reshape(-1)
    if not (len(src) == len(dst) == len(w)):
        raise ValueError("src, dst and weight differ in length")
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
        raise ValueError(f"an arc endpoint is outside 0..{n - 1}")
    if not directed:
        loop = src == dst
        src, dst, w = (np.concatenate([src, dst[~loop]]), np.concatenate([dst, src[~loop]]),
                       np.concatenate([w, w[~loop]]))
    # sort by (src, dst, weight) and keep the first of each (src, dst): the smallest weight
    order = np.lexsort((w, dst, src))
    src, dst, w = src[order], dst[order], w[order]
    keep = np.ones(len(src), dtype=bool)
    keep[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    ids = tuple(range(n)) if ids is None else tuple(ids)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} vertices")
    return GraphData(n=n, src=src[keep], dst=dst[keep], weight=w[keep],
                     directed=directed and not undirected_input,
                     weighted=bool(weight is not None) if weighted is None else weighted, ids=ids, name=name)


def _integer_weight(value, where: str) -> int:
    """An edge weight as an int (a float must be integral: the fabric computes on integers)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: weight {value!r} is not a number") from None
    if not np.isfinite(f) or f != int(f):
        raise UserError(f"{where}: weight {value!r} is not an integer (the fabric adds integer weights)")
    return int(f)


def from_networkx(g, name: str = "networkx graph", weight: str = "weight") -> GraphData:
    """A :class:`GraphData` from a networkx graph; its ``weight`` attribute, where any edge has one, becomes
    the arc weights (an edge without it weighs 1). Vertices keep the graph's node order."""
    ids = list(g.nodes())
    index = {v: i for i, v in enumerate(ids)}
    edges = list(g.edges(data=True))
    weighted = any(weight in d for _, _, d in edges)
    src = [index[u] for u, _, _ in edges]
    dst = [index[v] for _, v, _ in edges]
    w = [_integer_weight(d.get(weight, 1), f"{name}: edge ({u!r}, {v!r})") for u, v, d in edges] if weighted else None
    return from_arcs(len(ids), src, dst, w, directed=g.is_directed(), weighted=weighted, ids=ids, name=name)


def to_networkx(graph: GraphData, ids: bool = False):
    """The graph as a networkx ``Graph``/``DiGraph`` on vertices ``0 .. n-1`` (or the input ids), with
    ``weight`` attributes."""
    import networkx as nx
    g = nx.DiGraph() if graph.directed else nx.Graph()
    names = graph.ids if ids else range(graph.n)
    g.add_nodes_from(names)
    lab = (lambda i: graph.ids[i]) if ids else int
    g.add_weighted_edges_from((lab(s), lab(d), int(w)) for s, d, w in zip(graph.src, graph.dst, graph.weight))
    return g


def _parse_vertex(tok: str):
    """A vertex token of an edge list: an int when it reads as one, else the string."""
    try:
        return int(tok)
    except ValueError:
        return tok


def read_edge_list(path: str | Path, directed: bool = False) -> GraphData:
    """A SNAP-style edge list: one ``u v [weight]`` per line, whitespace-separated, ``#`` or ``%`` comments.

    Vertex ids may be any tokens (numbers sort numerically, vertices are numbered in order of appearance);
    the graph is weighted when every edge line has a third column.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"--graph {path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UserError(f"--graph {path}: not a text edge list") from None
    index: dict = {}
    ids: list = []
    src, dst, wts = [], [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("%"):
            continue
        toks = line.replace(",", " ").split()
        if len(toks) not in (2, 3):
            raise UserError(f"{path.name} line {lineno}: expected 'u v' or 'u v weight', got {line[:40]!r}")
        ends = []
        for tok in toks[:2]:
            v = _parse_vertex(tok)
            if v not in index:
                index[v] = len(ids)
                ids.append(v)
            ends.append(index[v])
        src.append(ends[0])
        dst.append(ends[1])
        wts.append(_integer_weight(toks[2], f"{path.name} line {lineno}") if len(toks) == 3 else None)
    if not ids:
        raise UserError(f"--graph {path}: no edges")
    if any(w is None for w in wts) and any(w is not None for w in wts):
        raise UserError(f"{path.name}: some edge lines have a weight and some do not")
    weighted = wts[0] is not None
    return from_arcs(len(ids), src, dst, wts if weighted else None, directed=directed, weighted=weighted,
                     ids=ids, name=path.name)


def read_matrix_market(path: str | Path) -> GraphData:
    """A Matrix Market file (``scipy.io.mmread``): entry ``(i, j)`` is the arc ``i -> j``; a symmetric matrix is
    an undirected graph, a general one directed, a pattern matrix unweighted. Vertex ids are the 1-based
    row numbers of the file."""
    import scipy.io
    path = Path(path)
    try:
        info = scipy.io.mminfo(str(path))
        mat = scipy.io.mmread(str(path))
    except OSError as exc:
        raise UserError(f"--graph {path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, IndexError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--graph {path}: not a Matrix Market file ({msg})") from None
    rows, cols, _, fmt, field_, symmetry = info
    if rows != cols:
        raise UserError(f"--graph {path}: a {rows}x{cols} matrix is not an adjacency matrix (square required)")
    if field_ == "complex":
        raise UserError(f"--graph {path}: complex entries are not edge weights")
    coo = mat.tocoo() if hasattr(mat, "tocoo") else __import__("scipy.sparse").sparse.coo_matrix(mat)
    weighted = field_ != "pattern"
    w = None
    if weighted:
        w = [_integer_weight(x, f"{path.name} entry ({i + 1}, {j + 1})") for i, j, x in
             zip(coo.row, coo.col, coo.data)]
    directed = symmetry == "general"
    return from_arcs(rows, coo.row, coo.col, w, directed=directed, weighted=weighted,
                     ids=list(range(1, rows + 1)), name=path.name)


def _spec_fields(spec: str, kind: str, body: str) -> dict:
    """The ``k=v`` fields of a generator spec, checked against :data:`GENERATORS`."""
    allowed = GENERATORS[kind]
    out = dict(allowed)
    for part in filter(None, body.split(",")):
        if "=" not in part:
            raise UserError(f"--graph {spec}: field {part!r} is not key=value (allowed: {', '.join(allowed)})")
        k, v = (s.strip() for s in part.split("=", 1))
        if k not in allowed:
            raise UserError(f"--graph {spec}: unknown field {k!r} (allowed: {', '.join(allowed)})")
        try:
            out[k] = float(v) if k == "p" else int(v)
        except ValueError:
            raise UserError(f"--graph {spec}: {k}={v!r} is not a number") from None
    missing = [k for k, v in out.items() if v is None]
    if missing:
        raise UserError(f"--graph {spec}: missing field {missing[0]!r} (e.g. er:n=100,p=0.05,seed=1)")
    return out


def _with_weights(g: GraphData, wmax: int, seed: int) -> GraphData:
    """``g`` with integer weights drawn from ``1..wmax`` per edge (both arcs of an undirected edge alike)."""
    rng = np.random.default_rng(seed + 7919)
    if g.directed:
        w = rng.integers(1, wmax + 1, size=g.arcs)
        return from_arcs(g.n, g.src, g.dst, w, directed=True, weighted=True, ids=g.ids, name=g.name)
    half = g.src <= g.dst
    w = rng.integers(1, wmax + 1, size=int(half.sum()))
    return from_arcs(g.n, g.src[half], g.dst[half], w, directed=False, weighted=True, ids=g.ids, name=g.name)


def _check_size(spec: str, vertices: int, edges: float) -> None:
    """Refuse a generator spec whose graph would exceed :data:`MAX_GENERATED_VERTICES` or ``..._EDGES``."""
    if vertices > MAX_GENERATED_VERTICES or edges > MAX_GENERATED_EDGES:
        raise UserError(f"--graph {spec}: {vertices} vertices and about {int(edges)} edges; allowed at most "
                        f"{MAX_GENERATED_VERTICES} vertices and {MAX_GENERATED_EDGES} edges for a generated graph "
                        f"(give a larger graph as a file)")


def generate(spec: str) -> GraphData:
    """A generated graph from a spec (``er:...``, ``ba:...``, ``grid:RxC``; see the module docstring)."""
    import networkx as nx
    kind, _, body = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "grid":
        dims, _, rest = body.partition(",")
        try:
            r, c = (int(x) for x in dims.lower().split("x"))
        except ValueError:
            raise UserError(f"--graph {spec}: expected grid:ROWSxCOLS, e.g. grid:100x100") from None
        if r < 1 or c < 1:
            raise UserError(f"--graph {spec}: grid sides must be >= 1")
        f = _spec_fields(spec, "grid", rest)
        _check_size(spec, r * c, 2 * r * c)
        g = from_networkx(nx.grid_2d_graph(r, c), name=spec)
    elif kind == "er":
        f = _spec_fields(spec, "er", body)
        if f["n"] < 1 or not 0 <= f["p"] <= 1:
            raise UserError(f"--graph {spec}: allowed n >= 1 and 0 <= p <= 1")
        if f["directed"] not in (0, 1):
            raise UserError(f"--graph {spec}: directed={f['directed']} (allowed 0 or 1)")
        pairs = f["n"] * (f["n"] - 1) / (1 if f["directed"] else 2)
        _check_size(spec, f["n"], pairs * f["p"])
        g = from_networkx(nx.fast_gnp_random_graph(f["n"], f["p"], seed=f["seed"], directed=bool(f["directed"])),
                          name=spec)
    elif kind == "ba":
        f = _spec_fields(spec, "ba", body)
        if not 1 <= f["m"] < f["n"]:
            raise UserError(f"--graph {spec}: allowed 1 <= m < n")
        _check_size(spec, f["n"], f["n"] * f["m"])
        g = from_networkx(nx.barabasi_albert_graph(f["n"], f["m"], seed=f["seed"]), name=spec)
    else:
        raise UserError(f"--graph {spec}: unknown generator {kind!r} (allowed: {', '.join(GENERATORS)})")
    if f["wmax"] < 0:
        raise UserError(f"--graph {spec}: wmax must be >= 1 (or 0: unweighted)")
    return _with_weights(g, f["wmax"], f["seed"]) if f["wmax"] else g


def load_graph(spec: str, directed: bool = False) -> GraphData:
    """A graph from what ``--graph`` accepts: a bundled name, a generator spec or a file (``.mtx``: Matrix
    Market, anything else: an edge list, ``directed`` telling how to read it).

    Raises
    ------
    UserError
        Unknown name or generator, a bad spec field, a missing or malformed file.
    """
    import networkx as nx
    if spec in BUNDLED:
        return from_networkx(getattr(nx, BUNDLED[spec])(), name=spec)
    path = Path(spec)
    if path.exists():
        return read_matrix_market(path) if path.suffix.lower() == ".mtx" else read_edge_list(path, directed)
    if ":" in spec:
        return generate(spec)
    raise UserError(f"--graph {spec}: not a file, a bundled graph ({', '.join(BUNDLED)}) or a generator spec "
                    f"({', '.join(k + ':...' for k in GENERATORS)})")


def vertex_ids(graph: GraphData, values: Sequence) -> dict[Hashable, Any]:
    """Per-vertex values keyed by the input's vertex ids."""
    return {graph.ids[i]: v for i, v in enumerate(values)}
