"""Graph algorithms on the generated fabric's RTL (Verilator through cocotb, :mod:`cimforge.graph.fabric`): every
round's programs run on the fabric, every round's words equal the golden model's (and so networkx's), every
retired instruction's stamp and each run's cycles equal the cost model's, and their sum the graph compiler's
prediction. Ring streaming (tiny: 4 pages, runs of as many blocks as the weight memory holds) and resident
pages loaded by a prologue (default) are both covered."""

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

#: (graph, preset, algorithm, source): BFS on karate and a generated graph streamed through tiny's ring and on
#: lesmis resident on default; SSSP and CC (the relaxation engine) and PageRank (the SpMV engine, MAC mode)
#: on default.
CASES = [("karate", "tiny", "bfs", 0), ("er:n=200,p=0.03,seed=4", "tiny", "bfs", 7),
         ("lesmis", "default", "bfs", 11), ("karate", "default", "sssp", 0), ("lesmis", "default", "cc", None),
         ("er:n=300,p=0.02,seed=4,directed=1,wmax=20", "default", "sssp", 7),
         ("er:n=300,p=0.02,seed=4,directed=1,wmax=20", "default", "cc", None),
         ("lesmis", "default", "pagerank", None), ("er:n=300,p=0.02,seed=4,directed=1", "default", "pagerank", None)]


@pytest.mark.parametrize("spec,preset,algo,source", CASES)
def test_on_fabric(spec, preset, algo, source):
    g = load_graph(spec)
    plan = compile_graph(g, algo, get_preset(preset))
    run = execute(plan, source if algo in ("bfs", "sssp") else None)
    t0 = time.perf_counter()
    r = run_on_fabric(plan, run)
    print(f"{spec} {preset} {algo}: {len(plan.blocks)} blocks ({'resident' if plan.resident else 'ring'}), "
          f"{r['runs']} runs, {r['instructions']} instructions, cycles measured {r['measured']} predicted "
          f"{r['predicted']}, {time.perf_counter() - t0:.1f} s")
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
