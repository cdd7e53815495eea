"""Graph algorithms on the generated fabric's RTL (Verilator through cocotb, :mod:`cimforge.graph.fabric`) in a
closed loop: each round built by the host from the fabric's previous result, every round's state and the
result equal to the golden model's (and the result to networkx's), every retired instruction's stamp and each
run's cycles equal the cost model's, and their sum the graph compiler's prediction. Ring streaming (tiny's 4
pages; default's 32 slots with a page's rows loaded only where its block has arcs, so a page holds an earlier
block's other rows: ``GBFS`` never reads them, ``GSPMV`` masks them) and resident pages loaded by a prologue
are both covered. (About 10 s per case with cached builds.)"""

from __future__ import annotations

import time

import pytest

from cimforge.cli import main
from cimforge.graph.cli import networkx_check
from cimforge.graph.compile import compile_graph, execute
from cimforge.graph.fabric import run_on_fabric
from cimforge.graph.io import load_graph
from cimforge.presets import get_preset

pytestmark = [pytest.mark.slow, pytest.mark.cocotb]

#: (graph, preset, algorithm, source): BFS streamed through tiny's ring (karate on tiny: the CLI test) and
#: resident on default; SSSP and CC (the relaxation engine); PageRank (the SpMV engine, MAC mode) resident with
#: dangling vertices and streamed through default's ring (er:n=600: 100 blocks, destination-major).
CASES = [("er:n=200,p=0.03,seed=4", "tiny", "bfs", 7), ("lesmis", "default", "bfs", 11),
         ("karate", "default", "sssp", 0),
         ("er:n=300,p=0.02,seed=4,directed=1,wmax=20", "default", "sssp", 7),
         ("er:n=300,p=0.02,seed=4,directed=1,wmax=20", "default", "cc", None),
         ("er:n=300,p=0.02,seed=4,directed=1", "default", "pagerank", None),
         ("er:n=600,p=0.01,seed=5", "default", "pagerank", None),
         # every graph family of the acceptance on the RTL: the other bundled graphs, Barabasi-Albert, grids
         ("florentine", "default", "cc", None), ("davis", "default", "pagerank", None),
         ("ba:n=400,m=3,seed=2,wmax=9", "default", "sssp", 0), ("grid:20x20", "default", "bfs", 0),
         ("grid:12x12,wmax=5", "default", "cc", None)]


@pytest.mark.parametrize("spec,preset,algo,source", CASES)
def test_on_fabric(spec, preset, algo, source):
    g = load_graph(spec)
    plan = compile_graph(g, algo, get_preset(preset))
    run = execute(plan, source if algo in ("bfs", "sssp") else None)
    t0 = time.perf_counter()
    r = run_on_fabric(plan, run, source=source)
    print(f"{spec} {preset} {algo}: {len(plan.blocks)} blocks ({'resident' if plan.resident else 'ring'}), "
          f"{r['rounds']} rounds, {r['runs']} runs, {r['instructions']} instructions, cycles measured "
          f"{r['measured']} predicted {r['predicted']}, {time.perf_counter() - t0:.1f} s")
    assert r["first_difference"] is None and r["bit_exact"], r["first_difference"]
    assert r["stamps_equal"], r.get("first_stamp_difference")
    assert r["measured"] == r["predicted"] == run.cycles
    assert networkx_check(algo, g, r["values"], source if algo in ("bfs", "sssp") else None).startswith(
        "matches networkx")


def test_cli_runs_on_the_fabric(capsys):
    assert main(["graph", "bfs", "--graph", "karate", "--preset", "tiny", "--source", "33", "--rtl"]) == 0
    out = capsys.readouterr().out
    assert "RTL (generated fabric, Verilator): bit-exact" in out and "every retire stamp as predicted" in out
    assert "matches networkx" in out
