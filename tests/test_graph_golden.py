"""Graph input and the golden graph algorithms against networkx (BFS, SSSP, CC exactly, PageRank within the
stated bound), on networkx's bundled graphs and generated ones (slow: 10,000 vertices, ~100,000 edges)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from cimforge.errors import UserError
from cimforge.graph import golden
from cimforge.graph.io import load_graph, read_edge_list, read_matrix_market, to_networkx, from_networkx

SMALL = ["karate", "lesmis", "florentine", "davis", "er:n=300,p=0.02,seed=1", "ba:n=300,m=3,seed=2",
         "grid:12x17", "er:n=200,p=0.02,seed=3,directed=1", "er:n=200,p=0.03,seed=4,wmax=9",
         "er:n=150,p=0.03,seed=5,directed=1,wmax=20"]
#: (er:n=10000,p=0.002,seed=1,wmax=9, 99,627 edges, is bench/bench_graph.py's RTL run, checked there against
#: networkx on the fabric's own result)
LARGE = ["ba:n=10000,m=5,seed=1", "grid:100x100", "er:n=10000,p=0.001,seed=2,wmax=9"]


def check_bfs(g, s=0):
    got = golden.bfs(g, s).values
    ref = nx.single_source_shortest_path_length(to_networkx(g), s)
    want = np.full(g.n, -1)
    want[list(ref)] = list(ref.values())
    np.testing.assert_array_equal(got, want)


def check_sssp(g, s=0):
    got = golden.sssp(g, s).values
    ref = nx.single_source_dijkstra_path_length(to_networkx(g), s, weight="weight")
    want = np.full(g.n, golden.INF)
    want[list(ref)] = list(ref.values())
    np.testing.assert_array_equal(got, want)


def check_cc(g):
    got = golden.cc(g).values
    ng = to_networkx(g)
    comps = nx.weakly_connected_components(ng) if g.directed else nx.connected_components(ng)
    want = np.empty(g.n, dtype=np.int64)
    for comp in comps:
        want[list(comp)] = min(comp)  # label propagation labels a component by its smallest vertex
    np.testing.assert_array_equal(got, want)


def check_pagerank(g):
    res = golden.pagerank(g)
    ref = nx.pagerank(to_networkx(g), weight=None, tol=1e-10, max_iter=1000)
    want = np.array([ref[i] for i in range(g.n)])
    err = np.abs(res.floats() - want).sum()
    bound = golden.pagerank_bound(g)
    print(f"{g.name}: pagerank L1 error {err:.3g}, bound {bound:.3g}, {res.rounds} iterations")
    assert err <= bound


@pytest.mark.parametrize("spec", SMALL)
def test_small_graphs_match_networkx(spec):
    g = load_graph(spec)
    for s in (0, g.n - 1):
        check_bfs(g, s)
        check_sssp(g, s)
    check_cc(g)
    check_pagerank(g)


@pytest.mark.slow
@pytest.mark.parametrize("spec", LARGE)
def test_large_graphs_match_networkx(spec):
    g = load_graph(spec)
    assert g.n == 10000
    check_bfs(g, 0)
    check_sssp(g, 17)
    check_cc(g)
    check_pagerank(g)


def test_bad_and_corner_input(tmp_path):
    # self loops, isolated vertices, a disconnected graph: correct results
    ng = nx.Graph([(0, 1), (1, 1), (2, 3)])
    ng.add_node(9)
    g = from_networkx(ng)
    for s in range(g.n):
        check_bfs(g, s)
        check_sssp(g, s)
    check_cc(g)
    check_pagerank(g)
    assert g.edges == 3 and g.arcs == 5
    # negative weights for SSSP, a source that is not a vertex
    neg = from_networkx(nx.Graph([(0, 1, {"weight": -2})]))
    with pytest.raises(UserError, match="negative weight -2"):
        golden.sssp(neg, 0)
    with pytest.raises(UserError, match="not a vertex"):
        golden.bfs(g, 99)
    with pytest.raises(UserError, match="not a vertex of karate"):
        load_graph("karate").index("Zorro")
    # malformed files and specs: one-line named errors
    bad = tmp_path / "bad.txt"
    bad.write_text("# comment\n1 2\n3\n")
    with pytest.raises(UserError, match="bad.txt line 3"):
        read_edge_list(bad)
    bad.write_text("1 2 x\n")
    with pytest.raises(UserError, match="not a number"):
        read_edge_list(bad)
    bad.write_text("1 2 1.5\n")
    with pytest.raises(UserError, match="not an integer"):
        read_edge_list(bad)
    mtx = tmp_path / "bad.mtx"
    mtx.write_text("not a matrix market file\n")
    with pytest.raises(UserError, match="not a Matrix Market file"):
        read_matrix_market(mtx)
    for spec, msg in [("er:n=10", "missing field 'p'"), ("er:n=10,p=x", "not a number"),
                      ("zz:n=3", "unknown generator"), ("grid:3", "grid:ROWSxCOLS"), ("nosuch", "not a file"),
                      ("er:n=10,p=0.1,q=1", "unknown field 'q'"), ("er:n=10,p=0.1,directed=2", "allowed 0 or 1"),
                      ("er:n=100000000,p=0.001", "allowed at most 10000000 vertices"),
                      ("er:n=1000000,p=0.5", "about 249999750000 edges"), ("grid:10000x10000", "allowed at most"),
                      ("ba:n=5000000,m=50", "allowed at most"), ("er:n=10,p=0.1,wmax=-1", "wmax must be >= 1")]:
        with pytest.raises(UserError, match=msg) as exc:
            load_graph(spec)
        assert "\n" not in str(exc.value)


def test_files_round_trip(tmp_path):
    import scipy.io
    import scipy.sparse as sp
    # SNAP edge list with string ids, directed, weighted
    f = tmp_path / "g.txt"
    f.write_text("# Directed graph\n# FromNodeId\tToNodeId\nalice bob 3\nbob carol 1\nalice carol 5\n")
    g = read_edge_list(f, directed=True)
    assert g.ids == ("alice", "bob", "carol") and g.directed and g.weighted
    r = golden.sssp(g, g.index("alice"))
    assert dict(zip(g.ids, r.values.tolist())) == {"alice": 0, "bob": 3, "carol": 4}
    # Matrix Market, symmetric pattern: undirected, unweighted, ids 1-based
    m = sp.coo_matrix(([1, 1, 1], ([1, 2, 3], [0, 1, 0])), shape=(5, 5))
    mtx = tmp_path / "g.mtx"
    scipy.io.mmwrite(str(mtx), m, field="pattern", symmetry="symmetric")
    g = read_matrix_market(mtx)
    assert not g.directed and not g.weighted and g.n == 5 and g.edges == 3
    assert g.index(5) == 4
    check_cc(g)
    # grid vertex ids are tuples; their strings are accepted as sources
    g = load_graph("grid:3x4")
    assert g.index("(2, 3)") == 11 and g.ids[11] == (2, 3)
